"""What the API refuses: bad bodies, bad schedules, bad paths. Always a 4xx JSON error, never a
5xx, and a refused request changes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TOKEN, auth
from store_support import table_items

BASE = "/v1/minion"
DUMMY_JOB = {
    "name": "dummy-spin1234567",
    "description": "Do some dumb thing to my server",
    "details": {"runner": "dummyRunner"},
    "group": "space-xy",
    "modified_by": "someone",
    "schedule_expression": "* * * ? *",
    "enabled": True,
}
OTHER_ID = "11e7b876-7a10-4c3e-93a7-e77eb3c68b58"
INSTANCE_DETAILS = {
    "runner": "instanceRunner",
    "instance_id": "i-0123456789abcdef0",
    "instance_action": "start",
}


def group_path(group: str = "space-xy", account: str = "spinup") -> str:
    return f"{BASE}/{account}/jobs/{group}"


def job_path(job_id: str, group: str = "space-xy", account: str = "spinup") -> str:
    return f"{group_path(group, account)}/{job_id}"


def post(
    client: Any,
    body: Any,
    group: str = "space-xy",
    account: str = "spinup",
    headers: dict[str, str] | None = None,
) -> Any:
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.http.post(group_path(group, account), headers=headers or auth(), body=raw)


def put(client: Any, job_id: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.http.put(job_path(job_id), headers=headers or auth(), body=raw)


def queued_messages(aws: dict[str, Any]) -> int:
    attributes = aws["sqs"].get_queue_attributes(
        QueueUrl=aws["queue_url"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def assert_refused(
    response: Any, status: int | tuple[int, ...] = 400, starts: str | None = None
) -> str:
    """A JSON error of Chalice's shape with the expected status; its message."""
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.body)
    error = response.json_body
    assert isinstance(error, dict) and set(error) == {"Code", "Message"}, response.body
    if starts is not None:
        assert error["Message"].startswith(starts), error["Message"]
    return error["Message"]


@pytest.fixture
def unchanged(aws: dict[str, Any]) -> Iterator[None]:
    """The test's requests must leave the table and the queue exactly as they found them."""
    before = table_items(aws)
    yield
    assert table_items(aws) == before
    assert queued_messages(aws) == 0


@pytest.fixture
def stored_job(client: Any) -> dict[str, Any]:
    """A job created through the API (before the `unchanged` snapshot when listed first)."""
    response = post(client, DUMMY_JOB)
    assert response.status_code == 200, response.body
    return response.json_body


def refused_each(aws: dict[str, Any], cases: list[tuple[Any, ...]], send: Any) -> None:
    """For each case `(request, status, message start)`: `send(request)` is refused that way
    and leaves the table as it was. (One test per family of cases keeps the suite fast: each
    test pays for a fresh moto.)"""
    for request, status, starts in cases:
        before = table_items(aws)
        response = send(request)
        try:
            assert_refused(response, status, starts)
        except AssertionError as error:
            raise AssertionError(f"case {request!r}: {error}") from None
        assert table_items(aws) == before, f"case {request!r} changed the table"


# --- fields --------------------------------------------------------------------------------

