"""The service's own boto3 clients (chalicelib/aws.py): one per service, created when used."""

from __future__ import annotations

import json
from typing import Any

import app as app_module
from chalicelib import aws as clients
from chalicelib import deps
from conftest import auth

DUMMY_JOB = {
    "name": "dummy",
    "details": {"runner": "dummyRunner"},
    "enabled": True,
    "schedule_expression": "0 9 * * *",
    "modified_by": "someone",
}


def test_each_service_has_one_cached_client_until_reset(aws: dict[str, Any]) -> None:
    # Given the clients of two services
    dynamodb, sqs = clients.client("dynamodb"), clients.client("sqs")

    # Then asking again gives the same clients, and a reset (new environment) new ones
    assert clients.client("dynamodb") is dynamodb
    assert clients.client("sqs") is sqs
    clients.reset_clients()
    assert clients.client("dynamodb") is not dynamodb


def test_a_get_of_a_job_creates_no_sqs_client(client: Any) -> None:
    # Given a job created through the API, and the clients forgotten (a fresh API Lambda)
    created = client.http.post(
        "/v1/minion/spinup/jobs/space-xy", headers=auth(), body=json.dumps(DUMMY_JOB)
    ).json_body
    deps.reset()
    app_module._api.cache_clear()

    # When it is read
    response = client.http.get(f"/v1/minion/spinup/jobs/space-xy/{created['id']}", headers=auth())

    # Then it was read from DynamoDB, and no SQS client was built for the queue it never uses
    assert response.status_code == 200 and response.json_body["id"] == created["id"]
    assert "dynamodb" in clients._clients
    assert "sqs" not in clients._clients


def test_the_queue_uses_the_one_sqs_client_once_it_calls_sqs(aws: dict[str, Any]) -> None:
    # Given the runs queue, whose client is created on first use
    queue = deps.run_queue()

    # When it calls SQS (looking its URL up by name)
    url = queue.url

    # Then the call went through the service's cached SQS client, to the fixture's queue
    assert url == aws["queue_url"]
    assert "sqs" in clients._clients
    assert queue.client.meta is clients.client("sqs").meta
