"""The sweep: runs whose message was dead-lettered, or whose worker died while no other delivery
takes them over, end `failed` (RunLost) or queued again, never `running` forever; found through
the dead-letter queue and the watch index, never by reading every run.

Against moto's DynamoDB and SQS; dead letters are either moved by moto's own redrive policy or
sent to the dead-letter queue as SQS would have moved them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.queue import RunMessage, RunQueue
from chalicelib.runners import RunResult
from chalicelib.runs import Run
from chalicelib.store import LEASE_INDEX, LEASE_SHARDS, Store, shard_of, slot_key
from chalicelib.sweep import DEAD_LETTER_VISIBILITY, GRACE_SECONDS, Sweeper, SweepReport
from chalicelib.worker import handle_batch
from conftest import QUEUE, drain, sqs_event
from store_support import create_job
from worker_support import (
    LEASE,
    STARTED,
    Clock,
    ScriptedRunner,
    make_worker,
    runner,
    scheduled,
    the_run,
    the_run_to_claim,
)

__all__ = ["runner"]  # the fixture (worker_support), shared with test_worker
DLQ = QUEUE + "-dlq"
AFTER_LEASE = STARTED + timedelta(seconds=LEASE + GRACE_SECONDS + 1)


@pytest.fixture
def dlq(aws: dict[str, Any]) -> RunQueue:
    """The runs queue's dead-letter queue."""
    url = aws["sqs"].create_queue(QueueName=DLQ)["QueueUrl"]
    return RunQueue(aws["sqs"], DLQ, url)


def sweeper(store: Store, queue: RunQueue, dlq: RunQueue | None, when: Any) -> Sweeper:
    return Sweeper(store=store, queue=queue, dead_letters=dlq, clock=Clock(when))


def dead_letter(dlq: RunQueue, *bodies: str) -> None:
    for body in bodies:
        dlq.client.send_message(QueueUrl=dlq.url, MessageBody=body)