INVALID_FIELDS = [
    ({**DUMMY_JOB, "schedule_expresion": "* * * * *"}, "schedule_expresion: unknown field"),
    ({"job": {**DUMMY_JOB, "nmae": "x"}, "tags": []}, "nmae: unknown field"),
    ({"job": DUMMY_JOB, "tags": [], "extra": 1}, "extra: unknown field"),
    ({k: v for k, v in DUMMY_JOB.items() if k != "name"}, "name: required"),
    ({**DUMMY_JOB, "name": "   "}, "name: "),
    ({**DUMMY_JOB, "name": 5}, "name: "),
    (
        {k: v for k, v in DUMMY_JOB.items() if k != "schedule_expression"},
        "schedule_expression: required",
    ),
    ({k: v for k, v in DUMMY_JOB.items() if k != "details"}, "details: "),
    ({**DUMMY_JOB, "details": "dummyRunner"}, "details: "),
    ({**DUMMY_JOB, "details": {}}, "details.runner: required"),
    ({**DUMMY_JOB, "enabled": "true"}, "enabled: "),
    ({**DUMMY_JOB, "enabled": 1}, "enabled: "),
    ({**DUMMY_JOB, "max_attempts": 11}, "max_attempts: "),
    ({**DUMMY_JOB, "max_attempts": 2.5}, "max_attempts: "),
    ({**DUMMY_JOB, "max_attempts": True}, "max_attempts: "),
    ({**DUMMY_JOB, "starting_deadline_seconds": 0}, "starting_deadline_seconds: "),
    ({**DUMMY_JOB, "concurrency_policy": "Replace"}, "concurrency_policy: "),
    ({"job": DUMMY_JOB, "tags": {"owner": "me"}}, "tags"),
    ({"job": DUMMY_JOB, "tags": [{"key": "a", "value": "b", "extra": "c"}]}, "tags[0]"),
    ({"job": DUMMY_JOB, "tags": [{"key": "", "value": "b"}]}, "tags[0]"),
]


def test_an_invalid_field_is_refused_naming_it(
    client: Any, aws: dict[str, Any], unchanged: None
) -> None:
    refused_each(
        aws,
        [(body, 400, starts) for body, starts in INVALID_FIELDS],
        lambda body: post(client, body),
    )


def test_a_details_value_that_is_not_a_string_is_refused_naming_the_key(
    client: Any, aws: dict[str, Any], unchanged: None
) -> None:
    cases = [
        ("instance_id", 1234),
        ("instance_id", None),
        ("instance_action", ["start"]),
        ("instance_action", {"do": "start"}),
        ("instance_action", True),
    ]
    refused_each(
        aws,
        [
            ({**DUMMY_JOB, "details": {**INSTANCE_DETAILS, key: value}}, 400, f"details.{key}: ")
            for key, value in cases
        ],
        lambda body: post(client, body),
    )


def test_an_unknown_runner_is_refused(client: Any, unchanged: None) -> None:
    body = {**DUMMY_JOB, "details": {"runner": "teleportRunner"}}
    message = assert_refused(post(client, body), 400, "details.runner: ")
    assert "teleportRunner" in message


def test_a_runner_the_account_may_not_use_is_refused(client: Any, aws: dict[str, Any]) -> None:
    # Given the `limited` account, which may use dummyRunner only
    body = {**DUMMY_JOB, "details": INSTANCE_DETAILS}
    before = table_items(aws)
    # When an instanceRunner job is created there / Then 400 naming the runner and account
    message = assert_refused(post(client, body, account="limited"), 400, "details.runner: ")
    assert "instanceRunner" in message and "limited" in message
    assert table_items(aws) == before
    # (while the same job is accepted where the runner is allowed)
    assert post(client, body).status_code == 200


def test_bad_runner_details_are_refused_naming_the_key(
    client: Any, aws: dict[str, Any], unchanged: None
) -> None:
    cases = [
        ({"runner": "instanceRunner", "instance_action": "start"}, "instance_id"),
        ({"runner": "instanceRunner", "instance_id": "i-0123456789abcdef0"}, "instance_action"),
        ({**INSTANCE_DETAILS, "instance_id": "i-NOTHEX00"}, "instance_id"),
        ({**INSTANCE_DETAILS, "instance_id": "0123456789abcdef0"}, "instance_id"),
        ({**INSTANCE_DETAILS, "instance_action": "terminate"}, "instance_action"),
        ({**INSTANCE_DETAILS, "region": "eu-west-1"}, "region"),
        ({"runner": "dummyRunner", "instance_id": "i-0123456789abcdef0"}, "instance_id"),
    ]
    refused_each(
        aws,
        [({**DUMMY_JOB, "details": details}, 400, f"details.{key}: ") for details, key in cases],
        lambda body: post(client, body),
    )


