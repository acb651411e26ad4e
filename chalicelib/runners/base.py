"""What every runner is: validation of its details, and a run that returns a result or raises."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..aws import error_code

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


@dataclass(frozen=True)
class Scope:
    """Where a job's resources must be: the registry entry's partition, account and region.

    `account_id` None: the worker's own account, which the caller may not know.
    """

    partition: str
    account_id: str | None
    region: str
    # The account is the stack's own (the entry names none): messages do not name it, they
    # reach run records and API answers that tenants read.
    own_account: bool = False

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        """An ARN of this scope (IAM ARNs have no region); `*` for an unknown account."""
        where = self.region if region else ""
        return f"arn:{self.partition}:{service}:{where}:{self.account_id or '*'}:{resource}"


# Any ARN: partition, service, region, account, resource.
ARN = re.compile(
    r"arn:(?P<partition>[\w-]*):(?P<service>[\w-]*):(?P<region>[\w-]*):"
    r"(?P<account>[\w-]*):(?P<resource>.+)",
    re.ASCII,
)
# Values that are documents, not resource names: an ARN inside one names no target.
NOT_RESOURCES = frozenset({"runner", "payload"})


def check_place(
    details: Mapping[str, str],
    key: str,
    partition: str | None,
    region: str | None,
    account: str | None,
    scope: Scope,
) -> None:
    """DetailsError when a resource named under `key` is outside `scope` (None: not said)."""
    if partition is not None and partition != scope.partition:
        raise DetailsError(
            key,
            f"names partition {partition}; the account's registry entry "
            f"is in partition {scope.partition}",
        )
    if account and scope.account_id and account != scope.account_id:
        where = "the stack's own account" if scope.own_account else f"account {scope.account_id}"
        raise DetailsError(
            key,
            f"names a resource in account {account}; the account's registry entry acts in {where}",
        )
    if region and region != scope.region:
        raise DetailsError(
            key,
            f"names a resource in region {region}; the account's "
            f"registry entry acts in region {scope.region}",
        )


def check_scope(runner: Runner, details: Mapping[str, str], scope: Scope) -> None:
    """DetailsError when a detail names a resource (an ARN, or the runner's own partial forms)
    in another partition, account or region than the registry entry's."""
    for key, value in details.items():
        match = ARN.fullmatch(value) if key not in NOT_RESOURCES else None
        if match:
            check_place(
                details,
                key,
                match["partition"],
                match["region"] or None,
                match["account"] or None,
                scope,
            )
    own = getattr(runner, "check_scope", None)
    if own is not None:
        own(details, scope)


DENY_ALL = {"Effect": "Deny", "Action": "*", "Resource": "*"}


def session_policy(runner: Runner, details: Mapping[str, str], scope: Scope) -> dict[str, Any]:
    """The IAM session policy for one run: only the runner's actions on the job's resources.

    A runner that says nothing of its permissions gets none (fail closed).
    """
    permissions = getattr(runner, "permissions", None)
    statements = permissions(details, scope) if permissions is not None else []
    return {"Version": "2012-10-17", "Statement": list(statements) or [DENY_ALL]}


def statement(actions: list[str], resources: list[str] | str) -> dict[str, Any]:
    """One Allow statement."""
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


class Runner(Protocol):
    """A runner: one module under chalicelib/runners and one line in the registry."""

    name: str
    # The IAM actions its session policies may allow; infra/runner-role.yaml and the worker's
    # own-account policy in infra/minion.yaml grant exactly the registry's union of them.
    iam_actions: tuple[str, ...]

    def validate(self, details: Mapping[str, str]) -> None:
        """Raise DetailsError naming the first bad key; `details` includes `runner`."""

    def run(self, details: Mapping[str, str], ctx: RunContext) -> RunResult:
        """Act; raise PermanentError or RetryableError on failure."""


# --- Validation helpers shared by the runners -------------------------------------------------


def check_keys(
    details: Mapping[str, str],
    runner: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> None:
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


def check_pattern(details: Mapping[str, str], key: str, pattern: re.Pattern[str], rule: str) -> str:
    """The value of `key`, which must match `pattern` in full; `rule` says what that means."""
    value = details[key]
    if not pattern.fullmatch(value):
        raise DetailsError(key, rule)
    return value


def parse_int(details: Mapping[str, str], key: str, *, minimum: int, maximum: int) -> int:
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

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "PriorRequestNotComplete",
        "BandwidthLimitExceeded",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceException",
        "ServerException",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
        # Lambda: the function is still being created or updated.
        "ResourceNotReadyException",
        "ResourceConflictException",
        # Auto Scaling: another update or scaling activity has not finished yet.
        "ScalingActivityInProgress",
        "ScalingActivityInProgressFault",
        "ResourceContention",
        "ResourceContentionFault",
        # Credentials that expired mid-run: the next attempt assumes the role again.
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthFailure",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "OptInRequired",
        "RegionDisabledException",
        "KMSAccessDeniedException",
    }
)
# The resource exists but is not in a state where the action applies. Whether another attempt
# can help depends on the state it is in, which only the runner knows (`between_states`).
STATE_CODES = frozenset(
    {
        "IncorrectInstanceState",
        "IncorrectState",
        "InvalidDBInstanceState",
        "InvalidDBInstanceStateFault",
        "InvalidDBClusterStateFault",
    }
)


# ARNs and account ids in AWS's error text name the hub account, the worker's role, the runner
# role: the run record (readable by the account's API clients) gets them masked.
_ARN_TEXT = re.compile(r"arn:aws[\w-]*:[^\s\"',;()]*")
_ACCOUNT_TEXT = re.compile(r"(?<![\w-])\d{12}(?![\w-])")


def scrub(text: str) -> str:
    """`text` with every ARN replaced by `<arn>` and every account id by `<account>`."""
    return _ACCOUNT_TEXT.sub("<account>", _ARN_TEXT.sub("<arn>", text))


def classify(error: Exception, action: str, *, between_states: bool = False) -> RunnerError:
    """The RunnerError for a failed AWS call: retryable or permanent, with the AWS error code.

    `action` says what was attempted (it starts the message); `between_states` says the resource
    is moving between states, so a state conflict is worth another attempt. AWS's own text is
    kept with ARNs and account ids masked (`scrub`); the raw text goes to the log.
    """
    from ..observability import logger

    # INFO: some failures are expected (a DB identifier that is a cluster); the run's outcome
    # is logged by the worker.
    logger.info(
        "AWS call failed",
        extra={"action": action, "error_code": error_code(error), "reason": str(error)},
    )
    if isinstance(error, ClientError):
        code = error_code(error) or "Unknown"
        message = scrub(error.response.get("Error", {}).get("Message") or str(error))
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
        return RetryableError(f"{action}: {type(error).__name__}: {scrub(str(error))}")
    # NoCredentialsError, ParamValidationError, NoRegionError, ...: configuration, not chance.
    return PermanentError(f"{action}: {type(error).__name__}: {scrub(str(error))}")


@contextmanager
def aws_call(action: str) -> Iterator[None]:
    """Turn botocore failures inside the block into classified RunnerErrors."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise classify(error, action) from error
