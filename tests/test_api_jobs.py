"""The jobs routes over Chalice's test client and moto: the seed README's jobs, round trip."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from chalicelib import deps
from conftest import TABLE, auth
from store_support import table_items

BASE = "/v1/minion"
# Exactly the fields of api.md's job object.
JOB_FIELDS = {
    "account",
    "group",
    "id",
    "name",
    "description",
    "details",
    "schedule_expression",
    "schedule_timezone",
    "enabled",
    "modified_at",
    "modified_by",
    "next",
    "last_run",
    "version",
}
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

# The seed README's two example jobs, as its create requests send them.
DUMMY_JOB = {
    "description": "Do some dumb thing to my server",
    "details": {"runner": "dummyRunner"},
    "group": "space-xy",
    "modified_by": "someone",
    "name": "dummy-spin1234567",
    "schedule_expression": "* * * ? *",
    "enabled": True,
}
INSTANCE_JOB = {
    "description": "Start my server",
    "details": {
        "instance_action": "start",
        "instance_id": "i-aaaabbbb11112222",
        "runner": "instanceRunner",
    },
    "group": "space-xy",
    "modified_by": "someone",
    "name": "start-spinaaaabbbb11112222",
    "schedule_expression": "* * * ? *",
    "enabled": True,
}


def group_path(group: str = "space-xy", account: str = "spinup") -> str:
    return f"{BASE}/{account}/jobs/{group}"


def job_path(job_id: str, group: str = "space-xy", account: str = "spinup") -> str:
    return f"{group_path(group, account)}/{job_id}"


def post(client: Any, body: Any, group: str = "space-xy", account: str = "spinup") -> Any:
    return client.http.post(group_path(group, account), headers=auth(), body=json.dumps(body))


def put(client: Any, job_id: str, body: Any, **headers: str) -> Any:
    return client.http.put(job_path(job_id), headers=auth(**headers), body=json.dumps(body))


def get(client: Any, path: str) -> Any:
    return client.http.get(path, headers=auth())


def created(client: Any, body: Any, group: str = "space-xy", account: str = "spinup") -> dict:
    response = post(client, body, group, account)
    assert response.status_code == 200, response.body
    return response.json_body


# --- the seed README's jobs, round trip --------------------------------------------------------


@pytest.mark.parametrize(
    "request_body",
    [
        pytest.param(DUMMY_JOB, id="dummy"),
        pytest.param(INSTANCE_JOB, id="instance"),
    ],
)
def test_seed_example_job_round_trips(client: Any, request_body: dict[str, Any]) -> None:
    # Given the seed README's create request
    # When it is POSTed
    response = post(client, request_body)

    # Then 200 with the job object (exactly api.md's fields), a Location and an ETag
    assert response.status_code == 200, response.body
    job = response.json_body
    assert set(job) == JOB_FIELDS
    assert UUID4.match(job["id"])
    assert response.headers["Location"] == job_path(job["id"])
    assert response.headers["ETag"] == '"1"'
    for field, value in request_body.items():
        assert job[field] == value, field
    assert (job["account"], job["schedule_timezone"], job["version"]) == ("spinup", "UTC", 1)
    assert job["last_run"] is None
    assert RFC3339_UTC.match(job["modified_at"]) and RFC3339_UTC.match(job["next"])

    # When it is read back / Then the same object and ETag
    fetched = get(client, job_path(job["id"]))
    assert fetched.status_code == 200
    assert fetched.json_body == job
    assert fetched.headers["ETag"] == '"1"'

    # When it is listed / Then it is in the account's and the group's lists
    assert get(client, f"{BASE}/spinup/jobs").json_body == [f"space-xy/{job['id']}"]
    assert get(client, group_path()).json_body == [job["id"]]

    # When the README's update request (the job with its id, disabled) is PUT
    update = {**request_body, "id": job["id"], "enabled": False}
    replaced = put(client, job["id"], update)

    # Then 202 with the new version, and the change is stored
    assert replaced.status_code == 202, replaced.body
    assert set(replaced.json_body) == JOB_FIELDS
    assert replaced.json_body["enabled"] is False and replaced.json_body["next"] is None
    assert replaced.json_body["version"] == 2 and replaced.headers["ETag"] == '"2"'
    assert get(client, job_path(job["id"])).json_body == replaced.json_body

    # When it is deleted / Then 202, then it is gone everywhere
    deleted = client.http.delete(job_path(job["id"]), headers=auth())
    assert deleted.status_code == 202
    assert get(client, job_path(job["id"])).status_code == 404
    assert get(client, f"{BASE}/spinup/jobs").json_body == []
    assert get(client, group_path()).json_body == []


def test_lists_are_sorted_and_empty_when_there_are_no_jobs(client: Any) -> None:
    # Given no jobs / Then both lists are []
    assert get(client, f"{BASE}/spinup/jobs").json_body == []
    assert get(client, group_path()).json_body == []

    # Given jobs in two groups of spinup and one in limited
    xy = [created(client, DUMMY_JOB)["id"] for _ in range(3)]
    ab = [
        created(client, {**DUMMY_JOB, "group": "space-ab"}, group="space-ab")["id"]
        for _ in range(2)
    ]
    created(client, DUMMY_JOB, account="limited")

    # When listed / Then sorted, and scoped to the account and group
    account_list = get(client, f"{BASE}/spinup/jobs")
    assert account_list.status_code == 200
    assert account_list.json_body == sorted(
        [f"space-xy/{i}" for i in xy] + [f"space-ab/{i}" for i in ab]
    )
    assert get(client, group_path()).json_body == sorted(xy)
    assert get(client, group_path("space-ab")).json_body == sorted(ab)
    assert get(client, group_path("space-zz")).json_body == []


def test_enabled_defaults_to_false_and_a_disabled_job_has_no_next(client: Any) -> None:
    # Given a create request without `enabled`
    body = {k: v for k, v in DUMMY_JOB.items() if k != "enabled"}
    # When it is POSTed / Then the job is disabled, with no next occurrence
    job = created(client, body)
    assert job["enabled"] is False
    assert job["next"] is None
    assert get(client, job_path(job["id"])).json_body["enabled"] is False


def test_an_enabled_job_reports_its_next_occurrence_in_utc(client: Any) -> None:
    # Given an enabled every-minute job / When created
    before = datetime.now(UTC)
    job = created(client, DUMMY_JOB)
    # Then `next` is the next whole UTC minute after its creation
    next_at = datetime.strptime(job["next"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert next_at.second == 0
    assert before - timedelta(minutes=1) < next_at <= before + timedelta(minutes=2)
    modified = datetime.strptime(job["modified_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert modified < next_at <= modified + timedelta(minutes=1)


def test_the_original_wire_form_with_tags_is_accepted_and_tags_are_returned(client: Any) -> None:
    # Given minion's wire form: {"job": {...}, "tags": [{key, value}]}
    tags = [{"key": "owner", "value": "someone"}, {"key": "cost-center", "value": "1234"}]
    body = {"job": DUMMY_JOB, "tags": tags}
    # When it is POSTed
    job = created(client, body)
    # Then the job is the same as the plain form's, plus its tags, also on GET
    assert set(job) == JOB_FIELDS | {"tags"}
    assert job["tags"] == tags
    assert job["name"] == DUMMY_JOB["name"] and job["details"] == DUMMY_JOB["details"]
    assert get(client, job_path(job["id"])).json_body["tags"] == tags


def test_read_only_fields_echoed_back_from_a_get_are_ignored_on_put(client: Any) -> None:
    # Given a job as GET returns it, edited, with every read-only field set to something else
    job = created(client, DUMMY_JOB)
    edited = {
        **get(client, job_path(job["id"])).json_body,
        "description": "edited",
        "version": 99,
        "modified_at": "1999-01-01T00:00:00Z",
        "next": "1999-01-01T00:01:00Z",
        "last_run": {"run_id": "19990101T000000Z-s", "status": "succeeded"},
    }

    # When it is PUT back
    response = put(client, job["id"], edited)

    # Then the edit is stored and the read-only fields are the server's
    assert response.status_code == 202, response.body
    stored = get(client, job_path(job["id"])).json_body
    assert stored["description"] == "edited"
    assert stored["version"] == 2
    assert stored["modified_at"] >= job["modified_at"] and not stored["modified_at"].startswith(
        "1999"
    )
    assert stored["next"] is not None and not stored["next"].startswith("1999")
    assert stored["last_run"] is None


def test_put_replaces_every_client_field(client: Any) -> None:
    # Given a job with a description and tags
    job = created(client, {"job": DUMMY_JOB, "tags": [{"key": "a", "value": "b"}]})
    # When a PUT leaves out the optional fields
    response = put(
        client,
        job["id"],
        {
            "name": "renamed",
            "schedule_expression": "0 9 * * *",
            "details": {"runner": "dummyRunner"},
        },
    )
    # Then they are reset, not merged: a PUT is a full replace
    assert response.status_code == 202, response.body
    stored = get(client, job_path(job["id"])).json_body
    assert (stored["name"], stored["schedule_expression"]) == ("renamed", "0 9 * * *")
    assert stored["description"] == "" and stored["modified_by"] == ""
    assert stored["enabled"] is False and "tags" not in stored


def test_put_of_an_unknown_job_is_not_found_and_creates_nothing(
    client: Any, aws: dict[str, Any]
) -> None:
    # Given no jobs / When a PUT names a fresh UUID / Then 404 and nothing is written
    before = table_items(aws)
    response = put(client, str(uuid.uuid4()), DUMMY_JOB)
    assert response.status_code == 404
    assert table_items(aws) == before


def test_a_job_is_found_only_under_its_own_account_and_group(client: Any) -> None:
    # Given a job in spinup/space-xy
    job = created(client, DUMMY_JOB)
    # When addressed under another group or account / Then 404
    assert get(client, job_path(job["id"], group="space-ab")).status_code == 404
    assert get(client, job_path(job["id"], account="limited")).status_code == 404
    assert (
        client.http.delete(job_path(job["id"], account="limited"), headers=auth()).status_code
        == 404
    )
    assert get(client, job_path(job["id"])).status_code == 200


@pytest.fixture
def dynamodb_calls(client: Any) -> Iterator[list[str]]:
    """The DynamoDB operations the API's store makes, in order (on the wire, retries apart)."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    events = deps.store().client.meta.events
    events.register("before-call.dynamodb", record)
    yield calls
    events.unregister("before-call.dynamodb", record)


