"""The minute tick: what it queues, records and advances when events are late, doubled or
retried, when sends fail part-way, and when the due index is big or holds a broken job.

AWS is moto in-process; failures are injected by wrapping one method of a real client.
Ticks are real scheduled-event payloads (`scheduled_event`), run messages go through the real
queue and the real worker (`handle_batch`), so "exactly once" is checked end to end.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.types import (
    PartialItemFailureResponse,
    PartialItemFailures,
)
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from chalicelib import deps, runners
from chalicelib.errors import ServiceUnavailable
from chalicelib.jobs import Job, iso
from chalicelib.queue import BATCH_SIZE, RunQueue
from chalicelib.runners.dummy import DummyRunner
from chalicelib.store import DUE_INDEX, Store, due_key, shard_of
from chalicelib.tick import (
    CATCH_UP_WINDOW,
    MAX_MISSED_RECORDS,
    Decision,
    Ticker,
    TickIncomplete,
    decide,
    handle_tick,
    handle_tick_parts,
    plan_parts,
    run_tick,
    tick_minute,
)
from chalicelib.worker import Worker, handle_batch
from conftest import QUEUE, TABLE, drain, failed_ids, scheduled_event, sqs_event, utc
from store_support import REGISTRY, Recording, create_job

SHARDS = 4


# --- fixtures and helpers ------------------------------------------------------------------


class CountingRunner:
    """dummyRunner's behaviour, counting its calls per (job id, run id)."""

    name = "dummyRunner"

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._dummy = DummyRunner()

    def validate(self, details: Mapping[str, str]) -> None:
        self._dummy.validate(details)

    def run(self, details: Mapping[str, str], ctx: Any) -> Any:
        with self._lock:
            self.calls[(ctx.job_id, ctx.run_id)] += 1
        return self._dummy.run(details, ctx)


class FailingEntries(Recording):
    """SQS whose SendMessageBatch answers HTTP 200 with the entries of chosen jobs under
    `Failed` while `failing` is set; every other entry is really sent."""

    def __init__(self, client: Any, job_ids: set[str], failures: int | None = None) -> None:
        super().__init__(client)
        self.job_ids = job_ids
        self.failing = True
        self.failures_left = failures  # None: fail for as long as `failing` is set

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(("send_message_batch", {"QueueUrl": QueueUrl, "Entries": Entries}))
        bad = [e for e in Entries if self._fails(e)]
        good = [e for e in Entries if e not in bad]
        answer: dict[str, Any] = {"Successful": [], "Failed": []}
        if good:
            answer = self.client.send_message_batch(QueueUrl=QueueUrl, Entries=good)
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
        return answer

    def _fails(self, entry: dict[str, Any]) -> bool:
        if not self.failing or json.loads(entry["MessageBody"])["job_id"] not in self.job_ids:
            return False
        if self.failures_left is None:
            return True
        if self.failures_left > 0:
            self.failures_left -= 1
            return True
        return False


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CountingRunner:
    """dummyRunner replaced, for this test only, by a counting one."""
    counting = CountingRunner()
    monkeypatch.setitem(runners.RUNNERS, "dummyRunner", counting)
    return counting


def ticker(store: Store, queue: RunQueue) -> Ticker:
    return Ticker(store, queue, shards=SHARDS, parallelism=4)


def tick(store: Store, queue: RunQueue, minute: str) -> Any:
    return run_tick(ticker(store, queue), scheduled_event(minute))


def stored_next(store: Store, job: Job) -> datetime | None:
    return store.get_job(job.account, job.group, job.id).next


def runs_of(store: Store, job: Job) -> list[Any]:
    return store.list_runs(job.id, 100)[0]


def run_worker(
    aws: dict[str, Any], store: Store, queue: RunQueue
) -> tuple[list[dict[str, Any]], PartialItemFailureResponse]:
    """Drain the runs queue and feed what it held to the real worker; (messages, response)."""
    messages = drain(aws["sqs"], aws["queue_url"])
    worker = Worker(
        store=store,
        queue=queue,
        registry=lambda: REGISTRY,
        clients=lambda entry, run_id: lambda service: None,
    )
    response = (
        handle_batch(sqs_event(messages), worker=worker) if messages else {"batchItemFailures": []}
    )
    return messages, response


def bodies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in messages]


# --- the tick's minute -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp, minute",
    [
        ("2026-01-30T10:18:00Z", "2026-01-30T10:18"),
        ("2026-01-30T10:18:59Z", "2026-01-30T10:18"),
        ("2026-01-30T10:18:07.250Z", "2026-01-30T10:18"),
        ("2026-01-30T11:18:30+01:00", "2026-01-30T10:18"),
        ("2026-01-30T10:18:30", "2026-01-30T10:18"),
    ],
)
def test_tick_minute_is_the_event_time_truncated_to_its_utc_minute(stamp: str, minute: str) -> None:
    # Given a scheduled event stamped `stamp` / When its minute is read / Then the UTC minute
    assert tick_minute({**scheduled_event("2000-01-01T00:00:00Z"), "time": stamp}) == utc(minute)


