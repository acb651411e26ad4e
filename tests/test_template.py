"""The deployable template: what `make package` builds (build/sam.json) must hold everything a
working deployment relies on, so that a change dropping one property fails CI.

The module packages with infra/package.sh (Chalice downloads its wheels from the package
index, then cfn-lint), or reuses build/ when it was packaged from exactly the current inputs
(tests/package_support.py). The policies are also checked against what the code really calls:
the API, a tick and the worker run against moto while every AWS call is recorded, and each
call must be allowed by that function's role in the template.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest

from chalicelib import deps
from chalicelib.jobs import DEFAULT_DEADLINE_SECONDS
from chalicelib.runners import RUNNERS
from chalicelib.settings import Settings
from chalicelib.store import table_definition
from conftest import TABLE, TOKEN, auth, drain, scheduled_event, sqs_event
from package_support import (
    ACCOUNT_ID,
    REGION,
    ROOT,
    STACK,
    TEMPLATE,
    ZIP,
    Resolver,
    package_lock,
    packaged_template,
)

pytestmark = pytest.mark.slow

RUNNER_ROLE = ROOT / "infra" / "runner-role.yaml"
FUNCTIONS = {
    "APIHandler": "ApiRole",
    "Tick": "TickRole",
    "TickPart": "TickPartRole",
    "Worker": "WorkerRole",
    "Sweep": "SweepRole",
}
# Functions that exist only when a parameter asks for them (WebhookSecretArn).
OPTIONAL_FUNCTIONS = {"Reporter": "ReporterRole"}
# The only actions the roles may grant on Resource "*": these have no resource-level
# permissions in IAM.
NO_RESOURCE_LEVEL = {"ec2:DescribeInstances", "autoscaling:DescribeAutoScalingGroups"}
# What the runners call in a target account, as IAM actions: the code's table
# (Runner.iam_actions; tests/test_one_source.py holds each runner's session policies to it).
RUNNER_ACTIONS = {action for runner in RUNNERS.values() for action in runner.iam_actions}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """build/sam.json as `make package` builds it from the work tree."""
    return packaged_template()


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def props(template: dict[str, Any], name: str) -> dict[str, Any]:
    return template["Resources"][name]["Properties"]


def refers_to(value: Any, resource: str) -> bool:
    """Whether an intrinsic stands for `resource` (Ref, GetAtt, or a Sub of it alone)."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((function, argument),) = value.items()
    if function == "Ref":
        return argument == resource
    if function == "Fn::GetAtt":
        return argument[0] == resource
    if function == "Fn::Sub" and isinstance(argument, str):
        return re.fullmatch(r"\$\{" + re.escape(resource) + r"(\.\w+)?\}", argument) is not None
    return False