def test_a_get_of_a_job_is_one_dynamodb_request(client: Any, dynamodb_calls: list[str]) -> None:
    # Given a job with a run in its history (a run-now)
    job = created(client, {**DUMMY_JOB, "enabled": False})
    assert client.http.patch(job_path(job["id"]), headers=auth()).status_code == 202
    dynamodb_calls.clear()
    # When it is read / Then one Query answered it
    response = get(client, job_path(job["id"]))
    assert response.status_code == 200 and response.json_body["id"] == job["id"]
    assert dynamodb_calls == ["Query"]


def test_a_job_stored_before_copies_answers_the_same_and_is_adopted(
    client: Any, aws: dict[str, Any], dynamodb_calls: list[str]
) -> None:
    # Given a job as the previous release stored it (no copy in its run partition)
    job = created(client, DUMMY_JOB)
    before = get(client, job_path(job["id"])).json_body
    copy_key = {"pk": {"S": f"JOB#{job['id']}"}, "sk": {"S": "SPEC"}}
    aws["dynamodb"].delete_item(TableName=TABLE, Key=copy_key)
    dynamodb_calls.clear()
    # When it is read / Then the same JSON, read from its account item too
    assert get(client, job_path(job["id"])).json_body == before
    assert dynamodb_calls == ["Query", "GetItem", "TransactWriteItems"]
    # And it has its copy again: the next read is one request, with the same answer
    assert "Item" in aws["dynamodb"].get_item(TableName=TABLE, Key=copy_key, ConsistentRead=True)
    dynamodb_calls.clear()
    assert get(client, job_path(job["id"])).json_body == before
    assert dynamodb_calls == ["Query"]


