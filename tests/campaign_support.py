"""The fault campaign's simulator (its tests: tests/test_fault_campaign.py). A campaign:
hundreds of jobs over hours of simulated minutes, driven through the real split tick (each
minute's parts, `plan_parts`, each run by `run_tick` for its shards) and the real worker
(`handle_batch`) against moto, with faults drawn at random from one seed. Afterwards the run
records must keep the promise of reliability.md: every occurrence ran at most once, none was
lost, no run stayed `running`.

Time is simulated everywhere it matters: the tick's minute comes from the scheduled event; the
worker's clock, its time left (time.monotonic) and the store's clock (TTL) are the campaign's.
Each worker invocation has its own clock, as it runs alongside the others: its runs take time
(a second or two, sometimes up to a minute), and no more invocations run at once than the
event source's maximum concurrency. SQS is moto's, but its timing is modelled here: every
message really goes through moto (real bodies, real message ids) and is drained at once; the
campaign then delivers it at its simulated time (a worker retry's DelaySeconds is forwarded as
0 and applied here), keeps it invisible for the queue's visibility timeout when the worker
reports it failed or dies, and moves it to the DLQ after the queue's maximum receives.

Faults: ticks dropped, late (event minute m invoked at m+k), delivered twice, missing for
minutes in a row; single parts of a minute lost, late, delivered twice, overlapping another
part of the same shards (which finds the shards' locks held), killed part-way (its locks held
until their lease ends, then taken over), or failing (DynamoDB or SQS throttled,
SendMessageBatch entries failed) and redelivered after the parts queue's visibility timeout,
as SQS does; messages
delivered twice, late and out of order; DynamoDB throttled under the worker; DynamoDB writes
applied but their answer lost (the SDK sends them again); workers killed right after a claim,
inside the runner, just before or just after recording; a second worker running right after a
claim or while a runner runs; jobs disabled or deleted between ticks and workers, or in the
middle of a tick; runners that fail retryably a few times.

The sweep (chalicelib/sweep.py) runs every simulated minute, as its schedule does: run messages
dropped for good (moved to the dead-letter queue before any delivery, or after five failed
ones), a job whose worker dies at every delivery, and the sweep itself killed part-way or run
twice; afterwards no run is `running` and every occurrence has exactly one outcome.

A failure prints its seed. Replay it with
    MINION_CAMPAIGN_SEED=<seed> .venv/bin/python -m pytest tests/test_fault_campaign.py -k <plan>
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib import runners
from chalicelib import worker as worker_module
from chalicelib.accounts import Registry
from chalicelib.errors import ServiceUnavailable
from chalicelib.jobs import Job, iso, job_from_request
from chalicelib.queue import RunMessage, RunQueue
from chalicelib.runners import RetryableError, RunResult
from chalicelib.runners.dummy import DummyRunner
from chalicelib.runs import scheduled_run_id
from chalicelib.schedules import parse_schedule
from chalicelib.store import Store, shard_of
from chalicelib.sweep import GRACE_SECONDS, Sweeper, SweepReport
from chalicelib.tick import Ticker, TickIncomplete, plan_parts, run_tick
from chalicelib.worker import TIME_TO_RECORD, Worker, handle_batch, retry_delay
from conftest import ACCOUNTS, QUEUE, TABLE, drain, failed_ids, scheduled_event, sqs_event

SEED_VARIABLE = "MINION_CAMPAIGN_SEED"
ROOT = Path(__file__).resolve().parents[1]
SHARDS = 2  # each Query of moto's due index reads the whole table
REGISTRY = Registry.from_document(ACCOUNTS)
START = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)  # a Monday
CREATED = START - timedelta(seconds=30)  # every job is created here: anchor 07:59
RUNNER_TIMEOUT = 60
RETENTION_SECONDS = 30 * 86400  # the store's default run retention
TICK_ATTEMPTS = 3  # deliveries of a tick part: the first and two more (maxReceiveCount)
SUB_STEPS = (0, 20, 40)  # seconds of each simulated minute at which the world moves
KILL_POINTS = ("after claim", "in runner", "before record", "after record")
SKIP_REASONS = {
    "deleted": "job deleted before it ran",
    "disabled": "job disabled before it ran",
    "forbid": "previous run still running (concurrency_policy Forbid)",
}


def _queue_setting(name: str) -> int:
    """A property of the runs queue as deployed (infra/minion.yaml), so the model follows it."""
    template = (ROOT / "infra" / "minion.yaml").read_text()
    queue = template[template.index("  RunsQueue:") :]
    return int(re.search(rf"{name}: (\d+)", queue).group(1))  # type: ignore[union-attr]


def _template_default(parameter: str) -> int:
    """A parameter's default in the template."""
    template = (ROOT / "infra" / "minion.yaml").read_text()
    found = re.search(rf"\n  {parameter}:\n(?:    .*\n)*?    Default: (\d+)", template)
    return int(found.group(1))  # type: ignore[union-attr]


def _worker_timeout() -> int:
    """The worker function's timeout (.chalice/config.json)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return int(config["stages"]["dev"]["lambda_functions"]["worker"]["lambda_timeout"])


WORKER_TIMEOUT = _worker_timeout()
VISIBILITY_TIMEOUT = _queue_setting("VisibilityTimeout")
PARTS_VISIBILITY_TIMEOUT = int(
    re.search(  # type: ignore[union-attr]
        r"VisibilityTimeout: (\d+)",
        (ROOT / "infra" / "minion.yaml").read_text().split("  TickPartsQueue:")[1],
    ).group(1)
)
MAX_RECEIVES = _queue_setting("maxReceiveCount")


class WorkerKilled(BaseException):
    """The worker Lambda dies (timeout, out of memory): nothing after this point happens, and
    the whole batch comes back after the visibility timeout."""


class PartKilled(BaseException):
    """A part-tick Lambda dies (timeout, crash) part-way: nothing it would still do happens,
    not even letting go of its shards' locks (they are free again when their lease ends)."""


class SweepKilled(BaseException):
    """The sweep Lambda dies (timeout, crash) part-way: the next minute's sweep goes on."""