def test_the_tick_takes_its_minute_from_the_event_not_the_wall_clock(
    store: Store, queue: RunQueue, aws: dict[str, Any]
) -> None:
    # Given a per-minute job whose next occurrence is 10:18 on 2026-01-30 (long before now)
    job = create_job(store)
    assert job.next == utc("2026-01-30T10:18")
    assert datetime.now(job.next.tzinfo) - job.next > timedelta(days=1)

    # When the tick of 10:17 arrives (today): the job is not yet due at the event's minute
    early = tick(store, queue, "2026-01-30T10:17:00")
    # Then nothing is due, though by the wall clock it has been due for a long time
    assert (early.due, early.queued, early.missed) == (0, 0, 0)
    assert drain(aws["sqs"], aws["queue_url"]) == []

    # When the tick of 10:18 arrives, 40 seconds into the minute
    report = tick(store, queue, "2026-01-30T10:18:40")
    # Then exactly the 10:18 occurrence is queued, nothing is missed, and next is 10:19
    messages = bodies(drain(aws["sqs"], aws["queue_url"]))
    assert [(m["job_id"], m["run_id"], m["scheduled_for"]) for m in messages] == [
        (job.id, "20260130T101800Z-s", "2026-01-30T10:18:00Z")
    ]
    assert (report.due, report.queued, report.missed) == (1, 1, 0)
    assert runs_of(store, job) == []
    assert stored_next(store, job) == utc("2026-01-30T10:19")


# --- decide(): the pure decision -------------------------------------------------------------


def job_at(
    expression: str,
    next_at: str,
    *,
    anchor: str | None = None,
    deadline: int | None = None,
    timezone: str = "UTC",
) -> Job:
    return Job(
        account="spinup",
        group="g",
        id="00000000-0000-4000-8000-000000000000",
        name="n",
        schedule_expression=expression,
        details={"runner": "dummyRunner"},
        schedule_timezone=timezone,
        enabled=True,
        starting_deadline_seconds=deadline,
        anchor=utc(anchor) if anchor else None,
        next=utc(next_at),
    )


def minutes(*stamps: str) -> tuple:
    return tuple(utc(s) for s in stamps)


DECIDE_CASES = {
    "on time: runs its occurrence, next is the one after": (
        job_at("* * * * *", "2026-01-30T10:18"),
        "2026-01-30T10:18",
        "2026-01-30T10:18",
        (),
        "2026-01-30T10:19",
    ),
    "three minutes late: the latest runs, the older ones are missed": (
        job_at("* * * * *", "2026-01-30T10:18"),
        "2026-01-30T10:21",
        "2026-01-30T10:21",
        minutes("2026-01-30T10:18", "2026-01-30T10:19", "2026-01-30T10:20"),
        "2026-01-30T10:22",
    ),
    "late by exactly the default deadline (600 s): still runs": (
        job_at("*/15 * * * *", "2026-01-30T10:30"),
        "2026-01-30T10:40",
        "2026-01-30T10:30",
        (),
        "2026-01-30T10:45",
    ),
    "late by more than the default deadline: missed, not run": (
        job_at("*/15 * * * *", "2026-01-30T10:30"),
        "2026-01-30T10:41",
        None,
        minutes("2026-01-30T10:30"),
        "2026-01-30T10:45",
    ),
    "a job's own deadline of 60 s: one minute late runs": (
        job_at("*/15 * * * *", "2026-01-30T10:30", deadline=60),
        "2026-01-30T10:31",
        "2026-01-30T10:30",
        (),
        "2026-01-30T10:45",
    ),
    "a job's own deadline of 60 s: two minutes late is missed": (
        job_at("*/15 * * * *", "2026-01-30T10:30", deadline=60),
        "2026-01-30T10:32",
        None,
        minutes("2026-01-30T10:30"),
        "2026-01-30T10:45",
    ),
    "a long deadline keeps an old occurrence runnable": (
        job_at("0 9 * * *", "2026-01-30T09:00", deadline=7200),
        "2026-01-30T10:59",
        "2026-01-30T09:00",
        (),
        "2026-01-31T09:00",
    ),
    "rate counts from its anchor, not from the top of the hour": (
        job_at("rate(1 hour)", "2026-01-30T11:17", anchor="2026-01-30T10:17"),
        "2026-01-30T11:17",
        "2026-01-30T11:17",
        (),
        "2026-01-30T12:17",
    ),
    "rate with missed occurrences keeps the anchor's phase": (
        job_at("rate(5 minutes)", "2026-01-30T10:05", anchor="2026-01-30T10:00"),
        "2026-01-30T10:17",
        "2026-01-30T10:15",
        minutes("2026-01-30T10:05", "2026-01-30T10:10"),
        "2026-01-30T10:20",
    ),
    "@every 90m from its anchor": (
        job_at("@every 1h30m", "2026-01-30T01:30", anchor="2026-01-30T00:00"),
        "2026-01-30T03:05",
        "2026-01-30T03:00",
        minutes("2026-01-30T01:30"),
        "2026-01-30T04:30",
    ),
    "a one-time at() fires once, then has no next": (
        job_at("at(2026-01-30T10:20:00)", "2026-01-30T10:20"),
        "2026-01-30T10:20",
        "2026-01-30T10:20",
        (),
        None,
    ),
    "cron in a timezone: 09:00 New York is 14:00 UTC": (
        job_at("0 9 * * *", "2026-01-30T14:00", timezone="America/New_York"),
        "2026-01-30T14:01",
        "2026-01-30T14:00",
        (),
        "2026-01-31T14:00",
    ),
    "the tick minute itself, before the next occurrence of a sparse schedule": (
        job_at("0 18 * * *", "2026-01-30T18:00"),
        "2026-01-30T18:00",
        "2026-01-30T18:00",
        (),
        "2026-01-31T18:00",
    ),
}


@pytest.mark.parametrize(
    "job, minute, run_at, missed, next_at", DECIDE_CASES.values(), ids=DECIDE_CASES.keys()
)
def test_decide(
    job: Job, minute: str, run_at: str | None, missed: tuple, next_at: str | None
) -> None:
    # Given a due job / When the tick of `minute` decides / Then run, missed and next are these
    decision = decide(job, job.schedule(), utc(minute))
    assert decision == Decision(
        run_at=utc(run_at) if run_at else None,
        missed=missed,
        next_at=utc(next_at) if next_at else None,
    )


