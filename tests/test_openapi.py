"""The OpenAPI document is true: same routes as the app, same fields as the objects, valid."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import app as app_module
from chalicelib import api, jobs
from chalicelib.jobs import Job
from chalicelib.runners import RUNNERS
from chalicelib.runs import RUN_ID, Run
from conftest import auth

DOCUMENT_PATH = Path(app_module.__file__).parent / "chalicelib" / "openapi.json"
DOCUMENT: dict[str, Any] = json.loads(DOCUMENT_PATH.read_text())
SCHEMAS = DOCUMENT["components"]["schemas"]
METHODS = ("get", "put", "post", "delete", "patch", "options", "head")
STAMP = datetime(2026, 1, 30, 10, 17, tzinfo=UTC)


def resolved(node: Any) -> Any:
    """`node` with every local `$ref` replaced by what it points at (the document has no cycles)."""
    if isinstance(node, list):
        return [resolved(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return resolved(target)
    return {key: resolved(value) for key, value in node.items()}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(path, METHOD, operation) of the document."""
    return [
        (path, method.upper(), operation)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def app_operations() -> set[tuple[str, str]]:
    """(path, METHOD) the app answers with a handler of its own (not the 405-only ones)."""
    return {
        (path, method)
        for path, entries in app_module.app.routes.items()
        for method, entry in entries.items()
        if not entry.view_name.startswith("not_allowed_")
    }


def example_path(path: str, operation: dict[str, Any]) -> str:
    """`path` with each path parameter replaced by its example."""
    for parameter in resolved(operation.get("parameters", [])) + resolved(
        DOCUMENT["paths"][path].get("parameters", [])
    ):
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", parameter["example"])
    return path


def full_job() -> Job:
    """A job with every optional field set (as after a run)."""
    return Job(
        account="spinup",
        group="space-xy",
        id=jobs.new_job_id(),
        name="n",
        schedule_expression="* * * * *",
        details={"runner": "dummyRunner"},
        enabled=True,
        modified_at=STAMP,
        starting_deadline_seconds=60,
        concurrency_policy="Forbid",
        max_attempts=2,
        tags=(("k", "v"),),
        notify=("failed", "missed"),
        anchor=STAMP,
        next=STAMP,
        last_run=full_run().summary(),
    )


def full_run() -> Run:
    """A run with every optional field set."""
    return Run(
        run_id="20260130T101700Z-s",
        job_id=jobs.new_job_id(),
        account="spinup",
        group="space-xy",
        trigger="schedule",
        scheduled_for="2026-01-30T10:17:00Z",
        status="failed",
        queued_at="2026-01-30T10:17:01Z",
        started_at="2026-01-30T10:17:02Z",
        finished_at="2026-01-30T10:17:03Z",
        attempts=1,
        output="out",
        error="boom",
        error_code="Boom",
        data={"a": "b"},
    )


def schema_validator(schema: dict[str, Any]) -> Any:
    from openapi_schema_validator import OAS30Validator

    return OAS30Validator(resolved(schema))


# --- the document and the app -----------------------------------------------------------------


def test_the_document_is_a_valid_openapi_3_document() -> None:
    from openapi_spec_validator import validate

    # Given the shipped document, When it is validated, Then it raises nothing
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.")


def test_every_route_of_the_app_is_in_the_document_and_nothing_else() -> None:
    # Given the app's routes (without the 405-only handlers) and the document's operations
    documented = {(path, method) for path, method, _ in operations()}

    # Then they are the same set
    assert documented == app_operations()


def test_every_operation_names_its_path_parameters_with_the_app_patterns() -> None:
    patterns = {
        "account": jobs.SEGMENT.pattern,
        "group": jobs.SEGMENT.pattern,
        "id": jobs.JOB_ID.pattern,
        "run_id": RUN_ID.pattern,
    }
    for path, _, operation in operations():
        # Given an operation's path parameters
        parameters = [
            p
            for p in resolved(DOCUMENT["paths"][path].get("parameters", []))
            + resolved(operation.get("parameters", []))
            if p["in"] == "path"
        ]

        # Then they are exactly the path's placeholders, each with the app's pattern
        assert sorted(p["name"] for p in parameters) == sorted(re.findall(r"{(\w+)}", path))
        for parameter in parameters:
            assert parameter["required"] is True
            assert parameter["schema"]["pattern"] == patterns[parameter["name"]], (path, parameter)
            assert re.match(parameter["schema"]["pattern"], parameter["example"])


def test_public_operations_answer_without_a_token_and_the_others_need_one(client: Any) -> None:
    # Given every documented operation with its example path parameters
    assert DOCUMENT["components"]["securitySchemes"]["token"] == {
        **DOCUMENT["components"]["securitySchemes"]["token"],
        "type": "apiKey",
        "in": "header",
        "name": "X-Auth-Token",
    }
    for path, method, operation in operations():
        secured = operation.get("security", DOCUMENT["security"]) != []

        # When it is called without a token
        response = client.http.request(
            method,
            example_path(path, operation),
            headers={"Content-Type": "application/json"},
            body=b"{}",
        )

        # Then it answers 401 exactly when the document asks for the token, and documents 401
        assert (response.status_code == 401) == secured, (method, path, response.status_code)
        assert ("401" in operation["responses"]) == secured, (method, path)


def test_the_app_serves_the_document_without_a_token(client: Any) -> None:
    response = client.http.get("/v1/minion/openapi.json")

    assert response.status_code == 200
    assert json.loads(response.body) == DOCUMENT


# --- the objects ----------------------------------------------------------------------------------


def test_the_job_schema_has_exactly_the_fields_of_a_job_object() -> None:
    # Given the document's job and a job with no optional field and one with all of them
    schema = SCHEMAS["Job"]
    minimal = Job(
        account="spinup",
        group="g",
        id=jobs.new_job_id(),
        name="n",
        schedule_expression="* * * * *",
        details={"runner": "dummyRunner"},
        modified_at=STAMP,
    )

    # Then the required fields are the minimal job's keys, the properties the full job's keys
    assert set(schema["required"]) == set(minimal.to_api())
    assert set(schema["properties"]) == set(full_job().to_api())
    assert schema["additionalProperties"] is False
    assert schema["properties"]["next"]["nullable"] is True
    assert SCHEMAS["LastRun"]["nullable"] is True
    assert set(SCHEMAS["LastRun"]["properties"]) == set(full_run().summary())


@pytest.mark.parametrize(
    "job",
    [
        pytest.param(
            lambda: Job(
                account="spinup",
                group="g",
                id=jobs.new_job_id(),
                name="n",
                schedule_expression="* * * * *",
                details={"runner": "dummyRunner"},
                modified_at=STAMP,
            ),
            id="disabled-never-run",
        ),
        pytest.param(full_job, id="every-field"),
    ],
)
def test_job_objects_validate_against_the_job_schema(job: Any) -> None:
    validator = schema_validator(SCHEMAS["Job"])

    errors = [error.message for error in validator.iter_errors(job().to_api())]

    assert errors == []


def test_the_run_schema_has_exactly_the_fields_of_a_run_record() -> None:
    schema = SCHEMAS["Run"]
    minimal = Run(
        run_id="20260130T101700Z-s",
        job_id=jobs.new_job_id(),
        account="a",
        group="g",
        trigger="schedule",
        scheduled_for="2026-01-30T10:17:00Z",
        status="queued",
    )

    assert set(schema["required"]) == set(minimal.to_api())
    assert set(schema["properties"]) == set(full_run().to_api())
    assert schema_validator(schema).is_valid(full_run().to_api())
    assert schema_validator(schema).is_valid(minimal.to_api())


def test_the_job_body_schema_names_every_field_a_request_may_carry() -> None:
    # Given the body schema of POST and PUT
    schema = SCHEMAS["JobInput"]
    accepted = jobs.CLIENT_FIELDS | jobs.READ_ONLY_FIELDS | set(jobs.PATH_FIELDS)

    # Then its properties are the fields job_from_request accepts, and nothing else is allowed
    assert set(schema["properties"]) == accepted
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "schedule_expression", "details"}
    for name, limit in jobs.LIMITS.items():
        assert schema["properties"][name]["maxLength"] == limit, name
    assert SCHEMAS["Details"]["maxProperties"] == jobs.MAX_DETAILS
    assert SCHEMAS["Details"]["additionalProperties"]["maxLength"] == jobs.MAX_DETAIL_VALUE
    assert SCHEMAS["Details"]["properties"]["runner"]["enum"] == list(RUNNERS)
    assert SCHEMAS["Tags"]["maxItems"] == jobs.MAX_TAGS
    wrapper = SCHEMAS["JobWrapper"]
    assert set(wrapper["properties"]) == {"job", "tags"} and wrapper["required"] == ["job"]


