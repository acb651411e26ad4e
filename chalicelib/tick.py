"""The minute tick: fanned out in parts; each part finds its shards' due jobs, queues their
runs and advances them.

The scheduled tick only sends one message per part (a group of due-item shards) to the tick
parts queue; the part-tick function, driven by that queue, does the work. Every part keeps the
single tick's guarantees: run ids derived from the occurrence, send first and advance second
(a crash in between re-sends the same ids on the next delivery and the worker deduplicates),
and a retried, duplicated, late or overlapping part re-reads what is still due and re-sends
under the same ids.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import schedules
from .events import EventPublisher
from .jobs import Job, iso
from .observability import emit, flush, logger
from .queue import RunMessage, RunQueue, TickPart, TickPartQueue, batches
from .runs import Run, scheduled_run_id
from .store import BATCH_GET_LIMIT, BATCH_WRITE_LIMIT, DueEntry, Store

if TYPE_CHECKING:  # the batch utility is imported where used, as in the handlers below
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

MAX_MISSED_RECORDS = 100
# A job whose tick has been missing longer than this (or than its starting deadline, when that
# is longer) is only looked at over this window: older occurrences are too old to run, and are
# neither run nor recorded one by one.
CATCH_UP_WINDOW = timedelta(days=1)


class TickIncomplete(RuntimeError):
    """Some runs could not be queued; raised so that the platform retries the tick."""


@dataclass(frozen=True)
class Decision:
    """What the tick does with one due job at one minute."""

    run_at: datetime | None
    missed: tuple[datetime, ...]
    next_at: datetime | None


def tick_minute(event: dict[str, Any]) -> datetime:
    """The minute a scheduled event stands for: its `time`, never the wall clock."""
    stamp = event["time"]
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def decide(job: Job, schedule: schedules.Schedule, minute: datetime) -> Decision:
    """Collapse a job's past-due occurrences (from `job.next` up to `minute`) into one run.

    The latest occurrence runs if it is within the starting deadline; every older one, and the
    latest when it is too old, is recorded `missed` (the newest MAX_MISSED_RECORDS of them).
    """
    assert job.next is not None and job.next <= minute
    occurrence: datetime | None = job.next
    window = max(CATCH_UP_WINDOW, timedelta(seconds=job.deadline_seconds))
    if minute - job.next > window:
        # From the oldest minute still within the window: next_after is strictly after.
        occurrence = schedule.next_after(minute - window - timedelta(minutes=1), job.anchor)
    due: deque[datetime] = deque(maxlen=MAX_MISSED_RECORDS + 1)
    while occurrence is not None and occurrence <= minute:
        due.append(occurrence)
        occurrence = schedule.next_after(occurrence, job.anchor)
    if not due:
        # The window held none of its occurrences (a one-time or sparse schedule after a long
        # gap): record the one it was due at as missed rather than drop it without a trace.
        due.append(job.next)
    latest = due[-1]
    if (minute - latest).total_seconds() <= job.deadline_seconds:
        due.pop()
        return Decision(run_at=latest, missed=tuple(due)[-MAX_MISSED_RECORDS:], next_at=occurrence)
    return Decision(run_at=None, missed=tuple(due)[-MAX_MISSED_RECORDS:], next_at=occurrence)


@dataclass
class TickReport:
    """What one tick (or one part of it) did."""

    minute: datetime
    due: int = 0
    queued: int = 0
    missed: int = 0
    unschedulable: int = 0
    dropped: int = 0
    migrated: int = 0
    not_sent: list[str] = field(default_factory=list)
    not_advanced: int = 0


@dataclass
class _Due:
    """One job's current due items at this minute (more than one after an overlap) and what
    the tick decided for it."""

    job: Job
    entries: list[DueEntry]
    decision: Decision | None = None
    message: RunMessage | None = None


class Ticker:
    """Runs one tick (or one part: some shards) against a store and a queue, with bounded
    parallelism."""

    def __init__(
        self,
        store: Store,
        queue: RunQueue,
        shards: int,
        parallelism: int,
        events: EventPublisher | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.shards = shards
        self.parallelism = parallelism
        self.events = events  # `missed` events, published once per tick (run_tick)

    def run(self, minute: datetime, shards: Sequence[int] | None = None) -> TickReport:
        """Process every job of `shards` (default: all) due at or before `minute`."""
        shard_list = list(range(self.shards)) if shards is None else list(shards)
        report = TickReport(minute=minute)
        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            report.migrated = sum(pool.map(self.store.migrate_legacy_due, shard_list))
            entries = [
                entry
                for found in pool.map(
                    lambda shard: list(self.store.due_entries(shard, minute)), shard_list
                )
                for entry in found
            ]
            if not entries:
                return report
            names = list(dict.fromkeys((e.account, e.group, e.job_id) for e in entries))
            jobs: dict[tuple[str, str, str], Job] = {}
            for found_jobs in pool.map(self.store.jobs_of, batches(names, BATCH_GET_LIMIT)):
                jobs.update(found_jobs)
            due, stale = _current(entries, jobs)
            report.due = len(due)
            report.dropped = len(stale)
            to_send: list[_Due] = []
            to_advance: list[_Due] = []
            for item in due:
                item.decision = self._decide(item, minute, report, stale)
                if item.decision is None:
                    continue
                if item.decision.run_at is not None:
                    item.message = _message(item.job, item.decision.run_at)
                    to_send.append(item)
                else:
                    to_advance.append(item)
            # Missed occurrences are recorded before the job moves on (a retried part finds
            # them recorded); then runs are sent and their jobs advanced, a chunk at a time.
            report.missed += sum(
                pool.map(self._record_missed, [i for i in due if i.decision and i.decision.missed])
            )
            for sent, not_sent, not_advanced in pool.map(
                self._send_and_advance, batches(to_send, BATCH_WRITE_LIMIT)
            ):
                report.queued += sent
                report.not_sent.extend(not_sent)
                report.not_advanced += not_advanced
            for _, _, not_advanced in pool.map(
                self._send_and_advance, batches(to_advance, BATCH_WRITE_LIMIT)
            ):
                report.not_advanced += not_advanced
            if stale:
                # Items of jobs deleted, disabled or changed since: the API wrote the current
                # version's item. Left behind on failure: dropped again next minute.
                list(pool.map(self.store.delete_due, batches(stale, BATCH_WRITE_LIMIT)))
        return report

    def _decide(
        self, item: _Due, minute: datetime, report: TickReport, stale: list[DueEntry]
    ) -> Decision | None:
        job = item.job
        try:
            schedule = job.schedule()
        except schedules.ScheduleError as error:
            # A stored expression this version cannot parse: take it off the schedule so it
            # is not re-read every minute; the other jobs go on.
            report.unschedulable += 1
            logger.error(
                "job schedule no longer parses; taken off the schedule",
                extra={"job_id": job.id, "account": job.account, "reason": str(error)},
            )
            stale.extend(item.entries)
            return None
        try:
            return decide(job, schedule, minute)
        except Exception:  # one job's bug must not stop every other job's runs
            report.unschedulable += 1
            logger.exception(
                "could not decide a due job's occurrence; left due",
                extra={"job_id": job.id, "account": job.account},
            )
            return None

    def _record_missed(self, item: _Due) -> int:
        """Record a job's missed occurrences; how many were new (a retried tick finds some)."""
        job, decision = item.job, item.decision
        assert decision is not None
        recorded: list[Run] = []
        for occurrence in decision.missed:
            stamp = iso(occurrence)
            run = Run(
                run_id=scheduled_run_id(occurrence),
                job_id=job.id,
                account=job.account,
                group=job.group,
                trigger="schedule",
                scheduled_for=stamp,
                status="missed",
                finished_at=iso(datetime.now(UTC)),
                error=(
                    f"not started within its starting deadline ({job.deadline_seconds} s)"
                    if decision.run_at is None
                    else f"superseded by the later occurrence {iso(decision.run_at)}"
                ),
            )
            if self.store.put_run(run):
                recorded.append(run)
        if recorded:
            self._announce_missed(job, recorded)
        if decision.missed:
            logger.warning(
                "occurrences missed",
                extra={
                    "job_id": job.id,
                    "missed": len(decision.missed),
                    "oldest": iso(decision.missed[0]),
                    "newest": iso(decision.missed[-1]),
                },
            )
        return len(recorded)

    def _announce_missed(self, job: Job, runs: list[Run]) -> None:
        """Collect the `missed` events of newly recorded runs (a retried part finds none new).

        The part holds the whole job item (it re-read it to check the due item), so its name
        and `notify` cost no further read."""
        if self.events is None:
            return
        for run in runs:
            self.events.collect(run, job)

    def _send_and_advance(self, chunk: list[_Due]) -> tuple[int, list[str], int]:
        """Send the chunk's runs (10 a call), then advance the jobs whose run was sent (or that
        had none to send): put each next due item, then delete the ones read. Returns how many
        were sent, the run ids not sent and how many jobs were not advanced."""
        failed: set[str] = set()
        for batch in batches([i for i in chunk if i.message is not None]):
            failed |= {
                m.job_id + m.run_id
                for m in self.queue.send_batch([i.message for i in batch if i.message is not None])
            }
        not_sent = [
            i.message.run_id
            for i in chunk
            if i.message is not None and i.message.job_id + i.message.run_id in failed
        ]
        for item in chunk:
            if item.message is not None and item.message.job_id + item.message.run_id in failed:
                logger.error(
                    "run not queued", extra={"job_id": item.job.id, "run_id": item.message.run_id}
                )
        ready = [
            i
            for i in chunk
            if i.message is None or i.message.job_id + i.message.run_id not in failed
        ]
        moved = {
            id(i): i.entries[-1].moved_to(i.decision.next_at)
            for i in ready
            if i.decision is not None and i.decision.next_at is not None
        }
        unwritten = {e.key()["sk"]["S"] for e in self.store.put_due(list(moved.values()))}
        advanced = [
            i for i in ready if id(i) not in moved or moved[id(i)].key()["sk"]["S"] not in unwritten
        ]
        # Deleting what was read is what keeps a job from being read again: left behind (a
        # failed delete), the next tick re-sends under the same run ids and deletes it then.
        self.store.delete_due([e for i in advanced for e in i.entries])
        not_advanced = len(ready) - len(advanced)
        if not_advanced:
            logger.error(
                "jobs not advanced; the next tick re-sends their runs under the same ids",
                extra={"jobs": not_advanced},
            )
        return len(ready) - sum(1 for i in ready if i.message is None), not_sent, not_advanced