def test_a_job_id_under_another_account_or_group_is_404_and_reveals_nothing(
    client: Any, aws: dict[str, Any]
) -> None:
    # Given a job of spinup/space-xy
    job = created(client, {**DUMMY_JOB, "name": "secret-name-1234"})
    before = table_items(aws)
    # When its id is read, updated, run or deleted under another account or group
    for path in (job_path(job["id"], group="space-ab"), job_path(job["id"], account="limited")):
        answers = [
            get(client, path),
            client.http.put(path, headers=auth(), body=json.dumps(DUMMY_JOB)),
            client.http.patch(path, headers=auth()),  # run-now
            client.http.delete(path, headers=auth()),
        ]
        # Then 404 naming only the path asked for, and nothing changed
        for response in answers:
            assert response.status_code == 404
            text = json.dumps(response.json_body)
            assert "secret-name" not in text and "spinup/" not in text
    assert table_items(aws) == before


def test_deleting_a_job_twice_is_not_found_the_second_time(client: Any) -> None:
    job = created(client, DUMMY_JOB)
    assert client.http.delete(job_path(job["id"]), headers=auth()).status_code == 202
    second = client.http.delete(job_path(job["id"]), headers=auth())
    assert second.status_code == 404
    assert second.json_body["Code"] == "NotFoundError"