def unwrapped(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Statements with `Fn::If [condition, statement, AWS::NoValue]` replaced by the statement,
    marked `_if` with its condition (`allowed` honours it)."""
    return [{**s["Fn::If"][1], "_if": s["Fn::If"][0]} if "Fn::If" in s else s for s in statements]


def statements_of(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every statement of a role: its inline policies and the RolePolicy resources on it."""
    found = [
        s
        for policy in props(template, role).get("Policies", [])
        for s in policy["PolicyDocument"]["Statement"]
    ]
    for resource in resources_of(template, "AWS::IAM::RolePolicy").values():
        if refers_to(resource["Properties"]["RoleName"], role):
            found.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return unwrapped(found)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed(
    resolver: Resolver,
    statements: list[dict[str, Any]],
    action: str,
    resource: str,
    context: dict[str, str] | None = None,
) -> bool:
    """IAM's answer for one action on one resource, for Allow statements without conditions,
    or whose only conditions are StringEquals met by `context` (condition key -> value)."""
    for statement in statements:
        if statement["Effect"] != "Allow" or (
            "_if" in statement and not resolver.condition(statement["_if"])
        ):
            continue
        if "Condition" in statement and not _met(statement["Condition"], context or {}):
            continue
        actions = {a.lower() for a in as_list(statement["Action"])}
        resources = [
            r for value in as_list(statement["Resource"]) for r in as_list(resolver.resolve(value))
        ]
        if action.lower() in actions and any(fnmatch.fnmatchcase(resource, r) for r in resources):
            return True
    return False


def _met(condition: dict[str, Any], context: dict[str, str]) -> bool:
    return set(condition) == {"StringEquals"} and all(
        context.get(key) == value for key, value in condition["StringEquals"].items()
    )


# --- the table ----------------------------------------------------------------------------------


def test_table_is_the_one_the_code_queries(template: dict[str, Any]) -> None:
    # Given the CreateTable arguments the code's local stack and tests use
    expected = table_definition(TABLE)
    # When the template's table is read
    table = props(template, "JobsTable")
    # Then keys, attribute types and the due index (keys and INCLUDE projection) agree
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(
        expected["AttributeDefinitions"], key=str
    )
    assert table["KeySchema"] == expected["KeySchema"]
    assert table["BillingMode"] == expected["BillingMode"]
    index, watch = table["GlobalSecondaryIndexes"]
    wanted, wanted_watch = expected["GlobalSecondaryIndexes"]
    assert (index["IndexName"], index["KeySchema"]) == (wanted["IndexName"], wanted["KeySchema"])
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert sorted(index["Projection"]["NonKeyAttributes"]) == sorted(
        wanted["Projection"]["NonKeyAttributes"]
    )
    # And the sweep's watch index (keys only) too
    assert watch == wanted_watch


def test_table_expires_runs_and_is_protected_backed_up_and_encrypted(
    template: dict[str, Any],
) -> None:
    # When the table's settings are read
    resource = template["Resources"]["JobsTable"]
    table = resource["Properties"]
    # Then run records expire on expires_at (the attribute the store writes)
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    # And it has point-in-time recovery, deletion protection, encryption at rest
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert Resolver(template).resolve(table["DeletionProtectionEnabled"]) == "true"
    assert table["SSESpecification"]["SSEEnabled"] is True
    # And deleting or replacing the stack keeps the data, but a failed first create of the
    # stack deletes the table it made (the protection is off for that create: deploy.sh)
    assert resource["DeletionPolicy"] == "RetainExceptOnCreate"
    assert resource["UpdateReplacePolicy"] == "Retain"
    off = Resolver(template, {"TableDeletionProtection": "false"})
    assert off.resolve(table["DeletionProtectionEnabled"]) == "false"


def test_store_writes_expires_at_for_runs() -> None:
    # Given a run item as the store writes it
    from chalicelib.runs import Run
    from chalicelib.store import run_to_item

    item = run_to_item(
        Run(
            run_id="r",
            job_id="j",
            account="a",
            group="g",
            trigger="schedule",
            scheduled_for="2026-01-30T10:18:00Z",
            status="queued",
        ),
        1700000000,
    )
    # Then it carries the TTL attribute the template enables, as a number
    assert item["expires_at"] == {"N": "1700000000"}


# --- the queues and the worker's event source ---------------------------------------------------


def test_runs_queue_is_encrypted_and_redrives_to_an_encrypted_dead_letter_queue(
    template: dict[str, Any],
) -> None:
    # When the runs queue is read
    queue = props(template, "RunsQueue")
    # Then it is encrypted, and redrives to a dead-letter queue after a few receives
    assert queue["SqsManagedSseEnabled"] is True or "KmsMasterKeyId" in queue
    redrive = queue["RedrivePolicy"]
    assert refers_to(redrive["deadLetterTargetArn"], "RunsDeadLetterQueue")
    assert 1 < int(redrive["maxReceiveCount"]) <= 10
    # And the dead-letter queue is encrypted and keeps messages as long as SQS allows
    dead_letters = props(template, "RunsDeadLetterQueue")
    assert dead_letters["SqsManagedSseEnabled"] is True or "KmsMasterKeyId" in dead_letters
    assert dead_letters["MessageRetentionPeriod"] == 1209600


def test_visibility_timeout_is_at_least_six_times_the_worker_timeout(
    template: dict[str, Any],
) -> None:
    # Given the worker function's timeout, as packaged
    worker_timeout = int(props(template, "Worker")["Timeout"])
    # Then a message is hidden for at least six times that (AWS's rule for SQS event sources)
    assert int(props(template, "RunsQueue")["VisibilityTimeout"]) >= 6 * worker_timeout


def test_worker_consumes_the_runs_queue_with_partial_batch_responses(
    template: dict[str, Any],
) -> None:
    # When the worker's SQS event source is read
    [event] = [e for e in props(template, "Worker")["Events"].values() if e["Type"] == "SQS"]
    source = event["Properties"]
    # Then it reports batch item failures (only failed messages come back)
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # And it reads the template's runs queue, not a queue named at package time
    assert refers_to(source["Queue"], "RunsQueue")
    assert 1 <= source["BatchSize"] <= 10


def test_worker_answers_with_a_partial_batch_response() -> None:
    # Given a batch holding one message that is not a run message
    from chalicelib.worker import handle_batch

    event = sqs_event([{"MessageId": "poison-1", "Body": "not json"}])
    # When the worker handles it
    from types import SimpleNamespace

    untouched = SimpleNamespace(invocation_timeout=120, concurrency=1, flush_counts=lambda: None)
    answer = handle_batch(event, worker=untouched)  # type: ignore[arg-type]
    # Then the answer is the partial batch response the event source is configured for
    assert answer == {"batchItemFailures": [{"itemIdentifier": "poison-1"}]}


# --- the tick ----------------------------------------------------------------------------------


def test_tick_retries_a_bounded_number_of_times_within_the_starting_deadline(
    template: dict[str, Any],
) -> None:
    # When the tick's asynchronous invocation settings are read
    tick = props(template, "Tick")
    retries = tick["EventInvokeConfig"]
    # Then a failed tick is retried (it re-sends under the same run ids), a bounded number
    # of times, and never after the default starting deadline has passed
    assert 1 <= retries["MaximumRetryAttempts"] <= 2
    assert 60 <= retries["MaximumEventAgeInSeconds"] <= DEFAULT_DEADLINE_SECONDS
    # And EventBridge's own delivery retries are bounded the same way
    [schedule] = [e for e in tick["Events"].values() if e["Type"] == "Schedule"]
    assert schedule["Properties"]["Schedule"] == "cron(* * * * ? *)"
    policy = schedule["Properties"]["RetryPolicy"]
    assert policy["MaximumEventAgeInSeconds"] <= DEFAULT_DEADLINE_SECONDS


# --- the functions' environment, logs and roles ------------------------------------------------


def test_each_function_is_configured_with_the_templates_resources(template: dict[str, Any]) -> None:
    resolver = Resolver(template)
    for function in FUNCTIONS:
        # Given the function's environment as it deploys with the default parameters
        env = {
            k: str(resolver.resolve(v))
            for k, v in props(template, function)["Environment"]["Variables"].items()
        }
        # When the code builds its settings from it
        settings = Settings.from_env(env)
        # Then it uses the template's table and queue (by URL: no GetQueueUrl needed)
        assert settings.table_name == resolver.ref("JobsTable"), function
        assert settings.queue_url == resolver.ref("RunsQueue"), function
        assert settings.shards == int(template["Parameters"]["Shards"]["Default"]), function
    # And the API reads tokens from the secret, the API and the worker the registry parameter
    api = Settings.from_env(
        {
            k: str(resolver.resolve(v))
            for k, v in props(template, "APIHandler")["Environment"]["Variables"].items()
        }
    )
    worker = Settings.from_env(
        {
            k: str(resolver.resolve(v))
            for k, v in props(template, "Worker")["Environment"]["Variables"].items()
        }
    )
    assert api.tokens_secret_id == resolver.arn("TokensSecret")
    assert api.tokens == ()
    assert api.accounts_parameter == worker.accounts_parameter == "/minion/accounts"


def test_an_existing_tokens_secret_replaces_the_generated_one(template: dict[str, Any]) -> None:
    # Given a deployment naming its own secret
    existing = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:shared/minion-AbCdEf"
    resolver = Resolver(template, {"TokensSecretArn": existing})
    # Then no secret is created, the API reads that one and may read only that one
    assert template["Resources"]["TokensSecret"]["Condition"] == "CreateTokensSecret"
    assert not resolver.condition("CreateTokensSecret")
    env = props(template, "APIHandler")["Environment"]["Variables"]
    assert resolver.resolve(env["MINION_TOKENS_SECRET_ID"]) == existing
    statements = statements_of(template, "ApiRole")
    assert allowed(resolver, statements, "secretsmanager:GetSecretValue", existing)
    assert not allowed(
        resolver, statements, "secretsmanager:GetSecretValue", resolver.arn("TokensSecret")
    )


def test_the_tokens_secret_starts_with_a_generated_token(template: dict[str, Any]) -> None:
    # When the secret is read
    secret = props(template, "TokensSecret")
    # Then its first value is generated, long, and a single token as auth.parse_tokens reads it
    generated = secret["GenerateSecretString"]
    assert generated["PasswordLength"] >= 32
    assert generated["ExcludePunctuation"] is True  # no "," that would split it in two
    assert "SecretString" not in secret


def test_each_function_logs_to_its_own_group_with_retention(template: dict[str, Any]) -> None:
    groups = resources_of(template, "AWS::Logs::LogGroup")
    seen = set()
    for function, role in FUNCTIONS.items():
        # When the function's log group is read
        group = props(template, function)["LoggingConfig"]["LogGroup"]["Ref"]
        # Then it is the template's, with a retention, and only this function's role writes it
        assert group in groups and group not in seen
        seen.add(group)
        assert groups[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        [logs] = [
            s
            for s in statements_of(template, role)
            if any(a.startswith("logs:") for a in as_list(s["Action"]))
        ]
        assert set(logs["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
        assert refers_to(logs["Resource"], group)
    assert 30 <= int(template["Parameters"]["LogRetentionDays"]["Default"]) <= 365


def test_api_is_throttled(template: dict[str, Any]) -> None:
    # When the API's stage settings are read
    [settings] = props(template, "RestAPI")["MethodSettings"]
    # Then every method of every path has a rate and a burst limit
    assert (settings["ResourcePath"], settings["HttpMethod"]) == ("/*", "*")
    resolver = Resolver(template)
    assert int(resolver.resolve(settings["ThrottlingRateLimit"])) > 0
    assert int(resolver.resolve(settings["ThrottlingBurstLimit"])) >= int(
        resolver.resolve(settings["ThrottlingRateLimit"])
    )


def _sam_transformed(template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation that the SAM transform makes of the template (code at a fake S3 key)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    copy = json.loads(json.dumps(template))
    for function in (*FUNCTIONS, *OPTIONAL_FUNCTIONS):
        copy["Resources"][function]["Properties"]["CodeUri"] = "s3://artifacts/code.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    return transform(
        copy, {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID}, NoManagedPolicies()
    )


def test_api_has_one_stage_and_it_is_throttled(template: dict[str, Any]) -> None:
    # When SAM transforms the packaged template, as CloudFormation does on deploy
    resources = _sam_transformed(template)["Resources"]
    # Then the API has exactly one stage, the throttled one (no extra stage named "Stage",
    # whose requests would bypass the throttling)
    stages = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    [stage] = stages
    assert stage["StageName"] == props(template, "RestAPI")["StageName"] == "api"
    [settings] = stage["MethodSettings"]
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(settings)
    [deployment] = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Deployment"
    ]
    assert "StageName" not in deployment


def test_functions_run_on_the_configured_supported_runtime_and_architecture(
    template: dict[str, Any],
) -> None:
    # Given the runtime chosen in .chalice/config.json (whatever Python ran the build)
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    runtime, architecture = config["lambda_python_version"], config["lambda_architecture"]
    # Then it is a Python on Amazon Linux 2023 (3.12 or later)
    major, minor = map(int, runtime.removeprefix("python").split("."))
    assert (major, minor) >= (3, 12), runtime
    # And every function runs on it, on that architecture
    for function in FUNCTIONS:
        assert props(template, function)["Runtime"] == runtime, function
        assert props(template, function)["Architectures"] == [architecture], function


# ELF e_machine of a compiled module, by Lambda architecture.
ELF_MACHINES = {"x86_64": 62, "arm64": 183}


def test_compiled_dependencies_are_built_for_the_runtime_and_its_architecture(
    template: dict[str, Any],
) -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    abi = "cp" + config["lambda_python_version"].removeprefix("python").replace(".", "")
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[config["lambda_architecture"]]
    with zipfile.ZipFile(ZIP) as archive:
        names = archive.namelist()
        wheels = {
            n.split("/")[0]: archive.read(n).decode()
            for n in names
            if n.endswith(".dist-info/WHEEL")
        }
        # Given every compiled module the package ships (bcrypt's, at least)
        compiled = [n for n in names if n.endswith(".so")]
        assert any(n.startswith("bcrypt/") for n in compiled)
        for name in compiled:
            # Then it is a Linux binary of the functions' architecture
            header = archive.read(name)[:20]
            assert header[:4] == b"\x7fELF", name
            assert (
                int.from_bytes(header[18:20], "little")
                == ELF_MACHINES[config["lambda_architecture"]]
            ), name
            # And its file name names the runtime's ABI (or the stable ABI)
            assert re.search(rf"\.({abi}-[^.]*|abi3)\.so$", name), name
    # And each wheel with compiled code is tagged for that ABI, that machine and a glibc no
    # newer than Amazon Linux 2023's (2.34)
    binary = 0
    for dist, text in wheels.items():
        tags = re.findall(r"^Tag: (\S+)-(\S+)-(\S+)$", text, re.MULTILINE)
        if any(platform != "any" for _, _, platform in tags):
            binary += 1
            assert any(
                abi_tag in (abi, "abi3")
                and platform.endswith(machine)
                and _glibc(platform) <= (2, 34)
                for _, abi_tag, platform in tags
            ), (dist, tags)
    assert binary >= 1


def _glibc(platform: str) -> tuple[int, int]:
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    found = re.match(r"manylinux_(\d+)_(\d+)_", platform)
    if found:
        return int(found[1]), int(found[2])
    return legacy[platform.split("_")[0]]


def test_tick_has_reserved_concurrency_unless_the_deployment_says_none(
    template: dict[str, Any],
) -> None:
    # Given the tick's reserved concurrency as deployed with the default parameters
    reserved = props(template, "Tick")["ReservedConcurrentExecutions"]
    # Then some is reserved: a busy account cannot throttle the tick
    assert int(Resolver(template).resolve(reserved)) >= 2
    # And a deployment in an account too small to reserve any can say 0: none is reserved
    assert Resolver(template, {"TickReservedConcurrency": "0"}).resolve(reserved) is None


def test_each_function_has_its_own_role_and_nothing_is_generated(template: dict[str, Any]) -> None:
    # Then each function runs with its own role from the template
    roles = [props(template, f)["Role"] for f in FUNCTIONS]
    for (function, role), value in zip(FUNCTIONS.items(), roles, strict=True):
        assert value == {"Fn::GetAtt": [role, "Arn"]}, function
        trust = props(template, role)["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]
        assert "ManagedPolicyArns" not in props(template, role)
    # And Chalice generated no role or policy of its own
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert config["autogen_policy"] is False and config["manage_iam_role"] is False
    assert set(resources_of(template, "AWS::IAM::Role")) == set(FUNCTIONS.values()) | set(
        OPTIONAL_FUNCTIONS.values()
    )


def test_no_policy_grants_a_wildcard_action_or_an_unscoped_resource(
    template: dict[str, Any],
) -> None:
    everything = [
        (role, s)
        for role in (*FUNCTIONS.values(), *OPTIONAL_FUNCTIONS.values())
        for s in statements_of(template, role)
    ]
    assert len(everything) >= 15
    for role, statement in everything:
        actions = as_list(statement["Action"])
        # Then no action has a wildcard
        assert all("*" not in a and ":" in a for a in actions), (role, actions)
        # And Resource "*" only for actions IAM cannot scope
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= NO_RESOURCE_LEVEL, (role, actions)


def _actions(template: dict[str, Any], role: str, conditional: bool = False) -> set[str]:
    statements = unwrapped(
        [
            s
            for policy in props(template, role).get("Policies", [])
            for s in policy["PolicyDocument"]["Statement"]
        ]
    )
    if conditional:
        statements = statements_of(template, role)
    return {a for s in statements for a in as_list(s["Action"])}


def test_api_role_allows_the_table_run_now_messages_the_tokens_and_the_registry(
    template: dict[str, Any],
) -> None:
    resolver = Resolver(template)
    statements = statements_of(template, "ApiRole")
    # Then exactly these actions
    assert _actions(template, "ApiRole") == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
        "sqs:SendMessage",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameter",
    }
    # On exactly these resources
    table = resolver.arn("JobsTable")
    assert allowed(resolver, statements, "dynamodb:DeleteItem", table)
    assert not allowed(resolver, statements, "dynamodb:Query", table + "/index/due")
    assert allowed(resolver, statements, "sqs:SendMessage", resolver.arn("RunsQueue"))
    assert not allowed(resolver, statements, "sqs:SendMessage", resolver.arn("RunsDeadLetterQueue"))
    parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/minion/accounts"
    assert allowed(resolver, statements, "ssm:GetParameter", parameter)
    assert not allowed(resolver, statements, "ssm:GetParameter", parameter + "-other")


def test_tick_role_allows_only_sending_the_parts(template: dict[str, Any]) -> None:
    resolver = Resolver(template)
    statements = statements_of(template, "TickRole")
    assert _actions(template, "TickRole") == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:SendMessage",
    }
    # Then the scheduled tick sends to the parts queue, and touches nothing else
    assert allowed(resolver, statements, "sqs:SendMessage", resolver.arn("TickPartsQueue"))
    assert not allowed(resolver, statements, "sqs:SendMessage", resolver.arn("RunsQueue"))


def test_tick_part_role_allows_the_due_items_the_jobs_the_runs_and_its_queues(
    template: dict[str, Any],
) -> None:
    resolver = Resolver(template)
    statements = statements_of(template, "TickPartRole")
    table = resolver.arn("JobsTable")
    assert _actions(template, "TickPartRole") == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
        "events:PutEvents",
    }
    # Then it queries due items and the legacy index, reads jobs and writes due items and runs
    assert allowed(resolver, statements, "dynamodb:Query", table)
    assert allowed(resolver, statements, "dynamodb:Query", table + "/index/due")
    assert allowed(resolver, statements, "dynamodb:BatchWriteItem", table)
    assert not allowed(resolver, statements, "dynamodb:DeleteItem", table)
    # And it consumes the parts queue and sends only to the runs queue
    assert allowed(resolver, statements, "sqs:ReceiveMessage", resolver.arn("TickPartsQueue"))
    assert allowed(resolver, statements, "sqs:SendMessage", resolver.arn("RunsQueue"))
    assert not allowed(resolver, statements, "sqs:SendMessage", resolver.arn("TickPartsQueue"))


def test_worker_role_allows_the_table_its_queue_the_registry_and_the_runner_roles(
    template: dict[str, Any],
) -> None:
    resolver = Resolver(template)
    statements = statements_of(template, "WorkerRole")
    queue = resolver.arn("RunsQueue")
    assert _actions(template, "WorkerRole") == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
        "ssm:GetParameter",
        "sts:AssumeRole",
        "events:PutEvents",
    }
    # Then the event source and the retries work on the runs queue
    for action in (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
    ):
        assert allowed(resolver, statements, action, queue), action
    # And by default it assumes no role at all: not "any account's minion-runner" (12.4)
    for role in (
        "arn:aws:iam::111111111111:role/minion-runner",
        "arn:aws:iam::111111111111:role/Admin",
    ):
        assert not allowed(resolver, statements, "sts:AssumeRole", role)
    # And the runner roles are a parameter: a deployment names exactly its accounts' roles
    listed = "arn:aws:iam::222222222222:role/runner,arn:aws:iam::333333333333:role/runner"
    narrow = Resolver(template, {"RunnerRoleArns": listed})
    for role in listed.split(","):
        assert allowed(narrow, statements, "sts:AssumeRole", role)
    assert not allowed(
        narrow, statements, "sts:AssumeRole", "arn:aws:iam::111111111111:role/minion-runner"
    )
    # And the API and the worker are told the same list: the registry refuses other roles
    for function in ("APIHandler", "Worker"):
        variables = props(template, function)["Environment"]["Variables"]
        env = {k: str(narrow.resolve(v)) for k, v in variables.items()}
        assert Settings.from_env(env).runner_role_arns == tuple(listed.split(",")), function
        env = {k: str(resolver.resolve(v)) for k, v in variables.items()}
        assert Settings.from_env(env).runner_role_arns == (), function


