"""The `minion` command: manage jobs and runs of a minion API from a terminal or a script."""

from __future__ import annotations

import getpass
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

from . import __version__, output
from .client import ApiError, MinionClient, Unreachable

DEFAULT_URL = "http://127.0.0.1:8000"
FINAL_STATUSES = ("succeeded", "failed", "missed", "skipped")

# Exit codes: what happened, for scripts.
OK = 0
API_ERROR = 1  # the API answered with an error (its message is printed)
USAGE = 2  # bad arguments or no token (click's own code for usage errors)
UNREACHABLE = 3  # no minion API answered at --url (nothing, or something else)
UNSUCCESSFUL = 4  # run --wait: the run ended other than succeeded; preview: invalid
STILL_RUNNING = 5  # run --wait: the run had not ended when --timeout ran out


class CliError(click.ClickException):
    """A one-line `Error: ...` on stderr and a chosen exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click types exit_code as a ClassVar, yet reads it off the raised instance
        # (`e.exit_code`), so a per-instance code works: its stub is narrower than its use.
        self.exit_code = exit_code  # type: ignore[misc]


@dataclass
class Session:
    """What the commands share: where the API is, how to print, how to wait.

    `transport` and `sleep` are for tests: route requests to an in-process app, and let the
    worker run where `run --wait` would sleep.
    """

    url: str = DEFAULT_URL
    token: str | None = None
    token_source: str = "--token"
    json: bool = False
    insecure_http: bool = False
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    _client: MinionClient | None = field(default=None, repr=False)

    def client(self) -> MinionClient:
        """The API client, built on first use (so `--help` needs no token)."""
        if self._client is None:
            url = check_transport(check_url(self.url), self.insecure_http)
            token, self.token_source = resolve_token(self.token, self.token_source)
            self._client = MinionClient(url, token, transport=self.transport)
            click.get_current_context().call_on_close(self._client.close)
        return self._client

    def show(self, data: Any, text: Callable[[], str]) -> None:
        """Print `data` as JSON, or `text()` for people."""
        if self.json:
            output.print_json(data)
            return
        rendered = text()
        if rendered:
            click.echo(rendered)


def resolve_token(explicit: str | None, source: str = "--token") -> tuple[str, str]:
    """The token and where it came from: `--token` or MINION_TOKEN (`source`), else the first
    of MINION_TOKENS (what `make run` accepts when it is set), else the file the local stack
    wrote to its state directory."""
    if explicit and explicit.strip():
        return check_token(explicit.strip()), source
    stack_tokens = [t.strip() for t in os.environ.get("MINION_TOKENS", "").split(",") if t.strip()]
    if stack_tokens:
        return check_token(stack_tokens[0]), "MINION_TOKENS (its first token)"
    path = Path(os.environ.get("MINION_STATE_DIR") or ".minion") / "dev-token"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        token = ""
    if not token:
        raise CliError(
            f"no API token: pass --token or set MINION_TOKEN (`make run` writes one to {path})",
            USAGE,
        )
    return check_token(token), f"the file {path} (written by `make run`)"


def check_token(token: str) -> str:
    """A token that can travel in a header: printable ASCII, no spaces (never echoed)."""
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise CliError("the API token must be printable ASCII without spaces", USAGE)
    return token


def check_url(url: str) -> str:
    """An http(s) URL with a host (and a real port), else a usage error naming it."""
    try:
        parsed = httpx.URL(url)
        port_ok = parsed.port is None or 1 <= parsed.port <= 65535
    except (httpx.InvalidURL, ValueError):
        parsed, port_ok = None, False
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.host
        or not port_ok
        or parsed.query
        or parsed.fragment
    ):
        raise CliError(
            f"--url: {url!r} is not the http(s) base URL of a minion API, e.g. {DEFAULT_URL}", USAGE
        )
    return url


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (localhost, 127.0.0.0/8, ::1)."""
    import ipaddress

    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(url: str, insecure_http: bool) -> str:
    """Refuse to send the token in clear text (plain http://) to a host other than this
    machine, unless --insecure-http says so."""
    parsed = httpx.URL(url)
    if parsed.scheme == "http" and not is_loopback(parsed.host) and not insecure_http:
        raise CliError(
            f"--url: {url!r} is plain http to another host: the token would cross "
            f"the network in clear text. Use https, or pass --insecure-http "
            f"(env MINION_INSECURE_HTTP=1) if you mean it",
            USAGE,
        )
    return url


