"""Schedule expressions: validation and next occurrences (pure, no AWS).

Four dialects share the `schedule_expression` field (specified in spec/scheduling.md):
minion cron (5 fields, descriptors, `@every`), AWS `cron(...)` (6 fields), `rate(...)` and
`at(...)`. Calendar dialects are evaluated in local wall-clock time of the schedule's IANA
timezone, then mapped to UTC: a repeated wall time fires at its first instance, a wall time
skipped by a DST gap fires at the first minute after the gap.

Rules taken from peers where cron implementations differ:
- a minion day field written with a leading `*` (`*`, `?`, `*/2`, `*/5,10`) makes a day match
  both day fields; only two restricted fields fire when either matches (robfig/cron v1's
  star bit, Vixie/Debian cron, cronsim; croniter reads `*/2` as restricted and ORs);
- a reversed range is refused in the minion dialect (robfig/cron, cronsim) and wraps round in
  AWS cron's minute, hour, day-of-month, month and day-of-week, its step carried across the
  wrap (Quartz's CronExpression, whose dialect EventBridge's is; `20-2` hours, `FRI-MON`), never
  in the year;
- AWS years run 1970-2199: a `*` year stops firing after 2199 (EventBridge's range);
- `7/n` in the minion day-of-week is refused: steps there end at 6 (robfig refuses 7 there).
Choices the spec leaves open: `nW` does not fire in months shorter than n; `at(...)` accepts
any seconds and fires at that minute; a schedule whose years or `at` time are past still parses
(stored jobs are re-parsed) and simply never fires again (the API refuses to set one anew for
an enabled job).

The package: `common` (the error, the plan protocol), `fields` (cron fields), `minion` (5-field
cron, descriptors, `@every`), `aws` (`cron(...)`, `rate(...)`, `at(...)`), `calendar_plan` (the
croniter adapter), `plans` (interval and one-time plans), `zones` (IANA zones and DST).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from .aws import _parse_at, _parse_aws_cron, _parse_rate
from .common import (
    EXPRESSION_FIELD,
    MAX_EXPRESSION_LENGTH,
    TIMEZONE_FIELD,
    Plan,
    ScheduleError,
)
from .minion import _parse_descriptor, _parse_minion_cron
from .plans import _OneTimePlan
from .zones import _resolve_zone, _utc_minute

__all__ = [
    "EXPRESSION_FIELD",
    "MAX_EXPRESSION_LENGTH",
    "TIMEZONE_FIELD",
    "Schedule",
    "ScheduleError",
    "parse_schedule",
]


@dataclass(frozen=True)
class Schedule:
    """A validated schedule expression in a timezone that computes its occurrences."""

    expression: str
    timezone: str
    kind: str  # "cron", "aws_cron", "rate", "at" or "every"
    _plan: Plan | None = field(default=None, repr=False, compare=False)
    _zone: ZoneInfo | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._plan is None:
            compiled = parse_schedule(self.expression, self.timezone)
            if compiled.kind != self.kind:
                raise ValueError(f"kind {self.kind!r} does not match {self.expression!r}")
            object.__setattr__(self, "_plan", compiled._plan)
            object.__setattr__(self, "_zone", compiled._zone)

    def is_interval(self) -> bool:
        """True for rate(...) and @every, whose occurrences count from an anchor."""
        return self.kind in ("rate", "every")

    def next_after(self, after: datetime, anchor: datetime | None = None) -> datetime | None:
        """First occurrence strictly after `after`, as a UTC minute; None when it never fires again.

        `after` is an aware datetime (any seconds). Interval schedules fire at anchor + k*N
        (k >= 1) and require `anchor`, the UTC minute the schedule was set; calendar schedules
        ignore it.
        """
        assert self._plan is not None
        after_minute = _utc_minute(after, "after")
        anchor_minute = None if anchor is None else _utc_minute(anchor, "anchor")
        try:
            return self._plan.next_after(after_minute, anchor_minute, self._zone)
        except OverflowError:
            return None  # beyond datetime's year 9999

    def occurrences(
        self, after: datetime, count: int, anchor: datetime | None = None
    ) -> list[datetime]:
        """Up to `count` successive occurrences after `after` (fewer when it ends)."""
        found: list[datetime] = []
        current = after
        while len(found) < count:
            following = self.next_after(current, anchor)
            if following is None:
                break
            found.append(following)
            current = following
        return found


def parse_schedule(expression: str, timezone: str = "UTC") -> Schedule:
    """Validate and compile; raise ScheduleError saying why it is rejected."""
    if not isinstance(expression, str):
        raise ScheduleError("expression must be a string")
    if not isinstance(timezone, str):
        raise ScheduleError("timezone must be a string", TIMEZONE_FIELD)
    return _parse_cached(expression, timezone)


@lru_cache(maxsize=4096)
def _parse_cached(expression: str, timezone: str) -> Schedule:
    kind, plan = _parse_expression(expression)
    zone = _resolve_zone(timezone)
    if isinstance(plan, _OneTimePlan):
        plan = plan.in_zone(zone)
    return Schedule(expression, timezone, kind, plan, zone)


def _parse_expression(expression: str) -> tuple[str, Plan]:
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ScheduleError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    text = expression.strip()
    if not text:
        raise ScheduleError("expression is empty")
    lowered = text.lower()
    for prefix, kind, parse in (
        ("cron(", "aws_cron", _parse_aws_cron),
        ("rate(", "rate", _parse_rate),
        ("at(", "at", _parse_at),
    ):
        if lowered.startswith(prefix):
            if not text.endswith(")"):
                raise ScheduleError(f"{prefix}...) is missing its closing parenthesis")
            return kind, parse(text[len(prefix) : -1].strip())
    if text.startswith("@"):
        return _parse_descriptor(text)
    return "cron", _parse_minion_cron(text)
