"""Accounts stay apart through the real API and worker (moto, Chalice's test client): job
details cannot reach another account or region, the worker acts for the key it read, a removed
account does not fall back to `*`, and a broken registry is a 503 and a message left for retry,
never a 500 or a silent worker (issue 12 points 4, 5, 6, 9; issue 13 point 2)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

from chalicelib import deps, runners
from chalicelib.accounts import AccountEntry, Registry, RegistryError
from chalicelib.jobs import Job, job_from_request
from chalicelib.queue import RunMessage, RunQueue
from chalicelib.runners import RunResult
from chalicelib.runners.dummy import DummyRunner
from chalicelib.runs import scheduled_run_id
from chalicelib.settings import get_settings
from chalicelib.store import Store, copy_key, job_key
from chalicelib.worker import Worker, handle_batch
from conftest import TABLE, auth, drain, sqs_event
from store_support import registry_entry, stored_run

ROLE = "arn:aws:iam::111122223333:role/minion-runner"
EXTERNAL_ID = "Zq0v7kQe3mT1rW9xY2bN5cD8fG4hJ6lP"
TEAM = {
    "runners": ["dummyRunner", "lambdaRunner", "serviceRunner"],
    "account_id": "111122223333",
    "role_arn": ROLE,
    "external_id": EXTERNAL_ID,
    "region": "us-east-1",
}
GROUP = "/v1/minion/team/jobs/space-xy"
NOW = datetime(2026, 1, 30, 10, 17, 20, tzinfo=UTC)
OCCURRENCE = datetime(2026, 1, 30, 10, 18, tzinfo=UTC)


def use_registry(monkeypatch: pytest.MonkeyPatch, document: Any, roles: str = ROLE) -> None:
    """The registry the API and worker load (MINION_ACCOUNTS), and the roles they may assume."""
    text = document if isinstance(document, str) else json.dumps(document)
    monkeypatch.setenv("MINION_ACCOUNTS", text)
    monkeypatch.setenv("MINION_RUNNER_ROLE_ARNS", roles)
    deps.reset()


def lambda_job(function_name: str) -> dict[str, Any]:
    return {
        "name": "invoke",
        "schedule_expression": "0 3 * * *",
        "enabled": True,
        "details": {"runner": "lambdaRunner", "function_name": function_name},
    }


# --- job details in another account or region: 400 at create and update (12.5) -----------------


@pytest.mark.parametrize(
    "function_name, said",
    [
        ("arn:aws:lambda:us-east-1:444455556666:function:cleanup", "account 444455556666"),
        ("444455556666:function:cleanup", "account 444455556666"),
        ("arn:aws:lambda:eu-west-1:111122223333:function:cleanup", "region eu-west-1"),
    ],
)
def test_a_function_of_another_account_or_region_is_refused_at_create(
    client: Any, store: Store, monkeypatch: pytest.MonkeyPatch, function_name: str, said: str
) -> None:
    use_registry(monkeypatch, {"accounts": {"team": TEAM}})
    answer = client.http.post(GROUP, headers=auth(), body=json.dumps(lambda_job(function_name)))
    assert answer.status_code == 400, answer.body
    message = json.loads(answer.body)["Message"]
    assert message.startswith("details.function_name: names a resource in ")
    assert said in message
    assert store.list_jobs("team") == []


def test_a_function_of_the_entrys_account_is_accepted_and_cannot_be_moved_out(
    client: Any, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_registry(monkeypatch, {"accounts": {"team": TEAM}})
    own = "arn:aws:lambda:us-east-1:111122223333:function:cleanup"
    created = client.http.post(GROUP, headers=auth(), body=json.dumps(lambda_job(own)))
    assert created.status_code == 200, created.body
    job_id = json.loads(created.body)["id"]
    # When a PUT points it at another account's function / Then 400, and the job is unchanged
    moved = client.http.put(
        f"{GROUP}/{job_id}",
        headers=auth(),
        body=json.dumps(lambda_job("arn:aws:lambda:us-east-1:444455556666:function:cleanup")),
    )
    assert moved.status_code == 400, moved.body
    assert json.loads(moved.body)["Message"].startswith("details.function_name: ")
    assert store.get_job("team", "space-xy", job_id).details["function_name"] == own


# --- a broken or missing registry: 503 naming it, nothing written, a metric (13.2) -----------------


@pytest.mark.parametrize(
    "document, said",
    [
        (
            '{"accounts": {"team": {"runners": ["dummyRunner"]},}}',
            "MINION_ACCOUNTS: malformed JSON: Expecting property name",
        ),
        (
            {"accounts": {"team": {"runner": ["dummyRunner"]}}},
            "MINION_ACCOUNTS: accounts.team.runner: unknown key (did you mean runners?)",
        ),
        (
            {"accounts": {"team": {**TEAM, "external_id": "optional"}}},
            "MINION_ACCOUNTS: accounts.team.external_id: expected at least 32 characters",
        ),
        (
            {"accounts": {"team": {**TEAM, "account_id": "1111"}}},
            "MINION_ACCOUNTS: accounts.team.account_id: expected 12 digits",
        ),
        (
            {"accounts": {"team": {**TEAM, "role_arn": "arn:aws:iam::111122223333:role/admin"}}},
            "MINION_ACCOUNTS: accounts.team.role_arn: not among the runner roles",
        ),
    ],
)
def test_a_broken_registry_answers_503_naming_the_key_and_writes_nothing(
    client: Any,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    document: Any,
    said: str,
) -> None:
    use_registry(monkeypatch, document)
    capsys.readouterr()
    listed = client.http.get("/v1/minion/team/jobs", headers=auth())
    created = client.http.post(GROUP, headers=auth(), body=json.dumps(lambda_job("cleanup")))
    for answer in (listed, created):
        assert answer.status_code == 503, answer.body
        body = json.loads(answer.body)
        assert body["Code"] == "ServiceUnavailableError"
        assert body["Message"].startswith(said), body
        assert EXTERNAL_ID not in body["Message"]
    assert store.list_jobs("team") == []
    # And a RegistryErrors metric was emitted for each (the alarm's metric)
    documents = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"_aws"')
    ]
    emitted = [
        d
        for d in documents
        if any(
            m["Name"] == "RegistryErrors"
            for directive in d["_aws"]["CloudWatchMetrics"]
            for m in directive["Metrics"]
        )
    ]
    assert len(emitted) == 2
    # When the registry is fixed / Then the next request works: a refusal is not cached
    monkeypatch.setenv("MINION_ACCOUNTS", json.dumps({"accounts": {"team": TEAM}}))
    get_settings.cache_clear()
    assert client.http.get("/v1/minion/team/jobs", headers=auth()).status_code == 200


@pytest.fixture
def registry_parameter(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The registry read from SSM, as deployed (Powertools' cache cleared around the test)."""
    from aws_lambda_powertools.utilities import parameters

    monkeypatch.delenv("MINION_ACCOUNTS", raising=False)
    monkeypatch.setenv("MINION_ACCOUNTS_PARAMETER", "/minion/accounts")
    monkeypatch.setenv("MINION_RUNNER_ROLE_ARNS", ROLE)
    deps.reset()
    parameters.clear_caches()
    yield "/minion/accounts"
    parameters.clear_caches()


