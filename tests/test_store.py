"""The DynamoDB store against moto: optimistic locking, conflicts, group deletes, counters, due
items, what a job shows of its runs, and the write units each call costs."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

from chalicelib import deps
from chalicelib.errors import Conflict, NotFound, PreconditionFailed, ServiceUnavailable
from chalicelib.jobs import Job, new_job_id
from chalicelib.runs import Run, scheduled_run_id
from chalicelib.store import (
    DUE_INDEX,
    DueEntry,
    Store,
    copy_key,
    copy_of,
    due_key,
    job_key,
    job_to_item,
    shard_of,
)
from conftest import TABLE
from store_support import Recording, table_items

NOW = datetime(2026, 1, 30, 10, 17, tzinfo=UTC)


@pytest.fixture
def store(aws: dict[str, Any]) -> Store:
    """The service's store over the moto table."""
    return deps.store()


def make_job(
    group: str = "space-xy",
    *,
    account: str = "spinup",
    enabled: bool = False,
    expression: str = "*/15 * * * *",
    name: str = "job",
) -> Job:
    """A valid job as the API would build it (next occurrence set when enabled)."""
    job = Job(
        account=account,
        group=group,
        id=new_job_id(),
        name=name,
        schedule_expression=expression,
        details={"runner": "dummyRunner"},
        enabled=enabled,
        modified_at=NOW,
        anchor=NOW,
    )
    return replace(job, next=job.next_after(NOW))


def raw_item(aws: dict[str, Any], job: Job) -> dict[str, Any] | None:
    return (
        aws["dynamodb"]
        .get_item(TableName=TABLE, Key=job_key(job.account, job.group, job.id), ConsistentRead=True)
        .get("Item")
    )


def job_counts(store: Store, account: str = "spinup") -> dict[str, int]:
    counter = store.counters().get(f"JOBS#{account}", {})
    return {"enabled": int(counter.get("enabled", 0)), "disabled": int(counter.get("disabled", 0))}


# --- optimistic locking ----------------------------------------------------------------------


def test_two_replaces_from_the_same_read_one_wins_the_other_is_refused(store: Store) -> None:
    # Given a stored job, read once by two writers
    original = make_job(name="original")
    store.create_job(original)
    read = store.get_job("spinup", "space-xy", original.id)
    first = replace(read, name="first writer", version=read.version + 1)
    second = replace(read, name="second writer", version=read.version + 1)

    # When both write over that same read
    store.replace_job(first, read)
    with pytest.raises(PreconditionFailed):
        store.replace_job(second, read)

    # Then the first write is what is stored, at version 2, and nothing of the second leaked in
    stored = store.get_job("spinup", "space-xy", original.id)
    assert (stored.name, stored.version) == ("first writer", 2)


def test_a_replace_from_a_fresh_read_after_a_lost_race_succeeds(store: Store) -> None:
    # Given a job that was changed after a first read
    job = make_job()
    store.create_job(job)
    stale = store.get_job("spinup", "space-xy", job.id)
    store.replace_job(replace(stale, name="winner", version=2), stale)

    # When the loser reads again and writes over the fresh read
    fresh = store.get_job("spinup", "space-xy", job.id)
    store.replace_job(replace(fresh, name="second try", version=fresh.version + 1), fresh)

    # Then its write lands at version 3
    stored = store.get_job("spinup", "space-xy", job.id)
    assert (stored.name, stored.version) == ("second try", 3)


def test_replace_keeps_the_last_run_the_worker_recorded(store: Store, aws: dict[str, Any]) -> None:
    # Given a job read by a client, then a run recorded on it by the worker
    job = make_job(enabled=True)
    store.create_job(job)
    read = store.get_job("spinup", "space-xy", job.id)
    before = raw_item(aws, job)
    run = Run(
        run_id=scheduled_run_id(NOW),
        job_id=job.id,
        account="spinup",
        group="space-xy",
        trigger="schedule",
        scheduled_for="2026-01-30T10:15:00Z",
        status="succeeded",
        finished_at="2026-01-30T10:15:02Z",
        output="Hello, spinup!",
    )
    store.finish_run(run)
    # (the worker's record does not write the job item: it shares its account's partition)
    assert raw_item(aws, job) == before

    # When the client's replace (built from its older read, without last_run) is written
    store.replace_job(replace(read, name="renamed", version=2, last_run=None), read)

    # Then the run summary is still shown on the job
    stored = store.get_job("spinup", "space-xy", job.id)
    assert stored.name == "renamed"
    assert stored.last_run is not None and stored.last_run["run_id"] == run.run_id