# The API names a job's fields; the CLI's user typed options. Messages that start with a
# field are shown with the option (and the field, which a --file names).
FIELD_OPTIONS = {
    "name": "--name",
    "description": "--description",
    "schedule_expression": "--schedule",
    "schedule_timezone": "--tz",
    "enabled": "--enabled/--disabled",
    "modified_by": "--modified-by",
    "starting_deadline_seconds": "--starting-deadline",
    "concurrency_policy": "--concurrency-policy",
    "max_attempts": "--max-attempts",
    "details.runner": "--runner",
    "details": "--detail",
    "timezone": "--tz",
    "count": "--count",
    "limit": "--limit",
    "next_token": "--next-token",
    "notify": "--notify",
}
_FIELD = re.compile(r"^([a-z_]+)(?:\.([A-Za-z0-9_-]+))?: ")


def in_cli_terms(message: str) -> str:
    """An API message with the field it starts with named as the CLI's option."""
    match = _FIELD.match(message)
    if match is None:
        return message
    field_name, key = match.group(1), match.group(2)
    whole = field_name + (f".{key}" if key else "")
    if whole in FIELD_OPTIONS:
        option = FIELD_OPTIONS[whole]
    elif field_name == "details" and key:
        option = f"--detail {key}=..."
    elif field_name in FIELD_OPTIONS:
        option = FIELD_OPTIONS[field_name]
    else:
        return message
    named = option if option.lstrip("-") == whole.replace("_", "-") else f"{option} ({whole})"
    return f"{named}: {message[match.end() :]}"


def current_user() -> str | None:
    """The user's login name (the default of --modified-by), None when it cannot be told."""
    try:
        return getpass.getuser() or None
    except Exception:  # no login name in the environment nor the password database
        return None


class MinionGroup(click.Group):
    """The top-level group: turns the client's errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as error:
            message = str(error)
            if error.status == 400:
                message = f"{in_cli_terms(error.message)} ({error.status} {error.code})"
            if error.status == 412:
                message += (
                    "; the job changed since it was read: read it again "
                    "(`minion jobs get ACCOUNT GROUP ID --json`) and retry, or change "
                    "it with options (`minion jobs update ... --name ...`), which "
                    "re-reads it by itself"
                )
            if error.status == 401:
                session = ctx.find_object(Session)
                source = session.token_source if session else "--token"
                message += (
                    f"; the token came from {source}: check it is one the API at --url accepts"
                )
            raise CliError(message, API_ERROR) from None
        except Unreachable as error:
            raise CliError(str(error), UNREACHABLE) from None


def _override(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    # Given after the subcommand, an option wins over the same one given before it.
    if value not in (None, False):
        session = ctx.ensure_object(Session)
        setattr(session, str(param.name), value)
        if param.name == "token":
            session.token_source = "--token"


def common_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--json`, `--url`, `--token` after the subcommand too (`minion jobs get ... --json`)."""
    for option in (
        click.option(
            "--token",
            expose_value=False,
            callback=_override,
            help="API token (as before the subcommand).",
        ),
        click.option(
            "--url",
            expose_value=False,
            callback=_override,
            help="Base URL of the API (as before the subcommand).",
        ),
        click.option(
            "--json",
            is_flag=True,
            expose_value=False,
            callback=_override,
            help="Print the API's JSON answer.",
        ),
    ):
        command = option(command)
    return command


pass_session = click.make_pass_decorator(Session, ensure=True)


@click.group(cls=MinionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="MINION_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Base URL of the minion API (env MINION_URL); /v1/minion is appended.",
)
@click.option(
    "--token",
    envvar="MINION_TOKEN",
    show_envvar=True,
    help="API token (env MINION_TOKEN; else the first of MINION_TOKENS; else the "
    "file .minion/dev-token).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answers.")
