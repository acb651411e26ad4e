"""lambdaRunner: validation, and asynchronous invocations of moto's emulated functions."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.runners import RUNNERS
from chalicelib.runners.base import DetailsError, PermanentError, RetryableError, RunnerError
from runner_support import REGION, context, fail_with, fake_credentials, stubbed

RUNNER = RUNNERS["lambdaRunner"]


def details(**changes: str) -> dict[str, str]:
    return {"runner": "lambdaRunner", "function_name": "cleanup", **changes}


def cleanup_function() -> None:
    """An emulated function `cleanup` (moto answers invocations without running it)."""
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="cleanup", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handle(event, context):\n    return event\n")
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="cleanup",
        Runtime="python3.11",
        Role=role,
        Handler="handler.handle",
        Code={"ZipFile": code.getvalue()},
    )


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    [
        details(),
        details(payload="{}"),
        details(payload='{"dry_run": true, "days": [1, 2]}'),
        details(payload="[]"),
        details(payload='"text"'),
        details(payload="42"),
        details(function_name="cleanup:prod"),
        details(function_name="cleanup:$LATEST"),
        details(function_name="arn:aws:lambda:us-east-1:123456789012:function:cleanup"),
        details(function_name="123456789012:function:cleanup:7"),
    ],
)
def test_valid_details_are_accepted(good: dict[str, str]) -> None:
    RUNNER.validate(good)


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"runner": "lambdaRunner"}, "function_name"),
        (details(function_name=""), "function_name"),
        (details(function_name="clean up"), "function_name"),
        (details(function_name="cleanup:"), "function_name"),
        (details(function_name="f" * 171), "function_name"),
        (details(payload=""), "payload"),
        (details(payload="{dry_run: true}"), "payload"),
        (details(payload="{'a': 1}"), "payload"),
        (details(payload="NaN"), "payload"),
        (details(payload='{"a": Infinity}'), "payload"),
        (details(payload="[" * 100_000), "payload"),
        (details(payload=json.dumps("x" * 300_000)), "payload"),
        ({**details(), "invocation_type": "RequestResponse"}, "invocation_type"),
    ],
)
def test_invalid_details_are_rejected_naming_the_key(bad: dict[str, str], key: str) -> None:
    with pytest.raises(DetailsError) as raised:
        RUNNER.validate(bad)
    assert raised.value.key == key


def test_run_with_an_invalid_stored_payload_fails_permanently() -> None:
    with pytest.raises(PermanentError, match="details.payload"):
        RUNNER.run(details(payload="{"), context(lambda s: pytest.fail("no AWS call")))


# --- invocations ---------------------------------------------------------------------------


def test_invoke_queues_an_event_invocation_with_the_payload(moto_aws: None) -> None:
    # Given a function, and a record of what Lambda answered
    cleanup_function()
    ctx = context()
    answers: list[dict[str, Any]] = []
    ctx.client("lambda").meta.events.register(
        "after-call.lambda.Invoke",
        lambda http_response, parsed, **_: answers.append(
            {"status": parsed["StatusCode"], "body": parsed["Payload"].read()}
        ),
    )
    # When invoked with a payload
    result = RUNNER.run(details(payload='{"dry_run": true}'), ctx)
    # Then Lambda accepted one asynchronous invocation of that payload (moto echoes it back)
    assert answers == [{"status": 202, "body": b'{"dry_run": true}'}]
    assert result.data["status_code"] == 202
    assert result.data["request_id"] and result.data["request_id"] in result.output


def test_invoke_sends_invocation_type_event() -> None:
    ctx, stubber = stubbed("lambda")
    stubber.add_response(
        "invoke",
        {"StatusCode": 202},
        {"FunctionName": "cleanup", "InvocationType": "Event", "Payload": b"[1]"},
    )
    RUNNER.run(details(payload="[1]"), ctx)
    stubber.assert_no_pending_responses()


def test_missing_function_fails_permanently_with_the_aws_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given no function (moto's Docker-less Lambda accepts any name: use the one that checks)
    fake_credentials(monkeypatch)
    with mock_aws():
        with pytest.raises(PermanentError) as raised:
            RUNNER.run(details(), context())
    assert raised.value.code == "ResourceNotFoundException"


@pytest.mark.parametrize(
    "code, status, error",
    [
        ("TooManyRequestsException", 429, RetryableError),
        ("ServiceException", 500, RetryableError),
        ("ResourceConflictException", 409, RetryableError),
        ("AccessDeniedException", 403, PermanentError),
        ("KMSAccessDeniedException", 502, PermanentError),
    ],
)
def test_invoke_errors_are_classified(code: str, status: int, error: type[RunnerError]) -> None:
    ctx, stubber = stubbed("lambda")
    fail_with(stubber, "invoke", code, status)
    with pytest.raises(error) as raised:
        RUNNER.run(details(), ctx)
    assert type(raised.value) is error and raised.value.code == code