def _current(
    entries: list[DueEntry], jobs: dict[tuple[str, str, str], Job]
) -> tuple[list[_Due], list[DueEntry]]:
    """The due entries grouped by job, each job with its stored fields and its newest due item
    as `next`; and the entries of jobs gone, disabled or of another version."""
    current: dict[tuple[str, str, str], _Due] = {}
    stale: list[DueEntry] = []
    for entry in sorted(entries, key=lambda e: e.due_at):
        name = (entry.account, entry.group, entry.job_id)
        job = jobs.get(name)
        if job is None or not job.enabled or job.version != entry.version:
            stale.append(entry)
        elif name in current:
            # Two items of one job version: overlapping ticks each advanced it. The later one
            # came from the tick with the later minute, which decided every occurrence up to
            # it: that one goes on, the other is deleted with it.
            current[name].entries.append(entry)
            current[name].job = replace(current[name].job, next=entry.due_at)
        else:
            current[name] = _Due(job=replace(job, next=entry.due_at), entries=[entry])
    return list(current.values()), stale


def _message(job: Job, occurrence: datetime) -> RunMessage:
    return RunMessage(
        account=job.account,
        group=job.group,
        job_id=job.id,
        run_id=scheduled_run_id(occurrence),
        trigger="schedule",
        scheduled_for=iso(occurrence) or "",
    )


