"""The job: its validation from a request body, and its API representation."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from . import aws, schedules
from .accounts import AccountEntry, names_an_account
from .errors import BadRequest, ServiceUnavailable
from .runners import DetailsError, check_scope, get_runner

SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

DEFAULT_DEADLINE_SECONDS = 600
DEFAULT_MAX_ATTEMPTS = 3
CONCURRENCY_POLICIES = ("Allow", "Forbid")
# The outcomes a job may ask to be announced (chalicelib/events.py): a run's final statuses,
# and `retrying` for an attempt that failed and is queued again.
NOTIFY_OUTCOMES = ("succeeded", "failed", "missed", "skipped", "retrying")

# Fields a client sets (a PUT replaces all of them); path fields that may be repeated in the
# body; read-only fields a client may echo back from a GET and that are ignored.
CLIENT_FIELDS = frozenset(
    {
        "name",
        "description",
        "details",
        "schedule_expression",
        "schedule_timezone",
        "enabled",
        "modified_by",
        "starting_deadline_seconds",
        "concurrency_policy",
        "max_attempts",
        "tags",
        "notify",
    }
)
PATH_FIELDS = ("account", "group", "id")
READ_ONLY_FIELDS = frozenset({"modified_at", "next", "last_run", "version"})

# The body's limits: chalicelib/openapi.json states the same numbers, and
# tests/test_one_source.py holds it to this table.
LIMITS = {
    "name": 256,
    "description": 4096,
    "modified_by": 256,
    "schedule_expression": 256,
    "schedule_timezone": 64,
}
MAX_DETAILS = 50
MAX_DETAIL_KEY = 128
MAX_DETAIL_VALUE = 4096
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
# Inclusive ranges of the integer fields.
INTEGER_RANGES = {"starting_deadline_seconds": (60, 7 * 86400), "max_attempts": (1, 10)}


def utc_minute(moment: datetime) -> datetime:
    """`moment` truncated to its UTC minute."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC, whole seconds, `Z` suffix."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_or_none(moment: datetime | None) -> str | None:
    """`iso(moment)`, or None (JSON null) for a time not set."""
    return None if moment is None else iso(moment)


