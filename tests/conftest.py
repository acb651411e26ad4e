"""Shared fixtures: moto in-process AWS, the app's settings, Chalice's test client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from moto import mock_aws

from chalicelib import deps
from chalicelib.queue import RunQueue
from chalicelib.store import Store, table_definition
from runner_support import fake_credentials

TOKEN = "test-token-0123456789"
OLD_TOKEN = "old-token-9876543210"
ACCOUNTS = {
    "accounts": {
        "spinup": {"runners": ["dummyRunner", "instanceRunner"]},
        "limited": {"runners": ["dummyRunner"]},
    }
}
TABLE = "minion-test"
QUEUE = "minion-runs-test"
TICK_PARTS_QUEUE = "minion-tick-parts-test"
SHARDS = 4


@pytest.fixture(autouse=True)
def _fake_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test can reach real AWS: fake credentials, a fixed region, no endpoint override."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The service's environment for tests (tokens, registry, table and queue names)."""
    env = {
        "MINION_TOKENS": f"{TOKEN},{OLD_TOKEN}",
        "MINION_ACCOUNTS": json.dumps(ACCOUNTS),
        "MINION_TABLE": TABLE,
        "MINION_QUEUE_NAME": QUEUE,
        "MINION_SHARDS": str(SHARDS),
        "MINION_TICK_PARALLELISM": "4",
        "MINION_TICK_PARTS_QUEUE_NAME": TICK_PARTS_QUEUE,
    }
    for name in (
        "MINION_ACCOUNTS_FILE",
        "MINION_ACCOUNTS_PARAMETER",
        "MINION_TOKENS_SECRET_ID",
        "MINION_QUEUE_URL",
        "MINION_TICK_PARTS_QUEUE_URL",
        "MINION_TICK_PARTS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def aws(settings_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """moto in-process, with the table (and its due index) and the runs queue created."""
    with mock_aws():
        deps.reset()
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(**table_definition(TABLE))
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        parts_url = sqs.create_queue(QueueName=TICK_PARTS_QUEUE)["QueueUrl"]
        yield {
            "dynamodb": dynamodb,
            "sqs": sqs,
            "queue_url": queue_url,
            "tick_parts_url": parts_url,
        }
        deps.reset()


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The runner and credential tests' AWS: fake credentials (no profile or endpoint), one
    region, and moto's in-process AWS with Lambda run without Docker; no table or queue."""
    fake_credentials(monkeypatch)
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield


@pytest.fixture
def store(aws: dict[str, Any]) -> Store:
    """The job store over the test table."""
    return Store(aws["dynamodb"], TABLE, SHARDS)


@pytest.fixture
def queue(aws: dict[str, Any]) -> RunQueue:
    """The runs queue of the test stack."""
    return RunQueue(aws["sqs"], QUEUE, aws["queue_url"])


@pytest.fixture
def client(aws: dict[str, Any]) -> Iterator[Any]:
    """Chalice's own test client over the real app, backed by moto."""
    from chalice.test import Client

    import app as app_module

    app_module._api.cache_clear()
    with Client(app_module.app) as test_client:
        yield test_client
    app_module._api.cache_clear()


def auth(token: str = TOKEN, **headers: str) -> dict[str, str]:
    """Request headers with a token (and JSON content type)."""
    return {"X-Auth-Token": token, "Content-Type": "application/json", **headers}


def utc(text: str) -> datetime:
    """`2026-01-30T10:17` (or with seconds) as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def scheduled_event(minute: str) -> dict[str, Any]:
    """A real EventBridge scheduled-event payload for a given minute (ISO, UTC)."""
    return {
        "version": "0",
        "id": "c7d4f8a2-0000-4000-8000-000000000000",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": minute if minute.endswith("Z") else minute + "Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/minion-dev-tick"],
        "detail": {},
    }


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A real SQS event payload from received messages (each keeps its own message id)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m.get("ReceiptHandle", "rh"),
                "body": m["Body"],
                "attributes": m.get(
                    "Attributes",
                    {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": "0",
                        "SenderId": "AIDAEXAMPLE",
                        "ApproximateFirstReceiveTimestamp": "0",
                    },
                ),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{QUEUE}",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def failed_ids(response: PartialItemFailureResponse) -> list[str]:
    """The message ids a partial batch response reports failed, sorted."""
    ids = []
    for failure in response["batchItemFailures"]:
        # Powertools types the identifier for Kafka too; an SQS batch's is its message id.
        identifier = failure["itemIdentifier"]
        assert isinstance(identifier, str), f"not an SQS message id: {identifier!r}"
        ids.append(identifier)
    return sorted(ids)


def drain(sqs: Any, queue_url: str, max_messages: int = 1000) -> list[dict[str, Any]]:
    """Receive and delete every visible message of a queue (keeps moto's SQS fast)."""
    received: list[dict[str, Any]] = []
    while len(received) < max_messages:
        page = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not page:
            return received
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(page)
            ],
        )
        received.extend(page)
    return received
