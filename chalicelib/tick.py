"""The minute tick: find the due jobs through the due index, queue their runs, advance them.

Send first, advance second: a crash in between re-sends the same deterministic run ids on
the next delivery (the worker deduplicates), instead of losing the run.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from . import schedules
from .errors import NotFound
from .events import EventPublisher
from .jobs import Job, iso
from .observability import emit, flush, logger
from .queue import RunMessage, RunQueue, batches
from .runs import Run, scheduled_run_id
from .store import Store

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
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(second=0, microsecond=0)


def decide(job: Job, schedule: schedules.Schedule, minute: datetime) -> Decision:
    """Collapse a job's past-due occurrences (from `job.next` up to `minute`) into one run.

    The latest occurrence runs if it is within the starting deadline; every older one, and the
    latest when it is too old, is recorded `missed` (the newest MAX_MISSED_RECORDS of them).
    """
    assert job.next is not None and job.next <= minute
    anchor = job.anchor if schedule.is_interval() else None
    occurrence: datetime | None = job.next
    window = max(CATCH_UP_WINDOW, timedelta(seconds=job.deadline_seconds))
    if minute - occurrence > window:
        # From the oldest minute still within the window: next_after is strictly after.
        occurrence = schedule.next_after(minute - window - timedelta(minutes=1), anchor)
    due: deque[datetime] = deque(maxlen=MAX_MISSED_RECORDS + 1)
    while occurrence is not None and occurrence <= minute:
        due.append(occurrence)
        occurrence = schedule.next_after(occurrence, anchor)
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
    """What one tick did."""

    minute: datetime
    due: int = 0
    queued: int = 0
    missed: int = 0
    unschedulable: int = 0
    not_sent: list[str] = field(default_factory=list)


class Ticker:
    """Runs one tick against a store and a queue, with bounded parallelism."""

    def __init__(self, store: Store, queue: RunQueue, shards: int, parallelism: int,
                 events: EventPublisher | None = None) -> None:
        self.store = store
        self.queue = queue
        self.shards = shards
        self.parallelism = parallelism
        self.events = events  # `missed` events, published once per tick (run_tick)

    def run(self, minute: datetime) -> TickReport:
        """Process every job due at or before `minute`."""
        report = TickReport(minute=minute)
        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            due = [job for jobs in pool.map(
                lambda shard: list(self.store.due_jobs(shard, minute)), range(self.shards))
                for job in jobs]
            report.due = len(due)
            to_send: list[tuple[Job, Decision, RunMessage]] = []
            to_advance: list[tuple[Job, Decision]] = []
            for job in due:
                decision = self._decide(job, minute, report)
                if decision is None:
                    continue
                if decision.missed or decision.run_at is None:
                    to_advance.append((job, decision))  # missed records first, then advance
                if decision.run_at is not None:
                    to_send.append((job, decision, _message(job, decision.run_at)))
            # Jobs with only missed occurrences: record and advance, nothing to send.
            report.missed += sum(pool.map(lambda item: self._record_missed(*item), to_advance))
            for outcome in pool.map(self._send_and_advance, batches(to_send)):
                report.queued += outcome[0]
                report.not_sent.extend(outcome[1])
            list(pool.map(lambda item: self._advance(item[0], item[1].next_at),
                          [(j, d) for j, d in to_advance if d.run_at is None]))
        return report

    def _decide(self, job: Job, minute: datetime, report: TickReport) -> Decision | None:
        try:
            schedule = job.schedule()
        except schedules.ScheduleError as error:
            # A stored expression this version cannot parse: take it off the due index so it
            # is not re-read every minute; the other jobs go on.
            report.unschedulable += 1
            logger.error("job schedule no longer parses; taken off the schedule",
                         extra={"job_id": job.id, "account": job.account, "reason": str(error)})
            self._advance(job, None)
            return None
        try:
            return decide(job, schedule, minute)
        except Exception:  # one job's bug must not stop every other job's runs
            report.unschedulable += 1
            logger.exception("could not decide a due job's occurrence; left due",
                             extra={"job_id": job.id, "account": job.account})
            return None

    def _record_missed(self, job: Job, decision: Decision) -> int:
        """Record a job's missed occurrences; how many were new (a retried tick finds some)."""
        recorded: list[Run] = []
        for occurrence in decision.missed:
            stamp = iso(occurrence)
            run = Run(
                run_id=scheduled_run_id(occurrence), job_id=job.id, account=job.account,
                group=job.group, trigger="schedule", scheduled_for=stamp, status="missed",
                finished_at=iso(datetime.now(timezone.utc)),
                error=(f"not started within its starting deadline "
                       f"({job.deadline_seconds} s)" if decision.run_at is None else
                       f"superseded by the later occurrence {iso(decision.run_at)}"))
            if self.store.put_run(run):
                recorded.append(run)
        if recorded:
            self._announce_missed(job, recorded)
        if decision.missed:
            logger.warning("occurrences missed", extra={
                "job_id": job.id, "missed": len(decision.missed),
                "oldest": iso(decision.missed[0]), "newest": iso(decision.missed[-1])})
        return len(recorded)

    def _announce_missed(self, job: Job, runs: list[Run]) -> None:
        """Collect the `missed` events of newly recorded runs (a retried tick finds none new)."""
        if self.events is None:
            return
        try:
            # The due index holds neither the job's name nor its `notify`: one read, only
            # for a job that missed an occurrence.
            full = self.store.get_job(job.account, job.group, job.id)
        except NotFound:
            full = None
        except Exception:  # noqa: BLE001  (the runs are recorded; only their events are lost)
            logger.exception("missed runs not announced", extra={"job_id": job.id})
            return
        for run in runs:
            self.events.collect(run, full)

    def _send_and_advance(self, batch: list[tuple[Job, Decision, RunMessage]]
                          ) -> tuple[int, list[str]]:
        failed = {m.run_id + m.job_id for m in self.queue.send_batch([m for _, _, m in batch])}
        sent = 0
        for job, decision, message in batch:
            if message.run_id + message.job_id in failed:
                logger.error("run not queued", extra={"job_id": job.id, "run_id": message.run_id})
                continue
            sent += 1
            logger.debug("run queued", extra={"job_id": job.id, "run_id": message.run_id})
            self._advance(job, decision.next_at)
        return sent, [m.run_id for _, _, m in batch if m.run_id + m.job_id in failed]

    def _advance(self, job: Job, next_at: datetime | None) -> None:
        if not self.store.advance(job, next_at):
            logger.info("job changed during the tick; its new schedule wins",
                        extra={"job_id": job.id})


