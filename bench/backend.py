"""The backend of every measurement: moto's server over HTTP, the service's environment, and
the service's own wiring (`chalicelib.deps`) pointed at it; plus what the bench observes on
the service's real clients (calls and items read) and how it seeds data fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"
ACCOUNT = "spinup"
# The service's defaults, written out so that both sides of a ratio use the same numbers.
SHARDS = 16
TICK_PARALLELISM = 8
BATCH_WRITE_SIZE = 25


def service_environment(endpoint: str) -> dict[str, str]:
    """What the three functions find in their environment, pointed at the emulator."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "MINION_TOKENS": TOKEN,
        "MINION_ACCOUNTS": json.dumps({"accounts": {ACCOUNT: {"runners": ["dummyRunner"]}}}),
        "MINION_SHARDS": str(SHARDS),
        "MINION_TICK_PARALLELISM": str(TICK_PARALLELISM),
        "POWERTOOLS_SERVICE_NAME": "minion",
        "POWERTOOLS_METRICS_NAMESPACE": "Minion",
    }


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server in a child process (see bench/server.py); yields its endpoint URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.server"],
        cwd=ROOT,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"moto's server did not start (said {port!r})")
        yield f"http://127.0.0.1:{port}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Backend:
    """One table and one queue on the emulator, and the service's wiring switched to them."""

    def __init__(self, table: str, queue: str) -> None:
        from chalicelib import aws
        from chalicelib.store import table_definition

        self.table = table
        self.queue = queue
        aws.client("dynamodb").create_table(**table_definition(table))
        self.queue_url = aws.client("sqs").create_queue(QueueName=queue)["QueueUrl"]
        self.use()

    def use(self) -> None:
        """Point the service at this table and queue (a fresh Lambda environment)."""
        from chalicelib import deps

        os.environ["MINION_TABLE"] = self.table
        os.environ["MINION_QUEUE_NAME"] = self.queue
        deps.reset()
        if "app" in sys.modules:
            sys.modules["app"]._api.cache_clear()

    @property
    def dynamodb(self) -> Any:
        """The service's own DynamoDB client (both sides of a ratio share its connections)."""
        from chalicelib import aws

        return aws.client("dynamodb")

    @property
    def sqs(self) -> Any:
        """The service's own SQS client."""
        from chalicelib import aws

        return aws.client("sqs")

    def put_items(self, items: Sequence[dict[str, Any]], parallelism: int = 4) -> None:
        """Write items with BatchWriteItem (25 a call, unprocessed ones again), in parallel."""

        def write(chunk: Sequence[dict[str, Any]]) -> None:
            requests = {self.table: [{"PutRequest": {"Item": item}} for item in chunk]}
            while requests:
                requests = (
                    self.dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems")
                    or {}
                )

        chunks = [items[i : i + BATCH_WRITE_SIZE] for i in range(0, len(items), BATCH_WRITE_SIZE)]
        with ThreadPoolExecutor(max_workers=parallelism) as pool:
            list(pool.map(write, chunks))

    def clear_next(self, jobs: Sequence[Any], next_at: datetime) -> None:
        """Delete the due items a tick (or the floor) put at `next_at` for `jobs` (in their
        slot, or queued), and every shard's tick lock, so that the same minute ticks again."""
        from chalicelib.store import DueEntry, shard_of, tick_lock_key

        entries = [
            DueEntry(shard_of(j.id, SHARDS), next_at, j.account, j.group, j.id, j.version)
            for j in jobs
        ]
        keys = [e.key() for e in entries] + [e.moved_to(next_at).key() for e in entries]
        keys += [tick_lock_key(shard) for shard in range(SHARDS)]
        for start in range(0, len(keys), BATCH_WRITE_SIZE):
            requests = {
                self.table: [
                    {"DeleteRequest": {"Key": k}} for k in keys[start : start + BATCH_WRITE_SIZE]
                ]
            }
            while requests:
                requests = (
                    self.dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems")
                    or {}
                )

    def purge(self) -> None:
        """Empty the queue: moto's SQS slows down as a queue fills."""
        self.sqs.purge_queue(QueueUrl=self.queue_url)

    def receive_all(self, expected: int) -> list[dict[str, Any]]:
        """Receive (and delete) `expected` messages, as Lambda's event source would."""
        received: list[dict[str, Any]] = []
        for _ in range(expected + 20):
            if len(received) >= expected:
                break
            page = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
            ).get("Messages", [])
            if page:
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(page)
                    ],
                )
            received.extend(page)
        if len(received) != expected:
            raise RuntimeError(
                f"expected {expected} messages on {self.queue}, received {len(received)}"
            )
        return received

    def sqs_event(self, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The SQS event Lambda's event source hands the worker for received messages."""
        arn = f"arn:aws:sqs:us-east-1:123456789012:{self.queue}"
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": "us-east-1",
                }
                for m in messages
            ]
        }


def scheduled_event(minute: datetime) -> dict[str, Any]:
    """The EventBridge scheduled event the tick Lambda receives for `minute`."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": minute.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/minion-dev-tick"],
        "detail": {},
    }


class CallLog:
    """Calls made through a real boto3 client, and the DynamoDB items its reads touched.

    Observed on the client's own `after-call` events: `ScannedCount` of a Query or Scan is
    what DynamoDB read (and bills) before any filter, `Count` what it returned.
    """

    def __init__(self, *clients: Any) -> None:
        self.clients = clients
        self.calls: Counter[str] = Counter()
        self.items_read = 0
        self._lock = threading.Lock()

    def _after_call(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        read = 0
        if model.name in ("Query", "Scan"):
            read = parsed.get("ScannedCount", parsed.get("Count", 0))
        elif model.name == "GetItem":
            read = 1
        elif model.name == "BatchGetItem":
            read = sum(len(items) for items in parsed.get("Responses", {}).values())
        elif model.name == "TransactGetItems":
            read = len(parsed.get("Responses", []))
        with self._lock:
            self.calls[model.name] += 1
            self.items_read += read

    def __enter__(self) -> CallLog:
        for client in self.clients:
            client.meta.events.register(
                "after-call", self._after_call, unique_id=f"bench-call-log-{id(self)}"
            )
        return self

    def __exit__(self, *_: Any) -> None:
        for client in self.clients:
            client.meta.events.unregister("after-call", unique_id=f"bench-call-log-{id(self)}")