# --- path and body must agree --------------------------------------------------------------

CONTRADICTIONS = [("group", "space-ab"), ("account", "limited"), ("id", OTHER_ID)]


def test_a_create_body_that_contradicts_the_path_is_refused(
    client: Any, aws: dict[str, Any], unchanged: None
) -> None:
    refused_each(
        aws,
        [({**DUMMY_JOB, field: value}, 400, f"{field}: ") for field, value in CONTRADICTIONS],
        lambda body: post(client, body),
    )


def test_a_replace_body_that_contradicts_the_path_is_refused(
    client: Any, aws: dict[str, Any], stored_job: dict[str, Any], unchanged: None
) -> None:
    refused_each(
        aws,
        [
            ({**stored_job, "name": "renamed", field: value}, 400, f"{field}: ")
            for field, value in CONTRADICTIONS
        ],
        lambda body: put(client, stored_job["id"], body),
    )


def test_path_fields_equal_to_the_path_are_accepted(client: Any) -> None:
    response = post(client, {**DUMMY_JOB, "account": "spinup", "group": "space-xy"})
    assert response.status_code == 200, response.body


# --- limits --------------------------------------------------------------------------------


def test_text_fields_are_accepted_up_to_their_limit(client: Any) -> None:
    for field, limit in (("name", 256), ("description", 4096)):
        response = post(client, {**DUMMY_JOB, field: "x" * limit})
        assert response.status_code == 200, response.body
        assert response.json_body[field] == "x" * limit


def test_fields_over_their_limit_are_refused(
    client: Any, aws: dict[str, Any], unchanged: None
) -> None:
    fifty_more = {f"k{i}": "v" for i in range(50)}
    cases = [
        ({**DUMMY_JOB, "name": "x" * 257}, "name: "),
        ({**DUMMY_JOB, "description": "x" * 4097}, "description: "),
        ({**DUMMY_JOB, "details": {"runner": "dummyRunner", **fifty_more}}, "details: "),
        ({**DUMMY_JOB, "details": {"runner": "dummyRunner", "k" * 129: "v"}}, "details"),
        (
            {**DUMMY_JOB, "details": {**INSTANCE_DETAILS, "instance_id": "i" * 4097}},
            "details.instance_id: ",
        ),
    ]
    refused_each(
        aws, [(body, 400, starts) for body, starts in cases], lambda body: post(client, body)
    )


def test_a_body_of_exactly_64_kib_is_accepted(client: Any) -> None:
    # Given a valid job padded with whitespace to exactly 64 KiB
    raw = json.dumps(DUMMY_JOB)
    raw = raw + " " * (64 * 1024 - len(raw))
    # When POSTed / Then created
    assert post(client, raw).status_code == 200


def test_a_body_over_64_kib_is_too_large(client: Any, unchanged: None) -> None:
    raw = json.dumps(DUMMY_JOB)
    raw = raw + " " * (64 * 1024 + 1 - len(raw))
    assert_refused(post(client, raw), 413)


# --- bodies that are not a JSON object -----------------------------------------------------

NOT_A_JOB = [
    ('{"name": ', auth(), 400),
    ("{'name': 'x'}", auth(), 400),
    ("[]", auth(), 400),
    (json.dumps([DUMMY_JOB]), auth(), 400),
    ('"a string"', auth(), 400),
    ("42", auth(), 400),
    ("null", auth(), 400),
    ("true", auth(), 400),
    ("", auth(), 400),
    (b"\xff\xfe\x00{", auth(), 400),
    ("[" * 30000 + "]" * 30000, auth(), 400),
    ('{"a":' * 10000 + "1" + "}" * 10000, auth(), 400),
    (json.dumps({**DUMMY_JOB, "name": "\ud800"}), auth(), 400),
    (json.dumps({**DUMMY_JOB, "details": {"runner": "dummyRunner", "\udfff": "x"}}), auth(), 400),
    (json.dumps(DUMMY_JOB), {"X-Auth-Token": TOKEN}, 415),
    (json.dumps(DUMMY_JOB), auth(**{"Content-Type": "text/plain"}), 415),
    (json.dumps(DUMMY_JOB), auth(**{"Content-Type": "application/x-www-form-urlencoded"}), 415),
]