def test_a_job_shows_its_newest_finished_run_and_the_occurrence_after_its_newest_scheduled_one(
    store: Store,
) -> None:
    # Given an enabled every-15-minutes job due at 10:30
    job = make_job(enabled=True)
    store.create_job(job)
    assert job.next == NOW.replace(minute=30)
    base = Run(
        run_id="",
        job_id=job.id,
        account="spinup",
        group="space-xy",
        trigger="schedule",
        scheduled_for="",
        status="succeeded",
    )
    at_1030 = replace(
        base,
        run_id=scheduled_run_id(NOW.replace(minute=30)),
        scheduled_for="2026-01-30T10:30:00Z",
        finished_at="2026-01-30T10:30:02Z",
    )
    # When its 10:30 run succeeded and its 10:45 one is still running
    store.finish_run(at_1030)
    store.put_run(
        replace(
            base,
            run_id=scheduled_run_id(NOW.replace(minute=45)),
            scheduled_for="2026-01-30T10:45:00Z",
            status="running",
        )
    )
    # Then it shows the finished one as its last run, and 11:00 as its next occurrence
    stored = store.get_job("spinup", "space-xy", job.id)
    assert stored.last_run is not None and stored.last_run["run_id"] == at_1030.run_id
    assert stored.next == NOW.replace(hour=11, minute=0)
    # And a run-now (newer, manual) becomes the last run without moving `next`
    manual = replace(
        base,
        run_id="20260130T104600Z-m0123abcd",
        trigger="manual",
        scheduled_for="2026-01-30T10:46:00Z",
        finished_at="2026-01-30T10:46:01Z",
        status="failed",
    )
    store.finish_run(manual)
    stored = store.get_job("spinup", "space-xy", job.id)
    assert (stored.last_run or {})["run_id"] == manual.run_id
    assert stored.next == NOW.replace(hour=11, minute=0)
    # And once disabled, it shows no next occurrence whatever its runs
    store.replace_job(replace(stored, enabled=False, next=None, version=2), stored)
    assert store.get_job("spinup", "space-xy", job.id).next is None


def test_delete_of_a_job_changed_since_it_was_read_is_refused(store: Store) -> None:
    # Given a job read, then changed by someone else
    job = make_job()
    store.create_job(job)
    read = store.get_job("spinup", "space-xy", job.id)
    store.replace_job(replace(read, name="changed", version=2), read)

    # When the stale read is deleted / Then it is refused and the job is still there
    with pytest.raises(PreconditionFailed):
        store.delete_job(read)
    assert store.get_job("spinup", "space-xy", job.id).name == "changed"
    assert job_counts(store) == {"enabled": 0, "disabled": 1}


# --- create, get, conflicts --------------------------------------------------------------------


def test_duplicate_create_is_a_conflict_and_changes_nothing(
    store: Store, aws: dict[str, Any]
) -> None:
    # Given a stored job
    job = make_job(name="first")
    store.create_job(job)
    before = table_items(aws)

    # When a job with the same id is created again / Then Conflict, and the table is unchanged
    with pytest.raises(Conflict):
        store.create_job(replace(job, name="second", enabled=True))
    assert table_items(aws) == before
    assert store.get_job("spinup", "space-xy", job.id).name == "first"
    assert job_counts(store) == {"enabled": 0, "disabled": 1}


def test_get_of_a_missing_job_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_job("spinup", "space-xy", new_job_id())


def test_a_job_is_found_only_under_its_own_account_and_group(store: Store) -> None:
    # Given a job in spinup/space-xy
    job = make_job()
    store.create_job(job)
    # When looked up under another group or account / Then not found
    with pytest.raises(NotFound):
        store.get_job("spinup", "space-ab", job.id)
    with pytest.raises(NotFound):
        store.get_job("limited", "space-xy", job.id)


def test_stored_job_reads_back_equal(store: Store) -> None:
    # Given a job with every optional field / When stored and read / Then it is the same job
    job = replace(
        make_job(enabled=True),
        description="d",
        modified_by="someone",
        schedule_timezone="America/New_York",
        starting_deadline_seconds=120,
        concurrency_policy="Forbid",
        max_attempts=5,
        tags=(("owner", "me"),),
    )
    job = replace(job, next=job.next_after(NOW))
    store.create_job(job)
    assert store.get_job("spinup", "space-xy", job.id) == job


# --- the job's copy in its run partition (a GET in one request) -------------------------------


def raw_copy(aws: dict[str, Any], job: Job) -> dict[str, Any] | None:
    return (
        aws["dynamodb"]
        .get_item(TableName=TABLE, Key=copy_key(job.id), ConsistentRead=True)
        .get("Item")
    )


def assert_copies_equal(aws: dict[str, Any], job: Job) -> None:
    """The job's copy holds exactly its account item's attributes (but the Forbid hold)."""
    item, copy_item = raw_item(aws, job), raw_copy(aws, job)
    assert item is not None and copy_item is not None
    assert copy_item["pk"] == {"S": f"JOB#{job.id}"} and copy_item["sk"] == {"S": "SPEC"}
    held = {"forbid_run", "forbid_until"}
    assert {k: v for k, v in copy_item.items() if k not in ("pk", "sk")} == {
        k: v for k, v in item.items() if k not in ("pk", "sk", *held)
    }


def recorded(store: Store, now: datetime | None = None) -> tuple[Store, Recording]:
    """The same store (its clock at `now`, if given) with every call of its client recorded."""
    client = Recording(store.client)
    clock = store.clock if now is None else now.timestamp
    return Store(client, store.table, store.shards, clock=clock), client


def a_run(job: Job, minute: int, status: str = "succeeded") -> Run:
    at = NOW.replace(minute=minute)
    return Run(
        run_id=scheduled_run_id(at),
        job_id=job.id,
        account=job.account,
        group=job.group,
        trigger="schedule",
        scheduled_for=at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        status=status,  # type: ignore[arg-type]
        finished_at=at.strftime("%Y-%m-%dT%H:%M:05Z"),
    )


