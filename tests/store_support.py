"""Shared test helpers over the moto table and the stored records: one copy of each.

Fixtures stay in conftest.py; these are plain functions and classes a test imports.
"""

from __future__ import annotations

from typing import Any

from chalicelib.accounts import AccountEntry, Registry
from chalicelib.jobs import Job, job_from_request
from chalicelib.runs import Run
from chalicelib.store import Store
from conftest import ACCOUNTS, TABLE, utc

# The registry of the test settings (conftest.ACCOUNTS), for use cases built by hand.
REGISTRY = Registry.from_document(ACCOUNTS)
# The minute the tick and worker tests create their jobs in: their next occurrence is 10:18.
CREATED = "2026-01-30T10:17:20"


def registry_entry(account: str, registry: Registry = REGISTRY) -> AccountEntry:
    """The registry entry of an account the test knows is there."""
    entry = registry.get(account)
    assert entry is not None, f"no registry entry for {account}"
    return entry


def create_job(
    store: Store,
    expression: str = "* * * * *",
    created: str = CREATED,
    account: str = "spinup",
    **fields: Any,
) -> Job:
    """A job validated as the API does (`job_from_request`) and stored."""
    body = {
        "name": "test-job",
        "schedule_expression": expression,
        "enabled": True,
        "details": {"runner": "dummyRunner"},
        **fields,
    }
    job = job_from_request(
        body,
        account=account,
        group="nightly",
        job_id=None,
        entry=registry_entry(account),
        now=utc(created),
    )
    store.create_job(job)
    return job


def stored_run(store: Store, job_id: str, run_id: str) -> Run:
    """A run record the test expects to be stored (fails the test when it is not)."""
    run = store.get_run(job_id, run_id)
    assert run is not None, f"run {run_id} of job {job_id} is not stored"
    return run


def table_items(aws: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item of the test table (jobs, runs, counters), in key order."""
    items = aws["dynamodb"].scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


class Recording:
    """A real boto3 client that records every call it passes through: `calls` holds
    (operation, arguments), `answers` (operation, answer), in order."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method):
            return method

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            answer = method(**kwargs)
            self.answers.append((name, answer))
            return answer

        return call
