"""The `minion` CLI, driven with click's CliRunner against the real app (Chalice's test client
over moto), the worker run from the queue where `run --wait` would sleep."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from chalicelib.settings import get_settings
from conftest import TOKEN, auth, drain, sqs_event
from minion_cli.main import API_ERROR, STILL_RUNNING, UNREACHABLE, UNSUCCESSFUL, USAGE, Session, cli

LOGIN = "alice"
DUMMY = [
    "--name",
    "dummy-spin1234567",
    "--runner",
    "dummyRunner",
    "--schedule",
    "* * * ? *",
    "--description",
    "Do some dumb thing to my server",
    "--modified-by",
    "someone",
]


class ChaliceTransport(httpx.BaseTransport):
    """Hands each httpx request to Chalice's test client: method, path with query, headers,
    body. `before` may act first (e.g. win a race against the CLI's write)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.requests: list[httpx.Request] = []
        self.before: Callable[[httpx.Request], None] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.before is not None:
            self.before(request)
        answer = self.client.http.request(
            request.method,
            request.url.raw_path.decode("ascii"),
            headers=dict(request.headers),
            body=request.read(),
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.body)


def _no_sleep(_seconds: float) -> None:
    raise AssertionError("the command waited, but no test asked it to")


@pytest.fixture
def transport(client: Any) -> ChaliceTransport:
    return ChaliceTransport(client)


@pytest.fixture(autouse=True)
def _clean_cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No test reads the developer's MINION_* variables or their .minion/dev-token."""
    for name in ("MINION_URL", "MINION_TOKEN", "MINION_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINION_STATE_DIR", str(tmp_path / "no-state"))


@pytest.fixture
def minion(transport: ChaliceTransport) -> Callable[..., Result]:
    """Run `minion ARGS...` against the app; `sleep` is what `run --wait` does between polls."""

    def invoke(
        *args: str,
        sleep: Callable[[float], None] = _no_sleep,
        env: dict[str, str | None] | None = None,
        input: str | None = None,
    ) -> Result:
        # The app in this process reads MINION_TOKENS too: its settings are read before the
        # CLI runs, and the CLI sees MINION_TOKENS only when a test sets it.
        get_settings()
        session = Session(transport=transport, sleep=sleep)
        return CliRunner().invoke(
            cli,
            list(args),
            obj=session,
            input=input,
            env={"MINION_TOKEN": TOKEN, "LOGNAME": LOGIN, "MINION_TOKENS": None, **(env or {})},
        )

    return invoke


class Unplugged(httpx.BaseTransport):
    """No API behind it: records what reached it and refuses the connection."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def unplugged() -> Unplugged:
    return Unplugged()


@pytest.fixture
def offline(unplugged: Unplugged) -> Callable[..., Result]:
    """Run `minion ARGS...` with no API at all (for what must fail before any request)."""

    def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
        return CliRunner().invoke(
            cli,
            list(args),
            obj=Session(transport=unplugged),
            env={"MINION_TOKEN": TOKEN, **(env or {})},
        )

    return invoke


@pytest.fixture
def worker(aws: dict[str, Any]) -> Callable[[float], None]:
    """Stands in for sleeping: the worker Lambda handles whatever the queue holds."""
    from chalicelib.worker import handle_batch

    def run_worker(_seconds: float) -> None:
        messages = drain(aws["sqs"], aws["queue_url"])
        if messages:
            # The worker is another Lambda: its log and metric lines are not the CLI's output.
            with contextlib.redirect_stdout(io.StringIO()):
                handle_batch(sqs_event(messages))

    return run_worker


def create(minion: Callable[..., Result], *extra: str, group: str = "space-xy") -> dict[str, Any]:
    result = minion("--json", "jobs", "create", "spinup", group, *DUMMY, *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def stored(client: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The job as the API holds it now (read without the CLI)."""
    answer = client.http.get(f"/v1/minion/spinup/jobs/{job['group']}/{job['id']}", headers=auth())
    assert answer.status_code == 200, answer.body
    return json.loads(answer.body)


def error_line(result: Result) -> str:
    """The one line a failed command printed on stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def error_line_after_progress(result: Result) -> str:
    """The last line on stderr, after `run --wait`'s progress lines."""
    return result.stderr.strip().splitlines()[-1]


# --- jobs ---------------------------------------------------------------------------------


def test_the_cli_replaces_exactly_the_fields_the_api_lets_a_client_set() -> None:
    # Given the CLI's copy of the client fields (it ships without chalicelib, so it cannot
    # import them) and the API's own table
    from chalicelib.jobs import CLIENT_FIELDS as API_FIELDS
    from minion_cli.client import CLIENT_FIELDS

    # Then they are the same fields, each once: an update neither drops nor invents one
    assert sorted(CLIENT_FIELDS) == sorted(API_FIELDS)


def test_create_with_options_stores_the_job_and_prints_it_as_aligned_fields(
    minion: Callable[..., Result], client: Any
) -> None:
    # Given nothing stored
    # When a job is created with options
    result = minion(
        "jobs", "create", "spinup", "space-xy", *DUMMY, "--enabled", "--tz", "Europe/Zurich"
    )

    # Then the API holds it, and the output shows its fields aligned
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    job = stored(client, {"group": "space-xy", "id": lines["id"]})
    assert job["name"] == "dummy-spin1234567"
    assert job["details"] == {"runner": "dummyRunner"}
    assert job["enabled"] is True and job["schedule_timezone"] == "Europe/Zurich"
    assert job["modified_by"] == "someone"
    assert lines["details"] == "runner=dummyRunner" and lines["enabled"] == "yes"
    assert lines["next"] == job["next"]
    value_column = {line.index(line.split(None, 1)[1]) for line in result.stdout.splitlines()}
    assert len(value_column) == 1


def test_create_without_enabled_leaves_the_job_disabled(minion: Callable[..., Result]) -> None:
    job = create(minion)

    assert job["enabled"] is False and job["next"] is None


def test_create_from_a_file_takes_the_file_and_lets_options_override_it(
    minion: Callable[..., Result], client: Any, tmp_path: Any
) -> None:
    # Given a job file in the seed README's form
    path = tmp_path / "job.json"
    path.write_text(
        json.dumps(
            {
                "description": "from the file",
                "details": {"runner": "dummyRunner"},
                "group": "space-xy",
                "modified_by": "someone",
                "name": "from-file",
                "schedule_expression": "* * * ? *",
                "enabled": True,
            }
        )
    )

    # When it is created with one option on top
    result = minion(
        "--json",
        "jobs",
        "create",
        "spinup",
        "space-xy",
        "--file",
        str(path),
        "--name",
        "from-options",
    )

    # Then the file's fields are stored, the option winning
    assert result.exit_code == 0, result.output
    job = stored(client, json.loads(result.stdout))
    assert job["name"] == "from-options"
    assert job["description"] == "from the file" and job["enabled"] is True


def test_create_reads_the_wrapped_wire_form_from_stdin(
    minion: Callable[..., Result], client: Any
) -> None:
    document = {
        "job": {
            "name": "wrapped",
            "schedule_expression": "0 7 * * *",
            "details": {"runner": "dummyRunner"},
        },
        "tags": [{"key": "owner", "value": "spinup"}],
    }

    result = minion(
        "--json",
        "jobs",
        "create",
        "spinup",
        "space-xy",
        "-f",
        "-",
        "--modified-by",
        "cli",
        input=json.dumps(document),
    )

    assert result.exit_code == 0, result.output
    job = stored(client, json.loads(result.stdout))
    assert job["name"] == "wrapped" and job["modified_by"] == "cli"
    assert job["tags"] == [{"key": "owner", "value": "spinup"}]


def test_create_refused_by_the_api_prints_its_validation_message_and_stores_nothing(
    minion: Callable[..., Result], client: Any
) -> None:
    # When the schedule has six fields
    result = minion(
        "jobs",
        "create",
        "spinup",
        "space-xy",
        "--name",
        "bad",
        "--runner",
        "dummyRunner",
        "--schedule",
        "* * * * * *",
    )

    # Then: exit 1, the API's message on one line, and no job
    assert result.exit_code == API_ERROR
    line = error_line(result)
    assert line.startswith("Error: --schedule (schedule_expression): expected 5 fields")
    assert "(400 BadRequestError)" in line
    assert result.stdout == ""
    assert json.loads(client.http.get("/v1/minion/spinup/jobs", headers=auth()).body) == []


def test_a_malformed_detail_or_job_file_is_a_usage_error_before_any_request(
    offline: Callable[..., Result], unplugged: Unplugged, tmp_path: Any
) -> None:
    bad_file = tmp_path / "job.json"
    bad_file.write_text("[1, 2]")

    no_equals = offline("jobs", "create", "spinup", "g", *DUMMY, "--detail", "instance_id")
    not_an_object = offline("jobs", "create", "spinup", "g", "--file", str(bad_file))

    assert no_equals.exit_code == USAGE and "expected KEY=VALUE" in no_equals.stderr
    assert not_an_object.exit_code == USAGE and "expected a JSON object" in not_an_object.stderr
    assert unplugged.requests == []


def test_jobs_list_shows_an_account_as_group_and_id_and_a_group_as_ids(
    minion: Callable[..., Result],
) -> None:
    # Given two jobs in two groups
    first = create(minion, group="alpha")
    second = create(minion, group="beta")

    # When the account and one group are listed, as tables and as JSON
    account_table = minion("jobs", "list", "spinup")
    account_json = minion("jobs", "list", "spinup", "--json")
    group_json = minion("--json", "jobs", "list", "spinup", "beta")

    # Then
    assert account_table.exit_code == 0, account_table.output
    assert account_table.stdout.splitlines() == [
        "GROUP  ID",
        f"alpha  {first['id']}",
        f"beta   {second['id']}",
    ]
    assert json.loads(account_json.stdout) == [f"alpha/{first['id']}", f"beta/{second['id']}"]
    assert json.loads(group_json.stdout) == [second["id"]]


def test_jobs_list_long_shows_what_each_job_does_and_when(minion: Callable[..., Result]) -> None:
    job = create(minion, "--enabled")

    table = minion("jobs", "list", "spinup", "space-xy", "--long")
    as_json = minion("--json", "jobs", "list", "spinup", "-l")

    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()
    assert header.split() == ["GROUP", "ID", "NAME", "ENABLED", "SCHEDULE", "NEXT", "LAST", "RUN"]
    assert row.split() == [
        "space-xy",
        job["id"],
        "dummy-spin1234567",
        "yes",
        "*",
        "*",
        "*",
        "?",
        "*",
        job["next"],
        "-",
    ]
    assert [j["id"] for j in json.loads(as_json.stdout)] == [job["id"]]


def test_jobs_list_long_reads_a_page_of_jobs_per_request(
    minion: Callable[..., Result], transport: ChaliceTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given pages of 2 jobs (100 in use), and 5 jobs in two groups
    from chalicelib import deps
    from chalicelib.jobs import Job, new_job_id

    monkeypatch.setattr("minion_cli.client.EXPANDED_PAGE", 2)
    store = deps.store()
    ids = []
    for index in range(5):
        group = "alpha" if index % 2 else "beta"
        job = Job(
            account="spinup",
            group=group,
            id=new_job_id(),
            name=f"job-{index}",
            schedule_expression="* * * ? *",
            details={"runner": "dummyRunner"},
        )
        store.create_job(job)
        ids.append((group, job.id))

    # When the account's jobs are listed with details
    result = minion("--json", "jobs", "list", "spinup", "--long")

    # Then every job, by group then id, from three paged requests only
    assert result.exit_code == 0, result.output
    assert [(j["group"], j["id"]) for j in json.loads(result.stdout)] == sorted(ids)
    assert len(transport.requests) == 3
    assert all(r.url.params["expand"] == "job" for r in transport.requests)


def test_jobs_list_follows_every_page_of_names(
    minion: Callable[..., Result], transport: ChaliceTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given pages of 3 names (1,000 in use), and 7 jobs
    from chalicelib import deps
    from chalicelib.jobs import Job, new_job_id

    monkeypatch.setattr("minion_cli.client.LIST_PAGE", 3)
    store = deps.store()
    ids = sorted(new_job_id() for _ in range(7))
    for job_id in ids:
        store.create_job(
            Job(
                account="spinup",
                group="g",
                id=job_id,
                name="n",
                schedule_expression="* * * ? *",
                details={"runner": "dummyRunner"},
            )
        )

    # When the group is listed
    result = minion("--json", "jobs", "list", "spinup", "g")

    # Then every id once, in order, from three pages that followed the Link header
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ids
    assert len(transport.requests) == 3
    assert "next_token" in transport.requests[1].url.params
    assert transport.requests[1].url.params["limit"] == "3"


def test_jobs_list_long_reads_each_job_from_an_api_too_old_to_expand(
    minion: Callable[..., Result], transport: ChaliceTransport, client: Any
) -> None:
    # Given an API that ignores expand and paging (as before issue 17), and two jobs, one
    # deleted right after the listing was read
    gone, kept = create(minion), create(minion)
    names = [f"space-xy/{gone['id']}", f"space-xy/{kept['id']}"]

    def old_api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/minion/spinup/jobs":
            return httpx.Response(200, json=names)
        if request.url.path.endswith(gone["id"]):
            return httpx.Response(404, json={"Code": "NotFoundError", "Message": "job not found"})
        return transport.handle_request(request)

    # When the jobs are listed with details
    result = CliRunner().invoke(
        cli,
        ["--json", "jobs", "list", "spinup", "--long"],
        obj=Session(transport=httpx.MockTransport(old_api)),
        env={"MINION_TOKEN": TOKEN},
    )

    # Then one read per job, and the deleted one is left out, not an error
    assert result.exit_code == 0, result.output
    assert [j["id"] for j in json.loads(result.stdout)] == [kept["id"]]


def test_jobs_list_of_an_empty_account_says_so_on_stderr(minion: Callable[..., Result]) -> None:
    result = minion("jobs", "list", "limited")

    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == "no jobs in limited\n"


def test_jobs_list_takes_the_account_from_minion_account(minion: Callable[..., Result]) -> None:
    job = create(minion)

    from_env = minion("--json", "jobs", "list", env={"MINION_ACCOUNT": "spinup"})
    without = minion("jobs", "list")

    assert json.loads(from_env.stdout) == [f"space-xy/{job['id']}"]
    assert without.exit_code == USAGE and "MINION_ACCOUNT" in without.stderr


def test_jobs_get_prints_the_job_as_fields_or_json(minion: Callable[..., Result]) -> None:
    job = create(minion)

    text = minion("jobs", "get", "spinup", "space-xy", job["id"])
    as_json = minion("jobs", "get", "spinup", "space-xy", job["id"], "--json")

    assert text.exit_code == 0, text.output
    lines = dict(line.split(None, 1) for line in text.stdout.splitlines())
    assert lines["id"] == job["id"] and lines["name"] == "dummy-spin1234567"
    assert lines["enabled"] == "no" and lines["version"] == "1"
    assert json.loads(as_json.stdout) == job


def test_update_with_options_changes_only_those_fields(
    minion: Callable[..., Result], client: Any
) -> None:
    # Given a job with tags (set through the wire form)
    job = create(minion)
    tagged = {
        **{k: job[k] for k in ("name", "details", "schedule_expression")},
        "tags": [{"key": "team", "value": "spinup"}],
    }
    client.http.put(
        f"/v1/minion/spinup/jobs/space-xy/{job['id']}", headers=auth(), body=json.dumps(tagged)
    )

    # When only the schedule and description change
    result = minion(
        "--json",
        "jobs",
        "update",
        "spinup",
        "space-xy",
        job["id"],
        "--schedule",
        "0 7 * * MON-FRI",
        "--description",
        "weekday mornings",
    )

    # Then the rest is kept, and the version moved on
    assert result.exit_code == 0, result.output
    after = stored(client, job)
    assert after["schedule_expression"] == "0 7 * * MON-FRI"
    assert after["description"] == "weekday mornings"
    assert after["name"] == "dummy-spin1234567" and after["details"] == {"runner": "dummyRunner"}
    assert after["tags"] == [{"key": "team", "value": "spinup"}]
    assert after["version"] == 3 and json.loads(result.stdout) == after


def test_update_from_a_file_with_a_stale_version_is_refused_and_changes_nothing(
    minion: Callable[..., Result], client: Any, tmp_path: Any
) -> None:
    # Given a job saved with `jobs get --json`, then changed by someone else
    job = create(minion)
    saved = tmp_path / "job.json"
    saved.write_text(minion("--json", "jobs", "get", "spinup", "space-xy", job["id"]).stdout)
    assert (
        minion(
            "jobs", "update", "spinup", "space-xy", job["id"], "--name", "someone-else"
        ).exit_code
        == 0
    )

    # When the saved copy is edited and written back
    edited = {**json.loads(saved.read_text()), "description": "my edit"}
    saved.write_text(json.dumps(edited))
    result = minion("jobs", "update", "spinup", "space-xy", job["id"], "--file", str(saved))

    # Then the API refuses it (412), and the other write stands
    assert result.exit_code == API_ERROR
    assert "(412 PreconditionFailedError)" in error_line(result)
    assert "version 1 is stale" in error_line(result)
    after = stored(client, job)
    assert after["name"] == "someone-else" and after["description"] != "my edit"


def test_update_from_a_current_file_replaces_the_job(
    minion: Callable[..., Result], client: Any, tmp_path: Any
) -> None:
    job = create(minion)
    saved = tmp_path / "job.json"
    saved.write_text(json.dumps({**job, "description": "edited in a file", "enabled": True}))

    result = minion("jobs", "update", "spinup", "space-xy", job["id"], "-f", str(saved))

    assert result.exit_code == 0, result.output
    after = stored(client, job)
    assert after["description"] == "edited in a file" and after["enabled"] is True
    assert after["version"] == 2


def test_update_without_options_or_file_is_a_usage_error(offline: Callable[..., Result]) -> None:
    result = offline("jobs", "update", "spinup", "space-xy", "6bcfa79f-615e-470d-97c1-687f3357497d")

    assert result.exit_code == USAGE and "nothing to change" in result.stderr


def test_disable_then_enable_flip_the_flag_and_the_next_occurrence(
    minion: Callable[..., Result], client: Any
) -> None:
    # Given an enabled job
    job = create(minion, "--enabled")

    # When it is disabled, then enabled again by someone named
    disabled = minion("jobs", "disable", "spinup", "space-xy", job["id"])
    after_disable = stored(client, job)
    enabled = minion("jobs", "enable", "spinup", "space-xy", job["id"], "--modified-by", "operator")
    after_enable = stored(client, job)

    # Then each write flipped the flag and its next occurrence, and said so
    assert disabled.exit_code == 0, disabled.output
    assert disabled.stdout == f"disabled job space-xy/{job['id']} (version 2)\n"
    assert after_disable["enabled"] is False and after_disable["next"] is None
    assert enabled.exit_code == 0, enabled.output
    assert after_enable["enabled"] is True and after_enable["next"] is not None
    assert enabled.stdout == (
        f"enabled job space-xy/{job['id']} (version 3, next run {after_enable['next']})\n"
    )
    assert after_enable["modified_by"] == "operator"
    assert after_disable["modified_by"] == LOGIN  # --modified-by defaults to the login name


def test_enable_with_json_prints_the_written_job(
    minion: Callable[..., Result], client: Any
) -> None:
    job = create(minion)

    result = minion("jobs", "enable", "spinup", "space-xy", job["id"], "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == stored(client, job)
    assert json.loads(result.stdout)["enabled"] is True


def test_enable_of_an_enabled_job_writes_nothing(
    minion: Callable[..., Result], transport: ChaliceTransport, client: Any
) -> None:
    job = create(minion, "--enabled")

    result = minion("jobs", "enable", "spinup", "space-xy", job["id"])

    assert result.exit_code == 0
    assert result.stdout == f"job space-xy/{job['id']} was already enabled\n"
    assert stored(client, job)["version"] == 1
    assert [r.method for r in transport.requests][-1] == "GET"


def test_disable_that_loses_a_race_reads_again_and_keeps_the_other_write(
    minion: Callable[..., Result], transport: ChaliceTransport, client: Any
) -> None:
    # Given someone renames the job between the CLI's read and its write
    job = create(minion, "--enabled")
    path = f"/v1/minion/spinup/jobs/space-xy/{job['id']}"

    def rename_first(request: httpx.Request) -> None:
        if request.method == "PUT" and transport.before is not None:
            transport.before = None
            body = {k: job[k] for k in ("name", "details", "schedule_expression", "enabled")}
            answer = client.http.put(
                path, headers=auth(), body=json.dumps({**body, "name": "renamed"})
            )
            assert answer.status_code == 202

    transport.before = rename_first

    # When the CLI disables it
    result = minion("jobs", "disable", "spinup", "space-xy", job["id"])

    # Then its first PUT got 412, it read again, and both writes are kept
    assert result.exit_code == 0, result.output
    assert [r.method for r in transport.requests[-4:]] == ["GET", "PUT", "GET", "PUT"]
    after = stored(client, job)
    assert after["enabled"] is False and after["name"] == "renamed" and after["version"] == 3


def test_delete_removes_the_job_and_a_second_delete_is_not_found(
    minion: Callable[..., Result], client: Any
) -> None:
    job = create(minion)

    first = minion("jobs", "delete", "spinup", "space-xy", job["id"])
    second = minion("jobs", "delete", "spinup", "space-xy", job["id"])

    assert first.exit_code == 0 and first.stdout == f"deleted job space-xy/{job['id']}\n"
    assert json.loads(client.http.get("/v1/minion/spinup/jobs", headers=auth()).body) == []
    assert second.exit_code == API_ERROR
    assert error_line(second) == (f"Error: job not found: space-xy/{job['id']} (404 NotFoundError)")


def test_delete_group_asks_first_and_deletes_every_job_of_the_group(
    minion: Callable[..., Result], client: Any
) -> None:
    # Given two jobs in one group and one in another
    create(minion)
    create(minion)
    create(minion, group="other")

    # When the deletion is declined, then confirmed
    declined = minion("jobs", "delete-group", "spinup", "space-xy", input="n\n")
    kept = json.loads(client.http.get("/v1/minion/spinup/jobs", headers=auth()).body)
    confirmed = minion("jobs", "delete-group", "spinup", "space-xy", input="y\n")
    as_json = minion("--json", "jobs", "delete-group", "spinup", "other", "--yes")

    # Then nothing, then only that group, is deleted
    assert declined.exit_code == 1 and len(kept) == 3
    assert confirmed.exit_code == 0, confirmed.output
    assert confirmed.stdout == "deleted 2 job(s) of space-xy\n"
    assert json.loads(as_json.stdout) == {"deleted": 1}
    assert json.loads(client.http.get("/v1/minion/spinup/jobs", headers=auth()).body) == []


# --- runs ---------------------------------------------------------------------------------


def test_run_queues_a_run_of_a_disabled_job_and_prints_the_record(
    minion: Callable[..., Result], aws: dict[str, Any]
) -> None:
    job = create(minion)

    result = minion("--json", "run", "spinup", "space-xy", job["id"])

    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "queued" and record["job_id"] == job["id"]
    assert record["trigger"] == "manual"
    queued = [json.loads(m["Body"]) for m in drain(aws["sqs"], aws["queue_url"])]
    assert [m["run_id"] for m in queued] == [record["run_id"]]


def test_run_wait_follows_the_run_until_it_succeeds(
    minion: Callable[..., Result], worker: Callable[[float], None], client: Any
) -> None:
    # Given a job
    job = create(minion)

    # When it is run with --wait (the worker runs where the CLI would sleep)
    result = minion(
        "run", "spinup", "space-xy", job["id"], "--wait", "--interval", "0.1", sleep=worker
    )

    # Then the final record is printed, exit 0, and the job shows it as its last run
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["status"] == "succeeded" and lines["output"] == "Hello, spinup!"
    assert "queued run" in result.stderr and ": succeeded" in result.stderr
    assert stored(client, job)["last_run"]["run_id"] == lines["run_id"]


def test_run_wait_exits_4_with_the_reason_when_the_run_does_not_succeed(
    minion: Callable[..., Result], worker: Callable[[float], None], client: Any
) -> None:
    # Given a job deleted after its run was queued and before the worker takes it
    job = create(minion)

    def delete_then_work(seconds: float) -> None:
        client.http.delete(f"/v1/minion/spinup/jobs/space-xy/{job['id']}", headers=auth())
        worker(seconds)

    # When the run is followed
    result = minion("--json", "run", "spinup", "space-xy", job["id"], "-w", sleep=delete_then_work)

    # Then it ended skipped: exit 4, the reason on one line, the record still on stdout
    assert result.exit_code == UNSUCCESSFUL
    record = json.loads(result.stdout)
    assert record["status"] == "skipped"
    assert error_line_after_progress(result) == (
        f"Error: run {record['run_id']} skipped: job deleted before it ran"
    )


def test_run_wait_gives_up_after_the_timeout_with_exit_5(minion: Callable[..., Result]) -> None:
    job = create(minion)

    result = minion("run", "spinup", "space-xy", job["id"], "--wait", "--timeout", "0")

    assert result.exit_code == STILL_RUNNING
    last = error_line_after_progress(result)
    assert last.startswith("Error: run ") and "is still queued after 0 s" in last
    assert f"minion runs get spinup space-xy {job['id']} " in last


def test_runs_list_shows_each_page_of_runs_and_runs_get_shows_one(
    minion: Callable[..., Result], worker: Callable[[float], None]
) -> None:
    # Given two finished runs of a job
    job = create(minion)
    ids = [
        json.loads(
            minion("--json", "run", "spinup", "space-xy", job["id"], "-w", sleep=worker).stdout
        )["run_id"]
        for _ in range(2)
    ]

    # When the runs are listed, a page of one at a time, and one is fetched
    table = minion("runs", "list", "spinup", "space-xy", job["id"])
    listed = json.loads(minion("--json", "runs", "list", "spinup", "space-xy", job["id"]).stdout)
    first = minion("--json", "runs", "list", "spinup", "space-xy", job["id"], "--limit", "1")
    token = json.loads(first.stdout)["next_token"]
    second = minion(
        "--json",
        "runs",
        "list",
        "spinup",
        "space-xy",
        job["id"],
        "--limit",
        "1",
        "--next-token",
        token,
    )
    one = minion("runs", "get", "spinup", "space-xy", job["id"], ids[0], "--json")

    # Then the table has a row per run in the API's order (two run-nows in the same second
    # have no defined order), the pages together hold both, and the run is the one asked for
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["RUN", "ID", "STATUS"]
    assert [row.split()[0] for row in rows] == [r["run_id"] for r in listed["runs"]]
    assert sorted(r["run_id"] for r in listed["runs"]) == sorted(ids)
    assert all(row.split()[1:3] == ["succeeded", "manual"] for row in rows)
    assert all(row.rstrip().endswith("Hello, spinup!") for row in rows)
    order = [r["run_id"] for r in listed["runs"]]
    assert [[r["run_id"] for r in json.loads(page.stdout)["runs"]] for page in (first, second)] == [
        [order[0]],
        [order[1]],
    ]
    assert json.loads(one.stdout)["run_id"] == ids[0]
    assert json.loads(one.stdout)["status"] == "succeeded"


def test_runs_list_tells_how_to_get_the_next_page(minion: Callable[..., Result]) -> None:
    job = create(minion)
    for _ in range(2):
        minion("run", "spinup", "space-xy", job["id"])

    result = minion("runs", "list", "spinup", "space-xy", job["id"], "--limit", "1")

    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr.startswith("more runs: add --next-token ")


def test_runs_get_of_an_unknown_run_is_not_found(minion: Callable[..., Result]) -> None:
    job = create(minion)

    result = minion("runs", "get", "spinup", "space-xy", job["id"], "20260101T000000Z-s")

    assert result.exit_code == API_ERROR
    assert error_line(result) == "Error: run not found: 20260101T000000Z-s (404 NotFoundError)"


# --- schedules ----------------------------------------------------------------------------


def test_schedule_preview_lists_occurrences_in_utc_and_the_timezone(
    minion: Callable[..., Result],
) -> None:
    table = minion("schedule", "preview", "0 9 * * *", "--tz", "Europe/Zurich", "--count", "3")
    as_json = minion(
        "--json", "schedule", "preview", "0 9 * * *", "--tz", "Europe/Zurich", "--count", "3"
    )

    assert table.exit_code == 0, table.output
    preview = json.loads(as_json.stdout)
    assert preview["valid"] is True and len(preview["occurrences"]) == 3
    lines = table.stdout.splitlines()
    assert lines[:3] == ["expression  0 9 * * *", "timezone    Europe/Zurich", "valid       yes"]
    assert lines[4].split() == ["UTC", "LOCAL", "(Europe/Zurich)"]
    assert [line.split() for line in lines[5:]] == [
        [o["utc"], o["local"]] for o in preview["occurrences"]
    ]
    assert all(o["local"][11:16] == "09:00" for o in preview["occurrences"])


def test_schedule_preview_of_an_invalid_expression_exits_4_with_the_reason(
    minion: Callable[..., Result],
) -> None:
    result = minion("schedule", "preview", "* * * * * *")
    as_json = minion("schedule", "preview", "* * * * * *", "--json")

    assert result.exit_code == UNSUCCESSFUL
    assert error_line(result).startswith("Error: invalid schedule: schedule_expression:")
    assert as_json.exit_code == UNSUCCESSFUL
    assert json.loads(as_json.stdout)["valid"] is False


# --- errors, tokens, where the API is ------------------------------------------------------


def test_an_unknown_account_exits_1_with_the_apis_message_on_one_line(
    minion: Callable[..., Result],
) -> None:
    result = minion("jobs", "list", "nosuch")

    assert result.exit_code == API_ERROR
    assert result.stdout == ""
    assert error_line(result) == "Error: account not found: nosuch (404 NotFoundError)"


def test_a_wrong_token_exits_1_with_the_apis_message(minion: Callable[..., Result]) -> None:
    result = minion("jobs", "list", "spinup", env={"MINION_TOKEN": "not-the-token"})

    assert result.exit_code == API_ERROR
    assert error_line(result) == (
        "Error: missing or invalid X-Auth-Token "
        "(401 UnauthorizedError); the token came from MINION_TOKEN: "
        "check it is one the API at --url accepts"
    )


def test_a_group_with_a_slash_reaches_the_api_as_one_segment(
    minion: Callable[..., Result], transport: ChaliceTransport
) -> None:
    result = minion("jobs", "list", "spinup", "a/b")

    assert result.exit_code == API_ERROR
    assert transport.requests[-1].url.raw_path == b"/v1/minion/spinup/jobs/a%2Fb?limit=1000"
    assert "(400 BadRequestError)" in error_line(result)
    assert error_line(result).startswith("Error: group: must be")


def test_no_token_anywhere_is_a_clear_usage_error_without_a_request(
    offline: Callable[..., Result], unplugged: Unplugged
) -> None:
    result = offline("jobs", "list", "spinup", env={"MINION_TOKEN": None})

    assert result.exit_code == USAGE
    assert error_line(result).startswith("Error: no API token: pass --token or set MINION_TOKEN")
    assert unplugged.requests == []


def test_the_token_comes_from_the_local_stacks_dev_token_file(
    minion: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # Given no MINION_TOKEN, and the token `make run` wrote to ./.minion/dev-token
    monkeypatch.delenv("MINION_STATE_DIR")
    (tmp_path / ".minion").mkdir()
    (tmp_path / ".minion" / "dev-token").write_text(TOKEN + "\n")
    monkeypatch.chdir(tmp_path)

    # When a command runs
    result = minion("jobs", "list", "spinup", env={"MINION_TOKEN": None})

    # Then the API accepted it
    assert result.exit_code == 0, result.output


def test_the_token_file_follows_minion_state_dir(
    minion: Callable[..., Result], tmp_path: Any
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "dev-token").write_text(TOKEN)

    result = minion(
        "jobs", "list", "spinup", env={"MINION_TOKEN": None, "MINION_STATE_DIR": str(state)}
    )

    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--token", TOKEN, "jobs", "list", "spinup"],
        ["jobs", "list", "spinup", "--token", TOKEN],
        ["--token", "not-the-token", "jobs", "list", "spinup", "--token", TOKEN],
    ],
)
def test_a_token_option_before_or_after_the_subcommand_wins_over_minion_token(
    minion: Callable[..., Result], args: list[str]
) -> None:
    result = minion(*args, env={"MINION_TOKEN": "not-the-token"})

    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:8000",
        "ftp://minion.example.edu",
        "http://127.0.0.1:99999",
        "http://minion?x=1",
        "",
    ],
)
def test_a_url_that_cannot_be_an_api_base_is_a_usage_error_without_a_request(
    offline: Callable[..., Result], unplugged: Unplugged, url: str
) -> None:
    result = offline("--url", url, "jobs", "list", "spinup")

    assert result.exit_code == USAGE
    assert error_line(result) == (
        f"Error: --url: {url!r} is not the http(s) base URL of a "
        f"minion API, e.g. http://127.0.0.1:8000"
    )
    assert unplugged.requests == []


@pytest.mark.parametrize("token", ["caf\u00e9", "two words", "line\nbreak"])
def test_a_token_that_cannot_be_a_header_is_a_usage_error_that_does_not_echo_it(
    offline: Callable[..., Result], unplugged: Unplugged, token: str
) -> None:
    result = offline("jobs", "list", "spinup", env={"MINION_TOKEN": token})

    assert result.exit_code == USAGE
    assert error_line(result) == "Error: the API token must be printable ASCII without spaces"
    assert unplugged.requests == []


def test_an_api_that_does_not_answer_in_time_exits_3() -> None:
    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    result = CliRunner().invoke(
        cli,
        ["jobs", "list", "spinup"],
        obj=Session(transport=httpx.MockTransport(too_slow)),
        env={"MINION_TOKEN": TOKEN},
    )

    assert result.exit_code == UNREACHABLE
    assert error_line(result) == (
        "Error: the minion API at http://127.0.0.1:8000 did not answer in time"
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused_exits_3_naming_the_url() -> None:
    # Given nothing listening on a port (and the real httpx transport)
    url = f"http://127.0.0.1:{_closed_port()}"

    # When a command runs against it
    result = CliRunner().invoke(
        cli, ["--url", url, "jobs", "list", "spinup"], env={"MINION_TOKEN": TOKEN}
    )

    # Then
    assert result.exit_code == UNREACHABLE
    assert error_line(result) == (
        f"Error: cannot connect to the minion API at {url} (connection refused)"
    )


def test_minion_url_from_the_environment_is_used(transport: ChaliceTransport) -> None:
    result = CliRunner().invoke(
        cli,
        ["jobs", "list", "spinup"],
        obj=Session(transport=transport),
        env={"MINION_TOKEN": TOKEN, "MINION_URL": "https://minion.example.edu/api/"},
    )

    # Chalice's routes have no /api prefix: what answers is not minion's error
    assert result.exit_code == UNREACHABLE, result.output
    assert "not a minion API answer" in error_line(result)
    assert str(transport.requests[0].url) == (
        "https://minion.example.edu/api/v1/minion/spinup/jobs?limit=1000"
    )
    assert transport.requests[0].headers["X-Auth-Token"] == TOKEN


def test_a_url_that_already_ends_in_the_base_path_is_not_doubled(
    minion: Callable[..., Result], transport: ChaliceTransport
) -> None:
    result = minion("jobs", "list", "spinup", "--url", "http://127.0.0.1:8000/v1/minion/")

    assert result.exit_code == 0, result.output
    assert str(transport.requests[0].url) == (
        "http://127.0.0.1:8000/v1/minion/spinup/jobs?limit=1000"
    )


@pytest.mark.parametrize(
    "status, body, code, message",
    [
        (
            200,
            "<html>welcome</html>",
            UNREACHABLE,
            "answered 200 without JSON: is it a minion API? (check --url)",
        ),
        (
            502,
            "<html>Bad Gateway</html>",
            UNREACHABLE,
            "answered 502 Bad Gateway, not a minion API answer (<html>Bad Gateway</html>): check "
            "--url (e.g. the stage path of API Gateway)",
        ),
        (
            403,
            '{"message":"Missing Authentication Token"}',
            UNREACHABLE,
            'answered 403 Forbidden, not a minion API answer ({"message":"Missing Authentication '
            'Token"}): check --url (e.g. the stage path of API Gateway)',
        ),
        (
            200,
            '{"status": "ok"}',
            UNREACHABLE,
            "answered a job list that is not a JSON array: is it a minion API? (check --url)",
        ),
        (
            200,
            '["a", 1]',
            UNREACHABLE,
            "answered a job list that is not a list of names: is it a minion API? (check --url)",
        ),
    ],
)
def test_an_answer_that_is_not_the_apis_is_reported_on_one_line(
    status: int, body: str, code: int, message: str
) -> None:
    # Given something other than minion answering at the URL (a web page, a proxy's error)
    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text=body, headers={"Content-Type": "text/html"})

    # When a command runs
    result = CliRunner().invoke(
        cli,
        ["jobs", "list", "spinup"],
        obj=Session(transport=httpx.MockTransport(answer)),
        env={"MINION_TOKEN": TOKEN},
    )

    # Then
    assert result.exit_code == code
    assert error_line(result).endswith(message)


def test_help_needs_no_token_and_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["jobs", "--help"], env={"MINION_TOKEN": None})

    assert result.exit_code == 0
    listed = {
        line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()
    }
    assert listed == {
        "create",
        "delete",
        "delete-group",
        "disable",
        "enable",
        "get",
        "list",
        "update",
    }


