"""The tick: DynamoDB items it reads per due job, and its wall time against its floor.

The tick measured is the work of every part of a minute in one process (`run_part` over all
shards: a part does the same per due job, over fewer shards), on jobs the API stored (queued
due items: a job's first run after an API write, the dearer case by a delete). The floor is
the same calls made bare, with the tick's parallelism: per shard, the take and the release of
its lock (two UpdateItems), one Query of its queued items and one of its minute's slot; one
SendMessageBatch per 10 due jobs and, per 25, one BatchWriteItem putting their successors in
their slots and one deleting the queued items read. What is left is the tick's own work
(deciding, building messages). The timed table holds only the due jobs (what the tick reads is
counted apart, over a table of 20,000 jobs).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from chalicelib import deps
from chalicelib.queue import RunMessage, batches
from chalicelib.runs import scheduled_run_id
from chalicelib.store import due_entry_of, slot_of, tick_lock_key
from chalicelib.tick import TickReport, run_part

from .backend import SHARDS, TICK_PARALLELISM, Backend, CallLog
from .seed import MINUTE, bench_job, due_items, later_items, median, timed_with_cpu

NEXT_DAY = MINUTE + timedelta(days=1)


def tick_all() -> TickReport:
    """Every part of MINUTE's tick, in this process."""
    return run_part(deps.ticker(), MINUTE)


@dataclass
class ItemsRead:
    """Items read by one tick over a large table, and by a full scan of the same table."""

    jobs: int
    due: int
    tick_items: int
    tick_calls: dict[str, int]
    scan_items: int
    scan_calls: int

    @property
    def per_due_job(self) -> float:
        return self.tick_items / self.due

    @property
    def scan_per_due_job(self) -> float:
        return self.scan_items / self.due


def items_read(jobs: int, due: int) -> ItemsRead:
    """`jobs` stored jobs, `due` of them due: what the real tick reads to find them."""
    backend = Backend("bench-items", "bench-items-runs")
    backend.put_items(due_items(due) + later_items(jobs - due, first=due))
    # What a scheduler that looks at every job does (minion's Go version, Instance Scheduler):
    # read the whole table each interval and keep the due ones.
    scanned = calls = found = 0
    request: dict[str, Any] = {
        "TableName": backend.table,
        "FilterExpression": "due_at <= :minute",
        "ExpressionAttributeValues": {":minute": {"N": str(int(MINUTE.timestamp()))}},
    }
    while True:
        page = backend.dynamodb.scan(**request)
        calls += 1
        scanned += page["ScannedCount"]
        found += page["Count"]
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    if found != due:
        raise RuntimeError(f"the scan found {found} due jobs; {due} were seeded")
    with CallLog(backend.dynamodb, backend.sqs) as log:
        report = tick_all()
    if report.due != due or report.queued != due:
        raise RuntimeError(
            f"the tick found {report.due} due jobs and queued {report.queued}; {due} were seeded"
        )
    backend.purge()
    return ItemsRead(
        jobs=jobs,
        due=due,
        tick_items=log.items_read,
        tick_calls=dict(log.calls),
        scan_items=scanned,
        scan_calls=calls,
    )


@dataclass
class TickTimes:
    """Paired wall times of the tick and of its floor, one pair per round."""

    due: int
    tick: list[float]
    floor: list[float]
    tick_cpu: list[float]
    floor_cpu: list[float]
    calls: dict[str, int]

    @property
    def ratio(self) -> float:
        return median([t / f for t, f in zip(self.tick, self.floor, strict=True)])


def tick_vs_floor(due: int, rounds: int) -> TickTimes:
    """The tick over `due` due jobs against the bare sends and writes, interleaved rounds."""
    backend = Backend("bench-tick", "bench-tick-runs")
    items = due_items(due)
    jobs = [bench_job(i, next_at=MINUTE) for i in range(due)]
    bodies = [
        RunMessage(
            account=j.account,
            group=j.group,
            job_id=j.id,
            run_id=scheduled_run_id(MINUTE),
            trigger="schedule",
            scheduled_for=MINUTE.strftime("%Y-%m-%dT%H:%M:%SZ"),
            version=j.version,
            next_due=int(NEXT_DAY.timestamp()),
        ).to_body()
        for j in jobs
    ]
    work = list(batches(list(zip(jobs, bodies, strict=True)), 25))
    dynamodb, sqs = backend.dynamodb, backend.sqs

    def send_and_advance(chunk: list[Any]) -> None:
        for batch in batches(chunk):
            result = sqs.send_message_batch(
                QueueUrl=backend.queue_url,
                Entries=[{"Id": str(i), "MessageBody": body} for i, (_, body) in enumerate(batch)],
            )
            assert not result.get("Failed")
        read = [due_entry_of(job, SHARDS) for job, _ in chunk]
        for requests in (
            [{"PutRequest": {"Item": e.moved_to(NEXT_DAY).to_item()}} for e in read if e],
            [{"DeleteRequest": {"Key": e.key()}} for e in read if e],
        ):
            answer = dynamodb.batch_write_item(RequestItems={backend.table: requests})
            assert not answer.get("UnprocessedItems")

    def query(pk: str, condition: str, values: dict[str, Any]) -> int:
        found = 0
        request: dict[str, Any] = {
            "TableName": backend.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": {":pk": {"S": pk}, **values},
            "ConsistentRead": True,
        }
        while True:
            page = dynamodb.query(**request)
            found += len(page["Items"])
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def lock(shard: int, taking: bool) -> None:
        expression = "SET holder = :me" if taking else "REMOVE holder"
        dynamodb.update_item(
            TableName=backend.table,
            Key=tick_lock_key(shard),
            UpdateExpression=expression,
            **({"ExpressionAttributeValues": {":me": {"S": "floor"}}} if taking else {}),
        )

    def read_shard(shard: int) -> int:
        lock(shard, taking=True)
        queued = query(
            f"DUE#{shard}",
            "pk = :pk AND sk < :bound",
            {":bound": {"S": f"{int(MINUTE.timestamp()) + 1:011d}"}},
        )
        return queued + query(f"DUE#{shard}#{slot_of(MINUTE):011d}", "pk = :pk", {})

    def floor() -> None:
        with ThreadPoolExecutor(max_workers=TICK_PARALLELISM) as pool:
            assert sum(pool.map(read_shard, range(SHARDS))) == due
            list(pool.map(send_and_advance, work))
            list(pool.map(lambda shard: lock(shard, taking=False), range(SHARDS)))

    def tick() -> None:
        report = tick_all()
        if report.queued != due:
            raise RuntimeError(f"the tick queued {report.queued} of {due} due jobs")

    def measure(side: Any, log: CallLog | None = None) -> tuple[float, float]:
        backend.put_items(items)  # every job due again
        backend.clear_next(jobs, NEXT_DAY)
        backend.purge()
        if log is None:
            return timed_with_cpu(side)
        with log:
            return timed_with_cpu(side)

    measure(tick), measure(floor)  # warm up: connections, caches, the queue URL
    log = CallLog(dynamodb, sqs)
    measure(tick, log)
    times: dict[Any, list[tuple[float, float]]] = {tick: [], floor: []}
    for round_ in range(rounds):
        for side in (tick, floor) if round_ % 2 == 0 else (floor, tick):
            times[side].append(measure(side))
    backend.purge()
    return TickTimes(
        due=due,
        tick=[w for w, _ in times[tick]],
        floor=[w for w, _ in times[floor]],
        tick_cpu=[c for _, c in times[tick]],
        floor_cpu=[c for _, c in times[floor]],
        calls=dict(log.calls),
    )
