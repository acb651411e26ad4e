"""X-Auth-Token: plain tokens (several at once, for rotation), the original clients' bcrypt form,
and every bad token a 401 JSON error that never reaches a log line."""

from __future__ import annotations

import json
import logging
from typing import Any

import bcrypt
import pytest

from conftest import OLD_TOKEN, TOKEN

JOBS = "/v1/minion/spinup/jobs"
SECRET_TOKEN = "from-secret-0123456789"
PREVIOUS = "previous-token-0123456"


def with_token(token: Any) -> dict[str, Any]:
    return {"X-Auth-Token": token}


def assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401, (response.status_code, response.body)
    assert response.json_body == {
        "Code": "UnauthorizedError",
        "Message": "missing or invalid X-Auth-Token",
    }


def bcrypt_header(token: str, rounds: int = 4) -> str:
    """What minion's original clients send: a bcrypt hash of the token (cheap rounds here)."""
    return bcrypt.hashpw(token.encode(), bcrypt.gensalt(rounds=rounds)).decode()


@pytest.fixture
def checkpw_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """bcrypt.checkpw, still real, with its calls recorded."""
    calls: list[tuple[bytes, bytes]] = []
    real = bcrypt.checkpw

    def recording(password: bytes, hashed: bytes) -> bool:
        calls.append((password, hashed))
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", recording)
    return calls


# --- plain tokens ----------------------------------------------------------------------------


def test_the_current_and_the_previous_token_are_both_accepted(client: Any) -> None:
    # Given the deployment configured with TOKEN and OLD_TOKEN (a rotation in progress)
    # When either is sent / Then the request is served
    for token in (TOKEN, OLD_TOKEN):
        response = client.http.get(JOBS, headers=with_token(token))
        assert response.status_code == 200, token
        assert response.json_body == []


BAD_TOKENS = {
    "missing": {},
    "empty": with_token(""),
    "wrong": with_token("wrong-token"),
    "prefix of the token": with_token(TOKEN[:-1]),
    "the token and more": with_token(TOKEN + "x"),
    "the token in other case": with_token(TOKEN.upper()),
    "both tokens joined": with_token(f"{TOKEN},{OLD_TOKEN}"),
    "non-ASCII text": with_token("t\u00f6ken-\u2603"),
    "the token and a non-ASCII letter": with_token(TOKEN + "\u00e9"),
    "non-ASCII raw bytes": with_token(b"caf\xc3\xa9"),
    "invalid UTF-8 bytes": with_token(b"\xff\xfe\x00"),
    "10 KiB": with_token("x" * 10 * 1024),
    "10 KiB starting with the token": with_token(TOKEN + "x" * 10 * 1024),
    "bcrypt-shaped garbage": with_token("$2b$04$" + "." * 53),
}


def test_a_bad_token_is_a_401_json_error(client: Any) -> None:
    for case, headers in BAD_TOKENS.items():
        response = client.http.get(JOBS, headers=headers)
        assert response.status_code == 401, (case, response.body)
        assert_unauthorized(response)


def test_a_bad_token_is_refused_before_anything_is_read_or_written(client: Any) -> None:
    # Given a request that would otherwise be a 404, a 400 and a 405
    for method, path in [
        ("GET", "/v1/minion/nosuch/jobs"),
        ("POST", JOBS + "/space-xy"),
        ("PATCH", JOBS + "/space-xy/6bcfa79f-615e-470d-97c1-687f3357497d"),
        ("PUT", JOBS),
    ]:
        response = client.http.request(method, path, headers=with_token("wrong"), body=b"{")
        # Then the answer is 401 whatever else is wrong
        assert_unauthorized(response)
    assert client.http.get(JOBS, headers=with_token(TOKEN)).json_body == []


