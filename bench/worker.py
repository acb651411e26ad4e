"""The worker: dummy runs through `handle_batch` against the writes no worker can avoid.

Per run the floor is: the conditional claim (the run id is the lock), the re-read of the job
(it may have been deleted or disabled since the tick) and the conditional final record —
three calls, done bare, one run after the other as the worker processes a batch.
The worker gets real SQS events: the runs are sent with the service's own queue, received,
and handed over in batches of 10 as Lambda's event source does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib import deps
from chalicelib.jobs import Job
from chalicelib.queue import RunMessage, batches
from chalicelib.runs import Run, scheduled_run_id
from chalicelib.store import copy_key, copy_of, job_to_item, run_key, run_to_item
from chalicelib.worker import handle_batch

from .backend import SHARDS, Backend, CallLog
from .seed import MINUTE, bench_job, median, timed_with_cpu

STAMP = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class WorkerTimes:
    """Paired seconds of each round (the same number of runs on both sides)."""

    runs: int
    worker: list[float]
    floor: list[float]
    worker_cpu: list[float]
    floor_cpu: list[float]
    calls: dict[str, int]

    @property
    def ratio(self) -> float:
        """The worker's seconds per run over the floor's (the floor's rate over the worker's)."""
        return median([w / f for w, f in zip(self.worker, self.floor, strict=True)])

    @property
    def worker_rate(self) -> float:
        return self.runs / median(self.worker)

    @property
    def floor_rate(self) -> float:
        return self.runs / median(self.floor)


def _floor_requests(job: Job, occurrence: Any, table: str) -> list[tuple[str, dict[str, Any]]]:
    """The three unavoidable calls of one run, as the store makes them."""
    run_id, stamp = scheduled_run_id(occurrence), occurrence.strftime(STAMP)
    epoch = int(occurrence.timestamp())
    claim = {
        "TableName": table,
        "Key": run_key(job.id, run_id),
        "UpdateExpression": (
            "SET #status = :running, started_at = :now, lease_until = :lease, "
            "run_id = :run_id, job_id = :job_id, account = :account, "
            "#group = :group, #trigger = :trigger, "
            "scheduled_for = :scheduled_for, "
            "queued_at = if_not_exists(queued_at, :now), expires_at = :expires, "
            "#type = :type ADD attempts :one"
        ),
        "ConditionExpression": (
            "attribute_not_exists(pk) OR (#status = :queued AND attempts = "
            ":previous) OR (#status = :running AND lease_until < :epoch)"
        ),
        "ExpressionAttributeNames": {
            "#status": "status",
            "#group": "group",
            "#trigger": "trigger",
            "#type": "type",
        },
        "ExpressionAttributeValues": {
            ":running": {"S": "running"},
            ":queued": {"S": "queued"},
            ":now": {"S": stamp},
            ":previous": {"N": "0"},
            ":epoch": {"N": str(epoch)},
            ":lease": {"N": str(epoch + 120)},
            ":one": {"N": "1"},
            ":run_id": {"S": run_id},
            ":job_id": {"S": job.id},
            ":account": {"S": job.account},
            ":group": {"S": job.group},
            ":trigger": {"S": "schedule"},
            ":scheduled_for": {"S": stamp},
            ":expires": {"N": str(epoch + 30 * 86400)},
            ":type": {"S": "run"},
        },
        "ReturnValues": "ALL_NEW",
    }
    read = {"TableName": table, "Key": copy_key(job.id), "ConsistentRead": True}  # the job's copy
    final = Run(
        run_id=run_id,
        job_id=job.id,
        account=job.account,
        group=job.group,
        trigger="schedule",
        scheduled_for=stamp,
        status="succeeded",
        queued_at=stamp,
        started_at=stamp,
        finished_at=stamp,
        attempts=1,
        output="Hello, spinup!",
    )
    record = {
        "TableName": table,
        "Item": run_to_item(final, epoch + 30 * 86400),
        "ConditionExpression": "#status = :running AND attempts = :attempts",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":running": {"S": "running"}, ":attempts": {"N": "1"}},
    }
    return [("update_item", claim), ("get_item", read), ("put_item", record)]


def _job_items(jobs: list[Job]) -> list[dict[str, Any]]:
    """The items the API writes for the jobs: each job's account item and its copy."""
    return [
        i
        for job in jobs
        for i in (job_to_item(job, SHARDS), copy_of(job_to_item(job, SHARDS), job.id))
    ]