def test_group_delete_deletes_every_job_of_the_group_only(client: Any) -> None:
    # Given three jobs in space-xy and one in space-ab
    for _ in range(3):
        created(client, DUMMY_JOB)
    other = created(client, {**DUMMY_JOB, "group": "space-ab"}, group="space-ab")
    # When space-xy is deleted
    response = client.http.delete(group_path(), headers=auth())
    # Then 202, the three are gone, and space-ab's job is left
    assert response.status_code == 202
    assert response.json_body == {"deleted": 3}
    assert get(client, f"{BASE}/spinup/jobs").json_body == [f"space-ab/{other['id']}"]


def test_group_delete_of_an_empty_group_is_accepted(client: Any, aws: dict[str, Any]) -> None:
    # Given no jobs in the group / When it is deleted / Then 202 and nothing changed
    before = table_items(aws)
    response = client.http.delete(group_path("nothing-here"), headers=auth())
    assert response.status_code == 202
    assert response.json_body == {"deleted": 0}
    assert table_items(aws) == before


# --- optimistic locking ------------------------------------------------------------------------


def test_if_match_with_the_current_version_is_applied(client: Any) -> None:
    # Given a job read at version 1
    job = created(client, DUMMY_JOB)
    read = get(client, job_path(job["id"]))
    assert read.headers["ETag"] == '"1"'
    # When PUT with If-Match "1"
    response = put(
        client, job["id"], {**DUMMY_JOB, "name": "renamed"}, **{"If-Match": read.headers["ETag"]}
    )
    # Then 202 at version 2, ETag "2"
    assert response.status_code == 202, response.body
    assert response.json_body["version"] == 2
    assert response.headers["ETag"] == '"2"'


def test_a_second_put_with_the_same_stale_if_match_is_refused_and_nothing_is_lost(
    client: Any,
) -> None:
    # Given two clients that read version 1; the first PUT it already
    job = created(client, DUMMY_JOB)
    first = put(client, job["id"], {**DUMMY_JOB, "name": "first"}, **{"If-Match": '"1"'})
    assert first.status_code == 202

    # When the second PUTs with the same If-Match "1"
    second = put(client, job["id"], {**DUMMY_JOB, "name": "second"}, **{"If-Match": '"1"'})

    # Then 412, and the first client's write is what is stored
    assert second.status_code == 412
    assert second.json_body["Code"] == "PreconditionFailedError"
    stored = get(client, job_path(job["id"]))
    assert stored.json_body["name"] == "first"
    assert stored.headers["ETag"] == '"2"'