def check_segment(kind: str, value: str) -> str:
    """A path segment (`account`, `group`) of the allowed form, else BadRequest."""
    if not SEGMENT.fullmatch(value or ""):
        raise BadRequest(
            f"{kind}: must be 1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return value


def is_job_id(value: str) -> bool:
    """Whether `value` has the form of a server-issued job id."""
    return bool(JOB_ID.fullmatch(value or ""))


@dataclass(frozen=True)
class Job:
    """A stored job. `anchor` and `next` are the scheduler's, the rest the client's."""

    account: str
    group: str
    id: str
    name: str
    schedule_expression: str
    details: Mapping[str, str]
    description: str = ""
    schedule_timezone: str = "UTC"
    enabled: bool = False
    modified_at: datetime | None = None
    modified_by: str = ""
    starting_deadline_seconds: int | None = None
    concurrency_policy: str | None = None
    max_attempts: int | None = None
    tags: tuple[tuple[str, str], ...] | None = None
    # The outcomes announced as events; None: the deployment's default (MINION_NOTIFY_DEFAULT).
    notify: tuple[str, ...] | None = None
    version: int = 1
    anchor: datetime | None = None
    next: datetime | None = None
    last_run: Mapping[str, Any] | None = None
    # The registry key the job was created under: its account's own entry, or `*`. A job of
    # an entry later removed must not fall back to the `*` entry (worker._skip_reason).
    registry_entry: str | None = None

    @property
    def runner(self) -> str:
        """The runner's name."""
        return self.details.get("runner", "")

    @property
    def deadline_seconds(self) -> int:
        """How late an occurrence may start before it is recorded `missed`."""
        return self.starting_deadline_seconds or DEFAULT_DEADLINE_SECONDS

    @property
    def attempts_allowed(self) -> int:
        """Attempts of one run when the runner fails with a retryable error."""
        return self.max_attempts or DEFAULT_MAX_ATTEMPTS

    def schedule(self) -> schedules.Schedule:
        """The compiled schedule (raises ScheduleError for an expression that no longer parses)."""
        return schedules.parse_schedule(self.schedule_expression, self.schedule_timezone)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence after `moment`, or None when disabled or never again."""
        if not self.enabled:
            return None
        return self.schedule().next_after(moment, self.anchor)

    def to_api(self) -> dict[str, Any]:
        """The job object of the API."""
        body: dict[str, Any] = {
            "account": self.account,
            "group": self.group,
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "details": dict(self.details),
            "schedule_expression": self.schedule_expression,
            "schedule_timezone": self.schedule_timezone,
            "enabled": self.enabled,
            "modified_at": iso_or_none(self.modified_at),
            "modified_by": self.modified_by,
            "next": iso_or_none(self.next),
            "last_run": dict(self.last_run) if self.last_run else None,
            "version": self.version,
        }
        for name in ("starting_deadline_seconds", "concurrency_policy", "max_attempts"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.tags is not None:
            body["tags"] = [{"key": k, "value": v} for k, v in self.tags]
        if self.notify is not None:
            body["notify"] = list(self.notify)
        return body


def new_job_id() -> str:
    """A fresh job id (UUID v4, lowercase)."""
    return str(uuid.uuid4())


def _unwrap(body: Any) -> dict[str, Any]:
    """The job fields of a body in either form: the job itself, or `{"job": ..., "tags": ...}`."""
    if not isinstance(body, dict):
        raise BadRequest("body: expected a JSON object")
    if isinstance(body.get("job"), dict) and set(body) <= {"job", "tags"}:
        fields = dict(body["job"])
        if "tags" in body:
            fields["tags"] = body["tags"]
        return fields
    return dict(body)


def _string(
    fields: Mapping[str, Any], name: str, *, required: bool = False, default: str = ""
) -> str:
    value = fields.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name}: required")
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{name}: expected a string")
    if required and not value.strip():
        raise BadRequest(f"{name}: must not be empty")
    if len(value) > LIMITS[name]:
        raise BadRequest(f"{name}: at most {LIMITS[name]} characters")
    return value


def _integer(fields: Mapping[str, Any], name: str) -> int | None:
    low, high = INTEGER_RANGES[name]
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name}: expected an integer")
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be between {low} and {high}")
    return value


def _details(fields: Mapping[str, Any], entry: AccountEntry) -> dict[str, str]:
    details = fields.get("details")
    if details is None:
        raise BadRequest("details: required, with at least details.runner")
    if not isinstance(details, dict):
        raise BadRequest("details: expected an object of string values")
    if len(details) > MAX_DETAILS:
        raise BadRequest(f"details: at most {MAX_DETAILS} keys")
    for key, value in details.items():
        if len(key) > MAX_DETAIL_KEY or not key:
            raise BadRequest(f"details: keys must be 1-{MAX_DETAIL_KEY} characters")
        if not isinstance(value, str):
            raise BadRequest(f"details.{key}: expected a string value")
        if len(value) > MAX_DETAIL_VALUE:
            raise BadRequest(f"details.{key}: at most {MAX_DETAIL_VALUE} characters")
    name = details.get("runner")
    if not name:
        raise BadRequest("details.runner: required")
    runner = get_runner(name)
    if runner is None:
        raise BadRequest(f"details.runner: unknown runner {name!r}")
    if not entry.allows(name):
        raise BadRequest(f"details.runner: {name} is not allowed for account {entry.name}")
    try:
        runner.validate(details)
        # A resource of another account or region than the entry's: refused here, and the
        # run's credentials could not reach it anyway (credentials.py's session policy).
        check_scope(runner, details, entry.scope(aws.region(), _own_account(entry, details)))
    except DetailsError as error:
        raise BadRequest(str(error)) from None
    return dict(details)


def _own_account(entry: AccountEntry, details: Mapping[str, str]) -> str | None:
    """The stack's own account, for an entry acting in it (no account_id) whose details name
    an account; None when not needed. ServiceUnavailable when STS cannot say."""
    if entry.account_id or not names_an_account(details):
        return None
    try:
        return aws.own_account_id()
    except (ClientError, BotoCoreError) as error:
        raise ServiceUnavailable(
            "could not determine the stack's own AWS account "
            f"(sts GetCallerIdentity: {type(error).__name__}); retry "
            "shortly"
        ) from error


def _tags(fields: Mapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    tags = fields.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise BadRequest(f"tags: expected a list of at most {MAX_TAGS} {{key, value}} objects")
    result = []
    for index, tag in enumerate(tags):
        if (
            not isinstance(tag, dict)
            or set(tag) - {"key", "value"}
            or not isinstance(tag.get("key"), str)
            or not 1 <= len(tag["key"]) <= MAX_TAG_KEY
            or not isinstance(tag.get("value", ""), str)
            or len(tag.get("value", "")) > MAX_TAG_VALUE
        ):
            raise BadRequest(
                f'tags[{index}]: expected {{"key": 1-{MAX_TAG_KEY} chars, '
                f'"value": at most {MAX_TAG_VALUE} chars}}'
            )
        result.append((tag["key"], tag.get("value", "")))
    return tuple(result)


def _notify(fields: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The outcomes to announce: a list without repeats of NOTIFY_OUTCOMES (null: the default)."""
    notify = fields.get("notify")
    if notify is None:
        return None
    expected = ", ".join(NOTIFY_OUTCOMES)
    if not isinstance(notify, list):
        raise BadRequest(f"notify: expected a list of outcomes ({expected})")
    for index, outcome in enumerate(notify):
        if not isinstance(outcome, str) or outcome not in NOTIFY_OUTCOMES:
            raise BadRequest(f"notify[{index}]: expected one of {expected}")
    if len(set(notify)) != len(notify):
        raise BadRequest("notify: an outcome is listed twice")
    return tuple(notify)


def job_schedule(fields: Mapping[str, Any]) -> tuple[str, str, schedules.Schedule]:
    """The expression, timezone and compiled schedule of a job's fields; BadRequest naming the
    field otherwise (the schedule preview gives the very same message)."""
    expression = _string(fields, "schedule_expression", required=True)
    tz = _string(fields, "schedule_timezone", default="UTC") or "UTC"
    try:
        return expression, tz, schedules.parse_schedule(expression, tz)
    except schedules.ScheduleError as error:
        raise BadRequest(f"{getattr(error, 'field', 'schedule_expression')}: {error}") from None


def _registry_entry(entry: AccountEntry, previous: Job | None) -> str | None:
    """The registry key to record on the job: once written under the account's own entry, a
    later write under the `*` entry does not erase that (so `*` never takes the job over)."""
    if entry.is_default and previous is not None and previous.registry_entry:
        return previous.registry_entry
    return entry.key or None


def job_from_request(
    body: Any,
    *,
    account: str,
    group: str,
    job_id: str | None,
    entry: AccountEntry,
    now: datetime,
    previous: Job | None = None,
) -> Job:
    """Validate a POST/PUT body entirely (raising BadRequest) and build the job to store.

    `previous` is the stored job for a PUT: it keeps its id, and its schedule anchor unless the
    expression, timezone or enabled flag changed.
    """
    fields = _unwrap(body)
    for key in sorted(fields):
        if key not in CLIENT_FIELDS and key not in READ_ONLY_FIELDS and key not in PATH_FIELDS:
            raise BadRequest(f"{key}: unknown field")
    for key, expected in (("account", account), ("group", group), ("id", job_id)):
        if key in fields and fields[key] != expected:
            if key == "id" and expected is None:
                raise BadRequest("id: set by the server; omit it when creating a job")
            raise BadRequest(f"{key}: {fields[key]!r} does not match the path ({expected!r})")
    name = _string(fields, "name", required=True)
    description = _string(fields, "description")
    modified_by = _string(fields, "modified_by")
    expression, tz, schedule = job_schedule(fields)
    enabled = fields.get("enabled", False)
    if enabled is None:
        enabled = False
    if not isinstance(enabled, bool):
        raise BadRequest("enabled: expected true or false")
    deadline = _integer(fields, "starting_deadline_seconds")
    max_attempts = _integer(fields, "max_attempts")
    policy = fields.get("concurrency_policy")
    if policy is not None and policy not in CONCURRENCY_POLICIES:
        raise BadRequest("concurrency_policy: expected Allow or Forbid")
    details = _details(fields, entry)
    tags = _tags(fields)
    notify = _notify(fields)

    minute = utc_minute(now)
    anchor = minute
    if (
        previous is not None
        and previous.anchor is not None
        and (
            previous.schedule_expression == expression
            and previous.schedule_timezone == tz
            and (previous.enabled or not enabled)
        )
    ):
        anchor = previous.anchor
    job = Job(
        account=account,
        group=group,
        id=job_id or new_job_id(),
        name=name,
        schedule_expression=expression,
        details=details,
        description=description,
        schedule_timezone=tz,
        enabled=enabled,
        modified_at=now.replace(microsecond=0),
        modified_by=modified_by,
        starting_deadline_seconds=deadline,
        concurrency_policy=policy,
        max_attempts=max_attempts,
        tags=tags,
        notify=notify,
        version=(previous.version + 1) if previous else 1,
        anchor=anchor,
        last_run=previous.last_run if previous else None,
        registry_entry=_registry_entry(entry, previous),
    )
    next_at = None
    if enabled:
        next_at = schedule.next_after(minute, anchor)
        schedule_set_anew = previous is None or (
            previous.schedule_expression != expression or previous.schedule_timezone != tz
        )
        # An enabled job that could never run is refused like `0 0 30 2 *`; a stored one
        # whose one time has passed stays editable, and a disabled job may keep it.
        if next_at is None and schedule_set_anew:
            raise BadRequest(never_runs_message(minute))
    return replace(job, next=next_at)


def never_runs_message(minute: datetime) -> str:
    """Why an enabled job's schedule is refused when it has no occurrence after `minute`."""
    return (
        f"schedule_expression: no occurrence after {iso(minute)}: "
        f"an enabled job with this schedule would never run"
    )