def test_query_limits_are_the_apps() -> None:
    runs = DOCUMENT["paths"]["/v1/minion/{account}/jobs/{group}/{id}/runs"]["get"]
    preview = DOCUMENT["paths"]["/v1/minion/schedule"]["get"]
    limit = next(p for p in runs["parameters"] if p["name"] == "limit")["schema"]
    count = next(p for p in preview["parameters"] if p["name"] == "count")["schema"]

    assert (limit["minimum"], limit["maximum"]) == (1, api.MAX_RUNS_PAGE)
    assert (count["minimum"], count["maximum"]) == (1, api.MAX_PREVIEW)
    assert {p["name"] for p in runs["parameters"]} == {"limit", "next_token"}
    assert {p["name"] for p in preview["parameters"]} == {"expression", "timezone", "count"}


def test_real_answers_of_the_app_conform_to_the_document(client: Any) -> None:
    # Given a job created with every optional field, and run once by hand
    body = {
        "name": "n",
        "schedule_expression": "*/5 * * * *",
        "enabled": True,
        "details": {"runner": "dummyRunner"},
        "starting_deadline_seconds": 120,
        "concurrency_policy": "Allow",
        "max_attempts": 2,
        "tags": [{"key": "k"}],
    }
    created = client.http.post(
        "/v1/minion/spinup/jobs/space-xy", headers=auth(), body=json.dumps(body)
    )
    job = json.loads(created.body)
    path = f"/v1/minion/spinup/jobs/space-xy/{job['id']}"
    run = client.http.patch(path, headers=auth())

    # When it, its runs and an error are read back
    answers = {
        ("/v1/minion/{account}/jobs/{group}", "post", "200"): created,
        ("/v1/minion/{account}/jobs/{group}/{id}", "get", "200"): client.http.get(
            path, headers=auth()
        ),
        ("/v1/minion/{account}/jobs/{group}/{id}", "patch", "202"): run,
        ("/v1/minion/{account}/jobs/{group}/{id}/runs", "get", "200"): client.http.get(
            path + "/runs?limit=1", headers=auth()
        ),
        ("/v1/minion/{account}/jobs/{group}/{id}", "put", "400"): client.http.put(
            path, headers=auth(), body=json.dumps({**body, "nmae": "x"})
        ),
        ("/v1/minion/schedule", "get", "200"): client.http.get(
            "/v1/minion/schedule?expression=rate(5%20minutes)&count=2", headers=auth()
        ),
        ("/v1/minion/version", "get", "200"): client.http.get("/v1/minion/version"),
    }

    # Then each has a documented status and a body valid against the documented schema
    for (template, method, status), response in answers.items():
        assert str(response.status_code) == status, (template, method, response.body)
        documented = resolved(DOCUMENT["paths"][template][method]["responses"][status])
        schema = documented["content"]["application/json"]["schema"]
        body_errors = schema_validator(schema).iter_errors(json.loads(response.body))
        assert [e.message for e in body_errors] == [], (template, method)