def worker_vs_floor(batch_count: int, rounds: int) -> WorkerTimes:
    """`batch_count` batches of 10 dummy runs per side and round, interleaved rounds."""
    from chalice.local import LambdaContext

    backend = Backend("bench-worker", "bench-worker-runs")
    jobs = [bench_job(i, next_at=MINUTE + timedelta(days=1)) for i in range(batch_count * 10)]
    backend.put_items(_job_items(jobs))
    context = LambdaContext(function_name="worker", memory_size=512, max_runtime_ms=120000)
    dynamodb = backend.dynamodb
    occurrences = (MINUTE + timedelta(minutes=n) for n in range(1_000_000))

    def worker_side() -> tuple[Any, list[str]]:
        occurrence = next(occurrences)
        messages = _run_messages(jobs, occurrence)
        for batch in batches(messages):
            if deps.run_queue().send_batch(batch):
                raise RuntimeError("the bench's runs could not be queued")
        received = backend.receive_all(len(messages))
        events = [backend.sqs_event(received[i : i + 10]) for i in range(0, len(received), 10)]

        def run() -> None:
            for event in events:
                if handle_batch(event, context)["batchItemFailures"]:
                    raise RuntimeError("the worker reported failed runs")

        return run, [m.run_id for m in messages]

    def floor_side() -> tuple[Any, list[str]]:
        occurrence = next(occurrences)
        calls = [
            (getattr(dynamodb, name), request)
            for job in jobs
            for name, request in _floor_requests(job, occurrence, backend.table)
        ]

        def run() -> None:
            for call, request in calls:
                call(**request)

        return run, [scheduled_run_id(occurrence)] * len(jobs)

    def check(run_ids: list[str]) -> None:
        store = deps.store()
        for job, run_id in list(zip(jobs, run_ids, strict=True))[:: max(1, len(jobs) // 10)]:
            run = store.get_run(job.id, run_id)
            if run is None or run.status != "succeeded":
                raise RuntimeError(f"run {run_id} of job {job.id}: {run}")

    def measure(side: Any, log: CallLog | None = None) -> tuple[float, float]:
        action, run_ids = side()
        if log is None:
            seconds = timed_with_cpu(action)
        else:
            with log:
                seconds = timed_with_cpu(action)
        check(run_ids)
        return seconds

    measure(worker_side), measure(floor_side)  # warm up
    log = CallLog(dynamodb, backend.sqs)
    measure(worker_side, log)
    times: dict[Any, list[tuple[float, float]]] = {worker_side: [], floor_side: []}
    for round_ in range(rounds):
        for side in (worker_side, floor_side) if round_ % 2 == 0 else (floor_side, worker_side):
            times[side].append(measure(side))
    return WorkerTimes(
        runs=len(jobs),
        worker=[w for w, _ in times[worker_side]],
        floor=[w for w, _ in times[floor_side]],
        worker_cpu=[c for _, c in times[worker_side]],
        floor_cpu=[c for _, c in times[floor_side]],
        calls=dict(log.calls),
    )


@dataclass
class BatchSpeedup:
    """Seconds to handle one batch of runs that each wait on an AWS API, one by one and at
    once; and the same batch at once with runners that do not wait (the emulator's share)."""

    runs: int
    wait: float
    one_by_one: list[float]
    at_once: list[float]
    emulator: list[float]

    @property
    def ratio(self) -> float:
        """How many times faster the batch is at once than one run after another.

        Both sides include the emulator's own work (`emulator`: the batch at once with
        runners that do not wait). moto's server is one Python process and answers one call
        at a time, where DynamoDB and SQS answer a batch's calls side by side: here that time
        stays in the batch at once, so the ratio is lower than in AWS, never higher.
        """
        return median(self.one_by_one) / median(self.at_once)


class WaitingRunner:
    """dummyRunner after `wait` seconds: a runner whose time goes to waiting on an AWS API."""

    name = "dummyRunner"
    iam_actions: tuple[str, ...] = ()  # dummyRunner's: it calls no AWS API

    def __init__(self, wait: float) -> None:
        from chalicelib.runners.dummy import DummyRunner

        self.wait = wait
        self.dummy = DummyRunner()

    def validate(self, details: Any) -> None:
        self.dummy.validate(details)

    def run(self, details: Any, ctx: Any) -> Any:
        import time

        time.sleep(self.wait)
        return self.dummy.run(details, ctx)


def batch_speedup(runs: int = 10, wait: float = 0.2, rounds: int = 3) -> BatchSpeedup:
    """One batch of `runs` runs whose runner waits `wait` s, through `handle_batch` with the
    deployed worker (all of a batch at once) and with one thread; `rounds` of each, alternated."""
    import time

    from chalice.local import LambdaContext

    from chalicelib import deps, runners

    backend = Backend("bench-speedup", "bench-speedup-runs")
    jobs = [bench_job(i, next_at=MINUTE + timedelta(days=1)) for i in range(runs)]
    backend.put_items(_job_items(jobs))
    context = LambdaContext(function_name="worker", memory_size=512, max_runtime_ms=120000)
    occurrences = (MINUTE + timedelta(minutes=n) for n in range(1_000_000))
    times: dict[int, list[float]] = {1: [], 0: [], -1: []}
    saved = runners.RUNNERS["dummyRunner"]
    waiting, instant = WaitingRunner(wait), WaitingRunner(0)
    try:
        for round_ in range(rounds + 1):  # the first round warms up (connections, threads)
            for threads in (1, 0, -1) if round_ % 2 == 0 else (-1, 0, 1):
                # -1: at once, runners that do not wait (what the emulator's calls take)
                runners.RUNNERS["dummyRunner"] = instant if threads < 0 else waiting
                occurrence = next(occurrences)
                messages = _run_messages(jobs, occurrence)
                if deps.run_queue().send_batch(messages):
                    raise RuntimeError("the bench's runs could not be queued")
                event = backend.sqs_event(backend.receive_all(runs))
                worker = deps.worker()
                if threads > 0:
                    worker.concurrency = threads
                started = time.perf_counter()
                if handle_batch(event, context, worker=worker)["batchItemFailures"]:
                    raise RuntimeError("the worker reported failed runs")
                if round_:
                    times[threads].append(time.perf_counter() - started)
                store = deps.store()
                for job, message in zip(jobs, messages, strict=True):
                    run = store.get_run(job.id, message.run_id)
                    if run is None or run.status != "succeeded":
                        raise RuntimeError(f"run {message.run_id} of job {job.id}: {run}")
    finally:
        runners.RUNNERS["dummyRunner"] = saved
    return BatchSpeedup(
        runs=runs, wait=wait, one_by_one=times[1], at_once=times[0], emulator=times[-1]
    )


def _run_messages(jobs: Sequence[Job], occurrence: datetime) -> list[RunMessage]:
    """The messages the tick would send for `jobs` at `occurrence`."""
    return [
        RunMessage(
            account=j.account,
            group=j.group,
            job_id=j.id,
            run_id=scheduled_run_id(occurrence),
            trigger="schedule",
            scheduled_for=occurrence.strftime(STAMP),
            version=j.version,  # as the tick sends them: the worker checks it before its claim
        )
        for j in jobs
    ]
