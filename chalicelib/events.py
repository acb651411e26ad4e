"""Run state-change events on EventBridge: what a rule routes to SNS, chat or a function.

Each event has source `minion`, detail-type `Minion Run State Change`, and the detail built by
`run_detail` (documented in docs/operations.md "Run events"). Publishing is best effort: the
outcome is recorded before its event is collected, and an event that EventBridge refuses (or a
PutEvents that fails) is logged and counted (metric EventsNotPublished), never retried by
failing the run or its message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .jobs import NOTIFY_OUTCOMES, Job
from .observability import emit, logger
from .runs import Run

SOURCE = "minion"
DETAIL_TYPE = "Minion Run State Change"
DEFAULT_NOTIFY = ("failed", "missed", "skipped")
MAX_ENTRIES = 10  # PutEvents takes at most 10 entries per call
MAX_TEXT = 1024  # the error (and output) in an event: an entry is at most 256 KB in all


class NotifyConfigError(ValueError):
    """MINION_NOTIFY_DEFAULT names an outcome that is not one of NOTIFY_OUTCOMES."""


def parse_notify_default(text: str | None) -> tuple[str, ...]:
    """The deployment's default outcomes: comma-separated, `none` for none, unset: the default."""
    if text is None or not text.strip():
        return DEFAULT_NOTIFY
    if text.strip().lower() == "none":
        return ()
    outcomes = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [o for o in outcomes if o not in NOTIFY_OUTCOMES]
    if unknown:
        raise NotifyConfigError(
            f"MINION_NOTIFY_DEFAULT: unknown outcome {unknown[0]!r}; "
            f"expected {', '.join(NOTIFY_OUTCOMES)} or none"
        )
    return outcomes


def run_path(account: str, group: str, job_id: str, run_id: str) -> str:
    """The API path of a run."""
    return "/v1/minion/{}/jobs/{}/{}/runs/{}".format(
        *(quote(part, safe="") for part in (account, group, job_id, run_id))
    )


def run_detail(
    run: Run, status: str, job: Job | None, api_url: str = "", retry_in_seconds: int | None = None
) -> dict[str, Any]:
    """The documented detail of a run's event (`status` may be `retrying`, which no record has)."""
    detail: dict[str, Any] = {
        "account": run.account,
        "group": run.group,
        "job_id": run.job_id,
        "job_name": job.name if job is not None else None,
        "run_id": run.run_id,
        "trigger": run.trigger,
        "scheduled_for": run.scheduled_for,
        "status": status,
        "attempts": run.attempts,
        "finished_at": run.finished_at,
        "error_code": run.error_code,
        "error": run.error[:MAX_TEXT] if run.error is not None else None,
        "run_url": api_url.rstrip("/") + run_path(run.account, run.group, run.job_id, run.run_id),
    }
    if retry_in_seconds is not None:
        detail["retry_in_seconds"] = retry_in_seconds
    return detail


@dataclass
class EventPublisher:
    """Collects a batch's run events, then publishes them with as few PutEvents as it can."""

    client: Any
    bus: str = "default"
    default_notify: tuple[str, ...] = DEFAULT_NOTIFY
    api_url: str = ""
    _pending: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def wanted(self, status: str, job: Job | None) -> bool:
        """Whether `status` is announced for `job`: its own `notify`, else the default."""
        chosen = job.notify if job is not None and job.notify is not None else self.default_notify
        return status in chosen

    def collect(
        self,
        run: Run,
        job: Job | None,
        status: str | None = None,
        retry_in_seconds: int | None = None,
    ) -> bool:
        """Keep the event of `run` (as `status`, default its own) if it is wanted; whether kept."""
        status = status or run.status
        if not self.wanted(status, job):
            return False
        detail = run_detail(run, status, job, self.api_url, retry_in_seconds)
        entry = {
            "Source": SOURCE,
            "DetailType": DETAIL_TYPE,
            "EventBusName": self.bus,
            "Detail": json.dumps(detail, separators=(",", ":")),
        }
        with self._lock:
            self._pending.append(entry)
        return True

    def pending(self) -> int:
        """Events collected and not yet published."""
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Publish the collected events, 10 per PutEvents; how many EventBridge did not take.

        Never raises: a run's outcome stands whether or not its event was published.
        """
        with self._lock:
            entries, self._pending = self._pending, []
        failed = 0
        for start in range(0, len(entries), MAX_ENTRIES):
            failed += self._put(entries[start : start + MAX_ENTRIES])
        try:  # best effort too: a metrics failure must not fail the batch either
            if failed:
                emit("EventsNotPublished", failed)
            if len(entries) > failed:
                emit("EventsPublished", len(entries) - failed)
        except Exception:
            logger.exception("events metrics not emitted")
        return failed

    def _put(self, chunk: list[dict[str, Any]]) -> int:
        try:
            response = self.client.put_events(Entries=chunk)
        except Exception as error:
            logger.error(
                "run events not published",
                extra={
                    "events": len(chunk),
                    "error_type": type(error).__name__,
                    "run_ids": _run_ids(chunk),
                },
            )
            return len(chunk)
        failed = int(response.get("FailedEntryCount") or 0)
        if failed:
            codes = sorted(
                {r.get("ErrorCode", "") for r in response.get("Entries", []) if r.get("ErrorCode")}
            )
            logger.error(
                "run events refused by EventBridge",
                extra={
                    "events": len(chunk),
                    "failed": failed,
                    "error_codes": codes,
                    "run_ids": _run_ids(
                        c
                        for c, r in zip(chunk, response.get("Entries", []), strict=False)
                        if r.get("ErrorCode")
                    ),
                },
            )
        return failed


def _run_ids(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    ids = []
    for entry in entries:
        try:
            ids.append(json.loads(entry["Detail"])["run_id"])
        except (KeyError, ValueError):
            continue
    return ids