@pytest.mark.parametrize("if_match", ['"2"', "2", 'W/"2"'])
def test_if_match_forms_of_the_current_version_are_accepted(client: Any, if_match: str) -> None:
    # Given a job at version 2
    job = created(client, DUMMY_JOB)
    assert put(client, job["id"], DUMMY_JOB).status_code == 202
    # When PUT with the current version in any of the usual forms / Then applied
    response = put(client, job["id"], DUMMY_JOB, **{"If-Match": if_match})
    assert response.status_code == 202
    assert response.json_body["version"] == 3


@pytest.mark.parametrize(
    "if_match", ['"abc"', '"-1"', '"99999999999999999999999"', '""', '"\u00b2"']
)
def test_an_if_match_that_names_no_version_is_refused(client: Any, if_match: str) -> None:
    job = created(client, DUMMY_JOB)
    response = put(client, job["id"], {**DUMMY_JOB, "name": "changed"}, **{"If-Match": if_match})
    assert response.status_code == 412
    assert get(client, job_path(job["id"])).json_body["name"] == DUMMY_JOB["name"]


# --- DynamoDB failing --------------------------------------------------------------------------


class _Body:
    """A raw HTTP body botocore can stream."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.content


@pytest.fixture
def throttled_reads(client: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every read of the store (a GET's Query, a GetItem) answered on the wire with DynamoDB's
    throttling error (so the client's retry policy runs, without its delays); the list counts
    the attempts."""
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda _seconds: None)
    attempts: list[int] = []
    body = json.dumps(
        {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded",
        }
    )

    def answer(request: Any, **_: Any) -> AWSResponse:
        attempts.append(1)
        return AWSResponse(
            request.url, 400, {"x-amzn-RequestId": "AWSREQUEST0001"}, _Body(body.encode())
        )

    for operation in ("Query", "GetItem"):
        deps.store().client.meta.events.register_first(f"before-send.dynamodb.{operation}", answer)
    return attempts


