"""lambdaRunner: invokes a Lambda function asynchronously (InvocationType=Event)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .base import (
    DetailsError,
    PermanentError,
    RunContext,
    RunResult,
    Scope,
    aws_call,
    check_keys,
    check_pattern,
    check_place,
    revalidate,
    statement,
)

# Lambda's own pattern for Invoke's FunctionName: a name, partial ARN or ARN, with qualifier.
FUNCTION_NAME = re.compile(
    r"(?=.{1,170}\Z)(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?"
    r"(function:)?([a-zA-Z0-9_.-]+)(:(\$LATEST|[a-zA-Z0-9_-]+))?"
)
# The asynchronous invocation limit; a job's details are stored in one DynamoDB item anyway.
MAX_PAYLOAD_BYTES = 256 * 1024


class LambdaRunner:
    """Queues one asynchronous invocation of a function, with an optional JSON payload."""

    name = "lambdaRunner"
    # Every IAM action permissions() may allow (the runner roles grant the union of these).
    iam_actions: tuple[str, ...] = ("lambda:InvokeFunction",)

    def validate(self, details: Mapping[str, str]) -> None:
        """Require `function_name`; `payload`, when given, must be a JSON document."""
        check_keys(details, self.name, ("function_name",), ("payload",))
        check_pattern(
            details,
            "function_name",
            FUNCTION_NAME,
            "must be a Lambda function name or ARN, optionally with :version or :alias",
        )
        if "payload" in details:
            _parse_payload(details["payload"])

    def check_scope(self, details: Mapping[str, str], scope: Scope) -> None:
        """A function named by (partial) ARN must be in the entry's partition, account and
        region: Invoke would otherwise call another account's function."""
        match = FUNCTION_NAME.fullmatch(details["function_name"])
        if match:
            check_place(
                details,
                "function_name",
                match[2] if match[1] else None,
                (match[3] or "").rstrip(":") or None,
                (match[5] or "").rstrip(":") or None,
                scope,
            )

    def permissions(self, details: Mapping[str, str], scope: Scope) -> list[dict[str, Any]]:
        """Invoke of this function only (any of its versions and aliases)."""
        match = FUNCTION_NAME.fullmatch(details["function_name"])
        name = match[7] if match else details["function_name"]
        function = scope.arn("lambda", f"function:{name}")
        return [statement(["lambda:InvokeFunction"], [function, function + ":*"])]

    def run(self, details: Mapping[str, str], ctx: RunContext) -> RunResult:
        """Invoke the function with InvocationType=Event; Lambda accepts it with HTTP 202."""
        revalidate(self, details)
        function_name = details["function_name"]
        request: dict[str, Any] = {"FunctionName": function_name, "InvocationType": "Event"}
        if "payload" in details:
            request["Payload"] = details["payload"].encode("utf-8")
        with aws_call(f"lambda Invoke {function_name}"):
            answer = ctx.client("lambda").invoke(**request)
        status = int(answer.get("StatusCode", 0))
        if status != 202:
            raise PermanentError(f"lambda Invoke {function_name}: status {status}, expected 202")
        request_id = answer.get("ResponseMetadata", {}).get("RequestId")
        return RunResult(
            output=f"function {function_name}: invocation queued (request {request_id})",
            data={"function_name": function_name, "status_code": status, "request_id": request_id},
        )


def _parse_payload(text: str) -> Any:
    if len(text.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise DetailsError("payload", f"must be at most {MAX_PAYLOAD_BYTES} bytes")
    try:
        # NaN and Infinity are Python's extensions, not JSON.
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise DetailsError("payload", "must be a JSON document: nested too deeply") from None
    except ValueError as error:
        raise DetailsError("payload", f"must be a JSON document: {error}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