def legacy(aws: dict[str, Any], job: Job) -> None:
    """Make a stored job look as the previous release left it: no copy."""
    aws["dynamodb"].delete_item(TableName=TABLE, Key=copy_key(job.id))


def test_a_get_is_one_query_that_reads_the_job_and_its_newest_runs(
    store: Store, aws: dict[str, Any]
) -> None:
    # Given a job with 12 finished runs (more than the page of history a GET reads), read
    # before its next occurrence (10:30) comes
    job = make_job(enabled=True)
    store.create_job(job)
    for minute in range(18, 30):
        store.finish_run(a_run(job, minute))
    observed, calls = recorded(store, NOW.replace(minute=29, second=30))
    # When it is read
    read = observed.get_job("spinup", "space-xy", job.id)
    # Then exactly one DynamoDB request was made: a Query of its run partition
    assert [name for name, _ in calls.calls] == ["query"]
    assert calls.calls[0][1]["KeyConditionExpression"].startswith("pk = :pk")
    # And it shows the job with the newest run as its last run
    assert replace(read, last_run=None) == replace(job, last_run=None)
    assert (read.last_run or {})["run_id"] == scheduled_run_id(NOW.replace(minute=29))
    # And a job with no runs yet is one request as well
    other = make_job()
    store.create_job(other)
    calls.calls.clear()
    assert observed.get_job("spinup", "space-xy", other.id) == other
    assert [name for name, _ in calls.calls] == ["query"]


def test_the_workers_read_is_one_getitem_of_the_copy(store: Store, aws: dict[str, Any]) -> None:
    # Given a job
    job = make_job(enabled=True)
    store.create_job(job)
    observed, calls = recorded(store)
    # When the worker reads it / Then one GetItem of its copy, in the job's own partition
    assert observed.get_job("spinup", "space-xy", job.id, progress=False) == job
    assert [(name, args["Key"]) for name, args in calls.calls] == [("get_item", copy_key(job.id))]
    # And a job without a copy is read from its account item
    legacy(aws, job)
    calls.calls.clear()
    assert observed.get_job("spinup", "space-xy", job.id, progress=False) == job
    assert [name for name, _ in calls.calls] == ["get_item", "get_item"]
    assert raw_copy(aws, job) is None  # the worker writes no job item


def test_a_job_id_under_another_account_or_group_reveals_nothing(
    store: Store, aws: dict[str, Any]
) -> None:
    # Given a job with a copy
    job = make_job(name="secret-name")
    store.create_job(job)
    before = table_items(aws)
    # When its id is read under another group or account / Then not found, saying only the
    # path asked for, and nothing was written
    for account, group in (("spinup", "space-ab"), ("limited", "space-xy"), ("limited", "x")):
        with pytest.raises(NotFound) as raised:
            store.get_job(account, group, job.id)
        assert str(raised.value) == f"job not found: {group}/{job.id}"
        assert "secret-name" not in str(raised.value) and "spinup/" not in str(raised.value)
    assert table_items(aws) == before


def test_creates_replaces_and_deletes_keep_both_items_equal(
    store: Store, aws: dict[str, Any]
) -> None:
    # Given a created job / Then its copy is its account item under the run partition's key
    job = replace(make_job(enabled=True), tags=(("owner", "me"),), concurrency_policy="Forbid")
    store.create_job(job)
    assert_copies_equal(aws, job)
    # When a run holds it (Forbid) and it is replaced / Then the copy follows, without the hold
    store.finish_run(a_run(job, 30))
    assert store.hold_forbid(job, "run-1", 2_000_000_000, NOW)
    read = store.get_job("spinup", "space-xy", job.id)
    changed = replace(read, name="renamed", enabled=False, next=None, version=2, tags=None)
    store.replace_job(changed, read)
    assert_copies_equal(aws, changed)
    assert (raw_item(aws, job) or {})["forbid_run"] == {"S": "run-1"}
    assert store.get_job("spinup", "space-xy", job.id) == changed
    # When a replace is refused (a stale read) / Then neither item changed
    items = table_items(aws)
    with pytest.raises(PreconditionFailed):
        store.replace_job(replace(read, name="stale", version=2), read)
    assert table_items(aws) == items
    # When it is deleted / Then both items are gone, its runs stay readable until they expire
    store.delete_job(store.get_job("spinup", "space-xy", job.id))
    assert raw_item(aws, job) is None and raw_copy(aws, job) is None
    runs, _ = store.list_runs(job.id, 10)
    assert [r.run_id for r in runs] == [scheduled_run_id(NOW.replace(minute=30))]
    with pytest.raises(NotFound):
        store.get_job("spinup", "space-xy", job.id)


