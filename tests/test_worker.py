"""The runs worker: duplicates, races, dead workers, poison messages, runner failures, skips,
run-now, and the partial batch response, against moto's DynamoDB and SQS.

SQS events are built from messages really received from moto (`sqs_event`), each keeping its
own message id; the worker's clock is set by hand to move past a lease.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from botocore.stub import Stubber

from chalicelib.accounts import Registry
from chalicelib.api import MinionApi
from chalicelib.jobs import Job, iso, job_from_request
from chalicelib.queue import RunMessage, RunQueue
from chalicelib.runners import PermanentError, RetryableError, RunResult
from chalicelib.runners.dummy import DummyRunner
from chalicelib.runs import Run, manual_run_id, scheduled_run_id
from chalicelib.store import Refused, Store
from chalicelib.tick import Ticker, run_tick
from chalicelib.worker import TIME_TO_RECORD, Worker, handle_batch, retry_delay
from conftest import QUEUE, TABLE, drain, failed_ids, scheduled_event, sqs_event, utc
from store_support import REGISTRY, Recording, create_job
from worker_support import (
    CONCURRENCY,
    LEASE,
    STARTED,
    Clock,
    OneRequestAtATime,
    ScriptedRunner,
    ThrottledClaims,
    make_worker,
    runner,
    scheduled,
    the_run,
    the_run_to_claim,
)

__all__ = ["runner"]  # the fixture (worker_support), shared with test_sweep

SHARDS = 4


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def worker(store: Store, queue: RunQueue, clock: Clock) -> Worker:
    return make_worker(store, queue, clock)


def send(aws: dict[str, Any], *bodies: str) -> None:
    for body in bodies:
        aws["sqs"].send_message(QueueUrl=aws["queue_url"], MessageBody=body)


def deliver(
    aws: dict[str, Any], worker: Worker
) -> tuple[list[dict[str, Any]], PartialItemFailureResponse]:
    """Drain the runs queue and hand what it held to the worker in one SQS event."""
    messages = drain(aws["sqs"], aws["queue_url"])
    assert messages, "nothing to deliver"
    return messages, handle_batch(sqs_event(messages), worker=worker)


# --- duplicates, races, dead workers ----------------------------------------------------------


def test_the_same_run_delivered_twice_runs_once_and_the_copy_is_acknowledged(
    store: Store, aws: dict[str, Any], worker: Worker, runner: ScriptedRunner
) -> None:
    # Given one run message sent twice (a re-sent tick): two SQS messages, one run
    job = create_job(store)
    body = scheduled(job).to_body()
    send(aws, body, body)

    # When both are delivered in one batch
    messages, response = deliver(aws, worker)

    # Then the runner ran once, and neither message comes back
    assert len({m["MessageId"] for m in messages}) == 2
    assert runner.calls == Counter({(job.id, "20260130T101800Z-s"): 1})
    assert response == {"batchItemFailures": []}
    run = the_run(store, job)
    assert (run.status, run.attempts) == ("succeeded", 1)

    # When a third copy arrives later
    send(aws, body)
    _, later = deliver(aws, worker)
    # Then it is acknowledged without running
    assert later == {"batchItemFailures": []}
    assert sum(runner.calls.values()) == 1


def test_two_workers_racing_for_one_run_one_runs_it_and_the_other_keeps_its_message(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: ScriptedRunner
) -> None:
    # Given two copies of one run message, each received by its own worker, and a runner
    # that holds the run until the race is over
    job = create_job(store)
    store = Store(OneRequestAtATime(aws["dynamodb"]), TABLE, SHARDS)
    send(aws, scheduled(job).to_body(), scheduled(job).to_body())
    copies = drain(aws["sqs"], aws["queue_url"])
    release = threading.Event()

    def hold(details: Mapping[str, str], ctx: Any) -> RunResult:
        assert release.wait(10), "race never released"
        return RunResult(output="done")

    runner.behaviour = hold
    barrier = threading.Barrier(2)
    responses: dict[str, PartialItemFailureResponse] = {}

    def work(copy: dict[str, Any]) -> None:
        worker = make_worker(store, queue, Clock())
        barrier.wait()
        responses[copy["MessageId"]] = handle_batch(sqs_event([copy]), worker=worker)

    # When both workers handle their copy at the same moment
    threads = [threading.Thread(target=work, args=(copy,)) for copy in copies]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(responses) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(10)

    # Then the runner ran once; the loser neither ran it nor acknowledged its copy
    assert sum(runner.calls.values()) == 1
    lost = [mid for mid, response in responses.items() if response["batchItemFailures"]]
    won = [mid for mid, response in responses.items() if not response["batchItemFailures"]]
    assert len(lost) == 1 and len(won) == 1
    assert responses[lost[0]] == {"batchItemFailures": [{"itemIdentifier": lost[0]}]}
    assert the_run(store, job).status == "succeeded"

    # When the loser's copy comes back after its visibility timeout
    [loser_copy] = [c for c in copies if c["MessageId"] == lost[0]]
    again = handle_batch(sqs_event([loser_copy]), worker=make_worker(store, queue, Clock()))
    # Then it is acknowledged, and the run still ran once
    assert again == {"batchItemFailures": []}
    assert sum(runner.calls.values()) == 1


def test_a_claim_is_taken_by_one_caller_only(store: Store, clock: Clock) -> None:
    # Given a run nobody holds
    job = create_job(store)
    run = the_run_to_claim(job)
    # When two workers claim it
    first = store.claim_run(run, 1, LEASE, clock())
    second = store.claim_run(run, 1, LEASE, clock())
    # Then the first holds it (running, attempt 1); the second is refused, and told by the
    # refusing write who holds it until when
    assert isinstance(first, Run) and (first.status, first.attempts) == ("running", 1)
    assert isinstance(second, Refused) and not second
    assert second.lease == ("running", int(clock().timestamp()) + LEASE)


def test_a_refused_claim_reads_the_holder_from_the_refusing_write_not_a_second_read(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: ScriptedRunner
) -> None:
    # Given a run held by a live worker, and a copy of its message delivered meanwhile
    job = create_job(store)
    assert store.claim_run(the_run_to_claim(job), 1, LEASE, STARTED)
    send(aws, scheduled(job).to_body())
    worker = make_worker(store, queue, Clock(STARTED + timedelta(seconds=30)))
    # When the copy is handled
    messages, response = deliver(aws, worker)
    # Then it is kept for later (the holder is live), decided with no read of the run: its
    # one GetItem is of the job (read before the claim, to drop a stale version's run)
    assert failed_ids(response) == [messages[0]["MessageId"]]
    gets = [call for name, call in worker.store.client.calls if name == "get_item"]
    assert [g["Key"]["sk"]["S"] for g in gets] == ["SPEC"]
    assert runner.calls == Counter()

    # When the run has finished and another copy arrives, it is acknowledged, again unread
    store.finish_run(the_run(store, job).with_status("succeeded"), 1)
    send(aws, scheduled(job).to_body())
    worker = make_worker(store, queue, Clock(STARTED + timedelta(seconds=40)))
    _, response = deliver(aws, worker)
    assert response == {"batchItemFailures": []}
    gets = [call for name, call in worker.store.client.calls if name == "get_item"]
    assert [g["Key"]["sk"]["S"] for g in gets] == ["SPEC"]
    assert runner.calls == Counter() and the_run(store, job).status == "succeeded"


def test_a_run_whose_worker_died_is_taken_over_after_its_lease_and_not_before(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: ScriptedRunner
) -> None:
    # Given a run claimed at 10:18:05 by a worker that then died (claim, no finish), and its
    # message back on the queue
    job = create_job(store)
    dead = store.claim_run(the_run_to_claim(job), 1, LEASE, STARTED)
    assert isinstance(dead, Run)
    send(aws, scheduled(job).to_body())
    [message] = drain(aws["sqs"], aws["queue_url"])

    # When it is delivered again while the lease is still live (to its last second)
    for seconds in (60, LEASE):
        clock = Clock(STARTED + timedelta(seconds=seconds))
        response = handle_batch(sqs_event([message]), worker=make_worker(store, queue, clock))
        # Then it is not run, and the message is kept for later
        assert response == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
        assert runner.calls == Counter()
        assert the_run(store, job).status == "running"

    # When it is delivered once the lease has expired
    clock = Clock(STARTED + timedelta(seconds=LEASE + 1))
    response = handle_batch(sqs_event([message]), worker=make_worker(store, queue, clock))

    # Then it runs, once, as the second attempt
    assert response == {"batchItemFailures": []}
    assert runner.calls == Counter({(job.id, "20260130T101800Z-s"): 1})
    run = the_run(store, job)
    assert (run.status, run.attempts) == ("succeeded", 2)
    # And the first worker, were it only slow, can no longer record over it
    assert store.finish_run(dead.with_status("failed", error="late"), dead.attempts) is False
    assert the_run(store, job).status == "succeeded"


# --- poison messages and partial batches -----------------------------------------------------


def poison_bodies(job: Job) -> dict[str, str]:
    valid = json.loads(scheduled(job).to_body())
    return {
        "not JSON": "this is not json",
        "a JSON array": json.dumps([valid]),
        "a JSON string": json.dumps("run it"),
        "missing fields": json.dumps({"account": "spinup", "job_id": job.id}),
        "an unknown field": json.dumps({**valid, "extra": 1}),
        "attempt out of range": json.dumps({**valid, "attempt": 0}),
        "a job id that is no job id": json.dumps({**valid, "job_id": "../../etc"}),
        "a run id that does not match its time": json.dumps(
            {**valid, "run_id": "20260130T101900Z-s"}
        ),
        "an unknown trigger": json.dumps({**valid, "trigger": "whenever"}),
        "a run-now that was never queued": RunMessage(
            account=job.account,
            group=job.group,
            job_id=job.id,
            run_id=manual_run_id(STARTED),
            trigger="manual",
            scheduled_for=iso(STARTED) or "",
        ).to_body(),
    }


def test_poison_messages_fail_alone_and_the_rest_of_the_batch_succeeds(
    store: Store, aws: dict[str, Any], worker: Worker, runner: ScriptedRunner
) -> None:
    # Given a batch mixing a good run message with every kind of poison
    job = create_job(store)
    poison = poison_bodies(job)
    send(aws, scheduled(job).to_body(), *poison.values())

    # When the worker handles the batch
    messages, response = deliver(aws, worker)

    # Then exactly the poison messages are reported failed; the good one ran
    by_body = {m["Body"]: m["MessageId"] for m in messages}
    assert failed_ids(response) == sorted(by_body[b] for b in poison.values())
    assert runner.calls == Counter({(job.id, "20260130T101800Z-s"): 1})
    # And the poison wrote nothing: the job's only run is the good one
    assert [(r.run_id, r.status) for r in store.list_runs(job.id, 10)[0]] == [
        ("20260130T101800Z-s", "succeeded")
    ]


def test_a_poison_message_lands_in_the_dlq_after_the_maximum_receives(
    store: Store, queue: RunQueue, aws: dict[str, Any], worker: Worker, runner: ScriptedRunner
) -> None:
    # Given a runs queue with a DLQ after 2 receives, holding one poison and one good message
    sqs = aws["sqs"]
    dlq_url = sqs.create_queue(QueueName="runs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName="runs-with-dlq",
        Attributes={
            "VisibilityTimeout": "180",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    job = create_job(store)
    for body in ("not json", scheduled(job).to_body()):
        sqs.send_message(QueueUrl=url, MessageBody=body)

    # When the event source delivers what it receives, deletes what succeeded, and lets the
    # failed items come back (their visibility timeout ends), until nothing is left
    deliveries: list[list[str]] = []
    while True:
        received = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not received or len(deliveries) > 5:
            break
        failed = set(failed_ids(handle_batch(sqs_event(received), worker=worker)))
        deliveries.append(sorted(m["Body"] for m in received))
        for m in received:
            if m["MessageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    # Then the poison was received twice and then moved to the DLQ; the good one ran once
    assert deliveries == [sorted(["not json", scheduled(job).to_body()]), ["not json"]]
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == ["not json"]
    assert sum(runner.calls.values()) == 1


def test_a_partial_batch_reports_only_its_failed_items(
    aws: dict[str, Any], queue: RunQueue, clock: Clock, runner: ScriptedRunner
) -> None:
    # Given four runs of four jobs, and DynamoDB throttling every write to one job's runs
    plain = Store(aws["dynamodb"], TABLE, SHARDS)
    jobs = [create_job(plain) for _ in range(4)]
    dynamodb = ThrottledClaims(aws["dynamodb"], jobs[2].id)
    worker = make_worker(Store(dynamodb, TABLE, SHARDS), queue, clock)
    send(aws, *(scheduled(j).to_body() for j in jobs))

    # When the batch is handled
    messages, response = deliver(aws, worker)

    # Then only the throttled job's message comes back; the other three ran
    [throttled] = [m["MessageId"] for m in messages if jobs[2].id in m["Body"]]
    assert response == {"batchItemFailures": [{"itemIdentifier": throttled}]}
    assert set(runner.calls) == {(j.id, "20260130T101800Z-s") for j in jobs if j is not jobs[2]}
    assert the_run(plain, jobs[2]) is None

    # And when it comes back with DynamoDB healthy again, it runs
    dynamodb.active = False
    again = handle_batch(
        sqs_event([m for m in messages if m["MessageId"] == throttled]), worker=worker
    )
    assert again == {"batchItemFailures": []}
    assert the_run(plain, jobs[2]).status == "succeeded"


# --- runner failures ---------------------------------------------------------------------------


def test_a_permanent_runner_error_fails_the_run_at_once_with_its_reason_and_code(
    store: Store, aws: dict[str, Any], worker: Worker, runner: ScriptedRunner
) -> None:
    # Given a runner that fails permanently
    job = create_job(store, max_attempts=5)

    def missing(details: Mapping[str, str], ctx: Any) -> RunResult:
        raise PermanentError(
            "ec2 StopInstances i-0abc: InvalidInstanceID.NotFound: no such instance",
            "InvalidInstanceID.NotFound",
        )

    runner.behaviour = missing
    send(aws, scheduled(job).to_body())

    # When its run is handled
    _, response = deliver(aws, worker)

    # Then the run failed at the first attempt, with the error and its code; nothing re-queued
    assert response == {"batchItemFailures": []}
    run = the_run(store, job)
    assert (run.status, run.attempts, run.error_code) == ("failed", 1, "InvalidInstanceID.NotFound")
    assert "no such instance" in (run.error or "") and run.finished_at
    assert sum(runner.calls.values()) == 1
    assert drain(aws["sqs"], aws["queue_url"]) == []
    last_run = store.get_job(job.account, job.group, job.id).last_run
    assert last_run is not None and last_run["status"] == "failed"
    assert store.counters()["RUNS"] == {"failed": 1}


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
def test_a_retryable_runner_error_is_retried_with_growing_delays_up_to_max_attempts(
    store: Store, aws: dict[str, Any], clock: Clock, runner: ScriptedRunner, max_attempts: int
) -> None:
    # Given a job allowed `max_attempts` attempts, and a runner that is always throttled
    job = create_job(store, max_attempts=max_attempts)

    def throttled(details: Mapping[str, str], ctx: Any) -> RunResult:
        raise RetryableError("ec2 StopInstances: Throttling: Rate exceeded", "Throttling")

    runner.behaviour = throttled
    sqs = Recording(aws["sqs"])
    worker = make_worker(store, RunQueue(sqs, QUEUE, aws["queue_url"]), clock)
    message = {"MessageId": "first", "Body": scheduled(job).to_body()}

    # When each message the worker sends back is delivered in turn
    seen = []
    for _ in range(max_attempts + 1):
        response = handle_batch(sqs_event([message]), worker=worker)
        assert response == {"batchItemFailures": []}  # a retry is a new message, not a failure
        run = the_run(store, job)
        seen.append((run.status, run.attempts))
        resent = [
            (kwargs, answer)
            for (name, kwargs), (_, answer) in zip(sqs.calls, sqs.answers, strict=True)
            if name == "send_message"
        ]
        if run.status != "queued":
            break
        kwargs, answer = resent[-1]
        message = {"MessageId": answer["MessageId"], "Body": kwargs["MessageBody"]}
        clock.advance(kwargs["DelaySeconds"])

    # Then it was re-queued max_attempts - 1 times, each with a longer delay and the next
    # attempt number, then failed with the error and code of the last attempt
    delays = [kwargs["DelaySeconds"] for kwargs, _ in resent]
    assert len(delays) == max_attempts - 1
    assert all(0 < a < b for a, b in pairwise(delays))
    assert all(d > 0 for d in delays)
    assert [json.loads(kwargs["MessageBody"])["attempt"] for kwargs, _ in resent] == list(
        range(2, max_attempts + 1)
    )
    assert seen == [("queued", n) for n in range(1, max_attempts)] + [("failed", max_attempts)]
    run = the_run(store, job)
    assert run.error_code == "Throttling" and "Rate exceeded" in (run.error or "")
    assert sum(runner.calls.values()) == max_attempts
    assert store.counters()["RUNS"] == {"failed": 1}


def test_retry_delays_double_up_to_the_sqs_maximum() -> None:
    # Given successive attempts / When their delays are computed / Then they grow, capped at 900
    delays = [retry_delay(n) for n in range(1, 10)]
    assert delays[:4] == [30, 60, 120, 240]
    assert all(a <= b for a, b in pairwise(delays)) and max(delays) == 900


def test_an_assume_role_refusal_fails_the_run_permanently_with_the_reason(
    store: Store, queue: RunQueue, aws: dict[str, Any], clock: Clock, runner: ScriptedRunner
) -> None:
    # Given credentials that cannot be had: the account's role refuses AssumeRole
    job = create_job(store, max_attempts=5)
    reason = (
        "account spinup: sts AssumeRole arn:aws:iam::111122223333:role/minion-runner: "
        "access denied: AccessDenied: not authorized to perform sts:AssumeRole"
    )

    def refuse(entry: Any, run_id: str) -> Any:
        raise PermanentError(reason, "AccessDenied")

    worker = make_worker(store, queue, clock, clients=refuse)
    send(aws, scheduled(job).to_body())

    # When the run is handled
    _, response = deliver(aws, worker)

    # Then it failed at once with the refusal recorded, and the runner never ran
    assert response == {"batchItemFailures": []}
    run = the_run(store, job)
    assert (run.status, run.attempts, run.error, run.error_code) == (
        "failed",
        1,
        reason,
        "AccessDenied",
    )
    assert runner.calls == Counter()
    assert drain(aws["sqs"], aws["queue_url"]) == []


def test_a_refusal_met_when_the_runner_asks_for_a_client_is_recorded_too(
    store: Store, queue: RunQueue, aws: dict[str, Any], clock: Clock, runner: ScriptedRunner
) -> None:
    # Given credentials assumed lazily, refused when the runner asks for its first client
    job = create_job(store)

    def lazily_refused(entry: Any, run_id: str) -> Callable[[str], Any]:
        def client(service: str) -> Any:
            raise PermanentError(
                f"account {entry.name}: sts AssumeRole: access denied: AccessDenied: for {service}",
                "AccessDenied",
            )

        return client

    def uses_ec2(details: Mapping[str, str], ctx: Any) -> RunResult:
        ctx.client("ec2")
        return RunResult(output="unreachable")

    runner.behaviour = uses_ec2
    worker = make_worker(store, queue, clock, clients=lazily_refused)
    send(aws, scheduled(job).to_body())

    # When the run is handled
    deliver(aws, worker)

    # Then it failed permanently with that reason (not a generic "runner error")
    run = the_run(store, job)
    assert (run.status, run.error_code) == ("failed", "AccessDenied")
    assert run.error == "account spinup: sts AssumeRole: access denied: AccessDenied: for ec2"


def test_a_runner_that_crashes_fails_its_run_without_failing_the_batch(
    store: Store, aws: dict[str, Any], worker: Worker, runner: ScriptedRunner
) -> None:
    # Given a runner with a bug
    jobs = [create_job(store), create_job(store)]

    def buggy(details: Mapping[str, str], ctx: Any) -> RunResult:
        if ctx.job_id == jobs[0].id:
            results: dict[str, RunResult] = {}
            return results["missing"]  # a KeyError, as a runner's bug would raise
        return RunResult(output="fine")

    runner.behaviour = buggy
    send(aws, *(scheduled(j).to_body() for j in jobs))

    # When both runs are handled in one batch
    _, response = deliver(aws, worker)

    # Then the crashed one failed permanently, the other succeeded, and no item failed
    assert response == {"batchItemFailures": []}
    assert the_run(store, jobs[0]).status == "failed"
    assert the_run(store, jobs[0]).error == "runner error: KeyError"
    assert the_run(store, jobs[1]).status == "succeeded"


# --- skipped runs --------------------------------------------------------------------------


def tick_and_receive(store: Store, queue: RunQueue, aws: dict[str, Any]) -> list[dict]:
    """Run the 10:18 tick and receive the messages it queued."""
    run_tick(Ticker(store, queue, SHARDS, 2), scheduled_event("2026-01-30T10:18:00"))
    return drain(aws["sqs"], aws["queue_url"])


def disable(store: Store, job: Job) -> None:
    """Disable `job` as a PUT at 10:18:02 would (a new version, no due item)."""
    previous = store.get_job(job.account, job.group, job.id)
    entry = REGISTRY.get("spinup")
    assert entry is not None
    disabled = job_from_request(
        {**job.to_api(), "enabled": False},
        account=job.account,
        group=job.group,
        job_id=job.id,
        entry=entry,
        now=utc("2026-01-30T10:18:02"),
        previous=previous,
    )
    store.replace_job(disabled, previous)


def change(store: Store, job: Job, how: str) -> None:
    """Delete or disable `job` (as the API would)."""
    if how == "deleted":
        store.delete_job(store.get_job(job.account, job.group, job.id))
    else:
        disable(store, job)


def slot_items(aws: dict[str, Any], job: Job) -> list[dict[str, Any]]:
    """The slot items of `job` (any version) in the table."""
    return [
        item
        for item in aws["dynamodb"].scan(TableName=TABLE)["Items"]
        if item["pk"]["S"].count("#") == 2 and item["sk"]["S"].startswith(job.id)
    ]


@pytest.mark.parametrize("how", ["deleted", "disabled"])
def test_a_run_of_a_job_changed_between_tick_and_worker_is_dropped_without_a_trace(
    store: Store,
    queue: RunQueue,
    aws: dict[str, Any],
    worker: Worker,
    runner: ScriptedRunner,
    how: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a run queued by the tick (its successor put in the 10:19 slot), then its job
    # deleted or disabled (a new version)
    job = create_job(store)
    messages = tick_and_receive(store, queue, aws)
    assert json.loads(messages[0]["Body"])["version"] == job.version
    assert len(slot_items(aws, job)) == 1
    change(store, job, how)
    capsys.readouterr()

    # When the worker gets the run
    response = handle_batch(sqs_event(messages), worker=worker)

    # Then it is acknowledged without claiming or recording anything, the runner not called
    assert response == {"batchItemFailures": []}
    assert the_run(store, job) is None
    assert runner.calls == Counter()
    assert "RUNS" not in store.counters()
    assert '"StaleRunsDropped":[1.0]' in capsys.readouterr().out
    # And the old version's chain stopped: its successor is gone, the next tick sends nothing
    assert slot_items(aws, job) == []
    report = run_tick(Ticker(store, queue, SHARDS, 2), scheduled_event("2026-01-30T10:19:00"))
    assert (report.due, report.queued) == (0, 0)


def edit(store: Store, job: Job, at: str, **fields: Any) -> Job:
    """A PUT of `job` at `at` (a new version, still enabled) changing `fields`."""
    previous = store.get_job(job.account, job.group, job.id)
    entry = REGISTRY.get("spinup")
    assert entry is not None
    edited = job_from_request(
        {**job.to_api(), **fields},
        account=job.account,
        group=job.group,
        job_id=job.id,
        entry=entry,
        now=utc(at),
        previous=previous,
    )
    store.replace_job(edited, previous)
    return edited


def test_a_run_due_before_its_job_was_edited_still_runs_and_its_old_chain_stops(
    store: Store, queue: RunQueue, aws: dict[str, Any], worker: Worker, runner: ScriptedRunner
) -> None:
    # Given the 10:18 run queued by the tick, then its job edited at 10:18:02 (a new version,
    # still enabled): the occurrence was due while the old version was current
    job = create_job(store)
    messages = tick_and_receive(store, queue, aws)
    edited = edit(store, job, "2026-01-30T10:18:02", description="edited")
    assert edited.version == job.version + 1

    # When the worker gets the run
    response = handle_batch(sqs_event(messages), worker=worker)

    # Then it runs, once, as it did before runs named their version
    assert response == {"batchItemFailures": []}
    assert the_run(store, job).status == "succeeded"
    assert runner.calls == Counter({(job.id, "20260130T101800Z-s"): 1})
    # And the old version's successor is gone: from now on only the new version's item is due
    assert slot_items(aws, job) == []
    report = run_tick(Ticker(store, queue, SHARDS, 2), scheduled_event("2026-01-30T10:19:00"))
    assert report.queued == 1
    [body] = [json.loads(m["Body"]) for m in drain(aws["sqs"], aws["queue_url"])]
    assert (body["run_id"], body["version"]) == ("20260130T101900Z-s", edited.version)


def test_a_run_due_after_its_job_was_edited_is_dropped(
    store: Store, queue: RunQueue, aws: dict[str, Any], worker: Worker, runner: ScriptedRunner
) -> None:
    # Given the 10:18 run of a job's old version, sent by a tick that read its due item after
    # the job was edited at 10:17:50 (before the occurrence)
    job = create_job(store)
    edit(store, job, "2026-01-30T10:17:50", schedule_expression="0 * * * *")
    messages = tick_and_receive(store, queue, aws)
    assert [json.loads(m["Body"])["version"] for m in messages] == [job.version]

    # When the worker gets it, then it is dropped without a trace
    response = handle_batch(sqs_event(messages), worker=worker)
    assert response == {"batchItemFailures": []}
    assert the_run(store, job) is None and runner.calls == Counter()


@pytest.mark.parametrize("how", ["deleted", "disabled"])
def test_a_run_without_a_version_of_a_changed_job_is_skipped_as_before(
    store: Store,
    queue: RunQueue,
    aws: dict[str, Any],
    worker: Worker,
    runner: ScriptedRunner,
    how: str,
) -> None:
    # Given a run message of an earlier release (no version), then its job deleted or
    # disabled
    job = create_job(store)
    messages = tick_and_receive(store, queue, aws)
    body = json.loads(messages[0]["Body"])
    del body["version"], body["next_due"]
    messages[0]["Body"] = json.dumps(body)
    change(store, job, how)

    # When the worker gets the run
    response = handle_batch(sqs_event(messages), worker=worker)

    # Then it is recorded skipped, saying why, the runner not called, the message acknowledged
    assert response == {"batchItemFailures": []}
    run = the_run(store, job)
    assert (run.status, run.error) == ("skipped", f"job {how} before it ran")
    assert runner.calls == Counter()
    assert store.counters()["RUNS"] == {"skipped": 1}
    if how == "disabled":  # last_run shows the skip
        last_run = store.get_job(job.account, job.group, job.id).last_run
        assert last_run is not None and last_run["status"] == "skipped"


def test_a_run_of_the_current_version_reads_its_job_once_before_the_claim(
    store: Store, queue: RunQueue, aws: dict[str, Any], runner: ScriptedRunner
) -> None:
    # Given a run message naming the job's current version
    job = create_job(store)
    send(aws, scheduled(job).to_body())
    worker = make_worker(store, queue, Clock(STARTED))

    # When the worker handles it
    _, response = deliver(aws, worker)

    # Then it ran, having read the job once, before its claim, and not the run at all
    assert response == {"batchItemFailures": []}
    calls = [(name, call) for name, call in worker.store.client.calls]
    names = [name for name, _ in calls]
    assert [c["Key"]["sk"]["S"] for n, c in calls if n == "get_item"] == ["SPEC"]  # the job
    claim = next(i for i, (n, c) in enumerate(calls) if n == "update_item")
    assert names.index("get_item") < claim
    assert the_run(store, job).status == "succeeded"
    assert runner.calls == Counter({(job.id, scheduled(job).run_id): 1})


def test_a_claimed_run_of_a_job_changed_since_ends_skipped_not_dropped(
    store: Store, queue: RunQueue, aws: dict[str, Any], clock: Clock, runner: ScriptedRunner
) -> None:
    # Given a run claimed by a worker that died (its message comes back after the lease),
    # then its job disabled
    job = create_job(store)
    messages = tick_and_receive(store, queue, aws)
    claimed = store.claim_run(the_run_to_claim(job), 1, 60, clock.now)
    assert not isinstance(claimed, Refused)
    disable(store, job)
    clock.advance(300)

    # When the message comes back
    response = handle_batch(sqs_event(messages), worker=make_worker(store, queue, clock))

    # Then the run is taken over and recorded skipped: a claimed run always ends
    assert response == {"batchItemFailures": []}
    run = the_run(store, job)
    assert (run.status, run.error) == ("skipped", "job disabled before it ran")
    assert runner.calls == Counter()


@pytest.mark.parametrize(
    "registry, reason",
    [
        (
            {"accounts": {"spinup": {"runners": ["instanceRunner"]}}},
            "runner dummyRunner is not allowed for account spinup",
        ),
        (
            {"accounts": {"other": {"runners": ["dummyRunner"]}}},
            "account spinup is not in the account registry",
        ),
    ],
    ids=["runner taken off the account's list", "account taken out of the registry"],
)
def test_a_runner_no_longer_allowed_is_skipped_without_running(
    store: Store,
    queue: RunQueue,
    aws: dict[str, Any],
    clock: Clock,
    runner: ScriptedRunner,
    registry: dict[str, Any],
    reason: str,
) -> None:
    # Given a queued run, and the registry changed since the job was created
    job = create_job(store)
    messages = tick_and_receive(store, queue, aws)
    worker = make_worker(store, queue, clock, registry=Registry.from_document(registry))

    # When the worker gets the run
    response = handle_batch(sqs_event(messages), worker=worker)

    # Then it is skipped, saying the runner is not allowed, and the runner is not called
    assert response == {"batchItemFailures": []}
    run = the_run(store, job)
    assert run.status == "skipped"
    assert run.error == reason
    assert runner.calls == Counter()


@pytest.mark.parametrize(
    "policy, previous_age, expected",
    [
        ("Forbid", 60, "skipped"),
        ("Forbid", LEASE + 60, "succeeded"),  # the previous run's lease is over: its worker died
        ("Allow", 60, "succeeded"),
        (None, 60, "succeeded"),
    ],
)
def test_concurrency_policy_forbid_skips_a_run_while_the_previous_one_runs(
    store: Store,
    queue: RunQueue,
    runner: ScriptedRunner,
    policy: str | None,
    previous_age: int,
    expected: str,
) -> None:
    # Given the 10:18 run of a job running in a worker; `previous_age` seconds after its
    # claim, while its runner still runs, the 10:19 run arrives at another worker
    job = create_job(store, **({"concurrency_policy": policy} if policy else {}))
    later: dict[str, str] = {}

    def meanwhile(details: Mapping[str, str], ctx: Any) -> RunResult:
        if ctx.run_id == "20260130T101800Z-s":
            other = make_worker(store, queue, Clock(STARTED + timedelta(seconds=previous_age)))
            later["status"] = other.handle(scheduled(job, "2026-01-30T10:19"))
        return RunResult(output="done")

    runner.behaviour = meanwhile

    # When the first run is handled (and the second meanwhile)
    first = make_worker(store, queue, Clock()).handle(scheduled(job))

    # Then Forbid skips the second while the first is live; otherwise it runs
    assert first == "succeeded"
    assert later["status"] == expected
    assert the_run(store, job, "2026-01-30T10:19").status == expected
    assert sum(runner.calls.values()) == (1 if expected == "skipped" else 2)
    if expected == "skipped":
        assert "concurrency_policy Forbid" in (the_run(store, job, "2026-01-30T10:19").error or "")


def test_forbid_sees_a_long_run_behind_any_number_of_newer_runs(
    store: Store, queue: RunQueue, runner: ScriptedRunner
) -> None:
    # Given a Forbid job whose 10:18 run is held by a worker (a long runner timeout), and 30
    # newer run records of the job (missed occurrences) since
    job = create_job(store, concurrency_policy="Forbid")
    long_worker = make_worker(store, queue, Clock())
    long_worker.runner_timeout = 3600
    for minute in range(19, 49):
        assert store.put_run(
            Run(
                run_id=scheduled_run_id(utc(f"2026-01-30T10:{minute}")),
                job_id=job.id,
                account=job.account,
                group=job.group,
                trigger="schedule",
                scheduled_for=f"2026-01-30T10:{minute}:00Z",
                status="missed",
            )
        )
    later: list[str] = []

    def long_run(details: Mapping[str, str], ctx: Any) -> RunResult:
        if ctx.run_id == "20260130T101800Z-s":
            # When the 10:49 run arrives 31 minutes into it
            late = make_worker(store, queue, Clock(STARTED + timedelta(minutes=31)))
            later.append(late.handle(scheduled(job, "2026-01-30T10:49")))
        return RunResult(output="done")

    runner.behaviour = long_run
    assert long_worker.handle(scheduled(job)) == "succeeded"

    # Then it was skipped: the hold is on the job, not found among the newest runs
    assert later == ["skipped"]
    # And once the long run is recorded, the next one runs
    assert (
        make_worker(store, queue, Clock(STARTED + timedelta(minutes=32))).handle(
            scheduled(job, "2026-01-30T10:50")
        )
        == "succeeded"
    )


def test_a_forbid_run_that_is_retried_lets_go_of_the_job_until_it_runs_again(
    store: Store, aws: dict[str, Any], queue: RunQueue, clock: Clock, runner: ScriptedRunner
) -> None:
    # Given a Forbid job whose 10:18 run fails retryably (its retry is queued)
    job = create_job(store, concurrency_policy="Forbid", max_attempts=3)

    def throttled(details: Mapping[str, str], ctx: Any) -> RunResult:
        raise RetryableError("throttled", "Throttling")

    runner.behaviour = throttled
    assert make_worker(store, queue, clock).handle(scheduled(job)) == "queued"
    # When the 10:19 run arrives in between
    runner.behaviour = None
    # Then it runs: a queued retry holds nothing (as before: only running runs block)
    assert (
        make_worker(store, queue, clock).handle(scheduled(job, "2026-01-30T10:19")) == "succeeded"
    )
    drain(aws["sqs"], aws["queue_url"])


# --- run-now --------------------------------------------------------------------------------


def test_a_run_now_goes_through_the_same_worker_and_updates_last_run_and_counters(
    store: Store, queue: RunQueue, aws: dict[str, Any], worker: Worker, runner: ScriptedRunner
) -> None:
    # Given a disabled job (run-now ignores enabled), run now through the API's operation
    job = create_job(store, enabled=False)
    api = MinionApi(store, queue, lambda: REGISTRY, clock=lambda: STARTED)
    queued = api.run_now(job.account, job.group, job.id)
    before = store.get_run(job.id, queued.run_id)
    assert before is not None and before.status == "queued"

    # When the worker handles its message
    messages, response = deliver(aws, worker)

    # Then the queued record was claimed and finished: succeeded, at the first attempt
    assert response == {"batchItemFailures": []}
    assert [json.loads(m["Body"])["run_id"] for m in messages] == [queued.run_id]
    assert runner.calls == Counter({(job.id, queued.run_id): 1})
    run = store.get_run(job.id, queued.run_id)
    assert run is not None
    assert (run.status, run.trigger, run.attempts, run.queued_at) == (
        "succeeded",
        "manual",
        1,
        iso(STARTED),
    )
    assert run.output == "Hello, spinup!" and run.started_at and run.finished_at
    # And the job's last_run shows it, and the counters behind /metrics count it
    last_run = store.get_job(job.account, job.group, job.id).last_run
    assert last_run is not None
    assert (last_run["run_id"], last_run["status"]) == (queued.run_id, "succeeded")
    assert store.counters()["RUNS"] == {"succeeded": 1}
    assert 'minion_runs_total{status="succeeded"} 1' in api.metrics_text().splitlines()


def test_a_run_now_delivered_twice_runs_once(
    store: Store, queue: RunQueue, aws: dict[str, Any], worker: Worker, runner: ScriptedRunner
) -> None:
    # Given a run-now whose message SQS delivers twice
    job = create_job(store)
    api = MinionApi(store, queue, lambda: REGISTRY, clock=lambda: STARTED)
    queued = api.run_now(job.account, job.group, job.id)
    [message] = drain(aws["sqs"], aws["queue_url"])
    # When both deliveries are handled
    first = handle_batch(sqs_event([message]), worker=worker)
    second = handle_batch(sqs_event([{**message, "MessageId": "redelivered"}]), worker=worker)
    # Then it ran once and both were acknowledged
    assert first == second == {"batchItemFailures": []}
    assert runner.calls == Counter({(job.id, queued.run_id): 1})


# --- the Lambda entry point -------------------------------------------------------------------


def test_the_worker_handler_returns_a_partial_batch_response(
    client: Any, store: Store, aws: dict[str, Any], runner: ScriptedRunner
) -> None:
    # Given a good run message and a poison one, as the SQS event source delivers them
    job = create_job(store)
    send(aws, scheduled(job).to_body(), "{")
    messages = drain(aws["sqs"], aws["queue_url"])
    [poison] = [m["MessageId"] for m in messages if m["Body"] == "{"]

    # When the real `worker` Lambda handler is invoked with that event
    answer = client.lambda_.invoke("worker", sqs_event(messages)).payload

    # Then it answers exactly the partial batch response shape, naming only the poison
    assert answer == {"batchItemFailures": [{"itemIdentifier": poison}]}
    assert the_run(store, job).status == "succeeded"
    # And a batch that all succeeds answers an empty list
    send(aws, scheduled(job, "2026-01-30T10:19").to_body())
    ok = client.lambda_.invoke("worker", sqs_event(drain(aws["sqs"], aws["queue_url"]))).payload
    assert ok == {"batchItemFailures": []}


def test_each_finished_run_emits_a_runs_metric_by_outcome(
    store: Store,
    aws: dict[str, Any],
    worker: Worker,
    runner: ScriptedRunner,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a run / When it succeeds
    job = create_job(store)
    send(aws, scheduled(job).to_body())
    deliver(aws, worker)
    # Then an EMF document with Runs = 1 and the dimension Outcome = succeeded is written
    documents = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"_aws"')
    ]
    assert any(
        d.get("Runs") in (1, 1.0, [1.0]) and d.get("Outcome") == "succeeded" for d in documents
    )


def test_records_left_when_the_invocation_runs_out_of_time_are_handed_back_at_once(
    store: Store,
    aws: dict[str, Any],
    worker: Worker,
    runner: ScriptedRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given three runs received in one batch (not deleted: the event source holds them)
    jobs = [create_job(store) for _ in range(3)]
    send(aws, *(scheduled(job).to_body() for job in jobs))
    received: list[dict[str, Any]] = []
    while len(received) < 3:
        received += (
            aws["sqs"]
            .receive_message(
                QueueUrl=aws["queue_url"], MaxNumberOfMessages=10, AttributeNames=["All"]
            )
            .get("Messages", [])
        )
    # When the invocation has time for only the first of them (the first run takes all but
    # two seconds of a 10 s invocation)
    from types import SimpleNamespace

    import chalicelib.worker as worker_module

    now = [1000.0]
    monkeypatch.setattr(worker_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    worker.invocation_timeout = 10
    worker.concurrency = 1  # one record at a time: a batch larger than the worker's threads

    def slow_run(details: Mapping[str, str], ctx: Any) -> RunResult:
        now[0] += 8
        return DummyRunner().run(details, ctx)

    runner.behaviour = slow_run
    answer = handle_batch(sqs_event(received), None, worker=worker)
    # Then the first ran, the other two are reported failed and not run...
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    assert failed == {m["MessageId"] for m in received[1:]}
    assert sum(runner.calls.values()) == 1
    # ...and are visible again at once, not after the visibility timeout
    again = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10)
    assert {m["MessageId"] for m in again.get("Messages", [])} == failed


# --- a batch's runs at once -------------------------------------------------------------------


class Overlap:
    """Counts runners running at the same moment (not time: a test never races a clock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: Any) -> None:
        with self.lock:
            self.now -= 1