def test_a_create_body_that_is_not_a_json_object_is_refused(
    client: Any, aws: dict[str, Any], unchanged: None
) -> None:
    # When each is POSTed / Then a 4xx JSON error, never a 500, and nothing is written
    refused_each(
        aws,
        [((raw, headers), status, None) for raw, headers, status in NOT_A_JOB],
        lambda request: post(client, request[0], headers=request[1]),
    )
    assert client.http.get(f"{BASE}/spinup/jobs", headers=auth()).json_body == []


def test_a_replace_body_that_is_not_a_json_object_is_refused(
    client: Any, aws: dict[str, Any], stored_job: dict[str, Any], unchanged: None
) -> None:
    refused_each(
        aws,
        [((raw, headers), status, None) for raw, headers, status in NOT_A_JOB],
        lambda request: put(client, stored_job["id"], request[0], headers=request[1]),
    )


# --- schedules -----------------------------------------------------------------------------

REJECTED_SCHEDULES = [
    # scheduling.md's "Rejected" list
    ("* * * *", "UTC", "schedule_expression:"),
    ("0 0 * * * *", "UTC", "schedule_expression:"),
    ("0 0 * * * * 2030", "UTC", "schedule_expression:"),
    ("R * * * *", "UTC", "schedule_expression:"),
    ("61 * * * *", "UTC", "schedule_expression:"),
    ("*/0 * * * *", "UTC", "schedule_expression:"),
    ("0 0 30 2 *", "UTC", "schedule_expression:"),
    ("cron(0 12 * * * *)", "UTC", "schedule_expression:"),
    ("rate(0 minutes)", "UTC", "schedule_expression:"),
    ("@every 30s", "UTC", "schedule_expression:"),
    ("* * * * *", "Mars/Olympus", "schedule_timezone:"),
    # and the rules of its prose
    ("H * * * *", "UTC", "schedule_expression:"),
    ("0 24 * * *", "UTC", "schedule_expression:"),
    ("0 0 32 * *", "UTC", "schedule_expression:"),
    ("0 0 * 13 *", "UTC", "schedule_expression:"),
    ("0 0 * * 8", "UTC", "schedule_expression:"),
    ("@every 90s", "UTC", "schedule_expression:"),
    ("@every 0m", "UTC", "schedule_expression:"),
    ("rate(1 second)", "UTC", "schedule_expression:"),
    ("rate(-5 minutes)", "UTC", "schedule_expression:"),
    ("@fortnightly", "UTC", "schedule_expression:"),
    ("at(2026-02-30T09:00:00)", "UTC", "schedule_expression:"),
    ("cron(0 12 ? * ? *)", "UTC", "schedule_expression:"),
    ("0 0 * * " + "1," * 130 + "1", "UTC", "schedule_expression:"),
    ("", "UTC", "schedule_expression:"),
    ("* * * * *", "../../etc/passwd", "schedule_timezone:"),
    ("* * * * *", "EST5EDT\n", "schedule_timezone:"),
    ("* * * * *", "Europe/" + "x" * 60, "schedule_timezone:"),
]
SPEC_REJECTED = REJECTED_SCHEDULES[:11]


def with_schedule(expression: str, tz: str) -> dict[str, Any]:
    return {**DUMMY_JOB, "schedule_expression": expression, "schedule_timezone": tz}


def test_an_invalid_schedule_is_refused_on_create(
    client: Any, aws: dict[str, Any], unchanged: None
) -> None:
    refused_each(
        aws,
        [(with_schedule(e, tz), 400, starts) for e, tz, starts in REJECTED_SCHEDULES],
        lambda body: post(client, body),
    )


