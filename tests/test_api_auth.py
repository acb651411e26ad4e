"""X-Auth-Token: plain tokens (several at once, for rotation), the original clients' bcrypt form,
and every bad token a 401 JSON error that never reaches a log line."""
from __future__ import annotations

import json
import logging
from typing import Any, Iterator

import bcrypt
import pytest

from conftest import OLD_TOKEN, TOKEN

JOBS = "/v1/minion/spinup/jobs"


def with_token(token: Any) -> dict[str, Any]:
    return {"X-Auth-Token": token}


def assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401, (response.status_code, response.body)
    assert response.json_body == {"Code": "UnauthorizedError",
                                  "Message": "missing or invalid X-Auth-Token"}


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
    for method, path in [("GET", "/v1/minion/nosuch/jobs"), ("POST", JOBS + "/space-xy"),
                         ("PATCH", JOBS + "/space-xy/6bcfa79f-615e-470d-97c1-687f3357497d"),
                         ("PUT", JOBS)]:
        response = client.http.request(method, path, headers=with_token("wrong"), body=b"{")
        # Then the answer is 401 whatever else is wrong
        assert_unauthorized(response)
    assert client.http.get(JOBS, headers=with_token(TOKEN)).json_body == []


def test_tokens_come_from_the_secret_when_one_is_configured(
        aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the tokens held in Secrets Manager (new and previous), not in the environment
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from chalice.test import Client

    import app as app_module
    from chalicelib import deps

    boto3.client("secretsmanager").create_secret(
        Name="minion/tokens", SecretString=json.dumps({"tokens": ["from-secret", "previous"]}))
    monkeypatch.setenv("MINION_TOKENS_SECRET_ID", "minion/tokens")
    monkeypatch.setenv("MINION_TOKENS", "")
    parameters.clear_caches()
    deps.reset()
    app_module._api.cache_clear()
    try:
        with Client(app_module.app) as client:
            # When requests carry those or the environment's old token
            # Then both secret tokens are accepted, and nothing else
            assert client.http.get(JOBS, headers=with_token("from-secret")).status_code == 200
            assert client.http.get(JOBS, headers=with_token("previous")).status_code == 200
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
        client: Any, checkpw_calls: list[tuple[bytes, bytes]]) -> None:
    # Given a bcrypt header of the token
    header = bcrypt_header(TOKEN)
    # When it is sent twice
    first = client.http.get(JOBS, headers=with_token(header))
    second = client.http.get(JOBS, headers=with_token(header))
    # Then both are served, and bcrypt verified it once
    assert (first.status_code, second.status_code) == (200, 200)
    assert len(checkpw_calls) == 1


@pytest.mark.parametrize("cost", [31, 20, 13])
def test_a_bcrypt_header_with_a_huge_cost_is_refused_without_hashing(
        client: Any, monkeypatch: pytest.MonkeyPatch, cost: int) -> None:
    # Given bcrypt made to fail the test if called (cost 31 would take days)
    def must_not_run(*_: Any) -> bool:
        raise AssertionError("bcrypt.checkpw called for an attacker-chosen cost")

    monkeypatch.setattr(bcrypt, "checkpw", must_not_run)
    header = f"$2b${cost:02d}$" + "abcdefghijklmnopqrstuv" + "A" * 31
    assert len(header) == 60
    # When the header is sent / Then 401 at once
    assert_unauthorized(client.http.get(JOBS, headers=with_token(header)))


# --- public routes ---------------------------------------------------------------------------

def test_public_routes_need_no_token(client: Any) -> None:
    for path in ("/v1/minion/ping", "/v1/minion/version", "/v1/minion/metrics"):
        assert client.http.get(path).status_code == 200, path


# --- the token is never logged ---------------------------------------------------------------

def test_the_token_never_appears_in_a_log_line(client: Any, caplog: pytest.LogCaptureFixture,
                                               capfd: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
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
    logged = "\n".join([out, err, caplog.text] + [json.dumps(r.__dict__, default=repr)
                                                   for r in caplog.records])
    # Then the 500 was logged (so the capture works), and no token nor bcrypt hash is in it
    assert "the store broke" in logged
    for secret in (TOKEN, OLD_TOKEN, header[7:]):
        assert secret not in logged