# --- issue 17: the CLI in its own terms --------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--runner", "dummyRunner", "--schedule", "61 * * * *"],
            "Error: --schedule (schedule_expression): minute 61",
        ),
        (
            ["--runner", "dummyRunner", "--schedule", "* * * ? *", "--tz", "Mars/Olympus"],
            "Error: --tz (schedule_timezone): ",
        ),
        (
            ["--runner", "dummyRunner", "--schedule", "* * * ? *", "--max-attempts", "99"],
            "Error: --max-attempts: ",
        ),
        (
            [
                "--runner",
                "instanceRunner",
                "--schedule",
                "* * * ? *",
                "--detail",
                "instance_action=start",
            ],
            "Error: --detail instance_id=... (details.instance_id): ",
        ),
    ],
)
def test_a_refused_option_is_named_as_the_clis_option(
    minion: Callable[..., Result], args: list[str], expected: str
) -> None:
    result = minion("jobs", "create", "spinup", "space-xy", "--name", "n", *args)

    assert result.exit_code == API_ERROR, result.output
    assert error_line(result).startswith(expected), error_line(result)
    assert error_line(result).endswith("(400 BadRequestError)")


def test_a_stale_file_update_says_how_to_retry(
    minion: Callable[..., Result], tmp_path: Any
) -> None:
    # Given a job file read at version 1, and the job changed since
    job = create(minion)
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    assert minion("jobs", "update", "spinup", "space-xy", job["id"], "--name", "x").exit_code == 0

    # When the file is written back
    result = minion("jobs", "update", "spinup", "space-xy", job["id"], "--file", str(path))

    # Then 412, and the line says to read the job again and retry
    assert result.exit_code == API_ERROR
    line = error_line(result)
    assert "(412 PreconditionFailedError)" in line
    assert "read it again (`minion jobs get ACCOUNT GROUP ID --json`) and retry" in line


