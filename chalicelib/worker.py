"""The runs worker: claim each run, re-read its job, run its runner, record the outcome."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .accounts import WILDCARD, AccountEntry, Registry, RegistryError
from .errors import NotFound
from .events import EventPublisher
from .jobs import Job, iso
from .observability import emit, flush, logger
from .queue import RunMessage, RunQueue
from .runners import PermanentError, RunContext, Runner, RunnerError, RunResult, get_runner
from .runs import Run, Status, truncate
from .store import Refused, Store

if TYPE_CHECKING:  # the batch utility is imported where used, as in the handlers below
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

FIRST_RETRY_DELAY = 30
MAX_RETRY_DELAY = 900
LEASE_MARGIN = 60
TIME_TO_RECORD = 2  # seconds a run needs beyond its runner to claim and record
MIN_RUNNER_SECONDS = 1


class NotEnoughTime(RuntimeError):
    """Too little of the invocation is left to start another run within its timeout."""


def retry_delay(attempt: int) -> int:
    """Seconds before attempt `attempt + 1` (attempts count from 1): doubling from 30 s, at
    most SQS's 15 minutes."""
    # A shift, not `2 ** n`: an int power is typed Any (a negative exponent gives a float).
    return min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY << (attempt - 1))


ClientFactory = Callable[[AccountEntry, str], Callable[[str], Any]]


class UnknownRun(ValueError):
    """A run-now message whose run was never queued: reported failed until the DLQ takes it."""


FORBID_SKIP = "previous run still running (concurrency_policy Forbid)"


class RunInProgress(RuntimeError):
    """Another worker holds the run under a live lease: the message is reported failed, so
    that it comes back after the visibility timeout instead of being deleted (if that worker
    died, the run is taken over then; if it finished, the copy is acknowledged then)."""