def test_a_missing_registry_parameter_answers_503_naming_it(
    client: Any, registry_parameter: str
) -> None:
    answer = client.http.get("/v1/minion/team/jobs", headers=auth())
    assert answer.status_code == 503, answer.body
    assert json.loads(answer.body)["Message"].startswith(
        "SSM parameter /minion/accounts: cannot be read: ParameterNotFound"
    )
    # When it is created / Then the API serves at once
    boto3.client("ssm").put_parameter(
        Name=registry_parameter, Type="String", Value=json.dumps({"accounts": {"team": TEAM}})
    )
    assert client.http.get("/v1/minion/team/jobs", headers=auth()).status_code == 200


# --- the worker ------------------------------------------------------------------------------------


class Counting:
    """dummyRunner, counting its runs."""

    name = "dummyRunner"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def validate(self, details: Mapping[str, str]) -> None:
        DummyRunner().validate(details)

    def run(self, details: Mapping[str, str], ctx: Any) -> RunResult:
        self.calls[ctx.run_id] += 1
        return RunResult(output="ran")


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Counting:
    runner = Counting()
    monkeypatch.setitem(runners.RUNNERS, "dummyRunner", runner)
    return runner


def stored_job(store: Store, registry: Registry, account: str) -> Job:
    body = {
        "name": "nightly",
        "schedule_expression": "* * * * *",
        "enabled": True,
        "details": {"runner": "dummyRunner"},
    }
    job = job_from_request(
        body,
        account=account,
        group="space-xy",
        job_id=None,
        entry=registry_entry(account, registry),
        now=NOW,
    )
    store.create_job(job)
    return job


