"""Security: no token in any log line, constant-time token checks, no attacker-chosen bcrypt
cost, and an API that answers only over its own routes."""

from __future__ import annotations

import hmac
import http.client
import json
import logging
import statistics
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import bcrypt
import pytest

import app as app_module
from chalicelib import auth, deps
from chalicelib.worker import handle_batch
from conftest import OLD_TOKEN, TOKEN, drain, sqs_event
from local_stack_support import served_api_url

JOBS = "/v1/minion/spinup/jobs"
JOB_BODY = {
    "name": "nightly",
    "schedule_expression": "0 3 * * *",
    "details": {"runner": "dummyRunner"},
}
# An attacker-chosen bcrypt header: cost 31 (days of hashing) and 53 valid salt+hash chars.
HUGE_COST_HEADER = "$2b$31$" + "abcdefghijklmnopqrstuv" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ01234"


class LocalApi:
    """Chalice's local server over the app (as `make run` serves it), spoken to over HTTP."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def request(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, str, bytes]:
        """(status, content type, body) of one request; `path` is sent exactly as given."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-Auth-Token"] = token
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request(
                method, path, body=None if body is None else json.dumps(body), headers=headers
            )
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type") or "", response.read()
        finally:
            connection.close()


@pytest.fixture
def local_api(aws: dict[str, Any]) -> Iterator[LocalApi]:
    """The app served on loopback over this test's moto."""
    app_module._api.cache_clear()
    yield LocalApi(served_api_url())
    app_module._api.cache_clear()


@pytest.fixture
def every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger (botocore's, Chalice's, Powertools', the app's) at DEBUG, records captured."""
    loggers = [logging.getLogger()] + [
        found
        for found in logging.root.manager.loggerDict.values()
        if isinstance(found, logging.Logger)
    ]
    levels = [(found, found.level) for found in loggers]
    for found in loggers:
        found.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield caplog
    for found, level in levels:
        found.setLevel(level)


def bcrypt_header(token: str) -> str:
    """What minion's original clients send: a bcrypt hash of the token (cheap rounds here)."""
    return bcrypt.hashpw(token.encode(), bcrypt.gensalt(rounds=4)).decode()


def with_tokens(monkeypatch: pytest.MonkeyPatch, *tokens: str) -> None:
    """Configure exactly these tokens."""
    monkeypatch.setenv("MINION_TOKENS", ",".join(tokens))
    deps.reset()
    app_module._api.cache_clear()


# --- tokens never reach a log line -----------------------------------------------------------