def test_an_invalid_schedule_is_refused_on_replace(
    client: Any, aws: dict[str, Any], stored_job: dict[str, Any], unchanged: None
) -> None:
    refused_each(
        aws,
        [(with_schedule(e, tz), 400, starts) for e, tz, starts in SPEC_REJECTED],
        lambda body: put(client, stored_job["id"], body),
    )


def test_every_dialect_is_accepted(client: Any) -> None:
    for expression, tz in [
        ("* * * ? *", "UTC"),
        ("*/15 * * * *", "UTC"),
        ("0 9 * * MON-FRI", "America/New_York"),
        ("@weekly", "UTC"),
        ("@every 1h30m", "UTC"),
        ("cron(0 12 L * ? *)", "UTC"),
        ("cron(0 10 ? * 6#3 *)", "UTC"),
        ("rate(5 minutes)", "UTC"),
        ("at(2099-03-01T09:30:00)", "Europe/Paris"),
    ]:
        response = post(client, with_schedule(expression, tz))
        assert response.status_code == 200, (expression, response.body)
        assert response.json_body["next"] is not None, expression


# --- the schedule preview ------------------------------------------------------------------


def preview(client: Any, query: str, headers: dict[str, str] | None = None) -> Any:
    return client.http.get(
        f"{BASE}/schedule?{query}", headers=auth() if headers is None else headers
    )


def test_preview_of_a_valid_schedule_lists_occurrences_in_utc_and_local_time(client: Any) -> None:
    # When a daily 09:00 New York schedule is previewed
    response = preview(client, "expression=0+9+*+*+*&timezone=America/New_York&count=3")
    # Then three daily occurrences, each 09:00 New York time, given in UTC and local time
    assert response.status_code == 200, response.body
    answer = response.json_body
    assert answer["valid"] is True and answer["message"] is None
    occurrences = answer["occurrences"]
    assert len(occurrences) == 3
    for occurrence in occurrences:
        utc = datetime.strptime(occurrence["utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        local = datetime.fromisoformat(occurrence["local"])
        assert local == utc
        assert (local.hour, local.minute) == (9, 0)
        assert local.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))
    days = [datetime.fromisoformat(o["local"]).date() for o in occurrences]
    assert [b - a for a, b in pairwise(days)] == [timedelta(days=1)] * 2


def test_preview_of_an_invalid_schedule_gives_the_message_a_create_would(
    client: Any, unchanged: None
) -> None:
    for expression, tz, starts in REJECTED_SCHEDULES:
        # Given the message a create with this schedule gets
        create_message = assert_refused(post(client, with_schedule(expression, tz)), 400, starts)
        # When it is previewed / Then not valid, with that same message
        response = preview(client, urlencode({"expression": expression, "timezone": tz}))
        assert response.status_code == 200, response.body
        assert response.json_body["valid"] is False, expression
        assert response.json_body["message"] == create_message, expression
        assert response.json_body["occurrences"] == []


def test_preview_with_bad_parameters_is_refused(client: Any) -> None:
    for query in [
        "",
        "timezone=UTC",
        "expression=*+*+*+*+*&count=0",
        "expression=*+*+*+*+*&count=101",
        "expression=*+*+*+*+*&count=abc",
        "expression=*+*+*+*+*&count=%C2%B2",
        "expression=*+*+*+*+*&count=\u00b2",
        "expression=*+*+*+*+*&colour=blue",
    ]:
        response = preview(client, query)
        assert response.status_code == 400, (query, response.body)
        assert_refused(response, 400)


def test_preview_needs_a_token(client: Any) -> None:
    assert_refused(preview(client, "expression=*+*+*+*+*", headers={}), 401)
    assert_refused(preview(client, "expression=*+*+*+*+*", headers={"X-Auth-Token": "wrong"}), 401)