def deliver(
    aws: dict[str, Any], queue: RunQueue, job: Job, worker: Worker, account: str | None = None
) -> PartialItemFailureResponse:
    """Send the job's 10:18 run message (for `account`'s key) and hand it to the worker."""
    queue.send(
        RunMessage(
            account=account or job.account,
            group=job.group,
            job_id=job.id,
            run_id=scheduled_run_id(OCCURRENCE),
            trigger="schedule",
            scheduled_for="2026-01-30T10:18:00Z",
        )
    )
    return handle_batch(sqs_event(drain(aws["sqs"], aws["queue_url"])), worker=worker)


def make_worker(
    store: Store,
    queue: RunQueue,
    registry: Callable[[], Registry],
    entries: list[AccountEntry] | None = None,
) -> Worker:
    def clients(entry: AccountEntry, run_id: str) -> Callable[[str], Any]:
        if entries is not None:
            entries.append(entry)
        return lambda service: None

    return Worker(
        store=store,
        queue=queue,
        registry=registry,
        clients=clients,
        clock=lambda: datetime(2026, 1, 30, 10, 18, 5, tzinfo=UTC),
    )


def test_a_job_of_a_removed_account_is_skipped_not_run_under_the_default_entry(
    aws: dict[str, Any], store: Store, queue: RunQueue, counting: Counting
) -> None:
    # Given a job created under the account's own entry, and one created under `*`
    before = Registry.from_document(
        {"accounts": {"team": {"runners": ["dummyRunner"]}, "*": {"runners": ["dummyRunner"]}}}
    )
    own = stored_job(store, before, "team")
    default = stored_job(store, before, "guest")
    assert (own.registry_entry, default.registry_entry) == ("team", "*")
    # When the account's entry is removed, and both jobs' runs arrive
    after = Registry.from_document({"accounts": {"*": {"runners": ["dummyRunner"]}}})
    worker = make_worker(store, queue, lambda: after)
    for job in (own, default):
        assert deliver(aws, queue, job, worker) == {"batchItemFailures": []}
    # Then the removed account's run is skipped with the reason, the runner never called
    run = stored_run(store, own.id, scheduled_run_id(OCCURRENCE))
    assert (run.status, run.error) == (
        "skipped",
        (
            "account team is no longer in the account registry (its job was created under its "
            "own entry; the * entry does not take it over)"
        ),
    )
    # And the job created under `*` still runs under it
    assert stored_run(store, default.id, scheduled_run_id(OCCURRENCE)).status == "succeeded"
    assert sum(counting.calls.values()) == 1


def test_a_put_under_the_default_entry_keeps_the_jobs_own_entry(store: Store) -> None:
    before = Registry.from_document({"accounts": {"team": {"runners": ["dummyRunner"]}}})
    job = stored_job(store, before, "team")
    after = Registry.from_document({"accounts": {"*": {"runners": ["dummyRunner"]}}})
    body = {
        "name": "renamed",
        "schedule_expression": "* * * * *",
        "details": {"runner": "dummyRunner"},
    }
    replaced = job_from_request(
        body,
        account="team",
        group="space-xy",
        job_id=job.id,
        entry=registry_entry("team", after),
        now=NOW,
        previous=job,
    )
    assert replaced.registry_entry == "team"
    store.replace_job(replaced, job)
    assert store.get_job("team", "space-xy", job.id).registry_entry == "team"


def test_the_worker_acts_for_the_key_it_read_not_the_items_account_attribute(
    aws: dict[str, Any], store: Store, queue: RunQueue, counting: Counting
) -> None:
    # Given a job stored under account `team` whose items' own `account` attribute says `admin`,
    # an account acting through a powerful role
    registry = Registry.from_document(
        {
            "accounts": {
                "team": {"runners": ["dummyRunner"]},
                "admin": {
                    "runners": ["dummyRunner"],
                    "account_id": "111122223333",
                    "role_arn": ROLE,
                    "external_id": EXTERNAL_ID,
                },
            }
        }
    )
    job = stored_job(store, registry, "team")
    for key in (job_key("team", "space-xy", job.id), copy_key(job.id)):  # either may be read
        aws["dynamodb"].update_item(
            TableName=TABLE,
            Key=key,
            UpdateExpression="SET account = :a",
            ExpressionAttributeValues={":a": {"S": "admin"}},
        )
    entries: list[AccountEntry] = []
    worker = make_worker(store, queue, lambda: registry, entries)
    # When its run arrives under key `team`
    assert deliver(aws, queue, job, worker, account="team") == {"batchItemFailures": []}
    # Then it is skipped, saying why; nothing ran, no credentials were made for `admin`
    run = stored_run(store, job.id, scheduled_run_id(OCCURRENCE))
    assert (run.status, run.error) == (
        "skipped",
        f"job item names admin/space-xy/{job.id} but was read under team/space-xy/{job.id}",
    )
    assert counting.calls == Counter() and entries == []


