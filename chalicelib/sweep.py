"""The sweep: once a minute, finish the runs whose message or worker is gone.

A run is `running` or `queued` only while a message in the runs queue stands for it: the
worker acknowledges a message only once its run is recorded, or re-queued under a new
message. Two things break that, and the sweep repairs both, reading only what is broken:

- **Dead letters.** A message the worker failed on `maxReceiveCount` times is moved to the
  dead-letter queue. The sweep reads that queue: each run message's run is recorded `failed`
  with error_code `RunLost` (unless it finished meanwhile, or a later attempt is queued), and
  the message deleted. Anything else (poison) is left there for an operator, and alarmed.
- **Expired leases.** A run claimed from a message delivered again, or for a later attempt,
  is on the watch index (`lease_watch`, written by the claim itself) until it is recorded.
  When its lease has been over for GRACE_SECONDS, its worker died: the sweep queues the next
  attempt if the job allows one, else records it `failed` with `RunLost`. A first delivery
  of a first attempt is never watched: SQS gives it back after the visibility timeout, and it
  is watched from that second delivery on. So the happy path pays nothing for the sweep.

Every step is a conditional write on the state it read, and sends before it records (as the
worker's retry does): a sweep killed half-way, or two sweeps at once, neither lose a run nor
record it twice; a message sent by a sweep that then lost its write is deduplicated by the
claim, like any duplicate delivery.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import NotFound
from .events import EventPublisher
from .jobs import Job, iso
from .observability import emit, flush, logger
from .queue import RunMessage, RunQueue, batches
from .runs import Run
from .store import LEASE_SHARDS, Store

GRACE_SECONDS = 60  # after a lease ends, before its run counts as lost
# A dead letter left in the queue (poison, or a run still held) is read again after this.
DEAD_LETTER_VISIBILITY = 600
LOST = "RunLost"


@dataclass
class SweepReport:
    """What one sweep did."""

    dead_letters: int = 0
    lost: int = 0
    requeued: int = 0
    kept: int = 0
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # job, run, outcome


@dataclass
class Sweeper:
    """Finishes runs whose message is dead-lettered or whose worker died."""

    store: Store
    queue: RunQueue
    dead_letters: RunQueue | None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # The runs it records failed are announced as the worker's are (published by handle_sweep).
    events: EventPublisher | None = None
    time_budget: float = 45.0

    def sweep(self) -> SweepReport:
        """One pass over the dead-letter queue and the watch index."""
        report = SweepReport()
        stop_at = time.monotonic() + self.time_budget
        if self.dead_letters is not None:
            self._read_dead_letters(report, stop_at)
        self._expired_leases(report, stop_at)
        return report

    # --- dead letters ------------------------------------------------------------------------

    def _read_dead_letters(self, report: SweepReport, stop_at: float) -> None:
        assert self.dead_letters is not None
        client, url = self.dead_letters.client, self.dead_letters.url
        while time.monotonic() < stop_at:
            messages = client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=DEAD_LETTER_VISIBILITY,
                AttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            if not messages:
                return
            done = []
            for message in messages:
                report.dead_letters += 1
                if self.settle_dead_letter(message["Body"], message["MessageId"], report):
                    done.append(message)
            for batch in batches(done):
                client.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(batch)
                    ],
                )

    def settle_dead_letter(self, body: str, message_id: str, report: SweepReport) -> bool:
        """Record the run of a dead-lettered message lost; whether the message is done with
        (False: poison, or a run still held by a live worker: it stays in the queue)."""
        try:
            message = RunMessage.from_body(body)
        except ValueError as error:
            logger.error(
                "dead letter that is not a run message left in the dead-letter queue",
                extra={"message_id": message_id, "reason": str(error)},
            )
            report.kept += 1
            return False
        if self._stale(message):
            return True
        now = self.clock()
        run = Run(
            run_id=message.run_id,
            job_id=message.job_id,
            account=message.account,
            group=message.group,
            trigger=message.trigger,
            scheduled_for=message.scheduled_for,
            status="failed",
            finished_at=iso(now),
            error_code=LOST,
            error=f"run lost: its message (attempt {message.attempt}) failed every "
            f"delivery and was dead-lettered; the worker's log has why",
        )
        lost = self.store.lose_run(run, now, message_attempt=message.attempt)
        if lost is not None:
            self._lost(lost, report, "dead-lettered")
            return True
        state = self.store.run_lease(message.job_id, message.run_id)
        if state is not None and state[0] == "running" and state[1] >= int(now.timestamp()):
            # Its holder records it; if it dies, the message is read again after that.
            report.kept += 1
            return False
        logger.info(
            "dead letter of a run recorded meanwhile, or of an older attempt; deleted",
            extra={
                "job_id": message.job_id,
                "run_id": message.run_id,
                "status": state[0] if state else None,
            },
        )
        return True

    def _stale(self, message: RunMessage) -> bool:
        """Whether a dead letter is a never-claimed scheduled run of a job version outdated
        (RunMessage.outdated_by): as the worker would have, it is given up without a record
        (and its successor due item deleted), not recorded lost."""
        if not message.droppable:  # (no job read for the others)
            return False
        try:
            job = self.store.get_job(message.account, message.group, message.job_id, progress=False)
        except NotFound:
            job = None
        if not self.store.drop_outdated_run(message, job):
            return False
        logger.info(
            "dead letter of a run of an outdated job version deleted",
            extra={"job_id": message.job_id, "run_id": message.run_id, "version": message.version},
        )
        return True

    # --- expired leases ----------------------------------------------------------------------

    def _expired_leases(self, report: SweepReport, stop_at: float) -> None:
        up_to = int(self.clock().timestamp()) - GRACE_SECONDS
        for shard in range(LEASE_SHARDS):
            for job_id, run_id in self.store.watched_runs(shard, up_to):
                if time.monotonic() >= stop_at:
                    return  # the next minute's sweep goes on
                self.settle_expired(job_id, run_id, report)

    def settle_expired(self, job_id: str, run_id: str, report: SweepReport) -> str:
        """Re-queue or fail one watched run whose lease ended; what was done."""
        now = self.clock()
        state = self.store.run_lease(job_id, run_id)
        if state is None:
            return "gone"
        status, lease_until = state
        if status != "running":
            self.store.unwatch(job_id, run_id)
            return "finished"
        if lease_until >= int(now.timestamp()):
            return "held"
        run = self.store.get_run(job_id, run_id)
        if run is None:
            return "gone"
        job = self._job(run)
        expired = iso(datetime.fromtimestamp(lease_until, UTC))
        if job is not None and run.attempts < job.attempts_allowed:
            # Send first, then record: a sweep that dies in between leaves the run `running`
            # under an expired lease, which the message just sent claims.
            self.queue.send(
                RunMessage(
                    account=run.account,
                    group=run.group,
                    job_id=run.job_id,
                    run_id=run.run_id,
                    trigger=run.trigger,
                    scheduled_for=run.scheduled_for,
                    attempt=run.attempts + 1,
                )
            )
            if self.store.requeue_lost(
                run,
                run.attempts,
                now,
                f"its worker stopped (lease expired {expired}); attempt {run.attempts + 1} queued",
            ):
                report.requeued += 1
                report.outcomes.append((job_id, run_id, "requeued"))
                logger.warning(
                    "run lost by its worker; queued again",
                    extra={"job_id": job_id, "run_id": run_id, "attempt": run.attempts + 1},
                )
                self._release(job, run)
                _emit("RunsRequeued", 1)
                return "requeued"
            return "changed"
        why = (
            "its job is gone"
            if job is None
            else f"{run.attempts} of {job.attempts_allowed} attempts used"
        )
        lost = self.store.lose_run(
            run.with_status(
                "failed",
                finished_at=iso(now),
                error_code=LOST,
                error=f"run lost: its worker stopped (lease expired {expired}) and {why}",
            ),
            now,
            claimed_attempts=run.attempts,
        )
        if lost is None:
            return "changed"
        self._lost(lost, report, "lease expired", job)
        if job is not None:
            self._release(job, run)
        return "lost"

    # --- helpers -----------------------------------------------------------------------------

    def _job(self, run: Run) -> Job | None:
        try:
            return self.store.get_job(run.account, run.group, run.job_id, progress=False)
        except NotFound:
            return None

    def _release(self, job: Job, run: Run) -> None:
        if job.concurrency_policy == "Forbid":
            self.store.release_forbid(job.account, job.group, job.id, run.run_id)

    def _lost(self, run: Run, report: SweepReport, how: str, job: Job | None = None) -> None:
        report.lost += 1
        report.outcomes.append((run.job_id, run.run_id, "lost"))
        logger.error(
            "run lost; recorded failed",
            extra={
                "job_id": run.job_id,
                "run_id": run.run_id,
                "how": how,
                "attempts": run.attempts,
                "error_code": LOST,
            },
        )
        if how == "dead-lettered":  # a run whose dead letter is read needs no Forbid hold
            try:
                self.store.release_forbid(run.account, run.group, run.job_id, run.run_id)
            except Exception:
                logger.exception("Forbid hold not released", extra={"job_id": run.job_id})
        _emit("RunsLost", 1)
        self._announce(run, job, read_job=how == "dead-lettered")

    def _announce(self, run: Run, job: Job | None, read_job: bool) -> None:
        """Collect the `failed` event of a lost run, best effort (the record stands)."""
        if self.events is None:
            return
        try:
            # A dead letter names no job: its name and `notify` cost one read, only when lost.
            self.events.collect(run, self._job(run) if read_job else job)
        except Exception:
            logger.exception("run event not collected", extra={"run_id": run.run_id})


def _emit(name: str, value: float) -> None:
    try:
        emit(name, value)
    except Exception:
        logger.exception("metric not emitted", extra={"metric": name})


def handle_sweep(
    event: dict[str, Any], context: Any = None, sweeper: Sweeper | None = None
) -> dict[str, int]:
    """The sweep Lambda's entry point (every minute)."""
    if sweeper is None:  # the deployed handler (app.py) passes deps.sweeper()
        from . import deps

        sweeper = deps.sweeper()
    try:
        report = sweeper.sweep()
    finally:
        if sweeper.events is not None and sweeper.events.pending():
            sweeper.events.flush()  # best effort, never raises
        try:
            flush()
        except Exception:
            logger.exception("metrics not flushed")
    logger.info(
        "sweep",
        extra={
            "dead_letters": report.dead_letters,
            "lost": report.lost,
            "requeued": report.requeued,
            "kept": report.kept,
        },
    )
    return {
        "dead_letters": report.dead_letters,
        "lost": report.lost,
        "requeued": report.requeued,
        "kept": report.kept,
    }
