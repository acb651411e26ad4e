"""End to end: `python -m local.stack` (what `make run` starts), spoken to over HTTP."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from local_stack_support import DUMMY_JOB, Stack, free_port, headers

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path / "state").start()
    yield running
    if running.process and running.process.poll() is None:
        running.stop()


def test_readme_curl_session_creates_lists_gets_runs_and_deletes_the_dummy_job(
    stack: Stack,
) -> None:
    # Given the running stack and its development token
    h = headers(stack.token())
    # When the README's session is followed
    created = httpx.post(stack.base + "/spinup/jobs/space-xy", headers=h, json=DUMMY_JOB)
    job_id = created.json()["id"]
    listed = httpx.get(stack.base + "/spinup/jobs", headers=h).json()
    in_group = httpx.get(stack.base + "/spinup/jobs/space-xy", headers=h).json()
    fetched = httpx.get(f"{stack.base}/spinup/jobs/space-xy/{job_id}", headers=h)
    run = httpx.patch(f"{stack.base}/spinup/jobs/space-xy/{job_id}", headers=h)
    runs: list[dict[str, Any]] = []
    for _ in range(50):  # the worker loop picks the run up within a second or two
        runs = httpx.get(f"{stack.base}/spinup/jobs/space-xy/{job_id}/runs", headers=h).json()[
            "runs"
        ]
        if any(r["run_id"] == run.json()["run_id"] and r["status"] == "succeeded" for r in runs):
            break
        time.sleep(0.2)
    deleted = httpx.delete(f"{stack.base}/spinup/jobs/space-xy/{job_id}", headers=h)
    gone = httpx.get(f"{stack.base}/spinup/jobs/space-xy/{job_id}", headers=h)
    # Then every step answers as the README says
    assert created.status_code == 200
    assert created.headers["location"].endswith(f"/spinup/jobs/space-xy/{job_id}")
    assert listed == [f"space-xy/{job_id}"] and in_group == [job_id]
    assert fetched.status_code == 200 and fetched.json()["name"] == "dummy-spin1234567"
    assert fetched.headers["etag"] == '"1"'
    assert run.status_code == 202 and run.json()["status"] == "queued"
    manual = [r for r in runs if r["run_id"] == run.json()["run_id"]]
    assert manual and manual[0]["status"] == "succeeded"
    assert manual[0]["output"] == "Hello, spinup!"
    assert deleted.status_code == 202 and gone.status_code == 404


def test_stack_refuses_requests_without_a_token_and_answers_unknown_paths_404(stack: Stack) -> None:
    # Given the running stack
    # When requests come without a token, and with one to a path that does not exist
    no_token = httpx.get(stack.base + "/spinup/jobs")
    unknown_without = httpx.get(stack.base + "/no/such/route/here")
    unknown_with = httpx.get(stack.base + "/no/such/route/here", headers=headers(stack.token()))
    # Then
    assert no_token.status_code == 401 and no_token.json()["Code"] == "UnauthorizedError"
    assert unknown_without.status_code == 401
    assert unknown_with.status_code == 404


def test_jobs_survive_a_restart_and_sigterm_leaves_no_process(tmp_path: Path) -> None:
    # Given a stack holding a job
    first = Stack(tmp_path / "state").start()
    h = headers(first.token())
    job_id = httpx.post(
        first.base + "/spinup/jobs/space-xy", headers=h, json={**DUMMY_JOB, "enabled": False}
    ).json()["id"]
    # When it is stopped with SIGTERM and started again on the same state directory
    code = first.stop()
    second = Stack(tmp_path / "state").start()
    try:
        fetched = httpx.get(f"{second.base}/spinup/jobs/space-xy/{job_id}", headers=h)
    finally:
        second.stop()
    # Then it stopped cleanly, freed its ports, and the job is still there
    assert code == 0 and "stopped." in first.output
    for port in (first.port, first.aws_port):
        with socket.socket() as probe:
            # SO_REUSEADDR: a closed connection's TIME_WAIT may linger; a listener may not
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
    assert fetched.status_code == 200 and fetched.json()["name"] == "dummy-spin1234567"


def test_an_accounts_file_limits_accounts_and_runners(tmp_path: Path) -> None:
    # Given a registry naming one account allowed only the dummy runner
    registry = tmp_path / "accounts.json"
    registry.write_text(json.dumps({"accounts": {"team": {"runners": ["dummyRunner"]}}}))
    stack = Stack(
        tmp_path / "state",
        {
            "MINION_ACCOUNTS_FILE": str(registry),
            "MINION_TOKENS": "chosen-token-000001,chosen-token-000002",
        },
    ).start()
    try:
        h = headers("chosen-token-000002")
        unknown = httpx.get(stack.base + "/other/jobs", headers=h)
        instance_job = {
            **DUMMY_JOB,
            "details": {
                "runner": "instanceRunner",
                "instance_id": "i-aaaabbbb11112222",
                "instance_action": "start",
            },
        }
        refused = httpx.post(stack.base + "/team/jobs/space-xy", headers=h, json=instance_job)
        allowed = httpx.post(stack.base + "/team/jobs/space-xy", headers=h, json=DUMMY_JOB)
    finally:
        stack.stop()
    # Then
    assert unknown.status_code == 404 and unknown.json()["Message"] == "account not found: other"
    assert refused.status_code == 400 and "details.runner" in refused.json()["Message"]
    assert allowed.status_code == 200


@pytest.mark.slow
def test_every_minute_job_runs_once_per_minute_with_no_gap_and_no_duplicate(stack: Stack) -> None:
    # Given an enabled every-minute job
    h = headers(stack.token())
    job_id = httpx.post(stack.base + "/spinup/jobs/space-xy", headers=h, json=DUMMY_JOB).json()[
        "id"
    ]
    first = httpx.get(f"{stack.base}/spinup/jobs/space-xy/{job_id}", headers=h).json()["next"]
    # When three minute boundaries pass
    runs: list[dict[str, Any]] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = httpx.get(
            f"{stack.base}/spinup/jobs/space-xy/{job_id}/runs?limit=100", headers=h
        ).json()["runs"]
        if len([r for r in runs if r["status"] == "succeeded"]) >= 3:
            break
        time.sleep(2)
    # Then it ran at each of the three minutes from its first `next`, once each
    scheduled = sorted(r["scheduled_for"] for r in runs)
    assert len(scheduled) == len(set(scheduled)), "an occurrence ran twice"
    assert all(r["status"] == "succeeded" and r["trigger"] == "schedule" for r in runs)
    stamps = [time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ")) for s in scheduled]
    assert scheduled[0] == first
    assert len(stamps) >= 3 and all(b - a == 60 for a, b in pairwise(stamps))


EXTERNAL_ID = "Zq0v7kQe3mT1rW9xY2bN5cD8fG4hJ6lP"  # generated: secrets.token_urlsafe(24)


def test_run_now_of_an_instance_stop_job_stops_an_instance_of_the_target_account(
    tmp_path: Path,
) -> None:
    # Given a registry naming another account through a role, and the stack running on it
    import boto3

    target = "111122223333"
    registry = tmp_path / "accounts.json"
    registry.write_text(
        json.dumps(
            {
                "accounts": {
                    "team": {
                        "account_id": target,
                        "role_arn": f"arn:aws:iam::{target}:role/MinionRunner",
                        "external_id": EXTERNAL_ID,
                        "runners": ["instanceRunner"],
                    }
                }
            }
        )
    )
    stack = Stack(
        tmp_path / "state",
        {
            "MINION_ACCOUNTS_FILE": str(registry),
            "MINION_RUNNER_ROLE_ARNS": f"arn:aws:iam::{target}:role/MinionRunner",
        },
    ).start()
    try:
        endpoint = f"http://127.0.0.1:{stack.aws_port}"
        options = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "local",
            "aws_secret_access_key": "local",
        }
        assumed = boto3.client("sts", **options).assume_role(
            RoleArn=f"arn:aws:iam::{target}:role/MinionRunner",
            RoleSessionName="e2e",
            ExternalId=EXTERNAL_ID,
        )["Credentials"]
        ec2 = boto3.client(
            "ec2",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=assumed["AccessKeyId"],
            aws_secret_access_key=assumed["SecretAccessKey"],
            aws_session_token=assumed["SessionToken"],
        )
        instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)[
            "Instances"
        ][0]["InstanceId"]
        # (the same id does not exist in the emulator's default account)
        default_ec2 = boto3.client("ec2", **options)
        assert (
            default_ec2.describe_instances(
                Filters=[{"Name": "instance-id", "Values": [instance_id]}]
            )["Reservations"]
            == []
        )
        h = headers(stack.token())
        job = httpx.post(
            stack.base + "/team/jobs/space-xy",
            headers=h,
            json={
                "name": "stop-it",
                "schedule_expression": "0 19 * * *",
                "details": {
                    "runner": "instanceRunner",
                    "instance_id": instance_id,
                    "instance_action": "stop",
                },
            },
        ).json()
        # When the job is run now
        run = httpx.patch(f"{stack.base}/team/jobs/space-xy/{job['id']}", headers=h).json()
        record: dict[str, Any] = {}
        for _ in range(100):
            record = httpx.get(
                f"{stack.base}/team/jobs/space-xy/{job['id']}/runs/{run['run_id']}", headers=h
            ).json()
            if record["status"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][
            0
        ]["State"]["Name"]
    finally:
        stack.stop()
    # Then the target account's instance is stopped, and the run says so
    assert record["status"] == "succeeded", record
    assert record["data"]["previous_state"] == "running"
    assert state in ("stopping", "stopped")


def test_the_local_api_server_can_be_started_twice_in_one_process() -> None:
    # Given the app served once already (by this test or another in the process)
    import app as app_module
    from local.server import start_api

    first, second = free_port(), free_port()
    servers = [start_api(app_module.app, first), start_api(app_module.app, second)]
    try:
        # When both are asked / Then both answer
        answers = [httpx.get(f"http://127.0.0.1:{p}/v1/minion/ping").text for p in (first, second)]
    finally:
        for server in servers:
            server.shutdown()
    assert answers == ["pong", "pong"]
