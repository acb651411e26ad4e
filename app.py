"""minion's Lambda functions: the HTTP API, the minute tick and the runs worker."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from chalice import Chalice, CORSConfig, Cron, Rate, Response
from chalice.app import Request

from chalicelib import deps
from chalicelib.api import JobListing, RequestBody, job_body
from chalicelib.auth import Grant
from chalicelib.errors import Forbidden, MethodNotAllowed, MinionError, Unauthorized
from chalicelib.jobs import Job
from chalicelib.observability import logger
from chalicelib.settings import DEFAULT_QUEUE_NAME, DEFAULT_TICK_PARTS_QUEUE_NAME, get_settings

if TYPE_CHECKING:  # the batch utility is imported where used, by the handlers
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

app = Chalice(app_name="minion")

# Chalice's decorators need these names at import time; everything else is read lazily.
QUEUE_NAME = os.environ.get("MINION_QUEUE_NAME", DEFAULT_QUEUE_NAME)
TICK_PARTS_QUEUE_NAME = os.environ.get(
    "MINION_TICK_PARTS_QUEUE_NAME", DEFAULT_TICK_PARTS_QUEUE_NAME
)
CORS = CORSConfig(
    allow_origin=os.environ.get("MINION_CORS_ORIGIN", "*"),
    allow_headers=["X-Auth-Token", "Content-Type", "If-Match"],
    expose_headers=["ETag", "Location", "Link"],
    max_age=600,
)
BASE = "/v1/minion"
JOBS = BASE + "/{account}/jobs"
GROUP = JOBS + "/{group}"
JOB = GROUP + "/{id}"
RUNS = JOB + "/runs"
RUN = RUNS + "/{run_id}"


# The routes' one MinionApi, built in the composition root (deps.api; tests reset its cache).
_api = deps.api


def _error(error: MinionError, request_id: str | None = None) -> Response:
    message = str(error) if request_id is None else f"{error} (request id {request_id})"
    return Response(body={"Code": error.code, "Message": message}, status_code=error.status)


READS = frozenset({"GET", "HEAD", "OPTIONS"})


def _request() -> Request:
    """The request being answered. Chalice sets it before it calls a route's view, so None
    means a helper was called outside a route: a bug, answered 500 by `route`."""
    request = app.current_request
    if request is None:
        raise RuntimeError("no current request: called outside a route")
    return request


def authorize(grant: Grant | None, method: str, account: str | None) -> None:
    """401 without a valid token; 403 when the token's scope excludes the account or, for a
    read-only token, a write. The messages name neither the token nor its other accounts."""
    if grant is None:
        raise Unauthorized("missing or invalid X-Auth-Token")
    if account is not None and not grant.may_use(account):
        raise Forbidden("X-Auth-Token: this token may not use this account")
    if grant.read_only and method not in READS:
        raise Forbidden(f"X-Auth-Token: this token may only read; {method} writes")


def route(
    path: str, methods: list[str], *, public: bool = False, scoped: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a handler: token check (and its scope unless `scoped` is False), and the one
    error mapping."""

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def handler(**params: str) -> Any:
            try:
                if not public:
                    request = _request()
                    grant = deps.authenticator().authenticate(request.headers.get("x-auth-token"))
                    authorize(
                        grant,
                        request.method if scoped else "GET",
                        params.get("account") if scoped else None,
                    )
                return view(**params)
            except MinionError as error:
                if error.status >= 500:
                    request_id = _request_id()
                    logger.exception("request failed", extra={"request_id": request_id})
                    return _error(error, request_id)
                return _error(error)
            except Exception:  # a bug or an unexpected AWS failure: detail to the log only
                request_id = _request_id()
                logger.exception("unhandled error", extra={"request_id": request_id})
                return _error(MinionError("internal error"), request_id)

        # Any Content-Type reaches the handler: Chalice's own check would answer 415 before the
        # token check, and to a GET with a stray Content-Type. Bodies are checked when read.
        app.route(path, methods=methods, cors=CORS, content_types=["*/*"])(handler)
        return view

    return register


def _request_id() -> str:
    context = getattr(app, "lambda_context", None)
    return getattr(context, "aws_request_id", None) or str(uuid.uuid4())