# --- path segments -------------------------------------------------------------------------

BAD_SEGMENTS = [
    "..",
    "a%2Fb",
    "%2F",
    "%00",
    "a%00b",
    "caf\u00e9",
    "caf%C3%A9",
    "x" * 65,
    "x" * 300,
    "-abc",
    ".hidden",
    "_x",
    "a b",
    "a%20b",
    "a%23b",
    "a*b",
    "\u0661\u0662",
    "%2e%2e",
    "a%09b",
]
JOB_ID = "6bcfa79f-615e-470d-97c1-687f3357497d"


def routes_for(account: str, group: str) -> list[tuple[str, str]]:
    """Every route with a token whose path holds `account` and `group` (method, path)."""
    job = f"{BASE}/{account}/jobs/{group}/{JOB_ID}"
    return [
        ("GET", f"{BASE}/{account}/jobs"),
        ("GET", f"{BASE}/{account}/jobs/{group}"),
        ("POST", f"{BASE}/{account}/jobs/{group}"),
        ("DELETE", f"{BASE}/{account}/jobs/{group}"),
        ("GET", job),
        ("PUT", job),
        ("DELETE", job),
        ("PATCH", job),
        ("GET", f"{job}/runs"),
        ("GET", f"{job}/runs/20260130T101700Z-s"),
    ]


def test_a_bad_group_segment_is_a_4xx_json_error_on_every_route(
    client: Any, stored_job: dict[str, Any], unchanged: None
) -> None:
    for segment in BAD_SEGMENTS:
        for method, path in routes_for("spinup", segment)[1:]:
            response = client.http.request(
                method, path, headers=auth(), body=json.dumps(DUMMY_JOB).encode()
            )
            message = assert_refused(response, (400, 404))
            assert response.status_code == 404 or message.startswith("group: "), (
                method,
                path,
                message,
            )


def test_a_bad_account_segment_is_a_4xx_json_error_on_every_route(
    client: Any, stored_job: dict[str, Any], unchanged: None
) -> None:
    for segment in BAD_SEGMENTS:
        for method, path in routes_for(segment, "space-xy"):
            response = client.http.request(
                method, path, headers=auth(), body=json.dumps(DUMMY_JOB).encode()
            )
            message = assert_refused(response, (400, 404))
            assert message.startswith(("account: ", "account not found")), (method, path, message)


def test_a_group_of_64_characters_is_accepted(client: Any) -> None:
    group = "g" * 64
    response = post(client, {**DUMMY_JOB, "group": group}, group=group)
    assert response.status_code == 200, response.body
    assert client.http.get(group_path(group), headers=auth()).json_body == [
        response.json_body["id"]
    ]


def test_a_segment_with_a_trailing_control_character_is_refused(
    aws: dict[str, Any], unchanged: None
) -> None:
    # Given API Gateway events whose (decoded) account or group parameter ends in a control
    # character (Chalice's test client strips it from a path, so the events are built by hand)
    for account, group in [
        ("spinup", "space-xy\n"),
        ("spinup", "space-xy\r\n"),
        ("spinup", "space-xy\x00"),
        ("spinup\n", "space-xy"),
    ]:
        response = invoke(
            "POST",
            "/v1/minion/{account}/jobs/{group}",
            {"account": account, "group": group},
            json.dumps({**DUMMY_JOB, "group": group}),
        )
        # Then 400 naming the segment: no key is built from it
        assert response["statusCode"] == 400, response
        assert json.loads(response["body"])["Message"].startswith(("group: ", "account: "))


def invoke(
    method: str, resource: str, params: dict[str, str], body: str | None = None
) -> dict[str, Any]:
    """The app's answer to an API Gateway proxy event (the shape API Gateway sends)."""
    import app as app_module

    path = resource
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    headers = {"X-Auth-Token": TOKEN, "Content-Type": "application/json"}
    event = {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": params,
        "stageVariables": None,
        "body": body,
        "isBase64Encoded": False,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": "/api" + path,
            "requestId": str(uuid.uuid4()),
            "stage": "api",
        },
    }
    app_module._api.cache_clear()
    return app_module.app(event, None)


