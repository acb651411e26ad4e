"""Write units and AWS requests of one scheduled dummy run, end to end.

Jobs stored as the API stores them are due every minute from one minute on. Two minutes are
run: the first is each job's first run after the API wrote it, the second is what every later
run costs (the figure). Each minute, the scheduled tick fans the minute out, each part runs as
the part-tick function would (`handle_tick_parts` on the real SQS event), and the worker runs
what was queued (`handle_batch`, batches of 10 as Lambda's event source hands them over). Every
write call is observed on the service's own clients, and the write units it costs are computed
with DynamoDB's published rules from the items it writes: 1 unit per started KB of the larger
of the item before and after (a put, update or delete; a refused conditional write too), twice
that inside a transaction, and each write of a global secondary index counted the same way (an
index key change is a delete plus a put). The items before and after a call are read with a
separate client, outside the counts.
"""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib.runs import scheduled_run_id

from .backend import Backend, scheduled_event
from .seed import MINUTE, bench_job, stored_items

EVERY_MINUTE = "* * * * *"

KB = 1024
INDEX_KEYS = {"due": ("due_shard", "due_at")}  # the legacy index (chalicelib/store.py)
INDEX_PROJECTION = (
    "account",
    "group",
    "id",
    "schedule_expression",
    "schedule_timezone",
    "anchor",
    "starting_deadline_seconds",
    "enabled",
)


