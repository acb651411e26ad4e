"""What the commands print: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click

MAX_CELL = 60


def print_json(data: Any) -> None:
    """The API's answer as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def cell(value: Any, limit: int | None = MAX_CELL) -> str:
    """One value as table text: `-` for nothing, yes/no, `k=v` pairs, one line, cut to `limit`."""
    if value is None or value == "":
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, Mapping):
        text = " ".join(f"{k}={v}" for k, v in value.items()) or "-"
    else:
        text = " ".join(str(value).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns aligned on the widest cell, two spaces apart, under the given headers."""
    lines = [list(headers)] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=False)).rstrip()
        for line in lines
    )


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """One record as `name  value` lines, values aligned (never cut)."""
    pairs = [(name, cell(value, limit=None)) for name, value in pairs]
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name.ljust(width)}  {value}".rstrip() for name, value in pairs)


def last_run(summary: Mapping[str, Any] | None) -> str | None:
    """A job's `last_run` summary in a few words."""
    if not summary:
        return None
    when = summary.get("finished_at") or summary.get("scheduled_for")
    return f"{summary.get('status')} {when} ({summary.get('run_id')})"


def job_text(job: Mapping[str, Any]) -> str:
    """A job object as aligned fields."""
    pairs: list[tuple[str, Any]] = [
        (name, job.get(name))
        for name in (
            "id",
            "account",
            "group",
            "name",
            "description",
            "details",
            "schedule_expression",
            "schedule_timezone",
            "enabled",
            "next",
        )
    ]
    pairs.append(("last_run", last_run(job.get("last_run"))))
    pairs += [
        (name, job[name])
        for name in ("starting_deadline_seconds", "concurrency_policy", "max_attempts")
        if name in job
    ]
    if "notify" in job:
        pairs.append(("notify", ", ".join(job["notify"]) or "none"))
    if job.get("tags"):
        pairs.append(("tags", {t["key"]: t.get("value", "") for t in job["tags"]}))
    pairs += [(name, job.get(name)) for name in ("modified_at", "modified_by", "version")]
    return fields(pairs)


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> str:
    """Jobs, one a line, with what they do and when they run next."""
    return table(
        ["GROUP", "ID", "NAME", "ENABLED", "SCHEDULE", "NEXT", "LAST RUN"],
        [
            [
                j["group"],
                j["id"],
                j.get("name"),
                j.get("enabled"),
                _schedule(j),
                j.get("next"),
                last_run(j.get("last_run")),
            ]
            for j in jobs
        ],
    )


def run_text(run: Mapping[str, Any]) -> str:
    """A run record as aligned fields."""
    names = [
        "run_id",
        "job_id",
        "account",
        "group",
        "trigger",
        "status",
        "scheduled_for",
        "queued_at",
        "started_at",
        "finished_at",
        "attempts",
        "output",
        "error",
        "error_code",
        "data",
    ]
    return fields((name, run[name]) for name in names if name in run)


def runs_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """Runs, newest first, one a line."""
    return table(
        [
            "RUN ID",
            "STATUS",
            "TRIGGER",
            "SCHEDULED FOR",
            "FINISHED AT",
            "ATTEMPTS",
            "OUTPUT / ERROR",
        ],
        [
            [
                r["run_id"],
                r.get("status"),
                r.get("trigger"),
                r.get("scheduled_for"),
                r.get("finished_at"),
                r.get("attempts"),
                r.get("error") or r.get("output"),
            ]
            for r in runs
        ],
    )


def preview_text(preview: Mapping[str, Any]) -> str:
    """A schedule preview: the expression, and its next occurrences in UTC and local time."""
    tz = preview.get("timezone") or "UTC"
    head = fields(
        [
            ("expression", preview.get("expression")),
            ("timezone", tz),
            ("valid", preview.get("valid")),
        ]
    )
    occurrences = preview.get("occurrences") or []
    if not occurrences:
        return head
    return (
        head
        + "\n\n"
        + table(["UTC", f"LOCAL ({tz})"], [[o["utc"], o["local"]] for o in occurrences])
    )


def _schedule(job: Mapping[str, Any]) -> str:
    expression = job.get("schedule_expression") or "-"
    tz = job.get("schedule_timezone")
    return expression if tz in (None, "", "UTC") else f"{expression} ({tz})"