def test_tokens_come_from_the_secret_when_one_is_configured(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the tokens held in Secrets Manager (new and previous), not in the environment
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from chalice.test import Client

    import app as app_module
    from chalicelib import deps

    boto3.client("secretsmanager").create_secret(
        Name="minion/tokens", SecretString=json.dumps({"tokens": [SECRET_TOKEN, PREVIOUS]})
    )
    monkeypatch.setenv("MINION_TOKENS_SECRET_ID", "minion/tokens")
    monkeypatch.setenv("MINION_TOKENS", "")
    parameters.clear_caches()
    deps.reset()
    app_module._api.cache_clear()
    try:
        with Client(app_module.app) as client:
            # When requests carry those or the environment's old token
            # Then both secret tokens are accepted, and nothing else
            assert client.http.get(JOBS, headers=with_token(SECRET_TOKEN)).status_code == 200
            assert client.http.get(JOBS, headers=with_token(PREVIOUS)).status_code == 200
            assert_unauthorized(client.http.get(JOBS, headers=with_token(TOKEN)))
    finally:
        parameters.clear_caches()
        app_module._api.cache_clear()


# --- the original clients' bcrypt form -------------------------------------------------------


def test_a_bcrypt_hash_of_a_token_is_accepted(client: Any) -> None:
    # Given headers as minion's original clients built them, from either configured token
    for token in (TOKEN, OLD_TOKEN):
        # When sent / Then served
        response = client.http.get(JOBS, headers=with_token(bcrypt_header(token)))
        assert response.status_code == 200, token


def test_a_bcrypt_hash_of_another_secret_is_refused(client: Any) -> None:
    assert_unauthorized(client.http.get(JOBS, headers=with_token(bcrypt_header("not-it"))))


def test_a_verified_bcrypt_header_is_served_from_the_cache(
    client: Any, checkpw_calls: list[tuple[bytes, bytes]]
) -> None:
    # Given a bcrypt header of the token
    header = bcrypt_header(TOKEN)
    # When it is sent twice
    first = client.http.get(JOBS, headers=with_token(header))
    second = client.http.get(JOBS, headers=with_token(header))
    # Then both are served, and bcrypt checked it once against each of the two tokens
    assert (first.status_code, second.status_code) == (200, 200)
    assert len(checkpw_calls) == 2


@pytest.mark.parametrize("cost", [31, 20, 13, 12, 11])
def test_a_bcrypt_header_with_a_huge_cost_is_refused_without_hashing(
    client: Any, monkeypatch: pytest.MonkeyPatch, cost: int
) -> None:
    # Given bcrypt made to fail the test if called (cost 31 would take days)
    def must_not_run(*_: Any) -> bool:
        raise AssertionError("bcrypt.checkpw called for an attacker-chosen cost")

    monkeypatch.setattr(bcrypt, "checkpw", must_not_run)
    header = f"$2b${cost:02d}$" + "abcdefghijklmnopqrstuv" + "A" * 31
    assert len(header) == 60
    # When the header is sent / Then 401 at once
    assert_unauthorized(client.http.get(JOBS, headers=with_token(header)))


def test_a_bcrypt_hash_above_the_original_clients_cost_is_refused(client: Any) -> None:
    # Given a real bcrypt hash of the token at cost 11, one above the Go clients' DefaultCost
    header = bcrypt_header(TOKEN, rounds=11)
    # When sent / Then refused (a cost-10 hash of it is served)
    assert_unauthorized(client.http.get(JOBS, headers=with_token(header)))
    assert (
        client.http.get(JOBS, headers=with_token(bcrypt_header(TOKEN, rounds=10))).status_code
        == 200
    )


LONG_TOKEN = "L" * 100  # over bcrypt's 72 bytes: bcrypt 5 raises ValueError for it


@pytest.mark.parametrize("order", ["long first", "long last"])
def test_a_token_over_72_bytes_does_not_stop_bcrypt_checks_of_the_others(
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    checkpw_calls: list[tuple[bytes, bytes]],
    order: str,
) -> None:
    # Given a token longer than bcrypt can hash, before or after the others
    tokens = (
        [LONG_TOKEN, TOKEN, OLD_TOKEN] if order == "long first" else [TOKEN, OLD_TOKEN, LONG_TOKEN]
    )
    configure(monkeypatch, ",".join(tokens))
    # When a bcrypt hash of an ordinary token is sent
    response = client.http.get(JOBS, headers=with_token(bcrypt_header(TOKEN)))
    # Then it is served whatever the order, and every token bcrypt can hash was checked (the
    # match does not end the loop: the time does not say where the token is in the list)
    assert response.status_code == 200
    assert sorted(password for password, _ in checkpw_calls) == sorted(
        [TOKEN.encode(), OLD_TOKEN.encode()]
    )
    # And the long token still works plain
    assert client.http.get(JOBS, headers=with_token(LONG_TOKEN)).status_code == 200


def test_the_bcrypt_form_can_be_turned_off(
    client: Any, monkeypatch: pytest.MonkeyPatch, checkpw_calls: list[tuple[bytes, bytes]]
) -> None:
    # Given a deployment that turned off the original clients' bcrypt form
    monkeypatch.setenv("MINION_BCRYPT_TOKENS", "false")
    configure(monkeypatch, f"{TOKEN},{OLD_TOKEN}")
    # When a bcrypt hash of the token is sent / Then refused without hashing; plain still served
    assert_unauthorized(client.http.get(JOBS, headers=with_token(bcrypt_header(TOKEN))))
    assert checkpw_calls == []
    assert client.http.get(JOBS, headers=with_token(TOKEN)).status_code == 200


def test_the_bcrypt_setting_accepts_only_true_or_false() -> None:
    from chalicelib.settings import Settings, SettingsError

    assert Settings.from_env({}).bcrypt_tokens is True  # compat: on unless turned off
    assert Settings.from_env({"MINION_BCRYPT_TOKENS": "false"}).bcrypt_tokens is False
    with pytest.raises(SettingsError, match="MINION_BCRYPT_TOKENS"):
        Settings.from_env({"MINION_BCRYPT_TOKENS": "maybe"})


# --- the tokens' configuration fails closed --------------------------------------------------


def configure(monkeypatch: pytest.MonkeyPatch, tokens: Any) -> None:
    """Configure exactly these tokens in MINION_TOKENS (JSON when not a string)."""
    from chalicelib import deps

    monkeypatch.setenv("MINION_TOKENS", tokens if isinstance(tokens, str) else json.dumps(tokens))
    deps.reset()


DOCUMENTED_SHAPES = {
    "comma-separated": f"{TOKEN}, {OLD_TOKEN}",
    "one token": TOKEN,
    "JSON list": json.dumps([TOKEN, OLD_TOKEN]),
    "tokens object": json.dumps({"tokens": [TOKEN, OLD_TOKEN]}),
    "scoped entries": json.dumps(
        {
            "tokens": [
                {"token": TOKEN, "name": "ci"},
                {"token": OLD_TOKEN, "accounts": ["spinup"], "read_only": False},
            ]
        }
    ),
}


@pytest.mark.parametrize("shape", DOCUMENTED_SHAPES)
def test_every_documented_shape_of_the_tokens_is_accepted(
    client: Any, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    configure(monkeypatch, DOCUMENTED_SHAPES[shape])
    assert client.http.get(JOBS, headers=with_token(TOKEN)).status_code == 200
    assert_unauthorized(client.http.get(JOBS, headers=with_token("Z")))


MISSHAPEN = {
    # What the Secrets Manager console's key/value editor saves: a string, not a list
    "tokens is a string": json.dumps({"tokens": TOKEN}),
    "tokens is a comma string": json.dumps({"tokens": f"{TOKEN},{OLD_TOKEN}"}),
    "tokens is a number": json.dumps({"tokens": 12}),
    "tokens is null": json.dumps({"tokens": None}),
    "tokens is an object": json.dumps({"tokens": {TOKEN: "x"}}),
    "another key beside tokens": json.dumps({"tokens": [TOKEN], "token": OLD_TOKEN}),
    "no tokens key": json.dumps({"token": TOKEN}),
    "a JSON string": json.dumps(TOKEN),
    "malformed JSON": "[" + json.dumps(TOKEN),
    "an empty list": "[]",
    "empty text": "   ",
    "a number in the list": json.dumps([TOKEN, 7]),
    "a nested list": json.dumps([[TOKEN]]),
    "a short token": f"{TOKEN},short",
    "a one-character token": f"{TOKEN},Z",
    "a token with a space": json.dumps([TOKEN, "with a space 0123456"]),
    "a non-ASCII token": json.dumps([TOKEN, "t\u00f6ken-0123456789abc"]),
    "the same token twice": f"{TOKEN},{TOKEN}",
    "an entry without token": json.dumps([TOKEN, {"accounts": ["spinup"]}]),
    "a misspelt key": json.dumps([{"token": TOKEN, "acounts": ["limited"]}]),
    "accounts not a list": json.dumps([{"token": TOKEN, "accounts": "limited"}]),
    "accounts empty": json.dumps([{"token": TOKEN, "accounts": []}]),
    "an account not a name": json.dumps([{"token": TOKEN, "accounts": ["limited\n"]}]),
    "read_only not a boolean": json.dumps([{"token": TOKEN, "read_only": "yes"}]),
    "a token written as a key": json.dumps([{TOKEN: {"accounts": ["spinup"]}}]),
    "a token written as a top-level key": json.dumps({"tokens": [], TOKEN: ["spinup"]}),
}


@pytest.mark.parametrize("shape", MISSHAPEN)
def test_misshapen_tokens_grant_nothing_and_say_so_once(
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    shape: str,
) -> None:
    # Given tokens configured in a shape that is not documented
    configure(monkeypatch, MISSHAPEN[shape])
    capsys.readouterr()
    # When requests carry the real token, a one-character token, or its bcrypt form
    answers = [
        client.http.get(JOBS, headers=with_token(t))
        for t in (TOKEN, "Z", TOKEN[0], bcrypt_header(TOKEN), TOKEN)
    ]
    # Then none is served
    for response in answers:
        assert_unauthorized(response)
    # And one ERROR line says why (never quoting a token), with the metric an alarm watches
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert errors[0].error_code == "TokensConfigInvalid" and errors[0].reason  # type: ignore
    metrics = [
        line
        for line in lines
        if "TokensConfigInvalid"
        in line.get("_aws", {})
        .get("CloudWatchMetrics", [{}])[0]
        .get("Metrics", [{}])[0]
        .get("Name", "")
    ]
    assert len(metrics) == 1 and metrics[0]["TokensConfigInvalid"] == [1.0]
    logged = out + json.dumps([r.__dict__ for r in caplog.records], default=repr)
    assert TOKEN not in logged and OLD_TOKEN not in logged


def test_the_alarm_watches_the_metric_as_the_code_publishes_it(
    client: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    from cfnlint.decode import decode

    # Given a misshapen secret, and the deployed template's alarm
    template, _ = decode(str(Path(__file__).parents[1] / "infra" / "minion.yaml"))
    alarm = template["Resources"]["TokensInvalidAlarm"]["Properties"]
    configure(monkeypatch, json.dumps({"tokens": TOKEN}))
    capsys.readouterr()
    # When a request is refused for it
    assert_unauthorized(client.http.get(JOBS, headers=with_token(TOKEN)))
    # Then the EMF document published names the alarm's metric, namespace and dimensions
    [document] = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"_aws"')
    ]
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert [m["Name"] for m in directive["Metrics"]] == [alarm["MetricName"]]
    assert directive["Namespace"] == template["Parameters"]["MetricsNamespace"]["Default"]
    assert alarm["Namespace"] == {"Ref": "MetricsNamespace"}
    assert {d: document[d] for group in directive["Dimensions"] for d in group} == {
        d["Name"]: d["Value"] for d in alarm["Dimensions"]
    }
    assert alarm["Threshold"] == 1 and alarm["Statistic"] == "Sum"


def test_no_token_configured_at_all_grants_nothing(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, "")
    assert_unauthorized(client.http.get(JOBS, headers=with_token(TOKEN)))


def test_a_misshapen_secret_grants_nothing(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the secret as the console's key/value editor saves it: {"tokens": "<the token>"}
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from chalice.test import Client

    import app as app_module
    from chalicelib import deps

    boto3.client("secretsmanager").create_secret(
        Name="minion/tokens", SecretString=json.dumps({"tokens": SECRET_TOKEN})
    )
    monkeypatch.setenv("MINION_TOKENS_SECRET_ID", "minion/tokens")
    monkeypatch.setenv("MINION_TOKENS", "")
    parameters.clear_caches()
    deps.reset()
    app_module._api.cache_clear()
    try:
        with Client(app_module.app) as client:
            # When the real token, or one of its characters, is sent / Then neither is served
            for token in (SECRET_TOKEN, SECRET_TOKEN[0], "Z"):
                assert_unauthorized(client.http.get(JOBS, headers=with_token(token)))
    finally:
        parameters.clear_caches()
        app_module._api.cache_clear()


def test_an_error_about_the_tokens_never_quotes_one() -> None:
    from chalicelib.auth import TokenConfigError, parse_tokens

    for shape, text in MISSHAPEN.items():
        with pytest.raises(TokenConfigError) as raised:
            parse_tokens(text)
        assert TOKEN not in str(raised.value) and "short" not in str(raised.value), shape


# --- tokens scoped to accounts ---------------------------------------------------------------

LIMITED_ONLY = "limited-only-token-0001"
READER = "read-only-token-000002"
LIMITED_READER = "limited-reader-token-03"
SCOPED = {
    "tokens": [
        TOKEN,
        {"token": LIMITED_ONLY, "accounts": ["limited"], "name": "team limited"},
        {"token": READER, "read_only": True},
        {"token": LIMITED_READER, "accounts": ["limited"], "read_only": True},
    ]
}
JOB_BODY = json.dumps(
    {"name": "nightly", "schedule_expression": "0 3 * * *", "details": {"runner": "dummyRunner"}}
)


def assert_forbidden(response: Any, *unnamed: str) -> None:
    assert response.status_code == 403, (response.status_code, response.body)
    assert response.json_body["Code"] == "ForbiddenError"
    for word in unnamed:  # neither the token nor the accounts it may use
        assert word not in response.json_body["Message"], word


def make_job(client: Any, account: str, token: str = TOKEN) -> str:
    response = client.http.post(
        f"/v1/minion/{account}/jobs/space-xy",
        body=JOB_BODY,
        headers={**with_token(token), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.body
    return f"/v1/minion/{account}/jobs/space-xy/{response.json_body['id']}"


def test_a_token_scoped_to_an_account_may_use_only_it(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, SCOPED)
    spinup_job, limited_job = make_job(client, "spinup"), make_job(client, "limited")
    # When the scoped token uses its own account / Then served, reads and writes
    assert client.http.get(
        "/v1/minion/limited/jobs", headers=with_token(LIMITED_ONLY)
    ).json_body == [limited_job.split("/jobs/")[1]]
    make_job(client, "limited", LIMITED_ONLY)
    assert client.http.patch(limited_job, headers=with_token(LIMITED_ONLY)).status_code == 202
    # When it uses another account, an unknown one, or the bcrypt form of it does / Then 403,
    # naming neither the token nor the accounts it may use
    for method, path in [
        ("GET", "/v1/minion/spinup/jobs"),
        ("GET", spinup_job),
        ("DELETE", spinup_job),
        ("PATCH", spinup_job),
        ("POST", "/v1/minion/spinup/jobs/space-xy"),
        ("DELETE", "/v1/minion/spinup/jobs/space-xy"),
        ("GET", spinup_job + "/runs"),
        ("GET", "/v1/minion/nosuch/jobs"),
    ]:
        for token in (LIMITED_ONLY, bcrypt_header(LIMITED_ONLY)):
            response = client.http.request(
                method,
                path,
                headers={**with_token(token), "Content-Type": "application/json"},
                body=JOB_BODY,
            )
            assert_forbidden(response, LIMITED_ONLY, "limited")
    # Then nothing in spinup changed: its one job is there, and no run was queued for it
    assert client.http.get(spinup_job, headers=with_token(TOKEN)).status_code == 200
    assert client.http.get("/v1/minion/spinup/jobs", headers=with_token(TOKEN)).json_body == [
        spinup_job.split("/jobs/")[1]
    ]
    assert client.http.get(spinup_job + "/runs", headers=with_token(TOKEN)).json_body["runs"] == []
    # And a token without scope keeps today's meaning: every account
    for account in ("spinup", "limited"):
        make_job(client, account, TOKEN)


def test_a_read_only_token_may_read_and_not_write(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, SCOPED)
    job = make_job(client, "spinup")
    before = client.http.get(job, headers=with_token(TOKEN)).json_body
    # When the read-only token reads / Then served, in every account
    for path in (
        "/v1/minion/spinup/jobs",
        "/v1/minion/limited/jobs",
        job,
        job + "/runs",
        "/v1/minion/schedule?expression=0%203%20*%20*%20*",
    ):
        assert client.http.get(path, headers=with_token(READER)).status_code == 200, path
    # When it writes / Then 403 and nothing changes
    for method, path in [
        ("POST", "/v1/minion/spinup/jobs/space-xy"),
        ("PUT", job),
        ("PATCH", job),
        ("DELETE", job),
        ("DELETE", "/v1/minion/spinup/jobs/space-xy"),
    ]:
        response = client.http.request(
            method,
            path,
            headers={**with_token(READER), "Content-Type": "application/json"},
            body=JOB_BODY,
        )
        assert_forbidden(response, READER)
        assert "read" in response.json_body["Message"]
    assert client.http.get(job, headers=with_token(TOKEN)).json_body == before
    assert client.http.get(job + "/runs", headers=with_token(TOKEN)).json_body["runs"] == []
    # And a read-only token scoped to limited may read limited only
    assert (
        client.http.get("/v1/minion/limited/jobs", headers=with_token(LIMITED_READER)).status_code
        == 200
    )
    assert_forbidden(
        client.http.get("/v1/minion/spinup/jobs", headers=with_token(LIMITED_READER)), "limited"
    )


def test_scoped_tokens_work_from_the_secret(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from chalice.test import Client

    import app as app_module
    from chalicelib import deps

    boto3.client("secretsmanager").create_secret(
        Name="minion/tokens", SecretString=json.dumps(SCOPED)
    )
    monkeypatch.setenv("MINION_TOKENS_SECRET_ID", "minion/tokens")
    parameters.clear_caches()
    deps.reset()
    app_module._api.cache_clear()
    try:
        with Client(app_module.app) as client:
            assert (
                client.http.get(
                    "/v1/minion/limited/jobs", headers=with_token(LIMITED_ONLY)
                ).status_code
                == 200
            )
            assert_forbidden(client.http.get(JOBS, headers=with_token(LIMITED_ONLY)))
            assert client.http.get(JOBS, headers=with_token(TOKEN)).status_code == 200
    finally:
        parameters.clear_caches()
        app_module._api.cache_clear()


def test_a_scoped_token_never_appears_in_a_log_line(
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    configure(monkeypatch, SCOPED)
    for token in (LIMITED_ONLY, READER, bcrypt_header(READER)):
        client.http.get(JOBS, headers=with_token(token))
        client.http.post(JOBS + "/g", headers=with_token(token), body=JOB_BODY)
    out, err = capfd.readouterr()
    logged = "\n".join(
        [out, err, caplog.text] + [json.dumps(r.__dict__, default=repr) for r in caplog.records]
    )
    for secret in (LIMITED_ONLY, READER):
        assert secret not in logged


# --- public routes ---------------------------------------------------------------------------


def test_public_routes_need_no_token(client: Any) -> None:
    for path in ("/v1/minion/ping", "/v1/minion/version", "/v1/minion/metrics"):
        assert client.http.get(path).status_code == 200, path


# --- the token is never logged ---------------------------------------------------------------


def test_the_token_never_appears_in_a_log_line(
    client: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given every logger at DEBUG, and requests with the token, the old one, its bcrypt form
    # and a wrong one that embeds it: served, refused, and failing inside (a logged 500)
    from chalicelib import deps

    caplog.set_level(logging.DEBUG)
    header = bcrypt_header(TOKEN)
    for token in (TOKEN, OLD_TOKEN, header, TOKEN + "-wrong"):
        client.http.get(JOBS, headers=with_token(token))

    def broken(**_: Any) -> Any:
        raise RuntimeError("the store broke")

    monkeypatch.setattr(deps.store().client, "query", broken)
    assert client.http.get(JOBS, headers=with_token(TOKEN)).status_code == 500

    # When everything logged is collected: records (message, arguments, extra fields,
    # traceback) and whatever reached stdout and stderr
    out, err = capfd.readouterr()
    logged = "\n".join(
        [out, err, caplog.text] + [json.dumps(r.__dict__, default=repr) for r in caplog.records]
    )
    # Then the 500 was logged (so the capture works), and no token nor bcrypt hash is in it
    assert "the store broke" in logged
    for secret in (TOKEN, OLD_TOKEN, header[7:]):
        assert secret not in logged


def test_the_api_document_lists_the_403_of_every_account_route() -> None:
    from pathlib import Path

    document = json.loads((Path(__file__).parents[1] / "chalicelib" / "openapi.json").read_text())
    forbidden = document["components"]["responses"]["Forbidden"]
    assert forbidden["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            documented = "403" in operation["responses"]
            assert documented == ("{account}" in path), (method, path)