def test_the_worker_passes_the_jobs_details_for_the_session_policy(
    aws: dict[str, Any], store: Store, queue: RunQueue, counting: Counting
) -> None:
    registry = Registry.from_document({"accounts": {"team": {"runners": ["dummyRunner"]}}})
    job = stored_job(store, registry, "team")
    entries: list[AccountEntry] = []
    deliver(aws, queue, job, make_worker(store, queue, lambda: registry, entries))
    [entry] = entries
    assert entry.name == "team" and entry.job_details == {"runner": "dummyRunner"}


def test_a_broken_registry_leaves_the_message_for_retry_logged_at_error(
    aws: dict[str, Any],
    store: Store,
    queue: RunQueue,
    counting: Counting,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a stored job, and a registry that can no longer be loaded
    good = Registry.from_document({"accounts": {"team": {"runners": ["dummyRunner"]}}})
    job = stored_job(store, good, "team")

    def broken() -> Registry:
        raise RegistryError("SSM parameter /minion/accounts: accounts.team.runner: unknown key")

    caplog.set_level(logging.INFO)
    # When its run arrives
    response = deliver(aws, queue, job, make_worker(store, queue, broken))
    # Then the message is reported failed (SQS delivers it again), nothing was claimed or run
    assert len(response["batchItemFailures"]) == 1
    assert store.get_run(job.id, scheduled_run_id(OCCURRENCE)) is None
    assert counting.calls == Counter()
    # And the failure is logged at ERROR with the job, the run and the registry's message
    [record] = [
        r for r in caplog.records if r.levelno == logging.ERROR and "registry" in r.getMessage()
    ]
    assert record.job_id == job.id  # type: ignore[attr-defined]
    assert record.run_id == scheduled_run_id(OCCURRENCE)  # type: ignore[attr-defined]
    assert "accounts.team.runner: unknown key" in record.reason  # type: ignore[attr-defined]
    # When the registry is fixed / Then the same run goes through
    assert deliver(aws, queue, job, make_worker(store, queue, lambda: good)) == {
        "batchItemFailures": []
    }
    assert stored_run(store, job.id, scheduled_run_id(OCCURRENCE)).status == "succeeded"


def test_the_deployed_worker_reads_the_registry_through_deps_and_leaves_the_message(
    aws: dict[str, Any],
    store: Store,
    queue: RunQueue,
    counting: Counting,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the worker as deployed (deps.worker), with a registry file holding a typo
    job = stored_job(
        store, Registry.from_document({"accounts": {"team": {"runners": ["dummyRunner"]}}}), "team"
    )
    use_registry(monkeypatch, '{"accounts": {"team": {"runners": ["dummyRunner"]},}}')
    queue.send(
        RunMessage(
            account="team",
            group=job.group,
            job_id=job.id,
            run_id=scheduled_run_id(OCCURRENCE),
            trigger="schedule",
            scheduled_for="2026-01-30T10:18:00Z",
        )
    )
    messages = drain(aws["sqs"], aws["queue_url"])
    # When the batch is handled / Then its message comes back, nothing written
    response = handle_batch(sqs_event(messages))
    assert response == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
    assert store.get_run(job.id, scheduled_run_id(OCCURRENCE)) is None


def test_an_entry_acting_in_the_stacks_own_account_refuses_another_accounts_function(
    client: Any, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the local default: `*`, no role, acting in the stack's own account (moto's)
    use_registry(monkeypatch, {"accounts": {"*": {"runners": ["*"]}}}, roles="")
    # When a job names a function of another account / Then 400, naming the key
    other = client.http.post(
        GROUP,
        headers=auth(),
        body=json.dumps(lambda_job("arn:aws:lambda:us-east-1:444455556666:function:cleanup")),
    )
    assert other.status_code == 400, other.body
    assert json.loads(other.body)["Message"] == (
        "details.function_name: names a resource in account 444455556666; the account's "
        "registry entry acts in the stack's own account"
    )
    # And one of the stack's own account is accepted
    own = client.http.post(
        GROUP,
        headers=auth(),
        body=json.dumps(lambda_job("arn:aws:lambda:us-east-1:123456789012:function:cleanup")),
    )
    assert own.status_code == 200, own.body
    assert len(store.list_jobs("team")) == 1
