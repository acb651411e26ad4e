"""End to end: what `make run` keeps across kill -9 and restarts, and how much memory it needs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from local_stack_support import DUMMY_JOB, ROOT, Stack, headers

pytestmark = pytest.mark.e2e
DISABLED = {**DUMMY_JOB, "enabled": False}


def _wait_for_run(stack: Stack, job_id: str, run_id: str, seconds: float = 30) -> dict[str, Any]:
    h = headers(stack.token())
    deadline = time.monotonic() + seconds
    while True:
        record: dict[str, Any] = httpx.get(
            f"{stack.base}/spinup/jobs/space-xy/{job_id}/runs/{run_id}", headers=h
        ).json()
        if record.get("status") not in ("queued", "running") or time.monotonic() > deadline:
            return record
        time.sleep(0.2)


def test_writes_answered_2xx_survive_kill_9_right_after_the_answer(tmp_path: Path) -> None:
    # Given a stack that answered a create, a replace and a delete
    state = tmp_path / "state"
    first = Stack(state).start()
    h = headers(first.token())
    kept = httpx.post(first.base + "/spinup/jobs/space-xy", headers=h, json=DISABLED).json()
    gone = httpx.post(first.base + "/spinup/jobs/space-xy", headers=h, json=DISABLED).json()
    replaced = httpx.put(
        f"{first.base}/spinup/jobs/space-xy/{kept['id']}",
        headers=h,
        json={**DISABLED, "name": "renamed"},
    )
    deleted = httpx.delete(f"{first.base}/spinup/jobs/space-xy/{gone['id']}", headers=h)
    last = httpx.post(first.base + "/spinup/jobs/space-xy", headers=h, json=DISABLED)
    # When it is killed with SIGKILL at once, dying while it wrote one more journal line
    first.kill()
    with (state / "journal.jsonl").open("a") as journal:
        journal.write('{"item":{"table":"minion","key":{"pk":')
    second = Stack(state).start()
    try:
        kept_after = httpx.get(f"{second.base}/spinup/jobs/space-xy/{kept['id']}", headers=h)
        gone_after = httpx.get(f"{second.base}/spinup/jobs/space-xy/{gone['id']}", headers=h)
        last_after = httpx.get(f"{second.base}/spinup/jobs/space-xy/{last.json()['id']}", headers=h)
        listed = httpx.get(second.base + "/spinup/jobs/space-xy", headers=h).json()
    finally:
        second.stop()
    # Then every answered write is there, and the torn line was only reported
    assert replaced.status_code == 202 and deleted.status_code == 202
    assert last.status_code == 200
    assert kept_after.status_code == 200 and kept_after.json()["name"] == "renamed"
    assert kept_after.json()["version"] == 2
    assert gone_after.status_code == 404
    assert last_after.status_code == 200
    assert sorted(listed) == sorted([kept["id"], last.json()["id"]])
    assert "ignoring a torn record" in second.output
    # two jobs, each with its copy beside its runs, and the account's counter item
    assert "restored 5 items" in second.output


def test_a_journal_replayed_over_the_snapshot_it_was_compacted_into_changes_nothing(
    tmp_path: Path,
) -> None:
    # Given the journal of a stack killed after a create, a replace, a create and a delete
    state = tmp_path / "state"
    first = Stack(state).start()
    h = headers(first.token())
    kept = httpx.post(first.base + "/spinup/jobs/space-xy", headers=h, json=DISABLED).json()
    httpx.put(
        f"{first.base}/spinup/jobs/space-xy/{kept['id']}",
        headers=h,
        json={**DISABLED, "name": "renamed"},
    )
    gone = httpx.post(first.base + "/spinup/jobs/space-xy", headers=h, json=DISABLED).json()
    httpx.delete(f"{first.base}/spinup/jobs/space-xy/{gone['id']}", headers=h)
    first.kill()
    journal = (state / "journal.jsonl").read_text()
    # When a restart compacts it into the snapshot, and the same journal is found again (as
    # when a stack dies between writing the snapshot and emptying the journal)
    Stack(state).start().stop()
    (state / "journal.jsonl").write_text(journal)
    third = Stack(state).start()
    try:
        listed = httpx.get(third.base + "/spinup/jobs/space-xy", headers=h).json()
        fetched = httpx.get(f"{third.base}/spinup/jobs/space-xy/{kept['id']}", headers=h).json()
    finally:
        third.stop()
    # Then the state is the one the first stack answered for, no older
    assert journal.count("\n") >= 4
    assert listed == [kept["id"]]
    assert fetched["name"] == "renamed" and fetched["version"] == 2


def test_the_table_snapshot_of_earlier_stacks_is_restored_once_then_kept_as_state(
    tmp_path: Path,
) -> None:
    # Given a state directory as stacks before the journal left it: the table in table.json
    state = tmp_path / "state"
    state.mkdir()
    item = {"pk": {"S": "TEST"}, "sk": {"S": "OLD"}, "n": {"N": "7"}}
    (state / "table.json").write_text(json.dumps([item]))
    # When a stack starts there
    stack = Stack(state).start()
    try:
        found = stack.aws("dynamodb").get_item(
            TableName="minion", Key={"pk": item["pk"], "sk": item["sk"]}
        )
    finally:
        stack.stop()
    # Then its items are back, and kept from then on in the new files only
    assert found["Item"] == item
    assert not (state / "table.json").exists()
    assert item in json.loads((state / "state.json").read_text())["tables"]["minion"]


def test_a_queued_run_survives_kill_9_and_completes_after_the_restart(tmp_path: Path) -> None:
    # Given a run queued while no worker consumed the queue
    state = tmp_path / "state"
    first = Stack(state, {"MINION_WORKER": "off"}).start()
    h = headers(first.token())
    job = httpx.post(first.base + "/spinup/jobs/space-xy", headers=h, json=DISABLED).json()
    run = httpx.patch(f"{first.base}/spinup/jobs/space-xy/{job['id']}", headers=h)
    time.sleep(1.5)  # a worker, had there been one, would have taken it by now
    still_queued = _wait_for_run(first, job["id"], run.json()["run_id"], seconds=0)
    # When the stack dies and a stack with its worker starts on the same state
    first.kill()
    second = Stack(state).start()
    try:
        record = _wait_for_run(second, job["id"], run.json()["run_id"])
    finally:
        second.stop()
    # Then the run's message was kept, and the run completed
    assert run.status_code == 202 and still_queued["status"] == "queued"
    assert "1 queued messages" in second.output
    assert record["status"] == "succeeded", record
    assert record["output"] == "Hello, spinup!"


def test_a_message_in_flight_at_kill_9_stays_invisible_until_its_timeout(tmp_path: Path) -> None:
    # Given a message received (in flight for 120 s) from the dead-letter queue, and another
    # waiting there (no worker reads the DLQ)
    state = tmp_path / "state"
    first = Stack(state).start()
    sqs = first.aws("sqs")
    url = sqs.get_queue_url(QueueName="minion-runs-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody='{"in": "flight"}')
    taken = sqs.receive_message(QueueUrl=url, VisibilityTimeout=120)["Messages"][0]
    waiting = sqs.send_message(QueueUrl=url, MessageBody='{"still": "waiting"}')
    # When the stack is killed and restarted
    first.kill()
    second = Stack(state).start()
    try:
        sqs = second.aws("sqs")
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        received = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
    finally:
        second.stop()
    # Then both are still there: the waiting one as it was, the other still in flight
    assert counts["ApproximateNumberOfMessages"] == "1"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert [(m["MessageId"], m["Body"]) for m in received] == [
        (waiting["MessageId"], '{"still": "waiting"}')
    ]
    assert taken["Body"] == '{"in": "flight"}'


def test_a_second_stack_on_a_state_directory_in_use_refuses_to_start(tmp_path: Path) -> None:
    # Given a running stack
    state = tmp_path / "state"
    first = Stack(state).start()
    try:
        # When a second one is started on its state directory (with ports of its own)
        second = Stack(state)
        refused = subprocess.run(
            [sys.executable, "-m", "local.stack"],
            cwd=ROOT,
            check=False,
            env=second.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        first_still_answers = httpx.get(first.base + "/ping").text
    finally:
        first.kill()  # the kernel drops the lock of a killed process
    third = Stack(state).start()
    third.stop()
    # Then it refused with a message naming the directory and the holder, and the first
    # stack went on; once the first was gone, a stack could start there again
    assert refused.returncode != 0
    assert first.process is not None
    assert (
        f"the state directory {state} is in use by another minion stack "
        f"(pid {first.process.pid})" in refused.stderr
    )
    assert "MINION_STATE_DIR" in refused.stderr
    assert first_still_answers == "pong"


def test_a_refused_transaction_changes_nothing_and_stays_refused_after_kill_9(
    tmp_path: Path,
) -> None:
    # Given a stack's table with an item and a counter (the emulator's transactions are
    # patched to roll back item by item, local/emulator.py)
    state = tmp_path / "state"
    first = Stack(state).start()
    dynamodb = first.aws("dynamodb")
    counter = {"pk": {"S": "TEST"}, "sk": {"S": "COUNTER"}}
    dynamodb.put_item(TableName="minion", Item={**counter, "n": {"N": "1"}})
    # When a transaction updates the counter in place, puts a new item, then fails a condition
    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "minion",
                        "Key": counter,
                        "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
                {"Put": {"TableName": "minion", "Item": {"pk": {"S": "TEST"}, "sk": {"S": "NEW"}}}},
                {
                    "ConditionCheck": {
                        "TableName": "minion",
                        "Key": {"pk": {"S": "TEST"}, "sk": {"S": "ABSENT"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    before = dynamodb.query(
        TableName="minion",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "TEST"}},
    )["Items"]
    first.kill()
    second = Stack(state).start()
    try:
        after = second.aws("dynamodb").query(
            TableName="minion",
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "TEST"}},
        )["Items"]
    finally:
        second.stop()
    # Then nothing of it was written, before the restart or after
    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert before == after == [{**counter, "n": {"N": "1"}}]


def test_items_past_their_ttl_are_expired_as_dynamodb_does_and_stay_gone(tmp_path: Path) -> None:
    # Given items of the stack's table past their expiry (runs carry `expires_at`), and one not
    state = tmp_path / "state"
    first = Stack(state).start()
    dynamodb = first.aws("dynamodb")
    now = int(time.time())
    for name, expires in (("OLD", now - 60), ("OLDER", now - 86400), ("NEW", now + 3600)):
        dynamodb.put_item(
            TableName="minion",
            Item={"pk": {"S": "TEST"}, "sk": {"S": name}, "expires_at": {"N": str(expires)}},
        )

    def names(client: Any) -> list[str]:
        return sorted(
            i["sk"]["S"]
            for i in client.query(
                TableName="minion",
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": "TEST"}},
            )["Items"]
        )

    # When the stack's maintenance has run (every 10 s), and the stack is killed and restarted
    deadline = time.monotonic() + 30
    while names(dynamodb) != ["NEW"] and time.monotonic() < deadline:
        time.sleep(1)
    expired = names(dynamodb)
    ttl = dynamodb.describe_time_to_live(TableName="minion")["TimeToLiveDescription"]
    first.kill()
    second = Stack(state).start()
    try:
        after = names(second.aws("dynamodb"))
    finally:
        second.stop()
    # Then the expired items are gone, for good, and the other stays
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert expired == after == ["NEW"]


@pytest.mark.slow
def test_the_stack_holds_thousands_of_jobs_in_bounded_memory(tmp_path: Path) -> None:
    # Given a running stack, warmed up with 500 jobs
    stack = Stack(tmp_path / "state").start()
    h = headers(stack.token())

    def create(count: int) -> list[int]:
        with httpx.Client(headers=h, timeout=30) as client:
            return [
                client.post(
                    f"{stack.base}/spinup/jobs/group-{n % 20}",
                    json={**DISABLED, "group": f"group-{n % 20}"},
                ).status_code
                for n in range(count)
            ]

    try:
        warm = create(500)
        warmed = stack.rss_mb()
        # When 3,000 more jobs are created, by four clients at once
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            codes = [c for chunk in pool.map(create, [750] * 4) for c in chunk]
        seconds = time.monotonic() - started
        grown = stack.rss_mb() - warmed
        listed = sum(
            len(httpx.get(f"{stack.base}/spinup/jobs/group-{g}", headers=h).json())
            for g in range(20)
        )
    finally:
        stack.stop()
    # Then each job costs a few kilobytes (it cost megabytes: moto kept a copy of the table
    # per transaction), so 10,000 jobs fit in well under 200 MB more than an empty stack
    per_job_kb = grown * 1024 / 3000
    print(f"3,000 creates in {seconds:.0f} s; RSS +{grown:.0f} MB ({per_job_kb:.1f} KB/job)")
    assert set(warm) == set(codes) == {200} and listed == 3500
    assert per_job_kb * 10_000 / 1024 < 200, f"+{grown:.0f} MB for 3,000 jobs"
