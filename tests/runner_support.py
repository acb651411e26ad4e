"""Shared test helpers for the runner and credential tests (moto in-process, botocore Stubber).

Their moto fixture, `moto_aws`, is in conftest.py: a test imports helpers, never fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.runners.base import RunContext

REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"  # moto's account for the fake credentials below
# A valid job's details for each runner of the spec (without the `runner` key).
EXAMPLES: dict[str, dict[str, str]] = {
    "dummyRunner": {},
    "instanceRunner": {"instance_id": "i-0123456789abcdef0", "instance_action": "stop"},
    "databaseRunner": {"instance_id": "reports-db", "database_action": "stop"},
    "serviceRunner": {
        "service_action": "scale",
        "service_cluster": "apps",
        "service_name": "web",
        "desired_count": "2",
    },
    "taskRunner": {
        "task_action": "run",
        "task_cluster": "apps",
        "task_name": "nightly:3",
        "count": "1",
        "subnets": "subnet-0123456789abcdef0",
    },
    "autoscalingRunner": {"group_name": "workers", "desired_capacity": "0", "min_size": "0"},
    "lambdaRunner": {"function_name": "cleanup", "payload": '{"dry_run": false}'},
}


def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials moto maps to account 123456789012, one region, no profile or endpoint."""
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")


def clients() -> Callable[[str], Any]:
    """A `client(service)` acting with the worker's (fake) credentials, one client per service."""
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = boto3.client(service, region_name=REGION)
        return cache[service]

    return client


def context(client: Callable[[str], Any] | None = None) -> RunContext:
    """A RunContext for account `team`, run `run-1`, acting through `client`."""
    return RunContext(account="team", run_id="run-1", job_id="job-1", client=client or clients())


def stubbed(service: str) -> tuple[RunContext, Stubber]:
    """A RunContext whose `service` client is a real boto3 client under an active Stubber;
    the test queues the exact answers (and AWS errors) it needs."""
    real = boto3.client(service, region_name=REGION)
    stubber = Stubber(real)
    stubber.activate()

    def client(name: str) -> Any:
        return real if name == service else pytest.fail(f"unexpected {name} client")

    return context(client), stubber


def fail_with(stubber: Stubber, operation: str, code: str, status: int = 400) -> None:
    """Queue the exact AWS error `code` (with HTTP `status`) as the answer to `operation`."""
    stubber.add_client_error(
        operation,
        service_error_code=code,
        service_message=f"{code} (stub)",
        http_status_code=status,
    )
