"""End to end inside one process: the HTTP API creates a job, the real `tick` Lambda handler
fans the minute out in parts, the real `tick_part` handler queues its occurrences, the real
`worker` Lambda handler runs them, and the API shows the history. Everything goes through Chalice's test client and real event payloads, over moto.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from chalicelib.jobs import iso
from conftest import auth, drain, scheduled_event, sqs_event

GROUP = "/v1/minion/spinup/jobs/flow"


def create(client: Any, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "every minute",
        "schedule_expression": "* * * * *",
        "enabled": True,
        "details": {"runner": "dummyRunner"},
        **fields,
    }
    response = client.http.post(GROUP, headers=auth(), body=json.dumps(body))
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def get(client: Any, path: str) -> Any:
    response = client.http.get(path, headers=auth())
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def tick(client: Any, aws: dict[str, Any], minute: str) -> dict[str, Any]:
    """The scheduled tick for `minute`, then every part it sent, as Lambda's SQS event source
    would hand them to the part-tick function; the parts' answers."""
    fanned = client.lambda_.invoke("tick", scheduled_event(minute)).payload
    parts = drain(aws["sqs"], aws["tick_parts_url"])
    assert fanned == {
        "minute": minute if minute.endswith("Z") else minute + "Z",
        "parts": len(parts),
    }
    answers = [client.lambda_.invoke("tick_part", sqs_event([part])).payload for part in parts]
    assert all(a == {"batchItemFailures": []} for a in answers)
    return {"parts": len(parts)}


def work(client: Any, aws: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """Receive what the runs queue holds and invoke the worker handler with it."""
    messages = drain(aws["sqs"], aws["queue_url"])
    return messages, client.lambda_.invoke("worker", sqs_event(messages)).payload


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_a_per_minute_job_runs_once_per_tick_and_its_history_shows_it(
    client: Any, aws: dict[str, Any]
) -> None:
    # Given a per-minute job created through the API
    job = create(client)
    first = parse(job["next"])
    minutes = [first + timedelta(minutes=k) for k in range(3)]

    # When the tick handler fires at three consecutive minutes, the worker handler running
    # what each one queued
    for minute in minutes:
        assert tick(client, aws, iso(minute) or "")["parts"] >= 1
        messages, answer = work(client, aws)
        assert [json.loads(m["Body"])["scheduled_for"] for m in messages] == [iso(minute)]
        assert answer == {"batchItemFailures": []}

    # Then the job's history holds exactly three succeeded runs, newest first
    path = f"{GROUP}/{job['id']}"
    runs = get(client, path + "/runs")["runs"]
    assert [(r["scheduled_for"], r["status"], r["trigger"], r["attempts"]) for r in runs] == [
        (iso(m), "succeeded", "schedule", 1) for m in reversed(minutes)
    ]
    assert all(r["output"] == "Hello, spinup!" and r["finished_at"] for r in runs)
    # And the job shows the newest as its last run, and the minute after as its next
    stored = get(client, path)
    assert (stored["last_run"]["run_id"], stored["last_run"]["status"]) == (
        runs[0]["run_id"],
        "succeeded",
    )
    assert stored["next"] == iso(minutes[-1] + timedelta(minutes=1))
    # And /metrics counts the three runs and the last tick
    metrics = client.http.get("/v1/minion/metrics").body.decode().splitlines()
    assert 'minion_runs_total{status="succeeded"} 3' in metrics
    assert f"minion_last_tick_timestamp_seconds {int(minutes[-1].timestamp())}" in metrics


def test_the_same_tick_delivered_twice_adds_no_run(client: Any, aws: dict[str, Any]) -> None:
    # Given a per-minute job, and the tick of its first minute delivered and worked once
    job = create(client)
    tick(client, aws, job["next"])
    work(client, aws)

    # When EventBridge delivers the same tick again (and its parts run again)
    tick(client, aws, job["next"])

    # Then nothing is queued, and the history still holds one run
    assert drain(aws["sqs"], aws["queue_url"]) == []
    assert len(get(client, f"{GROUP}/{job['id']}/runs")["runs"]) == 1


def test_a_run_now_is_queued_by_patch_and_run_by_the_worker_handler(
    client: Any, aws: dict[str, Any]
) -> None:
    # Given a disabled job (a run-now ignores enabled)
    job = create(client, enabled=False)
    path = f"{GROUP}/{job['id']}"

    # When it is run now through PATCH
    response = client.http.patch(path, headers=auth())
    assert response.status_code == 202, response.body
    queued = json.loads(response.body)
    location = response.headers["Location"]
    assert (queued["status"], queued["trigger"]) == ("queued", "manual")
    assert get(client, location)["status"] == "queued"

    # And the worker handler gets its message
    messages, answer = work(client, aws)

    # Then the queued run is claimed and finished, and the job and /metrics show it
    assert [json.loads(m["Body"])["run_id"] for m in messages] == [queued["run_id"]]
    assert answer == {"batchItemFailures": []}
    run = get(client, location)
    assert (run["status"], run["attempts"], run["queued_at"]) == (
        "succeeded",
        1,
        queued["queued_at"],
    )
    assert get(client, path)["last_run"]["run_id"] == queued["run_id"]
    metrics = client.http.get("/v1/minion/metrics").body.decode().splitlines()
    assert 'minion_runs_total{status="succeeded"} 1' in metrics
