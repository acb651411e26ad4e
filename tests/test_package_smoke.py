"""The deployment package runs on its own: build/deployment.zip, unzipped, serves the API, a
tick and a worker batch against the emulator, as Lambda would run it.

Each function runs in a fresh interpreter of the Lambda runtime's version (the one the package
was built for: build/runtime.json) with nothing on its path but the unzipped package and the
standard library: no site-packages of the build, so a dependency missing from the zip, a wheel
for another Python or machine, or a module that only exists in the work tree fails here. The
events are real API Gateway (REST proxy), EventBridge scheduled-event and SQS payloads, and each
function gets the environment the template gives it, with the emulator's resources (moto's
server, on a free loopback port) in place of the stack's.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import boto3
import pytest
from moto.server import ThreadedMotoServer

from chalicelib.store import table_definition
from conftest import TOKEN
from package_support import ACCOUNT_ID, REGION, RUNTIME_INFO, ZIP, Resolver, packaged_template

pytestmark = pytest.mark.slow

FUNCTIONS = ("APIHandler", "Tick", "TickPart", "Worker", "Sweep")
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
MARKER = "@@smoke-result@@"

# Runs one function's handler from the unzipped package, as Lambda's Python runtime does:
# the task root first on the path, the handler named by the template, a Lambda context.
DRIVER = r"""
import importlib, json, os, sys, sysconfig, time
task = os.environ["LAMBDA_TASK_ROOT"]
sys.path.insert(0, task)
module_name, attribute = sys.argv[1].rsplit(".", 1)
handler = getattr(importlib.import_module(module_name), attribute)

class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = "$LATEST"
    memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    invoked_function_arn = "arn:aws:lambda:%s:%s:function:%s" % (
        os.environ["AWS_REGION"], os.environ["SMOKE_ACCOUNT"], function_name)
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "smoke"

    def __init__(self, request_id, timeout):
        self.aws_request_id = request_id
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self):
        return int(max(0.0, self._deadline - time.monotonic()) * 1000)

timeout = float(os.environ["SMOKE_TIMEOUT"])
results = [handler(event, Context("smoke-%d" % i, timeout))
           for i, event in enumerate(json.load(sys.stdin))]
stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
outside = sorted({m.__file__ for m in list(sys.modules.values())
                  if getattr(m, "__file__", None) and not m.__file__.startswith((task,) + stdlib)})
print(@MARKER@ + json.dumps({"results": results, "outside": outside, "path": sys.path},
                           default=str))
""".replace("@MARKER@", repr(MARKER))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """build/sam.json as `make package` builds it from the work tree."""
    return packaged_template()


@pytest.fixture(scope="module")
def task_root(template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployment package unzipped, as Lambda unpacks it into /var/task."""
    root = tmp_path_factory.mktemp("task")
    with zipfile.ZipFile(ZIP) as archive:
        archive.extractall(root)
    return root


@pytest.fixture(scope="module")
def runtime_python(template: dict[str, Any]) -> str:
    """The interpreter of the runtime's version that packaged the bytecode."""
    info = json.loads(RUNTIME_INFO.read_text())
    assert info["interpreter"], info
    assert template["Resources"]["Tick"]["Properties"]["Runtime"] == info["runtime"]
    return str(info["interpreter"])


class Deployed(Resolver):
    """The template's intrinsics, with the emulator's resources in place of the stack's."""

    def __init__(self, template: dict[str, Any], physical: dict[str, dict[str, str]]) -> None:
        super().__init__(template)
        self.physical = physical

    def ref(self, name: str) -> Any:
        return self.physical[name]["Ref"] if name in self.physical else super().ref(name)

    def get_att(self, name: str, attribute: str) -> str:
        if name in self.physical:
            return self.physical[name][attribute]
        return super().get_att(name, attribute)