def test_decide_after_hours_without_ticks_runs_one_and_records_a_bounded_number_missed() -> None:
    # Given a per-minute job last due at 10:18, and no tick for five hours
    job = job_at("* * * * *", "2026-01-30T10:18")
    minute = utc("2026-01-30T15:18")
    # When the tick of 15:18 decides
    decision = decide(job, job.schedule(), minute)
    # Then 15:18 runs; the newest MAX_MISSED_RECORDS occurrences before it are recorded missed
    assert decision.run_at == minute
    expected = tuple(minute - timedelta(minutes=k) for k in range(MAX_MISSED_RECORDS, 0, -1))
    assert decision.missed == expected
    assert decision.next_at == utc("2026-01-30T15:19")


def test_decide_after_days_without_ticks_looks_back_one_window_only() -> None:
    # Given a daily 09:00 job last due three days ago, and the default deadline
    job = job_at("0 9 * * *", "2026-01-27T09:00")
    # When the tick of 01-30 10:17 decides
    decision = decide(job, job.schedule(), utc("2026-01-30T10:17"))
    # Then today's 09:00 (77 minutes old) is missed and not run, older days are not replayed
    assert decision.run_at is None
    assert decision.missed == minutes("2026-01-30T09:00")
    assert utc("2026-01-30T10:17") - decision.missed[0] < CATCH_UP_WINDOW
    assert decision.next_at == utc("2026-01-31T09:00")


def test_decide_runs_an_occurrence_older_than_a_day_when_its_deadline_allows_it() -> None:
    # Given a weekly Monday 09:00 job with a three-day starting deadline, whose ticks stopped
    # before Monday 09:00 and resumed on Tuesday at 10:00 (25 hours later)
    job = job_at("0 9 * * MON", "2026-02-02T09:00", deadline=3 * 86400)
    # When Tuesday's 10:00 tick decides
    decision = decide(job, job.schedule(), utc("2026-02-03T10:00"))
    # Then Monday's occurrence, within its deadline, runs; next is the following Monday
    assert decision == Decision(
        run_at=utc("2026-02-02T09:00"), missed=(), next_at=utc("2026-02-09T09:00")
    )


# --- the tick against DynamoDB and SQS ---------------------------------------------------------


def test_the_same_tick_delivered_twice_runs_each_occurrence_once(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: CountingRunner
) -> None:
    # Given two per-minute jobs due at 10:18
    jobs = [create_job(store), create_job(store)]
    event = scheduled_event("2026-01-30T10:18:00")

    # When EventBridge delivers the 10:18 tick twice
    first = run_tick(ticker(store, queue), event)
    second = run_tick(ticker(store, queue), event)

    # Then the first queued both occurrences and the second nothing (they were advanced)
    assert (first.queued, second.due, second.queued) == (2, 0, 0)
    messages, response = run_worker(aws, store, queue)
    assert sorted(m["job_id"] for m in bodies(messages)) == sorted(j.id for j in jobs)
    # And each occurrence ran once and succeeded
    assert response == {"batchItemFailures": []}
    assert runner.calls == Counter({(j.id, "20260130T101800Z-s"): 1 for j in jobs})
    for job in jobs:
        assert [(r.run_id, r.status) for r in runs_of(store, job)] == [
            ("20260130T101800Z-s", "succeeded")
        ]


def test_a_tick_redelivered_after_sending_but_before_advancing_runs_each_occurrence_once(
    store: Store,
    queue: RunQueue,
    aws: dict[str, Any],
    runner: CountingRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two due jobs, and a first delivery of the tick that dies after sending its
    # messages but before advancing any job (send first, advance second)
    jobs = [create_job(store), create_job(store)]
    event = scheduled_event("2026-01-30T10:18:00")

    def crash(entries: Any) -> Any:
        raise RuntimeError("tick Lambda killed")

    with monkeypatch.context() as patch:
        patch.setattr(store, "put_due", crash)
        with pytest.raises(RuntimeError):
            run_tick(ticker(store, queue), event)

    # When the platform delivers the tick again
    again = run_tick(ticker(store, queue), event)

    # Then the same run ids are queued a second time (different SQS messages) ...
    messages, response = run_worker(aws, store, queue)
    assert again.queued == 2 and len(messages) == 4
    assert len({m["MessageId"] for m in messages}) == 4
    assert Counter(b["run_id"] for b in bodies(messages)) == Counter({"20260130T101800Z-s": 4})
    # ... and the worker runs each occurrence once, acknowledging the copies
    assert response == {"batchItemFailures": []}
    assert runner.calls == Counter({(j.id, "20260130T101800Z-s"): 1 for j in jobs})
    for job in jobs:
        assert [r.status for r in runs_of(store, job)] == ["succeeded"]
        assert stored_next(store, job) == utc("2026-01-30T10:19")


def test_a_tick_whose_batch_send_partly_fails_raises_and_its_retry_sends_only_the_rest(
    store: Store, aws: dict[str, Any], runner: CountingRunner
) -> None:
    # Given twelve due jobs (two send batches), and an SQS that answers HTTP 200 with three
    # of them under `Failed` for as long as the first tick lasts
    jobs = [create_job(store) for _ in range(12)]
    unlucky = {jobs[1].id, jobs[6].id, jobs[11].id}
    sqs = FailingEntries(aws["sqs"], unlucky)
    queue = RunQueue(sqs, QUEUE, aws["queue_url"])
    event = scheduled_event("2026-01-30T10:18:00")

    # When the tick runs
    with pytest.raises(TickIncomplete):
        run_tick(ticker(store, queue), event)

    # Then the nine others are queued and advanced; the three failed ones are not advanced
    first_messages = drain(aws["sqs"], aws["queue_url"])
    first_sent = bodies(first_messages)
    assert sorted(b["job_id"] for b in first_sent) == sorted(
        j.id for j in jobs if j.id not in unlucky
    )
    for job in jobs:
        expected = "2026-01-30T10:18" if job.id in unlucky else "2026-01-30T10:19"
        assert stored_next(store, job) == utc(expected)
    # And the tick is not recorded as finished
    assert "TICK" not in store.counters()

    # When the platform retries the tick, and SQS accepts everything now
    sqs.failing = False
    sqs.calls.clear()
    report = run_tick(ticker(store, queue), event)

    # Then the retry sends only the three that failed, and advances them
    sent_entries = [
        json.loads(e["MessageBody"])["job_id"]
        for name, call in sqs.calls
        if name == "send_message_batch"
        for e in call["Entries"]
    ]
    assert sorted(sent_entries) == sorted(unlucky)
    assert (report.due, report.queued) == (3, 3)
    assert all(stored_next(store, j) == utc("2026-01-30T10:19") for j in jobs)
    assert store.counters()["TICK"]["last_tick"] == int(utc("2026-01-30T10:18").timestamp())

    # And in the end every occurrence runs exactly once
    retried = drain(aws["sqs"], aws["queue_url"])
    _, response = run_worker_with(aws, store, queue, first_messages + retried)
    assert response == {"batchItemFailures": []}
    assert runner.calls == Counter({(j.id, "20260130T101800Z-s"): 1 for j in jobs})


def run_worker_with(
    aws: dict[str, Any], store: Store, queue: RunQueue, messages: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], PartialItemFailureResponse]:
    """Feed already-received messages to the worker, ten at a time like the event source."""
    worker = Worker(
        store=store,
        queue=queue,
        registry=lambda: REGISTRY,
        clients=lambda entry, run_id: lambda service: None,
    )
    failures: list[PartialItemFailures] = []
    for start in range(0, len(messages), 10):
        failures += handle_batch(sqs_event(messages[start : start + 10]), worker=worker)[
            "batchItemFailures"
        ]
    return messages, {"batchItemFailures": failures}


