"""The runs queue (one SQS message per run attempt) and the tick parts queue (one message per
part of a minute's tick), both sent in checked batches."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from .jobs import SEGMENT, Job, is_job_id
from .runs import Trigger, is_run_id, scheduled_run_id

BATCH_SIZE = 10
SEND_ROUNDS = 3


@dataclass(frozen=True)
class RunMessage:
    """What the worker needs to find and claim a run."""

    account: str
    group: str
    job_id: str
    run_id: str
    trigger: Trigger  # from_body refuses a body naming any other
    scheduled_for: str
    attempt: int = 1
    # A scheduled run's job version, and the epoch seconds of the successor due item the tick
    # put for it (None: none). The worker drops a run whose job has moved to another version
    # and deletes that successor. None (bodies of run-now and of earlier releases): as before.
    version: int | None = None
    next_due: int | None = None

    def to_body(self) -> str:
        """The message body (JSON; fields left None are left out)."""
        return json.dumps(
            {k: v for k, v in asdict(self).items() if v is not None}, separators=(",", ":")
        )

    @classmethod
    def from_body(cls, body: str) -> RunMessage:
        """Parse a body; ValueError for anything that is not a run message."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("run message: expected a JSON object")
        try:
            message = cls(**data)
        except TypeError as error:
            raise ValueError(f"run message: {error}") from None
        for name in ("account", "group", "job_id", "run_id", "trigger", "scheduled_for"):
            if not isinstance(getattr(message, name), str):
                raise ValueError(f"run message: {name} must be a string")
        if (
            isinstance(message.attempt, bool)
            or not isinstance(message.attempt, int)
            or not 1 <= message.attempt <= 10
        ):
            raise ValueError("run message: attempt must be 1-10")
        for name, least in (("version", 1), ("next_due", 0)):
            value = getattr(message, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < least
            ):
                raise ValueError(f"run message: {name} must be an integer of at least {least}")
        message._check_names()
        return message

    @property
    def droppable(self) -> bool:
        """Whether this run may be given up as outdated (Store.drop_outdated_run): a first
        attempt of a scheduled run that names its job version."""
        return self.trigger == "schedule" and self.version is not None and self.attempt == 1

    def outdated_by(self, job: Job | None) -> bool:
        """Whether this scheduled run must not run because its job version is no longer the
        stored `job` (None: deleted): the job was deleted or disabled since, or changed before
        the occurrence was due. A change after the occurrence leaves it to run (as before the
        runs named their version): it was due while its version was current."""
        if self.trigger != "schedule" or self.version is None:
            return False
        if job is None or not job.enabled:
            return True
        if job.version == self.version:
            return False
        occurrence = datetime.strptime(self.scheduled_for, "%Y-%m-%dT%H:%M:%SZ")
        return job.modified_at is None or job.modified_at <= occurrence.replace(tzinfo=UTC)

    def _check_names(self) -> None:
        """The ids must be ones this service issues: a message naming anything else was not
        sent by the tick or by a run-now, and must not create run records under its names."""
        if not SEGMENT.fullmatch(self.account) or not SEGMENT.fullmatch(self.group):
            raise ValueError("run message: account and group must be path segments")
        if not is_job_id(self.job_id):
            raise ValueError("run message: job_id is not a job id")
        if self.trigger not in ("schedule", "manual"):
            raise ValueError("run message: trigger must be schedule or manual")
        if not is_run_id(self.run_id) or self.run_id.endswith("-s") != (self.trigger == "schedule"):
            raise ValueError(f"run message: run_id is not a {self.trigger} run id")
        if self.trigger == "schedule":
            try:
                occurrence = datetime.strptime(self.scheduled_for, "%Y-%m-%dT%H:%M:%SZ")
            except ValueError:
                raise ValueError("run message: scheduled_for is not a UTC time") from None
            if scheduled_run_id(occurrence.replace(tzinfo=UTC)) != self.run_id:
                raise ValueError("run message: run_id does not match scheduled_for")


class _Sendable(Protocol):
    def to_body(self) -> str: ...


