"""The tick's due items that move with one write: slot items, each shard's lock and watermark,
legacy items, and what the API derives from them (chalicelib/tick.py, chalicelib/store.py)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.jobs import Job, job_from_request
from chalicelib.queue import RunMessage, RunQueue
from chalicelib.store import (
    DueEntry,
    Store,
    due_key,
    shard_of,
    slot_key,
    slot_of,
    tick_lock_key,
)
from chalicelib.tick import (
    LOCK_LEASE_SECONDS,
    LOCK_TRIES,
    LOCK_WAIT_SECONDS,
    MAX_MISSED_RECORDS,
    MAX_SLOTS,
    Ticker,
    run_part,
)
from conftest import TABLE, drain, utc
from store_support import REGISTRY, Recording, create_job
from test_tick import CountingRunner, bodies, run_worker, runner, runs_of, stored_next

__all__ = ["runner"]  # the fixture, from test_tick

SHARDS = 4
ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """The store's clock (epoch seconds), moved by hand."""

    def __init__(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def part(store: Store, queue: RunQueue, minute: str, sleeps: list[float] | None = None) -> Any:
    """One part over every shard for `minute` (a waiting part records its waits)."""
    waits = [] if sleeps is None else sleeps
    ticker = Ticker(store, queue, shards=SHARDS, parallelism=2, sleep=waits.append)
    return run_part(ticker, utc(minute))


def lock_of(aws: dict[str, Any], shard: int) -> dict[str, Any]:
    item = aws["dynamodb"].get_item(TableName=TABLE, Key=tick_lock_key(shard))["Item"]
    return {k: int(v["N"]) if "N" in v else v.get("S") for k, v in item.items()}


def epoch(stamp: str) -> int:
    return int(utc(stamp).timestamp())


def test_the_lock_lease_outlasts_the_part_function() -> None:
    # Given the part function's timeout as deployed
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    timeout = config["stages"]["dev"]["lambda_functions"]["tick_part"]["lambda_timeout"]
    # Then a lock's lease ends a minute after Lambda has stopped its holder
    assert LOCK_LEASE_SECONDS == timeout + 60


def test_slot_keys_are_the_minute_of_the_first_tick_at_or_after_the_occurrence() -> None:
    job_id = "5f14b5b0-9dca-4d8b-9056-1d1583bf6ffa"
    # An occurrence on the minute is in that minute's slot; one between minutes in the next
    assert slot_of(utc("2026-01-30T10:18")) == epoch("2026-01-30T10:18")
    assert slot_of(utc("2026-01-30T10:18:01")) == epoch("2026-01-30T10:19")
    assert slot_key(1, utc("2026-01-30T10:18:30"), job_id, 3) == {
        "pk": {"S": f"DUE#1#{epoch('2026-01-30T10:19'):011d}"},
        "sk": {"S": f"{job_id}#3"},
    }


def test_a_due_item_carries_the_decision_and_a_slot_item_expires_a_week_after(
    store: Store,
) -> None:
    # Given a job's queued item and the slot item it moves to
    job = create_job(store, "*/5 * * * *", starting_deadline_seconds=120)
    assert job.next is not None
    queued = DueEntry(
        shard_of(job.id, SHARDS),
        job.next,
        job.account,
        job.group,
        job.id,
        job.version,
        job.schedule_expression,
        job.schedule_timezone,
        job.anchor,
        120,
    )
    moved = queued.moved_to(job.next + timedelta(minutes=5))
    # Then both hold the schedule; only the slot item expires (TTL), a week after it is due
    for entry in (queued, moved):
        item = entry.to_item()
        assert item["schedule_expression"] == {"S": "*/5 * * * *"}
        assert item["starting_deadline_seconds"] == {"N": "120"}
        assert len(json.dumps(item)) < 1024
    assert "expires_at" not in queued.to_item()
    assert moved.to_item()["expires_at"] == {
        "N": str(int((job.next + timedelta(minutes=5, days=7)).timestamp()))
    }
    # And the one the API wrote is the one stored, and reads back as written
    stored = store.client.get_item(TableName=TABLE, Key=queued.key())["Item"]
    assert stored == queued.to_item()


# --- the lock ----------------------------------------------------------------------------------


def test_a_part_finding_a_shard_held_waits_then_leaves_the_minute_to_the_next_part(
    aws: dict[str, Any], queue: RunQueue, runner: CountingRunner
) -> None:
    # Given a due job, and its shard's lock held by another live part
    clock = Clock(utc("2026-01-30T10:18:05"))
    store = Store(aws["dynamodb"], TABLE, SHARDS, clock=clock)
    job = create_job(store)
    shard = shard_of(job.id, SHARDS)
    assert store.take_tick_lock(shard, utc("2026-01-30T10:18"), "other", 180).held

    # When a part runs: it tries the lock a few times, a second apart, then leaves the shard
    # to the parts after it, without failing (a retry would only come back after the parts
    # queue's visibility timeout, raising the "tick parts late" alarm for nothing)
    sleeps: list[float] = []
    report = part(store, queue, "2026-01-30T10:18:00", sleeps)
    assert sleeps == [LOCK_WAIT_SECONDS] * (LOCK_TRIES - 1)
    assert report.deferred == [shard] and report.shards_left == []
    # Then the held shard's job was not touched (the other shards were processed)
    assert drain(aws["sqs"], aws["queue_url"]) == []
    assert lock_of(aws, shard)["holder"] == "other"
    assert {s for s in range(SHARDS) if s != shard} == {
        s for s in range(SHARDS) if lock_of(aws, s)["done_through"] == epoch("2026-01-30T10:18")
    }

    # When the other part lets go without advancing (it failed), the next minute's part
    # covers 10:18 too: the every-minute job's 10:18 is recorded missed (superseded by 10:19,
    # as for any minute a tick could not reach in time) and 10:19 runs once
    assert store.release_tick_lock(shard, "other", None)
    clock.now = epoch("2026-01-30T10:19:04")
    assert part(store, queue, "2026-01-30T10:19:00").queued == 1
    run_worker(aws, store, queue)
    assert runner.calls == Counter({(job.id, "20260130T101900Z-s"): 1})
    superseded = store.get_run(job.id, "20260130T101800Z-s")
    assert superseded is not None and superseded.status == "missed"


def test_a_part_finding_its_shards_held_but_done_through_its_minute_has_nothing_to_do(
    aws: dict[str, Any], queue: RunQueue
) -> None:
    # Given jobs ticked through 10:19, then every lock held by a part of a later minute
    clock = Clock(utc("2026-01-30T10:20:03"))
    store = Store(aws["dynamodb"], TABLE, SHARDS, clock=clock)
    [create_job(store) for _ in range(3)]
    part(store, queue, "2026-01-30T10:19:00")
    drain(aws["sqs"], aws["queue_url"])
    for shard in range(SHARDS):
        assert store.take_tick_lock(shard, utc("2026-01-30T10:20"), "later", 180).held

    # When the late 10:18 part runs
    sleeps: list[float] = []
    report = part(store, queue, "2026-01-30T10:18:00", sleeps)

    # Then it completes at once, having sent nothing
    assert (report.due, report.queued, sleeps) == (0, 0, [])
    assert drain(aws["sqs"], aws["queue_url"]) == []


def test_a_late_part_taking_the_lock_of_a_shard_done_through_its_minute_reads_nothing(
    aws: dict[str, Any], queue: RunQueue
) -> None:
    # Given jobs ticked through 10:19 (every lock free)
    dynamodb = Recording(aws["dynamodb"])
    store = Store(dynamodb, TABLE, SHARDS)
    [create_job(store) for _ in range(3)]
    part(store, queue, "2026-01-30T10:19:00")
    drain(aws["sqs"], aws["queue_url"])
    dynamodb.calls.clear()
    # When the late 10:18 part runs
    report = part(store, queue, "2026-01-30T10:18:00")
    # Then it took and let go of each lock, and read and wrote no due item
    assert (report.due, report.queued) == (0, 0)
    due_pks = [
        c["ExpressionAttributeValues"][":pk"]["S"]
        for n, c in dynamodb.calls
        if n == "query" and ":pk" in c["ExpressionAttributeValues"]
    ]
    assert due_pks == []
    assert not [n for n, _ in dynamodb.calls if n == "batch_write_item"]
    assert all(lock_of(aws, s)["done_through"] == epoch("2026-01-30T10:19") for s in range(SHARDS))


class Killed(BaseException):
    """The part's Lambda dies: no `finally` of its own runs any more."""


def test_a_holder_that_died_is_taken_over_after_its_lease_and_nothing_is_lost_or_doubled(
    aws: dict[str, Any], queue: RunQueue, runner: CountingRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given per-minute jobs ticked at 10:18, and the 10:19 part dying after it sent its runs,
    # before it put their successors or let go of its locks
    clock = Clock(utc("2026-01-30T10:18:02"))
    store = Store(aws["dynamodb"], TABLE, SHARDS, clock=clock)
    jobs = [create_job(store) for _ in range(4)]
    part(store, queue, "2026-01-30T10:18:00")
    clock.now = epoch("2026-01-30T10:19:02")

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise Killed()

    with monkeypatch.context() as patch:
        patch.setattr(store, "put_due", killed)
        patch.setattr(store, "release_tick_lock", killed)
        with pytest.raises(Killed):
            part(store, queue, "2026-01-30T10:19:00")
    run_worker(aws, store, queue)  # the runs it sent

    # When the 10:20 part finds the locks held (the lease is live) it leaves them to the
    # parts after it
    clock.now = epoch("2026-01-30T10:20:02")
    assert set(part(store, queue, "2026-01-30T10:20:00").deferred) == set(range(SHARDS))
    # And when the 10:22 part comes after the lease ended, it takes over and catches up
    clock.now = epoch("2026-01-30T10:19:02") + LOCK_LEASE_SECONDS + 1
    report = part(store, queue, "2026-01-30T10:22:00")
    assert report.queued == len(jobs)
    run_worker(aws, store, queue)

    # Then every occurrence has exactly one record, and none ran twice: 10:18 and 10:19 ran
    # (the dead part had sent it), 10:20 and 10:21 were recorded missed (superseded), 10:22 ran
    for job in jobs:
        records = {r.run_id[:13]: r.status for r in runs_of(store, job)}
        assert records == {
            "20260130T1018": "succeeded",
            "20260130T1019": "succeeded",
            "20260130T1020": "missed",
            "20260130T1021": "missed",
            "20260130T1022": "succeeded",
        }
    assert set(runner.calls.values()) == {1}
    # And the chain goes on: the next minute runs each job once more
    clock.advance(60)
    assert part(store, queue, "2026-01-30T10:23:00").queued == len(jobs)


def test_a_part_that_fails_mid_way_lets_go_without_advancing_the_watermark(
    aws: dict[str, Any], queue: RunQueue, runner: CountingRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given per-minute jobs ticked at 10:18, and the 10:19 part failing to put the successors
    store = Store(aws["dynamodb"], TABLE, SHARDS)
    jobs = [create_job(store) for _ in range(3)]
    part(store, queue, "2026-01-30T10:18:00")
    before = {s: lock_of(aws, s)["done_through"] for s in range(SHARDS)}

    def throttled(entries: Any) -> Any:
        from chalicelib.errors import ServiceUnavailable

        raise ServiceUnavailable("the job store is busy; retry shortly")

    with monkeypatch.context() as patch:
        patch.setattr(store, "put_due", throttled)
        with pytest.raises(Exception, match="busy"):
            part(store, queue, "2026-01-30T10:19:00")

    # Then every lock is free and no watermark moved: the 10:19 slot is read again
    for shard in range(SHARDS):
        assert "holder" not in lock_of(aws, shard)
        assert lock_of(aws, shard)["done_through"] == before[shard]
    assert part(store, queue, "2026-01-30T10:19:00").queued == len(jobs)
    run_worker(aws, store, queue)
    assert runner.calls == Counter(
        {(j.id, f"20260130T10{m}00Z-s"): 1 for j in jobs for m in (18, 19)}
    )


def test_a_catch_up_after_an_outage_of_days_reads_a_day_of_slots_a_part(
    aws: dict[str, Any], queue: RunQueue, runner: CountingRunner
) -> None:
    # Given a per-minute job ticked at 10:18, then no tick for two days
    dynamodb = Recording(aws["dynamodb"])
    store = Store(dynamodb, TABLE, SHARDS)
    job = create_job(store)
    shard = shard_of(job.id, SHARDS)
    part(store, queue, "2026-01-30T10:18:00")
    run_worker(aws, store, queue)
    dynamodb.calls.clear()

    # When the part of 2026-02-01T10:18 runs
    first = part(store, queue, "2026-02-01T10:18:00")

    # Then it read a day of slot partitions a shard (one Query each), ran the latest
    # occurrence and recorded a bounded number missed, as decide() collapses them
    slot_queries = [
        c
        for n, c in dynamodb.calls
        if n == "query"
        and c["ExpressionAttributeValues"].get(":pk", {}).get("S", "").count("#") == 2
    ]
    assert len(slot_queries) == SHARDS * MAX_SLOTS
    assert (first.queued, first.missed) == (1, MAX_MISSED_RECORDS)
    assert lock_of(aws, shard)["done_through"] == epoch("2026-01-31T10:18")
    # And the next parts go on a day at a time until they are current, the job's chain intact
    second = part(store, queue, "2026-02-01T10:19:00")
    assert (second.due, lock_of(aws, shard)["done_through"]) == (0, epoch("2026-02-01T10:18"))
    third = part(store, queue, "2026-02-01T10:20:00")
    assert (third.queued, third.missed) == (1, 1)
    assert lock_of(aws, shard)["done_through"] == epoch("2026-02-01T10:20")
    run_worker(aws, store, queue)
    records = {r.run_id[:13]: r.status for r in store.list_runs(job.id, 200)[0]}
    assert records["20260201T1018"] == "succeeded"
    assert records["20260201T1019"] == "missed"
    assert records["20260201T1020"] == "succeeded"
    assert runner.calls[(job.id, "20260201T102000Z-s")] == 1


# --- legacy items and the rare paths that read the job -------------------------------------------


def legacy_item(job: Job) -> dict[str, Any]:
    """The due item the previous release wrote for `job`: its key and names, no schedule."""
    assert job.next is not None
    return {
        **due_key(shard_of(job.id, SHARDS), job.next, job.id, job.version),
        "account": {"S": job.account},
        "group": {"S": job.group},
        "id": {"S": job.id},
        "version": {"N": str(job.version)},
    }


def test_a_legacy_due_item_is_decided_from_its_job_and_moves_on_with_the_schedule(
    aws: dict[str, Any], queue: RunQueue, runner: CountingRunner
) -> None:
    # Given a job whose due item an earlier release wrote (no schedule in it)
    dynamodb = Recording(aws["dynamodb"])
    store = Store(dynamodb, TABLE, SHARDS)
    job = create_job(store)
    aws["dynamodb"].put_item(TableName=TABLE, Item=legacy_item(job))

    # When two minutes tick
    first = part(store, queue, "2026-01-30T10:18:00")
    gets = [c for n, c in dynamodb.calls if n == "batch_get_item"]
    dynamodb.calls.clear()
    second = part(store, queue, "2026-01-30T10:19:00")

    # Then the first read the job (once) and wrote the successor with the schedule; the
    # second read no job; the job ran each minute once
    assert len(gets) == 1 and (first.queued, second.queued) == (1, 1)
    assert not [n for n, _ in dynamodb.calls if n == "batch_get_item"]
    successor = aws["dynamodb"].get_item(
        TableName=TABLE,
        Key=slot_key(shard_of(job.id, SHARDS), utc("2026-01-30T10:20"), job.id, job.version),
    )["Item"]
    assert successor["schedule_expression"] == {"S": "* * * * *"}
    run_worker(aws, store, queue)
    assert runner.calls == Counter({(job.id, f"20260130T10{m}00Z-s"): 1 for m in (18, 19)})


def test_a_legacy_due_item_of_a_job_changed_since_is_dropped_at_the_tick(
    aws: dict[str, Any], store: Store, queue: RunQueue
) -> None:
    # Given a legacy due item (in place of the API's) of a job deleted since
    job = create_job(store)
    aws["dynamodb"].put_item(TableName=TABLE, Item=legacy_item(job))
    store.delete_job(store.get_job(job.account, job.group, job.id))
    # When the tick runs, then nothing is sent and the item is gone
    report = part(store, queue, "2026-01-30T10:18:00")
    assert (report.queued, report.dropped) == (0, 1)
    assert drain(aws["sqs"], aws["queue_url"]) == []
    assert job.next is not None
    key = due_key(shard_of(job.id, SHARDS), job.next, job.id, job.version)
    assert "Item" not in aws["dynamodb"].get_item(TableName=TABLE, Key=key)


def test_missed_occurrences_of_a_version_changed_since_are_not_recorded_and_its_chain_stops(
    aws: dict[str, Any], queue: RunQueue, runner: CountingRunner
) -> None:
    # Given a per-minute job ticked at 10:18, then disabled, and the next tick an hour late
    store = Store(aws["dynamodb"], TABLE, SHARDS)
    job = create_job(store)
    part(store, queue, "2026-01-30T10:18:00")
    run_worker(aws, store, queue)
    previous = store.get_job(job.account, job.group, job.id)
    disabled = job_from_request(
        {**job.to_api(), "enabled": False},
        account=job.account,
        group=job.group,
        job_id=job.id,
        entry=REGISTRY.get("spinup"),  # type: ignore[arg-type]
        now=utc("2026-01-30T10:18:30"),
        previous=previous,
    )
    store.replace_job(disabled, previous)

    # When the 11:19 part decides the old version's 10:19 item (missed occurrences: it reads
    # the job to confirm the version)
    report = part(store, queue, "2026-01-30T11:19:00")

    # Then nothing is sent or recorded for the old version, and nothing is due after
    assert (report.queued, report.missed, report.dropped) == (0, 0, 1)
    assert drain(aws["sqs"], aws["queue_url"]) == []
    assert [r.run_id for r in runs_of(store, job)] == ["20260130T101800Z-s"]
    assert part(store, queue, "2026-01-30T11:20:00").due == 0


def test_a_slot_item_whose_decision_fails_stays_due_as_a_queued_item(
    aws: dict[str, Any], queue: RunQueue, runner: CountingRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two per-minute jobs past their first tick, and decide() failing for one of them
    import chalicelib.tick as tick_module

    store = Store(aws["dynamodb"], TABLE, SHARDS)
    good, unlucky = create_job(store), create_job(store)
    part(store, queue, "2026-01-30T10:18:00")
    run_worker(aws, store, queue)
    real_decide = tick_module.decide

    def failing_decide(job: Job, schedule: Any, minute: datetime) -> Any:
        if job.id == unlucky.id:
            raise ZeroDivisionError("a bug")
        return real_decide(job, schedule, minute)

    with monkeypatch.context() as patch:
        patch.setattr(tick_module, "decide", failing_decide)
        # When the 10:19 part runs: it completes, the other job runs
        report = part(store, queue, "2026-01-30T10:19:00")
        assert (report.queued, report.unschedulable) == (1, 1)
    # Then the unlucky job's item is read again by later parts (its slot is passed) and
    # runs once the bug is gone
    later = part(store, queue, "2026-01-30T10:20:00")
    assert later.queued == 2
    messages, _ = run_worker(aws, store, queue)
    assert sorted((b["job_id"], b["run_id"]) for b in bodies(messages)) == sorted(
        [
            (good.id, "20260130T101900Z-s"),
            (good.id, "20260130T102000Z-s"),
            (unlucky.id, "20260130T102000Z-s"),
        ]
    )


# --- what the API derives ------------------------------------------------------------------------


def test_next_moves_on_once_the_tick_has_passed_the_slot_before_the_run_is_claimed(
    aws: dict[str, Any], queue: RunQueue, runner: CountingRunner
) -> None:
    # Given a per-minute job that ran at 10:18, the time 10:19:30
    clock = Clock(utc("2026-01-30T10:19:30"))
    store = Store(aws["dynamodb"], TABLE, SHARDS, clock=clock)
    job = create_job(store)
    part(store, queue, "2026-01-30T10:18:00")
    run_worker(aws, store, queue)
    # Then before the 10:19 tick its next is 10:19
    assert stored_next(store, job) == utc("2026-01-30T10:19")
    # And once the 10:19 part has taken its slot item (its run not yet claimed), 10:20
    part(store, queue, "2026-01-30T10:19:00")
    assert stored_next(store, job) == utc("2026-01-30T10:20")
    # And after the run, still 10:20 (from the run records)
    run_worker(aws, store, queue)
    assert stored_next(store, job) == utc("2026-01-30T10:20")


# --- the run message -----------------------------------------------------------------------------


def test_a_run_message_carries_its_version_and_successor_and_old_bodies_stay_valid() -> None:
    base = {
        "account": "spinup",
        "group": "nightly",
        "job_id": "5f14b5b0-9dca-4d8b-9056-1d1583bf6ffa",
        "run_id": "20260130T101800Z-s",
        "trigger": "schedule",
        "scheduled_for": "2026-01-30T10:18:00Z",
    }
    old = RunMessage.from_body(json.dumps(base))
    assert (old.version, old.next_due) == (None, None)
    assert json.loads(old.to_body()) == {**base, "attempt": 1}
    new = RunMessage.from_body(json.dumps({**base, "version": 3, "next_due": 1769768340}))
    assert (new.version, new.next_due) == (3, 1769768340)
    assert RunMessage.from_body(new.to_body()) == new
    for bad in ({"version": "3"}, {"version": 0}, {"version": True}, {"next_due": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RunMessage.from_body(json.dumps({**base, **bad}))


def test_the_tick_names_the_version_and_the_successor_in_each_message(
    aws: dict[str, Any], store: Store, queue: RunQueue
) -> None:
    job = create_job(store)
    part(store, queue, "2026-01-30T10:18:00")
    [body] = bodies(drain(aws["sqs"], aws["queue_url"]))
    assert (body["version"], body["next_due"]) == (job.version, epoch("2026-01-30T10:19"))
    assert datetime.fromtimestamp(body["next_due"], tz=UTC) == utc("2026-01-30T10:19")
