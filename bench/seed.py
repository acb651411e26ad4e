"""Jobs for the bench, built as the service stores them (`chalicelib.store.job_to_item`)."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.jobs import Job
from chalicelib.store import copy_of, due_entry_of, job_to_item

from .backend import ACCOUNT, SHARDS

# The tick minute of every measurement, and a schedule that is due at it exactly once a day.
MINUTE = datetime(2026, 1, 30, 10, 17, tzinfo=UTC)
DUE_SCHEDULE = "17 10 * * *"


def job_id(index: int) -> str:
    """A deterministic job id of the server's form (a version 4 UUID)."""
    return str(uuid.UUID(int=index, version=4))


def bench_job(
    index: int, *, next_at: datetime, schedule: str = DUE_SCHEDULE, group: str = "bench"
) -> Job:
    """An enabled dummyRunner job whose next occurrence is `next_at`."""
    return Job(
        account=ACCOUNT,
        group=group,
        id=job_id(index),
        name=f"bench-{index}",
        schedule_expression=schedule,
        details={"runner": "dummyRunner"},
        description="a job of the bench",
        enabled=True,
        modified_at=MINUTE - timedelta(days=1),
        modified_by="bench",
        anchor=MINUTE - timedelta(days=1),
        next=next_at,
    )


def stored_items(job: Job, *, copy: bool = True) -> list[dict[str, Any]]:
    """The items the API writes for a job: the job item, its copy beside its runs (unless
    `copy` is False) and, when enabled, its due item."""
    item = job_to_item(job, SHARDS)
    entry = due_entry_of(job, SHARDS)
    return [item] + ([copy_of(item, job.id)] if copy else []) + ([entry.to_item()] if entry else [])


# The tick bench's jobs (due_items, later_items) have no copies: the tick reads none, and the
# full-scan baseline stands for a scheduler whose table holds one item a job.


def due_items(count: int, first: int = 0) -> list[dict[str, Any]]:
    """The items of `count` jobs due at MINUTE (without copies)."""
    return [
        item
        for i in range(count)
        for item in stored_items(bench_job(first + i, next_at=MINUTE), copy=False)
    ]


def later_items(count: int, first: int) -> list[dict[str, Any]]:
    """The items of `count` jobs due after MINUTE (spread over the following week; without
    copies)."""
    return [
        item
        for i in range(count)
        for item in stored_items(
            bench_job(
                first + i, next_at=MINUTE + timedelta(minutes=1 + i % 10080), schedule="*/5 * * * *"
            ),
            copy=False,
        )
    ]


def timed(action: Callable[[], Any]) -> float:
    """Seconds `action` took."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def timed_with_cpu(action: Callable[[], Any]) -> tuple[float, float]:
    """Wall seconds `action` took, and the CPU seconds this process spent meanwhile (all its
    threads: the client side only, the emulator runs in another process)."""
    cpu = time.process_time()
    wall = timed(action)
    return wall, time.process_time() - cpu


def median(values: list[float]) -> float:
    """The median (the figures are medians, never means: a noisy machine has long tails)."""
    return statistics.median(values)