def _not_allowed(path: str, methods: list[str], public: bool = False) -> None:
    """405 with an `Allow` header (RFC 9110) for the other methods of a path; on a public path
    without a token too, since its answer reveals nothing."""
    allowed = ", ".join(sorted(app.routes[path]))

    def method_not_allowed(**_: str) -> Any:
        response = _error(MethodNotAllowed(f"{_request().method} is not allowed on this path"))
        response.headers["Allow"] = allowed
        return response

    method_not_allowed.__name__ = "not_allowed_" + "_".join(
        p.strip("{}") for p in path.strip("/").split("/")
    )
    # A 405 changes nothing and names nothing: any valid token may learn it.
    route(path, methods, public=public, scoped=False)(method_not_allowed)


def _body() -> RequestBody:
    request = _request()
    raw = request.raw_body
    # Chalice types raw_body `str | bytes` but always answers bytes (it encodes a str body).
    if isinstance(raw, str):
        raw = raw.encode()
    return RequestBody(raw, request.headers.get("content-type"))


def _job_response(job: Job, status: int, location: bool = False) -> Response:
    headers: dict[str, str | list[str]] = {"ETag": f'"{job.version}"'}
    if location:
        headers["Location"] = f"{BASE}/{job.account}/jobs/{job.group}/{job.id}"
    return Response(
        body=job_body(job, get_settings().response_shape), status_code=status, headers=headers
    )


def _listing_response(listing: JobListing) -> Any:
    """The list as before paging; a page with `Link: <...>; rel="next"` (RFC 8288) when
    there is a next one: root-relative, carrying `limit`, `next_token` (and `expand`)."""
    if not listing.paged:
        return listing.items
    headers: dict[str, str | list[str]] = {}
    if listing.next_token is not None:
        query = {"limit": str(listing.limit), "next_token": listing.next_token}
        if listing.expand:
            query["expand"] = listing.expand
        headers["Link"] = f'<{_request_path()}?{urlencode(query)}>; rel="next"'
    return Response(body=listing.items, status_code=200, headers=headers)


def _request_path() -> str:
    # API Gateway's context path includes the stage (`/api/v1/minion/...`): what the client
    # called. Chalice's own path omits it.
    request = _request()
    path = (request.context or {}).get("path") or request.path
    return quote(path, safe="/-._~")


# --- public -------------------------------------------------------------------------------


@route(BASE + "/ping", ["GET"], public=True)
def ping() -> Response:
    return Response(body="pong", status_code=200, headers={"Content-Type": "text/plain"})


@route(BASE + "/version", ["GET"], public=True)
def version() -> dict[str, str]:
    settings = get_settings()
    return {
        "version": settings.version,
        "githash": settings.githash,
        "buildstamp": settings.buildstamp,
    }


@route(BASE + "/metrics", ["GET"], public=True)
def metrics() -> Response:
    header = _request().headers.get("x-auth-token")
    grant = None
    if header is not None:  # with a token, per-account figures; a wrong one is a 401
        grant = deps.authenticator().authenticate(header)
        authorize(grant, "GET", None)
    return Response(
        body=_api().metrics_text(grant),
        status_code=200,
        headers={"Content-Type": "text/plain; version=0.0.4"},
    )


@route(BASE + "/openapi.json", ["GET"], public=True)
def openapi() -> Response:
    return Response(
        body=_openapi_document(), status_code=200, headers={"Content-Type": "application/json"}
    )


@functools.lru_cache(maxsize=1)
def _openapi_document() -> str:
    from pathlib import Path

    return (Path(__file__).parent / "chalicelib" / "openapi.json").read_text()


# --- with a token -------------------------------------------------------------------------


@route(BASE + "/schedule", ["GET"])
def preview_schedule() -> dict[str, Any]:
    return _api().preview_schedule(_request().query_params or {})


@route(JOBS, ["GET"])
def list_account_jobs(account: str) -> Any:
    return _listing_response(_api().list_jobs_page(account, None, _request().query_params or {}))


@route(GROUP, ["GET"])
def list_group_jobs(account: str, group: str) -> Any:
    return _listing_response(_api().list_jobs_page(account, group, _request().query_params or {}))