def test_an_entry_that_fails_once_is_resent_within_the_same_tick(
    store: Store, aws: dict[str, Any], runner: CountingRunner
) -> None:
    # Given three due jobs, and SQS failing one entry once (HTTP 200, entry under `Failed`)
    jobs = [create_job(store) for _ in range(3)]
    sqs = FailingEntries(aws["sqs"], {jobs[0].id}, failures=1)
    queue = RunQueue(sqs, QUEUE, aws["queue_url"])

    # When the tick runs
    report = tick(store, queue, "2026-01-30T10:18:00")

    # Then the failed entry was sent again at once, alone, and the tick completed
    batches = [
        [json.loads(e["MessageBody"])["job_id"] for e in call["Entries"]]
        for name, call in sqs.calls
        if name == "send_message_batch"
    ]
    assert batches[-1] == [jobs[0].id] and len(batches) == 2
    assert report.queued == 3 and report.not_sent == []
    # And every occurrence runs once
    _, response = run_worker(aws, store, queue)
    assert response == {"batchItemFailures": []}
    assert runner.calls == Counter({(j.id, "20260130T101800Z-s"): 1 for j in jobs})


def test_a_late_tick_runs_the_latest_occurrence_once_and_records_the_older_ones_missed(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: CountingRunner
) -> None:
    # Given a per-minute job due since 10:18, and no tick delivered until the one of 10:25
    job = create_job(store)

    # When the 10:25 tick arrives
    report = tick(store, queue, "2026-01-30T10:25:00")

    # Then one run is queued, for 10:25 ...
    messages, response = run_worker(aws, store, queue)
    assert [b["scheduled_for"] for b in bodies(messages)] == ["2026-01-30T10:25:00Z"]
    assert response == {"batchItemFailures": []}
    assert runner.calls == Counter({(job.id, "20260130T102500Z-s"): 1})
    # ... and 10:18 to 10:24 are recorded as missed runs, superseded by it
    runs = runs_of(store, job)
    assert [(r.scheduled_for, r.status) for r in runs] == [
        ("2026-01-30T10:25:00Z", "succeeded")
    ] + [(f"2026-01-30T10:{m}:00Z", "missed") for m in range(24, 17, -1)]
    assert all("10:25" in (r.error or "") for r in runs[1:])
    assert report.missed == 7
    assert store.counters()["RUNS"] == {"succeeded": 1, "missed": 7}
    assert stored_next(store, job) == utc("2026-01-30T10:26")


def test_ticks_missing_for_hours_give_one_run_and_a_bounded_number_of_missed_records(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: CountingRunner
) -> None:
    # Given a per-minute job due since 10:18, and no tick for five hours
    job = create_job(store)

    # When the 15:18 tick arrives
    report = tick(store, queue, "2026-01-30T15:18:00")

    # Then one run, for 15:18 - no flood of catch-up runs
    messages, response = run_worker(aws, store, queue)
    assert [b["run_id"] for b in bodies(messages)] == ["20260130T151800Z-s"]
    assert response == {"batchItemFailures": []}
    assert runner.calls == Counter({(job.id, "20260130T151800Z-s"): 1})
    # And the newest missed occurrences are recorded, MAX_MISSED_RECORDS of them
    first_page, after = store.list_runs(job.id, 100)
    runs = first_page + store.list_runs(job.id, 100, after)[0]
    assert Counter(r.status for r in runs) == Counter(
        {"succeeded": 1, "missed": MAX_MISSED_RECORDS}
    )
    assert runs[-1].scheduled_for == iso(
        utc("2026-01-30T15:18") - timedelta(minutes=MAX_MISSED_RECORDS)
    )
    assert report.missed == MAX_MISSED_RECORDS
    assert store.counters()["RUNS"] == {"succeeded": 1, "missed": MAX_MISSED_RECORDS}
    assert stored_next(store, job) == utc("2026-01-30T15:19")


