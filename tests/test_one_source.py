"""One source for each rule: the copies of the code's tables (the API document's limits, the
runner roles' actions) are held to them here, so a change in one place cannot leave another."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib import jobs
from chalicelib.accounts import Registry
from chalicelib.errors import BadRequest
from chalicelib.runners import RUNNERS, Scope, session_policy
from runner_support import EXAMPLES

DOCUMENT = json.loads((Path(jobs.__file__).with_name("openapi.json")).read_text())
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]
SCOPE = Scope(partition="aws", account_id="444455556666", region="us-east-1")


def job_schemas() -> list[tuple[str, dict[str, Any]]]:
    """The schemas of a job as sent and as answered (both carry the client's fields)."""
    return [(name, SCHEMAS[name]["properties"]) for name in ("JobInput", "Job")]


@pytest.mark.parametrize(
    "schema, field", [(schema, field) for schema in ("JobInput", "Job") for field in jobs.LIMITS]
)
def test_the_documents_string_limits_are_the_codes(schema: str, field: str) -> None:
    assert SCHEMAS[schema]["properties"][field]["maxLength"] == jobs.LIMITS[field]


@pytest.mark.parametrize("field", sorted(jobs.INTEGER_RANGES))
def test_the_documents_integer_ranges_are_the_codes(field: str) -> None:
    for name, properties in job_schemas():
        if field in properties:
            stated = (properties[field]["minimum"], properties[field]["maximum"])
            assert stated == jobs.INTEGER_RANGES[field], name
    assert field in SCHEMAS["JobInput"]["properties"]


def test_the_documents_details_tags_and_notify_limits_are_the_codes() -> None:
    details = SCHEMAS["Details"]
    assert details["maxProperties"] == jobs.MAX_DETAILS
    assert details["additionalProperties"]["maxLength"] == jobs.MAX_DETAIL_VALUE
    assert f"keys 1-{jobs.MAX_DETAIL_KEY} characters" in details["description"]
    assert details["properties"]["runner"]["enum"] == list(RUNNERS)
    assert SCHEMAS["Tags"]["maxItems"] == jobs.MAX_TAGS
    tag = SCHEMAS["Tag"]["properties"]
    assert (tag["key"]["maxLength"], tag["value"]["maxLength"]) == (
        jobs.MAX_TAG_KEY,
        jobs.MAX_TAG_VALUE,
    )
    job_input = SCHEMAS["JobInput"]["properties"]
    assert [v for v in job_input["concurrency_policy"]["enum"] if v is not None] == list(
        jobs.CONCURRENCY_POLICIES
    )
    notify = job_input["notify"]
    assert notify["maxItems"] == len(jobs.NOTIFY_OUTCOMES)
    assert notify["items"]["enum"] == list(jobs.NOTIFY_OUTCOMES)


def test_a_body_one_past_a_documented_limit_is_refused_and_at_it_accepted() -> None:
    # Given the limits as the document states them / Then the code draws the line there too
    entry = Registry.from_document({"accounts": {"team": {"runners": ["dummyRunner"]}}}).get("team")
    assert entry is not None

    def build(**fields: Any) -> None:
        body = {
            "name": "n",
            "schedule_expression": "@daily",
            "details": {"runner": "dummyRunner"},
            **fields,
        }
        jobs.job_from_request(
            body,
            account="team",
            group="g",
            job_id=None,
            entry=entry,
            now=datetime(2026, 1, 30, 10, 17, tzinfo=UTC),
        )

    properties = SCHEMAS["JobInput"]["properties"]
    for field in ("name", "description", "modified_by"):
        build(**{field: "x" * properties[field]["maxLength"]})
        with pytest.raises(BadRequest, match=field):
            build(**{field: "x" * (properties[field]["maxLength"] + 1)})
    for field in jobs.INTEGER_RANGES:
        low, high = properties[field]["minimum"], properties[field]["maximum"]
        build(**{field: low})
        build(**{field: high})
        for outside in (low - 1, high + 1):
            with pytest.raises(BadRequest, match=field):
                build(**{field: outside})
    tag = SCHEMAS["Tag"]["properties"]
    build(tags=[{"key": "k" * tag["key"]["maxLength"], "value": "v" * tag["value"]["maxLength"]}])
    with pytest.raises(BadRequest, match=r"tags\[0\]"):
        build(tags=[{"key": "k" * (tag["key"]["maxLength"] + 1)}])


def _allowed(policy: dict[str, Any]) -> set[str]:
    return {
        action
        for statement in policy["Statement"]
        if statement["Effect"] == "Allow"
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_a_runners_session_policy_allows_exactly_its_declared_actions(name: str) -> None:
    # Given a valid job of the runner
    runner = RUNNERS[name]
    details = {"runner": name, **EXAMPLES[name]}
    runner.validate(details)
    # When its run's session policy is built / Then it allows the runner's declared actions,
    # which are what the runner roles of the templates grant (tests/test_template.py)
    assert _allowed(session_policy(runner, details, SCOPE)) == set(runner.iam_actions)
    assert len(set(runner.iam_actions)) == len(runner.iam_actions)
