"""The minute tick: fanned out in parts; each part finds its shards' due jobs, queues their
runs and advances them.

The scheduled tick only sends one message per part (a group of due-item shards) to the tick
parts queue; the part-tick function, driven by that queue, does the work. Every part keeps the
single tick's guarantees: run ids derived from the occurrence, send first and advance second
(a crash in between re-sends the same ids on the next delivery and the worker deduplicates),
and a retried, duplicated, late or overlapping part re-reads what is still due and re-sends
under the same ids. Parts of the same shards never work at once: each shard has a lock,
which also holds how far its slot items are processed (Ticker says why none is missed).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import schedules
from .errors import ServiceUnavailable
from .events import EventPublisher
from .jobs import Job, iso
from .observability import emit, flush, logger
from .queue import RunMessage, RunQueue, TickPart, TickPartQueue, batches
from .runs import Run, scheduled_run_id
from .store import BATCH_GET_LIMIT, BATCH_WRITE_LIMIT, DueEntry, Store, TickLock

if TYPE_CHECKING:  # the batch utility is imported where used, as in the handlers below
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

MAX_MISSED_RECORDS = 100
# A job whose tick has been missing longer than this (or than its starting deadline, when that
# is longer) is only looked at over this window: older occurrences are too old to run, and are
# neither run nor recorded one by one.
CATCH_UP_WINDOW = timedelta(days=1)
# A shard's lock lease: the part function's timeout (.chalice/config.json `tick_part`) and a
# margin, so that a holder is dead (Lambda stops it at its timeout) before anyone takes over.
PART_TIMEOUT_SECONDS = 120
LOCK_LEASE_SECONDS = PART_TIMEOUT_SECONDS + 60
LOCK_TRIES = 3  # takes of a lock another part holds, LOCK_WAIT_SECONDS apart, before leaving
LOCK_WAIT_SECONDS = 1.0
# Slot partitions one part reads for a shard: a day of minutes. After a longer outage the
# shard catches up a day per part (decide() collapses what is overdue all the same).
MAX_SLOTS = 1440


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
    # Shards left to the retry: their lock could not be taken (throttled), or they did not
    # finish.
    shards_left: list[int] = field(default_factory=list)
    # Shards another part held (a live lease) through every try: this minute is left to the
    # parts after it, without failing this one. Every part reads all the slots past the
    # watermark, and a part comes every minute, so the next one covers this minute (or, if
    # the holder died, the first one after its lease). Failing would only bring this part
    # back after the parts queue's visibility timeout (12 minutes), long after the next
    # part did the work, and raise the "tick parts late" alarm for nothing.
    deferred: list[int] = field(default_factory=list)


@dataclass
class _Due:
    """One job version's due items read at this minute (more than one when a consumed queued
    item was left behind) and what the tick decided for it."""

    job: Job
    entries: list[DueEntry]
    decision: Decision | None = None
    message: RunMessage | None = None
    done: bool = False  # sent (or nothing to send) and advanced

    @property
    def shard(self) -> int:
        return self.entries[-1].shard


@dataclass
class _Shard:
    """One shard under this part's lock: the watermark it found and the one it reaches."""

    shard: int
    found_through: int
    through: int
    entries: list[DueEntry] = field(default_factory=list)
    complete: bool = True


