"""The DynamoDB store: jobs, runs, the due index and the aggregate counters, in one table.

Keys:
- job       pk `ACCOUNT#<account>`  sk `JOB#<group>#<id>`   (jobs of an account or group: one Query)
- job copy  pk `JOB#<job id>`       sk `SPEC`               (the same job, beside its runs)
- run       pk `JOB#<job id>`       sk `RUN#<run id>`       (run ids sort by time: newest first)
- queued    pk `DUE#<shard>`        sk `<due_at:011d>#<job id>#<version>` (the due item the API
            writes with a job's version; the shard is a hash of the job id)
- slot      pk `DUE#<shard>#<slot:011d>` sk `<job id>#<version>` (the due item the tick writes
            for a job's next occurrence, in the partition of the minute of its first tick)
- lock      pk `DUE#<shard>`        sk `TICK`  (the shard's tick lock and watermark)
- counters  pk `METRICS`            sk `JOBS#<account>` | `RUNS` | `TICK`

Every due item carries what the tick's decision needs (the schedule, its anchor and starting
deadline): the tick reads no job. Under a shard's lock (chalicelib/tick.py says why no item is
missed) the tick reads its queued items up to the minute (one Query) and the slot partitions
after its watermark (one Query each, one a minute), sends the runs and puts each successor in
its slot: one 1-unit write on a shard's partition per run, none on the account's (its jobs may
all be due at once) and no index write. A queued item is deleted once consumed (a job's first
run after an API write); slot items are never deleted by the tick: they expire (TTL
`expires_at`, a week after their occurrence). A due item names its job version: a run of a
version deleted, disabled or changed before the occurrence is dropped by the worker
(RunMessage.outdated_by), which deletes that run's successor so the old version's chain
stops. Items an earlier release wrote lack the schedule:
for those only the tick reads the job. The job item keeps `due_at` as of its last API write;
the job's `next` and `last_run` are derived on read from it and its newest runs (the tick and
the worker write no job item, but for the hold of a `Forbid` job: `forbid_run`,
`forbid_until`, see hold_forbid).

The job copy (sk `SPEC`, which sorts after every `RUN#`) makes a job's GET one request: a
newest-first Query of its run partition reads the job, then its newest runs. The API writes
both items in one transaction; the account item stays the listing item and the one that holds
a Forbid job (the copy never carries the hold). Jobs stored before the copy existed have none:
their GET reads the account item too and adopts it (Store._adopt): no migration step.
Run-partition reads that want runs only select `begins_with(sk, "RUN#")`.

Legacy index `due` (partition `due_shard`, sort `due_at`, on job items): where earlier versions
kept the schedule. The tick moves what is left in it to due items (`migrate_legacy_due`).

Watch index `leases` (sparse, sharded): partition `lease_watch` = `LEASE#<n>`, sort
`lease_until`. Only runs claimed from a message delivered again or a later attempt carry
`lease_watch` (the sweep finishes them if their worker dies); a first delivery never does.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from botocore.exceptions import ClientError

from .aws import error_code
from .dynamo import from_attr, from_item, to_attr, to_item
from .errors import Conflict, NotFound, PreconditionFailed, ServiceUnavailable
from .jobs import Job
from .observability import logger
from .queue import RunMessage
from .runs import FINAL_STATUSES, Run
from .schedules import ScheduleError

DUE_INDEX = "due"  # legacy: drained by migrate_legacy_due
LEASE_INDEX = "leases"
LEASE_SHARDS = 8
METRICS_PK = "METRICS"
TRANSACT_LIMIT = 100
BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
BATCH_ROUNDS = 6
HISTORY_PAGE = 10  # newest runs read to derive a job's `next` and `last_run`
WORKER_STATUSES = ("succeeded", "failed", "skipped")  # the outcomes `last_run` shows
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)
TRANSIENT_CANCELLATIONS = frozenset(
    {"ThrottlingError", "TransactionConflict", "ProvisionedThroughputExceeded"}
)
# The tick reads only these from the index: enough to decide the occurrence and build the
# message; the worker re-reads the whole job.
DUE_PROJECTION = [
    "account",
    "group",
    "id",
    "schedule_expression",
    "schedule_timezone",
    "anchor",
    "starting_deadline_seconds",
    "due_at",
    "enabled",
]

F = TypeVar("F", bound=Callable[..., Any])


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _from_epoch(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


def _parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def shard_of(job_id: str, shards: int) -> int:
    """The due-index shard of a job: a stable hash of its id."""
    return int.from_bytes(hashlib.blake2b(job_id.encode(), digest_size=4).digest(), "big") % shards


def job_key(account: str, group: str, job_id: str) -> dict[str, Any]:
    """The primary key of a job item."""
    return {"pk": {"S": f"ACCOUNT#{account}"}, "sk": {"S": f"JOB#{group}#{job_id}"}}


SPEC_SK = "SPEC"  # the job copy's sort key: after every `RUN#<id>` of its partition
# Attributes of an account's job item that its copy does not carry: the Forbid hold lives on
# the account item only, and `due_shard` would put the copy in the legacy due index.
NOT_COPIED = frozenset({"pk", "sk", "forbid_run", "forbid_until", "due_shard"})


def copy_key(job_id: str) -> dict[str, Any]:
    """The primary key of a job's copy in its run partition."""
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": SPEC_SK}}


def copy_of(item: Mapping[str, Any], job_id: str) -> dict[str, Any]:
    """The copy of a job item: the same attributes under the run partition's `SPEC` key."""
    copied = {k: v for k, v in item.items() if k not in NOT_COPIED}
    copied.update(copy_key(job_id))
    return copied


def run_key(job_id: str, run_id: str) -> dict[str, Any]:
    """The primary key of a run item."""
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"RUN#{run_id}"}}


# Slot items expire (the table's TTL attribute, as run items do) this long after their
# occurrence: the tick never deletes them, DynamoDB's TTL removes them for free.
SLOT_TTL_SECONDS = 7 * 86400
TICK_LOCK_SK = "TICK"  # a shard's lock and watermark: outside the numeric `sk <= minute` range


