"""Runs: one execution of a job for one occurrence (or one run-now), and its record."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["queued", "running", "succeeded", "failed", "missed", "skipped"]
Trigger = Literal["schedule", "manual"]
FINAL_STATUSES = ("succeeded", "failed", "missed", "skipped")
MAX_TEXT = 4096

# `<UTC second>-s` for a scheduled occurrence; `<UTC second>-m<millisecond><10 hex>` for a
# run-now (`-m<8 hex>`, random, before run ids ordered: still valid in paths).
RUN_ID = re.compile(r"^\d{8}T\d{6}Z-(s|m[0-9a-f]{8}|m\d{3}[0-9a-f]{10})$")
_STAMP = "%Y%m%dT%H%M%SZ"
_SEQUENCE_BITS = 40
_last_manual: tuple[str, int] = ("", 0)
_manual_lock = threading.Lock()


def scheduled_run_id(occurrence: datetime) -> str:
    """The run id of a scheduled occurrence: derived from its time, so a re-delivered tick
    produces the same id and the id itself is the lock against running it twice."""
    return occurrence.astimezone(UTC).strftime(_STAMP) + "-s"


def manual_run_id(now: datetime) -> str:
    """A fresh run id for a run-now that sorts after every id this process issued before in
    the same second: `<second>-m<millisecond><10 hex>`.

    The second stays the prefix (as in scheduled ids, so old and new ids sort by time
    together); within it, the millisecond and then a counter that starts at a random point
    (unique across processes) and only goes up in this process, as a ULID's does, so two
    run-nows in the same millisecond, or under a clock that stepped back, still list in the
    order they were queued.
    """
    utc = now.astimezone(UTC)
    second = utc.strftime(_STAMP)
    global _last_manual
    with _manual_lock:
        # The random start leaves half the counter's range free for increments.
        value = (utc.microsecond // 1000) << _SEQUENCE_BITS | secrets.randbits(_SEQUENCE_BITS - 1)
        last_second, last_value = _last_manual
        if last_second == second and value <= last_value:
            value = last_value + 1
        _last_manual = (second, value)
    millisecond, sequence = value >> _SEQUENCE_BITS, value & ((1 << _SEQUENCE_BITS) - 1)
    return f"{second}-m{min(millisecond, 999):03d}{sequence:010x}"


def is_run_id(value: str) -> bool:
    """Whether `value` has the form of a run id."""
    return bool(RUN_ID.fullmatch(value or ""))


def truncate(text: str | None, limit: int = MAX_TEXT) -> str | None:
    """`text` cut to `limit` characters, marked when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 14] + "…[truncated]"


@dataclass(frozen=True)
class Run:
    """A run record as stored and as returned by the API.

    Its times are RFC 3339 strings (jobs.iso), as stored and as sent, where Job keeps
    datetimes: the tick, worker and store build and compare them as text, so a change to
    datetimes belongs with those modules (issue 18, point 1).
    """

    run_id: str
    job_id: str
    account: str
    group: str
    trigger: Trigger
    scheduled_for: str
    status: Status
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    output: str | None = None
    error: str | None = None
    error_code: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        """The run record of the API."""
        body: dict[str, Any] = {
            "run_id": self.run_id,
            "job_id": self.job_id,
            "account": self.account,
            "group": self.group,
            "trigger": self.trigger,
            "scheduled_for": self.scheduled_for,
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "attempts": self.attempts,
        }
        if self.output is not None:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        if self.error_code is not None:
            body["error_code"] = self.error_code
        if self.data:
            body["data"] = dict(self.data)
        return body

    def summary(self) -> dict[str, Any]:
        """The `last_run` summary copied onto the job."""
        summary: dict[str, Any] = {
            "run_id": self.run_id,
            "status": self.status,
            "scheduled_for": self.scheduled_for,
            "finished_at": self.finished_at,
        }
        if self.output is not None:
            summary["output"] = truncate(self.output, 256)
        if self.error is not None:
            summary["error"] = truncate(self.error, 256)
        return summary

    def with_status(self, status: Status, **changes: Any) -> Run:
        """A copy with another status (and other changed fields)."""
        return replace(self, status=status, **changes)