def run_tick(
    ticker: Ticker,
    event: dict[str, Any],
    now: float | None = None,
    shards: Sequence[int] | None = None,
) -> TickReport:
    """One tick (or the part of it for `shards`) for a scheduled event: process, log, emit
    metrics; raise if incomplete."""
    return run_part(ticker, tick_minute(event), shards, now)


def run_part(
    ticker: Ticker, minute: datetime, shards: Sequence[int] | None = None, now: float | None = None
) -> TickReport:
    """Process the due jobs of `shards` (default: all) for `minute`; raise if incomplete."""
    started = time.time()
    report = ticker.run(minute, shards)
    if ticker.events is not None and ticker.events.pending():
        ticker.events.flush()  # best effort, never raises
    lag = max(0.0, (started if now is None else now) - minute.timestamp())
    logger.info(
        "tick",
        extra={
            "minute": iso(minute),
            "shards": len(shards) if shards is not None else ticker.shards,
            "due": report.due,
            "queued": report.queued,
            "missed": report.missed,
            "unschedulable": report.unschedulable,
            "dropped": report.dropped,
            "migrated": report.migrated,
            "not_sent": len(report.not_sent),
            "not_advanced": report.not_advanced,
            "duration_ms": round((time.time() - started) * 1000),
            "lag_seconds": round(lag, 1),
        },
    )
    emit("JobsDue", report.due)
    emit("RunsQueued", report.queued)
    emit("RunsMissed", report.missed)
    emit("TickLag", lag, unit="Seconds")
    emit("TickDuration", (time.time() - started) * 1000, unit="Milliseconds")
    flush()
    if report.not_sent or report.not_advanced:
        raise TickIncomplete(
            f"{len(report.not_sent)} runs not queued and "
            f"{report.not_advanced} jobs not advanced at {iso(minute)}; the "
            f"retried part re-sends them under the same run ids"
        )
    ticker.store.record_tick(minute)
    return report