def test_a_replace_writes_the_registry_entry_it_was_made_under_to_both_items(
    store: Store, aws: dict[str, Any]
) -> None:
    # Given a job written under the `*` entry
    job = replace(make_job(), registry_entry="*")
    store.create_job(job)
    read = store.get_job("spinup", "space-xy", job.id)
    # When it is replaced under the account's own entry (jobs.job_from_request's choice)
    store.replace_job(replace(read, registry_entry="spinup", version=2), read)
    # Then both items remember the account's own entry, which the worker reads
    assert (raw_item(aws, job) or {})["registry_entry"] == {"S": "spinup"}
    assert_copies_equal(aws, job)
    assert store.get_job("spinup", "space-xy", job.id, progress=False).registry_entry == "spinup"


def test_a_refused_delete_leaves_both_items(store: Store, aws: dict[str, Any]) -> None:
    job = make_job()
    store.create_job(job)
    read = store.get_job("spinup", "space-xy", job.id)
    store.replace_job(replace(read, name="changed", version=2), read)
    items = table_items(aws)
    with pytest.raises(PreconditionFailed):
        store.delete_job(read)
    assert table_items(aws) == items


def test_the_run_partitions_reads_never_take_the_copy_for_a_run(
    store: Store, aws: dict[str, Any]
) -> None:
    # Given a job with a copy, one finished run and one running under a live lease
    job = make_job(enabled=True)
    store.create_job(job)
    store.finish_run(a_run(job, 30))
    running = a_run(job, 45, status="running")
    claimed = store.claim_run(running, 1, 600, NOW)
    assert claimed
    # When its runs are listed, paged, and its running runs read / Then only runs come back
    runs, after = store.list_runs(job.id, 10)
    assert [r.run_id for r in runs] == [running.run_id, scheduled_run_id(NOW.replace(minute=30))]
    assert after is None
    first, after = store.list_runs(job.id, 1)
    assert [r.run_id for r in first] == [running.run_id] and after == running.run_id
    rest, _ = store.list_runs(job.id, 10, after)
    assert [r.run_id for r in rest] == [scheduled_run_id(NOW.replace(minute=30))]
    assert [r.run_id for r in store.running_runs(job.id, NOW)] == [running.run_id]


def test_a_job_stored_without_a_copy_reads_the_same_and_is_adopted(
    store: Store, aws: dict[str, Any]
) -> None:
    # Given a job the previous release stored (its account item only), with a run
    job = make_job(enabled=True)
    store.create_job(job)
    store.finish_run(a_run(job, 30))
    expected = store.get_job("spinup", "space-xy", job.id)
    legacy(aws, job)
    # (read before its next occurrence: a past one would also read its shard's tick lock, to
    # tell whether the tick has passed it)
    observed, calls = recorded(store, NOW)
    # When it is read / Then it reads the same, from its account item as well
    assert observed.get_job("spinup", "space-xy", job.id) == expected
    assert [name for name, _ in calls.calls] == ["query", "get_item", "transact_write_items"]
    # And it now has its copy: the next read is one request
    assert_copies_equal(aws, job)
    calls.calls.clear()
    assert observed.get_job("spinup", "space-xy", job.id) == expected
    assert [name for name, _ in calls.calls] == ["query"]


def test_a_legacy_job_keeps_its_legacy_attributes_in_its_copy_but_the_hold_and_index_key(
    store: Store, aws: dict[str, Any]
) -> None:
    # Given a legacy job still in the legacy due index and held by a Forbid run
    job = replace(make_job(enabled=True), concurrency_policy="Forbid")
    store.create_job(job)
    legacy(aws, job)
    aws["dynamodb"].update_item(
        TableName=TABLE,
        Key=job_key("spinup", "space-xy", job.id),
        UpdateExpression="SET due_shard = :s, forbid_run = :r, forbid_until = :u",
        ExpressionAttributeValues={
            ":s": {"S": "DUE#1"},
            ":r": {"S": "run-1"},
            ":u": {"N": "2000000000"},
        },
    )
    # When it is read (and adopted)
    store.get_job("spinup", "space-xy", job.id)
    # Then its copy carries neither the hold nor the legacy index key (the tick's legacy
    # migration would otherwise find the job twice)
    copy_item = raw_copy(aws, job) or {}
    assert {"forbid_run", "forbid_until", "due_shard"}.isdisjoint(copy_item)
    assert copy_item == copy_of(raw_item(aws, job) or {}, job.id)
    legacy_index = aws["dynamodb"].query(
        TableName=TABLE,
        IndexName=DUE_INDEX,
        KeyConditionExpression="due_shard = :s",
        ExpressionAttributeValues={":s": {"S": "DUE#1"}},
    )["Items"]
    assert [i["sk"]["S"] for i in legacy_index] == [f"JOB#space-xy#{job.id}"]


def interfere_before_adoption(store: Store, write: Any) -> list[str]:
    """Run `write` once, just before the store's next transaction goes out (the adoption of a
    legacy job read a moment earlier); the list names the transactions seen."""
    seen: list[str] = []

    def before(params: dict[str, Any], **_: Any) -> None:
        seen.append(next(iter(params["TransactItems"][0])))
        if len(seen) == 1:
            write()

    store.client.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", before)
    return seen