@dataclass
class Worker:
    """Everything a run needs: the store, the queue, the registry and how to act in accounts."""

    store: Store
    queue: RunQueue
    registry: Callable[[], Registry]
    clients: ClientFactory
    runner_timeout: int = 60
    invocation_timeout: int = 120
    dummy_template: str = "Hello, {{.Account}}!"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Records of a batch handled at once (deps.worker: the settings' worker_concurrency).
    concurrency: int = 1
    # Final statuses recorded since the last flush_counts(): the counters are one item, so
    # one write per batch rather than per run (per run, that item is the hottest key).
    recorded: Counter[str] = field(default_factory=Counter)
    # Run events, collected per run and published once per batch (flush_events); None: none.
    events: EventPublisher | None = None
    # The runner registry: a runner by name (deps.worker() hands in runners.get_runner).
    runners: Callable[[str], Runner | None] = get_runner
    _recorded_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def handle(
        self, message: RunMessage, time_limit: float | None = None, receives: int = 1
    ) -> str:
        """Process one run message; the run's resulting status (or `duplicate`, or `stale`:
        a run of an outdated job version, dropped).

        `time_limit` (seconds) shortens the runner's timeout when the invocation has less
        time left than that. `receives` is the message's receive count: a message delivered
        again, or a later attempt, is watched by the sweep (chalicelib/sweep.py) while it runs.
        """
        limit = self.runner_timeout if time_limit is None else min(self.runner_timeout, time_limit)
        now = self.clock()
        # Before the claim: an unusable registry leaves the message for retry, nothing written.
        registry = self._registry(message)
        lease_seconds = math.ceil(limit) + LEASE_MARGIN
        run = Run(
            run_id=message.run_id,
            job_id=message.job_id,
            account=message.account,
            group=message.group,
            trigger=message.trigger,
            scheduled_for=message.scheduled_for,
            status="running",
        )
        # A scheduled run names its job version: the job is read before the claim (the one
        # read it needs), so that a run of a version deleted, disabled or changed before the
        # occurrence was due is dropped without a trace, and that version's chain stops.
        read_first = message.trigger == "schedule" and message.version is not None
        job: Job | None = None
        if read_first:
            job = self._job(message)
            if job is None or job.version != message.version:
                if self.store.drop_outdated_run(message, job):
                    self._dropped(message, job)
                    return "stale"
                # It goes on (claimed already, or due before the change), but its version's
                # chain stops: the job's current version has its own due item.
                self._stop_chain(message)
        # The run id is the lock: whoever writes the claim runs it; a duplicate delivery
        # (a re-sent tick, SQS at-least-once) finds it taken or finished and stops here.
        # A first delivery of a first attempt is the happy path: SQS keeps its message until
        # it is acknowledged or dead-lettered, so it needs no watch (no extra index write).
        claimed = self.store.claim_run(
            run,
            message.attempt,
            lease_seconds,
            now,
            must_exist=message.trigger == "manual",
            watch=receives > 1 or message.attempt > 1,
        )
        if isinstance(claimed, Refused):
            return self._not_claimed(run, claimed, now)
        if not read_first:
            job = self._job(message)
        if job is None:
            return self._finish(claimed, "skipped", error="job deleted before it ran")
        # The entry of the key the job was read under, never of the item's own `account`.
        entry = registry.get(message.account)
        reason = self._skip_reason(job, claimed, entry, now)
        if (
            reason is None
            and job.concurrency_policy == "Forbid"
            and not self._hold(job, claimed.run_id, int(now.timestamp()) + lease_seconds, now)
        ):
            reason = FORBID_SKIP
        if reason:
            return self._finish(claimed, "skipped", error=reason, job=job)
        assert entry is not None
        try:
            result = self._run_runner(job, claimed, entry, limit)
        except RunnerError as error:
            if error.retryable and claimed.attempts < job.attempts_allowed:
                return self._retry(claimed, message, error, job)
            return self._finish(claimed, "failed", error=str(error), error_code=error.code, job=job)
        return self._finish(claimed, "succeeded", output=result.output, data=result.data, job=job)

    def _job(self, message: RunMessage) -> Job | None:
        """The job a message names, as stored (None: deleted)."""
        try:
            return self.store.get_job(
                message.account, message.group, message.job_id, progress=False
            )
        except NotFound:
            return None

    def _dropped(self, message: RunMessage, job: Job | None) -> None:
        """Say that a run of an outdated job version was dropped (Store.drop_outdated_run)."""
        logger.info(
            "run of an outdated job version dropped",
            extra={
                "job_id": message.job_id,
                "run_id": message.run_id,
                "version": message.version,
                "current_version": job.version if job is not None else None,
            },
        )
        _emit("StaleRunsDropped", 1)

    def _stop_chain(self, message: RunMessage) -> None:
        """Delete the successor due item the tick put for a run of an outdated version."""
        if message.version is not None and message.next_due is not None:
            self.store.delete_slot(message.job_id, message.version, message.next_due)

    def _not_claimed(self, run: Run, refused: Refused, now: datetime) -> str:
        state = refused.lease  # what the refused claim found: no second read
        if state is None:
            raise UnknownRun(f"run {run.run_id} of job {run.job_id} was never queued")
        status, lease_until = state
        if status == "running" and lease_until >= int(now.timestamp()):
            # Deleting this copy could lose the run: if the holder dies, SQS may have no
            # other copy to deliver again.
            raise RunInProgress(
                f"run {run.run_id} is held by another worker until "
                f"{iso(datetime.fromtimestamp(lease_until, UTC))}"
            )
        logger.info(
            "run already finished or queued for another attempt; duplicate delivery acknowledged",
            extra={"job_id": run.job_id, "run_id": run.run_id, "status": status},
        )
        return "duplicate"

    def _registry(self, message: RunMessage) -> Registry:
        """The account registry; RegistryError (logged at ERROR) when it cannot be used."""
        try:
            return self.registry()
        except RegistryError as error:
            logger.error(
                "account registry unusable; message left for retry",
                extra={"job_id": message.job_id, "run_id": message.run_id, "reason": str(error)},
            )
            raise

    def _skip_reason(
        self, job: Job, run: Run, entry: AccountEntry | None, now: datetime
    ) -> str | None:
        if (job.account, job.group, job.id) != (run.account, run.group, run.job_id):
            return (
                f"job item names {job.account}/{job.group}/{job.id} but was read under "
                f"{run.account}/{run.group}/{run.job_id}"
            )
        if run.trigger == "schedule" and not job.enabled:
            return "job disabled before it ran"
        if entry is None:
            return f"account {run.account} is not in the account registry"
        if entry.is_default and job.registry_entry not in (None, WILDCARD):
            # The job was written under the account's own entry, since removed: the default
            # entry must not take it over (it could act with another role or in another way).
            return (
                f"account {run.account} is no longer in the account registry (its job was "
                f"created under its own entry; the * entry does not take it over)"
            )
        if not entry.allows(job.runner):
            return f"runner {job.runner} is not allowed for account {run.account}"
        # Forbid is decided by the job's hold (Store.hold_forbid), taken after every other
        # check: a run skipped for another reason never holds the job.
        return None

    def _run_runner(self, job: Job, run: Run, entry: AccountEntry, limit: float) -> RunResult:
        runner = self.runners(job.runner)
        if runner is None:
            raise PermanentError(f"details.runner: unknown runner {job.runner!r}")
        context = RunContext(
            account=job.account,
            run_id=run.run_id,
            job_id=job.id,
            client=self.clients(replace(entry, job_details=job.details), run.run_id),
            dummy_template=self.dummy_template,
        )
        pool = _runner_pool(self.concurrency)
        try:
            return pool.submit(runner.run, job.details, context).result(timeout=limit)
        except FutureTimeout:
            from .runners import RetryableError

            # Its thread is still in the runner: later runs need a pool with free threads.
            _abandon_runner_pool(pool)
            raise RetryableError(f"runner timed out after {limit:.0f} s", code="Timeout") from None
        except RunnerError:
            raise
        except Exception as error:  # a runner bug must fail the run, not the batch
            logger.exception("runner raised", extra={"job_id": job.id, "run_id": run.run_id})
            raise PermanentError(f"runner error: {type(error).__name__}") from None

    def _retry(
        self, run: Run, message: RunMessage, error: RunnerError, job: Job | None = None
    ) -> str:
        delay = retry_delay(run.attempts)
        # Send before recording: if the send fails the claim stays `running` and the original
        # message comes back after its lease, so the run is retried rather than lost.
        self.queue.send(RunMessage(**{**message.__dict__, "attempt": run.attempts + 1}), delay)
        queued = run.with_status("queued", error=truncate(str(error)), error_code=error.code)
        self.store.finish_run(queued, run.attempts)
        self._announce(queued, job, "retrying", retry_in_seconds=delay)
        self._release(job, run)
        logger.warning(
            "run failed, retrying",
            extra={
                "job_id": run.job_id,
                "run_id": run.run_id,
                "attempt": run.attempts,
                "delay_seconds": delay,
                "error_code": error.code,
            },
        )
        _emit("RunRetries", 1)
        return "queued"

    def _finish(
        self,
        run: Run,
        status: Status,
        *,
        output: str | None = None,
        error: str | None = None,
        error_code: str | None = None,
        data: Mapping[str, Any] | None = None,
        job: Job | None = None,
    ) -> str:
        finished = run.with_status(
            status,
            finished_at=iso(self.clock()),
            output=truncate(output),
            error=truncate(error),
            error_code=error_code,
            data=dict(data or {}),
        )
        if not self.store.finish_run(finished, run.attempts, count=False):
            logger.warning(
                "lost the claim before recording; the newer claim records it",
                extra={"job_id": run.job_id, "run_id": run.run_id},
            )
            return "duplicate"
        if status != "skipped":  # a skipped run never took the hold (it is taken last)
            self._release(job, run)
        log = logger.info if status == "succeeded" else logger.warning
        log(
            "run finished",
            extra={
                "job_id": run.job_id,
                "run_id": run.run_id,
                "status": status,
                "trigger": run.trigger,
                "attempts": run.attempts,
                "error_code": error_code,
            },
        )
        _emit("Runs", 1, Outcome=status)
        with self._recorded_lock:
            self.recorded[status] += 1
        self._announce(finished, job, status)
        return status

    def _announce(
        self, run: Run, job: Job | None, status: str, retry_in_seconds: int | None = None
    ) -> None:
        """Collect the run's event (after its outcome is recorded: never instead of it)."""
        if self.events is None:
            return
        try:
            with self._recorded_lock:  # the batch's runs end on threads of their own
                self.events.collect(run, job, status, retry_in_seconds)
        except Exception:
            logger.exception("run event not collected", extra={"run_id": run.run_id})

    def flush_events(self) -> None:
        """Publish the events collected since the last flush (best effort, never raises)."""
        if self.events is not None and self.events.pending():
            self.events.flush()

    def _hold(self, job: Job, run_id: str, lease_until: int, now: datetime) -> bool:
        """Take a Forbid job's hold for `run_id`; False while another run really runs."""
        if self.store.hold_forbid(job, run_id, lease_until, now):
            return True
        # Refused: its holder's lease is live, but the holder may have been recorded already
        # (its release lost to throttling or a crash): only a run still running blocks.
        holder = self.store.forbid_holder(job)
        if holder is None:  # let go meanwhile
            return self.store.hold_forbid(job, run_id, lease_until, now)
        state = self.store.run_lease(job.id, holder)
        if state is not None and state[0] == "running" and state[1] >= int(now.timestamp()):
            return False
        return self.store.hold_forbid(job, run_id, lease_until, now, replacing=holder)

    def _release(self, job: Job | None, run: Run) -> None:
        """Let the next run of a Forbid job start (best effort: the hold expires anyway)."""
        if job is None or job.concurrency_policy != "Forbid":
            return
        try:
            self.store.release_forbid(job.account, job.group, job.id, run.run_id)
        except Exception:
            logger.exception(
                "Forbid hold not released; it ends with the run's lease",
                extra={"job_id": run.job_id, "run_id": run.run_id},
            )

    def flush_counts(self) -> None:
        """Add the statuses recorded since the last flush to the runs counters: one write."""
        with self._recorded_lock:
            recorded = dict(self.recorded)
            self.recorded.clear()
        if recorded:
            try:
                self.store.count_runs(recorded)
            except Exception:
                with self._recorded_lock:  # kept for the next flush
                    self.recorded.update(recorded)
                raise


_metrics_lock = threading.Lock()


def _emit(name: str, value: float, **dimensions: str) -> None:
    """Emit a metric, best-effort: the outcome is already recorded, and a metrics failure must
    not report the message failed (SQS would deliver it again)."""
    try:
        with _metrics_lock:  # the collector is shared by the batch's threads
            emit(name, value, now=False, **dimensions)
    except Exception:
        logger.exception("metric not emitted", extra={"metric": name})


_pool: ThreadPoolExecutor | None = None
_pool_threads = 0
_pool_lock = threading.Lock()


def _runner_pool(threads: int = 1) -> ThreadPoolExecutor:
    """The threads runners run in: one per run of a batch, reused across invocations (a new
    thread per run pays its start each time)."""
    global _pool, _pool_threads
    with _pool_lock:
        if _pool is None or _pool_threads < threads:
            _pool_threads = max(1, threads)
            _pool = ThreadPoolExecutor(max_workers=_pool_threads, thread_name_prefix="runner")
        return _pool


def _abandon_runner_pool(pool: ThreadPoolExecutor) -> None:
    """Leave a pool one of whose threads is stuck in a runner that timed out (the other runs
    on it go on to their end)."""
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False)


