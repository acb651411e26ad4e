"""Run events on EventBridge: published with the documented shape to moto's bus, routed by
rules (to SQS queues read back), chosen per job or by the deployment default, batched, and
best effort: a refused or failed PutEvents changes nothing about the run or its message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from botocore.stub import Stubber

from chalicelib import runners
from chalicelib.events import (
    DETAIL_TYPE,
    MAX_ENTRIES,
    SOURCE,
    EventPublisher,
    NotifyConfigError,
    parse_notify_default,
    run_detail,
)
from chalicelib.jobs import Job, iso, job_from_request
from chalicelib.queue import RunMessage, RunQueue
from chalicelib.runners import PermanentError, RetryableError, RunResult
from chalicelib.runs import Run, Status, scheduled_run_id
from chalicelib.store import Store
from chalicelib.tick import Ticker, run_tick
from chalicelib.worker import Worker, handle_batch, retry_delay
from conftest import SHARDS, auth, drain, scheduled_event, sqs_event, utc
from store_support import REGISTRY, registry_entry, stored_run

CREATED = "2026-01-30T10:17:20"  # next occurrence 10:18
STARTED = utc("2026-01-30T10:18:05")
API_URL = "https://minion.example.edu/api"


class Behaviour:
    """dummyRunner replaced: what it does per job name."""

    name = "dummyRunner"

    def __init__(self) -> None:
        self.by_name: dict[str, Exception | None] = {}

    def validate(self, details: Mapping[str, str]) -> None:
        """Any details are valid."""

    def run(self, details: Mapping[str, str], ctx: Any) -> RunResult:
        error = self.by_name.get(details.get("say", ""))
        if error is not None:
            raise error
        return RunResult(output="ok")


@pytest.fixture(autouse=True)
def _no_metrics_left_over() -> None:
    """The metrics collector is the process's: start each test with it empty."""
    from chalicelib.observability import metrics

    metrics().clear_metrics()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Behaviour:
    scripted = Behaviour()
    monkeypatch.setitem(runners.RUNNERS, "dummyRunner", scripted)
    return scripted


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def route(aws: dict[str, Any], name: str, pattern: dict[str, Any]) -> str:
    """A rule on moto's default bus sending what matches `pattern` to a new queue; its URL."""
    sqs = aws["sqs"]
    url = sqs.create_queue(QueueName=f"events-{name}")["QueueUrl"]
    events = boto3.client("events")
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": _queue_arn(sqs, url)}])
    return url


def routed(aws: dict[str, Any], url: str) -> list[dict[str, Any]]:
    """The events a rule delivered to its queue."""
    return [json.loads(m["Body"]) for m in drain(aws["sqs"], url)]


@pytest.fixture
def all_events(aws: dict[str, Any]) -> str:
    """A rule receiving every run event."""
    return route(aws, "all-runs", {"source": [SOURCE], "detail-type": [DETAIL_TYPE]})


def publisher(**options: Any) -> EventPublisher:
    return EventPublisher(boto3.client("events"), api_url=API_URL, **options)


def make_worker(store: Store, queue: RunQueue, events: EventPublisher | None) -> Worker:
    return Worker(
        store=store,
        queue=queue,
        registry=lambda: REGISTRY,
        clients=lambda entry, run_id: lambda service: None,
        runner_timeout=10,
        clock=lambda: STARTED,
        events=events,
    )


def create_job(store: Store, say: str, **fields: Any) -> Job:
    body = {
        "name": f"job-{say}",
        "schedule_expression": "* * * * *",
        "enabled": True,
        "details": {"runner": "dummyRunner", "say": say},
        **fields,
    }
    job = job_from_request(
        body,
        account="spinup",
        group="nightly",
        job_id=None,
        entry=registry_entry("spinup"),
        now=utc(CREATED),
    )
    store.create_job(job)
    return job


def message(job: Job, attempt: int = 1) -> RunMessage:
    occurrence = utc("2026-01-30T10:18")
    return RunMessage(
        account=job.account,
        group=job.group,
        job_id=job.id,
        run_id=scheduled_run_id(occurrence),
        trigger="schedule",
        scheduled_for=iso(occurrence) or "",
        attempt=attempt,
    )


