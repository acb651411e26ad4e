"""What each API route does, free of HTTP: validated inputs in, domain objects out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from .accounts import AccountEntry, Registry
from .auth import Grant
from .errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from .jobs import (
    Job,
    check_segment,
    is_job_id,
    iso,
    job_from_request,
    job_schedule,
    never_runs_message,
    utc_minute,
)
from .queue import RunMessage, RunQueue
from .runs import Run, is_run_id, manual_run_id
from .store import Store

MAX_BODY = 64 * 1024
MAX_RUNS_PAGE = 100
MAX_JOBS_PAGE = 1000
MAX_EXPANDED_PAGE = 100
MAX_PREVIEW = 100
# Per-account series of /metrics (two each): bounds a scrape to one Query of 501 small items
# and about 60 KB of text, whatever the number of tenants.
MAX_METRICS_ACCOUNTS = 500
MAX_TOKEN = 1024


def parse_json_body(raw: bytes | None, content_type: str | None) -> Any:
    """The JSON document of a request body (415 unless declared JSON, 413 over 64 KiB)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("Content-Type must be application/json")
    if raw is not None and len(raw) > MAX_BODY:
        raise PayloadTooLarge(f"body: at most {MAX_BODY} bytes")
    if not raw:
        raise BadRequest("body: expected a JSON object, got an empty body")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"body: malformed JSON ({error})") from None
    except RecursionError:
        raise BadRequest("body: JSON nested too deeply") from None
    try:
        # JSON may escape a lone surrogate ("\ud800"); DynamoDB cannot store it (UTF-8 only).
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("body: strings must be valid Unicode (no lone surrogates)") from None
    return document


@dataclass(frozen=True)
class RequestBody:
    """A request body as received, parsed only when asked for: after the path is checked, so
    an unknown account is a 404 whatever the body."""

    raw: bytes | None
    content_type: str | None

    def json(self) -> Any:
        """The JSON document (400, 413 or 415 as `parse_json_body`)."""
        return parse_json_body(self.raw, self.content_type)


def _whole_number(text: str, max_digits: int = 18) -> int | None:
    """`text` as an integer when it is 1 to `max_digits` ASCII digits, else None
    (`str.isdigit` alone lets through "²", which `int` refuses)."""
    if not text.isascii() or not text.isdigit() or len(text) > max_digits:
        return None
    return int(text)


def parse_if_match(header: str | None) -> int | None:
    """The version an `If-Match` header names (`"3"`, `3`, `W/"3"`), None when absent."""
    if header is None or header.strip() == "*":
        return None
    text = header.strip()
    if text.startswith("W/"):
        text = text[2:]
    version = _whole_number(text.strip('"'))
    if version is None:
        raise PreconditionFailed(f"If-Match: {header!r} is not a version of this job")
    return version


def page_limit(params: Mapping[str, str], default: int, maximum: int) -> int:
    """The `limit` query parameter of a listing (400 naming it unless an integer 1-maximum)."""
    limit = _whole_number(params.get("limit", str(default)))
    if limit is None or not 1 <= limit <= maximum:
        raise BadRequest(f"limit: expected an integer 1-{maximum}")
    return limit


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    """Opaque, tamper-evident `next_token`s: where a listing continues, bound to that listing
    and signed with an HMAC of the deployment's key (a client can neither forge a position
    nor carry a token over to another account's listing)."""

    def __init__(self, key: Callable[[], bytes]) -> None:
        self._key = key

    def _mac(self, scope: str, position: bytes) -> bytes:
        message = scope.encode("utf-8") + b"\0" + position
        return hmac.new(self._key(), message, hashlib.sha256).digest()[:16]

    def issue(self, scope: str, position: str) -> str:
        """A token for continuing the listing `scope` after `position`."""
        data = position.encode("utf-8")
        return f"{_b64(data)}.{_b64(self._mac(scope, data))}"

    def read(self, scope: str, token: str) -> str:
        """The position a token of this listing names, else 400 naming `next_token`."""
        refused = BadRequest(
            "next_token: not a token this API returned for this listing "
            "(or the deployment's tokens were rotated since); list again "
            "without next_token"
        )
        if not token or len(token) > MAX_TOKEN or not token.isascii() or token.count(".") != 1:
            raise refused
        encoded, mac = token.split(".")
        try:
            data, presented = _unb64(encoded), _unb64(mac)
            position = data.decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise refused from None
        if not hmac.compare_digest(presented, self._mac(scope, data)):
            raise refused
        return position


