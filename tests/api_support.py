"""Records the API tests store: the job and run the OpenAPI document's examples name, shared by
the document's example tests (test_openapi.py) and the fuzzer (test_fuzz_api.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.jobs import Job
from chalicelib.runs import Run

STAMP = datetime(2020, 2, 27, 16, 22, 9, tzinfo=UTC)

# The document's examples name the first job, so the examples phase reaches real records too.
SEEDED_JOBS = (
    Job(
        account="spinup",
        group="space-xy",
        id="6bcfa79f-615e-470d-97c1-687f3357497d",
        name="dummy-spin1234567",
        schedule_expression="* * * ? *",
        details={"runner": "dummyRunner"},
        enabled=True,
        modified_at=STAMP,
        anchor=STAMP,
        next=STAMP,
        modified_by="someone",
    ),
    Job(
        account="spinup",
        group="space-xy",
        id="0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b",
        name="stop-web",
        schedule_expression="cron(0 18 ? * MON-FRI *)",
        details={
            "runner": "instanceRunner",
            "instance_id": "i-0123456789abcdef0",
            "instance_action": "stop",
        },
        modified_at=STAMP,
        anchor=STAMP,
        tags=(("team", "web"),),
        max_attempts=2,
    ),
    Job(
        account="limited",
        group="nightly",
        id="9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
        name="nightly",
        schedule_expression="rate(1 day)",
        details={"runner": "dummyRunner"},
        modified_at=STAMP,
        anchor=STAMP,
        concurrency_policy="Forbid",
    ),
)
SEEDED_RUN = Run(
    run_id="20200227T162300Z-s",
    job_id=SEEDED_JOBS[0].id,
    account="spinup",
    group="space-xy",
    trigger="schedule",
    scheduled_for="2020-02-27T16:23:00Z",
    status="succeeded",
    queued_at="2020-02-27T16:23:01Z",
    started_at="2020-02-27T16:23:02Z",
    finished_at="2020-02-27T16:23:03Z",
    attempts=1,
    output="ok",
)