def run_batch(aws: dict[str, Any], worker: Worker, *jobs: Job) -> PartialItemFailureResponse:
    """Queue one run of each job, and hand them to the worker in one SQS event."""
    for job in jobs:
        aws["sqs"].send_message(QueueUrl=aws["queue_url"], MessageBody=message(job).to_body())
    received = drain(aws["sqs"], aws["queue_url"])
    return handle_batch(sqs_event(received), worker=worker)


# --- the documented shape ---------------------------------------------------------------------


def test_a_failed_run_publishes_the_documented_event_a_rule_routes(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: Behaviour, all_events: str
) -> None:
    # Given a job whose runner fails for good, and a rule on the default bus
    runner.by_name["broken"] = PermanentError("instance i-1 not found", code="NotFound")
    job = create_job(store, "broken")
    worker = make_worker(store, queue, publisher())

    # When its run is processed
    response = run_batch(aws, worker, job)

    # Then the run is failed, and the rule received one event in the documented shape
    assert response == {"batchItemFailures": []}
    [event] = routed(aws, all_events)
    assert (event["source"], event["detail-type"]) == ("minion", "Minion Run State Change")
    run_id = scheduled_run_id(utc("2026-01-30T10:18"))
    assert event["detail"] == {
        "account": "spinup",
        "group": "nightly",
        "job_id": job.id,
        "job_name": "job-broken",
        "run_id": run_id,
        "trigger": "schedule",
        "scheduled_for": "2026-01-30T10:18:00Z",
        "status": "failed",
        "attempts": 1,
        "finished_at": "2026-01-30T10:18:05Z",
        "error_code": "NotFound",
        "error": "instance i-1 not found",
        "run_url": f"{API_URL}/v1/minion/spinup/jobs/nightly/{job.id}/runs/{run_id}",
    }
    assert stored_run(store, job.id, run_id).status == "failed"


def test_a_rule_matching_failed_receives_only_the_failed_runs(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: Behaviour, all_events: str
) -> None:
    # Given jobs that announce every outcome, one failing and one succeeding, and a rule
    # that matches only failed runs
    runner.by_name["broken"] = PermanentError("no", code="Boom")
    notify = ["succeeded", "failed", "missed", "skipped", "retrying"]
    failing = create_job(store, "broken", notify=notify)
    healthy = create_job(store, "fine", notify=notify)
    failed_only = route(
        aws, "failed-runs", {"source": ["minion"], "detail": {"status": ["failed"]}}
    )
    worker = make_worker(store, queue, publisher())

    # When both run in one batch
    run_batch(aws, worker, failing, healthy)

    # Then every event reached the catch-all rule, and only the failed one the failed rule
    assert sorted(
        (e["detail"]["job_name"], e["detail"]["status"]) for e in routed(aws, all_events)
    ) == [("job-broken", "failed"), ("job-fine", "succeeded")]
    assert [(e["detail"]["job_id"], e["detail"]["status"]) for e in routed(aws, failed_only)] == [
        (failing.id, "failed")
    ]


# --- which outcomes -----------------------------------------------------------------------------


def test_by_default_a_healthy_run_publishes_nothing(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: Behaviour
) -> None:
    # Given a succeeding job without `notify`, and an EventBridge client that refuses any call
    job = create_job(store, "fine")
    client = boto3.client("events")
    worker = make_worker(store, queue, EventPublisher(client))
    # When its run is processed (Stubber fails any call it was not told to expect)
    with Stubber(client) as stub:
        response = run_batch(aws, worker, job)
        stub.assert_no_pending_responses()
    # Then it succeeded and no PutEvents was made
    assert response == {"batchItemFailures": []}
    assert stored_run(store, job.id, message(job).run_id).status == "succeeded"


def test_a_jobs_notify_replaces_the_default(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: Behaviour, all_events: str
) -> None:
    # Given a failing job that asks only for succeeded, and a succeeding one asking for it
    runner.by_name["broken"] = PermanentError("no")
    quiet = create_job(store, "broken", notify=["succeeded"])
    loud = create_job(store, "fine", notify=["succeeded"])
    silent = create_job(store, "fine", notify=[])
    worker = make_worker(store, queue, publisher())
    # When they run
    run_batch(aws, worker, quiet, loud, silent)
    # Then only the succeeded run of the job that asked for it was published
    assert [(e["detail"]["job_id"], e["detail"]["status"]) for e in routed(aws, all_events)] == [
        (loud.id, "succeeded")
    ]