def test_an_unknown_account_is_not_found_before_anything_else(client: Any, unchanged: None) -> None:
    # Given an account that is not in the registry, and requests that are wrong in other ways
    # too (a bad group, a malformed or mistyped body, a bad id, a bad query)
    requests = [
        ("GET", f"{BASE}/nosuch/jobs", None, auth()),
        ("GET", f"{BASE}/nosuch/jobs/..", None, auth()),
        ("POST", f"{BASE}/nosuch/jobs/space-xy", "{malformed", auth()),
        ("POST", f"{BASE}/nosuch/jobs/-bad-", "[]", auth()),
        (
            "POST",
            f"{BASE}/nosuch/jobs/space-xy",
            "x",
            {"X-Auth-Token": TOKEN, "Content-Type": "text/plain"},
        ),
        ("DELETE", f"{BASE}/nosuch/jobs/space-xy", None, auth()),
        ("GET", f"{BASE}/nosuch/jobs/space-xy/not-a-uuid", None, auth()),
        ("PUT", f"{BASE}/nosuch/jobs/space-xy/{JOB_ID}", "{malformed", auth()),
        ("PUT", f"{BASE}/nosuch/jobs/space-xy/{JOB_ID}", "x" * 70000, auth()),
        ("DELETE", f"{BASE}/nosuch/jobs/space-xy/{JOB_ID}", None, auth()),
        ("PATCH", f"{BASE}/nosuch/jobs/space-xy/{JOB_ID}", None, auth()),
        ("GET", f"{BASE}/nosuch/jobs/space-xy/{JOB_ID}/runs?limit=0", None, auth()),
        ("GET", f"{BASE}/nosuch/jobs/space-xy/{JOB_ID}/runs/nope", None, auth()),
    ]
    for method, path, body, headers in requests:
        # When sent / Then 404 naming the account
        response = client.http.request(method, path, headers=headers, body=(body or "").encode())
        assert response.status_code == 404, (method, path, response.body)
        assert response.json_body["Message"] == "account not found: nosuch", (method, path)


def test_a_job_id_that_is_not_a_server_uuid_is_not_found(client: Any, unchanged: None) -> None:
    for job_id in [
        "not-a-uuid",
        JOB_ID.upper(),
        JOB_ID.replace("-", ""),
        "{" + JOB_ID + "}",
        "6bcfa79f-615e-170d-97c1-687f3357497d",
        JOB_ID + "0",
        "..",
        "%2e%2e",
        "x" * 300,
    ]:
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            response = client.http.request(
                method, job_path(job_id), headers=auth(), body=json.dumps(DUMMY_JOB).encode()
            )
            assert response.status_code == 404, (method, job_id, response.body)
            assert_refused(response, 404)


def test_an_unknown_uuid_is_not_found_for_every_method(
    client: Any, stored_job: dict[str, Any], unchanged: None
) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = client.http.request(
            method, job_path(OTHER_ID), headers=auth(), body=json.dumps(DUMMY_JOB).encode()
        )
        assert response.status_code == 404, (method, response.body)
        assert response.json_body["Code"] == "NotFoundError"


# --- methods -------------------------------------------------------------------------------