@pytest.mark.parametrize("writer", ["this release", "the previous release"])
def test_an_update_between_a_legacy_read_and_its_adoption_leaves_no_stale_copy(
    store: Store, aws: dict[str, Any], writer: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a job without a copy
    job = make_job()
    store.create_job(job)
    legacy(aws, job)
    other = Store(aws["dynamodb"], TABLE, store.shards)  # another API instance

    def update() -> None:
        if writer == "this release":
            read = other.get_job("spinup", "space-xy", job.id)  # (adopts version 1 first)
            other.replace_job(replace(read, name="updated", version=2), read)
        else:  # an older API instance during a deployment: the account item only
            aws["dynamodb"].update_item(
                TableName=TABLE,
                Key=job_key("spinup", "space-xy", job.id),
                UpdateExpression="SET #n = :n, version = :v",
                ExpressionAttributeNames={"#n": "name"},
                ExpressionAttributeValues={":n": {"S": "updated"}, ":v": {"N": "2"}},
            )

    seen = interfere_before_adoption(store, update)
    # When it is read, and updated between that read and its adoption
    read = store.get_job("spinup", "space-xy", job.id)
    # Then the read answers what it read; the adoption was attempted and refused
    assert (read.name, read.version) == ("job", 1)
    assert seen == ["ConditionCheck"]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # the race is expected
    # And no copy of version 1 is left: the copy is the update's, or there is none yet
    copy_item = raw_copy(aws, job)
    if writer == "this release":
        assert_copies_equal(aws, replace(job, version=2))
    else:
        assert copy_item is None
    # And the next read shows the update (and adopts it)
    assert store.get_job("spinup", "space-xy", job.id).name == "updated"
    assert_copies_equal(aws, job)


def test_a_delete_between_a_legacy_read_and_its_adoption_leaves_no_zombie_copy(
    store: Store, aws: dict[str, Any]
) -> None:
    # Given a job without a copy, deleted (by an older API instance) just after it is read
    job = make_job()
    store.create_job(job)
    legacy(aws, job)
    interfere_before_adoption(
        store,
        lambda: aws["dynamodb"].delete_item(
            TableName=TABLE, Key=job_key("spinup", "space-xy", job.id)
        ),
    )
    # When the read adopts it / Then the read answers, but no copy was written
    assert store.get_job("spinup", "space-xy", job.id).id == job.id
    assert raw_item(aws, job) is None and raw_copy(aws, job) is None
    with pytest.raises(NotFound):
        store.get_job("spinup", "space-xy", job.id)


@pytest.mark.parametrize(
    "error",
    [
        ("TransactionCanceledException", [{"Code": "None"}, {"Code": "ThrottlingError"}]),
        ("InternalServerError", None),
    ],
)
def test_a_failed_adoption_does_not_fail_the_read(
    store: Store, aws: dict[str, Any], error: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a legacy job; its read's answers as DynamoDB gives them
    job = make_job()
    store.create_job(job)
    legacy(aws, job)
    observed, calls = recorded(store)
    observed.get_job("spinup", "space-xy", job.id)
    legacy(aws, job)
    answers = [{k: v for k, v in a.items() if k != "ResponseMetadata"} for _, a in calls.answers]
    # And DynamoDB failing the adoption's transaction
    stubbed = Store(boto3.client("dynamodb"), TABLE, store.shards)
    code, reasons = error
    with Stubber(stubbed.client) as stubber:
        stubber.add_response("query", answers[0])
        stubber.add_response("get_item", answers[1])
        stubber.add_client_error(
            "transact_write_items",
            code,
            "failed",
            http_status_code=400 if reasons else 500,
            modeled_fields={"CancellationReasons": reasons} if reasons else None,
        )
        # When it is read / Then it answers, and stays without a copy until a later read
        assert stubbed.get_job("spinup", "space-xy", job.id) == job
        stubber.assert_no_pending_responses()
    assert raw_copy(aws, job) is None
    # And the failure is logged as a warning naming the job and the error's code
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "job copy not written" in record.getMessage()
    assert (record.job_id, record.error_code) == (job.id, code)  # type: ignore[attr-defined]


# --- listing -----------------------------------------------------------------------------------


def test_lists_are_sorted_and_scoped_to_the_account_and_group(store: Store) -> None:
    # Given jobs in two groups of spinup (one group name a prefix of the other) and one in limited
    jobs = [make_job("space-xy"), make_job("space-xy"), make_job("space"), make_job("space")]
    for job in jobs:
        store.create_job(job)
    store.create_job(make_job("space-xy", account="limited"))

    # When listed / Then sorted, each scoped exactly
    assert store.list_jobs("spinup") == sorted(f"{j.group}/{j.id}" for j in jobs)
    assert store.list_jobs("spinup", "space") == sorted(j.id for j in jobs if j.group == "space")
    assert store.list_jobs("spinup", "space-xy") == sorted(
        j.id for j in jobs if j.group == "space-xy"
    )
    assert store.list_jobs("spinup", "nothing-here") == []
    assert store.list_jobs("unknown-account") == []


# --- group delete ------------------------------------------------------------------------------


def test_delete_of_an_empty_group_deletes_nothing(store: Store, aws: dict[str, Any]) -> None:
    # Given a job in another group
    other = make_job("space-ab")
    store.create_job(other)
    before = table_items(aws)
    # When an empty group is deleted / Then zero, and nothing changed
    assert store.delete_group("spinup", "space-xy") == 0
    assert table_items(aws) == before


def test_group_delete_leaves_groups_whose_name_starts_the_same(store: Store) -> None:
    # Given jobs in "space" and "space-xy" / When "space" is deleted
    keep = make_job("space-xy", enabled=True)
    store.create_job(keep)
    for enabled in (True, False, False):
        store.create_job(make_job("space", enabled=enabled))
    assert store.delete_group("spinup", "space") == 3

    # Then only "space-xy" is left, and the counters count only it
    assert store.list_jobs("spinup") == [f"space-xy/{keep.id}"]
    assert job_counts(store) == {"enabled": 1, "disabled": 0}


class _OneTableBackupPerTransaction:
    """moto's TransactWriteItems deep-copies the whole table once per *item* of a transaction
    for its rollback backup: with 1,050 jobs that is minutes of copying. The copies are taken
    before any write, so one copy per table is the same backup; this shim hands out that one."""

    def __init__(self, table_type: type) -> None:
        self.table_type = table_type
        self.copies: dict[int, Any] = {}

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, self.table_type):
            if id(value) not in self.copies:
                self.copies[id(value)] = copy.deepcopy(value)
            return self.copies[id(value)]
        return copy.deepcopy(value, memo)


@pytest.fixture
def fast_moto_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's transactions with one rollback backup per table (same semantics, far faster)."""
    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        models.copy = _OneTableBackupPerTransaction(Table)  # type: ignore[assignment]
        try:
            return original(self, transact_items)
        finally:
            models.copy = copy

    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", transact_write_items)


def seed_jobs(aws: dict[str, Any], account: str, group: str, count: int) -> list[Job]:
    """`count` jobs (every third enabled) written in batches, with their copies and the
    counters creates would have left: far faster than `count` transactions."""
    jobs = [
        make_job(group, account=account, enabled=i % 3 == 0, name=f"job-{i}") for i in range(count)
    ]
    items = [item for j in jobs for item in (job_to_item(j, 4), copy_of(job_to_item(j, 4), j.id))]
    for start in range(0, len(items), 25):
        aws["dynamodb"].batch_write_item(
            RequestItems={TABLE: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        )
    enabled = sum(j.enabled for j in jobs)
    aws["dynamodb"].update_item(
        TableName=TABLE,
        Key={"pk": {"S": "METRICS"}, "sk": {"S": f"JOBS#{account}"}},
        UpdateExpression="ADD enabled :e, disabled :d",
        ExpressionAttributeValues={":e": {"N": str(enabled)}, ":d": {"N": str(count - enabled)}},
    )
    return jobs


def test_group_delete_of_1050_jobs_deletes_all_across_transaction_chunks(
    store: Store, aws: dict[str, Any], fast_moto_transactions: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 1,050 jobs in one group (more than ten transactions' worth), and one job in another
    seed_jobs(aws, "spinup", "space-xy", 1050)
    other = make_job("space-ab", enabled=True)
    store.create_job(other)
    assert job_counts(store) == {"enabled": 351, "disabled": 700}
    transaction_sizes: list[int] = []
    real_transact = store.client.transact_write_items

    def counting_transact(**kwargs: Any) -> Any:
        transaction_sizes.append(len(kwargs["TransactItems"]))
        return real_transact(**kwargs)

    monkeypatch.setattr(store.client, "transact_write_items", counting_transact)

    # When the group is deleted
    deleted = store.delete_group("spinup", "space-xy")

    # Then every job of it is gone (its copy too), in transactions within DynamoDB's 100-item
    # limit, and the counters are back to what the other group alone accounts for
    assert deleted == 1050
    assert store.list_jobs("spinup", "space-xy") == []
    assert store.list_jobs("spinup") == [f"space-ab/{other.id}"]
    assert [i["pk"]["S"] for i in table_items(aws) if i["sk"]["S"] == "SPEC"] == [f"JOB#{other.id}"]
    assert len(transaction_sizes) >= 22 and max(transaction_sizes) <= 100
    assert job_counts(store) == {"enabled": 1, "disabled": 0}
    # (the deleted jobs' due items stay until the tick reads them and finds no job)
    assert other.id in due_ids(store, NOW + timedelta(days=1))


# --- counters ----------------------------------------------------------------------------------


def test_counters_follow_creates_replaces_and_deletes(store: Store) -> None:
    # Given two enabled jobs and one disabled job
    enabled_a, enabled_b = make_job(enabled=True), make_job(enabled=True)
    disabled = make_job()
    for job in (enabled_a, enabled_b, disabled):
        store.create_job(job)
    assert job_counts(store) == {"enabled": 2, "disabled": 1}

    # When one is disabled, the disabled one enabled, and one renamed
    store.replace_job(replace(enabled_a, enabled=False, next=None, version=2), enabled_a)
    store.replace_job(replace(disabled, enabled=True, version=2), disabled)
    store.replace_job(replace(enabled_b, name="renamed", version=2), enabled_b)
    # Then the counts moved with the flags only
    assert job_counts(store) == {"enabled": 2, "disabled": 1}

    # When one of each is deleted / Then both counts drop
    store.delete_job(store.get_job("spinup", "space-xy", enabled_a.id))
    store.delete_job(store.get_job("spinup", "space-xy", enabled_b.id))
    assert job_counts(store) == {"enabled": 1, "disabled": 0}
    assert job_counts(store, "limited") == {"enabled": 0, "disabled": 0}


def test_runs_by_final_status_are_counted(store: Store) -> None:
    # Given a queued run, then its final outcome, then a missed run
    job = make_job()
    queued = Run(
        run_id=scheduled_run_id(NOW),
        job_id=job.id,
        account="spinup",
        group="space-xy",
        trigger="schedule",
        scheduled_for="2026-01-30T10:17:00Z",
        status="queued",
    )
    assert store.put_run(queued)
    store.finish_run(queued.with_status("succeeded", finished_at="2026-01-30T10:17:03Z"))
    store.put_run(
        replace(queued, run_id=scheduled_run_id(NOW - timedelta(minutes=1)), status="missed")
    )
    # Then only final statuses are counted
    assert store.counters()["RUNS"] == {"succeeded": 1, "missed": 1}


def test_a_run_id_is_recorded_once(store: Store) -> None:
    # Given a recorded run / When the same run id is recorded again / Then refused, first kept
    run = Run(
        run_id=scheduled_run_id(NOW),
        job_id=new_job_id(),
        account="spinup",
        group="space-xy",
        trigger="schedule",
        scheduled_for="2026-01-30T10:17:00Z",
        status="queued",
    )
    assert store.put_run(run) is True
    assert store.put_run(run.with_status("missed")) is False
    assert store.get_run(run.job_id, run.run_id) == run


# --- the due items ----------------------------------------------------------------------------


def due_ids(store: Store, up_to: datetime) -> list[str]:
    return [e.job_id for shard in range(4) for e in store.due_entries(shard, up_to)]


def test_only_enabled_jobs_with_a_next_occurrence_get_a_due_item(
    store: Store, aws: dict[str, Any]
) -> None:
    # Given an enabled job, a disabled one, and an enabled one-time job whose time has passed
    enabled = make_job(enabled=True)
    disabled = make_job(enabled=False)
    past = make_job(enabled=True, expression="at(2020-01-01T00:00:00)")
    for job in (enabled, disabled, past):
        store.create_job(job)
    assert enabled.next is not None and past.next is None

    # Then only the first has a due item: in its shard's partition, at its next occurrence,
    # naming its version; no job item is in the legacy index
    assert enabled.next is not None
    key = due_key(shard_of(enabled.id, 4), enabled.next, enabled.id, 1)
    item = aws["dynamodb"].get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]
    assert (item["account"], item["group"], item["version"]) == (
        {"S": "spinup"},
        {"S": "space-xy"},
        {"N": "1"},
    )
    assert due_ids(store, NOW + timedelta(days=1)) == [enabled.id]
    assert all("due_shard" not in (raw_item(aws, j) or {}) for j in (enabled, disabled, past))


def test_a_replace_writes_the_new_versions_due_item(store: Store) -> None:
    # Given an enabled job
    job = make_job(enabled=True)
    store.create_job(job)
    # When it is disabled / Then no due item of the new version is written
    disabled = replace(job, enabled=False, next=None, version=2)
    store.replace_job(disabled, job)
    versions = {e.version for s in range(4) for e in store.due_entries(s, NOW + timedelta(days=1))}
    assert versions == {1}  # the old one stays until the tick reads it and drops it
    # When enabled again / Then the new version's item is at the new next occurrence
    enabled = replace(disabled, enabled=True, next=NOW + timedelta(minutes=13), version=3)
    store.replace_job(enabled, disabled)
    entries = [e for s in range(4) for e in store.due_entries(s, NOW + timedelta(days=1))]
    assert {(e.version, e.due_at) for e in entries} == {
        (1, job.next),
        (3, NOW + timedelta(minutes=13)),
    }


def test_due_entries_returns_only_occurrences_up_to_the_minute(store: Store) -> None:
    # Given two enabled jobs in the same shard, due at different minutes
    soon = replace(make_job(enabled=True), next=NOW + timedelta(minutes=1))
    later = make_job(enabled=True)
    while shard_of(later.id, 4) != shard_of(soon.id, 4):
        later = replace(later, id=new_job_id())
    later = replace(later, next=NOW + timedelta(minutes=30))
    store.create_job(soon)
    store.create_job(later)
    # When the shard is read up to a minute / Then only what is due by then, oldest first
    shard = shard_of(soon.id, 4)
    assert [e.job_id for e in store.due_entries(shard, NOW)] == []
    assert [e.job_id for e in store.due_entries(shard, NOW + timedelta(minutes=1))] == [soon.id]
    assert [e.job_id for e in store.due_entries(shard, NOW + timedelta(hours=1))] == [
        soon.id,
        later.id,
    ]


def test_due_writes_are_batched_and_unprocessed_items_retried(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 30 due entries, and a BatchWriteItem that leaves the first item of every call
    # unprocessed the first time it sees it
    entries = [DueEntry(i % 4, NOW, "spinup", "space-xy", new_job_id(), 1) for i in range(30)]
    real = store.client.batch_write_item
    calls: list[int] = []
    refused: set[str] = set()

    def flaky(**kwargs: Any) -> Any:
        requests = kwargs["RequestItems"][TABLE]
        calls.append(len(requests))
        first = json.dumps(requests[0], sort_keys=True)
        if first not in refused:
            refused.add(first)
            answer = real(RequestItems={TABLE: requests[1:]}) if requests[1:] else {}
            return {**answer, "UnprocessedItems": {TABLE: [requests[0]]}}
        return real(**kwargs)

    monkeypatch.setattr(store.client, "batch_write_item", flaky)
    monkeypatch.setattr("chalicelib.store.time.sleep", lambda _: None)
    # When they are put / Then all are written, 25 at most a call, the refused ones again
    assert store.put_due(entries) == []
    assert max(calls) == 25 and sum(calls) == 30 + len(refused)
    assert sorted(due_ids(store, NOW)) == sorted(e.job_id for e in entries)
    # When deleted / Then none is left
    assert store.delete_due(entries) == []
    assert due_ids(store, NOW) == []


def test_a_job_an_earlier_version_left_in_the_legacy_index_is_moved_to_a_due_item(
    store: Store, aws: dict[str, Any]
) -> None:
    # Given a job item as the previous layout wrote it: in the index, no due item
    job = make_job(enabled=True)
    assert job.next is not None
    item = job_to_item(job, 4)
    item["due_shard"] = {"S": f"DUE#{shard_of(job.id, 4)}"}
    aws["dynamodb"].put_item(TableName=TABLE, Item=item)
    legacy = aws["dynamodb"].query(
        TableName=TABLE,
        IndexName=DUE_INDEX,
        KeyConditionExpression="due_shard = :s",
        ExpressionAttributeValues={":s": item["due_shard"]},
    )["Items"]
    assert len(legacy) == 1
    # When its shard is migrated (the tick does it before reading the shard)
    moved = [store.migrate_legacy_due(shard) for shard in range(4)]
    # Then it has a due item at the same occurrence, it left the index, and a second pass
    # finds nothing to move
    assert sum(moved) == 1
    assert [
        (e.job_id, e.due_at, e.version) for s in range(4) for e in store.due_entries(s, job.next)
    ] == [(job.id, job.next, 1)]
    assert "due_shard" not in (raw_item(aws, job) or {})
    assert [store.migrate_legacy_due(shard) for shard in range(4)] == [0, 0, 0, 0]


# --- DynamoDB failures -------------------------------------------------------------------------


class _Body:
    """A raw HTTP body botocore can stream."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.content


def throttle(client: Any, operation: str, times: int) -> list[int]:
    """Answer the next `times` calls of `operation` with DynamoDB's throttling error, on the wire
    (so the client's own retry policy sees it); the list counts the attempts throttled."""
    attempts: list[int] = []
    body = json.dumps(
        {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded",
        }
    )

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        if len(attempts) >= times:
            return None  # moto answers
        attempts.append(1)
        return AWSResponse(
            request.url, 400, {"x-amzn-RequestId": "throttled"}, _Body(body.encode())
        )

    client.meta.events.register_first(f"before-send.dynamodb.{operation}", answer)
    return attempts


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's retry delays skipped (the attempts still happen)."""
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda _seconds: None)


def test_throttling_within_the_retry_budget_is_retried_and_succeeds(
    store: Store, no_backoff: None
) -> None:
    # Given a stored job, and DynamoDB throttling the next two reads (a GET is one Query)
    job = make_job()
    store.create_job(job)
    attempts = throttle(store.client, "Query", times=2)
    # When the job is read / Then the client retried past the throttling and got it
    assert store.get_job("spinup", "space-xy", job.id) == job
    assert len(attempts) == 2


def test_throttling_past_the_retry_budget_is_service_unavailable(
    store: Store, no_backoff: None
) -> None:
    # Given DynamoDB throttling every read
    attempts = throttle(store.client, "Query", times=100)
    # When a job is read / Then every attempt of the budget was made, then ServiceUnavailable,
    # with no AWS detail in its message
    with pytest.raises(ServiceUnavailable) as raised:
        store.get_job("spinup", "space-xy", new_job_id())
    assert len(attempts) == store.client.meta.config.retries["total_max_attempts"]
    assert "rovisioned" not in str(raised.value)


@pytest.fixture
def stubbed_store(aws: dict[str, Any]) -> Iterator[tuple[Store, Stubber]]:
    """The store with a botocore Stubber on its client (each call answered from the stub)."""
    store = deps.store()
    with Stubber(store.client) as stubber:
        yield store, stubber


@pytest.mark.parametrize("reason", ["ThrottlingError", "TransactionConflict"])
def test_a_transaction_cancelled_by_throttling_or_a_conflict_is_service_unavailable(
    stubbed_store: tuple[Store, Stubber], reason: str
) -> None:
    # Given a create whose transaction DynamoDB cancels for a transient reason, not a condition
    store, stubber = stubbed_store
    stubber.add_client_error(
        "transact_write_items",
        "TransactionCanceledException",
        "Transaction cancelled",
        http_status_code=400,
        modeled_fields={"CancellationReasons": [{"Code": reason}, {"Code": "None"}]},
    )
    # When a job is created / Then the caller is told to retry, not that it is a duplicate
    with pytest.raises(ServiceUnavailable):
        store.create_job(make_job())
