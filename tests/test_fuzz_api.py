"""Schemathesis drives the real local API (moto behind it) from the OpenAPI document.

Valid and invalid paths, queries, headers and bodies, most with a valid token and the rest
without one, most paths naming seeded jobs. Every case must answer below 500 and conform to
the document (status code, content type, body schema, headers, auth enforced), and a case
answered 4xx, or a read, must leave the table and the queue as they were.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from moto import mock_aws
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

import app as app_module
from api_support import SEEDED_JOBS, SEEDED_RUN
from chalicelib import deps
from chalicelib.store import table_definition
from conftest import OLD_TOKEN, QUEUE, TABLE, TOKEN, drain
from local_stack_support import served_api_url

DOCUMENT = Path(app_module.__file__).parent / "chalicelib" / "openapi.json"
REGION = "us-east-1"

schema = schemathesis.openapi.from_path(DOCUMENT)
# Valid-by-schema is not valid-by-meaning (a cron that does not parse, a runner the account may
# not use, an unknown job id): positive cases may be refused, so that check does not apply
# (tests/test_openapi.py checks that the document's own examples are accepted).
EXCLUDED_CHECKS = [positive_data_acceptance]
# A request invalid by the document may also be refused as too large, or (a PUT) for a stale
# If-Match before its body is read.
schema.config.checks.negative_data_rejection.expected_statuses = [
    "400",
    "401",
    "404",
    "405",
    "409",
    "412",
    "413",
    "415",
]
# API Gateway routes only these methods to the app (TRACE or QUERY never reach it; the local
# server's stdlib base answers them 501).
schema.config.phases.coverage.unexpected_methods = {
    "get",
    "put",
    "post",
    "delete",
    "patch",
    "options",
}


@schema.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """Most generated paths that are valid by the document name a seeded job (and its run),
    whole or in part, so that the operations reach stored records and not only 404s. (An
    invalid path stays as generated: it must be refused.)"""
    generated = case.path_parameters
    if not generated or case.meta is None or case.meta.is_negative_at(ParameterLocation.PATH):
        return st.just(case)
    targets = [
        {"account": j.account, "group": j.group, "id": j.id, "run_id": SEEDED_RUN.run_id}
        for j in SEEDED_JOBS
    ]

    def whole(target: dict[str, str]) -> dict[str, Any]:
        return {name: target.get(name, value) for name, value in generated.items()}

    def mixed(target: dict[str, str]) -> Any:
        return st.fixed_dictionaries(
            {
                name: st.sampled_from([target[name], value]) if name in target else st.just(value)
                for name, value in generated.items()
            }
        )

    def with_path(path_parameters: dict[str, Any]) -> Any:
        case.path_parameters = path_parameters
        return case

    seeded = st.sampled_from(targets)
    return st.one_of(
        st.just(generated), seeded.map(whole), seeded.map(whole), seeded.flatmap(mixed)
    ).map(with_path)


def token_for(case: Any) -> dict[str, str] | None:
    """Four cases in five (of every phase, chosen by a digest of the case so a replay is the
    same) carry a valid token, either of the two, as explicit headers: schemathesis' auth check
    then knows it is a real credential and probes the operation without it and with a wrong
    one. The others keep what was generated: a random token, or none."""
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
        return None  # the headers themselves are the invalid part: they go as generated
    digest = (
        zlib.crc32(
            repr((case.method, case.path_parameters, case.query, case.headers, case.body)).encode(
                "utf-8", "surrogatepass"
            )
        )
        % 10
    )
    if digest >= 8:
        return None
    return {"X-Auth-Token": TOKEN if digest else OLD_TOKEN}


State = tuple[list[dict[str, Any]], str]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
READ_CALLS = ("Get", "Query", "Scan", "Describe", "List", "BatchGet", "TransactGet")


class WriteCalls(list):
    """Names of the calls other than reads that the app's DynamoDB and SQS clients made: the
    only way a request can change stored data (all of it lives behind these two clients)."""

    def attach(self, *clients: Any) -> None:
        for client in clients:
            client.meta.events.register(
                f"before-call.{client.meta.service_model.service_id.hyphenize()}", self._record
            )

    def _record(self, model: Any, **_: Any) -> None:
        if not model.name.startswith(READ_CALLS):
            self.append(model.name)


@dataclass
class LiveApi:
    """The local API server on loopback, over moto, and the seeded state it must keep."""

    base_url: str
    aws: dict[str, Any]
    seeded: State | None = None
    writes: WriteCalls = field(default_factory=WriteCalls)

    def seed(self) -> None:
        """Store the seeded jobs and run through the app's store, and remember the state."""
        store = deps.store()
        for job in SEEDED_JOBS:
            store.create_job(job)
        store.put_run(SEEDED_RUN)
        self.seeded = self.state()

    def state(self) -> State:
        """Every item of the table, and the number of messages in the queue."""
        items = self.aws["dynamodb"].scan(TableName=TABLE, ConsistentRead=True)["Items"]
        attributes = self.aws["sqs"].get_queue_attributes(
            QueueUrl=self.aws["queue_url"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return (
            sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"])),
            attributes["ApproximateNumberOfMessages"],
        )

    def restore(self, changed: State) -> None:
        """Put the table and queue back as seeded after a case that was allowed to change them
        (so every Scan stays small)."""
        assert self.seeded is not None
        if changed == self.seeded:
            return
        dynamodb = self.aws["dynamodb"]
        seeded = {(i["pk"]["S"], i["sk"]["S"]): i for i in self.seeded[0]}
        for item in changed[0]:
            key = (item["pk"]["S"], item["sk"]["S"])
            if key not in seeded:
                dynamodb.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})
        for item in seeded.values():
            if item not in changed[0]:
                dynamodb.put_item(TableName=TABLE, Item=item)
        drain(self.aws["sqs"], self.aws["queue_url"])
        assert self.state() == self.seeded