def test_an_update_that_loses_its_race_twice_says_to_run_it_again(
    minion: Callable[..., Result], transport: ChaliceTransport, client: Any
) -> None:
    # Given a job that someone else changes before each of the CLI's writes
    job = create(minion)

    def change_first(request: httpx.Request) -> None:
        if request.method == "PUT":
            current = stored(client, job)
            body = {k: current[k] for k in ("name", "details", "schedule_expression")}
            client.http.put(
                f"/v1/minion/spinup/jobs/space-xy/{job['id']}",
                headers=auth(),
                body=json.dumps({**body, "description": request.read().hex()[:9]}),
            )

    transport.before = change_first

    # When it is disabled... rather, renamed
    result = minion("jobs", "update", "spinup", "space-xy", job["id"], "--name", "renamed")

    # Then after its one retry it stops and says to run the command again
    assert result.exit_code == API_ERROR
    assert error_line(result).endswith(
        "someone else is changing this job right now: run the same command again"
    )
    assert stored(client, job)["name"] == "dummy-spin1234567"


@pytest.mark.parametrize(
    "args, env, source",
    [
        (["--token", "wrong-token"], {}, "--token"),
        ([], {"MINION_TOKEN": "wrong-token"}, "MINION_TOKEN"),
        (
            [],
            {"MINION_TOKEN": None, "MINION_TOKENS": "wrong-token,other"},
            "MINION_TOKENS (its first token)",
        ),
    ],
)
def test_a_refused_token_says_where_it_came_from(
    minion: Callable[..., Result], args: list[str], env: dict[str, str | None], source: str
) -> None:
    result = minion(*args, "jobs", "list", "spinup", env=env)

    assert result.exit_code == API_ERROR
    assert f"the token came from {source}:" in error_line(result)
    assert "wrong-token" not in result.output