def test_the_deployment_default_is_a_setting(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: Behaviour, all_events: str
) -> None:
    # Given a deployment announcing succeeded runs by default
    job = create_job(store, "fine")
    worker = make_worker(store, queue, publisher(default_notify=parse_notify_default("succeeded")))
    # When a job without notify succeeds
    run_batch(aws, worker, job)
    # Then its run is published
    assert [e["detail"]["status"] for e in routed(aws, all_events)] == ["succeeded"]


def test_a_retried_attempt_is_announced_as_retrying_when_asked(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: Behaviour, all_events: str
) -> None:
    # Given a job that asks for retries, whose runner fails with a retryable error
    runner.by_name["flaky"] = RetryableError("throttled", code="Throttling")
    job = create_job(store, "flaky", notify=["retrying", "failed"])
    worker = make_worker(store, queue, publisher())
    # When its first attempt runs
    run_batch(aws, worker, job)
    # Then a retrying event says when the next attempt comes, and the run is queued again
    [event] = routed(aws, all_events)
    assert {
        k: event["detail"][k] for k in ("status", "attempts", "error_code", "retry_in_seconds")
    } == {
        "status": "retrying",
        "attempts": 1,
        "error_code": "Throttling",
        "retry_in_seconds": retry_delay(1),
    }
    assert stored_run(store, job.id, message(job).run_id).status == "queued"


def test_a_run_skipped_because_its_job_was_deleted_is_announced_by_default(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: Behaviour, all_events: str
) -> None:
    # Given a run whose job was deleted after it was queued
    job = create_job(store, "fine")
    aws["sqs"].send_message(QueueUrl=aws["queue_url"], MessageBody=message(job).to_body())
    store.delete_job(job)
    worker = make_worker(store, queue, publisher())
    # When it is processed
    handle_batch(sqs_event(drain(aws["sqs"], aws["queue_url"])), worker=worker)
    # Then it is skipped and announced (no name: the job is gone)
    [event] = routed(aws, all_events)
    assert (event["detail"]["status"], event["detail"]["job_name"], event["detail"]["error"]) == (
        "skipped",
        None,
        "job deleted before it ran",
    )


def test_missed_occurrences_recorded_by_the_tick_are_announced_once(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: Behaviour, all_events: str
) -> None:
    # Given a minutely job whose ticks stopped for three minutes
    job = create_job(store, "fine")
    events = publisher()
    ticker = Ticker(store, queue, SHARDS, 2, events=events)
    # When the tick of 10:21 runs (10:18-10:20 missed, 10:21 queued), then is delivered again
    run_tick(ticker, scheduled_event("2026-01-30T10:21"))
    run_tick(ticker, scheduled_event("2026-01-30T10:21"))
    # Then the three missed runs were published once each, with the job's name
    details = [e["detail"] for e in routed(aws, all_events)]
    assert sorted(d["scheduled_for"] for d in details) == [
        "2026-01-30T10:18:00Z",
        "2026-01-30T10:19:00Z",
        "2026-01-30T10:20:00Z",
    ]
    assert {(d["status"], d["job_id"], d["job_name"]) for d in details} == {
        ("missed", job.id, "job-fine")
    }
    drain(aws["sqs"], aws["queue_url"])


# --- batching, and best effort --------------------------------------------------------------


def _run(index: int, status: Status = "failed") -> Run:
    return Run(
        run_id=f"20260130T1018{index:02d}Z-s",
        job_id="j",
        account="spinup",
        group="nightly",
        trigger="schedule",
        scheduled_for="2026-01-30T10:18:00Z",
        status=status,
        attempts=1,
        error="boom",
    )


def test_a_batch_of_events_is_published_ten_per_call(aws: dict[str, Any], all_events: str) -> None:
    # Given 23 wanted events collected
    client = boto3.client("events")
    calls: list[int] = []
    client.meta.events.register(
        "provide-client-params.events.PutEvents",
        lambda params, **_: calls.append(len(params["Entries"])),
    )
    events = EventPublisher(client)
    for index in range(23):
        assert events.collect(_run(index), None)
    # When they are flushed
    failed = events.flush()
    # Then three PutEvents carried them all, and the rule received each once
    assert (failed, calls) == (0, [MAX_ENTRIES, MAX_ENTRIES, 3])
    assert len({e["detail"]["run_id"] for e in routed(aws, all_events)}) == 23
    assert events.pending() == 0


