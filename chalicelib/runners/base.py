"""What every runner is: validation of its details, and a run that returns a result or raises."""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

INTEGER = re.compile(r"^[+-]?\d+$")


class DetailsError(ValueError):
    """A job's details break a runner's rule; the message names the key."""

    def __init__(self, key: str, rule: str) -> None:
        super().__init__(f"details.{key}: {rule}")
        self.key = key
        self.rule = rule


class RunnerError(Exception):
    """A run failed; `retryable` says whether another attempt may succeed."""

    retryable = False

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class PermanentError(RunnerError):
    """A failure another attempt cannot fix (bad details, missing resource, access denied)."""


class RetryableError(RunnerError):
    """A failure another attempt may fix (throttling, 5xx, a resource between states)."""

    retryable = True


@dataclass(frozen=True)
class RunResult:
    """What a run did: a short human output and structured facts for the run record."""

    output: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """Where and for whom a run acts.

    `client(service)` returns a boto3 client acting in the job's account and region
    (credentials already assumed when the registry names a role).
    """

    account: str
    run_id: str
    job_id: str
    client: Callable[[str], Any]
    dummy_template: str = "Hello, {{.Account}}!"


class Runner(Protocol):
    """A runner: one module under chalicelib/runners and one line in the registry."""

    name: str

    def validate(self, details: Mapping[str, str]) -> None:
        """Raise DetailsError naming the first bad key; `details` includes `runner`."""

    def run(self, details: Mapping[str, str], ctx: RunContext) -> RunResult:
        """Act; raise PermanentError or RetryableError on failure."""


# --- Validation helpers shared by the runners -------------------------------------------------

def check_keys(details: Mapping[str, str], runner: str, required: tuple[str, ...],
               optional: tuple[str, ...] = ()) -> None:
    """Raise DetailsError for the first missing required key, unknown key, or non-string value."""
    for key in required:
        if key not in details:
            raise DetailsError(key, f"required by {runner}")
    allowed = {"runner", *required, *optional}
    unknown = sorted(k for k in details if k not in allowed)
    if unknown:
        raise DetailsError(unknown[0], f"not a detail of {runner}")
    for key, value in details.items():
        if not isinstance(value, str):
            raise DetailsError(key, "must be a string")


def check_choice(details: Mapping[str, str], key: str, choices: tuple[str, ...]) -> str:
    """The value of `key`, which must be one of `choices`."""
    value = details[key]
    if value not in choices:
        raise DetailsError(key, f"must be one of {', '.join(choices)}")
    return value


def check_pattern(details: Mapping[str, str], key: str, pattern: re.Pattern[str],
                  rule: str) -> str:
    """The value of `key`, which must match `pattern` in full; `rule` says what that means."""
    value = details[key]
    if not pattern.fullmatch(value):
        raise DetailsError(key, rule)
    return value


def parse_int(details: Mapping[str, str], key: str, *, minimum: int,
              maximum: int) -> int:
    """The value of `key` as a strict integer (`^[+-]?\\d+$`) within [minimum, maximum]."""
    value = details[key]
    rule = f"must be an integer from {minimum} to {maximum}"
    # \d alone would accept non-ASCII digits ("٣"); the length cap keeps int() cheap.
    if len(value) > 20 or not value.isascii() or not INTEGER.fullmatch(value):
        raise DetailsError(key, rule)
    number = int(value)
    if not minimum <= number <= maximum:
        raise DetailsError(key, rule)
    return number


def revalidate(runner: Runner, details: Mapping[str, str]) -> None:
    """Validate details at run time: a job stored by an older version fails permanently."""
    try:
        runner.validate(details)
    except DetailsError as error:
        raise PermanentError(str(error)) from error


# --- Classification of AWS failures -------------------------------------------------------------

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "SlowDown", "PriorRequestNotComplete",
    "BandwidthLimitExceeded", "EC2ThrottledException",
})
TRANSIENT_CODES = frozenset({
    "InternalError", "InternalFailure", "InternalServerError", "ServiceUnavailable",
    "ServiceUnavailableException", "ServiceException", "ServerException", "Unavailable",
    "RequestTimeout", "RequestTimeoutException", "IDPCommunicationError",
    # Lambda: the function is still being created or updated.
    "ResourceNotReadyException", "ResourceConflictException",
    # Auto Scaling: another update or scaling activity has not finished yet.
    "ScalingActivityInProgress", "ScalingActivityInProgressFault", "ResourceContention",
    "ResourceContentionFault",
    # Credentials that expired mid-run: the next attempt assumes the role again.
    "ExpiredToken", "ExpiredTokenException", "RequestExpired",
})
ACCESS_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure",
    "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
    "OptInRequired", "RegionDisabledException", "KMSAccessDeniedException",
})
# The resource exists but is not in a state where the action applies. Whether another attempt
# can help depends on the state it is in, which only the runner knows (`between_states`).
STATE_CODES = frozenset({
    "IncorrectInstanceState", "IncorrectState", "InvalidDBInstanceState",
    "InvalidDBInstanceStateFault", "InvalidDBClusterStateFault",
})


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, or None for any other exception."""
    response = getattr(error, "response", None)
    if not isinstance(response, Mapping):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


def classify(error: Exception, action: str, *, between_states: bool = False) -> RunnerError:
    """The RunnerError for a failed AWS call: retryable or permanent, with the AWS error code.

    `action` says what was attempted (it starts the message); `between_states` says the resource
    is moving between states, so a state conflict is worth another attempt.
    """
    if isinstance(error, ClientError):
        code = error_code(error) or "Unknown"
        message = error.response.get("Error", {}).get("Message") or str(error)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        text = f"{action}: {code}: {message}"
        if code in STATE_CODES:
            return (RetryableError if between_states else PermanentError)(text, code)
        # Before the status check: Lambda answers KMSAccessDeniedException with HTTP 502.
        if code in ACCESS_CODES:
            return PermanentError(f"{action}: access denied: {code}: {message}", code)
        if code in THROTTLING_CODES or code in TRANSIENT_CODES or status == 429 or status >= 500:
            return RetryableError(text, code)
        # Not found, invalid parameters, and any other client error: the same request fails again.
        return PermanentError(text, code)
    if isinstance(error, (HTTPClientError, BotoConnectionError)):
        return RetryableError(f"{action}: {type(error).__name__}: {error}")
    # NoCredentialsError, ParamValidationError, NoRegionError, ...: configuration, not chance.
    return PermanentError(f"{action}: {type(error).__name__}: {error}")


@contextmanager
def aws_call(action: str) -> Iterator[None]:
    """Turn botocore failures inside the block into classified RunnerErrors."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise classify(error, action) from error