def test_an_occurrence_older_than_its_starting_deadline_is_recorded_missed_and_not_run(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: CountingRunner
) -> None:
    # Given a quarter-hourly job with a 60 s starting deadline, next due at 10:30
    job = create_job(store, "*/15 * * * *", starting_deadline_seconds=60)
    assert job.next == utc("2026-01-30T10:30")

    # When the first tick after it is the one of 10:32
    report = tick(store, queue, "2026-01-30T10:32:00")

    # Then nothing is queued or run; 10:30 is recorded missed, saying why; next is 10:45
    assert drain(aws["sqs"], aws["queue_url"]) == []
    assert runner.calls == Counter()
    [run] = runs_of(store, job)
    assert (run.run_id, run.status, run.scheduled_for) == (
        "20260130T103000Z-s",
        "missed",
        "2026-01-30T10:30:00Z",
    )
    assert "deadline" in (run.error or "") and "60" in (run.error or "")
    assert (report.queued, report.missed) == (0, 1)
    assert stored_next(store, job) == utc("2026-01-30T10:45")


def test_a_late_tick_within_the_deadline_runs_the_occurrence_late(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: CountingRunner
) -> None:
    # Given a quarter-hourly job next due at 10:30 (default deadline 600 s)
    job = create_job(store, "*/15 * * * *")
    # When the first tick after it is the one of 10:37
    tick(store, queue, "2026-01-30T10:37:00")
    # Then the 10:30 occurrence runs (scheduled_for says 10:30) and nothing is missed
    messages, _ = run_worker(aws, store, queue)
    assert [b["scheduled_for"] for b in bodies(messages)] == ["2026-01-30T10:30:00Z"]
    assert [(r.run_id, r.status) for r in runs_of(store, job)] == [
        ("20260130T103000Z-s", "succeeded")
    ]
    assert stored_next(store, job) == utc("2026-01-30T10:45")


def is_due_query(kwargs: Mapping[str, Any]) -> bool:
    """A Query of a shard's due items."""
    return (
        kwargs.get("ExpressionAttributeValues", {}).get(":pk", {}).get("S", "").startswith("DUE#")
    )


class SmallPages(Recording):
    """DynamoDB whose Queries of due items return at most `limit` items a page."""

    def __init__(self, client: Any, limit: int) -> None:
        super().__init__(client)
        self.limit = limit

    def query(self, **kwargs: Any) -> Any:
        if is_due_query(kwargs):
            kwargs = {**kwargs, "Limit": self.limit}
        self.calls.append(("query", kwargs))
        return self.client.query(**kwargs)


def test_more_due_jobs_than_a_query_page_and_a_send_batch_are_all_queued_once(
    aws: dict[str, Any],
) -> None:
    # Given 35 due jobs, Query pages of 3 items, and the real queue
    dynamodb = SmallPages(aws["dynamodb"], limit=3)
    store = Store(dynamodb, TABLE, SHARDS)
    sqs = Recording(aws["sqs"])
    queue = RunQueue(sqs, QUEUE, aws["queue_url"])
    jobs = [create_job(store) for _ in range(35)]

    # When the tick runs
    report = tick(store, queue, "2026-01-30T10:18:00")

    # Then it followed the pages (more Queries than shards) and sent batches of at most 10
    due_queries = [c for n, c in dynamodb.calls if n == "query" and is_due_query(c)]
    assert len(due_queries) > SHARDS
    assert any("ExclusiveStartKey" in c for c in due_queries)
    batch_sizes = sorted(len(c["Entries"]) for n, c in sqs.calls if n == "send_message_batch")
    assert sum(batch_sizes) == 35 and max(batch_sizes) <= BATCH_SIZE and len(batch_sizes) >= 4
    # And every job was queued exactly once, for 10:18, and advanced
    assert (report.due, report.queued) == (35, 35)
    messages = bodies(drain(aws["sqs"], aws["queue_url"]))
    assert sorted((b["job_id"], b["run_id"]) for b in messages) == sorted(
        (j.id, "20260130T101800Z-s") for j in jobs
    )
    assert all(stored_next(store, j) == utc("2026-01-30T10:19") for j in jobs)


def test_a_stored_job_whose_expression_no_longer_parses_is_taken_off_the_schedule(
    store: Store,
    queue: RunQueue,
    aws: dict[str, Any],
    runner: CountingRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given two due jobs, and a third stored (by an older version, say) with an expression
    # this version rejects, in its job item and in its due item (which the tick decides from)
    good = [create_job(store), create_job(store)]
    broken = create_job(store)
    assert broken.next is not None
    for key in (
        {"pk": {"S": "ACCOUNT#spinup"}, "sk": {"S": f"JOB#nightly#{broken.id}"}},
        due_key(shard_of(broken.id, SHARDS), broken.next, broken.id, broken.version),
    ):
        aws["dynamodb"].update_item(
            TableName=TABLE,
            Key=key,
            UpdateExpression="SET schedule_expression = :e",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":e": {"S": "R * * * *"}},
        )
    # (an older version stored no copy of the job beside its runs)
    aws["dynamodb"].delete_item(
        TableName=TABLE, Key={"pk": {"S": f"JOB#{broken.id}"}, "sk": {"S": "SPEC"}}
    )

    # When the tick runs
    report = tick(store, queue, "2026-01-30T10:18:00")

    # Then the other jobs run
    messages, response = run_worker(aws, store, queue)
    assert sorted(b["job_id"] for b in bodies(messages)) == sorted(j.id for j in good)
    assert response == {"batchItemFailures": []}
    assert runner.calls == Counter({(j.id, "20260130T101800Z-s"): 1 for j in good})
    # And the broken one is logged, kept, and off the due index (not read again)
    assert report.unschedulable == 1
    assert [
        getattr(r, "reason", "")
        for r in caplog.records
        if r.levelname == "ERROR" and getattr(r, "job_id", None) == broken.id
    ] == ["'R' in the minute field is a croniter extension, not cron"]
    stored = store.get_job(broken.account, broken.group, broken.id)
    assert stored.next is None and stored.schedule_expression == "R * * * *"
    later = tick(store, queue, "2026-01-30T10:19:00")
    assert (later.due, later.unschedulable) == (2, 0)


