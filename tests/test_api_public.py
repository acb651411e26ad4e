"""The public routes (ping, version, metrics) and CORS: no token needed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from chalice.config import Config
from chalice.local import LocalGateway
from prometheus_client.parser import text_string_to_metric_families

from chalicelib import deps
from chalicelib.runs import Run, Status
from chalicelib.settings import get_settings
from conftest import TOKEN, auth

BASE = "/v1/minion"
DUMMY_JOB = {
    "name": "dummy-spin1234567",
    "details": {"runner": "dummyRunner"},
    "schedule_expression": "* * * ? *",
}
SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+)$")


def create(client: Any, account: str = "spinup", enabled: bool = False) -> dict[str, Any]:
    response = client.http.post(
        f"{BASE}/{account}/jobs/space-xy",
        headers=auth(),
        body=json.dumps({**DUMMY_JOB, "enabled": enabled}),
    )
    assert response.status_code == 200, response.body
    return response.json_body


def samples(text: str) -> dict[str, float]:
    """The samples of a Prometheus text exposition, `name{labels}` -> value; every other line
    must be a HELP or TYPE comment."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        found[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return found


def test_ping_answers_pong_as_text_without_a_token(client: Any) -> None:
    response = client.http.get(f"{BASE}/ping")
    assert response.status_code == 200
    assert response.body == b"pong"
    assert response.headers["Content-Type"].startswith("text/plain")