def slot_of(due_at: datetime) -> int:
    """The slot of an occurrence: the epoch minute of the first tick at or after it."""
    return -(-_epoch(due_at) // 60) * 60


@dataclass(frozen=True)
class DueEntry:
    """A due item: one pending occurrence of one version of a job, with what the tick needs
    to decide it (none of it on a legacy item, written by an earlier release).

    A *queued* item (`slot` False) is what the API writes: in the shard's partition, sorted
    by time, deleted by the tick once consumed. A *slot* item is the successor the tick
    writes: in the partition of its slot minute, never deleted by the tick (TTL removes it).
    """

    shard: int
    due_at: datetime
    account: str
    group: str
    job_id: str
    version: int
    schedule_expression: str | None = None  # None: a legacy item (the tick re-reads its job)
    schedule_timezone: str = "UTC"
    anchor: datetime | None = None
    starting_deadline_seconds: int | None = None
    slot: bool = False

    @property
    def legacy(self) -> bool:
        """Whether the item lacks the decision's inputs (written by an earlier release)."""
        return self.schedule_expression is None

    def key(self) -> dict[str, Any]:
        """The item's primary key."""
        if self.slot:
            return slot_key(self.shard, self.due_at, self.job_id, self.version)
        return due_key(self.shard, self.due_at, self.job_id, self.version)

    def to_item(self) -> dict[str, Any]:
        """The item (a few hundred bytes: one write unit)."""
        values: dict[str, Any] = {
            "account": self.account,
            "group": self.group,
            "id": self.job_id,
            "version": self.version,
        }
        if not self.legacy:
            values.update(
                # Not `due_at`: that names a job item's next occurrence (and keys the legacy
                # index), and a due item is no job item.
                occurrence=_epoch(self.due_at),
                schedule_expression=self.schedule_expression,
                schedule_timezone=self.schedule_timezone,
                anchor=_epoch(self.anchor) if self.anchor else None,
                starting_deadline_seconds=self.starting_deadline_seconds,
            )
        if self.slot:
            values["expires_at"] = _epoch(self.due_at) + SLOT_TTL_SECONDS
        item = to_item(values)
        item.update(self.key())
        return item

    def moved_to(self, next_at: datetime) -> DueEntry:
        """The same job and version at its next occurrence: a slot item."""
        return replace(self, due_at=next_at, slot=True)

    def job(self) -> Job:
        """The job as far as the tick's decision needs it (its `next` is this occurrence)."""
        return Job(
            account=self.account,
            group=self.group,
            id=self.job_id,
            name="",
            schedule_expression=self.schedule_expression or "",
            details={},
            schedule_timezone=self.schedule_timezone,
            enabled=True,
            starting_deadline_seconds=self.starting_deadline_seconds,
            version=self.version,
            anchor=self.anchor,
            next=self.due_at,
        )


def due_key(shard: int, due_at: datetime, job_id: str, version: int) -> dict[str, Any]:
    """The primary key of a queued due item: the shard's partition, sorted by time."""
    return {"pk": {"S": f"DUE#{shard}"}, "sk": {"S": f"{_epoch(due_at):011d}#{job_id}#{version}"}}


def slot_key(shard: int, due_at: datetime, job_id: str, version: int) -> dict[str, Any]:
    """The primary key of a slot item: the partition of the shard's slot minute."""
    return {
        "pk": {"S": f"DUE#{shard}#{slot_of(due_at):011d}"},
        "sk": {"S": f"{job_id}#{version}"},
    }


def tick_lock_key(shard: int) -> dict[str, Any]:
    """The primary key of a shard's tick lock and watermark."""
    return {"pk": {"S": f"DUE#{shard}"}, "sk": {"S": TICK_LOCK_SK}}


def due_entry_of(job: Job, shards: int) -> DueEntry | None:
    """The due item a job written through the API needs (None: disabled or never again)."""
    if not job.enabled or job.next is None:
        return None
    return DueEntry(
        shard_of(job.id, shards),
        job.next,
        job.account,
        job.group,
        job.id,
        job.version,
        schedule_expression=job.schedule_expression,
        schedule_timezone=job.schedule_timezone,
        anchor=job.anchor,
        starting_deadline_seconds=job.starting_deadline_seconds,
    )


def due_entry_from_item(item: Mapping[str, Any]) -> DueEntry:
    """A due item (queued, slot or legacy) as a DueEntry."""
    v = from_item(item)
    shard, _, slot = v["pk"][len("DUE#") :].partition("#")
    due_at = v["occurrence"] if "occurrence" in v else int(v["sk"].split("#", 1)[0])
    has_fields = "schedule_expression" in v
    return DueEntry(
        shard=int(shard),
        due_at=datetime.fromtimestamp(int(due_at), tz=UTC),
        account=v["account"],
        group=v["group"],
        job_id=v["id"],
        version=int(v["version"]),
        schedule_expression=v["schedule_expression"] if has_fields else None,
        schedule_timezone=v.get("schedule_timezone", "UTC"),
        anchor=_from_epoch(v.get("anchor")),
        starting_deadline_seconds=v.get("starting_deadline_seconds"),
        slot=bool(slot),
    )


@dataclass(frozen=True)
class TickLock:
    """A shard's tick lock as a take found it: whether this part holds it now, and the epoch
    minute the shard is processed through (the holder's, when refused)."""

    held: bool
    done_through: int


def is_condition_failure(error: ClientError) -> bool:
    """Whether a write was refused by its condition (alone or inside a transaction)."""
    code = error_code(error)
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = error.response.get("CancellationReasons") or []
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons) or not reasons
    return False


def _unavailable(error: ClientError) -> bool:
    if error_code(error) == "TransactionCanceledException":
        # Cancelled for a transient reason (throttling, a concurrent transaction), not by a
        # condition: worth a retry, not a 409/412.
        reasons = {r.get("Code") for r in error.response.get("CancellationReasons") or []}
        return bool(reasons & TRANSIENT_CANCELLATIONS)
    return (
        error_code(error) in THROTTLING_CODES
        or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
    )


def conditional(call: Callable[..., Any], **request: Any) -> bool:
    """Make a conditional write; False when its condition refused it."""
    try:
        call(**request)
    except ClientError as error:
        if is_condition_failure(error):
            return False
        raise
    return True


def translated(method: F) -> F:
    """Turn DynamoDB throttling or failure past the client's retries into ServiceUnavailable."""
    if inspect.isgeneratorfunction(method):
        # A generator's calls happen while it is iterated, after the call returned.
        @functools.wraps(method)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from method(*args, **kwargs)
            except ClientError as error:
                if _unavailable(error):
                    raise ServiceUnavailable("the job store is busy; retry shortly") from error
                raise

        return generator  # type: ignore[return-value]

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ClientError as error:
            if _unavailable(error):
                raise ServiceUnavailable("the job store is busy; retry shortly") from error
            raise

    return wrapper  # type: ignore[return-value]


def _next_after(job: Job, moment: datetime) -> datetime | None:
    """The job's occurrence after `moment`; None for an expression this version cannot parse."""
    try:
        return job.next_after(moment)
    except ScheduleError:
        return None


def job_to_item(job: Job, shards: int) -> dict[str, Any]:
    """A job as a DynamoDB item; `due_at` is its next occurrence as of this write (the due
    item is what the tick reads)."""
    values: dict[str, Any] = {
        "type": "job",
        "account": job.account,
        "group": job.group,
        "id": job.id,
        "name": job.name,
        "description": job.description,
        "details": dict(job.details),
        "schedule_expression": job.schedule_expression,
        "schedule_timezone": job.schedule_timezone,
        "enabled": job.enabled,
        "modified_at": job.modified_at.strftime("%Y-%m-%dT%H:%M:%SZ") if job.modified_at else None,
        "modified_by": job.modified_by,
        "version": job.version,
        "anchor": _epoch(job.anchor) if job.anchor else None,
        "starting_deadline_seconds": job.starting_deadline_seconds,
        "concurrency_policy": job.concurrency_policy,
        "max_attempts": job.max_attempts,
        "tags": [{"key": k, "value": v} for k, v in job.tags] if job.tags is not None else None,
        "notify": list(job.notify) if job.notify is not None else None,
        "last_run": dict(job.last_run) if job.last_run else None,
        "registry_entry": job.registry_entry,
    }
    if job.enabled and job.next is not None:
        values["due_at"] = _epoch(job.next)
        values["due_part"] = shard_of(job.id, shards)  # where its due items live
    item = to_item(values)
    item.update(job_key(job.account, job.group, job.id))
    return item