class SimulatedTime:
    """The `time` module as the worker sees it: its monotonic clock is the campaign's."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign

    def monotonic(self) -> float:
        return self.campaign.epoch()

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


# --- what a campaign is made of ----------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    """Probabilities of each fault (0 turns it off)."""

    tick_dropped: float = 0.03  # a minute's tick never delivered
    tick_late: float = 0.06  # delivered 1-6 minutes late
    tick_twice: float = 0.06  # delivered a second time, up to 4 minutes later
    tick_overlap: float = 0.01  # another tick runs while one sends or advances its jobs
    part_killed: float = 0.01  # a part dies at one of its calls, its shards' locks held
    part_lost: float = 0.03  # one part of a minute never processed
    part_late: float = 0.05  # one part delivered 1-5 minutes late
    part_twice: float = 0.05  # one part delivered a second time, up to 3 minutes later
    tick_outage: float = 0.008  # ticks stop for 3-15 minutes from this minute
    tick_dynamodb: float = 0.01  # a DynamoDB call of the tick throttled
    worker_dynamodb: float = 0.008  # a DynamoDB call of the worker throttled
    response_lost: float = 0.005  # a DynamoDB write applied, its answer lost, sent again
    sqs: float = 0.02  # an SQS call (tick or worker) throttled
    entry_failed: float = 0.05  # a SendMessageBatch entry answered in `Failed`
    entries_stuck: float = 0.05  # a tick attempt whose one job's entries always fail
    message_twice: float = 0.04  # a message delivered a second time
    message_late: float = 0.3  # a message delivered 1-120 s late (so out of order)
    worker_killed: float = 0.05  # a worker invocation dies (at each kill point in turn)
    second_worker: float = 0.03  # another worker runs right after a claim or in a runner
    change_mid_tick: float = 0.5  # a job's disabling or deletion lands inside a tick
    slow_runner: float = 0.05  # a run takes 20-55 s instead of 0-2 s
    slow_period: float = 0.02  # most runs are slow for the next 5-15 minutes
    dead_lettered: float = 0.01  # a message moved to the DLQ instead of being delivered
    sweep_killed: float = 0.05  # a sweep dies at one of its calls
    sweep_twice: float = 0.05  # a sweep runs twice in the same minute


@dataclass(frozen=True)
class Plan:
    """The size of a campaign."""

    name: str
    jobs: int
    minutes: int
    tail: int = 15  # fault-free minutes after the campaign: late and retried ticks land
    rates: Rates = Rates()
    outage: tuple[int, int] | None = None  # an outage surely there: (first minute, minutes)
    concurrency: int = 0  # worker invocations at once; 0: the template's default
    doomed: int = 1  # jobs whose worker dies at every delivery of their runs

    def __post_init__(self) -> None:
        if not self.concurrency:
            object.__setattr__(self, "concurrency", _template_default("WorkerMaxConcurrency"))


DEFAULT = Plan("default", jobs=200, minutes=120)
LONG = Plan("long", jobs=300, minutes=150)

# (expression, timezone, share of the jobs); `{m}` is a minute drawn per job. The last one
# takes the jobs left over. Most are sparse: moto's DynamoDB costs milliseconds a call, and a
# run is about six calls, so the whole campaign is held to some ten runs a minute.
MIX = [
    ("* * * * *", "UTC", 0.005),
    ("*/5 * * * *", "UTC", 0.01),
    ("rate(2 minutes)", "UTC", 0.005),
    ("@every 3m", "UTC", 0.005),
    ("cron(0/15 * * * ? *)", "UTC", 0.02),
    ("{m20}/20 * * * *", "UTC", 0.03),
    ("*/30 * * * *", "Asia/Kolkata", 0.02),
    ("{m} 3-5 * * *", "America/New_York", 0.1),  # 08:00-10:59 UTC in winter
    ("cron({m} * ? * MON-FRI *)", "UTC", 0.15),
    ("cron({m} 8-12/2 * * ? 2026)", "UTC", 0.15),
    ("{m} {h} * * *", "UTC", 1.0),
]


@dataclass
class JobPlan:
    """A job of the campaign and what happens to it."""

    job: Job
    failures: int = 0  # retryable runner failures of each run before it succeeds
    change: str | None = None  # "disabled" or "deleted" ...
    change_at: datetime | None = None  # ... at this time, between the ticks and the workers
    change_index: int | None = None  # its place in the sequence of tick attempts
    doomed: bool = False  # its worker dies at every delivery

    @property
    def forbid(self) -> bool:
        return self.job.concurrency_policy == "Forbid"


@dataclass
class TickAttempt:
    """One invocation of the tick Lambda: when it started and ended in the sequence of events
    (another tick may run while it runs), its minute, and whether it completed."""

    start: int
    end: int
    minute: datetime
    completed: bool
    shards: tuple[int, ...] = ()


@dataclass
class Copy:
    """One copy of an SQS message in the campaign's model of the runs queue."""

    seq: int
    message: dict[str, Any]
    visible_at: datetime
    receives: int = 0
    in_flight: bool = False


@dataclass
class Claim:
    """A claim seen going to DynamoDB: held until its outcome is recorded or its lease ends."""

    attempts: int
    lease_until: int
    open: bool = True
    held: bool = False  # a Forbid job's hold taken for it (its runner may run)


@dataclass
class Invocation:
    """One worker invocation: its own clock (it runs alongside the others; its runs take
    time), and where (if anywhere) it is to die."""

    now: datetime
    started: datetime
    kill_point: str | None = None
    kill_at_claim: int = 0
    claims: int = 0
    outcome: str | None = None  # what the current claim's runner did: "acted" or "failed"
    claimed: list[tuple[str, str]] = field(default_factory=list)

    def doomed(self, point: str) -> bool:
        return self.kill_point == point and self.claims == self.kill_at_claim


