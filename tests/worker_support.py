"""Shared helpers of the worker and sweep tests: the scripted runner, the hand-moved clock,
the worker as deployed, the run messages the tick sends, and DynamoDB that throttles claims."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib import runners
from chalicelib.accounts import Registry
from chalicelib.jobs import Job, iso
from chalicelib.queue import RunMessage, RunQueue
from chalicelib.runners import RunResult
from chalicelib.runners.dummy import DummyRunner
from chalicelib.runs import Run, scheduled_run_id
from chalicelib.store import Store
from chalicelib.worker import LEASE_MARGIN, Worker
from conftest import utc
from store_support import REGISTRY, Recording

STARTED = utc("2026-01-30T10:18:05")  # the worker's clock, unless a test moves it
RUNNER_TIMEOUT = 60
LEASE = RUNNER_TIMEOUT + LEASE_MARGIN
CONCURRENCY = 10  # the deployed default (settings.worker_concurrency)


class ScriptedRunner:
    """Stands in for dummyRunner: counts its calls, and does what the test scripts
    (`behaviour(details, ctx)`), else what dummyRunner does."""

    name = "dummyRunner"

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.behaviour: Callable[[Mapping[str, str], Any], RunResult] | None = None
        self._lock = threading.Lock()

    def validate(self, details: Mapping[str, str]) -> None:
        DummyRunner().validate(details)

    def run(self, details: Mapping[str, str], ctx: Any) -> RunResult:
        with self._lock:
            self.calls[(ctx.job_id, ctx.run_id)] += 1
        if self.behaviour is not None:
            return self.behaviour(details, ctx)
        return DummyRunner().run(details, ctx)


class Clock:
    """The worker's clock, moved by hand."""

    def __init__(self, now: datetime = STARTED) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class OneRequestAtATime(Recording):
    """DynamoDB answering one request at a time. Real DynamoDB applies each conditional write
    atomically; moto in-process does not when threads call it at once, so a race test would
    otherwise test the emulator. The race stays between whole requests, as in AWS."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = super().__getattr__(name)
        if not callable(method):
            return method

        def call(**kwargs: Any) -> Any:
            with self.lock:
                return method(**kwargs)

        return call


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> ScriptedRunner:
    """dummyRunner replaced, for this test only, by a scripted, counting one."""
    scripted = ScriptedRunner()
    monkeypatch.setitem(runners.RUNNERS, "dummyRunner", scripted)
    return scripted


def make_worker(
    store: Store,
    queue: RunQueue,
    clock: Clock,
    registry: Registry = REGISTRY,
    clients: Callable[..., Any] | None = None,
    concurrency: int = CONCURRENCY,
) -> Worker:
    """The worker as deployed: a batch's records at once. Its DynamoDB answers one request at
    a time (OneRequestAtATime): moto in-process does not apply a conditional write atomically
    when threads call it at once, and DynamoDB does."""
    serialized = Store(
        OneRequestAtATime(store.client), store.table, store.shards, clock=store.clock
    )
    return Worker(
        store=serialized,
        queue=queue,
        registry=lambda: registry,
        clients=clients or (lambda entry, run_id: lambda service: None),
        runner_timeout=RUNNER_TIMEOUT,
        clock=clock,
        concurrency=concurrency,
    )


def scheduled(job: Job, minute: str = "2026-01-30T10:18", attempt: int = 1) -> RunMessage:
    """The run message the tick sends for `job`'s occurrence at `minute` (naming its version;
    the successor it names is none: nothing to delete if the run is stale)."""
    occurrence = utc(minute)
    return RunMessage(
        account=job.account,
        group=job.group,
        job_id=job.id,
        run_id=scheduled_run_id(occurrence),
        trigger="schedule",
        scheduled_for=iso(occurrence) or "",
        attempt=attempt,
        version=job.version,
    )


def the_run(store: Store, job: Job, minute: str = "2026-01-30T10:18") -> Any:
    """The stored record of `job`'s scheduled run at `minute` (None when there is none)."""
    return store.get_run(job.id, scheduled_run_id(utc(minute)))


def the_run_to_claim(job: Job) -> Run:
    """The `running` record a worker claims for `job`'s 10:18 run."""
    message = scheduled(job)
    return Run(
        run_id=message.run_id,
        job_id=job.id,
        account=job.account,
        group=job.group,
        trigger="schedule",
        scheduled_for=message.scheduled_for,
        status="running",
    )


class ThrottledClaims(Recording):
    """DynamoDB that refuses to claim the runs of one job: the exact throttling error."""

    def __init__(self, client: Any, job_id: str) -> None:
        super().__init__(client)
        self.job_id = job_id
        self.active = True

    def update_item(self, **kwargs: Any) -> Any:
        if self.active and kwargs["Key"]["pk"]["S"] == f"JOB#{self.job_id}":
            raise ClientError(
                {
                    "Error": {
                        "Code": "ProvisionedThroughputExceededException",
                        "Message": "Rate of requests exceeds the allowed throughput.",
                    },
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                "UpdateItem",
            )
        return self.client.update_item(**kwargs)