def job_from_item(item: Mapping[str, Any]) -> Job:
    """A job item (or a due-index projection of one) as a Job."""
    v = from_item(item)
    tags = v.get("tags")
    return Job(
        account=v["account"],
        group=v["group"],
        id=v["id"],
        name=v.get("name", ""),
        schedule_expression=v.get("schedule_expression", ""),
        details=v.get("details", {}),
        description=v.get("description", ""),
        schedule_timezone=v.get("schedule_timezone", "UTC"),
        enabled=v.get("enabled", False),
        modified_at=_parse_iso(v.get("modified_at")),
        modified_by=v.get("modified_by", ""),
        starting_deadline_seconds=v.get("starting_deadline_seconds"),
        concurrency_policy=v.get("concurrency_policy"),
        max_attempts=v.get("max_attempts"),
        tags=tuple((t["key"], t["value"]) for t in tags) if tags is not None else None,
        notify=tuple(v["notify"]) if v.get("notify") is not None else None,
        version=v.get("version", 1),
        anchor=_from_epoch(v.get("anchor")),
        next=_from_epoch(v.get("due_at")),
        last_run=v.get("last_run"),
        registry_entry=v.get("registry_entry"),
    )


def run_to_item(run: Run, expires_at: int) -> dict[str, Any]:
    """A run as a DynamoDB item, expiring (TTL) at `expires_at`."""
    item = to_item(
        {
            "type": "run",
            "run_id": run.run_id,
            "job_id": run.job_id,
            "account": run.account,
            "group": run.group,
            "trigger": run.trigger,
            "scheduled_for": run.scheduled_for,
            "status": run.status,
            "queued_at": run.queued_at,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "attempts": run.attempts,
            "output": run.output,
            "error": run.error,
            "error_code": run.error_code,
            "data": dict(run.data) or None,
            "expires_at": expires_at,
        }
    )
    item.update(run_key(run.job_id, run.run_id))
    return item


def run_from_item(item: Mapping[str, Any]) -> Run:
    """A run item as a Run."""
    v = from_item(item)
    return Run(
        run_id=v["run_id"],
        job_id=v["job_id"],
        account=v["account"],
        group=v["group"],
        trigger=v["trigger"],
        scheduled_for=v["scheduled_for"],
        status=v["status"],
        queued_at=v.get("queued_at"),
        started_at=v.get("started_at"),
        finished_at=v.get("finished_at"),
        attempts=v.get("attempts", 0),
        output=v.get("output"),
        error=v.get("error"),
        error_code=v.get("error_code"),
        data=v.get("data") or {},
    )


def _request_key(request: Mapping[str, Any]) -> str:
    """The key of a BatchWriteItem request, as a string."""
    if "PutRequest" in request:
        item = request["PutRequest"]["Item"]
    else:
        item = request["DeleteRequest"]["Key"]
    return cast(str, item["pk"]["S"]) + "|" + cast(str, item["sk"]["S"])


def _enabled_delta(before: bool | None, after: bool | None) -> dict[str, int]:
    delta = {"enabled": 0, "disabled": 0}
    for flag, sign in ((before, -1), (after, 1)):
        if flag is not None:
            delta["enabled" if flag else "disabled"] += sign
    return delta


def _counts(item: Mapping[str, Any]) -> dict[str, int]:
    """The `enabled`/`disabled` numbers of an account's counter item."""
    return {
        state: int(item[state]["N"]) if state in item else 0 for state in ("enabled", "disabled")
    }


@dataclass(frozen=True)
class ServiceCounters:
    """The service-wide counters: runs by final status, and the newest finished tick."""

    runs: Mapping[str, int]
    last_tick: int  # epoch seconds of the newest finished tick's minute; 0: none yet


# When a claim may take a run (claim_run): any one of these, joined with OR. The run id is the
# lock, so these are the only states in which a worker may start it.
CLAIM_CLAUSES = {
    # Never recorded: the first delivery of a scheduled run (a run-now is recorded `queued`
    # before its message is sent, so claim_run(must_exist=True) leaves this clause out).
    "never_recorded": "attribute_not_exists(pk)",
    # Queued for exactly this attempt: a run-now, or the retry an earlier attempt queued (a
    # copy of an older attempt's message finds a higher count and is refused).
    "queued_for_this_attempt": "(#status = :queued AND attempts = :previous)",
    # Running under a lease that ended: its worker died, the run is taken over.
    "lease_expired": "(#status = :running AND lease_until < :epoch)",
}


@dataclass(frozen=True)
class Refused:
    """A claim refused, with the run's status and lease expiry as the refusing write found
    them (None: no such run). Falsy, like the None a refused claim used to be."""

    lease: tuple[str, int] | None

    def __bool__(self) -> bool:
        return False


def _lease_of(item: Mapping[str, Any] | None) -> tuple[str, int] | None:
    """A run item's status and lease expiry (epoch seconds, 0 when none); None without one."""
    if not item:
        return None
    return from_attr(item["status"]), int(from_attr(item.get("lease_until", {"N": "0"})))