_Body = TypeVar("_Body", bound=_Sendable)


class _Queue:
    """An SQS queue known by name (and URL, when configured) that sends bodies in checked
    batches."""

    def __init__(self, client: Any, queue_name: str, queue_url: str | None = None) -> None:
        self.client = client
        self.queue_name = queue_name
        self._url = queue_url

    @property
    def url(self) -> str:
        """The queue URL (looked up once by name when not configured)."""
        if self._url is None:
            self._url = self.client.get_queue_url(QueueName=self.queue_name)["QueueUrl"]
        return self._url

    def _send_checked(self, bodies: Sequence[_Body]) -> list[_Body]:
        """Send up to 10 bodies; the ones still failing after retries are returned.

        SendMessageBatch answers HTTP 200 even when some entries failed: each batch's
        `Failed` list must be checked, or what they carried is silently lost.
        """
        pending = {str(i): b for i, b in enumerate(bodies)}
        for _ in range(SEND_ROUNDS):
            if not pending:
                break
            result = self.client.send_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": i, "MessageBody": b.to_body()} for i, b in pending.items()],
            )
            pending = {
                f["Id"]: pending[f["Id"]] for f in result.get("Failed", []) if f["Id"] in pending
            }
        return list(pending.values())


class RunQueue(_Queue):
    """Sends run messages to the runs queue."""

    def send(self, message: RunMessage, delay_seconds: int = 0) -> None:
        """Send one message (after `delay_seconds`, at most 900)."""
        self.client.send_message(
            QueueUrl=self.url,
            MessageBody=message.to_body(),
            DelaySeconds=min(max(delay_seconds, 0), 900),
        )

    def release(self, receipt_handles: Sequence[str]) -> None:
        """Make received messages visible again at once (best effort: else they come back
        after the queue's visibility timeout)."""
        for batch in batches(receipt_handles):
            self.client.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for i, handle in enumerate(batch)
                ],
            )

    def send_batch(self, messages: Sequence[RunMessage]) -> list[RunMessage]:
        """Send up to 10 messages; the ones still failing after retries are returned (a run
        whose message failed must not be taken for queued)."""
        return self._send_checked(messages)


MAX_SHARD = 1000


@dataclass(frozen=True)
class TickPart:
    """One part of a minute's tick: the minute and the due-item shards it processes."""

    minute: str
    shards: tuple[int, ...]

    def to_body(self) -> str:
        """The message body (JSON)."""
        return json.dumps(
            {"minute": self.minute, "shards": list(self.shards)}, separators=(",", ":")
        )

    def moment(self) -> datetime:
        """The minute as a UTC datetime."""
        return datetime.strptime(self.minute, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)

    @classmethod
    def from_body(cls, body: str) -> TickPart:
        """Parse a body; ValueError for anything that is not a tick part."""
        data = json.loads(body)
        if not isinstance(data, dict) or set(data) != {"minute", "shards"}:
            raise ValueError("tick part: expected an object with minute and shards")
        minute, shards = data["minute"], data["shards"]
        if not isinstance(minute, str):
            raise ValueError("tick part: minute must be a string")
        try:
            moment = datetime.strptime(minute, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise ValueError("tick part: minute is not a UTC time") from None
        if moment.second:
            raise ValueError("tick part: minute has seconds")
        if (
            not isinstance(shards, list)
            or not shards
            or not all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n < MAX_SHARD
                for n in shards
            )
        ):
            raise ValueError(f"tick part: shards must be a non-empty list of 0-{MAX_SHARD - 1}")
        return cls(minute=minute, shards=tuple(shards))


class TickPartQueue(_Queue):
    """Sends the minute's tick parts to the tick parts queue."""

    def send_parts(self, parts: Sequence[TickPart]) -> list[TickPart]:
        """Send the parts, 10 a call; the ones still failing after retries are returned."""
        left: list[TickPart] = []
        for batch in batches(parts):
            left.extend(self._send_checked(batch))
        return left


def batches(items: Iterable[Any], size: int = BATCH_SIZE) -> Iterable[list[Any]]:
    """`items` in lists of at most `size`."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