def plan_parts(shards: int, parts: int) -> list[list[int]]:
    """The shards of each part: part p takes shards p, p + parts, p + 2 parts, ..."""
    count = max(1, min(parts, shards))
    return [list(range(p, shards, count)) for p in range(count)]


def fan_out(queue: TickPartQueue, minute: datetime, shards: int, parts: int) -> int:
    """Send the minute's parts to the tick parts queue; how many. Raises if any is not sent."""
    messages = [
        TickPart(minute=iso(minute) or "", shards=tuple(group))
        for group in plan_parts(shards, parts)
    ]
    failed = queue.send_parts(messages)
    if failed:
        raise TickIncomplete(
            f"{len(failed)} of {len(messages)} tick parts not sent for "
            f"{iso(minute)}; the retried tick sends them again"
        )
    return len(messages)


def handle_tick(
    event: dict[str, Any],
    context: Any = None,
    parts_queue: TickPartQueue | None = None,
    shards: int | None = None,
    parts: int | None = None,
) -> dict[str, Any]:
    """The scheduled tick's entry point: fan the minute out in parts, nothing else.

    With nothing due this costs one SendMessageBatch per 10 parts, and each part one Query
    per shard (plus one of the legacy index): no table scan, no job read.
    """
    if parts_queue is None or shards is None or parts is None:
        from . import deps  # the deployed handler (app.py) passes them from deps

        parts_queue, shards, parts = deps.tick_fan_out()
    minute = tick_minute(event)
    parts = fan_out(parts_queue, minute, shards, parts)
    logger.info("tick fanned out", extra={"minute": iso(minute), "parts": parts})
    return {"minute": iso(minute), "parts": parts}


def handle_tick_parts(
    event: dict[str, Any], context: Any = None, ticker: Ticker | None = None
) -> PartialItemFailureResponse:
    """The part-tick function's entry point (an SQS event of tick parts): a partial batch
    response, so a part that did not finish comes back and is processed again."""
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    if ticker is None:  # the deployed handler (app.py) passes deps.ticker()
        from . import deps

        ticker = deps.ticker()

    def record_handler(record: Any) -> dict[str, Any]:
        try:
            part = TickPart.from_body(record.body)
        except ValueError as error:  # poison: reported failed until SQS moves it to the DLQ
            logger.error(
                "not a tick part", extra={"message_id": record.message_id, "reason": str(error)}
            )
            raise
        report = run_part(ticker, part.moment(), [s for s in part.shards if s < ticker.shards])
        return {
            "minute": iso(report.minute),
            "due": report.due,
            "queued": report.queued,
            "missed": report.missed,
        }

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
