"""A small client of the minion HTTP API (httpx), and the errors it reports."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

BASE_PATH = "/v1/minion"
DEFAULT_TIMEOUT = 30.0
LIST_PAGE = 1000  # names per page of a job list
EXPANDED_PAGE = 100  # job objects per page of `expand=job`
WRAPPED_KEYS = {"job", "tags", "log", "next"}

# The fields a PUT replaces; everything else a GET returns is the server's.
CLIENT_FIELDS = (
    "name",
    "description",
    "details",
    "schedule_expression",
    "schedule_timezone",
    "enabled",
    "modified_by",
    "starting_deadline_seconds",
    "concurrency_policy",
    "max_attempts",
    "tags",
    "notify",
)


class ApiError(Exception):
    """The API answered with an error status; `message` is the API's own."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message


class Unreachable(Exception):
    """The API could not be reached, or what answered is not a minion API."""


class NotMinion(Unreachable):
    """What answered at the URL is not a minion API (a web page, a proxy, another API)."""


class MinionClient:
    """The operations of the minion API; `transport` lets tests route requests elsewhere."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        root = self.url if self.url.endswith(BASE_PATH) else self.url + BASE_PATH
        self._http = httpx.Client(
            base_url=root,
            transport=transport,
            timeout=timeout,
            headers={
                "X-Auth-Token": token,
                "Accept": "application/json",
                "User-Agent": "minion-cli/0.1.0",
            },
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- jobs ---------------------------------------------------------------------------

    def list_jobs(self, account: str, group: str | None = None) -> list[str]:
        """`group/id` of every job of an account, or `id` of every job of a group (every page,
        following the API's `Link: rel="next"`)."""
        path = _path(account, "jobs") if group is None else _path(account, "jobs", group)
        names = self._all_pages(path, {"limit": LIST_PAGE})
        if not all(isinstance(name, str) for name in names):
            raise self._not_minion("a job list that is not a list of names")
        return names

    def list_job_objects(self, account: str, group: str | None = None) -> list[dict[str, Any]]:
        """Every job object of an account or group, a page of them per request (`expand=job`);
        one request per job only from an API too old to expand."""
        path = _path(account, "jobs") if group is None else _path(account, "jobs", group)
        items = self._all_pages(path, {"expand": "job", "limit": EXPANDED_PAGE})
        if all(isinstance(item, dict) for item in items):
            return items
        if not all(isinstance(item, str) for item in items):
            raise self._not_minion("a job list that is neither names nor jobs")
        found = []
        for name in items:  # an older minion ignored `expand`: it listed names
            job_group, job_id = (group, name) if group else name.split("/", 1)
            try:
                found.append(self.get_job(account, job_group, job_id))
            except ApiError as error:
                if error.status != 404:  # deleted since it was listed: no longer listed
                    raise
        return found

    def get_job(self, account: str, group: str, job_id: str) -> dict[str, Any]:
        """A job object."""
        return self._job(self._call("GET", _path(account, "jobs", group, job_id)))

    def create_job(self, account: str, group: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a job; the stored job object."""
        return self._job(self._call("POST", _path(account, "jobs", group), json=body))

    def replace_job(
        self,
        account: str,
        group: str,
        job_id: str,
        body: Mapping[str, Any],
        version: int | None = None,
    ) -> dict[str, Any]:
        """Replace a job's client fields; with `version`, only if the job is still at it."""
        headers = {"If-Match": f'"{version}"'} if version is not None else None
        return self._job(
            self._call("PUT", _path(account, "jobs", group, job_id), json=body, headers=headers)
        )

    def update_job(
        self,
        account: str,
        group: str,
        job_id: str,
        edit: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> tuple[dict[str, Any], bool]:
        """Edit a job's client fields; the job, and whether it was written.

        Read, edit, write back only if nobody wrote in between (`If-Match`); a lost race
        costs one more read and write. Nothing is written when the edit changes nothing.
        """
        try:
            return self._update_once(account, group, job_id, edit)
        except ApiError as error:
            if error.status != 412:
                raise
        return self._update_once(account, group, job_id, edit)

    def _update_once(
        self,
        account: str,
        group: str,
        job_id: str,
        edit: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> tuple[dict[str, Any], bool]:
        job = self.get_job(account, group, job_id)
        current = client_fields(job)
        body = edit(copy.deepcopy(current))
        if body == current:
            return job, False
        return self.replace_job(account, group, job_id, body, job["version"]), True

    def delete_job(self, account: str, group: str, job_id: str) -> dict[str, Any]:
        """Delete a job."""
        return self._call("DELETE", _path(account, "jobs", group, job_id))

    def delete_group(self, account: str, group: str) -> dict[str, Any]:
        """Delete every job of a group; `{"deleted": n}`."""
        return self._call("DELETE", _path(account, "jobs", group))

    # --- runs ---------------------------------------------------------------------------

    def run_job(self, account: str, group: str, job_id: str) -> dict[str, Any]:
        """Queue a run now; the queued run record."""
        return self._call("PATCH", _path(account, "jobs", group, job_id))

    def list_runs(
        self,
        account: str,
        group: str,
        job_id: str,
        limit: int | None = None,
        next_token: str | None = None,
    ) -> dict[str, Any]:
        """A page of a job's runs, newest first: `{"runs": [...], "next_token": ...}`."""
        params = {k: v for k, v in (("limit", limit), ("next_token", next_token)) if v is not None}
        return self._call("GET", _path(account, "jobs", group, job_id, "runs"), params=params)

    def get_run(self, account: str, group: str, job_id: str, run_id: str) -> dict[str, Any]:
        """One run record."""
        return self._call("GET", _path(account, "jobs", group, job_id, "runs", run_id))

    # --- schedules ----------------------------------------------------------------------

    def preview_schedule(
        self, expression: str, timezone: str | None = None, count: int | None = None
    ) -> dict[str, Any]:
        """Whether an expression is valid, and its next occurrences."""
        params: dict[str, Any] = {"expression": expression}
        if timezone:
            params["timezone"] = timezone
        if count is not None:
            params["count"] = count
        return self._call("GET", "/schedule", params=params)

    # --- transport ----------------------------------------------------------------------

    def _job(self, body: Any) -> dict[str, Any]:
        # A deployment may answer the original Go service's {"job", "tags", "log", "next"}
        # (MINION_RESPONSE_SHAPE=wrapped): the job is inside, tags included.
        if isinstance(body, dict) and set(body) == WRAPPED_KEYS and isinstance(body["job"], dict):
            body = body["job"]
        if not isinstance(body, dict) or "id" not in body or "version" not in body:
            raise self._not_minion("an answer that is not a job")
        return body

    def _not_minion(self, what: str) -> NotMinion:
        return NotMinion(f"{self.url} answered {what}: is it a minion API? (check --url)")

    def _all_pages(self, path: str, params: dict[str, Any]) -> list[Any]:
        """The items of every page of a listing: the first from `path`, the next ones from
        each `Link: <...>; rel="next"` (same scheme, host and port only: the token is sent
        along)."""
        response, body = self._send("GET", path, params=params)
        items: list[Any] = []
        seen: set[str] = set()
        while True:
            if not isinstance(body, list):
                raise self._not_minion("a job list that is not a JSON array")
            items.extend(body)
            link = response.links.get("next", {}).get("url")
            if not link:
                return items
            url = response.url.join(link)
            if (url.scheme, url.host, url.port) != (
                response.url.scheme,
                response.url.host,
                response.url.port,
            ) or str(url) in seen:
                raise self._not_minion(
                    f'a Link rel="next" to {url} (another origin, or a page already read)'
                )
            seen.add(str(url))
            response, body = self._send("GET", str(url))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs)[1]

    def _send(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as error:
            raise Unreachable(
                f"cannot connect to the minion API at {self.url} ({_reason(error)})"
            ) from None
        except httpx.TimeoutException:
            raise Unreachable(f"the minion API at {self.url} did not answer in time") from None
        except httpx.HTTPError as error:
            raise Unreachable(
                f"request to the minion API at {self.url} failed ({_reason(error)})"
            ) from None
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if response.is_success:
            if body is None and response.content:
                raise NotMinion(
                    f"{self.url} answered {response.status_code} without JSON: "
                    f"is it a minion API? (check --url)"
                )
            return response, body
        if isinstance(body, dict) and set(body) == {"Code", "Message"}:
            raise ApiError(
                response.status_code,
                str(body.get("Code") or "Error"),
                _one_line(str(body["Message"])),
            )
        # Not minion's error form: another server, a proxy, or API Gateway itself (its
        # `{"message": "Missing Authentication Token"}` for a path without the stage).
        text = _one_line(response.text[:200]) or "no body"
        raise NotMinion(
            f"{self.url} answered {response.status_code} "
            f"{response.reason_phrase or ''}, not a minion API answer ({text}): "
            f"check --url (e.g. the stage path of API Gateway)".replace("  ", " ")
        )


def client_fields(job: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a job object that a full replace (PUT) must send back."""
    return {k: job[k] for k in CLIENT_FIELDS if k in job and job[k] is not None}


def _path(*segments: str) -> str:
    # Quote every segment whole: a group named `a/b` or `..` must reach the API as one
    # (rejected) segment, never as another path.
    return "/" + "/".join(quote(s, safe="") for s in segments)


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return _one_line(text)


def _one_line(text: str) -> str:
    return " ".join(text.split())