@pytest.fixture(scope="module")
def emulator(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """moto's server with the stack's table, queues, tokens secret and registry parameter."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port())
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:

        def client(service: str) -> Any:
            return boto3.client(
                service,
                endpoint_url=endpoint,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                aws_session_token="testing",
            )

        table = "minion-smoke-JobsTable-1SMOKE"
        client("dynamodb").create_table(**table_definition(table))
        sqs = client("sqs")
        dlq_url = sqs.create_queue(QueueName="minion-smoke-RunsDeadLetterQueue-1SMOKE")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        queue_name = "minion-smoke-RunsQueue-1SMOKE"
        queue_url = sqs.create_queue(
            QueueName=queue_name,
            Attributes={
                "VisibilityTimeout": "720",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}),
            },
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        parts_name = "minion-smoke-TickPartsQueue-1SMOKE"
        parts_url = sqs.create_queue(QueueName=parts_name)["QueueUrl"]
        parts_arn = sqs.get_queue_attributes(QueueUrl=parts_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        secret = client("secretsmanager").create_secret(
            Name="minion-smoke/tokens", SecretString=TOKEN
        )["ARN"]
        parameter = template["Parameters"]["AccountsParameterName"]["Default"]
        client("ssm").put_parameter(
            Name=parameter,
            Type="String",
            Value=json.dumps({"accounts": {"spinup": {"runners": ["dummyRunner"]}}}),
        )
        physical = {
            "JobsTable": {
                "Ref": table,
                "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{table}",
            },
            "RunsQueue": {"Ref": queue_url, "Arn": queue_arn, "QueueName": queue_name},
            "RunsDeadLetterQueue": {
                "Ref": dlq_url,
                "Arn": dlq_arn,
                "QueueName": "minion-smoke-RunsDeadLetterQueue-1SMOKE",
            },
            "TickPartsQueue": {"Ref": parts_url, "Arn": parts_arn, "QueueName": parts_name},
            "TokensSecret": {"Ref": secret, "Arn": secret},
        }
        yield {
            "endpoint": endpoint,
            "sqs": sqs,
            "queue_url": queue_url,
            "queue_arn": queue_arn,
            "parts_url": parts_url,
            "parts_arn": parts_arn,
            "resolver": Deployed(template, physical),
        }
    finally:
        server.stop()


def function_environment(
    template: dict[str, Any], function: str, emulator: dict[str, Any], task_root: Path
) -> dict[str, str]:
    """What Lambda sets for the function, plus its template environment, resolved."""
    properties = template["Resources"][function]["Properties"]
    variables = emulator["resolver"].resolve(properties["Environment"]["Variables"])
    return {
        **{k: str(v) for k, v in variables.items() if v is not None},
        **CREDENTIALS,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": emulator["endpoint"],
        "AWS_LAMBDA_FUNCTION_NAME": f"minion-smoke-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(properties["MemorySize"]),
        "AWS_EXECUTION_ENV": "AWS_Lambda_" + properties["Runtime"],
        "LAMBDA_TASK_ROOT": str(task_root),
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "SMOKE_TIMEOUT": str(properties["Timeout"]),
        "SMOKE_ACCOUNT": ACCOUNT_ID,
    }


def invoke(
    template: dict[str, Any],
    function: str,
    events: list[dict[str, Any]],
    emulator: dict[str, Any],
    task_root: Path,
    python: str,
) -> list[Any]:
    """A cold start of `function` from the unzipped package handling `events` in order."""
    handler = template["Resources"][function]["Properties"]["Handler"]
    # -I: no user site, no PYTHON* variables, no script directory; -S: no site-packages at all.
    answer = subprocess.run(
        [python, "-I", "-S", "-c", DRIVER, handler],
        input=json.dumps(events),
        env=function_environment(template, function, emulator, task_root),
        cwd=task_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert answer.returncode == 0, answer.stdout[-3000:] + answer.stderr[-5000:]
    [line] = [line for line in answer.stdout.splitlines() if line.startswith(MARKER)]
    report = json.loads(line.removeprefix(MARKER))
    # Nothing came from anywhere but the package and the standard library
    assert report["outside"] == [], report["outside"]
    assert not any("site-packages" in p for p in report["path"]), report["path"]
    return list(report["results"])


def api_event(
    method: str,
    resource: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy event, as API Gateway sends it to the API function."""
    names = re.findall(r"\{(\w+)\}", resource)
    values = re.fullmatch(re.sub(r"\\\{\w+\\\}", "([^/]+)", re.escape(resource)), path)
    assert values is not None, (resource, path)
    all_headers = {
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "Accept": "*/*",
        "X-Forwarded-Proto": "https",
        **(headers or {}),
    }
    if body is not None:
        all_headers["Content-Type"] = "application/json"
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": dict(zip(names, values.groups(), strict=True)) or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": "smoke=",
            "requestTime": "30/Nov/2026:12:00:00 +0000",
            "path": "/api" + path,
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": "api",
            "domainPrefix": "abc123",
            "requestTimeEpoch": 1796040000000,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {
                "sourceIp": "203.0.113.9",
                "userAgent": "smoke",
                "accountId": None,
                "caller": None,
                "user": None,
                "userArn": None,
                "accessKey": None,
            },
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123",
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def scheduled_event(minute: str, rule: str) -> dict[str, Any]:
    """An EventBridge scheduled event for one minute (ISO, UTC), as the tick's rule sends it."""
    return {
        "version": "0",
        "id": "5b1e2f9a-0000-4000-8000-00000000beef",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": minute,
        "region": REGION,
        "resources": [rule],
        "detail": {},
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The SQS event source's batch of received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def _receive_all(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    while page := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", []):
        received.extend(page)
    return received


def test_packaged_handlers_serve_the_api_a_tick_and_a_worker_batch_from_the_zip_alone(
    template: dict[str, Any], emulator: dict[str, Any], task_root: Path, runtime_python: str
) -> None:
    def call(function: str, *events: dict[str, Any]) -> list[Any]:
        return invoke(template, function, list(events), emulator, task_root, runtime_python)

    headers = {"X-Auth-Token": TOKEN}
    group = "/v1/minion/{account}/jobs/{group}"
    job = {
        "name": "smoke",
        "schedule_expression": "* * * ? *",
        "enabled": True,
        "details": {"runner": "dummyRunner"},
    }
    # Given a job created through the packaged API
    [created] = call(
        "APIHandler",
        api_event("POST", group, "/v1/minion/spinup/jobs/smoke", body=job, headers=headers),
    )
    assert created["statusCode"] == 200, created
    job_id, next_minute = json.loads(created["body"])["id"], json.loads(created["body"])["next"]
    path = f"/v1/minion/spinup/jobs/smoke/{job_id}"
    # And run at once, in another cold start of the API, which also checks a wrong token and
    # a bcrypt hash of the right one (the compiled dependency, loaded from the zip)
    hashed = bcrypt.hashpw(TOKEN.encode(), bcrypt.gensalt(rounds=4)).decode()
    run_now, unauthorized, compat = call(
        "APIHandler",
        api_event("PATCH", group + "/{id}", path, headers=headers),
        api_event("GET", group + "/{id}", path, headers={"X-Auth-Token": "wrong"}),
        api_event("GET", group + "/{id}", path, headers={"X-Auth-Token": hashed}),
    )
    assert run_now["statusCode"] == 202, run_now
    assert unauthorized["statusCode"] == 401, unauthorized
    assert compat["statusCode"] == 200, compat
    # When the packaged tick handles the scheduled event of the job's next minute
    [schedule] = [
        e
        for e in template["Resources"]["Tick"]["Properties"]["Events"].values()
        if e["Type"] == "Schedule"
    ]
    assert schedule["Properties"]["Schedule"] == "cron(* * * * ? *)"
    rule = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/minion-smoke-TickEvent"
    [fanned] = call("Tick", scheduled_event(next_minute, rule))
    # Then it only fans the minute out into parts
    parts = _receive_all(emulator["sqs"], emulator["parts_url"])
    assert len(parts) == fanned["parts"] >= 1, (fanned, parts)
    # When the packaged part-tick handles each part, as the parts queue's event source does
    for part in parts:
        [answer] = call("TickPart", sqs_event([part], emulator["parts_arn"]))
        assert answer == {"batchItemFailures": []}
    # Then the run-now message and the tick's are queued
    messages = _receive_all(emulator["sqs"], emulator["queue_url"])
    assert len(messages) == 2, messages
    # When the packaged worker handles them as one batch of the event source
    [answer] = call("Worker", sqs_event(messages, emulator["queue_arn"]))
    # Then no message failed
    assert answer == {"batchItemFailures": []}
    # And the API reports both runs succeeded
    [runs] = call(
        "APIHandler", api_event("GET", group + "/{id}/runs", path + "/runs", headers=headers)
    )
    assert runs["statusCode"] == 200, runs
    body = json.loads(runs["body"])
    listed = (
        body if isinstance(body, list) else next(v for v in body.values() if isinstance(v, list))
    )
    assert sorted(r["status"] for r in listed) == ["succeeded", "succeeded"], listed
    assert sorted(r["trigger"] for r in listed) == ["manual", "schedule"], listed
    # And the packaged sweep's minute finds nothing lost and fails nothing
    [swept] = call("Sweep", scheduled_event(next_minute, rule.replace("TickEvent", "SweepEvent")))
    assert swept == {"dead_letters": 0, "lost": 0, "requeued": 0, "kept": 0}, swept


def test_the_package_ships_the_runtimes_bytecode_and_the_runtime_uses_it(
    template: dict[str, Any], emulator: dict[str, Any], task_root: Path, runtime_python: str
) -> None:
    runtime = template["Resources"]["APIHandler"]["Properties"]["Runtime"]
    tag = "cpython-" + runtime.removeprefix("python").replace(".", "")
    # Given the package's modules
    sources = sorted(task_root.rglob("*.py"))
    assert len(sources) > 100
    # Then it holds no bytecode of another Python (the one that ran the build)
    assert [p for p in task_root.rglob("*.pyc") if f".{tag}." not in p.name] == []
    for source in sources:
        # Then each has bytecode of the runtime's version, checked against no source time
        # (Lambda's file times are not the zip's sources', and /var/task is read-only)
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        assert pyc.exists(), source
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        assert flags == 0b01, (pyc, flags)  # hash-based, source not checked
    # When a cold start of the API imports its handler, writing no bytecode
    env = function_environment(template, "APIHandler", emulator, task_root)
    answer = subprocess.run(
        [
            runtime_python,
            "-I",
            "-S",
            "-B",
            "-v",
            "-c",
            f"import sys; sys.path.insert(0, {str(task_root)!r}); import app; "
            f"print('\\n'.join(m.__file__ for m in list(sys.modules.values()) "
            f"if (getattr(m, '__file__', None) or '').startswith({str(task_root)!r})))",
        ],
        env=env,
        cwd=task_root,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    imported = [Path(p) for p in answer.stdout.split() if p.endswith(".py")]
    loaded = set(re.findall(r"^# code object from '(.+\.pyc)'$", answer.stderr, re.MULTILINE))
    # Then every module of the package came from its shipped bytecode, none was compiled
    assert len(imported) > 50
    missing = [
        str(p)
        for p in imported
        if str(p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc") not in loaded
    ]
    assert missing == []


def test_the_environment_the_smoke_test_gives_is_the_templates(
    template: dict[str, Any], emulator: dict[str, Any], task_root: Path
) -> None:
    # Given the environment each function gets in the smoke test
    for function in FUNCTIONS:
        env = function_environment(template, function, emulator, task_root)
        declared = template["Resources"][function]["Properties"]["Environment"]["Variables"]
        # Then it sets every variable the template declares, and the emulator's resources
        assert set(declared) <= set(env), function
        assert env["MINION_TABLE"] == "minion-smoke-JobsTable-1SMOKE", function
        assert env["MINION_QUEUE_URL"] == emulator["queue_url"], function
    api = function_environment(template, "APIHandler", emulator, task_root)
    assert api["MINION_TOKENS_SECRET_ID"].startswith(
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:minion-smoke/tokens"
    )
    # And nothing of the test process leaks into it
    assert not set(env) & {"VIRTUAL_ENV", "PYTHONPATH", "PYTEST_CURRENT_TEST"}
    assert sysconfig.get_paths()["purelib"] not in json.dumps(env)