def body_forms(operation: dict[str, Any]) -> list[dict[str, Any]]:
    """The documented forms of an operation's JSON body ([{}] when it has none)."""
    schema = (
        resolved(operation.get("requestBody", {}))
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
    )
    return schema.get("anyOf", [schema])


EXAMPLE_CALLS = [
    (path, method, form)
    for path, method, operation in operations()
    for form in range(len(body_forms(operation)))
]


@pytest.mark.parametrize("path,method,form", EXAMPLE_CALLS, ids=lambda value: str(value))
def test_the_documents_examples_are_answered_as_documented(
    client: Any, path: str, method: str, form: int
) -> None:
    # Given the job and run the document's examples name, stored
    from api_support import SEEDED_JOBS, SEEDED_RUN
    from chalicelib import deps

    store = deps.store()
    for job in SEEDED_JOBS:
        store.create_job(job)
    store.put_run(SEEDED_RUN)
    operation = DOCUMENT["paths"][path][method.lower()]
    parameters = [
        p
        for p in resolved(DOCUMENT["paths"][path].get("parameters", []))
        + resolved(operation.get("parameters", []))
        if "example" in p
    ]
    query = "&".join(
        f"{p['name']}={quote(str(p['example']))}" for p in parameters if p["in"] == "query"
    )
    headers = {p["name"]: p["example"] for p in parameters if p["in"] == "header"}
    body_schema = body_forms(operation)[form]
    if operation.get("requestBody", {}).get("required"):
        assert "example" in body_schema, (method, path, form)

    # When the operation is called with its examples (and a token)
    response = client.http.request(
        method,
        example_path(path, operation) + (f"?{query}" if query else ""),
        headers=auth(**headers),
        body=json.dumps(body_schema["example"]).encode() if "example" in body_schema else b"",
    )

    # Then it succeeds with the documented status, content type and body
    success = next(code for code in operation["responses"] if code.startswith("2"))
    assert str(response.status_code) == success, (method, path, response.body)
    content = resolved(operation["responses"][success])["content"]
    # (Chalice sends a body without a Content-Type as application/json)
    declared = {k.lower(): v for k, v in response.headers.items()}.get("content-type")
    media_type = (declared or "application/json").split(";")[0]
    assert media_type in content, (method, path, media_type)
    if media_type == "application/json":
        errors = [
            e.message
            for e in schema_validator(content[media_type]["schema"]).iter_errors(
                json.loads(response.body)
            )
        ]
        assert errors == [], (method, path)