def test_version_reports_the_build_without_a_token(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployment told its version, git hash and build time
    monkeypatch.setenv("MINION_VERSION", "1.4.2")
    monkeypatch.setenv("MINION_GITHASH", "0123abc")
    monkeypatch.setenv("MINION_BUILDSTAMP", "2026-01-30T10:17:00Z")
    get_settings.cache_clear()
    # When asked / Then exactly those three keys, with those values
    response = client.http.get(f"{BASE}/version")
    assert response.status_code == 200
    assert response.json_body == {
        "version": "1.4.2",
        "githash": "0123abc",
        "buildstamp": "2026-01-30T10:17:00Z",
    }


def scrape(client: Any, token: str | None = None) -> dict[str, float]:
    """The samples of one GET /metrics (200, Prometheus text that its own parser accepts)."""
    response = client.http.get(
        f"{BASE}/metrics", headers={} if token is None else {"X-Auth-Token": token}
    )
    assert response.status_code == 200, response.body
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.body.decode()
    # The reference parser of the exposition format (prometheus_client's) reads all of it
    families = list(text_string_to_metric_families(text))
    assert {f.name for f in families} >= {
        "minion_jobs",
        "minion_runs",
        "minion_last_tick_timestamp_seconds",
    }
    return samples(text)


def with_tokens(monkeypatch: pytest.MonkeyPatch, tokens: Any) -> None:
    """Configure exactly these tokens (a JSON document when not a string)."""
    monkeypatch.setenv("MINION_TOKENS", tokens if isinstance(tokens, str) else json.dumps(tokens))
    deps.reset()


def test_metrics_count_jobs_by_account_and_state_and_runs_by_status(client: Any) -> None:
    # Given two enabled and one disabled job in spinup, one disabled job in limited
    create(client, enabled=True)
    create(client, enabled=True)
    disabled = create(client)
    create(client, account="limited")
    # and finished runs: two succeeded, one failed, one missed; and a tick that finished
    store = deps.store()
    statuses: tuple[Status, ...] = ("succeeded", "succeeded", "failed", "missed")
    for index, status in enumerate(statuses):
        store.put_run(
            Run(
                run_id=f"20260130T10{index:02d}00Z-s",
                job_id=disabled["id"],
                account="spinup",
                group="space-xy",
                trigger="schedule",
                scheduled_for="2026-01-30T10:00:00Z",
                status=status,
            )
        )
    tick = datetime(2026, 1, 30, 10, 17, tzinfo=UTC)
    store.record_tick(tick)
    runs_and_tick = {
        'minion_runs_total{status="succeeded"}': 2,
        'minion_runs_total{status="failed"}': 1,
        'minion_runs_total{status="missed"}': 1,
        'minion_runs_total{status="skipped"}': 0,
        "minion_metrics_accounts_truncated": 0,
        "minion_last_tick_timestamp_seconds": tick.timestamp(),
    }

    # When the metrics are scraped with a token / Then jobs by account and state
    assert scrape(client, TOKEN) == {
        'minion_jobs{account="spinup",enabled="true"}': 2,
        'minion_jobs{account="spinup",enabled="false"}': 1,
        'minion_jobs{account="limited",enabled="true"}': 0,
        'minion_jobs{account="limited",enabled="false"}': 1,
        **runs_and_tick,
    }
    # When scraped without a token / Then the same totals, and no account named
    assert scrape(client) == {
        'minion_jobs{enabled="true"}': 2,
        'minion_jobs{enabled="false"}': 2,
        **runs_and_tick,
    }

    # When a job is deleted / Then the next scrape counts it out
    client.http.delete(f"{BASE}/spinup/jobs/space-xy/{disabled['id']}", headers=auth())
    assert scrape(client, TOKEN)['minion_jobs{account="spinup",enabled="false"}'] == 0
    assert scrape(client)['minion_jobs{enabled="false"}'] == 1


def test_an_anonymous_scrape_names_no_account(client: Any) -> None:
    # Given jobs in both accounts
    create(client, enabled=True)
    create(client, account="limited")
    # When scraped without a token
    text = client.http.get(f"{BASE}/metrics").body.decode()
    # Then no label, comment or value names a tenant
    assert "account=" not in text
    assert "spinup" not in text and "limited" not in text
    assert samples(text)['minion_jobs{enabled="true"}'] == 1


def test_a_scrape_with_a_wrong_token_is_a_401(client: Any) -> None:
    response = client.http.get(f"{BASE}/metrics", headers={"X-Auth-Token": "wrong-token-000000"})
    assert response.status_code == 401
    assert response.json_body["Code"] == "UnauthorizedError"


def test_a_scoped_token_sees_only_its_accounts(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given jobs in both accounts, and a token that may use only `limited`
    create(client, enabled=True)
    create(client, account="limited")
    scoped = "limited-only-token-0123"
    with_tokens(monkeypatch, [TOKEN, {"token": scoped, "accounts": ["limited"]}])
    # When it scrapes / Then only its account's jobs are listed
    found = scrape(client, scoped)
    assert {k for k in found if k.startswith("minion_jobs")} == {
        'minion_jobs{account="limited",enabled="true"}',
        'minion_jobs{account="limited",enabled="false"}',
    }
    # And an unscoped token sees both
    assert 'minion_jobs{account="spinup",enabled="true"}' in scrape(client, TOKEN)


def test_an_account_whose_jobs_are_all_gone_is_dropped(client: Any) -> None:
    # Given an account with two jobs, then both deleted (one alone, one with its group)
    first = create(client, account="limited")
    client.http.post(f"{BASE}/limited/jobs/other", headers=auth(), body=json.dumps(DUMMY_JOB))
    create(client, enabled=True)
    assert (
        client.http.delete(
            f"{BASE}/limited/jobs/space-xy/{first['id']}", headers=auth()
        ).status_code
        == 202
    )
    assert 'minion_jobs{account="limited",enabled="false"}' in scrape(client, TOKEN)
    assert client.http.delete(f"{BASE}/limited/jobs/other", headers=auth()).status_code == 202
    # When scraped with a token
    found = scrape(client, TOKEN)
    # Then the account is no longer listed, and its counter item is gone from the table
    assert not [k for k in found if "limited" in k]
    assert 'minion_jobs{account="spinup",enabled="true"}' in found
    assert "JOBS#limited" not in deps.store().counters()
    # And a new job brings it back from zero
    create(client, account="limited")
    assert scrape(client, TOKEN)['minion_jobs{account="limited",enabled="false"}'] == 1


def test_a_scrape_reads_a_bounded_number_of_counters(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given seven accounts with a job each, and at most three listed per scrape
    from chalicelib import api as api_module

    names = [f"team-{i}" for i in range(7)]
    monkeypatch.setenv(
        "MINION_ACCOUNTS",
        json.dumps({"accounts": {n: {"runners": ["dummyRunner"]} for n in names}}),
    )
    deps.reset()
    import app as app_module

    app_module._api.cache_clear()
    for name in names:
        create(client, account=name, enabled=True)
    monkeypatch.setattr(api_module, "MAX_METRICS_ACCOUNTS", 3)
    read: list[int] = []
    real_query = deps.store().client.query

    def counting(**request: Any) -> Any:
        answer = real_query(**request)
        read.append(len(answer.get("Items", [])))
        return answer

    monkeypatch.setattr(deps.store().client, "query", counting)
    # When scraped with a token, and anonymously
    found = scrape(client, TOKEN)
    anonymous = scrape(client)
    # Then three accounts are listed and the truncation is said
    assert len([k for k in found if k.startswith("minion_jobs")]) == 3 * 2
    assert (
        found["minion_metrics_accounts_truncated"]
        == anonymous["minion_metrics_accounts_truncated"]
        == 1
    )
    # And each scrape read at most 3 + 1 account counters (plus the run and tick items)
    assert sum(read) <= 2 * (3 + 1 + 2), read


def test_metrics_of_an_empty_service_are_zero(client: Any) -> None:
    found = scrape(client)
    assert set(found.values()) == {0}
    assert "minion_last_tick_timestamp_seconds" in found


def test_a_scrape_never_scans_the_table(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given jobs, and a table that fails the test if scanned
    create(client, enabled=True)

    def no_scan(**_: Any) -> Any:
        raise AssertionError("a metrics scrape scanned the table")

    monkeypatch.setattr(deps.store().client, "scan", no_scan)
    # When scraped / Then answered from the counters
    assert scrape(client, TOKEN)['minion_jobs{account="spinup",enabled="true"}'] == 1


# --- CORS ------------------------------------------------------------------------------------


@pytest.fixture
def gateway(client: Any) -> LocalGateway:
    """Chalice's local API Gateway over the app: it answers preflights from the routes' CORS
    configuration as API Gateway does (the test client cannot read a preflight's empty body)."""
    import app as app_module

    return LocalGateway(app_module.app, Config())


@pytest.mark.parametrize(
    "path, method",
    [
        (f"{BASE}/spinup/jobs", "GET"),
        (f"{BASE}/spinup/jobs/space-xy", "POST"),
        (f"{BASE}/spinup/jobs/space-xy/6bcfa79f-615e-470d-97c1-687f3357497d", "PUT"),
        (f"{BASE}/spinup/jobs/space-xy/6bcfa79f-615e-470d-97c1-687f3357497d/runs", "GET"),
        (f"{BASE}/ping", "GET"),
    ],
)
def test_a_preflight_is_answered_without_a_token_with_the_cors_headers(
    gateway: LocalGateway, path: str, method: str
) -> None:
    # When a browser asks, without a token, whether it may send its headers
    response = gateway.handle_request(
        method="OPTIONS",
        path=path,
        headers={
            "Origin": "https://console.example.edu",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "x-auth-token,content-type,if-match",
        },
        body=b"",
    )
    # Then 200 with the CORS headers, allowing the token, JSON bodies and If-Match
    assert response["statusCode"] == 200
    headers = response["headers"]
    assert headers["Access-Control-Allow-Origin"] == "*"
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"x-auth-token", "content-type", "if-match"} <= allowed
    assert method in headers["Access-Control-Allow-Methods"].split(",")


def test_answers_let_a_browser_read_the_etag_and_location(client: Any) -> None:
    # When a job is created / Then its answer allows any origin and exposes ETag and Location
    response = client.http.post(
        f"{BASE}/spinup/jobs/space-xy", headers=auth(), body=json.dumps(DUMMY_JOB)
    )
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {
        h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert {"etag", "location"} <= exposed