def test_the_tick_reads_only_due_jobs_and_writes_only_their_due_items(
    aws: dict[str, Any], queue: RunQueue
) -> None:
    # Given three due jobs among jobs that are not due: later, disabled, or finished (at())
    dynamodb = Recording(aws["dynamodb"])
    store = Store(dynamodb, TABLE, SHARDS)
    due = [create_job(store) for _ in range(3)]
    for _ in range(4):
        create_job(store, "0 18 * * *")
        create_job(store, enabled=False)
    # (a one-time job that has fired: enabled, no next; the API refuses to create one enabled)
    fired = create_job(store, "at(2026-01-30T10:00:00)", enabled=False)
    store.replace_job(replace(fired, enabled=True, version=fired.version + 1), fired)
    dynamodb.calls.clear()
    dynamodb.answers.clear()

    # When the tick runs
    report = tick(store, queue, "2026-01-30T10:18:00")

    # Then it never scanned; it queried each shard's queued items and its one slot partition
    # of the minute (and the legacy index, empty)
    operations = Counter(name for name, _ in dynamodb.calls)
    assert "scan" not in operations
    queries = [c for n, c in dynamodb.calls if n == "query"]
    assert sum(map(is_due_query, queries)) == 2 * SHARDS
    assert sorted(
        c["ExpressionAttributeValues"][":pk"]["S"] for c in queries if is_due_query(c)
    ) == sorted(
        [f"DUE#{n}" for n in range(SHARDS)]
        + [f"DUE#{n}#{int(utc('2026-01-30T10:18').timestamp()):011d}" for n in range(SHARDS)]
    )
    assert all(c.get("ConsistentRead") for c in queries if is_due_query(c))
    assert [c for c in queries if not is_due_query(c)] == [
        c for c in queries if c.get("IndexName") == DUE_INDEX
    ]
    read = [
        item for name, answer in dynamodb.answers if name == "query" for item in answer["Items"]
    ]
    assert sorted(i["id"]["S"] for i in read) == sorted(j.id for j in due)
    assert report.due == 3
    # And it read no job (its due items carry the schedule), and wrote only due items (in
    # batches: the next ones in their slot, then the queued ones read), each shard's lock
    # (taken and let go) and the tick record: no job item
    assert "batch_get_item" not in operations and "get_item" not in operations
    written = [
        r for n, c in dynamodb.calls if n == "batch_write_item" for r in c["RequestItems"][TABLE]
    ]
    assert [next(iter(r)) for r in written] == ["PutRequest"] * 3 + ["DeleteRequest"] * 3
    next_slot = f"#{int(utc('2026-01-30T10:19').timestamp()):011d}"
    assert all(r["PutRequest"]["Item"]["pk"]["S"].endswith(next_slot) for r in written[:3])
    assert all(r["DeleteRequest"]["Key"]["pk"]["S"].startswith("DUE#") for r in written[3:])
    updates = [c for n, c in dynamodb.calls if n == "update_item"]
    assert sorted(u["Key"]["sk"]["S"] for u in updates) == ["TICK"] * (2 * SHARDS + 1)
    assert set(operations) == {"query", "batch_write_item", "update_item"}


def test_a_scheduled_runs_due_item_moves_with_one_write_and_no_job_read(
    aws: dict[str, Any], queue: RunQueue, runner: CountingRunner
) -> None:
    # Given per-minute jobs past their first tick (their queued items consumed)
    dynamodb = Recording(aws["dynamodb"])
    store = Store(dynamodb, TABLE, SHARDS)
    jobs = [create_job(store) for _ in range(5)]
    tick(store, queue, "2026-01-30T10:18:00")
    run_worker(aws, store, queue)
    dynamodb.calls.clear()

    # When the next minutes tick
    for minute in ("2026-01-30T10:19:00", "2026-01-30T10:20:00"):
        report = tick(store, queue, minute)
        assert (report.due, report.queued) == (5, 5)

    # Then each run's due item moved with one write (its successor put; nothing deleted) and
    # no job was read
    writes = [
        r for n, c in dynamodb.calls if n == "batch_write_item" for r in c["RequestItems"][TABLE]
    ]
    assert [next(iter(r)) for r in writes] == ["PutRequest"] * 10
    assert not [n for n, _ in dynamodb.calls if n in ("put_item", "delete_item", "get_item")]
    assert not [n for n, _ in dynamodb.calls if n in ("batch_get_item", "transact_get_items")]
    # And the runs were all sent, once each, and the jobs show their next occurrence
    messages, _ = run_worker(aws, store, queue)
    assert sorted((b["job_id"], b["run_id"]) for b in bodies(messages)) == sorted(
        (j.id, f"20260130T10{m}00Z-s") for j in jobs for m in (19, 20)
    )
    assert all(stored_next(store, j) == utc("2026-01-30T10:21") for j in jobs)