def attribute_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value, as DynamoDB sizes items."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = Decimal(inner).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in inner)
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: v}) for v in inner)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """Bytes of an item: its attribute names and values."""
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def units(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> int:
    """Write units of one item write: the larger of the item before and after, per KB."""
    return max(1, math.ceil(max(item_size(before), item_size(after)) / KB))


def index_units(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> int:
    """Write units of the legacy index for one item write."""
    total = 0
    for keys in INDEX_KEYS.values():
        was = before is not None and all(k in before for k in keys)
        now = after is not None and all(k in after for k in keys)
        projected = keys + INDEX_PROJECTION + ("pk", "sk")
        old, new = _view(before, projected), _view(after, projected)
        if was and now and any(old[k] != new[k] for k in keys):  # the item moved in the index
            total += units(old, None) + units(None, new)
        elif was and now:
            total += units(old, new) if old != new else 0
        elif was or now:
            total += units(old, new)
    return total


def _view(item: Mapping[str, Any] | None, projected: tuple[str, ...]) -> dict[str, Any]:
    """The attributes of `item` an index projects (none for no item)."""
    return {k: v for k, v in (item or {}).items() if k in projected}


@dataclass
class WriteCount:
    """Write units by (function, operation, item kind), and requests by (function, call), of
    one minute's runs."""

    runs: int
    units: Counter[tuple[str, str, str]]
    requests: Counter[tuple[str, str]]

    @property
    def per_run(self) -> float:
        return sum(self.units.values()) / self.runs

    @property
    def requests_per_run(self) -> float:
        return sum(self.requests.values()) / self.runs


@dataclass
class Minutes:
    """The first minute's runs (each job's first after the API wrote it) and the next
    minute's (every later run: what a scheduled run costs)."""

    first: WriteCount
    steady: WriteCount


def _kind(key: Mapping[str, Any]) -> str:
    pk, sk = key["pk"]["S"], key["sk"]["S"]
    if pk.startswith("DUE#"):
        if sk == "TICK":
            return "shard lock"
        return "slot item" if pk.count("#") == 2 else "queued item"
    if pk.startswith("ACCOUNT#"):
        return "job item"
    if pk.startswith("JOB#"):
        return "job copy" if sk == "SPEC" else "run item"
    return f"counter {sk}"


class WriteMeter:
    """Counts the write units of every write call made through the observed clients."""

    def __init__(self, table: str, reader: Any) -> None:
        self.table = table
        self.reader = reader
        self.function = "?"
        self.units: Counter[tuple[str, str, str]] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def _get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.reader.get_item(TableName=self.table, Key=dict(key), ConsistentRead=True).get(
            "Item"
        )

    def _writes(
        self, operation: str, params: Mapping[str, Any]
    ) -> list[tuple[str, dict[str, Any], dict[str, Any] | None, int]]:
        """(operation, key, new item or None, multiplier) of each item a call writes."""
        if operation in ("PutItem",):
            item = params["Item"]
            return [(operation, {"pk": item["pk"], "sk": item["sk"]}, item, 1)]
        if operation in ("UpdateItem", "DeleteItem"):
            return [(operation, params["Key"], None, 1)]
        if operation == "BatchWriteItem":
            found = []
            for request in params["RequestItems"].get(self.table, []):
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    found.append(("BatchWriteItem", {"pk": item["pk"], "sk": item["sk"]}, item, 1))
                else:
                    found.append(("BatchWriteItem", request["DeleteRequest"]["Key"], None, 1))
            return found
        if operation == "TransactWriteItems":
            found = []
            for action in params["TransactItems"]:
                ((kind, body),) = action.items()
                key = body.get("Key") or {"pk": body["Item"]["pk"], "sk": body["Item"]["sk"]}
                found.append(("TransactWriteItems", key, body.get("Item"), 2))
            return found
        return []

    def before(
        self, model: Any, params: Mapping[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        writes = self._writes(model.name, params)
        with self._lock:
            self.requests[(self.function, model.name)] += 1
        if writes:  # the request's context travels from before-call to after-call
            context["bench_units"] = [
                (op, key, self._get(key), times) for op, key, _, times in writes
            ]

    def after(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        for op, key, old, times in context.pop("bench_units", []):
            now = self._get(key)  # what the write left (the old item when it was refused)
            written = units(old, now)
            index = index_units(old, now)
            with self._lock:
                self.units[(self.function, op, _kind(key))] += times * written
                if index:
                    self.units[(self.function, op, "legacy index")] += times * index


def write_units_per_run(runs: int) -> Minutes:
    """`runs` jobs due every minute from MINUTE, as the API stored them: two minutes ticked,
    queued and run; the write units and requests of each minute."""
    import boto3

    from chalicelib import deps

    backend = Backend("bench-units", "bench-units-runs")
    parts_url = backend.sqs.create_queue(QueueName="bench-units-parts")["QueueUrl"]
    os.environ["MINION_TICK_PARTS_QUEUE_NAME"] = "bench-units-parts"
    os.environ["MINION_TICK_PARTS_QUEUE_URL"] = parts_url
    deps.reset()
    jobs = [bench_job(i, next_at=MINUTE, schedule=EVERY_MINUTE) for i in range(runs)]
    backend.put_items([item for job in jobs for item in stored_items(job)])
    reader = boto3.session.Session().client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    meters = []
    try:
        for minute in (MINUTE, MINUTE + timedelta(minutes=1)):
            meter = WriteMeter(backend.table, reader)
            _one_minute(backend, parts_url, meter, minute, runs)
            meters.append(meter)
            store = deps.store()
            run_id = scheduled_run_id(minute)
            if any(
                getattr(store.get_run(job.id, run_id), "status", None) != "succeeded"
                for job in jobs[:: max(1, runs // 10)]
            ):
                raise RuntimeError(f"not every sampled run of {run_id} succeeded")
    finally:
        os.environ.pop("MINION_TICK_PARTS_QUEUE_URL", None)
        os.environ.pop("MINION_TICK_PARTS_QUEUE_NAME", None)
        deps.reset()
    # The event source's receives and deletes are Lambda's calls, not the functions'.
    first, steady = (
        WriteCount(
            runs=runs,
            units=m.units,
            requests=Counter({k: n for k, n in m.requests.items() if k[0] != "event source"}),
        )
        for m in meters
    )
    return Minutes(first=first, steady=steady)


def _one_minute(
    backend: Backend, parts_url: str, meter: WriteMeter, minute: datetime, runs: int
) -> None:
    """The scheduled tick of `minute`, each of its parts as the part-tick function runs it
    (`handle_tick_parts` on the real SQS event), and the worker on what they queued
    (`handle_batch`, batches of 10 as Lambda's event source hands them over), observed by
    `meter`."""
    from chalicelib.tick import handle_tick, handle_tick_parts
    from chalicelib.worker import handle_batch

    clients = (backend.dynamodb, backend.sqs)
    for client in clients:
        client.meta.events.register(
            "before-parameter-build", meter.before, unique_id="bench-units-b"
        )
        client.meta.events.register("after-call", meter.after, unique_id="bench-units-a")
    try:
        meter.function = "tick"
        handle_tick(scheduled_event(minute))
        # Lambda's event sources receive and delete the messages: their calls are not the
        # functions'.
        meter.function = "event source"
        parts = backend.sqs.receive_message(
            QueueUrl=parts_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not parts:
            raise RuntimeError("the tick sent no part")
        meter.function = "tick_part"
        for part in parts:
            if handle_tick_parts(backend.sqs_event([part]))["batchItemFailures"]:
                raise RuntimeError("a tick part failed")
        meter.function = "event source"
        received = backend.receive_all(runs)
        meter.function = "worker"
        for start in range(0, len(received), 10):
            if handle_batch(backend.sqs_event(received[start : start + 10]))["batchItemFailures"]:
                raise RuntimeError("the worker reported failed runs")
    finally:
        for client in clients:
            client.meta.events.unregister("before-parameter-build", unique_id="bench-units-b")
            client.meta.events.unregister("after-call", unique_id="bench-units-a")
