"""Domain errors. The API maps each to one HTTP status in one place (`http_status`)."""

from __future__ import annotations


class MinionError(Exception):
    """Base of the errors a request can be answered with; the message is safe to show."""

    status = 500
    code = "InternalServerError"


class BadRequest(MinionError):
    """The request is malformed or breaks a rule; the message says which and why."""

    status = 400
    code = "BadRequestError"


class Unauthorized(MinionError):
    """No valid token."""

    status = 401
    code = "UnauthorizedError"


class Forbidden(MinionError):
    """A valid token used outside its scope (another account, or a write by a read-only one)."""

    status = 403
    code = "ForbiddenError"


class NotFound(MinionError):
    """No such account, job, run or route."""

    status = 404
    code = "NotFoundError"


class MethodNotAllowed(MinionError):
    """The path exists but not with this method."""

    status = 405
    code = "MethodNotAllowedError"


class Conflict(MinionError):
    """The write lost a race with another write."""

    status = 409
    code = "ConflictError"


class PreconditionFailed(MinionError):
    """`If-Match` names a version that is no longer current."""

    status = 412
    code = "PreconditionFailedError"


class PayloadTooLarge(MinionError):
    """The body is over the size limit."""

    status = 413
    code = "RequestEntityTooLargeError"


class UnsupportedMediaType(MinionError):
    """The body is not declared as JSON."""

    status = 415
    code = "UnsupportedMediaType"


class ServiceUnavailable(MinionError):
    """A dependency (DynamoDB, SQS) is throttling or failing past the retry budget."""

    status = 503
    code = "ServiceUnavailableError"