def test_a_refused_dev_token_file_is_named(minion: Callable[..., Result], tmp_path: Any) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "dev-token").write_text("dev-stale\n")

    result = minion(
        "jobs", "list", "spinup", env={"MINION_TOKEN": None, "MINION_STATE_DIR": str(state)}
    )

    assert result.exit_code == API_ERROR
    assert f"the token came from the file {state / 'dev-token'} (written by `make run`)" in (
        error_line(result)
    )


def test_the_tokens_make_run_was_given_are_picked_up_before_a_stale_dev_token(
    minion: Callable[..., Result], tmp_path: Any
) -> None:
    # Given `MINION_TOKENS=... make run` (which then writes no dev-token) and an old dev-token
    state = tmp_path / "state"
    state.mkdir()
    (state / "dev-token").write_text("dev-stale\n")

    result = minion(
        "jobs",
        "list",
        "spinup",
        env={
            "MINION_TOKEN": None,
            "MINION_TOKENS": f" {TOKEN} ,another",
            "MINION_STATE_DIR": str(state),
        },
    )

    assert result.exit_code == 0, result.output


def test_modified_by_defaults_to_the_login_name(minion: Callable[..., Result], client: Any) -> None:
    # Given a job created without --modified-by
    args = [a for a in DUMMY if a not in ("--modified-by", "someone")]
    job = json.loads(minion("--json", "jobs", "create", "spinup", "g", *args).stdout)
    assert job["modified_by"] == LOGIN
    # When someone else changes it without --modified-by / Then it names them
    changed = minion(
        "--json",
        "jobs",
        "update",
        "spinup",
        "g",
        job["id"],
        "--name",
        "other",
        env={"LOGNAME": "bob"},
    )
    assert json.loads(changed.stdout)["modified_by"] == "bob"
    # But an update that changes nothing writes nothing, not even the name
    same = minion(
        "--json",
        "jobs",
        "update",
        "spinup",
        "g",
        job["id"],
        "--name",
        "other",
        env={"LOGNAME": "carol"},
    )
    assert json.loads(same.stdout)["modified_by"] == "bob"
    assert json.loads(same.stdout)["version"] == 2


