"""Runs: one execution of a job for one occurrence (or one run-now), and its record."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal, Mapping

Status = Literal["queued", "running", "succeeded", "failed", "missed", "skipped"]
Trigger = Literal["schedule", "manual"]
FINAL_STATUSES = ("succeeded", "failed", "missed", "skipped")
MAX_TEXT = 4096

RUN_ID = re.compile(r"^\d{8}T\d{6}Z-(s|m[0-9a-f]{8})$")
_STAMP = "%Y%m%dT%H%M%SZ"


def scheduled_run_id(occurrence: datetime) -> str:
    """The run id of a scheduled occurrence: derived from its time, so a re-delivered tick
    produces the same id and the id itself is the lock against running it twice."""
    return occurrence.astimezone(timezone.utc).strftime(_STAMP) + "-s"


def manual_run_id(now: datetime) -> str:
    """A fresh run id for a run-now; sorts by time with the scheduled ones."""
    return now.astimezone(timezone.utc).strftime(_STAMP) + "-m" + secrets.token_hex(4)


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
    """A run record as stored and as returned by the API."""

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
        body = {
            "run_id": self.run_id, "job_id": self.job_id, "account": self.account,
            "group": self.group, "trigger": self.trigger, "scheduled_for": self.scheduled_for,
            "queued_at": self.queued_at, "started_at": self.started_at,
            "finished_at": self.finished_at, "status": self.status, "attempts": self.attempts,
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
        summary = {"run_id": self.run_id, "status": self.status,
                   "scheduled_for": self.scheduled_for, "finished_at": self.finished_at}
        if self.output is not None:
            summary["output"] = truncate(self.output, 256)
        if self.error is not None:
            summary["error"] = truncate(self.error, 256)
        return summary

    def with_status(self, status: Status, **changes: Any) -> "Run":
        """A copy with another status (and other changed fields)."""
        return replace(self, status=status, **changes)