class Ticker:
    """Runs one tick (or one part: some shards) against a store and a queue, with bounded
    parallelism.

    Each shard is processed under its lock (`Store.take_tick_lock`), which also holds its
    watermark `done_through`: the epoch minute whose slot items are processed. Under the
    lock a part reads the shard's queued items up to its minute M and its slot partitions
    from done_through + 60 to M (at most MAX_SLOTS), decides every due job version with M,
    sends the runs, puts each successor in the slot of its next occurrence and deletes the
    queued items it consumed; then it lets go, advancing done_through to the last slot read.

    Why no successor is ever missed: a holder processes a shard only when its minute M is
    past done_through (a late part finds nothing left: the part that moved the watermark past
    M read every item due by M), and decide() leaves `next_at` after M, so a successor lands
    in a slot after M, hence after any watermark set so far, and a later holder of the lock
    reads it. Only the lock's holder moves the watermark, and only the holder reads slots: no
    put can land in a slot already read. A holder that failed to send or advance anything
    lets go without advancing (the retry, or the next minute's part, reads the same slots
    again and re-sends under the same run ids; the worker deduplicates; puts are
    idempotent). A holder that dies keeps the lock until its lease ends (LOCK_LEASE_SECONDS:
    longer than the part function may live), then the next
    part redoes (done_through, M'].
    """

    def __init__(
        self,
        store: Store,
        queue: RunQueue,
        shards: int,
        parallelism: int,
        events: EventPublisher | None = None,
        sleep: Callable[[float], None] = time.sleep,
        lock_tries: int = LOCK_TRIES,
    ) -> None:
        self.store = store
        self.queue = queue
        self.shards = shards
        self.parallelism = parallelism
        self.events = events  # `missed` events, published once per tick (run_tick)
        self.sleep = sleep  # between tries of a lock another part holds (tests: no wait)
        self.lock_tries = lock_tries

    def run(self, minute: datetime, shards: Sequence[int] | None = None) -> TickReport:
        """Process every job of `shards` (default: all) due at or before `minute`."""
        shard_list = list(range(self.shards)) if shards is None else list(shards)
        report = TickReport(minute=minute)
        holder = uuid.uuid4().hex
        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            report.migrated = sum(pool.map(self.store.migrate_legacy_due, shard_list))
            held: list[_Shard] = []
            for shard, lock in zip(
                shard_list,
                pool.map(lambda s: self._take(s, minute, holder), shard_list),
                strict=True,
            ):
                if lock is None:
                    report.shards_left.append(shard)
                elif lock.held:
                    held.append(_Shard(shard, lock.done_through, lock.done_through))
                elif lock.done_through < _epoch(minute):
                    report.deferred.append(shard)
            if not held:
                return report
            try:
                self._process(pool, held, minute, report)
            except BaseException:
                # Whatever was read may not have been sent or advanced: the watermark stays.
                for state in held:
                    state.complete = False
                raise
            finally:
                # Always let go (a failure lets go without advancing): else the shard waits
                # for the lease to end.
                for state, released in zip(
                    held, pool.map(lambda s: self._release(s, holder), held), strict=True
                ):
                    if not (released and state.complete):
                        report.shards_left.append(state.shard)
        return report

    def _take(self, shard: int, minute: datetime, holder: str) -> TickLock | None:
        """The shard's lock, held; or refused (another part's lease is live, or the shard is
        done through `minute`); None when every try was throttled."""
        refused: TickLock | None = None
        for attempt in range(self.lock_tries):
            if attempt:
                self.sleep(LOCK_WAIT_SECONDS)
            try:
                lock = self.store.take_tick_lock(shard, minute, holder, LOCK_LEASE_SECONDS)
            except ServiceUnavailable:
                # Throttled: not held (a take applied but unanswered is taken again: the
                # holder may retake its own lock). The part's other shards go on.
                logger.warning("shard lock not taken (throttled)", extra={"shard": shard})
                continue
            if lock.held or lock.done_through >= _epoch(minute):
                return lock
            refused = lock
        if refused is not None:
            logger.info(
                "shard held by another part; the next part covers this minute",
                extra={"shard": shard, "minute": iso(minute)},
            )
        return refused

    def _release(self, state: _Shard, holder: str) -> bool:
        """Let go of a shard's lock, advancing its watermark only if it all went through."""
        through = state.through if state.complete and state.through > state.found_through else None
        for attempt in range(3):  # a lock left behind holds the shard for a whole lease
            try:
                if self.store.release_tick_lock(state.shard, holder, through):
                    return True
                logger.error(
                    "shard lock lost before release (lease ended); the next part redoes it",
                    extra={"shard": state.shard},
                )
                return False
            except ServiceUnavailable:
                if attempt == 2:
                    logger.exception("shard lock not released", extra={"shard": state.shard})
                    return False
        return False

    def _process(
        self, pool: ThreadPoolExecutor, held: list[_Shard], minute: datetime, report: TickReport
    ) -> None:
        """Read, decide, send and advance the due items of the shards held."""
        by_shard = {s.shard: s for s in held}
        reads: list[tuple[int, int | None]] = []  # (shard, slot); None: its queued items
        last = _epoch(minute)
        for state in held:
            if state.found_through >= last:
                # A late part: a later one processed this shard through its minute, queued
                # items included (it read every one due by then, and the API writes none
                # due before the time it writes). Nothing is left, and a successor decided
                # now could land in a slot already read.
                continue
            reads.append((state.shard, None))
            first = state.found_through + 60
            state.through = max(state.found_through, min(last, first + (MAX_SLOTS - 1) * 60))
            reads.extend((state.shard, slot) for slot in range(first, state.through + 1, 60))

        def read(where: tuple[int, int | None]) -> list[DueEntry]:
            shard, slot = where
            if slot is None:
                return list(self.store.due_entries(shard, minute))
            return list(self.store.slot_entries(shard, slot))

        for (shard, _), found in zip(reads, pool.map(read, reads), strict=True):
            by_shard[shard].entries.extend(found)
        entries = [e for s in held for e in s.entries]
        if not entries:
            return
        due, stale = self._current(pool, entries)
        report.due = len(due)
        report.dropped = len(stale)
        unread: list[_Due] = []
        for item in due:
            item.decision = self._decide(item, minute, report, stale, unread)
        confirmed = self._confirm_missed(pool, [i for i in due if i.decision and i.decision.missed])
        to_send: list[_Due] = []
        to_advance: list[_Due] = []
        for item in due:
            if item.decision is None:
                continue
            if item.decision.missed and id(item) not in confirmed:
                # Changed, disabled or deleted since its due item was written: nothing is
                # recorded for the old version, and its chain stops here.
                stale.extend(item.entries)
                item.decision = None
                report.dropped += 1
                continue
            if item.decision.missed:
                item.job = confirmed[id(item)]
            if item.decision.run_at is not None:
                item.message = _message(item.job, item.decision)
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
        for item in to_send + to_advance:
            if not item.done:
                by_shard[item.shard].complete = False
        if unread:
            # A due item the tick could not decide (a bug): kept as a queued item, which
            # every tick reads again, so that the watermark can move on for the others.
            for entry in self.store.put_due([replace(i.entries[-1], slot=False) for i in unread]):
                by_shard[entry.shard].complete = False
        if stale:
            # Queued items of versions changed, disabled or deleted since (slot items are
            # left to their TTL). Left behind on failure: dropped again when read.
            queued = [e for e in stale if not e.slot]
            list(pool.map(self.store.delete_due, batches(queued, BATCH_WRITE_LIMIT)))

    def _current(
        self, pool: ThreadPoolExecutor, entries: list[DueEntry]
    ) -> tuple[list[_Due], list[DueEntry]]:
        """The due items grouped by job version, each with the job its decision needs; the
        items of legacy jobs gone, disabled or of another version (legacy items only: they
        name no schedule, so their job is read)."""
        legacy = list(dict.fromkeys((e.account, e.group, e.job_id) for e in entries if e.legacy))
        jobs: dict[tuple[str, str, str], Job] = {}
        for found_jobs in pool.map(self.store.jobs_of, batches(legacy, BATCH_GET_LIMIT)):
            jobs.update(found_jobs)
        current: dict[tuple[str, str, str, int], _Due] = {}
        stale: list[DueEntry] = []
        for entry in sorted(entries, key=lambda e: e.due_at):
            if entry.legacy:
                job = jobs.get((entry.account, entry.group, entry.job_id))
                if job is None or not job.enabled or job.version != entry.version:
                    stale.append(entry)
                    continue
                # Its successor is written with the fields: the next read needs no job.
                entry = replace(
                    entry,
                    schedule_expression=job.schedule_expression,
                    schedule_timezone=job.schedule_timezone,
                    anchor=job.anchor,
                    starting_deadline_seconds=job.starting_deadline_seconds,
                )
            name = (entry.account, entry.group, entry.job_id, entry.version)
            if name in current:
                # Two items of one job version: a queued item consumed but not deleted, and
                # its successor. The later one came from the tick that decided every
                # occurrence up to it: that one goes on.
                current[name].entries.append(entry)
                current[name].job = entry.job()
            else:
                current[name] = _Due(job=entry.job(), entries=[entry])
        return list(current.values()), stale

    def _confirm_missed(self, pool: ThreadPoolExecutor, items: list[_Due]) -> dict[int, Job]:
        """The current jobs of the decisions with missed occurrences, by id() of the item,
        for those whose version is still current and enabled (their missed runs are
        recorded, and announced with the job's name and `notify`)."""
        if not items:
            return {}
        names = list(dict.fromkeys((i.job.account, i.job.group, i.job.id) for i in items))
        jobs: dict[tuple[str, str, str], Job] = {}
        for found_jobs in pool.map(self.store.jobs_of, batches(names, BATCH_GET_LIMIT)):
            jobs.update(found_jobs)
        confirmed: dict[int, Job] = {}
        for item in items:
            job = jobs.get((item.job.account, item.job.group, item.job.id))
            if job is not None and job.enabled and job.version == item.job.version:
                confirmed[id(item)] = replace(job, next=item.job.next)
        return confirmed

    def _decide(
        self,
        item: _Due,
        minute: datetime,
        report: TickReport,
        stale: list[DueEntry],
        unread: list[_Due],
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
            if item.entries[-1].slot:
                unread.append(item)
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

        The part read the job to confirm its version before recording (_confirm_missed), so
        its name and `notify` cost no further read."""
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
        unwritten = {
            e.key()["pk"]["S"] + e.key()["sk"]["S"]
            for e in self.store.put_due(list(moved.values()))
        }
        advanced = [
            i
            for i in ready
            if id(i) not in moved
            or moved[id(i)].key()["pk"]["S"] + moved[id(i)].key()["sk"]["S"] not in unwritten
        ]
        # Deleting the queued items read is what keeps them from being read again: left
        # behind (a failed delete), the next tick re-sends under the same run ids and deletes
        # them then. Slot items read are left to their TTL: the watermark is past them.
        left = {
            e.key()["sk"]["S"]
            for e in self.store.delete_due([e for i in advanced for e in i.entries if not e.slot])
        }
        for item in advanced:
            item.done = not any(not e.slot and e.key()["sk"]["S"] in left for e in item.entries)
        not_advanced = len(ready) - len(advanced)
        if not_advanced:
            logger.error(
                "jobs not advanced; the next tick re-sends their runs under the same ids",
                extra={"jobs": not_advanced},
            )
        return len(ready) - sum(1 for i in ready if i.message is None), not_sent, not_advanced


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _message(job: Job, decision: Decision) -> RunMessage:
    assert decision.run_at is not None
    return RunMessage(
        account=job.account,
        group=job.group,
        job_id=job.id,
        run_id=scheduled_run_id(decision.run_at),
        trigger="schedule",
        scheduled_for=iso(decision.run_at) or "",
        version=job.version,
        next_due=_epoch(decision.next_at) if decision.next_at is not None else None,
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
            "shards_left": len(set(report.shards_left)),
            "shards_deferred": len(report.deferred),
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
    if report.not_sent or report.not_advanced or report.shards_left:
        raise TickIncomplete(
            f"{len(report.not_sent)} runs not queued, "
            f"{report.not_advanced} jobs not advanced and shards "
            f"{sorted(set(report.shards_left))} left at {iso(minute)}; the "
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

    With nothing due this costs one SendMessageBatch per 10 parts, and each part per shard two
    Queries (its queued items, its slot of the minute) and two lock writes (plus one Query of
    the legacy index): no table scan, no job read.
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