def test_the_help_examples_are_accepted(minion: Callable[..., Result], client: Any) -> None:
    import shlex

    # Given the example of `jobs create --help`, and the schedule examples of the options
    help_text = CliRunner().invoke(cli, ["jobs", "create", "--help"]).stdout
    lines = help_text.split("Options:")[0].splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("minion "))
    command = ""
    for line in lines[start:]:
        command += line.strip().rstrip("\\") + " "
        if not line.rstrip().endswith("\\"):
            break
    argv = shlex.split(command)[1:]
    schedules = re.findall(r"'([^']+)'", help_text.split("--schedule")[-1].split("--tz")[0])
    assert schedules, help_text

    # When the example runs / Then the API stores the job
    result = minion("--json", *argv)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["details"]["instance_id"] == "i-0123456789abcdef0"
    # And each schedule example is valid
    for expression in schedules:
        preview = minion("--json", "schedule", "preview", expression)
        assert preview.exit_code == 0, (expression, preview.output)


def test_the_cli_reads_a_deployment_that_answers_the_wrapped_shape(
    minion: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import deps

    monkeypatch.setenv("MINION_RESPONSE_SHAPE", "wrapped")
    deps.reset()
    get_settings()
    job = create(minion, "--enabled")
    assert job["name"] == "dummy-spin1234567" and "version" in job

    disabled = minion("jobs", "disable", "spinup", "space-xy", job["id"])
    got = minion("--json", "jobs", "get", "spinup", "space-xy", job["id"])

    assert disabled.exit_code == 0, disabled.output
    assert json.loads(got.stdout)["enabled"] is False


def test_a_deleted_jobs_runs_are_listed_by_the_cli(
    minion: Callable[..., Result], aws: dict[str, Any]
) -> None:
    job = create(minion)
    first = json.loads(minion("--json", "run", "spinup", "space-xy", job["id"]).stdout)
    second = json.loads(minion("--json", "run", "spinup", "space-xy", job["id"]).stdout)
    drain(aws["sqs"], aws["queue_url"])
    assert minion("jobs", "delete", "spinup", "space-xy", job["id"]).exit_code == 0

    listed = minion("--json", "runs", "list", "spinup", "space-xy", job["id"])

    assert listed.exit_code == 0, listed.output
    assert [r["run_id"] for r in json.loads(listed.stdout)["runs"]] == [
        second["run_id"],
        first["run_id"],
    ]


def test_a_link_to_another_origin_is_not_followed(minion: Callable[..., Result]) -> None:
    # Given an answer whose next page is announced on another host (the token would go there)
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(
            200,
            json=["a"],
            headers={
                "Link": '<https://elsewhere.example/v1/minion/spinup/jobs?limit=1>; rel="next"'
            },
        )

    result = CliRunner().invoke(
        cli,
        ["jobs", "list", "spinup", "g"],
        obj=Session(transport=httpx.MockTransport(answer)),
        env={"MINION_TOKEN": TOKEN},
    )

    assert result.exit_code == UNREACHABLE
    assert "another origin" in error_line(result)
    assert len(seen) == 1


def test_make_help_lists_every_target_with_its_description() -> None:
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parent.parent
    makefile = (root / "Makefile").read_text()
    targets = re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE)

    listed = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    rows = {line.split()[1]: line for line in listed.splitlines()}
    assert set(rows) == set(targets)
    assert "the service on loopback" in rows["run"]