def test_decide_runs_an_occurrence_exactly_its_deadline_old_after_a_long_gap() -> None:
    # Given a weekly Monday 09:00 job with a two-day starting deadline, and no tick from
    # before the Monday 09:00 of the week before until Wednesday 09:00
    job = job_at("0 9 * * MON", "2026-01-26T09:00", deadline=2 * 86400)
    # When Wednesday's 09:00 tick decides
    decision = decide(job, job.schedule(), utc("2026-02-04T09:00"))
    # Then this Monday's occurrence, exactly as old as the deadline allows, still runs
    assert decision == Decision(
        run_at=utc("2026-02-02T09:00"), missed=(), next_at=utc("2026-02-09T09:00")
    )


@pytest.mark.parametrize(
    "job, minute, next_at",
    [
        (job_at("at(2026-01-27T10:00:00)", "2026-01-27T10:00"), "2026-01-30T10:17", None),
        (job_at("0 0 1 1 *", "2026-01-01T00:00"), "2026-01-03T00:00", "2027-01-01T00:00"),
    ],
    ids=["one-time at()", "yearly"],
)
def test_decide_after_a_gap_longer_than_the_window_records_the_lost_occurrence_missed(
    job: Job, minute: str, next_at: str | None
) -> None:
    # Given a job whose only occurrence in days fell before a gap longer than the window
    # When the first tick after the gap decides
    assert job.next is not None
    decision = decide(job, job.schedule(), utc(minute))
    # Then that occurrence is recorded missed, not dropped silently, and next is the one after
    assert decision == Decision(
        run_at=None, missed=(job.next,), next_at=utc(next_at) if next_at else None
    )


def test_a_job_whose_decision_fails_unexpectedly_stays_due_and_the_others_still_run(
    store: Store,
    queue: RunQueue,
    aws: dict[str, Any],
    runner: CountingRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two due jobs, and decide() failing with a bug for one of them
    import chalicelib.tick as tick_module

    good, unlucky = create_job(store), create_job(store)
    real_decide = tick_module.decide

    def failing_decide(job: Job, schedule: Any, minute: datetime) -> Any:
        if job.id == unlucky.id:
            raise ZeroDivisionError("a bug")
        return real_decide(job, schedule, minute)

    monkeypatch.setattr(tick_module, "decide", failing_decide)
    # When the tick runs
    report = tick(store, queue, "2026-01-30T10:18:00")
    # Then the tick completes, the other job runs, and the unlucky one stays due as it was
    messages, _ = run_worker(aws, store, queue)
    assert [b["job_id"] for b in bodies(messages)] == [good.id]
    assert report.unschedulable == 1
    good_next = stored_next(store, good)
    assert good_next is not None
    assert stored_next(store, unlucky) == good_next - timedelta(minutes=1)


# --- the split tick ----------------------------------------------------------------------------


def test_plan_parts_gives_every_shard_to_exactly_one_part() -> None:
    # Given 16 shards in 4 parts, 4 shards in 8 parts, 5 shards in 2 parts
    # Then each shard is in one part, parts are as even as they can be, none is empty
    assert plan_parts(16, 4) == [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]]
    assert plan_parts(4, 8) == [[0], [1], [2], [3]]
    assert plan_parts(5, 2) == [[0, 2, 4], [1, 3]]