def test_a_wrong_method_on_a_known_path_is_405_after_authentication(
    client: Any, unchanged: None
) -> None:
    for method, path in [
        ("POST", f"{BASE}/spinup/jobs"),
        ("PUT", f"{BASE}/spinup/jobs"),
        ("PUT", f"{BASE}/spinup/jobs/space-xy"),
        ("PATCH", f"{BASE}/spinup/jobs/space-xy"),
        ("POST", f"{BASE}/spinup/jobs/space-xy/{JOB_ID}"),
        ("POST", f"{BASE}/spinup/jobs/space-xy/{JOB_ID}/runs"),
        ("DELETE", f"{BASE}/spinup/jobs/space-xy/{JOB_ID}/runs/20260130T101700Z-s"),
        ("POST", f"{BASE}/schedule"),
    ]:
        # Without a token / Then 401 (nothing about the path is revealed)
        assert client.http.request(method, path, headers={}).status_code == 401, (method, path)
        # With a token / Then 405
        response = client.http.request(method, path, headers=auth(), body=b"{}")
        assert response.status_code == 405, (method, path, response.body)
        assert response.json_body["Code"] == "MethodNotAllowedError"


def test_a_wrong_method_on_a_public_path_is_405(client: Any) -> None:
    for method, path in [
        ("POST", f"{BASE}/ping"),
        ("DELETE", f"{BASE}/version"),
        ("PUT", f"{BASE}/metrics"),
    ]:
        response = client.http.request(method, path, headers=auth(), body=b"{}")
        assert response.status_code == 405, (method, path, response.body)
        assert response.json_body["Code"] == "MethodNotAllowedError"


def test_a_stray_content_type_on_a_request_without_a_body_is_ignored(client: Any) -> None:
    # Given a client that sends Content-Type: text/plain on every request
    headers = auth(**{"Content-Type": "text/plain"})
    # When it lists jobs / Then it is answered as any other GET
    response = client.http.get(f"{BASE}/spinup/jobs", headers=headers)
    assert response.status_code == 200, response.body
    assert response.json_body == []


def test_a_body_of_the_wrong_type_without_a_token_is_unauthorized(
    client: Any, unchanged: None
) -> None:
    response = post(client, "a=b", headers={"Content-Type": "text/plain"})
    assert_refused(response, 401)


# --- random bodies and paths ---------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    sorted(DUMMY_JOB)
    + [
        "id",
        "account",
        "tags",
        "job",
        "schedule_timezone",
        "max_attempts",
        "version",
        "next",
        "starting_deadline_seconds",
        "concurrency_policy",
        "last_run",
        "modified_at",
    ]
)
JOB_LIKE = st.builds(
    lambda base, changes, drop: {**{k: v for k, v in base.items() if k not in drop}, **changes},
    st.just(DUMMY_JOB),
    st.dictionaries(FIELD_NAMES, JSON, max_size=3),
    st.sets(FIELD_NAMES, max_size=2),
)
BODIES = JOB_LIKE | st.builds(lambda job, tags: {"job": job, "tags": tags}, JOB_LIKE, JSON) | JSON
SEGMENTS = st.text(
    st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=80
) | st.sampled_from(BAD_SEGMENTS + ["space-xy", "spinup"])


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES, group=SEGMENTS, account=SEGMENTS, replace_it=st.booleans())
def test_random_bodies_and_paths_never_fail_the_server_and_refusals_change_nothing(
    client: Any, aws: dict[str, Any], body: Any, group: str, account: str, replace_it: bool
) -> None:
    # Given the table as it is, and one job to replace
    existing = client.http.get(f"{BASE}/spinup/jobs/space-xy", headers=auth()).json_body
    if not existing:
        existing = [post(client, DUMMY_JOB).json_body["id"]]
    before = table_items(aws)
    # When a random body is POSTed, or PUT over the job, under a random path
    if replace_it:
        path = f"{BASE}/{account}/jobs/{group}/{existing[0]}"
        response = client.http.put(path, headers=auth(), body=json.dumps(body).encode())
    else:
        path = f"{BASE}/{account}/jobs/{group}"
        response = client.http.post(path, headers=auth(), body=json.dumps(body).encode())
    # Then never a 5xx; a 4xx is a JSON error and changed nothing
    assert response.status_code < 500, (path, body, response.body)
    if response.status_code >= 400:
        assert set(response.json_body or {}) in ({"Code", "Message"}, {"message"}), response.body
        assert table_items(aws) == before