def mixed_batch(
    store: Store,
    aws: dict[str, Any],
    runner: ScriptedRunner,
    concurrency: int,
    runner_timeout: int,
    invocation_timeout: int,
) -> tuple[dict[str, set[tuple[str, str | None, str]]], set[str], int]:
    """A batch of every kind of record, handled with `concurrency` threads: the outcomes
    (status, error code, error) of each role's records, the roles reported failed, and the
    most runners that ran at once."""
    roles = ["ok"] * 5 + ["permanent", "retryable", "stuck", "throttled-claim"]
    jobs = {f"{role}-{i}": create_job(store, max_attempts=3) for i, role in enumerate(roles)}
    by_job = {job.id: name for name, job in jobs.items()}
    overlap = Overlap()
    stuck = threading.Event()
    # with threads, each runner waits until all eight that reach their runner have started
    # (so that they surely overlap), within their limit (3 s or more) even on a busy machine
    started = threading.Barrier(len(roles) - 1, timeout=2.5)

    def behaviour(details: Mapping[str, str], ctx: Any) -> RunResult:
        name = by_job[ctx.job_id]
        with overlap:
            if concurrency > 1:
                started.wait()
            if name.startswith("stuck"):
                stuck.wait(10)  # past its time limit: the worker stops waiting
                return RunResult(output="too late")
            if name.startswith("permanent"):
                raise PermanentError("no such instance", "InvalidInstanceID.NotFound")
            if name.startswith("retryable"):
                raise RetryableError("Rate exceeded", "Throttling")
            return RunResult(output=f"ran {name}")

    runner.behaviour = behaviour
    throttled = next(job for name, job in jobs.items() if name.startswith("throttled"))
    dynamodb = ThrottledClaims(aws["dynamodb"], throttled.id)
    worker = make_worker(
        Store(dynamodb, TABLE, SHARDS),
        RunQueue(aws["sqs"], QUEUE, aws["queue_url"]),
        Clock(),
        concurrency=concurrency,
    )
    worker.runner_timeout = runner_timeout
    worker.invocation_timeout = invocation_timeout
    send(aws, *(scheduled(job).to_body() for job in jobs.values()), "poison")
    messages = drain(aws["sqs"], aws["queue_url"])
    try:
        response = handle_batch(sqs_event(messages), worker=worker)
    finally:
        stuck.set()
    drain(aws["sqs"], aws["queue_url"])  # the retries sent back
    outcomes: dict[str, set[tuple[str, str | None, str]]] = {}
    for name, job in jobs.items():
        run = the_run(store, job)
        outcomes.setdefault(name.split("-")[0], set()).add(
            (run.status, run.error_code, run.error or "") if run else ("none", None, "")
        )
    names = {
        m["MessageId"]: by_job.get(json.loads(m["Body"])["job_id"], "")
        if m["Body"] != "poison"
        else "poison"
        for m in messages
    }
    failed = {names[f["itemIdentifier"]].split("-")[0] for f in response["batchItemFailures"]}
    return outcomes, failed, overlap.most