def test_dynamodb_throttling_past_the_retry_budget_is_a_generic_503(
    client: Any, throttled_reads: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a job id and DynamoDB throttling every read
    job_id = str(uuid.uuid4())
    # When the job is read
    response = get(client, job_path(job_id))
    # Then the client retried, then the API answered 503 with a generic message carrying a
    # request id and no AWS detail; the detail went to the log
    assert len(throttled_reads) > 1
    assert response.status_code == 503
    message = response.json_body["Message"]
    assert response.json_body["Code"] == "ServiceUnavailableError"
    assert "request id" in message
    for detail in ("Provisioned", "provisioned", "AWSREQUEST0001", "dynamodb", TABLE):
        assert detail not in message
    assert "ProvisionedThroughputExceededException" in caplog.text


def test_an_unexpected_aws_error_is_a_generic_500_with_a_request_id(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB refusing a read with an error the store does not expect
    from botocore.exceptions import ClientError

    def refuse(**_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": f"secret table detail {TABLE}"}},
            "GetItem",
        )

    monkeypatch.setattr(deps.store().client, "get_item", refuse)
    # When a job is read / Then 500 with a generic message and a request id, no AWS detail
    response = get(client, job_path(str(uuid.uuid4())))
    assert response.status_code == 500
    assert response.json_body["Code"] == "InternalServerError"
    assert "request id" in response.json_body["Message"]
    assert "secret" not in response.json_body["Message"] and TABLE not in response.body.decode()


# --- paging of the lists (issue 17) ------------------------------------------------------------


def follow(client: Any, path: str) -> tuple[list[Any], list[Any]]:
    """Every page of a listing from `path`, following `Link: rel="next"`; (items, responses)."""
    items: list[Any] = []
    responses = []
    for _ in range(100):
        response = get(client, path)
        assert response.status_code == 200, response.body
        assert isinstance(response.json_body, list)
        items.extend(response.json_body)
        responses.append(response)
        link = response.headers.get("Link") or response.headers.get("link")
        if link is None:
            return items, responses
        match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
        assert match, link
        path = match.group(1)
        assert path.startswith(BASE + "/")  # root-relative
    raise AssertionError("the pages never ended")


def test_without_paging_parameters_the_lists_are_exactly_as_before(client: Any) -> None:
    # Given jobs in two groups whose names sort differently as text and as (group, id)
    ids = [
        created(client, {**DUMMY_JOB, "group": g}, group=g)["id"] for g in ("a", "a-b", "a", "a.c")
    ]
    # When listed without limit or next_token (an unknown parameter is ignored, as before)
    for query in ("", "?colour=blue"):
        response = get(client, f"{BASE}/spinup/jobs{query}")
        # Then the whole sorted list, and no Link header
        assert response.json_body == sorted(
            f"{g}/{i}" for g, i in zip(("a", "a-b", "a", "a.c"), ids, strict=True)
        )
        assert "Link" not in response.headers and "link" not in response.headers


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_pages_of_an_account_list_every_job_once_in_group_then_id_order(
    client: Any, limit: int
) -> None:
    # Given seven jobs in three groups (one of them a prefix of another)
    groups = ["a", "a-b", "a", "zz", "a-b", "a", "zz"]
    ids = [created(client, {**DUMMY_JOB, "group": g}, group=g)["id"] for g in groups]
    created(client, DUMMY_JOB, account="limited")
    # When listed in pages of `limit`, following the Link header
    items, responses = follow(client, f"{BASE}/spinup/jobs?limit={limit}")
    # Then every job once, by group then id; full pages but the last, and none empty
    expected = [f"{g}/{i}" for g, i in sorted(zip(groups, ids, strict=True))]
    assert items == expected
    assert [len(r.json_body) for r in responses[:-1]] == [limit] * (len(responses) - 1)
    assert 1 <= len(responses[-1].json_body) <= limit
    assert len(responses) == -(-7 // limit)
    # And the Link carries limit and next_token
    if len(responses) > 1:
        assert f"limit={limit}&next_token=" in responses[0].headers["Link"]


def test_pages_of_a_group_list_its_ids(client: Any) -> None:
    ids = [created(client, DUMMY_JOB)["id"] for _ in range(5)]
    created(client, {**DUMMY_JOB, "group": "other"}, group="other")
    items, responses = follow(client, group_path() + "?limit=2")
    assert items == sorted(ids)
    assert len(responses) == 3


def test_expand_job_returns_job_objects_a_page_at_a_time(client: Any) -> None:
    # Given five jobs
    jobs = [created(client, DUMMY_JOB) for _ in range(5)]
    # When listed with expand=job in pages of two
    items, responses = follow(client, f"{BASE}/spinup/jobs?expand=job&limit=2")
    # Then the job objects themselves, as GET answers them, and the Link keeps expand
    assert items == sorted(jobs, key=lambda j: j["id"])
    assert "expand=job" in responses[0].headers["Link"]
    # And expand alone pages too (default page size), in the group listing as well
    alone = get(client, group_path() + "?expand=job")
    assert alone.json_body == sorted(jobs, key=lambda j: j["id"])


@pytest.mark.parametrize(
    "query,parameter",
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("expand=job&limit=101", "limit"),
        ("expand=everything", "expand"),
        ("next_token=nope", "next_token"),
        ("next_token=", "next_token"),
        ("next_token=YQ.YQ", "next_token"),
        ("next_token=" + "a" * 2000, "next_token"),
    ],
)
def test_bad_paging_parameters_are_400_naming_the_parameter(
    client: Any, query: str, parameter: str
) -> None:
    response = get(client, f"{BASE}/spinup/jobs?{query}")
    assert response.status_code == 400, response.body
    assert response.json_body["Message"].startswith(parameter + ":"), response.body


def test_a_next_token_is_tamper_evident_and_bound_to_its_listing(client: Any) -> None:
    # Given a token for the second page of spinup's list
    for _ in range(3):
        created(client, DUMMY_JOB)
    created(client, DUMMY_JOB, account="limited")
    first = get(client, f"{BASE}/spinup/jobs?limit=1")
    found = re.search(r"next_token=([^&>]+)", first.headers["Link"])
    assert found is not None, first.headers["Link"]
    token = found.group(1)
    from urllib.parse import unquote

    raw = unquote(token)
    position, mac = raw.split(".")
    # When it is altered, or used on another listing / Then 400 naming next_token
    import base64

    forged = base64.urlsafe_b64encode(b"space-xy#0").decode().rstrip("=") + "." + mac
    flipped = position + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
    for path in (
        f"{BASE}/spinup/jobs?limit=1&next_token={forged}",
        f"{BASE}/spinup/jobs?limit=1&next_token={flipped}",
        f"{BASE}/limited/jobs?limit=1&next_token={token}",
        f"{group_path()}?limit=1&next_token={token}",
    ):
        response = get(client, path)
        assert response.status_code == 400, (path, response.body)
        assert response.json_body["Message"].startswith("next_token:")
    # And unaltered it continues the list
    assert get(client, f"{BASE}/spinup/jobs?limit=1&next_token={token}").status_code == 200


def test_a_next_token_holds_across_instances_of_the_api(client: Any) -> None:
    # Given a token issued by one instance of the app
    for _ in range(2):
        created(client, DUMMY_JOB)
    link = get(client, f"{BASE}/spinup/jobs?limit=1").headers["Link"]
    # When another instance (a fresh process's MinionApi) reads it
    import app as app_module

    app_module._api.cache_clear()
    found = re.fullmatch(r"<([^>]+)>; rel=\"next\"", link)
    assert found is not None, link
    path = found.group(1)
    # Then it is accepted: the key is the deployment's, not the process's
    assert get(client, path).status_code == 200


# --- the original service's response shape (issue 17) -----------------------------------------


def test_by_default_create_get_and_update_answer_the_flat_job(client: Any) -> None:
    job = created(client, DUMMY_JOB)
    assert set(job) == JOB_FIELDS
    assert set(get(client, job_path(job["id"])).json_body) == JOB_FIELDS
    assert set(put(client, job["id"], DUMMY_JOB).json_body) == JOB_FIELDS


@pytest.fixture
def wrapped(monkeypatch: pytest.MonkeyPatch, client: Any) -> Any:
    """The deployment setting MINION_RESPONSE_SHAPE=wrapped."""
    monkeypatch.setenv("MINION_RESPONSE_SHAPE", "wrapped")
    deps.reset()
    return client


def test_the_wrapped_setting_answers_the_go_services_shape(wrapped: Any) -> None:
    client = wrapped
    # Given the Go clients' create request, with tags
    body = {
        "job": {k: v for k, v in DUMMY_JOB.items() if k != "group"},
        "tags": [{"key": "owner", "value": "me"}],
    }
    # When it is created, read and updated
    answers = [post(client, body)]
    job_id = answers[0].json_body["job"]["id"]
    answers.append(get(client, job_path(job_id)))
    answers.append(put(client, job_id, body))
    # Then each answer is {"job": {...}, "tags": [...], "log": null, "next": "..."}
    for response in answers:
        assert response.status_code in (200, 202), response.body
        answer = response.json_body
        assert set(answer) == {"job", "tags", "log", "next"}
        assert set(answer["job"]) == JOB_FIELDS | {"tags"}
        assert answer["tags"] == [{"key": "owner", "value": "me"}]
        assert answer["log"] is None
        assert RFC3339_UTC.match(answer["next"]) and answer["next"] == answer["job"]["next"]
        assert response.headers["ETag"] == f'"{answer["job"]["version"]}"'
    # And a job without tags has "tags": []; lists stay lists of names
    plain = post(client, {k: v for k, v in DUMMY_JOB.items() if k != "group"}).json_body
    assert plain["tags"] == [] and plain["job"]["enabled"] is True
    assert job_id in get(client, group_path()).json_body


def test_an_unknown_response_shape_setting_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chalicelib.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="MINION_RESPONSE_SHAPE"):
        Settings.from_env({"MINION_RESPONSE_SHAPE": "Wrapped"})
    assert Settings.from_env({}).response_shape == "flat"