def _stubbed_failure(stub: Stubber, how: str, entries: int) -> None:
    if how == "refused":
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]
                + [{"EventId": f"e{i}"} for i in range(entries - 1)],
            },
        )
    else:
        stub.add_client_error("put_events", "AccessDeniedException", http_status_code=400)


@pytest.mark.parametrize("how", ["refused", "raised"])
def test_a_failed_put_events_changes_nothing_about_the_run_and_is_counted(
    how: str,
    store: Store,
    queue: RunQueue,
    aws: dict[str, Any],
    runner: Behaviour,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a failing job and EventBridge refusing its event (FailedEntryCount 1), or the
    # whole PutEvents failing
    runner.by_name["broken"] = PermanentError("no", code="Boom")
    job = create_job(store, "broken")
    client = boto3.client("events")
    worker = make_worker(store, queue, EventPublisher(client))
    # When its run is processed
    with Stubber(client) as stub:
        _stubbed_failure(stub, how, 1)
        response = run_batch(aws, worker, job)
        stub.assert_no_pending_responses()
    # Then the message is acknowledged, the run's record is the failure it was
    assert response == {"batchItemFailures": []}
    run = stored_run(store, job.id, message(job).run_id)
    assert (run.status, run.attempts, run.error_code) == ("failed", 1, "Boom")
    last_run = store.get_job(job.account, job.group, job.id).last_run
    assert last_run is not None and last_run["status"] == "failed"
    # And no message was re-queued, and the miss was counted as a metric
    assert drain(aws["sqs"], aws["queue_url"]) == []
    metrics = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and "_aws" in line
    ]
    assert [m["EventsNotPublished"] for m in metrics if "EventsNotPublished" in m] == [[1.0]]


def test_a_refused_entry_is_counted_and_the_others_are_not(aws: dict[str, Any]) -> None:
    # Given three events, of which EventBridge refuses one
    client = boto3.client("events")
    events = EventPublisher(client)
    for index in range(3):
        events.collect(_run(index), None)
    with Stubber(client) as stub:
        _stubbed_failure(stub, "refused", 3)
        # When they are flushed, Then one is reported not published, and none is kept to retry
        assert events.flush() == 1
    assert events.pending() == 0


def test_a_failed_publish_of_missed_runs_does_not_fail_the_tick(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: Behaviour
) -> None:
    # Given a job with missed occurrences and EventBridge failing every call
    job = create_job(store, "fine")
    client = boto3.client("events")
    ticker = Ticker(store, queue, SHARDS, 2, events=EventPublisher(client))
    with Stubber(client) as stub:
        stub.add_client_error("put_events", "InternalException", http_status_code=500)
        # When the tick runs
        report = run_tick(ticker, scheduled_event("2026-01-30T10:21"))
    # Then it recorded the misses and queued the latest occurrence all the same
    assert (report.missed, report.queued) == (3, 1)
    assert stored_run(store, job.id, scheduled_run_id(utc("2026-01-30T10:18"))).status == "missed"
    drain(aws["sqs"], aws["queue_url"])


# --- the notify field through the API ---------------------------------------------------------

BASE = "/v1/minion/spinup/jobs/nightly"
BODY = {"name": "n", "schedule_expression": "0 3 * * *", "details": {"runner": "dummyRunner"}}


@pytest.mark.parametrize(
    "notify, field",
    [
        ("failed", "notify"),
        ({"failed": True}, "notify"),
        (["failed", "exploded"], "notify[1]"),
        ([1], "notify[0]"),
        (["failed", "failed"], "notify"),
        ([None], "notify[0]"),
    ],
)
def test_a_bad_notify_is_refused_naming_the_field_and_nothing_is_stored(
    client: Any, notify: Any, field: str
) -> None:
    # When a job is created with a malformed notify
    answer = client.http.post(BASE, headers=auth(), body=json.dumps({**BODY, "notify": notify}))
    # Then 400 names the field, and no job exists
    assert answer.status_code == 400, answer.body
    assert json.loads(answer.body)["Message"].startswith(field + ":")
    assert json.loads(client.http.get(BASE, headers=auth()).body) == []


