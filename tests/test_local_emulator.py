"""The embedded emulator behaves as DynamoDB where minion relies on it: one request at a time."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.store import table_definition
from local.emulator import EmbeddedMotoServer


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    server = EmbeddedMotoServer(_free_port(), wrap=lambda app: app)
    server.start()
    host, port = server.get_host_and_port()
    try:
        client = boto3.client(
            "dynamodb",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(max_pool_connections=50, retries={"max_attempts": 1}),
        )
        client.create_table(**table_definition("race"))
        yield client
    finally:
        server.stop()


def test_conditional_writes_of_one_item_arriving_at_once_let_exactly_one_through(
    dynamodb: Any,
) -> None:
    # Given many threads, each about to take the same item with a conditional write (as the
    # worker's concurrent runs take a Forbid job's hold, or a run's claim)
    winners: list[int] = []
    refused: list[int] = []
    start = threading.Barrier(24)

    def take(rounds: int, who: int) -> None:
        start.wait()
        try:
            dynamodb.update_item(
                TableName="race",
                Key={"pk": {"S": f"JOB#{rounds}"}, "sk": {"S": "HOLD"}},
                UpdateExpression="SET holder = :me",
                ConditionExpression="attribute_not_exists(holder)",
                ExpressionAttributeValues={":me": {"N": str(who)}},
            )
            winners.append(who)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ConditionalCheckFailedException"
            refused.append(who)

    # (the interpreter switches threads as often as it can, so a check-then-write that is not
    # atomic is interleaved)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _race(take, winners, refused, dynamodb)
    finally:
        sys.setswitchinterval(interval)


def _race(take: Any, winners: list[int], refused: list[int], dynamodb: Any) -> None:
    for rounds in range(5):
        winners.clear()
        refused.clear()
        threads = [threading.Thread(target=take, args=(rounds, who)) for who in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Then exactly one took it, every other write was refused by its condition
        assert len(winners) == 1, (rounds, winners)
        assert len(refused) == 23
        [item] = dynamodb.query(
            TableName="race",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"JOB#{rounds}"}},
        )["Items"]
        assert item["holder"]["N"] == str(winners[0])