@click.option(
    "--insecure-http",
    is_flag=True,
    envvar="MINION_INSECURE_HTTP",
    help="Send the token over plain http:// to a host other than this machine.",
)
@click.version_option(__version__, prog_name="minion")
@click.pass_context
def cli(
    ctx: click.Context, url: str, token: str | None, as_json: bool, insecure_http: bool
) -> None:
    """Manage the jobs and runs of a minion scheduler API.

    Exit codes: 0 success; 1 the API answered with an error; 2 bad usage or no token;
    3 the API cannot be reached, or what answered is not a minion API; 4 a waited-for
    run did not succeed, or a previewed schedule is invalid; 5 a waited-for run had not
    ended by --timeout.
    """
    session = ctx.ensure_object(Session)
    session.url, session.token = url, token
    session.insecure_http = session.insecure_http or insecure_http
    from_env = ctx.get_parameter_source("token") == click.core.ParameterSource.ENVIRONMENT
    session.token_source = "MINION_TOKEN" if from_env else "--token"
    session.json = session.json or as_json


# --- jobs ---------------------------------------------------------------------------------


@cli.group()
def jobs() -> None:
    """List, create, change and delete jobs."""


@jobs.command("list")
@click.argument("account", required=False, envvar="MINION_ACCOUNT")
@click.argument("group", required=False)
@click.option(
    "-l",
    "--long",
    is_flag=True,
    help="Show each job's name, schedule, next and last run (read a page of jobs per request).",
)
@common_options
@pass_session
def jobs_list(session: Session, account: str | None, group: str | None, long: bool) -> None:
    """Jobs of ACCOUNT (default: env MINION_ACCOUNT), or of one GROUP of it."""
    if not account:
        raise click.UsageError("ACCOUNT: give it, or set MINION_ACCOUNT")
    client = session.client()
    if long:
        # Job objects a page at a time (`expand=job`), not one request per job.
        found = client.list_job_objects(account, group)
        session.show(found, lambda: output.jobs_table(found) if found else _nothing(account, group))
        return
    names = client.list_jobs(account, group)
    pairs = [(group, name) if group else tuple(name.split("/", 1)) for name in names]
    session.show(
        names, lambda: output.table(["GROUP", "ID"], pairs) if pairs else _nothing(account, group)
    )


def _nothing(account: str, group: str | None) -> str:
    where = f"{account}/{group}" if group else account
    click.echo(f"no jobs in {where}", err=True)
    return ""


@jobs.command("get")
@click.argument("account")
@click.argument("group")
@click.argument("job_id", metavar="ID")
@common_options
@pass_session
def jobs_get(session: Session, account: str, group: str, job_id: str) -> None:
    """Show one job."""
    job = session.client().get_job(account, group, job_id)
    session.show(job, lambda: output.job_text(job))