def _message(job: Job, occurrence: datetime) -> RunMessage:
    return RunMessage(account=job.account, group=job.group, job_id=job.id,
                      run_id=scheduled_run_id(occurrence), trigger="schedule",
                      scheduled_for=iso(occurrence) or "")


def run_tick(ticker: Ticker, event: dict[str, Any], now: float | None = None) -> TickReport:
    """One tick for a scheduled event: process, log, emit metrics; raise if incomplete."""
    started = time.time()
    minute = tick_minute(event)
    report = ticker.run(minute)
    if ticker.events is not None and ticker.events.pending():
        ticker.events.flush()  # best effort, never raises
    lag = max(0.0, (started if now is None else now) - minute.timestamp())
    logger.info("tick", extra={
        "minute": iso(minute), "due": report.due, "queued": report.queued,
        "missed": report.missed, "unschedulable": report.unschedulable,
        "not_sent": len(report.not_sent), "duration_ms": round((time.time() - started) * 1000),
        "lag_seconds": round(lag, 1)})
    emit("JobsDue", report.due)
    emit("RunsQueued", report.queued)
    emit("RunsMissed", report.missed)
    emit("TickLag", lag, unit="Seconds")
    emit("TickDuration", (time.time() - started) * 1000, unit="Milliseconds")
    flush()
    if report.not_sent:
        raise TickIncomplete(f"{len(report.not_sent)} runs not queued at {iso(minute)}; "
                             f"the retried tick re-sends them under the same run ids")
    ticker.store.record_tick(minute)
    return report


def handle_tick(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The tick Lambda's entry point."""
    from . import deps
    from .events import default_publisher
    from .settings import get_settings

    settings = get_settings()
    ticker = Ticker(deps.store(), deps.run_queue(), settings.shards, settings.tick_parallelism,
                    events=default_publisher())
    report = run_tick(ticker, event)
    return {"minute": iso(report.minute), "due": report.due, "queued": report.queued,
            "missed": report.missed}

