"""The API: a GET of one job through the API Lambda's handler against a bare GetItem of it.

The GET reads the job and its newest runs in one Query of the job's run partition (its copy
sorts after its runs): `next` and `last_run` are derived from the runs, as neither the tick
nor the worker writes the job.

The handler is invoked as Lambda invokes it: `app.app(event, context)` with the API Gateway
proxy event Chalice's own local gateway builds for the request (built once; its building is
API Gateway's work, not the function's). The bare side is the same GetItem (strongly
consistent, as the store reads) through the same client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.runs import Run, scheduled_run_id
from chalicelib.store import job_key, run_to_item

from .backend import TOKEN, Backend
from .seed import MINUTE, bench_job, median, stored_items, timed_with_cpu


@dataclass
class ApiTimes:
    """Paired per-request times: the handler's and the bare GetItem's."""

    handler: list[float]
    get_item: list[float]
    handler_cpu: list[float]
    get_item_cpu: list[float]

    @property
    def ratio(self) -> float:
        return median(self.handler) / median(self.get_item)


def api_get_vs_get_item(pairs: int) -> ApiTimes:
    """`pairs` interleaved GETs through the handler and bare GetItems of the same job."""
    from chalice.local import LambdaContext, LambdaEventConverter, RouteMatcher

    import app as app_module

    backend = Backend("bench-api", "bench-api-runs")
    # A job not yet due (its `next` is read as stored) with a run in its history: the GET
    # reads the job and its newest runs.
    job = bench_job(
        0, next_at=datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1)
    )
    backend.put_items(
        stored_items(job)
        + [
            run_to_item(
                Run(
                    run_id=scheduled_run_id(MINUTE),
                    job_id=job.id,
                    account=job.account,
                    group=job.group,
                    trigger="schedule",
                    scheduled_for=MINUTE.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    status="succeeded",
                    finished_at=MINUTE.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    output="Hello, spinup!",
                ),
                int(MINUTE.timestamp()) + 86400 * 365,
            )
        ]
    )
    app = app_module.app
    event = LambdaEventConverter(
        RouteMatcher(list(app.routes)), app.api.binary_types
    ).create_lambda_event(
        method="GET",
        path=f"/v1/minion/{job.account}/jobs/{job.group}/{job.id}",
        headers={"X-Auth-Token": TOKEN},
        body=b"",
    )
    context = LambdaContext(function_name="api_handler", memory_size=512, max_runtime_ms=30000)
    key = job_key(job.account, job.group, job.id)
    dynamodb = backend.dynamodb

    def handler() -> None:
        response = app(event, context)
        if response["statusCode"] != 200 or json.loads(response["body"])["id"] != job.id:
            raise RuntimeError(f"GET of the bench job answered {response}")

    def get_item() -> None:
        if "Item" not in dynamodb.get_item(TableName=backend.table, Key=key, ConsistentRead=True):
            raise RuntimeError("the bench job is not in the table")

    for _ in range(5):  # warm up: the client, its connections, the handler's lazy parts
        handler()
        get_item()
    times: dict[Any, list[tuple[float, float]]] = {handler: [], get_item: []}
    for pair in range(pairs):
        for side in (handler, get_item) if pair % 2 == 0 else (get_item, handler):
            times[side].append(timed_with_cpu(side))
    return ApiTimes(
        handler=[w for w, _ in times[handler]],
        get_item=[w for w, _ in times[get_item]],
        handler_cpu=[c for _, c in times[handler]],
        get_item_cpu=[c for _, c in times[get_item]],
    )