@route(GROUP, ["POST"])
def create_job(account: str, group: str) -> Response:
    return _job_response(_api().create_job(account, group, _body()), 200, location=True)


@route(GROUP, ["DELETE"])
def delete_group(account: str, group: str) -> Response:
    deleted = _api().delete_group(account, group)
    return Response(body={"deleted": deleted}, status_code=202)


@route(JOB, ["GET"])
def get_job(account: str, group: str, id: str) -> Response:
    return _job_response(_api().get_job(account, group, id), 200)


@route(JOB, ["PUT"])
def replace_job(account: str, group: str, id: str) -> Response:
    if_match = _request().headers.get("if-match")
    return _job_response(_api().replace_job(account, group, id, _body(), if_match), 202)


@route(JOB, ["DELETE"])
def delete_job(account: str, group: str, id: str) -> Response:
    _api().delete_job(account, group, id)
    return Response(body={"deleted": 1}, status_code=202)


@route(JOB, ["PATCH"])
def run_job(account: str, group: str, id: str) -> Response:
    run = _api().run_now(account, group, id)
    return Response(
        body=run.to_api(),
        status_code=202,
        headers={"Location": f"{BASE}/{account}/jobs/{group}/{id}/runs/{run.run_id}"},
    )


@route(RUNS, ["GET"])
def list_runs(account: str, group: str, id: str) -> dict[str, Any]:
    return _api().list_runs(account, group, id, _request().query_params or {})


@route(RUN, ["GET"])
def get_run(account: str, group: str, id: str, run_id: str) -> dict[str, Any]:
    return _api().get_run(account, group, id, run_id).to_api()


for _path in (BASE + "/ping", BASE + "/version", BASE + "/metrics", BASE + "/openapi.json"):
    _not_allowed(_path, ["POST", "PUT", "DELETE", "PATCH"], public=True)
for _path, _methods in (
    (BASE + "/schedule", ["POST", "PUT", "DELETE", "PATCH"]),
    (JOBS, ["POST", "PUT", "DELETE", "PATCH"]),
    (GROUP, ["PUT", "PATCH"]),
    (JOB, ["POST"]),
    (RUNS, ["POST", "PUT", "DELETE", "PATCH"]),
    (RUN, ["POST", "PUT", "DELETE", "PATCH"]),
):
    _not_allowed(_path, _methods)


# --- the scheduler ------------------------------------------------------------------------


@app.schedule(Cron("*", "*", "*", "*", "?", "*"), name="tick")
def tick(event: Any) -> dict[str, Any]:
    """The minute's tick: only fans the minute out to the tick parts queue."""
    from chalicelib.tick import handle_tick

    parts_queue, shards, parts = deps.tick_fan_out()
    return handle_tick(event.to_dict(), event.context, parts_queue, shards, parts)


# One part per invocation: parts run side by side, each in its own Lambda process.
@app.on_sqs_message(queue=TICK_PARTS_QUEUE_NAME, batch_size=1, name="tick_part")
def tick_part(event: Any) -> PartialItemFailureResponse:
    """One part of a minute's tick: its shards' due jobs queued and advanced."""
    from chalicelib.tick import handle_tick_parts

    return handle_tick_parts(event.to_dict(), event.context, ticker=deps.ticker())


@app.on_sqs_message(queue=QUEUE_NAME, batch_size=10, name="worker")
def worker(event: Any) -> PartialItemFailureResponse:
    from chalicelib.worker import handle_batch

    return handle_batch(event.to_dict(), event.context, worker=deps.worker())


# Only deployed with a webhook (infra/minion.yaml, condition HasWebhook): a run event posted
# to chat by a function of its own, so that a slow webhook never delays a run.
@app.on_cw_event(
    {"source": ["minion"], "detail-type": ["Minion Run State Change"]}, name="reporter"
)
def reporter(event: Any) -> dict[str, Any]:
    from chalicelib.reporter import handle_event

    return handle_event(event.to_dict(), event.context)


@app.schedule(Rate(1, unit=Rate.MINUTES), name="sweep")
def sweep(event: Any) -> dict[str, int]:
    from chalicelib.sweep import handle_sweep

    return handle_sweep(event.to_dict(), event.context, sweeper=deps.sweeper())
