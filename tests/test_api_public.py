"""The public routes (ping, version, metrics) and CORS: no token needed."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from chalice.config import Config
from chalice.local import LocalGateway

from chalicelib import deps
from chalicelib.runs import Run
from chalicelib.settings import get_settings
from conftest import auth

BASE = "/v1/minion"
DUMMY_JOB = {"name": "dummy-spin1234567", "details": {"runner": "dummyRunner"},
             "schedule_expression": "* * * ? *"}
SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+)$")


def create(client: Any, account: str = "spinup", enabled: bool = False) -> dict[str, Any]:
    response = client.http.post(f"{BASE}/{account}/jobs/space-xy", headers=auth(),
                                body=json.dumps({**DUMMY_JOB, "enabled": enabled}))
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


def test_version_reports_the_build_without_a_token(client: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a deployment told its version, git hash and build time
    monkeypatch.setenv("MINION_VERSION", "1.4.2")
    monkeypatch.setenv("MINION_GITHASH", "0123abc")
    monkeypatch.setenv("MINION_BUILDSTAMP", "2026-01-30T10:17:00Z")
    get_settings.cache_clear()
    # When asked / Then exactly those three keys, with those values
    response = client.http.get(f"{BASE}/version")
    assert response.status_code == 200
    assert response.json_body == {"version": "1.4.2", "githash": "0123abc",
                                  "buildstamp": "2026-01-30T10:17:00Z"}


def test_metrics_count_jobs_by_account_and_state_and_runs_by_status(client: Any) -> None:
    # Given two enabled and one disabled job in spinup, one disabled job in limited
    create(client, enabled=True)
    create(client, enabled=True)
    disabled = create(client)
    create(client, account="limited")
    # and finished runs: two succeeded, one failed, one missed; and a tick that finished
    store = deps.store()
    for index, status in enumerate(("succeeded", "succeeded", "failed", "missed")):
        store.put_run(Run(run_id=f"20260130T10{index:02d}00Z-s", job_id=disabled["id"],
                          account="spinup", group="space-xy", trigger="schedule",
                          scheduled_for="2026-01-30T10:00:00Z", status=status))
    tick = datetime(2026, 1, 30, 10, 17, tzinfo=timezone.utc)
    store.record_tick(tick)

    # When the metrics are scraped, without a token
    response = client.http.get(f"{BASE}/metrics")

    # Then Prometheus text with those counts
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    found = samples(response.body.decode())
    assert found == {
        'minion_jobs{account="spinup",enabled="true"}': 2,
        'minion_jobs{account="spinup",enabled="false"}': 1,
        'minion_jobs{account="limited",enabled="true"}': 0,
        'minion_jobs{account="limited",enabled="false"}': 1,
        'minion_runs_total{status="succeeded"}': 2,
        'minion_runs_total{status="failed"}': 1,
        'minion_runs_total{status="missed"}': 1,
        'minion_runs_total{status="skipped"}': 0,
        "minion_last_tick_timestamp_seconds": tick.timestamp(),
    }

    # When a job is deleted / Then the next scrape counts it out
    client.http.delete(f"{BASE}/spinup/jobs/space-xy/{disabled['id']}", headers=auth())
    found = samples(client.http.get(f"{BASE}/metrics").body.decode())
    assert found['minion_jobs{account="spinup",enabled="false"}'] == 0


def test_metrics_of_an_empty_service_are_zero(client: Any) -> None:
    found = samples(client.http.get(f"{BASE}/metrics").body.decode())
    assert set(found.values()) == {0}
    assert "minion_last_tick_timestamp_seconds" in found


def test_a_scrape_never_scans_the_table(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given jobs, and a table that fails the test if scanned
    create(client, enabled=True)

    def no_scan(**_: Any) -> Any:
        raise AssertionError("a metrics scrape scanned the table")

    monkeypatch.setattr(deps.store().client, "scan", no_scan)
    # When scraped / Then answered from the counters
    response = client.http.get(f"{BASE}/metrics")
    assert response.status_code == 200
    assert samples(response.body.decode())['minion_jobs{account="spinup",enabled="true"}'] == 1


# --- CORS ------------------------------------------------------------------------------------

@pytest.fixture
def gateway(client: Any) -> LocalGateway:
    """Chalice's local API Gateway over the app: it answers preflights from the routes' CORS
    configuration as API Gateway does (the test client cannot read a preflight's empty body)."""
    import app as app_module

    return LocalGateway(app_module.app, Config())


@pytest.mark.parametrize("path, method", [
    (f"{BASE}/spinup/jobs", "GET"), (f"{BASE}/spinup/jobs/space-xy", "POST"),
    (f"{BASE}/spinup/jobs/space-xy/6bcfa79f-615e-470d-97c1-687f3357497d", "PUT"),
    (f"{BASE}/spinup/jobs/space-xy/6bcfa79f-615e-470d-97c1-687f3357497d/runs", "GET"),
    (f"{BASE}/ping", "GET"),
])
def test_a_preflight_is_answered_without_a_token_with_the_cors_headers(
        gateway: LocalGateway, path: str, method: str) -> None:
    # When a browser asks, without a token, whether it may send its headers
    response = gateway.handle_request(method="OPTIONS", path=path, headers={
        "Origin": "https://console.example.edu", "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "x-auth-token,content-type,if-match"}, body=b"")
    # Then 200 with the CORS headers, allowing the token, JSON bodies and If-Match
    assert response["statusCode"] == 200
    headers = response["headers"]
    assert headers["Access-Control-Allow-Origin"] == "*"
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"x-auth-token", "content-type", "if-match"} <= allowed
    assert method in headers["Access-Control-Allow-Methods"].split(",")


def test_answers_let_a_browser_read_the_etag_and_location(client: Any) -> None:
    # When a job is created / Then its answer allows any origin and exposes ETag and Location
    response = client.http.post(f"{BASE}/spinup/jobs/space-xy", headers=auth(),
                                body=json.dumps(DUMMY_JOB))
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {h.strip().lower() for h in
               response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"etag", "location"} <= exposed