def test_worker_acts_in_its_own_account_only_when_the_deployment_says_so(
    template: dict[str, Any],
) -> None:
    # Given the policy with the runners' actions in the worker's own account
    [name] = resources_of(template, "AWS::IAM::RolePolicy")
    policy = template["Resources"][name]
    # Then it exists only with RunnersInOwnAccount=true, on the worker's role
    assert refers_to(policy["Properties"]["RoleName"], "WorkerRole")
    assert not Resolver(template).condition(policy["Condition"])
    assert Resolver(template, {"RunnersInOwnAccount": "true"}).condition(policy["Condition"])
    # And it allows exactly the runners' actions, as the runner role in other accounts does
    assert (
        _actions(template, "WorkerRole", conditional=True) - _actions(template, "WorkerRole")
        == RUNNER_ACTIONS
    )


# --- what an operator opens first: dashboard, alarms, saved queries ------------------------------


def _metrics_emitted_by_the_code() -> set[str]:
    sources = "\n".join(p.read_text() for p in (ROOT / "chalicelib").rglob("*.py"))
    return set(re.findall(r'\b_?emit\(\s*"(\w+)"', sources))


def _dashboard(template: dict[str, Any]) -> dict[str, Any]:
    body = props(template, "Dashboard")["DashboardBody"]
    return json.loads(Resolver(template).resolve(body))


def _widget_metrics(widget: dict[str, Any]) -> list[list[Any]]:
    return [
        [m for m in line if not isinstance(m, dict)]
        for line in widget.get("properties", {}).get("metrics", [])
    ]