def test_notify_is_set_by_create_shown_by_get_kept_by_other_updates_and_reset_by_default(
    minion: Callable[..., Result], client: Any
) -> None:
    # Given a job created to announce failed and missed runs
    job = create(minion, "--notify", "failed,missed")
    assert stored(client, job)["notify"] == ["failed", "missed"]
    # Then get shows it
    shown = minion("jobs", "get", "spinup", "space-xy", job["id"])
    assert (
        dict(line.split(None, 1) for line in shown.stdout.splitlines())["notify"]
        == "failed, missed"
    )
    # When another field is updated, Then notify is kept
    minion("jobs", "update", "spinup", "space-xy", job["id"], "--description", "x")
    assert stored(client, job)["notify"] == ["failed", "missed"]
    # When notify is set to none, then back to the deployment's default
    minion("jobs", "update", "spinup", "space-xy", job["id"], "--notify", "none")
    assert stored(client, job)["notify"] == []
    minion("jobs", "update", "spinup", "space-xy", job["id"], "--notify", "default")
    assert "notify" not in stored(client, job)
    # When an unknown outcome is given, Then the API's message names the field
    refused = minion("jobs", "update", "spinup", "space-xy", job["id"], "--notify", "explode")
    assert refused.exit_code != 0 and "notify[0]" in refused.stderr