def test_a_batch_runs_its_runs_at_once_with_the_outcomes_limits_and_failures_of_one_by_one(
    store: Store, aws: dict[str, Any], runner: ScriptedRunner
) -> None:
    # Given identical batches of every kind of record: runs that succeed, fail permanently,
    # fail retryably, outlive their time limit (3 s), a claim DynamoDB throttles, a poison
    # message
    # When one is handled one record at a time, another with ten threads, and a third with
    # ten threads in an invocation that has only 6 s left (the limit is then its time left,
    # 6 s - TIME_TO_RECORD, not the runner timeout of 60 s)
    one_by_one = mixed_batch(store, aws, runner, 1, runner_timeout=3, invocation_timeout=120)
    at_once = mixed_batch(store, aws, runner, CONCURRENCY, runner_timeout=3, invocation_timeout=120)
    short = mixed_batch(store, aws, runner, CONCURRENCY, runner_timeout=60, invocation_timeout=6)

    # Then each record ends the same way every time...
    expected = {
        "ok": {("succeeded", None, "")},
        "permanent": {("failed", "InvalidInstanceID.NotFound", "no such instance")},
        "retryable": {("queued", "Throttling", "Rate exceeded")},
        "stuck": {("queued", "Timeout", "runner timed out after 3 s")},
        "throttled": {("none", None, "")},
    }
    assert one_by_one[0] == at_once[0] == expected
    assert short[0] == {**expected, "stuck": {("queued", "Timeout", "runner timed out after 4 s")}}
    # ...the same records come back (the poison and the throttled claim)...
    assert one_by_one[1] == at_once[1] == short[1] == {"poison", "throttled"}
    # ...and with threads, the runs really ran at once (all eight that reach their runner)
    assert one_by_one[2] == 1
    assert at_once[2] == short[2] == 8