@dataclass(frozen=True)
class JobListing:
    """A listing of jobs: names (or job objects when expanded), and the next page's token
    (`paged` False: the whole unpaged list, as before paging existed)."""

    items: list[Any]
    next_token: str | None = None
    paged: bool = False
    limit: int | None = None
    expand: str | None = None


def job_body(job: Job, shape: str = "flat") -> dict[str, Any]:
    """The answer of create, get and update: the job object (the README's `flat` shape), or
    the original Go service's `{"job", "tags", "log", "next"}` (`wrapped`)."""
    body = job.to_api()
    if shape != "wrapped":
        return body
    return {"job": body, "tags": body.get("tags") or [], "log": None, "next": body["next"]}


class MinionApi:
    """The operations behind the routes."""

    def __init__(
        self,
        store: Store,
        queue: RunQueue,
        registry: Callable[[], Registry],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        page_key: Callable[[], bytes] | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.registry = registry
        self.clock = clock
        if page_key is None:
            # Tokens then hold within this object only (tests, tools); app.py passes the
            # deployment's key so that any instance accepts another's tokens.
            process_key = secrets.token_bytes(32)
            page_key = lambda: process_key  # noqa: E731
        self.page_tokens = PageTokens(page_key)

    def account(self, account: str) -> AccountEntry:
        """The registry entry of a valid account segment, else 400/404."""
        check_segment("account", account)
        entry = self.registry().get(account)
        if entry is None:
            raise NotFound(f"account not found: {account}")
        return entry

    def _job_path(self, account: str, group: str, job_id: str) -> AccountEntry:
        entry = self.account(account)
        check_segment("group", group)
        if not is_job_id(job_id):
            raise NotFound(f"job not found: {group}/{job_id}")
        return entry

    def list_jobs(self, account: str, group: str | None = None) -> list[str]:
        """Sorted job names of an account (`group/id`) or of a group (`id`)."""
        self.account(account)
        if group is not None:
            check_segment("group", group)
        return self.store.list_jobs(account, group)

    def list_jobs_page(
        self, account: str, group: str | None, params: Mapping[str, str]
    ) -> JobListing:
        """Without `limit`, `next_token` or `expand`: every name, as before paging. With any
        of them: one page in key order (group, then id), and the token of the next."""
        self.account(account)
        if group is not None:
            check_segment("group", group)
        if not {"limit", "next_token", "expand"} & set(params):
            # Other query parameters were always ignored here: old clients keep working.
            return JobListing(self.store.list_jobs(account, group))
        expand = params.get("expand")
        if expand is not None and expand != "job":
            raise BadRequest("expand: expected `job` (job objects instead of names)")
        maximum = MAX_EXPANDED_PAGE if expand else MAX_JOBS_PAGE
        limit = page_limit(params, min(maximum, 100), maximum)
        scope = f"jobs\0{account}\0{group or ''}"
        token = params.get("next_token")
        after = None if token is None else self.page_tokens.read(scope, token)
        items, position = self.store.jobs_page(
            account, group, limit, after, full=expand is not None
        )
        body = [job.to_api() for job in items] if expand else items
        return JobListing(
            body,
            None if position is None else self.page_tokens.issue(scope, position),
            paged=True,
            limit=limit,
            expand=expand,
        )

    def create_job(self, account: str, group: str, body: RequestBody) -> Job:
        """Validate and store a new job."""
        entry = self.account(account)
        check_segment("group", group)
        job = job_from_request(
            body.json(), account=account, group=group, job_id=None, entry=entry, now=self.clock()
        )
        self.store.create_job(job)
        return job

    def get_job(self, account: str, group: str, job_id: str) -> Job:
        """A stored job."""
        self._job_path(account, group, job_id)
        return self.store.get_job(account, group, job_id)

    def replace_job(
        self, account: str, group: str, job_id: str, body: RequestBody, if_match: str | None
    ) -> Job:
        """Replace a job's client fields; 412 when `If-Match` names a stale version."""
        entry = self._job_path(account, group, job_id)
        expected = parse_if_match(if_match)
        previous = self.store.get_job(account, group, job_id)
        if expected is not None and expected != previous.version:
            raise PreconditionFailed(
                f"If-Match: version {expected} is stale; the job is at version {previous.version}"
            )
        job = job_from_request(
            body.json(),
            account=account,
            group=group,
            job_id=job_id,
            entry=entry,
            now=self.clock(),
            previous=previous,
        )
        self.store.replace_job(job, previous)
        return job

    def delete_job(self, account: str, group: str, job_id: str) -> None:
        """Delete one job (404 when absent)."""
        self._job_path(account, group, job_id)
        self.store.delete_job(self.store.get_job(account, group, job_id))

    def delete_group(self, account: str, group: str) -> int:
        """Delete every job of a group; how many."""
        self.account(account)
        check_segment("group", group)
        return self.store.delete_group(account, group)

    def run_now(self, account: str, group: str, job_id: str) -> Run:
        """Queue a run of the job at once, whatever its schedule and enabled flag."""
        entry = self._job_path(account, group, job_id)
        job = self.store.get_job(account, group, job_id)
        if not entry.allows(job.runner):
            raise BadRequest(f"details.runner: {job.runner} is not allowed for account {account}")
        now = self.clock()
        stamp = iso(now)
        run = Run(
            run_id=manual_run_id(now),
            job_id=job.id,
            account=account,
            group=group,
            trigger="manual",
            scheduled_for=stamp,
            status="queued",
            queued_at=stamp,
        )
        self.store.put_run(run)
        try:
            self.queue.send(
                RunMessage(
                    account=account,
                    group=group,
                    job_id=job.id,
                    run_id=run.run_id,
                    trigger="manual",
                    scheduled_for=stamp,
                )
            )
        except Exception as error:
            self.store.finish_run(
                run.with_status(
                    "failed", finished_at=iso(self.clock()), error="could not queue the run"
                )
            )
            raise ServiceUnavailable("the runs queue is unavailable; retry shortly") from error
        return run

    def list_runs(
        self, account: str, group: str, job_id: str, params: Mapping[str, str]
    ) -> dict[str, Any]:
        """A page of a job's runs, newest first; a deleted job's too, until they expire."""
        self._job_path(account, group, job_id)
        unknown = sorted(set(params) - {"limit", "next_token"})
        if unknown:
            raise BadRequest(f"{unknown[0]}: unknown query parameter")
        limit = page_limit(params, 20, MAX_RUNS_PAGE)
        token = params.get("next_token")
        if token is not None and not is_run_id(token):
            raise BadRequest("next_token: not a token this API returned")
        try:
            self.store.get_job(account, group, job_id)
        except NotFound:
            # Deleted (or never here): its runs are its record until their TTL ends. They
            # carry their account and group; only a match shows them, so a job id never
            # reveals another account's runs.
            newest, _ = self.store.list_runs(job_id, 1)
            if not newest or (newest[0].account, newest[0].group) != (account, group):
                raise
        runs, after = self.store.list_runs(job_id, limit, token)
        return {
            "runs": [r.to_api() for r in runs if (r.account, r.group) == (account, group)],
            "next_token": after,
        }

    def get_run(self, account: str, group: str, job_id: str, run_id: str) -> Run:
        """One run record of a job."""
        self._job_path(account, group, job_id)
        if not is_run_id(run_id):
            raise NotFound(f"run not found: {run_id}")
        run = self.store.get_run(job_id, run_id)
        if run is None or run.account != account or run.group != group:
            raise NotFound(f"run not found: {run_id}")
        return run

    def preview_schedule(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Whether an expression is valid, and its next occurrences in UTC and its timezone."""
        unknown = sorted(set(params) - {"expression", "timezone", "count"})
        if unknown:
            raise BadRequest(f"{unknown[0]}: unknown query parameter")
        expression = params.get("expression")
        if expression is None:
            raise BadRequest("expression: required")
        tz = params.get("timezone") or "UTC"
        count = _whole_number(params.get("count", "5"))
        if count is None or not 1 <= count <= MAX_PREVIEW:
            raise BadRequest(f"count: expected an integer 1-{MAX_PREVIEW}")
        answer: dict[str, Any] = {"expression": expression, "timezone": tz}
        try:
            _, _, schedule = job_schedule(
                {"schedule_expression": expression, "schedule_timezone": tz}
            )
        except BadRequest as error:
            return {**answer, "valid": False, "message": str(error), "occurrences": []}
        minute = utc_minute(self.clock())
        zone = ZoneInfo(tz)
        # Set now, an interval schedule would count from this minute; others ignore the anchor.
        found = schedule.occurrences(minute, count, anchor=minute)
        if not found:  # what a POST of an enabled job would answer
            return {
                **answer,
                "valid": False,
                "message": never_runs_message(minute),
                "occurrences": [],
            }
        occurrences = [{"utc": iso(t), "local": t.astimezone(zone).isoformat()} for t in found]
        return {**answer, "valid": True, "message": None, "occurrences": occurrences}

    def metrics_text(self, grant: Grant | None = None) -> str:
        """Application metrics in the Prometheus text format, from the counter items.

        Anonymous callers get totals only: no account is named to someone without a token.
        With a token, jobs by account, for the accounts it may use; at most
        MAX_METRICS_ACCOUNTS of them (`minion_metrics_accounts_truncated` says when more were
        left out), so a scrape's cost does not grow with the number of tenants.
        """
        scope = None if grant is None or grant.accounts is None else sorted(grant.accounts)
        by_account, truncated = self.store.account_counters(scope, MAX_METRICS_ACCOUNTS)
        # An account whose jobs are all gone is not listed (its counter item is deleted too).
        by_account = {a: c for a, c in by_account.items() if c["enabled"] or c["disabled"]}
        counters = self.store.service_counters()
        lines = []
        if grant is None:
            lines += [
                "# HELP minion_jobs Jobs stored, by enabled state (by account too when "
                "scraped with a token).",
                "# TYPE minion_jobs gauge",
            ]
            for state in ("enabled", "disabled"):
                total = sum(c[state] for c in by_account.values())
                lines.append(f'minion_jobs{{enabled="{str(state == "enabled").lower()}"}} {total}')
        else:
            lines += [
                "# HELP minion_jobs Jobs stored, by account and enabled state.",
                "# TYPE minion_jobs gauge",
            ]
            for account in sorted(by_account):
                for state in ("enabled", "disabled"):
                    lines.append(
                        f'minion_jobs{{account="{account}",enabled="'
                        f'{str(state == "enabled").lower()}"}} '
                        f"{by_account[account][state]}"
                    )
        lines += [
            "# HELP minion_metrics_accounts_truncated 1 when accounts beyond the first "
            f"{MAX_METRICS_ACCOUNTS} were left out of minion_jobs.",
            "# TYPE minion_metrics_accounts_truncated gauge",
            f"minion_metrics_accounts_truncated {int(truncated)}",
        ]
        lines += [
            "# HELP minion_runs_total Runs by final status.",
            "# TYPE minion_runs_total counter",
        ]
        for status in ("succeeded", "failed", "missed", "skipped"):
            lines.append(f'minion_runs_total{{status="{status}"}} {counters.runs.get(status, 0)}')
        lines += [
            "# HELP minion_last_tick_timestamp_seconds Minute of the newest finished tick.",
            "# TYPE minion_last_tick_timestamp_seconds gauge",
            f"minion_last_tick_timestamp_seconds {counters.last_tick}",
        ]
        return "\n".join(lines) + "\n"