def job_fields(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that set a job's fields (create and update)."""
    options = [
        click.option(
            "--file",
            "-f",
            "file",
            type=click.File("r", encoding="utf-8"),
            help="A job as JSON (`-` for stdin); the other options override it.",
        ),
        click.option("--name", help="The job's name."),
        click.option("--description", help="What the job is for."),
        click.option(
            "--schedule",
            "schedule_expression",
            help="Schedule expression, e.g. '0 7 * * MON-FRI' or 'rate(15 minutes)'.",
        ),
        click.option(
            "--tz",
            "--timezone",
            "schedule_timezone",
            help="IANA timezone of the schedule (default UTC).",
        ),
        click.option("--runner", help="Runner name, e.g. dummyRunner, instanceRunner."),
        click.option(
            "--detail",
            "details",
            multiple=True,
            metavar="KEY=VALUE",
            help="A runner detail (repeatable), e.g. instance_id=i-0123456789abcdef0.",
        ),
        click.option(
            "--enabled/--disabled",
            default=None,
            help="Whether the schedule runs it (a new job is disabled by default).",
        ),
        click.option("--modified-by", help="Who makes this change (default: your login name)."),
        click.option(
            "--starting-deadline",
            "starting_deadline_seconds",
            type=int,
            help="Seconds an occurrence may start late before it is missed.",
        ),
        click.option(
            "--concurrency-policy",
            type=click.Choice(["Allow", "Forbid"]),
            help="Whether a run may start while the previous one runs.",
        ),
        click.option("--max-attempts", type=int, help="Attempts of a run on retryable errors."),
        click.option(
            "--notify",
            metavar="OUTCOMES",
            help="Outcomes published as events, comma-separated (succeeded, failed, "
            "missed, skipped, retrying); 'none' for none, 'default' for the "
            "deployment's default.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


SIMPLE_FIELDS = (
    "name",
    "description",
    "schedule_expression",
    "schedule_timezone",
    "enabled",
    "modified_by",
    "starting_deadline_seconds",
    "concurrency_policy",
    "max_attempts",
)


def apply_options(job: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """`job` (client fields) with the given options set; details are merged key by key."""
    job = dict(job)
    job.update({name: options[name] for name in SIMPLE_FIELDS if options.get(name) is not None})
    if options.get("notify") is not None:
        job["notify"] = _notify(options["notify"])
    details = dict(_key_values(options.get("details") or ()))
    if options.get("runner"):
        details["runner"] = options["runner"]
    if details:
        existing = job.get("details")
        job["details"] = {**(existing if isinstance(existing, dict) else {}), **details}
    return job


def _notify(text: str) -> list[str] | None:
    """--notify's value as the job's field: a list, [] for none, None for the default."""
    word = text.strip().lower()
    if word == "default":
        return None
    if word == "none":
        return []
    return [part.strip() for part in text.split(",") if part.strip()]


def _key_values(pairs: Iterable[str]) -> Iterable[tuple[str, str]]:
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--detail")
        yield key, value


def _read_job_file(stream: Any) -> dict[str, Any]:
    try:
        document = json.load(stream)
    except ValueError as error:
        raise click.BadParameter(
            f"{stream.name}: not JSON ({error})", param_hint="--file"
        ) from error
    if not isinstance(document, dict):
        raise click.BadParameter(f"{stream.name}: expected a JSON object", param_hint="--file")
    return document


def _with_options(document: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    # The original service's wire form wraps the job: {"job": {...}, "tags": [...]}.
    if isinstance(document.get("job"), dict) and set(document) <= {"job", "tags"}:
        return {**document, "job": apply_options(document["job"], options)}
    return apply_options(document, options)


def _has_options(options: dict[str, Any]) -> bool:
    return any(
        options.get(name) not in (None, ())
        for name in SIMPLE_FIELDS + ("runner", "details", "notify")
    )


@jobs.command("create")
@click.argument("account")
@click.argument("group")
@job_fields
@common_options
@pass_session
def jobs_create(session: Session, account: str, group: str, file: Any, **options: Any) -> None:
    """Create a job in GROUP of ACCOUNT, from options or a JSON --file.

    \b
    minion jobs create spinup space-xy --name nightly-stop --runner instanceRunner \\
        --detail instance_id=i-0123456789abcdef0 --detail instance_action=stop \\
        --schedule '0 22 * * ?' --tz America/New_York --enabled
    """
    document = _read_job_file(file) if file else {}
    body = _with_options(document, options)
    fields = body["job"] if isinstance(body.get("job"), dict) else body
    if not fields.get("modified_by") and current_user():
        fields["modified_by"] = current_user()
    job = session.client().create_job(account, group, body)
    session.show(job, lambda: output.job_text(job))


@jobs.command("update")
@click.argument("account")
@click.argument("group")
@click.argument("job_id", metavar="ID")
@job_fields
@common_options
@pass_session
def jobs_update(
    session: Session, account: str, group: str, job_id: str, file: Any, **options: Any
) -> None:
    """Change a job: the given options only, or the whole job from a JSON --file.

    With options, the job is read, changed and written back unless someone else wrote it
    in between (then read again, once). With --file, the file replaces the job; when the
    file has a `version` (as `jobs get --json` prints), only if the job is still at it.
    """
    client = session.client()
    if file:
        document = _read_job_file(file)
        version = document.get("version")
        body = _with_options(document, options)
        fields = body["job"] if isinstance(body.get("job"), dict) else body
        if not fields.get("modified_by") and current_user():
            fields["modified_by"] = current_user()
        job = client.replace_job(
            account, group, job_id, body, version if isinstance(version, int) else None
        )
    elif _has_options(options):

        def edit(current: dict[str, Any]) -> dict[str, Any]:
            changed = apply_options(current, options)
            # Who changed it: only when something changed (an update that changes nothing
            # writes nothing).
            if changed != current and not options.get("modified_by") and current_user():
                changed["modified_by"] = current_user()
            return changed

        job, _ = _retried(lambda: client.update_job(account, group, job_id, edit))
    else:
        raise click.UsageError("nothing to change: give options or --file")
    session.show(job, lambda: output.job_text(job))


def _retried(update: Callable[[], tuple[dict[str, Any], bool]]) -> tuple[dict[str, Any], bool]:
    """A read-change-write that already re-read once; a second lost race says what to do."""
    try:
        return update()
    except ApiError as error:
        if error.status != 412:
            raise
        raise CliError(
            f"{error.message} ({error.status} {error.code}); someone else is "
            f"changing this job right now: run the same command again",
            API_ERROR,
        ) from None


def _set_enabled(
    session: Session, account: str, group: str, job_id: str, enabled: bool, modified_by: str | None
) -> None:
    modified_by = modified_by or current_user()

    def edit(current: dict[str, Any]) -> dict[str, Any]:
        if current.get("enabled") == enabled:
            return current
        return {
            **current,
            "enabled": enabled,
            **({"modified_by": modified_by} if modified_by else {}),
        }

    job, written = _retried(lambda: session.client().update_job(account, group, job_id, edit))
    word = "enabled" if enabled else "disabled"
    if written:
        next_run = f", next run {job['next']}" if job.get("next") else ""
        message = f"{word} job {group}/{job_id} (version {job['version']}{next_run})"
    else:
        message = f"job {group}/{job_id} was already {word}"
    session.show(job, lambda: message)


@jobs.command("enable")
@click.argument("account")
@click.argument("group")
@click.argument("job_id", metavar="ID")
@click.option("--modified-by", help="Who makes this change (default: your login name).")
@common_options
@pass_session
def jobs_enable(
    session: Session, account: str, group: str, job_id: str, modified_by: str | None
) -> None:
    """Let the schedule run a job."""
    _set_enabled(session, account, group, job_id, True, modified_by)


@jobs.command("disable")
@click.argument("account")
@click.argument("group")
@click.argument("job_id", metavar="ID")
@click.option("--modified-by", help="Who makes this change (default: your login name).")
@common_options
@pass_session
def jobs_disable(
    session: Session, account: str, group: str, job_id: str, modified_by: str | None
) -> None:
    """Stop the schedule from running a job (run-now still works)."""
    _set_enabled(session, account, group, job_id, False, modified_by)


@jobs.command("delete")
@click.argument("account")
@click.argument("group")
@click.argument("job_id", metavar="ID")
@common_options
@pass_session
def jobs_delete(session: Session, account: str, group: str, job_id: str) -> None:
    """Delete a job (its runs expire on their own)."""
    answer = session.client().delete_job(account, group, job_id)
    session.show(answer, lambda: f"deleted job {group}/{job_id}")


@jobs.command("delete-group")
@click.argument("account")
@click.argument("group")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@common_options
@pass_session
def jobs_delete_group(session: Session, account: str, group: str, yes: bool) -> None:
    """Delete every job of GROUP."""
    if not yes:
        click.confirm(f"Delete every job of {account}/{group}?", abort=True, err=True)
    answer = session.client().delete_group(account, group)
    session.show(answer, lambda: f"deleted {answer.get('deleted')} job(s) of {group}")


# --- runs ---------------------------------------------------------------------------------


@cli.command("run")
@click.argument("account")
@click.argument("group")
@click.argument("job_id", metavar="ID")
@click.option("--wait", "-w", is_flag=True, help="Follow the run until it ends.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds --wait follows the run before giving up (exit 5).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between polls with --wait.",
)
@common_options
@pass_session
def run(
    session: Session,
    account: str,
    group: str,
    job_id: str,
    wait: bool,
    timeout: float,
    interval: float,
) -> None:
    """Run a job now (even a disabled one); with --wait, until its run ends.

    With --wait the exit code says how the run ended: 0 succeeded, 4 failed, skipped or
    missed, 5 still queued or running after --timeout.
    """
    client = session.client()
    record = client.run_job(account, group, job_id)
    if not wait:
        session.show(record, lambda: output.run_text(record))
        return
    run_id = record["run_id"]
    click.echo(f"queued run {run_id}; waiting for it to end", err=True)
    deadline = time.monotonic() + timeout
    status = record["status"]
    while True:
        record = client.get_run(account, group, job_id, run_id)
        if record["status"] != status:
            status = record["status"]
            click.echo(f"run {run_id}: {status}", err=True)
        if status in FINAL_STATUSES or time.monotonic() >= deadline:
            break
        session.sleep(interval)
    session.show(record, lambda: output.run_text(record))
    if status not in FINAL_STATUSES:
        raise CliError(
            f"run {run_id} is still {status} after {timeout:g} s; follow it with "
            f"`minion runs get {account} {group} {job_id} {run_id}`",
            STILL_RUNNING,
        )
    if status != "succeeded":
        reason = record.get("error") or "no reason given"
        raise CliError(f"run {run_id} {status}: {' '.join(reason.split())}", UNSUCCESSFUL)


@cli.group()
def runs() -> None:
    """A job's run history."""


@runs.command("list")
@click.argument("account")
@click.argument("group")
@click.argument("job_id", metavar="ID")
@click.option("--limit", type=click.IntRange(1, 100), help="Runs per page (API default 20).")
@click.option("--next-token", help="Continue after the page that printed this token.")
@common_options
@pass_session
def runs_list(
    session: Session,
    account: str,
    group: str,
    job_id: str,
    limit: int | None,
    next_token: str | None,
) -> None:
    """Runs of a job, newest first."""
    page = session.client().list_runs(account, group, job_id, limit, next_token)

    def text() -> str:
        if page.get("next_token"):
            click.echo(f"more runs: add --next-token {page['next_token']}", err=True)
        if not page["runs"]:
            click.echo(f"no runs of {group}/{job_id}", err=True)
            return ""
        return output.runs_table(page["runs"])

    session.show(page, text)


@runs.command("get")
@click.argument("account")
@click.argument("group")
@click.argument("job_id", metavar="ID")
@click.argument("run_id", metavar="RUN_ID")
@common_options
@pass_session
def runs_get(session: Session, account: str, group: str, job_id: str, run_id: str) -> None:
    """One run of a job: its status, times, output or error."""
    record = session.client().get_run(account, group, job_id, run_id)
    session.show(record, lambda: output.run_text(record))


# --- schedules ----------------------------------------------------------------------------


@cli.group()
def schedule() -> None:
    """Check schedule expressions."""


@schedule.command("preview")
@click.argument("expression")
@click.option("--tz", "--timezone", "timezone", help="IANA timezone (default UTC).")
@click.option("--count", type=click.IntRange(1, 100), help="How many occurrences (API default 5).")
@common_options
@pass_session
def schedule_preview(
    session: Session, expression: str, timezone: str | None, count: int | None
) -> None:
    """Whether EXPRESSION is valid, and when it would run next (exit 4 when invalid)."""
    preview = session.client().preview_schedule(expression, timezone, count)
    session.show(preview, lambda: output.preview_text(preview))
    if not preview.get("valid"):
        raise CliError(f"invalid schedule: {preview.get('message')}", UNSUCCESSFUL)