def throttling(code: str, operation: str) -> ClientError:
    """The exact error AWS answers when a call is throttled (the SDK's retries exhausted)."""
    return ClientError(
        {
            "Error": {"Code": code, "Message": "Rate exceeded (injected)"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        operation,
    )


class Faulty:
    """A real boto3 client that throttles a fraction of calls before they reach AWS, and lets
    the campaign watch every call (and kill the worker at a chosen one)."""

    def __init__(
        self, client: Any, campaign: Campaign, role: str, rate: float, codes: tuple[str, ...]
    ) -> None:
        self.client = client
        self.campaign = campaign
        self.role = role
        self.rate = rate
        self.codes = codes
        self.rng = campaign.rng(f"throttle-{role}-{client.meta.service_model.service_name}")

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method):
            return method

        def call(**kwargs: Any) -> Any:
            self.campaign.before_call(self.role, name, kwargs)
            if self.campaign.faults_on and self.rng.random() < self.rate:
                self.campaign.on_throttled(self.role, name, kwargs)
                self.campaign.stats[f"throttled {self.role} {name}"] += 1
                raise throttling(
                    self.rng.choice(self.codes), self.client.meta.method_to_api_mapping[name]
                )
            forwarded, answer = self.campaign.rewrite(name, kwargs)
            if answer is None:
                answer = method(**forwarded)
            self.campaign.after_call(self.role, name, forwarded, answer)
            if (
                name in ("update_item", "put_item", "batch_write_item")
                and self.campaign.faults_on
                and self.rng.random() < self.campaign.rates.response_lost
            ):
                # The write was applied but its answer lost: the SDK sends it again, and a
                # conditional write now finds its own work done (ConditionalCheckFailed).
                self.campaign.stats[f"responses lost {self.role} {name}"] += 1
                return method(**forwarded)
            return answer

        return call


# --- the campaign ------------------------------------------------------------------------------


class Campaign:
    """Runs one campaign over moto and collects the violations of the promise."""

    def __init__(
        self, aws: dict[str, Any], seed: int, plan: Plan, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.aws = aws
        self.seed = seed
        self.plan = plan
        self.rates = plan.rates
        self.now = CREATED
        self.faults_on = False
        self.sequence = 0
        self.violations: list[str] = []
        self.stats: Counter[str] = Counter()
        self.attempts: list[TickAttempt] = []
        # at, seq, minute, attempt, shards
        self.pending_ticks: list[tuple[datetime, int, datetime, int, tuple[int, ...]]] = []
        self.copies: list[Copy] = []
        self.dead_letters: list[Copy] = []
        self.delays: dict[str, int] = {}
        self.sent_since_drain = 0
        self.requested_delay = 0
        self.invocations: list[Invocation] = []
        self.claims: dict[tuple[str, str], Claim] = {}
        self.effects: Counter[tuple[str, str]] = Counter()
        self.lost_effects: Counter[tuple[str, str]] = Counter()
        self.lost_failures: Counter[tuple[str, str]] = Counter()
        self.failures: Counter[tuple[str, str]] = Counter()
        self.timeouts: Counter[tuple[str, str]] = Counter()
        self.slow_until = START
        self.busy_until = [START] * plan.concurrency
        self.stuck = False
        self.stuck_job: str | None = None
        self.tick_depth = 0
        self.dead_depth = 0  # the depth of the tick (part) that died: its calls all fail
        self.kills = 0
        self.tick_minute = START
        self.tick_shards: tuple[int, ...] = tuple(range(SHARDS))
        self.attempt_start = 0
        self.parts = plan_parts(SHARDS, _template_default("TickParts"))
        self._rngs: dict[str, random.Random] = {}
        self.settled: set[int] = set()  # dead letters (by seq) the sweep is done with
        self.lost_ok: set[tuple[str, str]] = (
            set()
        )  # runs dead-lettered, or left running by a worker
        # Runs whose message reached a worker after their job was disabled or deleted (a
        # new version, or none): the worker drops such a run without a record.
        self.stale_ok: set[tuple[str, str]] = set()
        self.sweep_kill_at: int | None = None
        self.sweep_calls = 0

        self.store = Store(aws["dynamodb"], TABLE, SHARDS, clock=self.epoch)
        self.jobs = {p.job.id: p for p in self._make_jobs()}
        dynamodb_codes = ("ProvisionedThroughputExceededException", "ThrottlingException")
        tick_store = Store(
            Faulty(aws["dynamodb"], self, "tick", self.rates.tick_dynamodb, dynamodb_codes),
            TABLE,
            SHARDS,
            clock=self.epoch,
        )
        tick_queue = RunQueue(
            Faulty(aws["sqs"], self, "tick", self.rates.sqs, ("RequestThrottled",)),
            QUEUE,
            aws["queue_url"],
        )
        # One at a time, as moto in-process is not safe for concurrent conditional writes, and
        # so that a seed replays the very same calls.
        # A part that finds a shard's lock held tries again without waiting: the campaign's
        # time stands still while a part runs (the holder it waits for is on the same stack).
        self.ticker = Ticker(
            tick_store, tick_queue, shards=SHARDS, parallelism=1, sleep=lambda seconds: None
        )
        worker_store = Store(
            Faulty(aws["dynamodb"], self, "worker", self.rates.worker_dynamodb, dynamodb_codes),
            TABLE,
            SHARDS,
            clock=self.epoch,
        )
        worker_queue = RunQueue(
            Faulty(aws["sqs"], self, "worker", self.rates.sqs, ("RequestThrottled",)),
            QUEUE,
            aws["queue_url"],
        )
        # Two Lambda processes: the usual one, and one that runs while the other works.
        self.workers = [
            Worker(
                store=worker_store,
                queue=worker_queue,
                registry=lambda: REGISTRY,
                clients=lambda entry, run_id: lambda service: None,
                runner_timeout=RUNNER_TIMEOUT,
                invocation_timeout=WORKER_TIMEOUT,
                clock=self.clock,
            )
            for _ in range(2)
        ]
        # The worker bounds its runs by the invocation's time left (time.monotonic): that is
        # the invocation's simulated clock here.
        monkeypatch.setattr(worker_module, "time", SimulatedTime(self))
        self.released: set[str] = set()
        monkeypatch.setitem(runners.RUNNERS, "dummyRunner", CampaignRunner(self))
        self.sweeper = Sweeper(
            store=Store(
                Faulty(aws["dynamodb"], self, "sweep", self.rates.worker_dynamodb, dynamodb_codes),
                TABLE,
                SHARDS,
                clock=self.epoch,
            ),
            queue=RunQueue(
                Faulty(aws["sqs"], self, "sweep", self.rates.sqs, ("RequestThrottled",)),
                QUEUE,
                aws["queue_url"],
            ),
            dead_letters=None,
            clock=self.clock,
        )

    # --- set-up ------------------------------------------------------------------------------

    def rng(self, stream: str) -> random.Random:
        """An independent random stream per kind of fault, all from the one seed."""
        if stream not in self._rngs:
            self._rngs[stream] = random.Random(f"{self.seed}:{stream}")
        return self._rngs[stream]

    def clock(self) -> datetime:
        """The time where things happen: the running worker invocation's, else the world's."""
        return self.invocations[-1].now if self.invocations else self.now

    def epoch(self) -> float:
        return self.clock().timestamp()

    def _make_jobs(self) -> Iterator[JobPlan]:
        rng = self.rng("jobs")
        counts = [max(1, round(share * self.plan.jobs)) for _, _, share in MIX[:-1]]
        counts.append(max(1, self.plan.jobs - sum(counts)))
        for (template, tz, _), count in zip(MIX, counts, strict=True):
            for _ in range(count):
                # People like the top of the hour: bursts of runs at minute 0.
                minute = 0 if rng.random() < 0.3 else rng.randrange(60)
                expression = template.format(m=minute, m20=minute % 20, h=rng.randint(8, 11))
                body: dict[str, Any] = {
                    "name": f"campaign {expression}",
                    "schedule_expression": expression,
                    "schedule_timezone": tz,
                    "enabled": True,
                    "details": {"runner": "dummyRunner"},
                }
                if rng.random() < 0.35:
                    body["starting_deadline_seconds"] = rng.choice(
                        [60, 60, 120, 180, rng.randint(60, 600), 600]
                    )
                if rng.random() < 0.15:
                    body["concurrency_policy"] = "Forbid"
                job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                job = job_from_request(
                    body,
                    account="spinup",
                    group="campaign",
                    job_id=job_id,
                    entry=REGISTRY.get("spinup"),  # type: ignore[arg-type]
                    now=CREATED,
                )
                plan = JobPlan(job)
                if rng.random() < 0.08:
                    plan.change = rng.choice(["disabled", "deleted"])
                    plan.change_at = self._change_time(job, rng)
                yield plan
        yield from self._flaky_jobs(rng)
        yield from self._doomed_jobs()

    def _change_time(self, job: Job, rng: random.Random) -> datetime:
        """When to disable or delete a job: mostly right after the tick of a minute it is due
        in (its run queued, not yet worked), else at any time."""
        schedule = job.schedule()
        anchor = job.anchor  # calendar schedules ignore it
        margin = self.plan.minutes // 4
        window = (
            START + timedelta(minutes=margin),
            START + timedelta(minutes=self.plan.minutes - margin),
        )
        due = [
            t
            for t in schedule.occurrences(window[0] - timedelta(minutes=1), 50, anchor)
            if t < window[1]
        ]
        if due and rng.random() < 0.7:
            return rng.choice(due) + timedelta(seconds=SUB_STEPS[1])
        return window[0] + timedelta(
            minutes=rng.randrange(self.plan.minutes - 2 * margin), seconds=rng.choice(SUB_STEPS)
        )

    def _doomed_jobs(self) -> Iterator[JobPlan]:
        """Jobs whose worker dies at every delivery of their runs (a runner that crashes the
        process): SQS redelivers, the sweep re-queues, and at last each run ends lost."""
        rng = self.rng("doomed")
        for index in range(self.plan.doomed):
            body = {
                "name": "campaign doomed",
                "schedule_expression": "*/15 * * * *",
                "enabled": True,
                "details": {"runner": "dummyRunner"},
                "max_attempts": 2,
                **({"concurrency_policy": "Forbid"} if index % 2 else {}),
            }
            job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            job = job_from_request(
                body,
                account="spinup",
                group="doomed",
                job_id=job_id,
                entry=REGISTRY.get("spinup"),  # type: ignore[arg-type]
                now=CREATED,
            )
            yield JobPlan(job, doomed=True)

    def _flaky_jobs(self, rng: random.Random) -> Iterator[JobPlan]:
        """Jobs whose runner fails retryably a few times per run: one that succeeds on its
        third attempt, one that runs out of attempts, one per minute that forbids overlap."""
        for expression, failures, fields in (
            ("*/10 * * * *", 2, {"max_attempts": 4}),
            ("rate(10 minutes)", 5, {"max_attempts": 3}),
            ("*/5 * * * *", 2, {"max_attempts": 5, "concurrency_policy": "Forbid"}),
        ):
            body = {
                "name": "campaign flaky",
                "schedule_expression": expression,
                "enabled": True,
                "details": {"runner": "dummyRunner"},
                **fields,
            }
            job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            job = job_from_request(
                body,
                account="spinup",
                group="flaky",
                job_id=job_id,
                entry=REGISTRY.get("spinup"),  # type: ignore[arg-type]
                now=CREATED,
            )
            yield JobPlan(job, failures=failures)

    # --- the run -----------------------------------------------------------------------------

    def run(self) -> Campaign:
        started = time.monotonic()
        for plan in self.jobs.values():
            self.store.create_job(plan.job)
        tick_rng = self.rng("ticks")
        outage_until = START
        last = self.plan.minutes + self.plan.tail
        for index in range(last):
            minute = START + timedelta(minutes=index)
            self.faults_on = index < self.plan.minutes
            self.now = minute
            if not self.faults_on:
                self._schedule_parts(minute + timedelta(seconds=2), minute)
            elif self.plan.outage and index == self.plan.outage[0]:
                outage_until = minute + timedelta(minutes=self.plan.outage[1])
                self.stats["tick outages"] += 1
            elif minute < outage_until:
                self.stats["ticks dropped (outage)"] += 1
            elif tick_rng.random() < self.rates.tick_outage:
                outage_until = minute + timedelta(minutes=tick_rng.randint(3, 15))
                self.stats["tick outages"] += 1
            elif tick_rng.random() < self.rates.tick_dropped:
                self.stats["ticks dropped"] += 1
            else:
                at = minute + timedelta(seconds=tick_rng.randint(0, 10))
                if tick_rng.random() < self.rates.tick_late:
                    at += timedelta(minutes=tick_rng.randint(1, 6))
                    self.stats["ticks late"] += 1
                self._schedule_parts(at, minute)
                if tick_rng.random() < self.rates.tick_twice:
                    self._schedule_parts(at + timedelta(seconds=tick_rng.randint(0, 240)), minute)
                    self.stats["ticks twice"] += 1
            if self.faults_on and self.rng("slow").random() < self.rates.slow_period:
                self.slow_until = minute + timedelta(minutes=self.rng("slow").randint(5, 15))
                self.stats["slow periods"] += 1
            for second in SUB_STEPS:
                self._step(minute + timedelta(seconds=second))
                if second == SUB_STEPS[1]:
                    self._sweep()
        self.faults_on = False
        self.last_minute = START + timedelta(minutes=last - 1)
        # Drain: no more ticks; deliver what is left at its simulated time.
        deadline = self.now + timedelta(hours=12)
        while (self.copies or self.pending_ticks) and self.now < deadline:
            upcoming = [c.visible_at for c in self.copies] + [t[0] for t in self.pending_ticks]
            if min(upcoming) <= self.now:  # waiting for a free invocation
                upcoming = [min(self.busy_until)]
            self._step(max(self.now + timedelta(seconds=1), min(upcoming)))
        self._settle(deadline)
        self.stats["seconds"] = round(time.monotonic() - started)
        return self

    def _apply_changes(self) -> list[JobPlan]:
        """Disable or delete the jobs whose time has come (as a PUT or DELETE would)."""
        changed = []
        for plan in self.jobs.values():
            if plan.change_at is None or plan.change_at > self.now or plan.change_index:
                continue
            job = plan.job
            previous = self.store.get_job(job.account, job.group, job.id)
            if plan.change == "deleted":
                self.store.delete_job(previous)
            else:
                body = {
                    **{
                        k: v
                        for k, v in previous.to_api().items()
                        if k
                        in (
                            "name",
                            "schedule_expression",
                            "schedule_timezone",
                            "details",
                            "starting_deadline_seconds",
                            "concurrency_policy",
                            "max_attempts",
                        )
                    },
                    "enabled": False,
                }
                self.store.replace_job(
                    job_from_request(
                        body,
                        account=job.account,
                        group=job.group,
                        job_id=job.id,
                        entry=REGISTRY.get("spinup"),  # type: ignore[arg-type]
                        now=self.now,
                        previous=previous,
                    ),
                    previous,
                )
            plan.change_index = self._next_index()
            self.stats[f"jobs {plan.change}"] += 1
            changed.append(plan)
        return changed

    def _next_index(self) -> int:
        self.sequence += 1
        return self.sequence

    def _schedule_parts(self, at: datetime, minute: datetime) -> None:
        """The scheduled tick of `minute` fans out: each part reaches a part-tick on its own
        (the parts queue's delivery: lost, late or twice, each part apart)."""
        rng = self.rng("parts")
        for shards in self.parts:
            if self.faults_on and rng.random() < self.rates.part_lost:
                self.stats["parts lost"] += 1
                continue
            when = at + timedelta(seconds=rng.randint(0, 5))
            if self.faults_on and rng.random() < self.rates.part_late:
                when += timedelta(minutes=rng.randint(1, 5))
                self.stats["parts late"] += 1
            self._schedule_tick(when, minute, 1, tuple(shards))
            if self.faults_on and rng.random() < self.rates.part_twice:
                self._schedule_tick(
                    when + timedelta(seconds=rng.randint(0, 180)), minute, 1, tuple(shards)
                )
                self.stats["parts twice"] += 1

    def _schedule_tick(
        self, at: datetime, minute: datetime, attempt: int, shards: tuple[int, ...]
    ) -> None:
        self.pending_ticks.append((at, self._next_index(), minute, attempt, shards))
        self.pending_ticks.sort()

    def _step(self, moment: datetime) -> None:
        self.now = moment
        while self.pending_ticks and self.pending_ticks[0][0] <= moment:
            _, _, minute, attempt, shards = self.pending_ticks.pop(0)
            self._tick(minute, attempt, shards)
        self._apply_changes()
        self._worker_round()

    def _tick(self, minute: datetime, attempt: int, shards: tuple[int, ...]) -> None:
        outer = (self.stuck, self.stuck_job, self.tick_minute, self.tick_shards, self.attempt_start)
        self.tick_minute = minute
        self.tick_shards = shards
        self.stuck = self.faults_on and self.rng("stuck").random() < self.rates.entries_stuck
        self.stuck_job = None
        self.tick_depth += 1
        start = self._next_index()
        self.attempt_start = start
        completed = False
        covered = shards
        try:
            report = run_tick(
                self.ticker, scheduled_event(iso(minute) or ""), now=self.epoch(), shards=shards
            )
            completed = True
            # Shards another part held are left to the parts after it: this one never read
            # them (the oracle must not count it as having reached their jobs).
            covered = tuple(s for s in shards if s not in report.deferred)
            if report.deferred:
                self.stats["shards deferred to the next part"] += len(report.deferred)
        except PartKilled:
            self.stats["parts killed"] += 1
        except (ServiceUnavailable, TickIncomplete) as error:
            self.stats[f"tick failed: {type(error).__name__}"] += 1
        except ClientError as error:  # SQS's own errors are not translated: fine
            code = error.response["Error"]["Code"]
            if code != "RequestThrottled":
                self.violations.append(f"tick {iso(minute)} raised {code}: {error}")
            self.stats[f"tick failed: {code}"] += 1
        except Exception as error:
            self.violations.append(f"tick {iso(minute)} raised {error!r}")
        self.stuck, self.stuck_job, self.tick_minute, self.tick_shards, self.attempt_start = outer
        if self.dead_depth == self.tick_depth:
            self.dead_depth = 0
        self.tick_depth -= 1
        self.attempts.append(TickAttempt(start, self._next_index(), minute, completed, covered))
        if not completed and attempt < TICK_ATTEMPTS:
            # A part reported failed comes back after the parts queue's visibility timeout.
            self._schedule_tick(
                self.now + timedelta(seconds=PARTS_VISIBILITY_TIMEOUT), minute, attempt + 1, shards
            )
        self._collect()

    # --- the runs queue, as SQS would deliver it -----------------------------------------------

    def _collect(self) -> None:
        """Move what moto's queue holds into the model (keeping moto's queue empty)."""
        if not self.sent_since_drain:
            return
        rng = self.rng("messages")
        for message in drain(self.aws["sqs"], self.aws["queue_url"]):
            visible = self.clock() + timedelta(seconds=self.delays.pop(message["MessageId"], 0))
            if self.faults_on and rng.random() < self.rates.message_late:
                visible += timedelta(seconds=rng.randint(1, 120))
            if self.faults_on and self.rng("dead letters").random() < self.rates.dead_lettered:
                # Dropped for good: it never reaches a worker (as if every receive failed).
                self.dead_letters.append(Copy(self._next_index(), message, visible))
                self.lost_ok.add(_run_key(message["Body"]))
                self.stats["messages dead-lettered"] += 1
                continue
            self.copies.append(Copy(self._next_index(), message, visible))
            if self.faults_on and rng.random() < self.rates.message_twice:
                self.copies.append(
                    Copy(
                        self._next_index(),
                        message,
                        visible + timedelta(seconds=rng.randint(0, 300)),
                    )
                )
                self.stats["messages twice"] += 1
        self.sent_since_drain = 0

    def _worker_round(self, nested: bool = False) -> None:
        """Lambda's poller: hand the visible messages to the worker in batches of 1-10, as
        many invocations at once as the event source's maximum concurrency allows."""
        rng = self.rng("batches")
        while True:
            now = self.clock()
            ready = [c for c in self.copies if not c.in_flight and c.visible_at <= now]
            free = [slot for slot, busy in enumerate(self.busy_until) if busy <= now]
            if not ready:
                return
            if not free:
                self.stats["worker rounds at full concurrency"] += 1
                return
            if self.faults_on:
                rng.shuffle(ready)
            size = rng.randint(1, 10) if self.faults_on else 10
            batch: list[Copy] = []
            for copy in ready:
                if len(batch) < size and all(
                    c.message["MessageId"] != copy.message["MessageId"] for c in batch
                ):
                    batch.append(copy)
            self.busy_until[free[0]] = datetime.max.replace(tzinfo=UTC)
            self.busy_until[free[0]] = self._invoke_worker(batch, self.workers[nested])
            if nested:
                return

    def _invoke_worker(self, batch: list[Copy], worker: Worker) -> datetime:
        """One worker invocation over a batch; when it ends."""
        rng = self.rng("kills")
        received_at = self.clock()
        invocation = Invocation(received_at, received_at)
        if self.faults_on and rng.random() < self.rates.worker_killed:
            # Each point in turn, so that every campaign with a few kills has them all.
            invocation.kill_point = KILL_POINTS[self.kills % len(KILL_POINTS)]
            invocation.kill_at_claim = rng.randint(1, len(batch))
        for copy in batch:
            copy.in_flight = True
            copy.receives += 1
            key = _run_key(copy.message["Body"])
            if self.jobs[key[0]].change_index is not None:
                self.stale_ok.add(key)
        event = sqs_event(
            [
                {
                    **c.message,
                    "Attributes": {
                        **c.message.get("Attributes", {}),
                        "ApproximateReceiveCount": str(c.receives),
                    },
                }
                for c in batch
            ]
        )
        self.invocations.append(invocation)
        failed: set[str]
        try:
            response = handle_batch(event, worker=worker)
            failed = set(failed_ids(response))
        except WorkerKilled:
            self.stats[f"workers killed {invocation.kill_point or 'doomed'}"] += 1
            self.kills += invocation.kill_point is not None
            self.lost_ok.update(invocation.claimed)
            failed = {c.message["MessageId"] for c in batch}
        except Exception as error:
            self.violations.append(f"worker invocation raised {error!r}")
            failed = {c.message["MessageId"] for c in batch}
        finally:
            self.invocations.pop()
        # A claim this invocation left open (it died, or failed the message after claiming:
        # a throttled record or job read) is `running` until taken over: the sweep may end it.
        self.lost_ok.update(
            key for key in invocation.claimed if key in self.claims and self.claims[key].open
        )
        for copy in batch:
            copy.in_flight = False
            if copy.message["MessageId"] not in failed:
                self.copies.remove(copy)
            elif copy.receives >= MAX_RECEIVES:
                self.copies.remove(copy)
                self.dead_letters.append(copy)
                self.lost_ok.add(_run_key(copy.message["Body"]))
            elif copy.message["ReceiptHandle"] in self.released:
                copy.visible_at = invocation.now
                self.stats["messages postponed"] += 1
            else:
                copy.visible_at = received_at + timedelta(seconds=VISIBILITY_TIMEOUT)
                self.stats["messages failed"] += 1
        self.released.difference_update(c.message["ReceiptHandle"] for c in batch)
        self._collect()
        return invocation.now

    # --- the sweep, every minute ----------------------------------------------------------------

    def _sweep(self) -> bool:
        """The sweep's minute: the dead letters it has not settled, then the watch index; now
        and then it dies part-way, or two run one after the other. Whether it did anything."""
        rng = self.rng("sweeps")
        rounds = 2 if self.faults_on and rng.random() < self.rates.sweep_twice else 1
        self.stats["sweeps twice"] += rounds - 1
        did = False
        for _ in range(rounds):
            self.sweep_calls = 0
            if self.faults_on and rng.random() < self.rates.sweep_killed:
                self.sweep_kill_at = rng.randint(1, 8)
            report = SweepReport()
            try:
                for copy in self.dead_letters:
                    key = _run_key(copy.message["Body"])
                    if copy.seq not in self.settled and self.jobs[key[0]].change_index:
                        # The sweep gives up a never-claimed run of a changed job, as the
                        # worker would: it may end without a record.
                        self.stale_ok.add(key)
                    if copy.seq not in self.settled and self.sweeper.settle_dead_letter(
                        copy.message["Body"], copy.message["MessageId"], report
                    ):
                        self.settled.add(copy.seq)
                        did = True
                swept = self.sweeper.sweep()
                report.lost += swept.lost
                report.requeued += swept.requeued
            except SweepKilled:
                self.stats["sweeps killed"] += 1
                did = True
            except (ServiceUnavailable, ClientError) as error:
                self.stats[f"sweep failed: {type(error).__name__}"] += 1
                did = True
            except Exception as error:
                self.violations.append(f"sweep at {iso(self.now)} raised {error!r}")
            finally:
                self.sweep_kill_at = None
            self.stats["runs lost (sweep)"] += report.lost
            self.stats["runs re-queued (sweep)"] += report.requeued
            did = did or bool(report.lost or report.requeued)
            self._collect()
        return did

    def _settle(self, deadline: datetime) -> None:
        """After the drain: a sweep a minute, and the deliveries it causes, until a lease and
        its grace went by with nothing left to do (a watched run's worker died: the sweep
        takes it only then)."""
        quiet_minutes = (RUNNER_TIMEOUT + worker_module.LEASE_MARGIN + GRACE_SECONDS) // 60 + 2
        quiet = 0
        while quiet < quiet_minutes and self.now < deadline:
            self._step(self.now + timedelta(minutes=1))
            did = self._sweep()
            while (self.copies or self.pending_ticks) and self.now < deadline:
                did = True
                upcoming = [c.visible_at for c in self.copies] + [t[0] for t in self.pending_ticks]
                if min(upcoming) <= self.now:
                    upcoming = [min(self.busy_until)]
                self._step(max(self.now + timedelta(seconds=1), min(upcoming)))
                if self.rng("settle").random() < 0.2:
                    self._sweep()
            unsettled = [c for c in self.dead_letters if c.seq not in self.settled]
            quiet = 0 if did or unsettled else quiet + 1

    # --- watching the calls --------------------------------------------------------------------

    def rewrite(
        self, name: str, kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """What actually goes to AWS, or the answer given instead: a delay is applied by the
        model, not by moto (whose delays are real seconds); some batch entries are answered as
        failed (HTTP 200 with `Failed`) instead of being sent."""
        if name == "send_message":
            self.requested_delay = kwargs.get("DelaySeconds", 0)
            return {**kwargs, "DelaySeconds": 0}, None
        if name == "change_message_visibility_batch":
            # Messages handed back at once (moto's copies are drained already): the model
            # makes them visible again now.
            self.released.update(e["ReceiptHandle"] for e in kwargs["Entries"])
            self.stats["messages released"] += len(kwargs["Entries"])
            return kwargs, {
                "Successful": [{"Id": e["Id"]} for e in kwargs["Entries"]],
                "Failed": [],
            }
        if name != "send_message_batch":
            return kwargs, None
        rng = self.rng("entries")
        if self.stuck and self.stuck_job is None:  # this job's entries fail all this attempt
            self.stuck_job = RunMessage.from_body(kwargs["Entries"][0]["MessageBody"]).job_id
        bad = [
            e
            for e in kwargs["Entries"]
            if self.faults_on
            and (
                rng.random() < self.rates.entry_failed
                or self.stuck_job is not None
                and self.stuck_job in e["MessageBody"]
            )
        ]
        if not bad:
            return kwargs, None
        self.stats["batch entries failed"] += len(bad)
        good = [e for e in kwargs["Entries"] if e not in bad]
        answer: dict[str, Any] = {"Successful": [], "Failed": []}
        if good:
            answer = self.aws["sqs"].send_message_batch(QueueUrl=kwargs["QueueUrl"], Entries=good)
        answer.setdefault("Failed", [])
        answer["Failed"] += [
            {
                "Id": e["Id"],
                "SenderFault": False,
                "Code": "InternalError",
                "Message": "injected: entry not stored",
            }
            for e in bad
        ]
        return kwargs, answer

    def before_call(self, role: str, name: str, kwargs: dict[str, Any]) -> None:
        if role == "tick" and self.tick_depth and self.dead_depth == self.tick_depth:
            raise PartKilled()  # a dead part makes no more calls
        if (
            role == "tick"
            and name in ("query", "send_message_batch", "batch_write_item")
            and self.tick_depth == 1
            and self.faults_on
            and self.rng("part kills").random() < self.rates.part_killed
        ):
            self.dead_depth = self.tick_depth
            raise PartKilled()
        if (
            role == "tick"
            and name in ("send_message_batch", "batch_write_item")
            and self.tick_depth == 1
            and self.faults_on
            and self.rng("overlap").random() < self.rates.tick_overlap
        ):
            # Another tick Lambda runs while this one is sending or advancing its jobs: the
            # same event delivered twice at once, or the tick of the current minute meeting a
            # late one. It finds the shards' locks held: it waits, then leaves them (or finds
            # them done through its minute).
            self.stats["ticks overlapping"] += 1
            self._tick(
                self.rng("overlap").choice(
                    [self.tick_minute, self.now.replace(second=0, microsecond=0)]
                ),
                TICK_ATTEMPTS,
                self.tick_shards,
            )
        if (
            role == "tick"
            and name in ("batch_get_item", "batch_write_item")
            and self.faults_on
            and self.rng("mid-tick").random() < self.rates.change_mid_tick
            and any(
                p.change_at and p.change_at <= self.now and not p.change_index
                for p in self.jobs.values()
            )
        ):
            # A client disables or deletes a job while the tick is between reading its due
            # item and reading the job, or between reading the job and advancing it.
            self.stats["jobs changed mid-tick"] += 1
            changed = self._apply_changes()
            if name == "batch_get_item":
                # Before the part read the jobs: for it, the change came first.
                for plan in changed:
                    plan.change_index = self.attempt_start
        if role == "sweep":
            self.sweep_calls += 1
            if self.sweep_calls == self.sweep_kill_at:
                raise SweepKilled()
        if role != "worker" or not self.invocations:
            return
        invocation = self.invocations[-1]
        if name == "put_item" and _is_record(kwargs):
            item = kwargs["Item"]
            key = (item["job_id"]["S"], item["run_id"]["S"])
            if item["status"]["S"] == "skipped":
                self._check_skip(key, item)
            if invocation.doomed("before record"):
                self._outcome_lost(invocation, key)
                raise WorkerKilled()
        if name == "send_message":
            message = RunMessage.from_body(kwargs["MessageBody"])
            if kwargs.get("DelaySeconds") != retry_delay(message.attempt - 1):
                self.violations.append(
                    f"{message.run_id} of {message.job_id}: attempt {message.attempt} sent "
                    f"with a delay of {kwargs.get('DelaySeconds')} s"
                )

    def on_throttled(self, role: str, name: str, kwargs: dict[str, Any]) -> None:
        if role != "worker" or not self.invocations:
            return
        if name == "put_item" and _is_record(kwargs):
            item = kwargs["Item"]
            self._outcome_lost(self.invocations[-1], (item["job_id"]["S"], item["run_id"]["S"]))
        elif name == "send_message":  # the retry of a failed attempt cannot be queued
            message = RunMessage.from_body(kwargs["MessageBody"])
            self._outcome_lost(self.invocations[-1], (message.job_id, message.run_id))

    def _outcome_lost(self, invocation: Invocation, key: tuple[str, str]) -> None:
        """The runner acted (or failed) but its outcome is never recorded: the claim stays
        `running` and the run is taken over once its lease ends, so the runner runs again.
        At-least-once is all a worker that dies after acting can offer (reliability.md:
        "retried after its lease expires"); the campaign counts these to allow for them."""
        if invocation.outcome == "acted":
            self.lost_effects[key] += 1
        elif invocation.outcome == "failed":
            self.lost_failures[key] += 1
        invocation.outcome = None

    def after_call(self, role: str, name: str, kwargs: dict[str, Any], answer: Any) -> None:
        if name == "send_message":
            self.delays[answer["MessageId"]] = self.requested_delay
            self.sent_since_drain += 1
        elif name == "send_message_batch":
            self.sent_since_drain += len(answer.get("Successful", []))
        if name == "update_item" and kwargs["UpdateExpression"].startswith("SET forbid_run"):
            held = (
                kwargs["Key"]["sk"]["S"].rsplit("#", 1)[1],
                kwargs["ExpressionAttributeValues"][":run_id"]["S"],
            )
            if held in self.claims:
                self.claims[held].held = True
        if role != "worker" or not self.invocations:
            return
        invocation = self.invocations[-1]
        if name == "update_item" and "lease_until = :lease" in kwargs["UpdateExpression"]:
            attributes = answer["Attributes"]
            key = (attributes["job_id"]["S"], attributes["run_id"]["S"])
            self.claims[key] = Claim(
                int(attributes["attempts"]["N"]), int(attributes["lease_until"]["N"])
            )
            invocation.claims += 1
            invocation.claimed.append(key)
            invocation.outcome = None
            if invocation.doomed("after claim"):
                raise WorkerKilled()
            self._maybe_second_worker()
        elif name == "put_item" and _is_record(kwargs):
            item = kwargs["Item"]
            key = (item["job_id"]["S"], item["run_id"]["S"])
            if key in self.claims:
                self.claims[key].open = False
            if invocation.doomed("after record"):
                raise WorkerKilled()

    def _maybe_second_worker(self) -> None:
        """Now and then, another worker Lambda handles a batch while this one works."""
        if (
            self.faults_on
            and len(self.invocations) == 1
            and self.rng("second worker").random() < self.rates.second_worker
        ):
            self.stats["second workers"] += 1
            # Another process: its own runner thread (the worker keeps one per process).
            own_pool, worker_module._pool = worker_module._pool, None
            try:
                self._worker_round(nested=True)
            finally:
                if worker_module._pool is not None:
                    worker_module._pool.shutdown(wait=False)
                worker_module._pool = own_pool

    def running(self, job_id: str, other_than: str) -> list[str]:
        """Runs of a job held under a live lease (what the store knows as running)."""
        now = int(self.epoch())
        # A claim whose worker died before it took the job's Forbid hold never ran its runner:
        # it does not block the next run (the hold does, chalicelib/store.py hold_forbid).
        return [
            run_id
            for (job, run_id), claim in self.claims.items()
            if job == job_id
            and run_id != other_than
            and claim.open
            and claim.held
            and claim.lease_until >= now
        ]

    def _check_skip(self, key: tuple[str, str], item: Mapping[str, Any]) -> None:
        plan = self.jobs[key[0]]
        reason = item.get("error", {}).get("S", "")
        if reason == SKIP_REASONS["forbid"]:
            if not plan.forbid or not self.running(*key):
                self.violations.append(
                    f"{key[1]} of job {key[0]} skipped for Forbid while no other run ran "
                    f"(policy {plan.job.concurrency_policy})"
                )
        elif reason in (SKIP_REASONS["deleted"], SKIP_REASONS["disabled"]):
            if (
                plan.change_at is None
                or self.clock() < plan.change_at
                or (reason != SKIP_REASONS[plan.change or ""])
            ):
                self.violations.append(
                    f"{key[1]} of job {key[0]} skipped ({reason}) though "
                    f"the job was {plan.change or 'unchanged'} then"
                )
        else:
            self.violations.append(
                f"{key[1]} of job {key[0]} skipped for an undocumented reason: {reason!r}"
            )

    # --- the runner ----------------------------------------------------------------------------

    def run_runner(self, job_id: str, run_id: str) -> RunResult:
        invocation = self.invocations[-1]
        plan = self.jobs[job_id]
        key = (job_id, run_id)
        if invocation.doomed("in runner"):
            raise WorkerKilled()
        if plan.doomed:
            self.lost_ok.add(key)
            raise WorkerKilled()  # the runner takes the process down, every time
        if plan.forbid and self.running(job_id, run_id):
            self.violations.append(
                f"{run_id} of Forbid job {job_id} started while {self.running(job_id, run_id)} "
                f"ran under a live lease"
            )
        self._maybe_second_worker()
        # The run takes time, bounded as the worker bounds it: by its runner timeout and by
        # what the invocation has left.
        duration = self._duration()
        limit = min(
            RUNNER_TIMEOUT,
            (invocation.started - invocation.now).total_seconds() + WORKER_TIMEOUT - TIME_TO_RECORD,
        )
        invocation.now += timedelta(seconds=min(duration, limit))
        fails = self.failures[key] < plan.failures
        if fails:
            self.failures[key] += 1
        else:
            self.effects[key] += 1
        if duration > limit:
            # The worker stops waiting and records a timeout; the runner's thread goes on and
            # acts (or fails) all the same, unknown to the worker.
            self.stats["runners timed out"] += 1
            self.timeouts[key] += 1
            if not fails:
                self.lost_effects[key] += 1
            invocation.outcome = None
            raise RetryableError(f"runner timed out after {limit:.0f} s", code="Timeout")
        if fails:
            invocation.outcome = "failed"
            raise RetryableError("injected: the resource is busy", code="ThrottlingException")
        invocation.outcome = "acted"
        return RunResult(output=f"ran {run_id}")

    def _duration(self) -> float:
        """How long a runner takes: mostly a second or two; sometimes, and most of the time
        during a slow period (an AWS API having a bad day), 20 to 55 seconds."""
        rng = self.rng("durations")
        slow = self.rates.slow_runner if self.clock() >= self.slow_until else 0.6
        if self.faults_on and rng.random() < slow:
            return rng.uniform(20, 55)
        return rng.uniform(0.1, 2)

    # --- the verdict ---------------------------------------------------------------------------

    def all_runs(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every run record, by job id and run id, straight from the table (one Scan: moto
        reads the whole table for each Query anyway)."""
        runs: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        scan: dict[str, Any] = {
            "TableName": TABLE,
            "FilterExpression": "begins_with(sk, :r)",
            "ExpressionAttributeValues": {":r": {"S": "RUN#"}},
            "ConsistentRead": True,
        }
        while True:
            page = self.aws["dynamodb"].scan(**scan)
            for item in page["Items"]:
                run = {k: next(iter(v.values())) for k, v in item.items()}
                runs[run["job_id"]][run["run_id"]] = run
            if "LastEvaluatedKey" not in page:
                return runs
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def check(self) -> list[str]:
        """Every violation of the promise found in the run records and the queues."""
        violations = list(self.violations)
        for copy in self.dead_letters:
            message = RunMessage.from_body(copy.message["Body"])
            record = self.store.get_run(message.job_id, message.run_id)
            if record is None and (message.job_id, message.run_id) in self.stale_ok:
                continue
            if record is None or record.status in ("queued", "running"):
                violations.append(
                    f"{message.run_id} of job {message.job_id} (attempt "
                    f"{message.attempt}) landed in the DLQ while its run was "
                    f"{record.status if record else 'not recorded'}"
                )
        self.stats["dead letters"] = len(self.dead_letters)
        for copy in self.dead_letters:
            if copy.seq not in self.settled:
                violations.append(
                    f"dead letter {copy.message['MessageId']} never settled by the sweep"
                )
        statuses: Counter[str] = Counter()
        runs = self.all_runs()
        for plan in self.jobs.values():
            records = runs.get(plan.job.id, {})
            statuses.update(r["status"] for r in records.values())
            violations += self._check_job(plan, records)
        self.stats.update({f"runs {s}": n for s, n in statuses.items()})
        return violations

    def _check_job(self, plan: JobPlan, records: dict[str, dict[str, Any]]) -> list[str]:
        job = plan.job
        schedule = parse_schedule(job.schedule_expression, job.schedule_timezone)
        anchor = job.anchor  # calendar schedules ignore it
        found: list[str] = []
        expected: set[str] = set()
        occurrence = job.next
        while occurrence is not None and occurrence <= self.last_minute:
            following = schedule.next_after(occurrence, anchor)
            run_id = scheduled_run_id(occurrence)
            expected.add(run_id)
            record = records.get(run_id)
            allowed = self._allowed(plan, occurrence, following)
            where = f"{iso(occurrence)} of job {job.id} ({job.schedule_expression})"
            if record is None:
                if "none" not in allowed and (job.id, run_id) not in self.stale_ok:
                    found.append(f"{where}: lost (no run record; expected {sorted(allowed)})")
            else:
                found += [
                    f"{where}: {problem}" for problem in self._check_record(plan, record, allowed)
                ]
            occurrence = following
        for run_id, record in records.items():
            if run_id not in expected:
                found.append(
                    f"{run_id} of job {job.id} ({job.schedule_expression}): recorded "
                    f"{record['status']} but not an occurrence the job should have "
                    f"reached"
                )
        for (job_id, run_id), count in self.effects.items():
            if job_id == job.id and count > 1 + self.lost_effects[(job_id, run_id)]:
                found.append(
                    f"{run_id} of job {job_id}: the runner acted {count} times "
                    f"({self.lost_effects[(job_id, run_id)]} outcomes lost to a dead "
                    f"or throttled worker)"
                )
        return found

    def _allowed(self, plan: JobPlan, occurrence: datetime, following: datetime | None) -> set[str]:
        """What may have become of an occurrence, given the ticks that actually ran.

        The first tick part (of the job's shard) to reach the job at or after the occurrence decides: it runs the
        occurrence if it is the latest one due and within the starting deadline, else records
        it missed. That is the first tick of a minute at or after it to complete, or any such
        tick that started before that one ended (a failed tick may have sent, recorded or
        advanced part of its jobs; an overlapping one may have got there first). A tick after
        the job was disabled or deleted does not reach it.
        """
        shard = shard_of(plan.job.id, SHARDS)
        eligible = [
            a
            for a in self.attempts
            if a.minute >= occurrence
            and shard in a.shards
            and (plan.change_index is None or a.start < plan.change_index)
        ]
        completed = [a.end for a in eligible if a.completed]
        first_end = min(completed, default=None)
        allowed = set()
        for attempt in eligible:
            if first_end is not None and attempt.start > first_end:
                continue
            late = (attempt.minute - occurrence).total_seconds()
            superseded = following is not None and following <= attempt.minute
            allowed.add("missed" if superseded or late > plan.job.deadline_seconds else "run")
        if first_end is not None:
            return allowed
        return allowed | {"none" if plan.change_index is not None else "no completed tick"}

    def _check_record(self, plan: JobPlan, record: dict[str, Any], allowed: set[str]) -> list[str]:
        key = (plan.job.id, record["run_id"])
        status = record["status"]
        effects = self.effects[key]
        lost = self.lost_effects[key]
        problems = []
        if (record["trigger"], record["scheduled_for"]) != (
            "schedule",
            iso(_parse(record["run_id"])),
        ):
            problems.append(f"a malformed record {record}")
        stored_at = int(record["expires_at"]) - RETENTION_SECONDS
        if not CREATED.timestamp() <= stored_at <= self.now.timestamp() + WORKER_TIMEOUT:
            problems.append(
                f"expires at {record['expires_at']}: not {RETENTION_SECONDS} s "
                f"after a time of the campaign's clock"
            )
        if status in ("running", "queued"):
            return problems + [f"still {status} at the end (attempts {record.get('attempts')})"]
        if status == "missed":
            if "missed" not in allowed:
                problems.append(f"recorded missed, expected {sorted(allowed)}")
            if effects:
                problems.append(f"recorded missed but the runner acted {effects} times")
            return problems
        if "run" not in allowed:
            problems.append(f"recorded {status}, expected {sorted(allowed)}")
        if status == "succeeded":
            if effects < 1:
                problems.append("recorded succeeded but the runner never acted")
            if self.failures[key] != plan.failures:
                problems.append(
                    f"succeeded after {self.failures[key]} failures, the runner "
                    f"fails {plan.failures} times"
                )
        elif status == "failed" and record.get("error_code") == "RunLost":
            if key not in self.lost_ok:
                problems.append(
                    f"failed as lost ({record.get('error')}) though its message "
                    f"was never dead-lettered and no worker left it unrecorded"
                )
        elif status == "failed":
            cause = "Timeout" if self.timeouts[key] else "ThrottlingException"
            if (
                not (plan.failures or self.timeouts[key])
                or int(record["attempts"]) < plan.job.attempts_allowed
                or record.get("error_code") not in (cause, "ThrottlingException")
            ):
                problems.append(
                    f"failed ({record.get('error')}, attempts "
                    f"{record['attempts']}) though it could have succeeded"
                )
        elif status != "skipped":
            problems.append(f"an unknown status {status}")
        if status != "succeeded" and effects > lost:
            problems.append(f"recorded {status} but the runner acted {effects} times")
        if self.failures[key] > plan.job.attempts_allowed + self.lost_failures[key]:
            problems.append(
                f"the runner failed {self.failures[key]} times, more than the "
                f"{plan.job.attempts_allowed} attempts allowed (and "
                f"{self.lost_failures[key]} failures never recorded)"
            )
        return problems

    def summary(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.stats.items()))
        return (
            f"plan {self.plan.name} ({len(self.jobs)} jobs, {self.plan.minutes} minutes), "
            f"{len(self.attempts)} tick attempts; {counts}"
        )


class CampaignRunner:
    """dummyRunner for the campaign: counts what it does, fails where the plan says."""

    name = "dummyRunner"

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign

    def validate(self, details: Mapping[str, str]) -> None:
        DummyRunner().validate(details)

    def run(self, details: Mapping[str, str], ctx: Any) -> RunResult:
        return self.campaign.run_runner(ctx.job_id, ctx.run_id)


def _is_record(kwargs: Mapping[str, Any]) -> bool:
    """Whether a PutItem is the worker recording the outcome of its claim."""
    return kwargs.get("ConditionExpression", "").startswith("#status = :running")


def _run_key(body: str) -> tuple[str, str]:
    message = RunMessage.from_body(body)
    return message.job_id, message.run_id


def _parse(run_id: str) -> datetime:
    return datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


# --- the campaigns -----------------------------------------------------------------------------


def campaign_seed() -> int:
    """The seed to replay (MINION_CAMPAIGN_SEED), else a fresh one: CI keeps searching."""
    value = os.environ.get(SEED_VARIABLE, "").strip()
    return int(value) if value else random.SystemRandom().randrange(2**32)


def run_campaign(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, seed: int, plan: Plan
) -> Campaign:
    """Run a campaign and assert that it found nothing; the seed is in every message."""
    print(f"fault campaign seed: {seed} (plan {plan.name})")
    campaign = Campaign(aws, seed, plan, monkeypatch).run()
    violations = campaign.check()
    print(f"fault campaign seed: {seed}: {campaign.summary()}")
    assert not violations, (
        f"fault campaign seed: {seed} (plan {plan.name}; replay with {SEED_VARIABLE}={seed}): "
        f"{len(violations)} broken promises:\n  " + "\n  ".join(violations[:40])
    )
    return campaign