def test_the_job_list_paging_parameters_are_the_apps() -> None:
    for path in ("/v1/minion/{account}/jobs", "/v1/minion/{account}/jobs/{group}"):
        operation = resolved(DOCUMENT["paths"][path]["get"])
        parameters = {p["name"]: p for p in operation["parameters"]}
        assert set(parameters) == {"limit", "next_token", "expand"}
        limit = parameters["limit"]["schema"]
        assert (limit["minimum"], limit["maximum"]) == (1, api.MAX_JOBS_PAGE)
        assert parameters["expand"]["schema"]["enum"] == ["job"]
        listing = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert listing["anyOf"][1]["maxItems"] == api.MAX_EXPANDED_PAGE
        assert "Link" in operation["responses"]["200"]["headers"]


def test_paged_lists_and_wrapped_answers_conform_to_the_document(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import deps

    # Given a deployment answering the wrapped shape, and two jobs
    monkeypatch.setenv("MINION_RESPONSE_SHAPE", "wrapped")
    deps.reset()
    body = {
        "name": "n",
        "schedule_expression": "*/5 * * * *",
        "enabled": True,
        "details": {"runner": "dummyRunner"},
        "tags": [{"key": "k", "value": "v"}],
    }
    created = [
        client.http.post("/v1/minion/spinup/jobs/space-xy", headers=auth(), body=json.dumps(body))
        for _ in range(2)
    ]
    job_id = created[0].json_body["job"]["id"]
    answers = {
        ("/v1/minion/{account}/jobs/{group}", "post"): created[0],
        ("/v1/minion/{account}/jobs/{group}/{id}", "get"): client.http.get(
            f"/v1/minion/spinup/jobs/space-xy/{job_id}", headers=auth()
        ),
        ("/v1/minion/{account}/jobs", "get"): client.http.get(
            "/v1/minion/spinup/jobs?limit=1", headers=auth()
        ),
        ("/v1/minion/{account}/jobs/{group}", "get"): client.http.get(
            "/v1/minion/spinup/jobs/space-xy?expand=job&limit=1", headers=auth()
        ),
    }
    # Then each answer, and the Link header of the pages, is as documented
    for (template, method), response in answers.items():
        assert response.status_code == 200, response.body
        documented = resolved(DOCUMENT["paths"][template][method]["responses"]["200"])
        schema = documented["content"]["application/json"]["schema"]
        assert [
            e.message for e in schema_validator(schema).iter_errors(json.loads(response.body))
        ] == [], template
        if method == "get" and "{id}" not in template:
            link = documented["headers"]["Link"]["schema"]["pattern"]
            assert re.match(link, response.headers["Link"]), response.headers
