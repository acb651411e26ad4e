"""What every part of the schedules package shares: the error, field names, the plan protocol."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

MAX_EXPRESSION_LENGTH = 256
EXPRESSION_FIELD = "schedule_expression"
TIMEZONE_FIELD = "schedule_timezone"

_ONE_MINUTE = timedelta(minutes=1)
_FIVE_YEARS_IN_MINUTES = (5 * 365 + 2) * 24 * 60


class ScheduleError(ValueError):
    """An expression or timezone that cannot be scheduled; str(err) says why."""

    def __init__(self, message: str, field: str = EXPRESSION_FIELD) -> None:
        super().__init__(message)
        self.field = field


class Plan(Protocol):
    """How a kind of schedule computes its next occurrence (a UTC minute, or None)."""

    def next_after(
        self, after: datetime, anchor: datetime | None, zone: ZoneInfo | None
    ) -> datetime | None: ...