def test_every_record_reported_failed_is_logged_at_error_with_its_job_and_run_ids(
    aws: dict[str, Any],
    queue: RunQueue,
    clock: Clock,
    runner: ScriptedRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a run whose claim DynamoDB throttles, and a poison message, in one batch
    plain = Store(aws["dynamodb"], TABLE, SHARDS)
    job = create_job(plain)
    worker = make_worker(
        Store(ThrottledClaims(aws["dynamodb"], job.id), TABLE, SHARDS), queue, clock
    )
    send(aws, scheduled(job).to_body(), "not json")

    # When the batch is handled
    messages, response = deliver(aws, worker)

    # Then each failed item has an ERROR line naming its message, and the run's ids when the
    # body names them (Powertools itself logs these at DEBUG only)
    errors = [r.__dict__ for r in caplog.records if r.levelname == "ERROR"]
    by_message = {e["message_id"]: e for e in errors}
    assert (
        set(by_message)
        == {f["itemIdentifier"] for f in response["batchItemFailures"]}
        == {m["MessageId"] for m in messages}
    )
    [run_message] = [m["MessageId"] for m in messages if m["Body"] != "not json"]
    logged = by_message[run_message]
    assert (logged["job_id"], logged["run_id"], logged["error_type"]) == (
        job.id,
        "20260130T101800Z-s",
        "ServiceUnavailable",
    )
    assert "job_id" not in by_message[next(iter(set(by_message) - {run_message}))]


def test_a_forbid_hold_that_outlived_its_run_does_not_block_the_next_one(
    store: Store, queue: RunQueue, runner: ScriptedRunner
) -> None:
    # Given a Forbid job whose 10:18 run was recorded, but whose hold was never let go (the
    # release throttled, or the worker died right after recording)
    job = create_job(store, concurrency_policy="Forbid")
    first = store.claim_run(the_run_to_claim(job), 1, LEASE, STARTED)
    assert isinstance(first, Run)
    assert store.hold_forbid(job, first.run_id, int(STARTED.timestamp()) + LEASE, STARTED)
    assert store.finish_run(first.with_status("succeeded"), 1)
    # When the 10:19 run arrives within the old hold's lease
    later = make_worker(store, queue, Clock(STARTED + timedelta(seconds=60)))
    # Then it runs: only a run still running blocks, and it now holds the job
    assert later.handle(scheduled(job, "2026-01-30T10:19")) == "succeeded"
    assert store.forbid_holder(job) is None  # and let go of it when recorded


# --- found by the fault campaign -------------------------------------------------------------


def test_a_failed_release_of_postponed_messages_keeps_the_partial_batch_response(
    aws: dict[str, Any], store: Store, queue: RunQueue
) -> None:
    # Given a run message, and a worker invocation with too little time left to start it
    # (the fault campaign found SQS throttling the hand-back making the whole invocation
    # fail, so that SQS would send the whole batch back, its recorded runs included)
    job = create_job(store)
    send(aws, scheduled(job).to_body())
    [message] = drain(aws["sqs"], aws["queue_url"])
    worker = Worker(
        store=store,
        queue=queue,
        registry=lambda: REGISTRY,
        clients=lambda entry, run_id: lambda s: None,
        invocation_timeout=TIME_TO_RECORD,
    )
    with Stubber(aws["sqs"]) as stubber:
        stubber.add_client_error(
            "change_message_visibility_batch", "RequestThrottled", "Rate exceeded", 400
        )
        # When the worker postpones it and SQS refuses to make it visible again
        response = handle_batch(sqs_event([message]), worker=worker)
        stubber.assert_no_pending_responses()
    # Then the invocation still answers, the message among its failed items (it comes back
    # after the visibility timeout), and nothing was claimed
    assert response == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert the_run(store, job) is None