def test_no_token_appears_in_any_log_line_or_output(
    local_api: LocalApi,
    aws: dict[str, Any],
    every_logger_at_debug: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given every logger at DEBUG and stdout/stderr captured (Powertools logs to stdout, the
    # local server's access log to stderr), and the bcrypt form of the token
    bcrypt_form = bcrypt_header(TOKEN)

    # When requests are served and refused with the tokens in every form the API meets
    status, _, body = local_api.request("POST", JOBS + "/space-xy", TOKEN, JOB_BODY)
    assert status == 200, body
    job = json.loads(body)
    job_path = f"{JOBS}/space-xy/{job['id']}"
    answers = [
        local_api.request("GET", job_path, token)[0] for token in (TOKEN, OLD_TOKEN, bcrypt_form)
    ]
    refusals = [
        local_api.request("GET", job_path, token)[0]
        for token in (
            None,
            "",
            TOKEN + "-wrong",
            "x" + OLD_TOKEN,
            TOKEN * 60,
            bcrypt_header("not-it"),
            HUGE_COST_HEADER,
            bcrypt_form[:-1] + "A",
        )
    ]
    unknown = [
        local_api.request("GET", "/v1/minion/no/such/route", token)[0]
        for token in (TOKEN, TOKEN + "-wrong")
    ]
    # ... a run-now with the bcrypt form, run by the worker
    status, _, body = local_api.request("PATCH", job_path, bcrypt_form)
    assert status == 202, body
    run_id = json.loads(body)["run_id"]
    worker_answer = handle_batch(sqs_event(drain(aws["sqs"], aws["queue_url"])))
    run = json.loads(local_api.request("GET", f"{job_path}/runs/{run_id}", OLD_TOKEN)[2])

    # ... and a request that fails inside (a 500, logged with its traceback)
    def broken(**_: Any) -> Any:
        raise RuntimeError("the store broke")

    monkeypatch.setattr(deps.store().client, "query", broken)
    failed = local_api.request("GET", JOBS, TOKEN)[0]

    # Then everything worked as intended (so every path was taken and logged) ...
    assert answers == [200, 200, 200]
    assert refusals == [401] * 8
    assert unknown == [404, 401]
    assert worker_answer == {"batchItemFailures": []} and run["status"] == "succeeded"
    assert failed == 500
    out, err = capfd.readouterr()
    logged = "\n".join(
        [out, err]
        + [
            json.dumps({**record.__dict__, "message": record.getMessage()}, default=repr)
            for record in every_logger_at_debug.records
        ]
    )
    assert "the store broke" in logged  # the 500's traceback
    assert run_id in logged  # the worker's "run finished"
    assert "PATCH " + job_path in logged  # the local server's access log
    assert "botocore" in logged  # DEBUG records of the AWS calls
    # ... and no token, nor the bcrypt form of one, is anywhere in it
    for secret in (TOKEN, OLD_TOKEN, bcrypt_form, bcrypt_form[29:]):
        assert secret not in logged, secret


# --- constant-time comparison ----------------------------------------------------------------


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """hmac.compare_digest as chalicelib.auth calls it, still real, with its calls recorded."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(presented: bytes, token: bytes) -> bool:
        calls.append((presented, token))
        return real(presented, token)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # the module auth.py calls
    return calls


@pytest.mark.parametrize(
    "presented",
    [
        pytest.param("wrong-token-0123456", id="wrong-same-length"),
        pytest.param("w", id="wrong-short"),
        pytest.param("alpha-token-0000001", id="first-token"),
        pytest.param("gamma-token-0000003", id="last-token"),
    ],
)
def test_every_configured_token_is_compared_in_constant_time_without_early_exit(
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    compared: list[tuple[bytes, bytes]],
    presented: str,
) -> None:
    # Given three configured tokens
    tokens = ("alpha-token-0000001", "beta-token-00000002", "gamma-token-0000003")
    with_tokens(monkeypatch, *tokens)

    # When a request presents a token (wrong, or one of them)
    response = client.http.get(JOBS, headers={"X-Auth-Token": presented})

    # Then the header was compared with hmac.compare_digest once against each of the three,
    # whether or not an earlier one matched
    assert response.status_code == (200 if presented in tokens else 401)
    assert compared == [(presented.encode(), token.encode()) for token in tokens]


def test_scoped_tokens_are_compared_in_constant_time_too(
    client: Any, monkeypatch: pytest.MonkeyPatch, compared: list[tuple[bytes, bytes]]
) -> None:
    # Given three tokens, the first two scoped
    tokens = ("alpha-token-0000001", "beta-token-00000002", "gamma-token-0000003")
    monkeypatch.setenv(
        "MINION_TOKENS",
        json.dumps(
            [
                {"token": tokens[0], "accounts": ["limited"]},
                {"token": tokens[1], "read_only": True},
                tokens[2],
            ]
        ),
    )
    deps.reset()
    app_module._api.cache_clear()
    # When the first one is used out of its scope / Then 403, after comparing with all three
    response = client.http.get(JOBS, headers={"X-Auth-Token": tokens[0]})
    assert response.status_code == 403
    assert compared == [(tokens[0].encode(), token.encode()) for token in tokens]


# --- attacker-chosen bcrypt cost -------------------------------------------------------------


def test_a_bcrypt_header_with_a_huge_cost_is_refused_at_once_without_hashing(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given bcrypt made to fail the test if it is asked to hash anything
    def must_not_run(*_: Any) -> Any:
        raise AssertionError("bcrypt called for an attacker-chosen cost")

    for name in ("checkpw", "hashpw", "kdf"):
        monkeypatch.setattr(bcrypt, name, must_not_run)
    assert auth.BCRYPT_HEADER.match(HUGE_COST_HEADER.encode())  # it has the form of one

    # When the huge-cost header and a plain wrong token are sent in turns
    def elapsed(token: str) -> float:
        start = time.perf_counter()
        response = client.http.get(JOBS, headers={"X-Auth-Token": token})
        took = time.perf_counter() - start
        assert response.status_code == 401, response.body
        return took

    huge, plain = [], []
    for _ in range(15):
        huge.append(elapsed(HUGE_COST_HEADER))
        plain.append(elapsed("plain-wrong-token"))

    # Then both are refused, and the huge cost takes about as long as a plain wrong token
    # (a single bcrypt round at cost 12, the highest accepted, is hundreds of times longer)
    assert statistics.median(huge) < 5 * statistics.median(plain)


# --- only the API's own routes answer --------------------------------------------------------

UNKNOWN_PATHS = [
    "/",
    "/v1",
    "/v1/minion",
    "/v1/minion/",
    "/v1/minion/nothing/here",
    "/V1/MINION/PING",
    "/v1/minion/ping/x",
    "/v1/minion//ping",
    "/v1/minion/../minion/ping",
    "/v1/minion/%2e%2e/minion/ping",
    "/v1/minion/spinup%2Fjobs",
    "/v1/minion/ping%00",
    "/v1/minion/openapi.json/..",
    "/v1/minion/spinup/jobs/g/6bcfa79f-615e-470d-97c1-687f3357497d/runs/20200227T162300Z-s/extra",
    "/.env",
    "/v1/minion/spinup/jobs/space-xy/x/y/z/w",
]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_an_unknown_path_is_a_401_without_a_token_and_a_404_with_one(
    local_api: LocalApi, method: str
) -> None:
    for path in UNKNOWN_PATHS:
        # When an unknown path is requested without a token, with a wrong one, with a good one
        answers = [
            local_api.request(method, path, token, body={} if method == "POST" else None)
            for token in (None, "wrong", TOKEN)
        ]

        # Then 401, 401, 404: JSON errors, never a 5xx, never a route's own answer
        assert [(status, json.loads(body)["Code"]) for status, _, body in answers] == [
            (401, "UnauthorizedError"),
            (401, "UnauthorizedError"),
            (404, "NotFoundError"),
        ], path
        assert all(content_type == "application/json" for _, content_type, _ in answers), path


def test_api_gateway_refuses_an_unknown_path_before_any_handler_runs(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the token check (the first step of every protected handler) made to fail the
    # test if it is reached
    def must_not_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("a handler ran for an unknown path")

    monkeypatch.setattr(deps.authenticator(), "is_valid", must_not_run)
    monkeypatch.setattr(deps.authenticator(), "authenticate", must_not_run)

    # When unknown paths go through Chalice's emulation of API Gateway (the deployed front)
    for path in UNKNOWN_PATHS[:7]:
        response = client.http.get(path, headers={"X-Auth-Token": TOKEN})

        # Then API Gateway's own 403 JSON answer, never a 5xx, never a route's body
        assert response.status_code == 403, path
        assert json.loads(response.body) == {"message": "Missing Authentication Token"}, path


# --- assumed-role credentials never reach a log line -----------------------------------------


def test_assumed_role_credentials_and_external_id_never_reach_a_log_line_at_debug(
    aws: dict[str, Any],
    every_logger_at_debug: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Given every logger at DEBUG (the root too), and an account entry with a role and an
    # ExternalId, as the worker acts in another account
    from chalicelib.accounts import AccountEntry
    from chalicelib.credentials import AccountClients

    logging.getLogger().setLevel(logging.DEBUG)
    external_id = "external-id-" + "7f3c9a1b2d4e6f80"
    entry = AccountEntry(
        name="spinup",
        runners=frozenset({"instanceRunner"}),
        account_id="111122223333",
        role_arn="arn:aws:iam::111122223333:role/minion-runner",
        external_id=external_id,
        region="us-east-1",
    )
    clients = AccountClients(entry, "20260130T101700Z-s", region="us-east-1")

    # When the role is assumed (moto's STS answers with credentials) and a call is signed
    # with them
    clients("ec2").describe_instances()
    issued = clients._credentials
    assert issued and issued["aws_session_token"]

    # Then the capture works at DEBUG (a canary logged after the calls is in it: whether the
    # SDK logs anything depends on whether its shared session was made by an earlier test) ...
    logging.getLogger("minion.test").debug("canary-after-the-aws-calls")
    out, err = capfd.readouterr()
    logged = "\n".join(
        [out, err]
        + [
            json.dumps({**record.__dict__, "message": record.getMessage()}, default=repr)
            for record in every_logger_at_debug.records
        ]
    )
    assert "canary-after-the-aws-calls" in logged
    # ... and neither the ExternalId nor any part of the credentials is in any of it
    for secret in (
        external_id,
        issued["aws_access_key_id"],
        issued["aws_secret_access_key"],
        issued["aws_session_token"],
    ):
        assert secret not in logged, secret


def test_the_aws_sdk_loggers_stay_at_info_whatever_the_root_level() -> None:
    from chalicelib import observability

    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.DEBUG)
        for name in (
            "botocore",
            "botocore.credentials",
            "botocore.endpoint",
            "botocore.parsers",
            "botocore.auth",
            "urllib3",
            "urllib3.connectionpool",
        ):
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
        # even when one is lowered again afterwards, its DEBUG records are dropped
        logging.getLogger("botocore.parsers").setLevel(logging.DEBUG)
        record = logging.LogRecord(
            "botocore.parsers", logging.DEBUG, __file__, 1, "body", None, None
        )
        assert not logging.getLogger("botocore.parsers").filter(record)
        assert observability.PINNED_LOGGERS
    finally:
        root.setLevel(level)
        logging.getLogger("botocore.parsers").setLevel(logging.INFO)


# --- ids checked whole: no trailing newline slips through -----------------------------------


def test_id_checks_match_the_whole_value() -> None:
    from chalicelib.errors import BadRequest
    from chalicelib.jobs import check_segment, is_job_id
    from chalicelib.queue import RunMessage
    from chalicelib.runs import is_run_id

    run_id, job_id = "20260130T101700Z-s", "6bcfa79f-615e-470d-97c1-687f3357497d"
    assert is_run_id(run_id) and is_job_id(job_id)
    for suffix in ("\n", "\r\n", " "):
        assert not is_run_id(run_id + suffix)
        assert not is_job_id(job_id + suffix)
        with pytest.raises(BadRequest):
            check_segment("account", "spinup" + suffix)
        for name, value in (("account", "spinup"), ("group", "space-xy")):
            body = {
                "account": "spinup",
                "group": "space-xy",
                "job_id": job_id,
                "run_id": "20260130T101700Z-m0123abcd",
                "trigger": "manual",
                "scheduled_for": "2026-01-30T10:17:00Z",
                name: value + suffix,
            }
            with pytest.raises(ValueError):
                RunMessage.from_body(json.dumps(body))
    header = bcrypt_header(TOKEN)
    assert auth.BCRYPT_HEADER.fullmatch(header.encode())
    assert not auth.BCRYPT_HEADER.fullmatch((header + "\n").encode())


# --- the CLI does not send a token in clear text to another host -----------------------------


def _cli(args: list[str], requests: list[str]) -> Any:
    """Run the CLI with a transport that records each request and answers 200 []."""
    import httpx
    from click.testing import CliRunner

    from minion_cli.main import Session, cli

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        return httpx.Response(200, json=[])

    session = Session(transport=httpx.MockTransport(answer))
    return CliRunner().invoke(cli, args, obj=session, env={"MINION_TOKEN": TOKEN, "MINION_URL": ""})


@pytest.mark.parametrize(
    "url",
    [
        "http://minion.example.com",
        "http://10.0.0.5:8000",
        "http://127.0.0.1.example.com",
        "HTTP://api.example.org/",
    ],
)
def test_the_cli_refuses_to_send_a_token_over_plain_http_to_another_host(url: str) -> None:
    requests: list[str] = []
    result = _cli(["--url", url, "jobs", "list", "spinup"], requests)
    assert result.exit_code == 2, result.output
    assert "https" in result.output and "--insecure-http" in result.output
    assert TOKEN not in result.output
    assert requests == []  # nothing was sent


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://localhost:8000",
        "http://[::1]:8000",
        "http://127.0.0.2:9000",
        "https://minion.example.com",
    ],
)
def test_the_cli_sends_over_https_or_to_loopback(url: str) -> None:
    requests: list[str] = []
    result = _cli(["--url", url, "jobs", "list", "spinup"], requests)
    assert result.exit_code == 0, result.output
    assert len(requests) == 1


def test_the_cli_sends_over_plain_http_to_another_host_only_when_forced() -> None:
    requests: list[str] = []
    result = _cli(
        ["--url", "http://minion.example.com", "--insecure-http", "jobs", "list", "spinup"],
        requests,
    )
    assert result.exit_code == 0, result.output
    assert requests and requests[0].startswith("http://minion.example.com/")