class Store:
    """Jobs, runs and counters in one DynamoDB table, through a low-level client."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        shards: int,
        run_retention_days: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.table = table_name
        self.shards = shards
        self.retention_seconds = run_retention_days * 86400
        self.clock = clock

    # --- jobs -------------------------------------------------------------------------------

    def _counter_update(self, account: str, delta: Mapping[str, int]) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": {"S": METRICS_PK}, "sk": {"S": f"JOBS#{account}"}},
                "UpdateExpression": "ADD enabled :e, disabled :d",
                "ExpressionAttributeValues": {
                    ":e": {"N": str(delta["enabled"])},
                    ":d": {"N": str(delta["disabled"])},
                },
            }
        }

    def _due_put(self, job: Job) -> list[dict[str, Any]]:
        """The transaction action that writes the due item of a job's new version, if any."""
        entry = due_entry_of(job, self.shards)
        if entry is None:
            return []
        return [{"Put": {"TableName": self.table, "Item": entry.to_item()}}]

    def _copy_put(self, item: Mapping[str, Any], job_id: str) -> dict[str, Any]:
        """The transaction action that writes a job's copy (unconditional: the account item's
        condition in the same transaction guards both)."""
        return {"Put": {"TableName": self.table, "Item": copy_of(item, job_id)}}

    @translated
    def create_job(self, job: Job) -> None:
        """Store a new job (its account item and its copy); Conflict if its id is taken."""
        item = job_to_item(job, self.shards)
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": item,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    self._copy_put(item, job.id),
                    self._counter_update(job.account, _enabled_delta(None, job.enabled)),
                    *self._due_put(job),
                ]
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise Conflict(f"job {job.id} already exists") from None
            raise

    @translated
    def get_job(self, account: str, group: str, job_id: str, *, progress: bool = True) -> Job:
        """The stored job, or NotFound; with `progress`, its `next` and `last_run` derived
        from its runs.

        With `progress` (the API): one Query of the job's run partition, newest first, reads
        its copy and its newest runs. A copy naming another account or group is NotFound: a
        job id never reveals another account's job. A job stored before copies existed is
        read from its account item as well, and adopted (given its copy).

        Without (the worker, the sweep): one GetItem of the copy, returned as stored (the
        worker compares its account and group with the message's); the account item when
        there is no copy.
        """
        if not progress:
            found = self.client.get_item(
                TableName=self.table, Key=copy_key(job_id), ConsistentRead=True
            ).get("Item")
            return job_from_item(found or self._get_job_item(account, group, job_id))
        item, runs = self._newest_items(job_id)
        if item is None:
            # No copy: a job an earlier release stored, or no job at all.
            item = self._get_job_item(account, group, job_id)
            self._adopt(item, job_id)
        elif (from_attr(item["account"]), from_attr(item["group"])) != (account, group):
            raise NotFound(f"job not found: {group}/{job_id}")
        shard = from_attr(item["due_part"]) if "due_part" in item else None
        return self._with_history(job_from_item(item), shard, runs)

    def _get_job_item(self, account: str, group: str, job_id: str) -> dict[str, Any]:
        item = self.client.get_item(
            TableName=self.table, Key=job_key(account, group, job_id), ConsistentRead=True
        ).get("Item")
        if item is None:
            raise NotFound(f"job not found: {group}/{job_id}")
        return cast(dict[str, Any], item)

    def _newest_items(self, job_id: str) -> tuple[dict[str, Any] | None, list[Run]]:
        """A job's copy (None when it has none) and its newest runs, in one Query: `SPEC`
        sorts after every `RUN#`, so newest first it comes first."""
        page = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk <= :spec",
            ExpressionAttributeValues={":pk": {"S": f"JOB#{job_id}"}, ":spec": {"S": SPEC_SK}},
            ScanIndexForward=False,
            Limit=1 + HISTORY_PAGE,
            ConsistentRead=True,
        )
        items = page.get("Items", [])
        copy = items[0] if items and items[0]["sk"]["S"] == SPEC_SK else None
        runs = [run_from_item(i) for i in items if i["sk"]["S"].startswith("RUN#")]
        return copy, runs[:HISTORY_PAGE]

    def _adopt(self, item: Mapping[str, Any], job_id: str) -> bool:
        """Give a job an earlier release stored its copy, if its account item still has the
        version read (a job changed or deleted meanwhile must not get a stale or zombie copy;
        its writer wrote or deleted the copy itself). Best effort: the read has succeeded, and
        a failed adoption is tried again on the next read. True when written."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self.table,
                            "Key": {"pk": item["pk"], "sk": item["sk"]},
                            "ConditionExpression": "version = :v",
                            "ExpressionAttributeValues": {":v": item["version"]},
                        }
                    },
                    self._copy_put(item, job_id),
                ]
            )
        except ClientError as error:
            if not is_condition_failure(error):  # (a refusal is the race this guards against)
                logger.warning(
                    "job copy not written; the job's reads stay two requests until it is",
                    extra={"job_id": job_id, "error_code": error_code(error)},
                )
            return False
        return True

    def _with_history(self, job: Job, shard: int | None, runs: list[Run]) -> Job:
        """The job with `next` and `last_run` derived from its newest runs.

        Neither the tick nor the worker writes the job item (one account's jobs share its
        partition), so the run records are where the job's progress is: `next` is the
        occurrence after the newest scheduled run when that is at or past the stored one (or
        after the stored one once the tick has taken its due item), and `last_run` the newest
        run the worker finished (else what an older version stored).
        """
        last_run = next((r.summary() for r in runs if r.status in WORKER_STATUSES), job.last_run)
        next_at = job.next
        newest = next((r for r in runs if r.trigger == "schedule"), None)
        occurrence = _parse_iso(newest.scheduled_for) if newest else None
        now = self.clock()
        taken = False
        if next_at is not None and occurrence is not None and occurrence >= next_at:
            next_at = _next_after(job, occurrence)
            if next_at is not None and shard is not None and _epoch(next_at) <= now:
                # Its time has come, and its due item is the tick's slot item (never deleted):
                # the tick has taken it once the shard's watermark passed its slot.
                through = self._done_through(shard)
                taken = through is not None and through >= slot_of(next_at)
        elif next_at is not None and shard is not None and _epoch(next_at) <= now:
            # Its time has come: if the tick took the (queued) due item, its run not yet
            # claimed, the job has moved on.
            key = due_key(shard, next_at, job.id, job.version)
            taken = "Item" not in self.client.get_item(
                TableName=self.table, Key=key, ConsistentRead=True, ProjectionExpression="pk"
            )
        if taken and next_at is not None:
            next_at = _next_after(job, next_at)
        return replace(job, next=next_at, last_run=last_run)

    @translated
    def list_jobs(self, account: str, group: str | None = None) -> list[str]:
        """Sorted `group/id` of an account's jobs, or `id` of one group's."""
        prefix = "JOB#" if group is None else f"JOB#{group}#"
        names = []
        for item in self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={
                ":pk": {"S": f"ACCOUNT#{account}"},
                ":prefix": {"S": prefix},
            },
            ProjectionExpression="sk",
        ):
            rest = item["sk"]["S"][len(prefix) :]
            names.append(rest.replace("#", "/", 1) if group is None else rest)
        return sorted(names)

    @translated
    def jobs_page(
        self,
        account: str,
        group: str | None,
        limit: int,
        after: str | None = None,
        *,
        full: bool = False,
    ) -> tuple[list[Any], str | None]:
        """One page of an account's (or a group's) jobs in key order (group, then id): names
        as `list_jobs` gives them, or Jobs when `full`; and the position to continue after
        (None on the last page). One Query of at most `limit` + 1 items (and DynamoDB's 1 MB),
        so no page ends in an empty one."""
        prefix = "JOB#" if group is None else f"JOB#{group}#"
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"ACCOUNT#{account}"},
                ":prefix": {"S": prefix},
            },
            "Limit": limit + 1,
        }
        if not full:
            query["ProjectionExpression"] = "sk"
        if after is not None:
            query["ExclusiveStartKey"] = {
                "pk": {"S": f"ACCOUNT#{account}"},
                "sk": {"S": prefix + after},
            }
        page = self.client.query(**query)
        items = page.get("Items", [])
        if len(items) > limit:
            items, last = items[:limit], items[limit - 1]["sk"]["S"]
        else:
            last = page.get("LastEvaluatedKey", {}).get("sk", {}).get("S")
        if full:
            found: list[Any] = [job_from_item(item) for item in items]
        else:
            rests = [item["sk"]["S"][len(prefix) :] for item in items]
            found = [r.replace("#", "/", 1) if group is None else r for r in rests]
        return found, None if last is None else last[len(prefix) :]

    @translated
    def replace_job(self, job: Job, previous: Job) -> None:
        """Write `job` over `previous` (its account item and its copy, in one transaction);
        PreconditionFailed if it changed since it was read.

        The account item is updated, not put, so that a Forbid hold on it stays as it is; its
        copy, which never carries the hold, is put whole. `last_run` is what was read (the
        worker no longer writes it: the runs are its record, see _with_history).
        """
        item = job_to_item(job, self.shards)
        names: dict[str, str] = {}
        values: dict[str, Any] = {":expected": {"N": str(previous.version)}}
        sets, removes = [], []
        managed = (
            "name",
            "description",
            "details",
            "schedule_expression",
            "schedule_timezone",
            "enabled",
            "modified_at",
            "modified_by",
            "version",
            "anchor",
            "starting_deadline_seconds",
            "concurrency_policy",
            "max_attempts",
            "tags",
            "notify",
            "last_run",
            "registry_entry",
            "due_shard",
            "due_at",
            "due_part",
        )
        for index, attribute in enumerate(managed):
            names[f"#a{index}"] = attribute
            if attribute in item:
                sets.append(f"#a{index} = :a{index}")
                values[f":a{index}"] = item[attribute]
            else:
                removes.append(f"#a{index}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        names["#version"] = "version"
        update = {
            "Update": {
                "TableName": self.table,
                "Key": job_key(job.account, job.group, job.id),
                "UpdateExpression": expression,
                "ConditionExpression": "#version = :expected",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }
        actions = [update, self._copy_put(item, job.id), *self._due_put(job)]
        if job.enabled != previous.enabled:
            actions.append(
                self._counter_update(job.account, _enabled_delta(previous.enabled, job.enabled))
            )
        try:
            self.client.transact_write_items(TransactItems=actions)
        except ClientError as error:
            if is_condition_failure(error):
                raise PreconditionFailed(
                    f"job {job.id} was changed by another request; read it again"
                ) from None
            raise

    @translated
    def delete_job(self, job: Job) -> None:
        """Delete the job as it was read (both its items; its runs stay until they expire);
        PreconditionFailed if it changed meanwhile."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": job_key(job.account, job.group, job.id),
                            "ConditionExpression": "version = :v",
                            "ExpressionAttributeValues": {":v": {"N": str(job.version)}},
                        }
                    },
                    {"Delete": {"TableName": self.table, "Key": copy_key(job.id)}},
                    self._counter_update(job.account, _enabled_delta(job.enabled, None)),
                ]
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise PreconditionFailed(f"job {job.id} was changed by another request") from None
            raise
        self._drop_empty_counter(job.account)

    @translated
    def delete_group(self, account: str, group: str) -> int:
        """Delete every job of a group, however many; the number deleted."""
        deleted = 0
        for _ in range(100):  # each round deletes what it read; a racing write costs a round
            items = list(
                self._query(
                    KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                    ExpressionAttributeValues={
                        ":pk": {"S": f"ACCOUNT#{account}"},
                        ":prefix": {"S": f"JOB#{group}#"},
                    },
                    ProjectionExpression="pk, sk, version, enabled",
                )
            )
            if not items:
                if deleted:
                    self._drop_empty_counter(account)
                return deleted
            chunk_size = (TRANSACT_LIMIT - 1) // 2  # two deletes a job, and the counter
            for start in range(0, len(items), chunk_size):
                chunk = items[start : start + chunk_size]
                flags = [from_attr(i["enabled"]) if "enabled" in i else False for i in chunk]
                delta = {"enabled": -sum(flags), "disabled": -(len(flags) - sum(flags))}
                actions = []
                for i in chunk:
                    job_id = i["sk"]["S"][len(f"JOB#{group}#") :]
                    actions.append(
                        {
                            "Delete": {
                                "TableName": self.table,
                                "Key": {"pk": i["pk"], "sk": i["sk"]},
                                "ConditionExpression": "version = :v",
                                "ExpressionAttributeValues": {":v": i["version"]},
                            }
                        }
                    )
                    actions.append({"Delete": {"TableName": self.table, "Key": copy_key(job_id)}})
                actions.append(self._counter_update(account, delta))
                try:
                    self.client.transact_write_items(TransactItems=actions)
                    deleted += len(chunk)
                except ClientError as error:
                    if not is_condition_failure(error):
                        raise
        raise Conflict(f"group {group} keeps changing; retry the delete")

    # --- the due items -----------------------------------------------------------------------

    @translated
    def due_entries(self, shard: int, up_to: datetime) -> Iterator[DueEntry]:
        """Queued due items of one shard at or before `up_to` (all pages), oldest first.

        Strongly consistent: an item written just before must not be missed by the tick."""
        for item in self._query(
            KeyConditionExpression="pk = :pk AND sk < :bound",
            ExpressionAttributeValues={
                ":pk": {"S": f"DUE#{shard}"},
                ":bound": {"S": f"{_epoch(up_to) + 1:011d}"},
            },
            ConsistentRead=True,
        ):
            yield due_entry_from_item(item)

    @translated
    def slot_entries(self, shard: int, slot: int) -> Iterator[DueEntry]:
        """The slot items of one shard's slot minute (epoch seconds), all pages.

        Strongly consistent: the previous holder of the shard's lock may have put them a
        moment ago."""
        for item in self._query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"DUE#{shard}#{slot:011d}"}},
            ConsistentRead=True,
        ):
            yield due_entry_from_item(item)

    @translated
    def take_tick_lock(
        self, shard: int, minute: datetime, holder: str, lease_seconds: int
    ) -> TickLock:
        """Take a shard's tick lock for `lease_seconds` unless another holder's lease is live.

        One UpdateItem either way: held, with the shard's watermark (a new shard starts just
        before `minute`); or refused, with the watermark of the holder that refused it."""
        now = int(self.clock())
        try:
            answer = self.client.update_item(
                TableName=self.table,
                Key=tick_lock_key(shard),
                UpdateExpression=(
                    "SET holder = :me, held_until = :until, "
                    "done_through = if_not_exists(done_through, :start)"
                ),
                # Its own holder may take it again: a take applied whose answer was lost,
                # sent again by the SDK.
                ConditionExpression=(
                    "attribute_not_exists(holder) OR held_until < :now OR holder = :me"
                ),
                ExpressionAttributeValues={
                    ":me": {"S": holder},
                    ":until": {"N": str(now + lease_seconds)},
                    ":start": {"N": str(_epoch(minute) - 60)},
                    ":now": {"N": str(now)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            old = error.response.get("Item") or {}
            return TickLock(False, int(from_attr(old.get("done_through", {"N": "0"}))))
        return TickLock(True, int(from_attr(answer["Attributes"]["done_through"])))

    @translated
    def release_tick_lock(self, shard: int, holder: str, done_through: int | None) -> bool:
        """Let go of a shard's tick lock, advancing its watermark to `done_through` (None:
        leave it); False when `holder` no longer holds it (its lease ended, taken over)."""
        values: dict[str, Any] = {":me": {"S": holder}}
        expression = "REMOVE holder, held_until"
        if done_through is not None:
            expression = "SET done_through = :through " + expression
            values[":through"] = {"N": str(done_through)}
        return conditional(
            self.client.update_item,
            TableName=self.table,
            Key=tick_lock_key(shard),
            UpdateExpression=expression,
            ConditionExpression="holder = :me",
            ExpressionAttributeValues=values,
        )

    def _done_through(self, shard: int) -> int | None:
        """A shard's watermark (None: never ticked)."""
        item = self.client.get_item(
            TableName=self.table,
            Key=tick_lock_key(shard),
            ConsistentRead=True,
            ProjectionExpression="done_through",
        ).get("Item")
        return int(from_attr(item["done_through"])) if item and "done_through" in item else None

    @translated
    def drop_outdated_run(self, message: RunMessage, job: Job | None) -> bool:
        """Give up a run the worker need not run: a first attempt of a scheduled run whose job
        version is outdated by the stored `job` (None: deleted; RunMessage.outdated_by) and
        that no delivery claimed. Deletes the successor the tick put for it (`next_due`), so
        that the version's chain stops. False (nothing done) otherwise: a claimed run must end."""
        if not message.droppable or not message.outdated_by(job):
            return False
        if self.run_lease(message.job_id, message.run_id) is not None:
            return False
        if message.version is not None and message.next_due is not None:
            self.delete_slot(message.job_id, message.version, message.next_due)
        return True

    @translated
    def delete_slot(self, job_id: str, version: int, due_at: int) -> None:
        """Delete the slot item of a job version's occurrence at `due_at` (epoch seconds): the
        successor of a stale run, so that the old version's chain stops."""
        moment = datetime.fromtimestamp(due_at, tz=UTC)
        self.client.delete_item(
            TableName=self.table,
            Key=slot_key(shard_of(job_id, self.shards), moment, job_id, version),
        )

    @translated
    def jobs_of(self, names: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], Job]:
        """The job items named (account, group, id), by name; absent ones left out.

        100 keys a call, eventually consistent: half the read units, so that one account's
        100,000 jobs read within the minute stay under its partition's 3,000 a second (a job
        changed in the last second may be read as it was: as if it changed just after).
        """
        keys = list(dict.fromkeys(names))
        found: dict[tuple[str, str, str], Job] = {}
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                self.table: {"Keys": [job_key(*k) for k in keys[start : start + BATCH_GET_LIMIT]]}
            }
            for round_ in range(BATCH_ROUNDS):
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    job = job_from_item(item)
                    found[(job.account, job.group, job.id)] = job
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05 * 2**round_)
            else:
                raise ServiceUnavailable("the job store is busy; retry shortly")
        return found

    @translated
    def put_due(self, entries: Sequence[DueEntry]) -> list[DueEntry]:
        """Write due items, 25 a call; the ones still unwritten after retries."""
        unique = {e.key()["sk"]["S"] + e.key()["pk"]["S"]: e for e in entries}
        return self._batch_write(
            [(e, {"PutRequest": {"Item": e.to_item()}}) for e in unique.values()]
        )

    @translated
    def delete_due(self, entries: Sequence[DueEntry]) -> list[DueEntry]:
        """Delete due items, 25 a call; the ones still not deleted after retries."""
        unique = {e.key()["sk"]["S"] + e.key()["pk"]["S"]: e for e in entries}
        return self._batch_write(
            [(e, {"DeleteRequest": {"Key": e.key()}}) for e in unique.values()]
        )

    def _batch_write(self, requests: Sequence[tuple[DueEntry, dict[str, Any]]]) -> list[DueEntry]:
        """BatchWriteItem with its unprocessed items retried; the entries left unwritten.

        Unconditional writes are safe here: the keys are deterministic (a repeated put or
        delete is a no-op) and a run of an outdated version is dropped by the worker.
        """
        left: list[DueEntry] = []
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            chunk = requests[start : start + BATCH_WRITE_LIMIT]
            by_key = {_request_key(r): e for e, r in chunk}
            pending = [r for _, r in chunk]
            for round_ in range(BATCH_ROUNDS):
                answer = self.client.batch_write_item(RequestItems={self.table: pending})
                pending = (answer.get("UnprocessedItems") or {}).get(self.table, [])
                if not pending:
                    break
                time.sleep(0.05 * 2**round_)
            left.extend(by_key[_request_key(r)] for r in pending)
        return left

    @translated
    def migrate_legacy_due(self, shard: int) -> int:
        """Move the jobs an earlier version left in the legacy index shard to due items.

        Put the due item, then take the job out of the index (conditional on its version: a
        job changed meanwhile has its own due item, and this one is dropped when read).
        Returns how many moved; after the first run, one empty Query a shard.
        """
        moved = 0
        items = list(
            self._query(
                IndexName=DUE_INDEX,
                KeyConditionExpression="due_shard = :shard",
                ExpressionAttributeValues={":shard": {"S": f"DUE#{shard}"}},
            )
        )
        if not items:
            return 0
        names = [
            (from_attr(i["account"]), from_attr(i["group"]), from_attr(i["id"])) for i in items
        ]
        for key, job in self.jobs_of(names).items():
            entry = due_entry_of(job, self.shards) if job.enabled else None
            if entry is not None and self.put_due([entry]):
                continue  # not written: the job stays in the index for the next tick
            if conditional(
                self.client.update_item,
                TableName=self.table,
                Key=job_key(*key),
                UpdateExpression="REMOVE due_shard",
                ConditionExpression="version = :v",
                ExpressionAttributeValues={":v": {"N": str(job.version)}},
            ):
                moved += 1
        return moved

    # --- runs -------------------------------------------------------------------------------

    def _expires_at(self) -> int:
        return int(self.clock()) + self.retention_seconds

    @translated
    def put_run(self, run: Run) -> bool:
        """Record a run unless one with its id exists; False when it does."""
        if not conditional(
            self.client.put_item,
            TableName=self.table,
            Item=run_to_item(run, self._expires_at()),
            ConditionExpression="attribute_not_exists(pk)",
        ):
            return False
        if run.status in FINAL_STATUSES:
            self.count_runs({run.status: 1})
        return True

    @translated
    def claim_run(
        self,
        run: Run,
        attempt: int,
        lease_seconds: int,
        now: datetime,
        must_exist: bool = False,
        watch: bool = False,
    ) -> Run | Refused:
        """Take the run for attempt `attempt`: the run id is the lock.

        Succeeds when the run is absent (unless `must_exist`: a run-now is always recorded
        `queued` before its message is sent), or queued for exactly this attempt, or running
        under a lease that expired (its worker died). Returns the claimed run, or Refused
        (falsy, with the status and lease it found) when someone else holds it, it is
        finished, or it must exist and does not.

        With `watch`, the run goes on the watch index until it is recorded (`lease_watch`,
        in the same write): the sweep finds it there if its lease ends first.
        """
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        epoch = int(now.timestamp())
        watched: dict[str, Any] = {}
        if watch:
            watched[":watch"] = {"S": f"LEASE#{shard_of(run.job_id, LEASE_SHARDS)}"}
        try:
            result = self.client.update_item(
                TableName=self.table,
                Key=run_key(run.job_id, run.run_id),
                UpdateExpression=(
                    "SET #status = :running, started_at = :now, lease_until = :lease, "
                    "run_id = :run_id, job_id = :job_id, account = :account, #group = :group, "
                    "#trigger = :trigger, scheduled_for = :scheduled_for, "
                    "queued_at = if_not_exists(queued_at, :now), expires_at = :expires, "
                    + ("lease_watch = :watch, " if watch else "")
                    + "#type = :type ADD attempts :one"
                ),
                ConditionExpression=" OR ".join(
                    clause
                    for name, clause in CLAIM_CLAUSES.items()
                    if not (must_exist and name == "never_recorded")
                ),
                ExpressionAttributeNames={
                    "#status": "status",
                    "#group": "group",
                    "#trigger": "trigger",
                    "#type": "type",
                },
                ExpressionAttributeValues={
                    ":running": {"S": "running"},
                    ":queued": {"S": "queued"},
                    ":now": {"S": stamp},
                    ":lease": {"N": str(epoch + lease_seconds)},
                    ":epoch": {"N": str(epoch)},
                    ":previous": {"N": str(attempt - 1)},
                    ":one": {"N": "1"},
                    ":run_id": {"S": run.run_id},
                    ":job_id": {"S": run.job_id},
                    ":account": {"S": run.account},
                    ":group": {"S": run.group},
                    ":trigger": {"S": run.trigger},
                    ":scheduled_for": {"S": run.scheduled_for},
                    ":expires": {"N": str(self._expires_at())},
                    ":type": {"S": "run"},
                    **watched,
                },
                ReturnValues="ALL_NEW",
                # A refused claim answers with what refused it: the worker needs no second
                # read to tell a live holder from a finished run (Powertools' idempotency
                # layer does the same).
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if is_condition_failure(error):
                return Refused(_lease_of(error.response.get("Item")))
            raise
        return run_from_item(result["Attributes"])

    @translated
    def finish_run(
        self, run: Run, claimed_attempts: int | None = None, *, count: bool = True
    ) -> bool:
        """Record a run's outcome (final, or queued again for a retry) and update `last_run`.

        With `claimed_attempts`, only while this worker still holds the claim it made (a
        worker whose lease expired must not overwrite the one that took over); False then.
        """
        put: dict[str, Any] = {
            "TableName": self.table,
            "Item": run_to_item(run, self._expires_at()),
        }
        if claimed_attempts is not None:
            put.update(
                ConditionExpression="#status = :running AND attempts = :attempts",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":running": {"S": "running"},
                    ":attempts": {"N": str(claimed_attempts)},
                },
            )
        if not conditional(self.client.put_item, **put):
            return False
        # The job's `last_run` is read from the run records (get_job): no write to the job
        # item, which shares its account's partition with every other job of the account.
        if run.status in FINAL_STATUSES and count:
            # else the caller adds it to the counters with others (count_runs)
            self.count_runs({run.status: 1})
        return True

    @translated
    def run_lease(self, job_id: str, run_id: str) -> tuple[str, int] | None:
        """A run's status and lease expiry (epoch seconds, 0 when none), or None when absent."""
        item = self.client.get_item(
            TableName=self.table,
            Key=run_key(job_id, run_id),
            ConsistentRead=True,
            ProjectionExpression="#status, lease_until",
            ExpressionAttributeNames={"#status": "status"},
        ).get("Item")
        return _lease_of(item)

    @translated
    def get_run(self, job_id: str, run_id: str) -> Run | None:
        """A run record, or None."""
        item = self.client.get_item(
            TableName=self.table, Key=run_key(job_id, run_id), ConsistentRead=True
        ).get("Item")
        return run_from_item(item) if item else None

    @translated
    def list_runs(
        self, job_id: str, limit: int, after: str | None = None
    ) -> tuple[list[Run], str | None]:
        """Runs of a job, newest first: a page of `limit` and the run id to continue after."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :r)",
            "ExpressionAttributeValues": {":pk": {"S": f"JOB#{job_id}"}, ":r": {"S": "RUN#"}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after:
            query["ExclusiveStartKey"] = run_key(job_id, after)
        page = self.client.query(**query)
        runs = [run_from_item(i) for i in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return runs, (last["sk"]["S"][len("RUN#") :] if last else None)

    @translated
    def running_runs(self, job_id: str, now: datetime, newest: int = 20) -> list[Run]:
        """Runs of a job that are running under a live lease (among its newest runs)."""
        page = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            FilterExpression="#status = :running AND lease_until >= :now",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":pk": {"S": f"JOB#{job_id}"},
                ":r": {"S": "RUN#"},
                ":running": {"S": "running"},
                ":now": {"N": str(int(now.timestamp()))},
            },
            ScanIndexForward=False,
            Limit=newest,
        )
        return [run_from_item(i) for i in page.get("Items", [])]

    # --- Forbid holds and runs whose message or worker is gone (chalicelib/sweep.py) ----------

    @translated
    def hold_forbid(
        self, job: Job, run_id: str, lease_until: int, now: datetime, replacing: str | None = None
    ) -> bool:
        """Mark a Forbid job as running `run_id` until `lease_until`; False when another run
        holds it under a live lease (or the job is gone). With `replacing`, only if that run
        still holds it (its hold outlived it: see forbid_holder).

        The hold is on the job item, so Forbid sees a run of any length; it is not in the due
        index's projection, so it costs no index write. Only Forbid jobs pay for it.
        """
        values = {":run_id": {"S": run_id}, ":until": {"N": str(lease_until)}}
        if replacing is None:
            condition = (
                "attribute_exists(pk) AND (attribute_not_exists(forbid_run)"
                " OR forbid_until < :now OR forbid_run = :run_id)"
            )
            values[":now"] = {"N": str(int(now.timestamp()))}
        else:
            condition = "forbid_run = :holder"
            values[":holder"] = {"S": replacing}
        return conditional(
            self.client.update_item,
            TableName=self.table,
            Key=job_key(job.account, job.group, job.id),
            UpdateExpression="SET forbid_run = :run_id, forbid_until = :until",
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )

    @translated
    def forbid_holder(self, job: Job) -> str | None:
        """The run holding a Forbid job, if any."""
        item = (
            self.client.get_item(
                TableName=self.table,
                Key=job_key(job.account, job.group, job.id),
                ConsistentRead=True,
                ProjectionExpression="forbid_run",
            ).get("Item")
            or {}
        )
        return item["forbid_run"]["S"] if "forbid_run" in item else None

    @translated
    def release_forbid(self, account: str, group: str, job_id: str, run_id: str) -> bool:
        """End the Forbid hold of `run_id` (not another run's); False when it held none."""
        return conditional(
            self.client.update_item,
            TableName=self.table,
            Key=job_key(account, group, job_id),
            UpdateExpression="REMOVE forbid_run, forbid_until",
            ConditionExpression="forbid_run = :run_id",
            ExpressionAttributeValues={":run_id": {"S": run_id}},
        )

    @translated
    def watched_runs(self, shard: int, up_to: int) -> Iterator[tuple[str, str]]:
        """(job id, run id) of the watched runs of one shard whose lease ended before `up_to`
        (epoch seconds)."""
        for item in self._query(
            IndexName=LEASE_INDEX,
            KeyConditionExpression="lease_watch = :shard AND lease_until < :up_to",
            ExpressionAttributeValues={
                ":shard": {"S": f"LEASE#{shard}"},
                ":up_to": {"N": str(up_to)},
            },
        ):
            yield item["pk"]["S"][len("JOB#") :], item["sk"]["S"][len("RUN#") :]

    @translated
    def unwatch(self, job_id: str, run_id: str) -> None:
        """Take a run that is no longer running off the watch index."""
        conditional(
            self.client.update_item,
            TableName=self.table,
            Key=run_key(job_id, run_id),
            UpdateExpression="REMOVE lease_watch",
            ConditionExpression="attribute_exists(pk) AND #status <> :running",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":running": {"S": "running"}},
        )

    @translated
    def requeue_lost(self, run: Run, claimed_attempts: int, now: datetime, error: str) -> bool:
        """Record a run whose worker stopped as queued again (its message already sent), if
        it is still that claim under an expired lease; False otherwise."""
        return conditional(
            self.client.update_item,
            TableName=self.table,
            Key=run_key(run.job_id, run.run_id),
            UpdateExpression=(
                "SET #status = :queued, #error = :error, error_code = :code REMOVE lease_watch"
            ),
            ConditionExpression=(
                "#status = :running AND attempts = :attempts AND lease_until < :now"
            ),
            ExpressionAttributeNames={"#status": "status", "#error": "error"},
            ExpressionAttributeValues={
                ":queued": {"S": "queued"},
                ":running": {"S": "running"},
                ":error": {"S": error},
                ":code": {"S": "RunLost"},
                ":attempts": {"N": str(claimed_attempts)},
                ":now": {"N": str(int(now.timestamp()))},
            },
        )

    @translated
    def lose_run(
        self,
        run: Run,
        now: datetime,
        *,
        claimed_attempts: int | None = None,
        message_attempt: int | None = None,
    ) -> Run | None:
        """Record `run` (status `failed`, its error and code set) as lost; the stored run, or
        None when it is not lost: finished, held under a live lease, or queued for a later
        attempt than the lost message's.

        With `claimed_attempts` (the sweep): only that claim, its lease expired. With
        `message_attempt` (a dead-lettered message): the run may also be absent (a scheduled
        run never claimed) or queued for exactly that attempt.
        """
        epoch = {"N": str(int(now.timestamp()))}
        values: dict[str, Any] = {
            ":failed": {"S": "failed"},
            ":running": {"S": "running"},
            ":now": epoch,
            ":finished": {"S": run.finished_at or now.strftime("%Y-%m-%dT%H:%M:%SZ")},
            ":error": to_attr(run.error or "run lost"),
            ":code": to_attr(run.error_code),
            ":run_id": {"S": run.run_id},
            ":job_id": {"S": run.job_id},
            ":account": {"S": run.account},
            ":group": {"S": run.group},
            ":trigger": {"S": run.trigger},
            ":scheduled_for": {"S": run.scheduled_for},
            ":type": {"S": "run"},
            ":expires": {"N": str(self._expires_at())},
            ":zero": {"N": "0"},
        }
        if claimed_attempts is not None:
            condition = "#status = :running AND attempts = :attempts AND lease_until < :now"
            values[":attempts"] = {"N": str(claimed_attempts)}
        else:
            assert message_attempt is not None
            condition = (
                "(#status = :queued AND attempts < :attempt)"
                " OR (#status = :running AND lease_until < :now)"
            )
            if run.trigger != "manual":  # a run-now is recorded before its message is sent
                condition = "attribute_not_exists(pk) OR " + condition
            values.update({":queued": {"S": "queued"}, ":attempt": {"N": str(message_attempt)}})
        try:
            result = self.client.update_item(
                TableName=self.table,
                Key=run_key(run.job_id, run.run_id),
                UpdateExpression=(
                    "SET #status = :failed, finished_at = :finished, #error = :error, "
                    "error_code = :code, run_id = :run_id, job_id = :job_id, "
                    "account = :account, #group = :group, #trigger = :trigger, "
                    "scheduled_for = :scheduled_for, #type = :type, "
                    "expires_at = if_not_exists(expires_at, :expires), "
                    "attempts = if_not_exists(attempts, :zero) REMOVE lease_watch"
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames={
                    "#status": "status",
                    "#error": "error",
                    "#group": "group",
                    "#trigger": "trigger",
                    "#type": "type",
                },
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if is_condition_failure(error):
                return None
            raise
        lost = run_from_item(result["Attributes"])
        self.count_runs({"failed": 1})
        return lost

    # --- counters ---------------------------------------------------------------------------

    @translated
    def count_runs(self, by_status: Mapping[str, int]) -> None:
        """Add to the runs-by-final-status counters."""
        names = {f"#s{i}": s for i, s in enumerate(by_status)}
        values = {f":v{i}": {"N": str(n)} for i, n in enumerate(by_status.values())}
        self.client.update_item(
            TableName=self.table,
            Key={"pk": {"S": METRICS_PK}, "sk": {"S": "RUNS"}},
            UpdateExpression="ADD " + ", ".join(f"#s{i} :v{i}" for i in range(len(names))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    @translated
    def record_tick(self, minute: datetime) -> None:
        """Remember the newest tick that finished (for /metrics)."""
        conditional(
            self.client.update_item,
            TableName=self.table,
            Key={"pk": {"S": METRICS_PK}, "sk": {"S": "TICK"}},
            UpdateExpression="SET last_tick = :m",
            ConditionExpression="attribute_not_exists(last_tick) OR last_tick < :m",
            ExpressionAttributeValues={":m": {"N": str(_epoch(minute))}},
        )

    @translated
    def counters(self) -> dict[str, dict[str, Any]]:
        """Every aggregate counter item, by sort key (one Query, never a scan)."""
        return {
            item["sk"]["S"]: {k: from_attr(v) for k, v in item.items() if k not in ("pk", "sk")}
            for item in self._query(
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": METRICS_PK}},
            )
        }

    def _drop_empty_counter(self, account: str) -> None:
        """Delete an account's job counter once it reads zero, so /metrics forgets accounts
        whose jobs are all gone. Conditional: a job created meanwhile keeps it. Best effort:
        the delete it follows is done, and /metrics skips a zero counter anyway."""
        try:
            conditional(
                self.client.delete_item,
                TableName=self.table,
                Key={"pk": {"S": METRICS_PK}, "sk": {"S": f"JOBS#{account}"}},
                ConditionExpression="(attribute_not_exists(enabled) OR enabled = :zero) AND "
                "(attribute_not_exists(disabled) OR disabled = :zero)",
                ExpressionAttributeValues={":zero": {"N": "0"}},
            )
        except ClientError:
            pass

    @translated
    def account_counters(
        self, accounts: list[str] | None, limit: int
    ) -> tuple[dict[str, dict[str, int]], bool]:
        """Job counters by account (`enabled`, `disabled`) of the named accounts, or of the
        first `limit` accounts when None; and whether more accounts were left out. Bounded:
        one BatchGetItem per 100 names, or one Query of at most `limit` + 1 items."""
        found: dict[str, dict[str, int]] = {}
        if accounts is not None:
            names = sorted(set(accounts))[:limit]
            for start in range(0, len(names), 100):
                keys = [
                    {"pk": {"S": METRICS_PK}, "sk": {"S": f"JOBS#{a}"}}
                    for a in names[start : start + 100]
                ]
                request = {self.table: {"Keys": keys}}
                while request:
                    answer = self.client.batch_get_item(RequestItems=request)
                    for item in answer.get("Responses", {}).get(self.table, []):
                        found[item["sk"]["S"][len("JOBS#") :]] = _counts(item)
                    request = answer.get("UnprocessedKeys") or {}
            return found, len(set(accounts)) > limit
        page = self.client.query(
            TableName=self.table,
            Limit=limit + 1,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": METRICS_PK}, ":prefix": {"S": "JOBS#"}},
        )
        items = page.get("Items", [])
        for item in items[:limit]:
            found[item["sk"]["S"][len("JOBS#") :]] = _counts(item)
        return found, len(items) > limit

    @translated
    def service_counters(self) -> ServiceCounters:
        """The service-wide counters (runs, ticks): two Queries around the `JOBS#` range,
        whatever the number of accounts."""
        found: dict[str, dict[str, Any]] = {}
        for condition, bound in (("sk < :bound", "JOBS#"), ("sk > :bound", "JOBS$")):
            for item in self._query(
                KeyConditionExpression=f"pk = :pk AND {condition}",
                ExpressionAttributeValues={":pk": {"S": METRICS_PK}, ":bound": {"S": bound}},
            ):
                found[item["sk"]["S"]] = {
                    k: from_attr(v) for k, v in item.items() if k not in ("pk", "sk")
                }
        return ServiceCounters(
            runs={status: int(n) for status, n in found.get("RUNS", {}).items()},
            last_tick=int(found.get("TICK", {}).get("last_tick", 0)),
        )

    def _query(self, **query: Any) -> Iterator[dict[str, Any]]:
        query["TableName"] = self.table
        while True:
            page = self.client.query(**query)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def table_definition(table_name: str) -> dict[str, Any]:
    """CreateTable arguments of the table (the local stack and tests; production uses infra/)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "due_shard", "AttributeType": "S"},
            {"AttributeName": "due_at", "AttributeType": "N"},
            {"AttributeName": "lease_watch", "AttributeType": "S"},
            {"AttributeName": "lease_until", "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": DUE_INDEX,
                "KeySchema": [
                    {"AttributeName": "due_shard", "KeyType": "HASH"},
                    {"AttributeName": "due_at", "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": [a for a in DUE_PROJECTION if a != "due_at"],
                },
            },
            {
                "IndexName": LEASE_INDEX,
                "KeySchema": [
                    {"AttributeName": "lease_watch", "KeyType": "HASH"},
                    {"AttributeName": "lease_until", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    }