def left_in(dlq: RunQueue) -> int:
    attributes = dlq.client.get_queue_attributes(
        QueueUrl=dlq.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


# --- dead letters ------------------------------------------------------------------------------


def test_a_message_dead_lettered_by_the_queue_ends_its_run_failed_as_lost(
    store: Store, queue: RunQueue, aws: dict[str, Any], dlq: RunQueue, runner: ScriptedRunner
) -> None:
    # Given a runs queue that dead-letters after 2 receives, and a run whose claim fails at
    # every delivery (the job store throttled for that job)
    from worker_support import ThrottledClaims

    sqs = aws["sqs"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq.url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName="runs-redriven",
        Attributes={
            "VisibilityTimeout": "0",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    job = create_job(store)
    broken = make_worker(
        Store(ThrottledClaims(aws["dynamodb"], job.id), store.table, store.shards), queue, Clock()
    )
    sqs.send_message(QueueUrl=url, MessageBody=scheduled(job).to_body())
    for _ in range(3):  # the event source: what failed stays, and comes back
        received = sqs.receive_message(QueueUrl=url, AttributeNames=["All"]).get("Messages", [])
        if received:
            assert handle_batch(sqs_event(received), worker=broken)["batchItemFailures"]
    assert left_in(dlq) == 1 and the_run(store, job) is None

    # When the sweep runs
    report = sweeper(store, queue, dlq, STARTED).sweep()

    # Then the run is recorded failed, saying it was lost, and counted; the dead letter is gone
    run = the_run(store, job)
    assert (run.status, run.error_code, run.attempts) == ("failed", "RunLost", 0)
    assert "dead-lettered" in (run.error or "") and run.finished_at
    assert (report.dead_letters, report.lost) == (1, 1)
    assert store.counters()["RUNS"] == {"failed": 1}
    last_run = store.get_job(job.account, job.group, job.id).last_run
    assert last_run is not None and last_run["status"] == "failed"
    assert left_in(dlq) == 0
    assert runner.calls == Counter()


def test_a_dead_letter_of_a_run_of_an_outdated_job_version_is_given_up_without_a_record(
    store: Store, queue: RunQueue, dlq: RunQueue
) -> None:
    # Given the dead-lettered message of a run never claimed, its job deleted since, and the
    # successor the tick put for it
    job = create_job(store)
    successor = int((STARTED + timedelta(minutes=1)).timestamp())
    message = replace(scheduled(job), next_due=successor)
    key = slot_key(shard_of(job.id, store.shards), STARTED + timedelta(minutes=1), job.id, 1)
    store.client.put_item(TableName=store.table, Item={**key, "id": {"S": job.id}})
    store.delete_job(store.get_job(job.account, job.group, job.id))
    dead_letter(dlq, message.to_body())

    # When the sweep runs
    report = sweeper(store, queue, dlq, STARTED).sweep()

    # Then nothing is recorded (the worker would have dropped it), the old version's chain
    # stops, and the dead letter is gone
    assert the_run(store, job) is None and report.lost == 0
    assert "Item" not in store.client.get_item(TableName=store.table, Key=key)
    assert left_in(dlq) == 0


@pytest.mark.parametrize(
    "state, lost",
    [
        ("never claimed", True),
        ("running, lease expired", True),  # the worker died at every delivery
        ("running, lease live", False),  # a worker holds it: it records it
        ("succeeded", False),  # finished meanwhile
        ("queued for a later attempt", False),  # a retry's message is out there
    ],
)
def test_a_dead_letter_ends_its_run_only_when_nothing_else_will(
    store: Store, queue: RunQueue, dlq: RunQueue, state: str, lost: bool
) -> None:
    # Given a dead-lettered message of attempt 1, and its run in `state`
    job = create_job(store)
    now = STARTED + timedelta(seconds=LEASE // 2)
    if state != "never claimed":
        claimed = store.claim_run(the_run_to_claim(job), 1, LEASE, STARTED)
        assert isinstance(claimed, Run)
        if state == "running, lease expired":
            now = STARTED + timedelta(seconds=LEASE + 1)
        elif state == "succeeded":
            store.finish_run(claimed.with_status("succeeded"), 1)
        elif state == "queued for a later attempt":
            store.finish_run(claimed.with_status("queued"), 1)
    dead_letter(dlq, scheduled(job).to_body())
    before = the_run(store, job)

    # When the sweep reads it
    report = sweeper(store, queue, dlq, now).sweep()

    # Then the run is recorded lost only when no worker and no other message will end it;
    # the dead letter is kept only while a live worker holds the run
    after = the_run(store, job)
    if lost:
        assert (after.status, after.error_code) == ("failed", "RunLost")
    else:
        assert after == before
    assert report.lost == int(lost)
    assert left_in(dlq) == (1 if state == "running, lease live" else 0)


def test_a_poison_dead_letter_is_left_for_an_operator_and_logged(
    store: Store, queue: RunQueue, dlq: RunQueue, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a dead letter that is no run message
    dead_letter(dlq, "not a run message")
    # When the sweep reads it
    report = sweeper(store, queue, dlq, STARTED).sweep()
    # Then it is still in the dead-letter queue (out of sight until it is read again), logged
    # at ERROR with its message id
    assert (report.dead_letters, report.kept, report.lost) == (1, 1, 0)
    assert left_in(dlq) == 1
    assert dlq.client.receive_message(QueueUrl=dlq.url).get("Messages", []) == []
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert error.__dict__["message_id"] and "dead-letter" in error.getMessage()
    assert DEAD_LETTER_VISIBILITY >= 60


def test_a_dead_lettered_run_now_is_recorded_lost_and_a_never_queued_one_is_not_created(
    store: Store, queue: RunQueue, aws: dict[str, Any], dlq: RunQueue
) -> None:
    # Given a run-now recorded queued (its message dead-lettered), and a run-now message whose
    # run was never recorded
    from chalicelib.api import MinionApi
    from store_support import REGISTRY

    job = create_job(store)
    queued = MinionApi(store, queue, lambda: REGISTRY, clock=lambda: STARTED).run_now(
        job.account, job.group, job.id
    )
    [message] = drain(aws["sqs"], aws["queue_url"])
    stray = RunMessage(**{**json.loads(message["Body"]), "run_id": "20260130T101806Z-m0000000f"})
    dead_letter(dlq, message["Body"], stray.to_body())
    # When the sweep reads them
    sweeper(store, queue, dlq, STARTED).sweep()
    # Then the first run-now failed as lost; no record was made up for the other
    lost = store.get_run(job.id, queued.run_id)
    assert lost is not None and (lost.status, lost.error_code) == ("failed", "RunLost")
    assert store.get_run(job.id, stray.run_id) is None
    assert left_in(dlq) == 0


# --- expired leases ------------------------------------------------------------------------------


def test_a_first_delivery_costs_the_sweep_nothing(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: ScriptedRunner
) -> None:
    # Given a run delivered for the first time (attempt 1, received once) whose worker dies
    # right after its claim
    job = create_job(store)
    died = make_worker(store, queue, Clock())

    def dies(details: Mapping[str, str], ctx: Any) -> RunResult:
        raise KeyboardInterrupt  # not an Exception: the process is gone

    runner.behaviour = dies
    with pytest.raises(KeyboardInterrupt):
        died.handle(scheduled(job))
    # Then its claim wrote nothing for the sweep: no watch attribute, nothing in the index
    item = aws["dynamodb"].get_item(
        TableName=store.table,
        Key={"pk": {"S": f"JOB#{job.id}"}, "sk": {"S": "RUN#20260130T101800Z-s"}},
    )["Item"]
    assert "lease_watch" not in item and item["status"]["S"] == "running"
    assert all(list(store.watched_runs(shard, 2**40)) == [] for shard in range(LEASE_SHARDS))
    # (SQS gives its message back after the visibility timeout: the second delivery is watched)


def watched_and_died(store: Store, queue: RunQueue, job: Any, attempt: int = 1) -> None:
    """The state a worker leaves when it dies after claiming a message received twice."""
    assert store.claim_run(the_run_to_claim(job), attempt, LEASE, STARTED, watch=True)


def test_a_watched_run_whose_worker_died_is_queued_again_after_its_lease_and_then_runs(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: ScriptedRunner
) -> None:
    # Given a run claimed from its second delivery by a worker that then died
    job = create_job(store, max_attempts=3)
    watched_and_died(store, queue, job)
    assert [list(store.watched_runs(s, 2**40)) for s in range(LEASE_SHARDS)].count(
        [(job.id, "20260130T101800Z-s")]
    ) == 1

    # When the sweep runs before its lease (and grace) is over
    early = sweeper(store, queue, None, STARTED + timedelta(seconds=LEASE)).sweep()
    # Then nothing happens
    assert early == SweepReport() and the_run(store, job).status == "running"

    # When it runs after
    report = sweeper(store, queue, None, AFTER_LEASE).sweep()

    # Then the next attempt is queued: the record says queued, its message is on the queue
    assert report.requeued == 1
    run = the_run(store, job)
    assert (run.status, run.attempts, run.error_code) == ("queued", 1, "RunLost")
    [message] = drain(aws["sqs"], aws["queue_url"])
    assert RunMessage.from_body(message["Body"]).attempt == 2
    # And it is off the watch index until claimed again
    assert all(list(store.watched_runs(s, 2**40)) == [] for s in range(LEASE_SHARDS))
    # And when that message is delivered, the run runs once and succeeds
    handle_batch(sqs_event([message]), worker=make_worker(store, queue, Clock(AFTER_LEASE)))
    assert (the_run(store, job).status, the_run(store, job).attempts) == ("succeeded", 2)
    assert sum(runner.calls.values()) == 1


def test_a_watched_run_with_no_attempt_left_ends_failed_as_lost(
    store: Store, queue: RunQueue, aws: dict[str, Any]
) -> None:
    # Given a job allowed one attempt, whose run's worker died on a watched delivery
    job = create_job(store, max_attempts=1)
    watched_and_died(store, queue, job)
    # When the sweep runs after the lease
    report = sweeper(store, queue, None, AFTER_LEASE).sweep()
    # Then the run is failed as lost, saying why, counted; nothing is queued
    run = the_run(store, job)
    assert (run.status, run.error_code, report.lost) == ("failed", "RunLost", 1)
    assert "1 of 1 attempts used" in (run.error or "")
    assert store.counters()["RUNS"] == {"failed": 1}
    assert drain(aws["sqs"], aws["queue_url"]) == []


def test_a_sweep_run_twice_or_killed_between_its_send_and_its_write_loses_and_doubles_nothing(
    store: Store,
    queue: RunQueue,
    aws: dict[str, Any],
    runner: ScriptedRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two watched runs whose workers died
    jobs = [create_job(store, max_attempts=3) for _ in range(2)]
    for job in jobs:
        watched_and_died(store, queue, job)
    # When one sweep dies right after sending the first job's next attempt (before its write)
    original = Store.requeue_lost

    def killed(self: Store, *args: Any, **kwargs: Any) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "requeue_lost", killed)
    with pytest.raises(KeyboardInterrupt):
        sweeper(store, queue, None, AFTER_LEASE).sweep()
    monkeypatch.setattr(Store, "requeue_lost", original)
    # And then two sweeps run one after the other, as two overlapping invocations would
    first = sweeper(store, queue, None, AFTER_LEASE).sweep()
    second = sweeper(store, queue, None, AFTER_LEASE).sweep()
    # Then each run was queued again once; the extra messages are duplicates the claim stops
    assert first.requeued + second.requeued == 2
    messages = drain(aws["sqs"], aws["queue_url"])
    assert len(messages) == 3
    response = handle_batch(
        sqs_event(messages), worker=make_worker(store, queue, Clock(AFTER_LEASE))
    )
    assert response == {"batchItemFailures": []}
    assert runner.calls == Counter({(job.id, "20260130T101800Z-s"): 1 for job in jobs})
    assert {the_run(store, job).status for job in jobs} == {"succeeded"}


def test_a_lost_forbid_run_lets_go_of_its_job(
    store: Store, queue: RunQueue, runner: ScriptedRunner
) -> None:
    # Given a Forbid job (one attempt) whose run holds the job, watched, and its worker died
    job = create_job(store, concurrency_policy="Forbid", max_attempts=1)
    watched_and_died(store, queue, job)
    assert store.hold_forbid(job, "20260130T101800Z-s", int(STARTED.timestamp()) + LEASE, STARTED)
    # When the sweep ends it
    sweeper(store, queue, None, AFTER_LEASE).sweep()
    # Then the next run of the job runs at once (not only once the hold would have expired)
    assert store.hold_forbid(job, "20260130T101900Z-s", 2**40, STARTED)


def test_the_watch_index_is_sparse_and_keys_only(store: Store) -> None:
    # Given the table's definition / Then the watch index holds only its keys
    table = store.client.describe_table(TableName=store.table)["Table"]
    [index] = [i for i in table["GlobalSecondaryIndexes"] if i["IndexName"] == LEASE_INDEX]
    assert index["Projection"]["ProjectionType"] == "KEYS_ONLY"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["lease_watch", "lease_until"]


# --- the Lambda entry point --------------------------------------------------------------------


def test_the_sweep_handler_reads_the_configured_dead_letter_queue(
    client: Any, store: Store, aws: dict[str, Any], dlq: RunQueue
) -> None:
    # Given a dead-lettered run message in the queue named by the settings (<queue>-dlq)
    job = create_job(store)
    dead_letter(dlq, scheduled(job).to_body())
    event = {
        "version": "0",
        "id": "e",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-01-30T10:20:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {},
    }
    # When the real `sweep` Lambda handler is invoked with a scheduled event
    answer = client.lambda_.invoke("sweep", event).payload
    # Then it read it and recorded the run lost
    assert answer == {"dead_letters": 1, "lost": 1, "requeued": 0, "kept": 0}
    assert the_run(store, job).error_code == "RunLost"


# --- a lost run is announced, as the worker's failures are -------------------------------------


def test_runs_the_sweep_records_lost_are_announced_as_failed_run_events(
    store: Store, queue: RunQueue, aws: dict[str, Any], dlq: RunQueue
) -> None:
    # Given a rule on the default bus routing failed runs to a queue, a run whose message was
    # dead-lettered before any delivery, and a run whose worker died with no attempt left
    import boto3

    from chalicelib.events import EventPublisher
    from chalicelib.sweep import handle_sweep

    sqs = aws["sqs"]
    target = sqs.create_queue(QueueName="failed-runs")["QueueUrl"]
    target_arn = sqs.get_queue_attributes(QueueUrl=target, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events = boto3.client("events")
    events.put_rule(
        Name="failed-runs",
        EventPattern=json.dumps({"source": ["minion"], "detail": {"status": ["failed"]}}),
    )
    events.put_targets(Rule="failed-runs", Targets=[{"Id": "queue", "Arn": target_arn}])
    dead = create_job(store)
    dead_letter(dlq, scheduled(dead).to_body())
    died = create_job(store, max_attempts=1)
    watched_and_died(store, queue, died)

    # When the sweep's handler runs after the lease, publishing with the deployment default
    sweep = Sweeper(
        store=store,
        queue=queue,
        dead_letters=dlq,
        clock=Clock(AFTER_LEASE),
        events=EventPublisher(events, api_url="https://minion.example"),
    )
    answer = handle_sweep({}, None, sweep)

    # Then both runs are failed as lost, and the rule received one failed event for each, with
    # the job's name (read for the dead letter, which names no job) and the code RunLost
    assert answer["lost"] == 2
    received = [json.loads(m["Body"]) for m in drain(sqs, target)]
    details = sorted((e["detail"] for e in received), key=lambda d: d["job_id"])
    expected = sorted([dead, died], key=lambda j: j.id)
    assert [(d["job_id"], d["job_name"]) for d in details] == [(j.id, j.name) for j in expected]
    assert {(d["status"], d["error_code"]) for d in details} == {("failed", "RunLost")}
    assert [e["detail-type"] for e in received] == ["Minion Run State Change"] * 2