def test_dashboard_shows_runs_the_tick_the_api_and_the_queues(template: dict[str, Any]) -> None:
    # When the dashboard's body is rendered as it deploys
    dashboard = _dashboard(template)
    lines = [line for w in dashboard["widgets"] for line in _widget_metrics(w)]
    namespace = template["Parameters"]["MetricsNamespace"]["Default"]
    # Then it shows every metric the code emits, in the functions' namespace
    custom = {line[1] for line in lines if line[0] == namespace}
    emitted = _metrics_emitted_by_the_code()
    assert {
        "Runs",
        "RunsQueued",
        "RunsMissed",
        "JobsDue",
        "TickLag",
        "TickDuration",
        "RunRetries",
    } <= emitted
    assert emitted <= custom
    # And runs by outcome, with the dimensions Powertools publishes them under
    outcomes = {
        line[line.index("Outcome") + 1] for line in lines if line[:2] == [namespace, "Runs"]
    }
    assert {"succeeded", "failed", "skipped"} <= outcomes
    services = {line[line.index("service") + 1] for line in lines if line[0] == namespace}
    assert services == {
        props(template, "Worker")["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    }
    # And the API's errors and latency, the runs queue and the dead-letter queue
    assert {("AWS/ApiGateway", "5XXError"), ("AWS/ApiGateway", "Latency")} <= {
        (line[0], line[1]) for line in lines
    }
    queues = {
        line[3] for line in lines if line[:2] == ["AWS/SQS", "ApproximateNumberOfMessagesVisible"]
    }
    assert queues == {"RunsQueue", "RunsDeadLetterQueue"}
    # And the API metrics name the API as deployed
    assert props(template, "RestAPI")["Name"] == {"Ref": "AWS::StackName"}
    assert {line[3] for line in lines if line[0] == "AWS/ApiGateway"} == {STACK}


def test_dashboard_and_alarms_look_for_metrics_under_the_dimensions_the_code_publishes(
    template: dict[str, Any],
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chalicelib import observability
    from chalicelib.tick import handle_tick, handle_tick_parts
    from chalicelib.worker import handle_batch

    # Given the functions' metrics settings as deployed
    resolver = Resolver(template)
    variables = props(template, "Worker")["Environment"]["Variables"]
    for name in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"):
        monkeypatch.setenv(name, str(resolver.resolve(variables[name])))
    observability._metrics.cache_clear()
    # When a tick runs and the worker runs a job
    created = client.http.post(
        "/v1/minion/spinup/jobs/space-xy",
        headers=auth(),
        body=json.dumps(
            {
                "name": "once",
                "schedule_expression": "0 3 * * *",
                "details": {"runner": "dummyRunner"},
            }
        ),
    )
    job_id = json.loads(created.body)["id"]
    assert (
        client.http.patch(f"/v1/minion/spinup/jobs/space-xy/{job_id}", headers=auth()).status_code
        == 202
    )
    capsys.readouterr()
    handle_tick(scheduled_event("2026-01-30T10:18"))
    sqs = boto3.client("sqs")
    parts_url = sqs.get_queue_url(QueueName=os.environ["MINION_TICK_PARTS_QUEUE_NAME"])
    handle_tick_parts(sqs_event(drain(sqs, parts_url["QueueUrl"])))
    url = sqs.get_queue_url(QueueName=os.environ["MINION_QUEUE_NAME"])["QueueUrl"]
    handle_batch(sqs_event(drain(sqs, url)))
    observability._metrics.cache_clear()
    # Then each metric it published is on the dashboard under the same namespace and dimensions
    published = {}
    for line in capsys.readouterr().out.splitlines():
        document = json.loads(line) if line.startswith("{") else {}
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            for metric in directive["Metrics"]:
                dimensions = {d: document[d] for group in directive["Dimensions"] for d in group}
                published[metric["Name"]] = (directive["Namespace"], dimensions)
    assert {"JobsDue", "TickLag", "TickDuration", "Runs"} <= set(published)
    assert published["Runs"][1]["Outcome"] == "succeeded"
    lines = [line for w in _dashboard(template)["widgets"] for line in _widget_metrics(w)]
    for name, (namespace, dimensions) in published.items():
        shown = [
            dict(zip(line[2::2], line[3::2], strict=False))
            for line in lines
            if line[:2] == [namespace, name]
        ]
        assert shown, name
        for shown_dimensions in shown:
            assert set(shown_dimensions) == set(dimensions), (name, shown_dimensions)
            assert shown_dimensions.get("service") == dimensions["service"], name
    # And so is the tick-lag alarm
    alarm = props(template, "TickLagAlarm")
    assert resolver.resolve(alarm["Namespace"]) == published["TickLag"][0]
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == published["TickLag"][1]


def test_dashboard_lists_every_alarm(template: dict[str, Any]) -> None:
    resolver = Resolver(template)
    [panel] = [w for w in _dashboard(template)["widgets"] if w["type"] == "alarm"]
    assert set(panel["properties"]["alarms"]) == {
        resolver.arn(name) for name in resources_of(template, "AWS::CloudWatch::Alarm")
    }


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: r["Properties"]
        for name, r in resources_of(template, "AWS::CloudWatch::Alarm").items()
    }


def _watches(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric, dimensions) of every metric an alarm looks at."""
    metrics = (
        [alarm]
        if "MetricName" in alarm
        else [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
    )
    return [
        (
            m["Namespace"] if isinstance(m["Namespace"], str) else "<param>",
            m["MetricName"],
            {d["Name"]: d["Value"] for d in m.get("Dimensions", [])},
        )
        for m in metrics
    ]


def test_alarms_watch_the_dead_letter_queue_the_tick_the_worker_and_throttling(
    template: dict[str, Any],
) -> None:
    alarms = _alarms(template)
    watched = [(name, w) for name, a in alarms.items() for w in _watches(a)]

    def alarms_on(namespace: str, metric: str, resource: str) -> list[str]:
        return [
            name
            for name, (ns, m, dims) in watched
            if (ns, m) == (namespace, metric) and any(refers_to(v, resource) for v in dims.values())
        ]

    # Then a dead-letter queue holding anything alarms
    [dlq] = alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", "RunsDeadLetterQueue")
    assert (alarms[dlq]["Threshold"], alarms[dlq]["ComparisonOperator"]) == (
        0,
        "GreaterThanThreshold",
    )
    # And tick errors, worker errors, and Lambda throttling of each function alarm
    assert alarms_on("AWS/Lambda", "Errors", "Tick")
    assert alarms_on("AWS/Lambda", "Errors", "Worker")
    for function in FUNCTIONS:
        assert alarms_on("AWS/Lambda", "Throttles", function), function
    assert alarms_on("AWS/DynamoDB", "WriteThrottleEvents", "JobsTable")
    # And a late tick alarms, and so does a tick that stopped reporting at all
    [lag] = [name for name, (ns, m, _) in watched if (ns, m) == ("<param>", "TickLag")]
    assert alarms[lag]["Namespace"] == {"Ref": "MetricsNamespace"}
    assert alarms[lag]["TreatMissingData"] == "breaching"
    # And every alarm notifies the topic when one is given, and says where its runbook is
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }, name
        assert "docs/operations.md" in alarm["AlarmDescription"], name


def test_operations_doc_explains_every_alarm(template: dict[str, Any]) -> None:
    # Given the runbook each alarm's description points to
    runbook = (ROOT / "docs" / "operations.md").read_text()
    headings = set(re.findall(r"^#+\s+(.+?)\s*$", runbook, re.MULTILINE))
    for name, alarm in _alarms(template).items():
        # Then the section it names exists
        [section] = re.findall(r'docs/operations\.md "([^"]+)"', alarm["AlarmDescription"])
        assert section in headings, (name, section)


def test_saved_queries_find_the_runs_of_a_job_and_the_failed_runs(template: dict[str, Any]) -> None:
    queries = {
        props(template, n)["Name"]["Fn::Sub"]: props(template, n)
        for n in resources_of(template, "AWS::Logs::QueryDefinition")
    }
    runs_of_a_job = queries["${AWS::StackName}/runs of a job"]
    failed_runs = queries["${AWS::StackName}/failed runs"]
    # Then they filter on the keys the worker logs, over the worker's log group at least
    assert re.search(r"filter\s+job_id\s*=", runs_of_a_job["QueryString"])
    assert re.search(r'status\s*=\s*"failed"', failed_runs["QueryString"])
    for query in (runs_of_a_job, failed_runs):
        assert {"Ref": "WorkerLogGroup"} in query["LogGroupNames"]
        assert "run_id" in query["QueryString"]


def test_worker_logs_the_keys_the_saved_queries_filter_on() -> None:
    # Given the worker's source
    source = (ROOT / "chalicelib" / "worker.py").read_text()
    # Then a finished run is logged with its job, run, status and error code
    assert re.search(
        r'"run finished",\s*extra=\{[^}]*"job_id"[^}]*"run_id"[^}]*"status"'
        r'[^}]*"error_code"',
        source,
        re.DOTALL,
    )


# --- packaging: lint, build info ---------------------------------------------------------------


def test_cfn_lint_passes_on_the_packaged_template_and_the_runner_role(
    template: dict[str, Any],
) -> None:
    # When cfn-lint checks both templates
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "cfn-lint"), str(TEMPLATE), str(RUNNER_ROLE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Then it finds nothing
    assert result.returncode == 0, result.stdout + result.stderr


def test_version_reports_what_was_packaged(template: dict[str, Any], tmp_path: Path) -> None:
    # Given the app as packaged (app.py and chalicelib/ from the deployment zip)
    with zipfile.ZipFile(ZIP) as archive:
        for member in archive.namelist():
            if member == "app.py" or member.startswith("chalicelib/"):
                archive.extract(member, tmp_path)
    # When its /version is asked through Chalice's test client
    script = (
        "import json; from chalice.test import Client; import app; "
        "print(Client(app.app).http.get('/v1/minion/version').body.decode())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINION_")}
    answer = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    version = json.loads(answer.stdout)
    # Then it is the commit it was built from, at a real time, with a real version
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version["githash"] == head
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", version["buildstamp"])
    assert re.match(r"\d+\.\d+\.\d+", version["version"])
    # And the work tree holds no build info (it would leak into `make run` and the tests)
    assert not (ROOT / "chalicelib" / "build_info.json").exists()


# --- the runner role in a target account ---------------------------------------------------------


@pytest.fixture(scope="module")
def runner_role() -> dict[str, Any]:
    from cfnlint.decode import decode

    decoded, matches = decode(str(RUNNER_ROLE))
    assert not matches and decoded is not None
    return decoded


def test_runner_role_trusts_only_the_worker_role_and_the_external_id(
    runner_role: dict[str, Any],
) -> None:
    role = runner_role["Resources"]["RunnerRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    worker = "arn:aws:iam::222222222222:role/minion-prod-worker-eu-west-1"
    external_id = "Zq0v7kQe3mT1rW9xY2bN5cD8fG4hJ6lP"
    # Given the role deployed for a hub's worker role, with its external id
    resolved = Resolver(
        runner_role, {"WorkerRoleArn": worker, "ExternalId": external_id}, account=TARGET_ACCOUNT
    ).resolve(trust)
    # Then the principal is the hub account, narrowed to the worker role by its ARN: a role
    # principal would be stored as the role's unique id, which a re-created hub changes
    assert resolved["Principal"] == {"AWS": "arn:aws:iam::222222222222:root"}
    assert resolved["Action"] == "sts:AssumeRole"
    assert resolved["Condition"]["ArnEquals"] == {"aws:PrincipalArn": worker}
    # And the external id is always required: a generated one, 32 characters at least (12.4)
    assert resolved["Condition"]["StringEquals"] == {"sts:ExternalId": external_id}
    parameter = runner_role["Parameters"]["ExternalId"]
    assert parameter["NoEcho"] is True and "Default" not in parameter
    pattern = re.compile(parameter["AllowedPattern"])
    assert not pattern.fullmatch("") and not pattern.fullmatch("optional")
    assert pattern.fullmatch(external_id)


def test_worker_role_keeps_its_arn_when_the_stack_is_created_again(
    template: dict[str, Any],
) -> None:
    # Given the worker role's name, as the longest stage deploys it in the longest region name
    pattern = template["Parameters"]["Stage"]["AllowedPattern"]
    found = re.search(r"\{0,(\d+)\}\$$", pattern)
    assert found is not None, pattern
    longest = 1 + int(found[1])
    stage = "s" * longest
    name = props(template, "WorkerRole")["RoleName"]
    resolver = Resolver(template)
    # Then it is made of the stack's name and region only (the same when created again: the
    # runner roles trust it by ARN) and fits IAM's 64 characters
    assert resolver.resolve(name) == f"{STACK}-worker-{REGION}"
    assert name == {"Fn::Sub": "${AWS::StackName}-worker-${AWS::Region}"}
    assert len(f"minion-{stage}-worker-ap-southeast-2") <= 64


def test_runner_role_allows_only_the_runners_actions_in_its_account(
    runner_role: dict[str, Any],
) -> None:
    [policy] = runner_role["Resources"]["RunnerRole"]["Properties"]["Policies"]
    statements = unwrapped(policy["PolicyDocument"]["Statement"])
    # Then exactly the runners' actions, none with a wildcard
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert actions == RUNNER_ACTIONS
    tagged = {"StringEquals": {"aws:ResourceTag/minion:managed": "true"}}
    for statement in statements:
        resources = as_list(statement["Resource"])
        statement_actions = set(as_list(statement["Action"]))
        if "*" in resources:
            assert statement_actions <= NO_RESOURCE_LEVEL
        elif statement_actions != {"iam:PassRole"}:
            assert all("${AWS::AccountId}" in r["Fn::Sub"] for r in resources), statement
        # And every change of state needs the resource tagged minion:managed=true (12.5)
        reads = {a for a in statement_actions if a.split(":")[1].startswith(("Describe", "List"))}
        # (kms:CreateGrant acts on a key, for EC2 only: kms:GrantIsForAWSResource)
        if statement_actions - reads - {"iam:PassRole", "kms:CreateGrant"}:
            assert statement["Condition"]["StringEquals"] == tagged["StringEquals"], statement
    # And task roles can be passed to ECS tasks only, only the listed ones, none by default
    [pass_role] = [s for s in statements if "iam:PassRole" in as_list(s["Action"])]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert pass_role["Resource"] == {"Ref": "TaskRoleArns"}
    assert not Resolver(runner_role).condition(pass_role["_if"])
    assert Resolver(runner_role, {"TaskRoleArns": "arn:aws:iam::1:role/t"}).condition(
        pass_role["_if"]
    )


def test_worker_in_its_own_account_gets_the_runner_roles_actions(
    template: dict[str, Any], runner_role: dict[str, Any]
) -> None:
    # Given both policies of the runners' actions
    [policy] = runner_role["Resources"]["RunnerRole"]["Properties"]["Policies"]
    in_target = {
        a for s in unwrapped(policy["PolicyDocument"]["Statement"]) for a in as_list(s["Action"])
    }
    [name] = resources_of(template, "AWS::IAM::RolePolicy")
    own = {
        a
        for s in props(template, name)["PolicyDocument"]["Statement"]
        for a in as_list(s["Action"])
    }
    # Then they agree
    assert own == in_target


# --- the roles allow what the code really calls ---------------------------------------------------

TARGET_ACCOUNT = "111111111111"
RUNNER_ROLE_ARN = f"arn:aws:iam::{TARGET_ACCOUNT}:role/minion-runner"


class CallRecorder:
    """Records every AWS call made through botocore, with the access key it was signed with
    (the function's own, or a runner role's); the calls still reach moto."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any], str]] = []

    def clear(self) -> None:
        self.calls.clear()

    def own(self) -> list[tuple[str, str, dict[str, Any]]]:
        key = os.environ["AWS_ACCESS_KEY_ID"]
        return [(s, o, p) for s, o, p, k in self.calls if k == key]

    def assumed(self) -> list[tuple[str, str, dict[str, Any]]]:
        key = os.environ["AWS_ACCESS_KEY_ID"]
        return [(s, o, p) for s, o, p, k in self.calls if k != key]

    def wrap(self, original: Any) -> Any:
        recorder = self

        def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            credentials = client._request_signer._credentials
            recorder.calls.append(
                (
                    client.meta.service_model.endpoint_prefix,
                    operation,
                    dict(params),
                    credentials.access_key if credentials else "",
                )
            )
            return original(client, operation, params)

        return make_api_call


def iam_requests(
    service: str,
    operation: str,
    params: dict[str, Any],
    names: dict[str, str],
    account: str = ACCOUNT_ID,
) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs one call needs, with the test's physical names
    mapped back to the template's logical resources."""
    table_arn = f"arn:aws:dynamodb:{REGION}:{account}:table/JobsTable"
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            kinds = {
                "Put": "PutItem",
                "Update": "UpdateItem",
                "Delete": "DeleteItem",
                "ConditionCheck": "ConditionCheckItem",
            }
            return [
                (f"dynamodb:{kinds[kind]}", table_arn)
                for item in params["TransactItems"]
                for kind in item
            ]
        if operation in ("BatchGetItem", "BatchWriteItem"):
            assert set(params["RequestItems"]) == {names["table"]}
            return [(f"dynamodb:{operation}", table_arn)]
        assert params["TableName"] == names["table"]
        index = params.get("IndexName")
        return [(f"dynamodb:{operation}", table_arn + (f"/index/{index}" if index else ""))]
    if service == "sqs" and params["QueueUrl"] == names.get("dead_letter_queue_url"):
        action = {"DeleteMessageBatch": "DeleteMessage"}.get(operation, operation)
        return [(f"sqs:{action}", f"arn:aws:sqs:{REGION}:{account}:RunsDeadLetterQueue")]
    if service == "sqs":
        queues = {names["queue_url"]: "RunsQueue", names.get("tick_parts_url"): "TickPartsQueue"}
        assert params["QueueUrl"] in queues
        action = {
            "SendMessageBatch": "SendMessage",
            "DeleteMessageBatch": "DeleteMessage",
            "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
        }.get(operation, operation)
        return [(f"sqs:{action}", f"arn:aws:sqs:{REGION}:{account}:{queues[params['QueueUrl']]}")]
    if service == "events":
        assert operation == "PutEvents", operation
        bus = f"arn:aws:events:{REGION}:{account}:event-bus/"
        return [
            ("events:PutEvents", bus + entry.get("EventBusName", "default"))
            for entry in params["Entries"]
        ]
    if service == "secretsmanager" and params["SecretId"] == names.get("webhook_secret"):
        return [(f"secretsmanager:{operation}", params["SecretId"])]
    if service == "secretsmanager":
        assert params["SecretId"] == names["secret"]
        return [
            (
                f"secretsmanager:{operation}",
                f"arn:aws:secretsmanager:{REGION}:{account}:secret:TokensSecret",
            )
        ]
    if service == "ssm":
        return [(f"ssm:{operation}", f"arn:aws:ssm:{REGION}:{account}:parameter{params['Name']}")]
    if service == "sts" and operation == "GetCallerIdentity":
        return []  # needs no permission
    if service == "sts":
        return [(f"sts:{operation}", params["RoleArn"])]
    if service == "ec2" and operation.startswith("Describe"):
        return [(f"ec2:{operation}", "*")]  # no resource-level permissions
    if service == "ec2":
        return [
            (f"ec2:{operation}", f"arn:aws:ec2:{REGION}:{account}:instance/{instance}")
            for instance in params["InstanceIds"]
        ]
    raise AssertionError(f"a call the test does not map to IAM: {service} {operation}")


def _denied(
    resolver: Resolver,
    statements: list[dict[str, Any]],
    calls: list[tuple[str, str, dict[str, Any]]],
    names: dict[str, str],
    context: dict[str, str] | None = None,
) -> list[Any]:
    requests = {
        request
        for service, operation, params in calls
        for request in iam_requests(service, operation, params, names, resolver.account)
    }
    assert requests, "the flow made no AWS call"
    return sorted(r for r in requests if not allowed(resolver, statements, *r, context=context))


def _role_denies(template: dict[str, Any], role: str, recorded: dict[str, Any]) -> list[Any]:
    # Deployed with the registry's runner role listed (RunnerRoleArns), as docs/deploying.md says
    resolver = Resolver(template, {"RunnerRoleArns": RUNNER_ROLE_ARN})
    return _denied(
        resolver, statements_of(template, role), recorded["recorder"].own(), recorded["names"]
    )


@pytest.fixture
def recorded(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto set up as the template deploys it: tokens in a secret, the registry in the SSM
    parameter (account spinup acting through a runner role), the queue by URL; every AWS
    call recorded."""
    from aws_lambda_powertools.utilities import parameters

    secret = boto3.client("secretsmanager").create_secret(
        Name="minion-test/tokens", SecretString=TOKEN
    )["ARN"]
    registry = {
        "accounts": {
            "spinup": {
                "runners": ["dummyRunner", "instanceRunner"],
                "account_id": TARGET_ACCOUNT,
                "role_arn": RUNNER_ROLE_ARN,
                "external_id": "Zq0v7kQe3mT1rW9xY2bN5cD8fG4hJ6lP",
            }
        }
    }
    boto3.client("ssm").put_parameter(
        Name="/minion/accounts", Type="String", Value=json.dumps(registry)
    )
    for name in ("MINION_TOKENS", "MINION_ACCOUNTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINION_TOKENS_SECRET_ID", secret)
    monkeypatch.setenv("MINION_ACCOUNTS_PARAMETER", "/minion/accounts")
    monkeypatch.setenv("MINION_RUNNER_ROLE_ARNS", RUNNER_ROLE_ARN)
    monkeypatch.setenv("MINION_QUEUE_URL", aws["queue_url"])
    monkeypatch.setenv("MINION_TICK_PARTS_QUEUE_URL", aws["tick_parts_url"])
    deps.reset()
    parameters.clear_caches()
    recorder = CallRecorder()
    monkeypatch.setattr(
        botocore.client.BaseClient,
        "_make_api_call",
        recorder.wrap(botocore.client.BaseClient._make_api_call),
    )
    yield {
        **aws,
        "recorder": recorder,
        "names": {
            "table": TABLE,
            "queue_url": aws["queue_url"],
            "secret": secret,
            "tick_parts_url": aws["tick_parts_url"],
        },
    }
    parameters.clear_caches()
    deps.reset()


def test_api_role_allows_every_call_the_api_makes(
    template: dict[str, Any], recorded: dict[str, Any], client: Any
) -> None:
    # Given the API as deployed: tokens from the secret, registry from the parameter
    base = "/v1/minion/spinup/jobs/space-xy"
    job = {
        "name": "nightly",
        "schedule_expression": "0 3 * * *",
        "enabled": True,
        "details": {"runner": "dummyRunner"},
    }
    # When every kind of request is served
    created = client.http.post(base, headers=auth(), body=json.dumps(job))
    assert created.status_code == 200, created.body
    job_id = json.loads(created.body)["id"]
    path = f"{base}/{job_id}"
    # (stored as the previous release did, without its copy: the first GET adopts it)
    recorded["dynamodb"].delete_item(
        TableName=recorded["names"]["table"],
        Key={"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "SPEC"}},
    )
    answers = [
        client.http.get(path, headers=auth()),
        client.http.get(path, headers=auth()),
        client.http.get("/v1/minion/spinup/jobs", headers=auth()),
        client.http.get(base, headers=auth()),
        client.http.put(
            path,
            headers=auth(**{"If-Match": created.headers["ETag"]}),
            body=json.dumps({**job, "name": "renamed"}),
        ),
        client.http.patch(path, headers=auth()),
        client.http.get(path + "/runs", headers=auth()),
        client.http.get("/v1/minion/metrics"),
        client.http.get("/v1/minion/schedule?expression=0+3+*+*+*", headers=auth()),
    ]
    run_id = json.loads(answers[5].body)["run_id"]
    answers.append(client.http.get(f"{path}/runs/{run_id}", headers=auth()))
    answers.append(client.http.delete(path, headers=auth()))
    answers.append(client.http.delete(base, headers=auth()))
    assert [a.status_code for a in answers] == [
        200,
        200,
        200,
        200,
        202,
        202,
        200,
        200,
        200,
        200,
        202,
        202,
    ], [a.body for a in answers]
    # Then the API's role allows every call it made
    assert _role_denies(template, "ApiRole", recorded) == []
    drain(recorded["sqs"], recorded["queue_url"])


def _new_process() -> None:
    """Forget what a function's process caches (clients, registry, secret), as a function
    running in another Lambda process would start."""
    from aws_lambda_powertools.utilities import parameters

    deps.reset()
    parameters.clear_caches()


def _target_account_ec2() -> Any:
    issued = boto3.client("sts").assume_role(RoleArn=RUNNER_ROLE_ARN, RoleSessionName="test-setup")[
        "Credentials"
    ]
    return boto3.client(
        "ec2",
        aws_access_key_id=issued["AccessKeyId"],
        aws_secret_access_key=issued["SecretAccessKey"],
        aws_session_token=issued["SessionToken"],
    )


def test_tick_worker_and_runner_roles_allow_every_call_they_make(
    template: dict[str, Any], runner_role: dict[str, Any], recorded: dict[str, Any], client: Any
) -> None:
    from chalicelib.tick import handle_tick, handle_tick_parts
    from chalicelib.worker import handle_batch

    # Given a running instance in the target account, tagged for minion, and a job stopping it
    # every minute that refuses overlapping runs
    ec2 = _target_account_ec2()
    instance = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "minion:managed", "Value": "true"}]}
        ],
    )["Instances"][0]["InstanceId"]
    job = {
        "name": "minutely",
        "schedule_expression": "* * * ? *",
        "enabled": True,
        "concurrency_policy": "Forbid",
        "details": {"runner": "instanceRunner", "instance_id": instance, "instance_action": "stop"},
    }
    created = client.http.post(
        "/v1/minion/spinup/jobs/space-xy", headers=auth(), body=json.dumps(job)
    )
    assert created.status_code == 200, created.body
    next_minute = json.loads(created.body)["next"]
    # When the tick runs two minutes after the job's next occurrence (in a process of its own)
    recorder = recorded["recorder"]
    _new_process()
    recorder.clear()
    later = datetime.fromisoformat(next_minute.replace("Z", "+00:00")) + timedelta(minutes=2)
    handle_tick(scheduled_event(later.strftime("%Y-%m-%dT%H:%M")))
    # Then the tick's role allows every call the tick made
    assert _role_denies(template, "TickRole", recorded) == []
    # When its parts run (each in a process of its own, as the event source hands them over)
    parts = drain(recorded["sqs"], recorded["tick_parts_url"])
    recorder.clear()
    for part in parts:
        _new_process()
        assert handle_tick_parts(sqs_event([part])) == {"batchItemFailures": []}
    # Then they queued the latest occurrence and recorded the older ones missed
    runs = recorded["dynamodb"].query(  # (the partition holds the job's copy too)
        TableName=TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :run)",
        ExpressionAttributeValues={
            ":pk": {"S": f"JOB#{json.loads(created.body)['id']}"},
            ":run": {"S": "RUN#"},
        },
    )
    assert sorted(i["status"]["S"] for i in runs["Items"]) == ["missed", "missed"]
    # And the part-tick's role allows every call the parts made (bar the event source's own)
    assert _role_denies(template, "TickPartRole", recorded) == []
    recorder.clear()

    # When the worker runs the queued run, through the account's runner role
    messages = drain(recorded["sqs"], recorded["queue_url"])
    assert len(messages) == 1
    _new_process()
    recorder.clear()
    handle_batch(sqs_event(messages))
    calls = list(recorder.calls)
    # Then the worker's role allows every call it made with its own credentials
    assert ("sts", "AssumeRole") in {(s, o) for s, o, _ in recorder.own()}
    assert _role_denies(template, "WorkerRole", recorded) == []
    # And the runner role allows every call the runner made with the assumed credentials
    assert {o for _, o, _ in recorder.assumed()} >= {"DescribeInstances", "StopInstances"}
    [policy] = runner_role["Resources"]["RunnerRole"]["Properties"]["Policies"]
    runner_resolver = Resolver(runner_role, account=TARGET_ACCOUNT)
    tagged = {"aws:ResourceTag/minion:managed": "true"}
    role_statements = unwrapped(policy["PolicyDocument"]["Statement"])
    assert (
        _denied(runner_resolver, role_statements, recorder.assumed(), recorded["names"], tagged)
        == []
    )
    # But not on an instance without the tag
    untagged = f"arn:aws:ec2:{REGION}:{TARGET_ACCOUNT}:instance/{instance}"
    assert not allowed(runner_resolver, role_statements, "ec2:StopInstances", untagged)
    # And the run's session policy (AssumeRole's Policy) allows them too, and only its instance
    [assume] = [p for s, o, p in recorder.own() if (s, o) == ("sts", "AssumeRole")]
    session = json.loads(assume["Policy"])["Statement"]
    assert _denied(runner_resolver, session, recorder.assumed(), recorded["names"]) == []
    other = f"arn:aws:ec2:{REGION}:{TARGET_ACCOUNT}:instance/i-0123456789abcdef0"
    assert not allowed(runner_resolver, session, "ec2:StopInstances", other)
    # And the run really happened: the instance stopped
    state = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] == "stopped", calls


def test_sweep_role_allows_every_call_the_sweep_makes(
    template: dict[str, Any], recorded: dict[str, Any], client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.queue import RunMessage
    from chalicelib.runs import Run
    from chalicelib.store import Store
    from chalicelib.sweep import handle_sweep

    # Given a Forbid job, a dead-lettered message of one of its runs, and another of its runs
    # claimed from a second delivery by a worker that died ten minutes ago
    job = {
        "name": "minutely",
        "schedule_expression": "* * * ? *",
        "enabled": True,
        "concurrency_policy": "Forbid",
        "details": {"runner": "dummyRunner"},
    }
    created = client.http.post(
        "/v1/minion/spinup/jobs/space-xy", headers=auth(), body=json.dumps(job)
    )
    job_id = json.loads(created.body)["id"]
    sqs = recorded["sqs"]
    dlq_url = sqs.create_queue(QueueName=os.environ["MINION_QUEUE_NAME"] + "-dlq")["QueueUrl"]
    monkeypatch.setenv("MINION_DEAD_LETTER_QUEUE_URL", dlq_url)
    sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody=RunMessage(
            account="spinup",
            group="space-xy",
            job_id=job_id,
            run_id="20260130T101800Z-s",
            trigger="schedule",
            scheduled_for="2026-01-30T10:18:00Z",
        ).to_body(),
    )
    store = Store(recorded["dynamodb"], TABLE, 4)
    died = datetime.now().astimezone() - timedelta(minutes=10)
    assert store.claim_run(
        Run(
            run_id="20260130T101900Z-s",
            job_id=job_id,
            account="spinup",
            group="space-xy",
            trigger="schedule",
            scheduled_for="2026-01-30T10:19:00Z",
            status="running",
        ),
        2,
        120,
        died,
        watch=True,
    )
    # When the sweep runs (in a process of its own)
    recorder = recorded["recorder"]
    _new_process()
    recorder.clear()
    report = handle_sweep({})
    # Then it ended the first run and queued the second again
    assert (report["lost"], report["requeued"]) == (1, 1)
    # And the sweep's role allows every call it made
    names = {**recorded["names"], "dead_letter_queue_url": dlq_url}
    assert (
        _denied(Resolver(template), statements_of(template, "SweepRole"), recorder.own(), names)
        == []
    )
    drain(sqs, recorded["queue_url"])


# --- make deploy ------------------------------------------------------------------------------------


def _dry_run(**settings: str) -> subprocess.CompletedProcess[str]:
    """What infra/deploy.sh would run, with only these settings in its environment."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "DRY_RUN": "1",
        **settings,
    }
    return subprocess.run(
        [str(ROOT / "infra" / "deploy.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_deploy_passes_the_stage_the_secret_and_the_registry_as_template_parameters(
    template: dict[str, Any],
) -> None:
    # Given a deployment of stage prod with its own secret, registry and runner roles
    settings = {
        "AWS_REGION": "eu-central-1",
        "STAGE": "prod",
        "ARTIFACT_BUCKET": "artifacts",
        "TOKENS_SECRET_ARN": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:t-AbCdEf",
        "ACCOUNTS_PARAMETER": "/prod/minion/accounts",
        "RUNNER_ROLE_ARNS": "arn:aws:iam::111111111111:role/minion-runner",
        "RUNNERS_IN_OWN_ACCOUNT": "false",
        "ALARM_TOPIC_ARN": f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:ops",
        "TICK_RESERVED_CONCURRENCY": "20",
        "PARAMETERS": "Shards=16 LogRetentionDays=90",
    }
    # When make deploy's script says what it would run on the existing stack
    result = _dry_run(**settings)
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    [package] = [c for c in commands if c[1:3] == ["cloudformation", "package"]]
    [deploy] = [c for c in commands if c[1:3] == ["cloudformation", "deploy"]]
    # Then it uploads the packaged template's code, and deploys stack minion-prod through S3
    assert package[package.index("--template-file") + 1] == "build/sam.json"
    assert deploy[deploy.index("--stack-name") + 1] == "minion-prod"
    assert (
        deploy[deploy.index("--template-file") + 1]
        == package[package.index("--output-template-file") + 1]
    )
    assert deploy[deploy.index("--s3-bucket") + 1] == "artifacts"
    # (the worker's role has a name: CAPABILITY_NAMED_IAM)
    assert {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"} <= set(deploy)
    # And every command names the region (CLI v1 ignores AWS_REGION)
    assert all(c[0] != "aws" or c[c.index("--region") + 1] == "eu-central-1" for c in commands)
    # And every setting reaches the template parameter of that name, the table protected
    overrides = dict(o.split("=", 1) for o in deploy[deploy.index("--parameter-overrides") + 1 :])
    assert overrides == {
        "Stage": "prod",
        "TokensSecretArn": settings["TOKENS_SECRET_ARN"],
        "AccountsParameterName": "/prod/minion/accounts",
        "RunnerRoleArns": settings["RUNNER_ROLE_ARNS"],
        "RunnersInOwnAccount": "false",
        "AlarmTopicArn": settings["ALARM_TOPIC_ARN"],
        "TickReservedConcurrency": "20",
        "Shards": "16",
        "LogRetentionDays": "90",
        "TableDeletionProtection": "true",
    }
    assert set(overrides) <= set(template["Parameters"])


def test_deploy_creates_a_stack_with_its_table_unprotected_then_protects_it() -> None:
    # When make deploy's script says what it would run for a first create in eu-west-1, with
    # no artifact bucket named
    result = _dry_run(AWS_DEFAULT_REGION="eu-west-1", STAGE="dev", DRY_RUN_NEW_STACK="1")
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    deploys = [c for c in commands if c[1:3] == ["cloudformation", "deploy"]]
    # Then it creates the stack with the table's deletion protection off (a failed create can
    # delete it), and turns it on once the stack exists
    assert [[o for o in c if o.startswith("TableDeletionProtection=")] for c in deploys] == [
        ["TableDeletionProtection=false"],
        ["TableDeletionProtection=true"],
    ]
    # And it creates the artifact bucket in the stack's region, private, encrypted, and
    # expiring old uploads
    bucket = "minion-artifacts-<account>-eu-west-1"
    created = {c[2]: c for c in commands if c[1] == "s3api"}
    assert "LocationConstraint=eu-west-1" in created["create-bucket"]
    assert created["create-bucket"][created["create-bucket"].index("--bucket") + 1] == bucket
    assert {"put-public-access-block", "put-bucket-encryption"} <= set(created)
    lifecycle = json.loads(created["put-bucket-lifecycle-configuration"][-1])
    [rule] = lifecycle["Rules"]
    assert rule["Status"] == "Enabled" and rule["Expiration"]["Days"] >= 30
    assert all(c[c.index("--region") + 1] == "eu-west-1" for c in commands if c[0] == "aws")


def test_deploy_without_a_region_stops_before_doing_anything() -> None:
    # When make deploy runs with no region anywhere
    result = _dry_run(STAGE="dev", HOME=str(ROOT / "build" / "no-home"))
    # Then it stops at once and says how to give one
    assert result.returncode == 2
    assert "AWS_REGION" in result.stderr
    assert result.stdout == ""


# --- make deploy with the real AWS CLI (v1, from requirements-dev.txt) against moto's server ----


@pytest.fixture(scope="module")
def aws_server(template: dict[str, Any]) -> Iterator[str]:
    """moto's server on a free loopback port, for the real `aws` command."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def fresh_aws(aws_server: str) -> str:
    """The server, emptied of what an earlier test made."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(aws_server + "/moto-api/reset", method="POST"))
    return aws_server


def _deploy_with_cli(
    endpoint: str, home: Path, **settings: str
) -> subprocess.CompletedProcess[str]:
    """infra/deploy.sh with the AWS CLI v1 of the virtualenv, as a user with no AWS profile and
    only AWS_REGION set (which CLI v1 ignores); build/ as `make package` left it."""
    env = {
        "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "PYENV_ROOT": os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "eu-central-1",
        "SKIP_PACKAGE": "1",
        "STAGE": "clitest",
        "TICK_RESERVED_CONCURRENCY": "0",
        **settings,
    }
    return subprocess.run(
        [str(ROOT / "infra" / "deploy.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _client(service: str, endpoint: str, region: str = "eu-central-1") -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=region)


def test_deploy_with_cli_v1_puts_the_bucket_the_registry_and_the_code_in_the_region_given(
    fresh_aws: str, tmp_path: Path
) -> None:
    # When make deploy runs with CLI v1, the region given only as AWS_REGION
    with package_lock():
        result = _deploy_with_cli(fresh_aws, tmp_path)
    cli = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "aws"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (cli.stdout + cli.stderr).startswith("aws-cli/1."), cli
    # Then the artifact bucket it created is in that region: private, encrypted, expiring
    s3 = _client("s3", fresh_aws)
    bucket = f"minion-artifacts-{ACCOUNT_ID}-eu-central-1"
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-central-1", (
        result.stderr
    )
    assert (
        s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"][
            "BlockPublicPolicy"
        ]
        is True
    )
    assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["Expiration"]["Days"] >= 30
    # And the code and the template were uploaded there for stack minion-clitest
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys and all(k.startswith("minion-clitest/") for k in keys), keys
    assert any(k.endswith(".template") for k in keys), keys
    # And the account registry was created there, empty and valid
    value = _client("ssm", fresh_aws).get_parameter(Name="/minion/accounts")["Parameter"]["Value"]
    assert json.loads(value) == {"accounts": {}}
    # And it went on to create the stack (moto's CloudFormation stops there: no SAM transform)
    assert "CreateChangeSet" in result.stderr or result.returncode == 0, result.stderr


def test_deploy_keeps_the_code_the_stack_runs_now_from_expiring(
    fresh_aws: str, tmp_path: Path
) -> None:
    # Given a stack whose template runs code uploaded long ago to the artifact bucket
    bucket = f"minion-artifacts-{ACCOUNT_ID}-eu-central-1"
    s3 = _client("s3", fresh_aws)
    s3.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    s3.put_object(Bucket=bucket, Key="minion-clitest/0ld", Body=b"the code running now")
    uploaded = s3.head_object(Bucket=bucket, Key="minion-clitest/0ld")["LastModified"]
    _client("cloudformation", fresh_aws).create_stack(
        StackName="minion-clitest",
        TemplateBody=json.dumps(
            {
                "Metadata": {"CodeUri": f"s3://{bucket}/minion-clitest/0ld"},
                "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
            }
        ),
    )
    time.sleep(1.1)  # S3 times have a resolution of a second
    # When make deploy updates the stack
    with package_lock():
        result = _deploy_with_cli(fresh_aws, tmp_path)
    # Then that code's upload is as new as the deploy: the bucket's expiry counts from now, so
    # a rollback to it finds it
    refreshed = s3.head_object(Bucket=bucket, Key="minion-clitest/0ld")["LastModified"]
    assert refreshed > uploaded, result.stderr
    assert (
        s3.get_object(Bucket=bucket, Key="minion-clitest/0ld")["Body"].read()
        == b"the code running now"
    )


def test_deploy_refuses_an_artifact_bucket_in_another_region(
    fresh_aws: str, tmp_path: Path
) -> None:
    # Given an artifact bucket in us-west-2
    with package_lock():
        _client("s3", fresh_aws, "us-west-2").create_bucket(
            Bucket="elsewhere", CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
        )
        # When make deploy is asked to use it for a stack in eu-central-1
        result = _deploy_with_cli(fresh_aws, tmp_path, ARTIFACT_BUCKET="elsewhere")
    # Then it stops before uploading anything, saying where each is
    assert result.returncode == 2, result.stderr
    assert "us-west-2" in result.stderr and "eu-central-1" in result.stderr
    assert "Contents" not in _client("s3", fresh_aws).list_objects_v2(Bucket="elsewhere")


def test_deploy_refuses_a_malformed_registry(fresh_aws: str, tmp_path: Path) -> None:
    # Given a registry parameter that is not {"accounts": {...}}
    _client("ssm", fresh_aws).put_parameter(Name="/bad/accounts", Type="String", Value='{"acc": 1}')
    # When make deploy runs with it
    with package_lock():
        result = _deploy_with_cli(fresh_aws, tmp_path, ACCOUNTS_PARAMETER="/bad/accounts")
    # Then it stops before making anything, naming the parameter and what is wrong with it
    assert result.returncode == 2, result.stderr
    assert "/bad/accounts" in result.stderr and '{"accounts": {...}}' in result.stderr
    assert _client("s3", fresh_aws).list_buckets()["Buckets"] == []


def test_worker_knows_its_own_timeout(template: dict[str, Any]) -> None:
    # Given the packaged worker function
    worker = props(template, "Worker")
    # Then the timeout it budgets its batch against is the one it is deployed with
    assert worker["Environment"]["Variables"]["MINION_WORKER_TIMEOUT"] == str(worker["Timeout"])


def test_a_path_with_no_route_answers_404_in_the_apis_error_shape(template: dict[str, Any]) -> None:
    # Given the packaged API / Then API Gateway's missing-route answer is a JSON 404
    response = props(template, "RestAPI")["GatewayResponses"]["MISSING_AUTHENTICATION_TOKEN"]
    assert int(response["StatusCode"]) == 404
    body = json.loads(response["ResponseTemplates"]["application/json"])
    assert body == {"Code": "NotFoundError", "Message": "no such route"}


# --- run events, the reporter, the failed-runs topic ---------------------------------------------

BUS_ARN = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/"


def test_tick_and_worker_publish_run_events_to_the_configured_bus_only(
    template: dict[str, Any],
) -> None:
    for function, role in (
        ("TickPart", "TickPartRole"),
        ("Worker", "WorkerRole"),
        ("Sweep", "SweepRole"),
    ):
        statements = statements_of(template, role)
        for overrides, bus in (({}, "default"), ({"EventBusName": "ops-events"}, "ops-events")):
            resolver = Resolver(template, overrides)
            # Given the function's settings as deployed with (or without) a bus of its own
            env = {
                k: str(resolver.resolve(v))
                for k, v in props(template, function)["Environment"]["Variables"].items()
            }
            settings = Settings.from_env(env)
            # Then it publishes to that bus, with the default outcomes and the API's URL
            assert settings.event_bus == bus, function
            assert settings.notify_default == "failed,missed,skipped"
            assert settings.api_url == (
                f"https://RestAPI.execute-api.{REGION}.amazonaws.com/api"
            ), function
            # And its role allows PutEvents on that bus only
            assert allowed(resolver, statements, "events:PutEvents", BUS_ARN + bus), function
            other = "default" if bus != "default" else "other"
            assert not allowed(resolver, statements, "events:PutEvents", BUS_ARN + other)


def test_the_reporter_exists_only_with_a_webhook_secret_and_may_read_only_it(
    template: dict[str, Any],
) -> None:
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:chat-AbCdEf"
    for name in ("Reporter", "ReporterRole", "ReporterLogGroup"):
        # Then each reporter resource exists only when the secret is given
        condition = template["Resources"][name]["Condition"]
        assert not Resolver(template).condition(condition), name
        assert Resolver(template, {"WebhookSecretArn": secret}).condition(condition), name
    resolver = Resolver(template, {"WebhookSecretArn": secret})
    reporter = props(template, "Reporter")
    assert reporter["Handler"] == "app.reporter"
    assert reporter["Role"] == {"Fn::GetAtt": ["ReporterRole", "Arn"]}
    assert (
        Settings.from_env(
            {k: str(resolver.resolve(v)) for k, v in reporter["Environment"]["Variables"].items()}
        ).webhook_secret_id
        == secret
    )
    # And it is fed by a rule on minion's run events, retried when the webhook fails
    [event] = reporter["Events"].values()
    assert event["Properties"]["Pattern"] == {
        "source": ["minion"],
        "detail-type": ["Minion Run State Change"],
    }
    assert reporter["EventInvokeConfig"]["MaximumRetryAttempts"] == 2
    # And SAM makes that rule (and the permission to invoke) under the same condition, on the
    # bus the events go to
    generated = {
        name: r
        for name, r in _sam_transformed(template)["Resources"].items()
        if name.startswith("Reporter")
    }
    [rule] = [r for r in generated.values() if r["Type"] == "AWS::Events::Rule"]
    assert {r.get("Condition") for r in generated.values()} == {"HasWebhook"}
    assert resolver.resolve(rule["Properties"]["EventPattern"]) == event["Properties"]["Pattern"]
    for overrides, bus in (({}, None), ({"EventBusName": "ops-events"}, "ops-events")):
        chosen = Resolver(template, overrides).resolve(rule["Properties"]["EventBusName"])
        assert chosen == bus or (bus is None and chosen == {"Ref": "AWS::NoValue"}), chosen
    # And its role reads that secret and writes its logs, nothing else
    statements = statements_of(template, "ReporterRole")
    assert _actions(template, "ReporterRole") == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
    }
    assert allowed(resolver, statements, "secretsmanager:GetSecretValue", secret)
    assert not allowed(
        resolver, statements, "secretsmanager:GetSecretValue", resolver.arn("TokensSecret")
    )


def test_failed_runs_reach_the_topic_only_when_one_is_given(
    template: dict[str, Any], aws: dict[str, Any]
) -> None:
    from chalicelib.events import EventPublisher, run_detail
    from chalicelib.runs import Run, Status

    topic = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:minion-failed-runs"
    rule = template["Resources"]["FailedRunsRule"]
    assert not Resolver(template).condition(rule["Condition"])
    resolver = Resolver(template, {"FailedRunsTopicArn": topic})
    assert resolver.condition(rule["Condition"])
    [target] = rule["Properties"]["Targets"]
    assert resolver.resolve(target["Arn"]) == topic
    # Then the rule's pattern, on moto's bus, takes a failed run's event and not the others
    sqs = aws["sqs"]
    url = sqs.create_queue(QueueName="failed-runs")["QueueUrl"]
    events = boto3.client("events")
    events.put_rule(Name="failed-runs", EventPattern=json.dumps(rule["Properties"]["EventPattern"]))
    events.put_targets(
        Rule="failed-runs",
        Targets=[
            {
                "Id": "q",
                "Arn": sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                    "Attributes"
                ]["QueueArn"],
            }
        ],
    )
    publisher = EventPublisher(events, default_notify=("failed", "succeeded", "missed"))
    statuses: tuple[Status, ...] = ("failed", "succeeded", "missed")
    for index, status in enumerate(statuses):
        run = Run(
            run_id=f"20260130T10180{index}Z-s",
            job_id="j",
            account="spinup",
            group="g",
            trigger="schedule",
            scheduled_for="2026-01-30T10:18:00Z",
            status=status,
        )
        publisher.collect(run, None)
    assert publisher.flush() == 0
    assert [json.loads(m["Body"])["detail"]["status"] for m in drain(sqs, url)] == ["failed"]
    # And the message reads fields the event's detail has
    detail = run_detail(run, "failed", None, "")
    for path in target["InputTransformer"]["InputPathsMap"].values():
        assert path.removeprefix("$.detail.") in detail, path


def test_worker_and_reporter_roles_allow_every_call_publishing_and_reporting_make(
    template: dict[str, Any], recorded: dict[str, Any], client: Any
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from chalicelib.reporter import handle_event
    from chalicelib.worker import handle_batch

    # Given a job announcing its successes, run now by the worker as deployed
    job = {
        "name": "announced",
        "schedule_expression": "0 3 * * *",
        "details": {"runner": "dummyRunner"},
        "notify": ["succeeded"],
    }
    created = client.http.post(
        "/v1/minion/spinup/jobs/space-xy", headers=auth(), body=json.dumps(job)
    )
    assert created.status_code == 200, created.body
    path = f"/v1/minion/spinup/jobs/space-xy/{json.loads(created.body)['id']}"
    assert client.http.patch(path, headers=auth()).status_code == 202
    messages = drain(recorded["sqs"], recorded["queue_url"])
    recorder = recorded["recorder"]
    _new_process()
    recorder.clear()
    # When the worker runs it
    handle_batch(sqs_event(messages))
    # Then it published the run's event, allowed by the worker's role
    assert ("events", "PutEvents") in {(s, o) for s, o, _ in recorder.own()}
    assert _role_denies(template, "WorkerRole", recorded) == []

    # Given a webhook and its secret, as a deployment with a reporter has them
    posted: list[bytes] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posted.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        secret = boto3.client("secretsmanager").create_secret(
            Name="minion-test/webhook",
            SecretString=f"http://127.0.0.1:{server.server_address[1]}/hook",
        )["ARN"]
        os.environ["MINION_WEBHOOK_SECRET_ID"] = secret
        _new_process()
        recorder.clear()
        # When the reporter gets a run event
        handle_event(
            {
                "source": "minion",
                "detail-type": "Minion Run State Change",
                "detail": {
                    "run_id": "20260130T101800Z-s",
                    "status": "failed",
                    "account": "spinup",
                    "group": "space-xy",
                    "job_id": "j",
                },
            }
        )
    finally:
        os.environ.pop("MINION_WEBHOOK_SECRET_ID", None)
        server.shutdown()
        server.server_close()
    # Then it posted, and its role allows every AWS call it made
    assert len(posted) == 1
    denied = _denied(
        Resolver(template, {"WebhookSecretArn": secret}),
        statements_of(template, "ReporterRole"),
        recorder.own(),
        {**recorded["names"], "webhook_secret": secret},
    )
    assert denied == []