def test_the_scheduled_tick_only_fans_out_and_the_parts_queue_every_due_run(
    aws: dict[str, Any],
    store: Store,
    queue: RunQueue,
    runner: CountingRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given six due jobs, and the scheduled tick set to two parts (its queue URL configured,
    # as the template does)
    jobs = [create_job(store) for _ in range(6)]
    monkeypatch.setenv("MINION_TICK_PARTS", "2")
    monkeypatch.setenv("MINION_TICK_PARTS_QUEUE_URL", aws["tick_parts_url"])
    sqs = Recording(aws["sqs"])
    dynamodb = Recording(aws["dynamodb"])
    monkeypatch.setattr(
        "chalicelib.aws.client", lambda service, **_: {"sqs": sqs, "dynamodb": dynamodb}[service]
    )
    deps.reset()

    # When the scheduled tick runs for 10:18
    answer = handle_tick(scheduled_event("2026-01-30T10:18:00"))

    # Then it sent two parts (one call) and touched nothing else: no job read, no run queued
    assert answer == {"minute": "2026-01-30T10:18:00Z", "parts": 2}
    assert [name for name, _ in sqs.calls] == ["send_message_batch"]
    assert dynamodb.calls == []
    parts = drain(aws["sqs"], aws["tick_parts_url"])
    assert sorted(json.loads(p["Body"])["shards"] for p in parts) == [[0, 2], [1, 3]]
    assert drain(aws["sqs"], aws["queue_url"]) == []

    # When the part-tick function gets each part as an SQS event of its own
    tick_part_ticker = Ticker(store, queue, shards=SHARDS, parallelism=2)
    answers = [handle_tick_parts(sqs_event([p]), ticker=tick_part_ticker) for p in parts]

    # Then every due job's run is queued once, and the worker runs each once
    assert answers == [{"batchItemFailures": []}] * 2
    messages, response = run_worker(aws, store, queue)
    assert sorted(b["job_id"] for b in bodies(messages)) == sorted(j.id for j in jobs)
    assert runner.calls == Counter({(j.id, "20260130T101800Z-s"): 1 for j in jobs})


def test_a_part_that_is_not_a_tick_part_is_reported_failed_and_the_others_processed(
    aws: dict[str, Any], store: Store, queue: RunQueue
) -> None:
    # Given a due job, a valid part for all shards, and three malformed parts
    job = create_job(store)
    good = {
        "MessageId": "good",
        "Body": json.dumps({"minute": "2026-01-30T10:18:00Z", "shards": list(range(SHARDS))}),
    }
    bad = [
        {"MessageId": f"bad-{i}", "Body": body}
        for i, body in enumerate(
            [
                "not json at all",
                json.dumps({"minute": "2026-01-30T10:18:30Z", "shards": [0]}),
                json.dumps({"minute": "2026-01-30T10:18:00Z", "shards": []}),
            ]
        )
    ]
    # When they arrive in one event
    answer = handle_tick_parts(
        sqs_event([good, *bad]), ticker=Ticker(store, queue, shards=SHARDS, parallelism=2)
    )
    # Then only the malformed ones come back, and the job's run is queued
    assert failed_ids(answer) == ["bad-0", "bad-1", "bad-2"]
    assert [b["job_id"] for b in bodies(drain(aws["sqs"], aws["queue_url"]))] == [job.id]


def test_a_scheduled_tick_whose_parts_cannot_be_sent_fails_so_it_is_retried(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the parts queue refusing one entry of every SendMessageBatch
    deps.reset()
    real = aws["sqs"].send_message_batch

    def refusing(**kwargs: Any) -> Any:
        rest = kwargs["Entries"][1:]
        answer = real(**{**kwargs, "Entries": rest}) if rest else {"Successful": []}
        first = kwargs["Entries"][0]["Id"]
        return {**answer, "Failed": [{"Id": first, "SenderFault": False, "Code": "InternalError"}]}

    monkeypatch.setattr(deps.tick_part_queue().client, "send_message_batch", refusing)
    # When the tick runs / Then it raises (EventBridge retries it; parts carry the minute)
    with pytest.raises(TickIncomplete, match="1 of 4 tick parts not sent"):
        handle_tick(scheduled_event("2026-01-30T10:18:00"))


def test_runs_of_jobs_changed_or_deleted_since_their_due_item_are_dropped_not_run(
    aws: dict[str, Any], store: Store, queue: RunQueue, runner: CountingRunner
) -> None:
    # Given three per-minute jobs due at 10:18; one then moved to hourly, one deleted
    kept, moved, deleted = create_job(store), create_job(store), create_job(store)
    read = store.get_job(moved.account, moved.group, moved.id)
    store.replace_job(
        replace(read, schedule_expression="0 * * * *", version=2, next=utc("2026-01-30T11:00")),
        read,
    )
    store.delete_job(store.get_job(deleted.account, deleted.group, deleted.id))

    # When the 10:18 tick runs
    report = tick(store, queue, "2026-01-30T10:18:00")

    # Then only the unchanged job runs: the tick sent all three (it reads no job), and the
    # worker dropped the runs of the moved and the deleted job, claiming and recording nothing
    messages, _ = run_worker(aws, store, queue)
    assert sorted(b["job_id"] for b in bodies(messages)) == sorted([kept.id, moved.id, deleted.id])
    assert report.due == 3
    assert runner.calls == Counter({(kept.id, "20260130T101800Z-s"): 1})
    assert runs_of(store, moved) == [] and runs_of(store, deleted) == []
    assert stored_next(store, moved) == utc("2026-01-30T11:00")
    # And their old chains stopped: the next minute reads only the kept job's item
    later = tick(store, queue, "2026-01-30T10:19:00")
    assert (later.due, later.queued) == (1, 1)
    run_worker(aws, store, queue)
    # And the moved job runs at its new time, once
    tick(store, queue, "2026-01-30T11:00:00")
    messages, _ = run_worker(aws, store, queue)
    assert sorted(b["job_id"] for b in bodies(messages)) == sorted([kept.id, moved.id])
    assert runner.calls[(moved.id, "20260130T110000Z-s")] == 1


def test_a_late_part_after_the_next_minutes_part_queues_nothing_twice(
    aws: dict[str, Any], store: Store, queue: RunQueue, runner: CountingRunner
) -> None:
    # Given per-minute jobs, and the 10:18 part delivered only after the 10:19 part ran
    jobs = [create_job(store) for _ in range(3)]
    first = tick(store, queue, "2026-01-30T10:19:00")
    late = tick(store, queue, "2026-01-30T10:18:00")
    # Then the 10:19 part ran each job once (10:18 collapsed into it) and the late one nothing
    messages, _ = run_worker(aws, store, queue)
    assert (first.queued, late.queued, late.due) == (3, 0, 0)
    assert runner.calls == Counter({(j.id, "20260130T101900Z-s"): 1 for j in jobs})
    assert all(stored_next(store, j) == utc("2026-01-30T10:20") for j in jobs)


# --- found by the fault campaign -------------------------------------------------------------


def test_a_throttled_due_index_query_fails_the_tick_as_service_unavailable(
    aws: dict[str, Any], store: Store, queue: RunQueue
) -> None:
    # Given a due job, and DynamoDB throttling the tick's Query of the due index past the
    # SDK's retries (the fault campaign found this error escaping raw: `due_jobs` is a
    # generator, and its decorator had returned before the Query ran)
    create_job(store)
    one_at_a_time = Ticker(store, queue, shards=SHARDS, parallelism=1)
    with Stubber(aws["dynamodb"]) as stubber:
        stubber.add_client_error(
            "query",
            "ProvisionedThroughputExceededException",
            "Rate of requests exceeds the allowed throughput.",
            400,
        )
        # When the tick runs
        with pytest.raises(ServiceUnavailable) as raised:
            run_tick(one_at_a_time, scheduled_event("2026-01-30T10:18"))
    # Then it fails as the store's other calls do, the throttling kept as the cause
    assert isinstance(raised.value.__cause__, ClientError)
    assert (
        raised.value.__cause__.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    )
    # And the job is still due: the retried tick runs it
    assert run_tick(one_at_a_time, scheduled_event("2026-01-30T10:18")).queued == 1
