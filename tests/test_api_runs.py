"""Run-now (PATCH) and the run history routes, over Chalice's test client, moto's table and queue."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib import deps
from chalicelib.jobs import Job, new_job_id
from chalicelib.runs import Run, scheduled_run_id
from conftest import TABLE, auth, drain

BASE = "/v1/minion"
DUMMY_JOB = {
    "name": "dummy-spin1234567",
    "details": {"runner": "dummyRunner"},
    "schedule_expression": "* * * ? *",
    "enabled": True,
}


def create(client: Any, body: dict[str, Any] = DUMMY_JOB) -> dict[str, Any]:
    response = client.http.post(
        f"{BASE}/spinup/jobs/space-xy", headers=auth(), body=json.dumps(body)
    )
    assert response.status_code == 200, response.body
    return response.json_body


def job_path(job_id: str, account: str = "spinup") -> str:
    return f"{BASE}/{account}/jobs/space-xy/{job_id}"


def run_now(client: Any, job_id: str, account: str = "spinup") -> Any:
    return client.http.patch(job_path(job_id, account), headers=auth())


def run_items(aws: dict[str, Any]) -> list[dict[str, Any]]:
    items = aws["dynamodb"].scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return [i for i in items if i.get("type", {}).get("S") == "run"]


def seed_runs(job_id: str, count: int, start: datetime) -> list[str]:
    """`count` finished scheduled runs of a job, one a minute from `start`; their ids."""
    store = deps.store()
    ids = []
    for minute in range(count):
        occurrence = start + timedelta(minutes=minute)
        run = Run(
            run_id=scheduled_run_id(occurrence),
            job_id=job_id,
            account="spinup",
            group="space-xy",
            trigger="schedule",
            scheduled_for=occurrence.strftime("%Y-%m-%dT%H:%M:%SZ"),
            status="succeeded",
            attempts=1,
            output="Hello, spinup!",
        )
        assert store.put_run(run)
        ids.append(run.run_id)
    return ids


# --- run now ---------------------------------------------------------------------------------


def test_run_now_queues_one_run_at_once(client: Any, aws: dict[str, Any]) -> None:
    # Given a job
    job = create(client)
    # When it is run now
    response = run_now(client, job["id"])
    # Then 202 with a queued manual run of that job, and where to follow it
    assert response.status_code == 202, response.body
    run = response.json_body
    assert (run["job_id"], run["status"], run["trigger"]) == (job["id"], "queued", "manual")
    assert (run["account"], run["group"]) == ("spinup", "space-xy")
    assert response.headers["Location"] == f"{job_path(job['id'])}/runs/{run['run_id']}"
    # and the run record exists, queued
    record = client.http.get(response.headers["Location"], headers=auth())
    assert record.status_code == 200
    assert record.json_body["status"] == "queued"
    assert record.json_body["run_id"] == run["run_id"]
    # and exactly one message for that run is on the queue
    messages = drain(aws["sqs"], aws["queue_url"])
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert (body["run_id"], body["job_id"], body["account"], body["group"], body["trigger"]) == (
        run["run_id"],
        job["id"],
        "spinup",
        "space-xy",
        "manual",
    )
    assert body["attempt"] == 1


def test_run_now_works_on_a_disabled_job(client: Any, aws: dict[str, Any]) -> None:
    # Given a disabled job / When run now / Then queued all the same
    job = create(client, {**DUMMY_JOB, "enabled": False})
    response = run_now(client, job["id"])
    assert response.status_code == 202, response.body
    assert [json.loads(m["Body"])["job_id"] for m in drain(aws["sqs"], aws["queue_url"])] == [
        job["id"]
    ]


def test_each_run_now_is_a_run_of_its_own(client: Any, aws: dict[str, Any]) -> None:
    job = create(client)
    first, second = run_now(client, job["id"]), run_now(client, job["id"])
    assert first.json_body["run_id"] != second.json_body["run_id"]
    queued = {json.loads(m["Body"])["run_id"] for m in drain(aws["sqs"], aws["queue_url"])}
    assert queued == {first.json_body["run_id"], second.json_body["run_id"]}


def test_run_now_of_an_unknown_job_is_not_found_and_queues_nothing(
    client: Any, aws: dict[str, Any]
) -> None:
    create(client)
    for job_id in (new_job_id(), "not-a-uuid"):
        response = run_now(client, job_id)
        assert response.status_code == 404, response.body
        assert response.json_body["Code"] == "NotFoundError"
    assert drain(aws["sqs"], aws["queue_url"]) == []
    assert run_items(aws) == []


def test_run_now_of_a_runner_the_account_may_no_longer_use_is_refused(
    client: Any, aws: dict[str, Any]
) -> None:
    # Given a job stored in `limited` with instanceRunner (stored before the allow-list changed)
    job = Job(
        account="limited",
        group="space-xy",
        id=new_job_id(),
        name="old",
        schedule_expression="0 9 * * *",
        details={
            "runner": "instanceRunner",
            "instance_id": "i-0123456789abcdef0",
            "instance_action": "start",
        },
        modified_at=datetime.now(UTC),
    )
    deps.store().create_job(job)
    # When it is run now / Then 400 naming the runner, and nothing is queued or recorded
    response = run_now(client, job.id, account="limited")
    assert response.status_code == 400, response.body
    assert response.json_body["Message"].startswith("details.runner: ")
    assert drain(aws["sqs"], aws["queue_url"]) == []
    assert run_items(aws) == []


def test_run_now_when_the_queue_is_unavailable_is_503_and_no_run_stays_queued(
    client: Any, aws: dict[str, Any]
) -> None:
    # Given a job, and the runs queue gone
    job = create(client)
    aws["sqs"].delete_queue(QueueUrl=aws["queue_url"])
    # When it is run now
    response = run_now(client, job["id"])
    # Then 503 with a request id and no AWS detail, and the run is recorded as failed
    assert response.status_code == 503, response.body
    assert "request id" in response.json_body["Message"]
    assert "NonExistentQueue" not in response.json_body["Message"]
    runs = client.http.get(f"{job_path(job['id'])}/runs", headers=auth()).json_body["runs"]
    assert [r["status"] for r in runs] == ["failed"]


# --- run history -----------------------------------------------------------------------------


def test_runs_are_listed_newest_first(client: Any) -> None:
    # Given five runs of a job and runs of another job
    job, other = create(client), create(client)
    start = datetime(2026, 1, 30, 10, 0, tzinfo=UTC)
    ids = seed_runs(job["id"], 5, start)
    seed_runs(other["id"], 3, start)
    # When listed / Then exactly that job's runs, newest first, no more pages
    response = client.http.get(f"{job_path(job['id'])}/runs", headers=auth())
    assert response.status_code == 200, response.body
    assert [r["run_id"] for r in response.json_body["runs"]] == ids[::-1]
    assert response.json_body["next_token"] is None
    first = response.json_body["runs"][0]
    assert (first["status"], first["trigger"], first["output"]) == (
        "succeeded",
        "schedule",
        "Hello, spinup!",
    )


def test_runs_are_paged_with_limit_and_next_token(client: Any) -> None:
    # Given seven runs of a job
    job = create(client)
    ids = seed_runs(job["id"], 7, datetime(2026, 1, 30, 10, 0, tzinfo=UTC))
    # When read in pages of three, following next_token
    seen: list[str] = []
    query = "limit=3"
    for _ in range(10):
        page = client.http.get(f"{job_path(job['id'])}/runs?{query}", headers=auth())
        assert page.status_code == 200, page.body
        runs = [r["run_id"] for r in page.json_body["runs"]]
        assert len(runs) <= 3
        seen.extend(runs)
        token = page.json_body["next_token"]
        if token is None:
            break
        query = f"limit=3&next_token={token}"
    # Then every run is seen once, newest first
    assert seen == ids[::-1]


def test_a_run_record_is_found_by_its_id(client: Any) -> None:
    job = create(client)
    ids = seed_runs(job["id"], 2, datetime(2026, 1, 30, 10, 0, tzinfo=UTC))
    response = client.http.get(f"{job_path(job['id'])}/runs/{ids[0]}", headers=auth())
    assert response.status_code == 200, response.body
    assert response.json_body["run_id"] == ids[0]
    assert response.json_body["job_id"] == job["id"]
    assert response.json_body["scheduled_for"] == "2026-01-30T10:00:00Z"


def test_an_unknown_run_is_not_found(client: Any) -> None:
    # Given a job with a run, and another job with a run
    job, other = create(client), create(client)
    start = datetime(2026, 1, 30, 10, 0, tzinfo=UTC)
    seed_runs(job["id"], 1, start)
    others = seed_runs(other["id"], 1, start + timedelta(hours=1))
    # When a run id is asked for that this job does not have / Then 404
    for run_id in ("20990101T000000Z-s", others[0], "not-a-run-id", "..", "x" * 300):
        response = client.http.get(f"{job_path(job['id'])}/runs/{run_id}", headers=auth())
        assert response.status_code == 404, (run_id, response.body)
        assert response.json_body["Code"] == "NotFoundError"


def test_runs_of_an_unknown_job_are_not_found(client: Any) -> None:
    response = client.http.get(f"{job_path(new_job_id())}/runs", headers=auth())
    assert response.status_code == 404


def test_bad_run_list_parameters_are_refused(client: Any) -> None:
    job = create(client)
    for query in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "limit=",
        "limit=%C2%B2",
        "limit=\u00b2",
        "limit=99999999999999999999999",
        "next_token=nope",
        "next_token=20260130T100000Z-x",
        "colour=blue",
    ]:
        response = client.http.get(f"{job_path(job['id'])}/runs?{query}", headers=auth())
        assert response.status_code == 400, (query, response.body)
        assert set(response.json_body) == {"Code", "Message"}


# --- runs outlive their job; run ids order (issue 17) ------------------------------------------


def test_a_deleted_jobs_runs_stay_readable_under_its_own_account_and_group_only(
    client: Any,
) -> None:
    # Given a job with three runs, then deleted
    job = create(client)
    ids = seed_runs(job["id"], 3, datetime(2026, 1, 30, 10, 0, tzinfo=UTC))
    assert client.http.delete(job_path(job["id"]), headers=auth()).status_code == 202
    assert client.http.get(job_path(job["id"]), headers=auth()).status_code == 404
    # When its runs are listed and read / Then they are there, newest first, and pageable
    listed = client.http.get(f"{job_path(job['id'])}/runs", headers=auth())
    assert listed.status_code == 200, listed.body
    assert [r["run_id"] for r in listed.json_body["runs"]] == ids[::-1]
    page = client.http.get(f"{job_path(job['id'])}/runs?limit=2", headers=auth()).json_body
    rest = client.http.get(
        f"{job_path(job['id'])}/runs?limit=2&next_token={page['next_token']}", headers=auth()
    ).json_body
    assert [r["run_id"] for r in page["runs"] + rest["runs"]] == ids[::-1]
    one = client.http.get(f"{job_path(job['id'])}/runs/{ids[0]}", headers=auth())
    assert one.status_code == 200 and one.json_body["status"] == "succeeded"
    # But under another account or group, the same job id finds nothing
    for path in (
        f"{BASE}/limited/jobs/space-xy/{job['id']}/runs",
        f"{BASE}/spinup/jobs/other/{job['id']}/runs",
        f"{BASE}/limited/jobs/space-xy/{job['id']}/runs/{ids[0]}",
    ):
        response = client.http.get(path, headers=auth())
        assert response.status_code == 404, (path, response.body)
        assert set(response.json_body) == {"Code", "Message"}


def test_a_deleted_job_without_runs_is_not_found(client: Any) -> None:
    job = create(client)
    client.http.delete(job_path(job["id"]), headers=auth())
    response = client.http.get(f"{job_path(job['id'])}/runs", headers=auth())
    assert response.status_code == 404
    assert response.json_body["Message"] == f"job not found: space-xy/{job['id']}"


def test_run_nows_in_the_same_second_list_in_the_order_they_were_queued(
    client: Any, aws: dict[str, Any]
) -> None:
    # Given an API whose clock stands still (every run-now in the same millisecond)
    import app as app_module

    api = app_module._api()
    api.clock = lambda: datetime(2026, 1, 30, 10, 0, 0, 500000, tzinfo=UTC)
    job = create(client)
    # When it is run now twelve times
    queued = [run_now(client, job["id"]).json_body["run_id"] for _ in range(12)]
    drain(aws["sqs"], aws["queue_url"])
    # Then the runs list newest first, exactly the reverse of the order they were queued
    listed = client.http.get(f"{job_path(job['id'])}/runs?limit=50", headers=auth()).json_body
    assert [r["run_id"] for r in listed["runs"]] == queued[::-1]


def test_old_and_new_run_ids_sort_newest_first_together(client: Any) -> None:
    # Given runs stored under old-form ids (random `-m` + 8 hex), scheduled ids, and new ids
    from chalicelib.runs import manual_run_id

    job = create(client)
    store = deps.store()
    ids = [
        "20260130T095900Z-m0badc0de",
        "20260130T100000Z-s",
        manual_run_id(datetime(2026, 1, 30, 10, 0, 1, 5000, tzinfo=UTC)),
        "20260130T100002Z-mffffffff",
        manual_run_id(datetime(2026, 1, 30, 10, 0, 3, tzinfo=UTC)),
        "20260130T100100Z-s",
    ]
    for run_id in ids:
        assert store.put_run(
            Run(
                run_id=run_id,
                job_id=job["id"],
                account="spinup",
                group="space-xy",
                trigger="manual",
                scheduled_for="2026-01-30T10:00:00Z",
                status="succeeded",
            )
        )
    # When listed / Then newest first by time, whatever the form; each readable by its id
    listed = client.http.get(f"{job_path(job['id'])}/runs", headers=auth()).json_body
    assert [r["run_id"] for r in listed["runs"]] == ids[::-1]
    for run_id in ids:
        assert (
            client.http.get(f"{job_path(job['id'])}/runs/{run_id}", headers=auth()).status_code
            == 200
        ), run_id


def test_a_run_now_id_sorts_after_the_previous_one_even_when_the_clock_steps_back() -> None:
    from chalicelib.runs import is_run_id, manual_run_id

    # Given run-nows at .900 s, then .100 s of the same second (the clock stepped back),
    # then the next second
    late = manual_run_id(datetime(2026, 1, 30, 10, 0, 0, 900000, tzinfo=UTC))
    stepped_back = manual_run_id(datetime(2026, 1, 30, 10, 0, 0, 100000, tzinfo=UTC))
    next_second = manual_run_id(datetime(2026, 1, 30, 10, 0, 1, 0, tzinfo=UTC))

    # Then they sort in the order they were made, keep their second, and are run ids
    assert late < stepped_back < next_second
    assert stepped_back.startswith("20260130T100000Z-m900")
    assert next_second.startswith("20260130T100001Z-m000")
    assert all(is_run_id(i) and len(i) == 31 for i in (late, stepped_back, next_second))