@pytest.fixture(scope="module")
def module_api() -> Iterator[LiveApi]:
    """The served app over moto in-process for the whole module, as the `aws` fixture makes
    it but once: each operation's test starts from the seeded state anyway, and a fresh moto
    costs seconds."""
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**table_definition(TABLE))
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        yield LiveApi(
            base_url=served_api_url(),
            aws={"dynamodb": dynamodb, "sqs": sqs, "queue_url": queue_url},
        )


@pytest.fixture
def live_api(module_api: LiveApi, settings_env: dict[str, str]) -> Iterator[LiveApi]:
    """The served app (moto works across threads), as seeded, with this test's settings."""
    deps.reset()
    app_module._api.cache_clear()
    module_api.writes.attach(deps.store().client, deps.run_queue().client)
    if module_api.seeded is None:
        module_api.seed()
    else:
        module_api.restore(module_api.state())
    yield module_api
    app_module._api.cache_clear()
    deps.reset()


def check_case(case: Any, live: LiveApi) -> None:
    """Send one case: no 5xx, conformance to the document, and nothing stored changed by a
    request answered 4xx or by a read. Every case starts from the seeded state; the table is
    scanned after every case during which the app's clients made a write call (without one,
    nothing could change)."""
    headers = token_for(case)
    seeded = live.seeded
    assert seeded is not None, "the live_api fixture seeds the table first"
    live.writes.clear()
    response = case.call(base_url=live.base_url, headers=headers)
    try:
        case.validate_response(
            response,
            excluded_checks=EXCLUDED_CHECKS,
            headers=headers,
            transport_kwargs={"base_url": live.base_url},
        )
    finally:
        after = live.state() if live.writes else seeded
        live.restore(after)
    if 400 <= response.status_code < 500 or case.method.upper() in SAFE_METHODS:
        assert after == live.seeded, (
            f"{case.method} {case.formatted_path} answered {response.status_code} but changed "
            f"stored data (calls: {live.writes}):\n{case.as_curl_command()}"
        )


FUZZ_SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck))


@schema.parametrize()
@settings(FUZZ_SETTINGS, max_examples=40)
def test_no_generated_request_breaks_the_api_or_its_document(case: Any, live_api: LiveApi) -> None:
    check_case(case, live_api)


@pytest.mark.slow
@schema.parametrize()
@settings(FUZZ_SETTINGS, max_examples=250)
def test_a_long_campaign_finds_no_request_that_breaks_the_api(case: Any, live_api: LiveApi) -> None:
    check_case(case, live_api)