def _batch_processor(concurrency: int) -> Any:
    """Powertools' SQS batch processor, handling the records of a batch at once.

    Powertools has no thread-pool processor for synchronous handlers (AsyncBatchProcessor
    wants coroutines): this one keeps its record model, its success and failure bookkeeping
    and its partial batch response, and maps records over threads instead of a loop.
    Defined here, as Powertools' batch module is imported only by the worker (the API's cold
    start never pays for it).
    """
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    class ConcurrentBatchProcessor(BatchProcessor):
        def process(self) -> list[Any]:
            records = list(self.records)
            # Copies of one run (a re-sent tick) stay one after the other, in order: the
            # second then finds the run finished and is acknowledged, as in a loop, instead
            # of finding it held and coming back after the visibility timeout.
            by_run: dict[tuple[str, ...], list[int]] = {}
            for index, record in enumerate(records):
                ids = _ids(str(record.get("body", "")))
                key = (ids["job_id"], ids["run_id"]) if len(ids) == 2 else (str(index),)
                by_run.setdefault(key, []).append(index)
            if concurrency <= 1 or len(by_run) <= 1:
                return super().process()
            results: list[Any] = [None] * len(records)

            def process_run(indices: list[int]) -> None:
                for index in indices:
                    results[index] = self._process_record(records[index])

            with ThreadPoolExecutor(
                max_workers=min(concurrency, len(by_run)), thread_name_prefix="record"
            ) as records_pool:
                # An exception that is not an Exception (the process dying) is re-raised
                # here, as it would be from the loop.
                list(records_pool.map(process_run, by_run.values()))
            return results

    return ConcurrentBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _ids(body: str) -> dict[str, str]:
    """The job and run ids a message body names, for a log line (whatever the body holds)."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {name: str(data[name])[:80] for name in ("job_id", "run_id") if name in data}


def handle_batch(
    event: dict[str, Any], context: Any = None, worker: Worker | None = None
) -> PartialItemFailureResponse:
    """The worker Lambda's entry point: a partial batch response (failed items come back).

    The records run at once (`Worker.concurrency` threads); each is bounded by its runner
    timeout and by the time the invocation has left when it starts.
    """
    from aws_lambda_powertools.utilities.batch import process_partial_response

    if worker is None:  # the deployed handler (app.py) passes deps.worker()
        from . import deps

        worker = deps.worker()
    # The function's own timeout (the settings carry it: Chalice's local and test contexts
    # do not), counted from now.
    deadline = time.monotonic() + worker.invocation_timeout
    postponed: list[str] = []

    def record_handler(record: Any) -> str:
        try:
            return handle_record(record)
        except Exception as error:
            # Powertools logs a failed record at DEBUG only: every item reported failed is
            # logged here, at ERROR, with what identifies its run.
            extra = {
                "message_id": record.message_id,
                "reason": str(error)[:500],
                "error_type": type(error).__name__,
                **_ids(record.body),
            }
            expected = isinstance(error, (NotEnoughTime, RunInProgress, UnknownRun, ValueError))
            logger.error("run message failed; it comes back", extra=extra, exc_info=not expected)
            raise

    def handle_record(record: Any) -> str:
        message = RunMessage.from_body(record.body)  # ValueError: poison, to the DLQ in time
        budget = deadline - time.monotonic() - TIME_TO_RECORD
        if budget < MIN_RUNNER_SECONDS:
            # Too little of the invocation left to run it: hand it back for another
            # invocation at once, rather than after the queue's visibility timeout.
            postponed.append(record.receipt_handle)
            raise NotEnoughTime(f"{record.message_id} postponed to another invocation")
        receives = str(record.attributes.get("ApproximateReceiveCount") or "1")
        return worker.handle(
            message, time_limit=budget, receives=int(receives) if receives.isdigit() else 1
        )

    processor = _batch_processor(worker.concurrency)
    try:
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
        if postponed:
            try:
                worker.queue.release(postponed)
            except Exception:
                # Best effort: raising would fail the invocation, and SQS would send the whole
                # batch back, its recorded runs included.
                logger.exception(
                    "postponed messages not released; they come back after the visibility timeout",
                    extra={"postponed": len(postponed)},
                )
        return response
    finally:
        try:
            worker.flush_counts()
        except Exception:
            logger.exception("run counters not updated")
        try:
            worker.flush_events()
        except Exception:
            logger.exception("run events not published")
        try:
            flush()
        except Exception:
            logger.exception("metrics not flushed")
