"""Interval (`rate(...)`, `@every`) and one-time (`at(...)`) plans."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .common import _FIVE_YEARS_IN_MINUTES, _ONE_MINUTE, ScheduleError
from .zones import _local_to_utc


def _checked_interval(minutes: int) -> int:
    if minutes > _FIVE_YEARS_IN_MINUTES:
        raise ScheduleError("never fires within five years")
    return minutes


@dataclass(frozen=True)
class _IntervalPlan:
    """rate(...) and @every: every `minutes` from an anchor, whatever the timezone."""

    minutes: int

    def next_after(
        self, after: datetime, anchor: datetime | None, zone: ZoneInfo | None
    ) -> datetime | None:
        if anchor is None:
            raise ValueError("an interval schedule needs an anchor")
        elapsed = (after - anchor) // _ONE_MINUTE
        periods = max(1, elapsed // self.minutes + 1)
        return anchor + timedelta(minutes=periods * self.minutes)


@dataclass(frozen=True)
class _OneTimePlan:
    """at(...): one wall-clock minute in the schedule's timezone."""

    local: datetime
    at_utc: datetime | None = None

    def in_zone(self, zone: ZoneInfo | None) -> _OneTimePlan:
        """The same plan with its occurrence resolved to UTC."""
        if zone is None:
            return _OneTimePlan(self.local, self.local.replace(tzinfo=UTC))
        try:
            return _OneTimePlan(self.local, _local_to_utc(self.local, zone))
        except OverflowError:
            raise ScheduleError("at(...) is out of range in this timezone") from None

    def next_after(
        self, after: datetime, anchor: datetime | None, zone: ZoneInfo | None
    ) -> datetime | None:
        assert self.at_utc is not None
        return self.at_utc if self.at_utc > after else None