def test_notify_round_trips_through_create_get_and_replace(client: Any) -> None:
    # Given a job created with notify
    created = client.http.post(
        BASE, headers=auth(), body=json.dumps({**BODY, "notify": ["failed", "missed", "succeeded"]})
    )
    assert created.status_code == 200, created.body
    job = json.loads(created.body)
    path = f"{BASE}/{job['id']}"
    # Then a GET returns it as given
    assert json.loads(client.http.get(path, headers=auth()).body)["notify"] == [
        "failed",
        "missed",
        "succeeded",
    ]
    # When it is replaced with an empty list, then without the field
    client.http.put(path, headers=auth(), body=json.dumps({**BODY, "notify": []}))
    assert json.loads(client.http.get(path, headers=auth()).body)["notify"] == []
    client.http.put(path, headers=auth(), body=json.dumps(BODY))
    # Then none means the deployment default: the field is absent
    assert "notify" not in json.loads(client.http.get(path, headers=auth()).body)


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, ("failed", "missed", "skipped")),
        ("", ("failed", "missed", "skipped")),
        ("none", ()),
        ("failed", ("failed",)),
        (" failed , retrying ", ("failed", "retrying")),
    ],
)
def test_the_notify_default_setting(text: str | None, expected: tuple[str, ...]) -> None:
    assert parse_notify_default(text) == expected


def test_a_misspelt_notify_default_is_refused_naming_the_setting() -> None:
    with pytest.raises(NotifyConfigError, match="MINION_NOTIFY_DEFAULT: unknown outcome 'fail'"):
        parse_notify_default("fail,missed")


def test_the_worker_wired_from_the_settings_publishes_to_the_named_bus(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import deps

    # Given a deployment naming its own bus, a default, and the API's URL
    monkeypatch.setenv("MINION_EVENT_BUS", "ops")
    monkeypatch.setenv("MINION_NOTIFY_DEFAULT", "failed")
    monkeypatch.setenv("MINION_API_URL", API_URL + "/")
    deps.reset()
    # When the worker is built from them
    events = deps.worker().events
    # Then its publisher uses them
    assert events is not None
    assert (events.bus, events.default_notify, events.api_url) == ("ops", ("failed",), API_URL)
    detail = run_detail(_run(1), "failed", None, events.api_url)
    assert detail["run_url"].startswith(API_URL + "/v1/minion/spinup/jobs/nightly/j/runs/")


# --- make run ---------------------------------------------------------------------------------


def test_a_local_event_line_says_what_happened_and_carries_the_detail() -> None:
    from local.events import event_line

    detail = run_detail(_run(3), "failed", None, "http://127.0.0.1:8080")
    line = event_line({"detail-type": DETAIL_TYPE, "source": SOURCE, "detail": detail})
    assert line.startswith(
        "event Minion Run State Change: failed spinup/nightly/j run "
        "20260130T101803Z-s attempt 1 (error: boom)  {"
    )
    assert json.loads(line.split("  ", 1)[1]) == detail


@pytest.mark.e2e
def test_make_run_prints_the_events_production_would_send(tmp_path: Any) -> None:
    import time

    import httpx

    from test_local_stack import Stack

    # Given the local stack, and a job announcing its successes
    stack = Stack(tmp_path / "state").start()
    try:
        headers = {"X-Auth-Token": stack.token(), "Content-Type": "application/json"}
        base = stack.base + "/spinup/jobs/space-xy"
        job = httpx.post(
            base,
            headers=headers,
            json={
                "name": "announced",
                "schedule_expression": "0 3 * * *",
                "details": {"runner": "dummyRunner"},
                "notify": ["succeeded"],
            },
        ).json()
        # When it is run now and succeeds
        run = httpx.patch(f"{base}/{job['id']}", headers=headers).json()
        # (the run, then the rule's queue, polled every second: waited for, however loaded
        # the machine is, up to a minute)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "\nevent " not in "\n" + stack.log.read_text():
            time.sleep(0.5)
    finally:
        stack.stop()
    # Then the stack printed its event as one line, linking to the run in the local API
    [line] = [x for x in stack.output.splitlines() if x.startswith("event ")]
    assert line.startswith(
        "event Minion Run State Change: succeeded spinup/space-xy/announced "
        f"run {run['run_id']} attempt 1"
    )
    detail = json.loads(line.split("  ", 1)[1])
    assert detail["run_url"] == (
        f"http://127.0.0.1:{stack.port}/v1/minion/spinup/jobs/"
        f"space-xy/{job['id']}/runs/{run['run_id']}"
    )
