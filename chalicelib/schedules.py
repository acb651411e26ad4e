"""Schedule expressions: validation and next occurrences (pure, no AWS).

Four dialects share the `schedule_expression` field (specified in spec/scheduling.md):
minion cron (5 fields, descriptors, `@every`), AWS `cron(...)` (6 fields), `rate(...)` and
`at(...)`. Calendar dialects are evaluated in local wall-clock time of the schedule's IANA
timezone, then mapped to UTC: a repeated wall time fires at its first instance, a wall time
skipped by a DST gap fires at the first minute after the gap.

Choices the spec leaves open: a minion day field is unrestricted (for the day-of-month OR
day-of-week rule) only when written `*`, `?` or `*/1`, so `*/2` restricts it, as croniter
and robfig/cron do; `nW` does not fire in months shorter than n; `at(...)` accepts any
seconds and fires at that minute; a schedule whose years or `at` time are past still parses
(stored jobs are re-parsed) and simply never fires again.

The calendar engine is our own rather than croniter's: croniter reads a 6th field as seconds,
accepts its `R`/`H` extensions, rejects `?` outside the day fields, lacks `LW`, `nL` and `L` in
the day of week, and fires a repeated wall time twice when clocks go back.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Schedule", "ScheduleError", "parse_schedule"]

UTC = timezone.utc
MAX_EXPRESSION_LENGTH = 256
EXPRESSION_FIELD = "schedule_expression"
TIMEZONE_FIELD = "schedule_timezone"

_ONE_MINUTE = timedelta(minutes=1)
_FIVE_YEARS_IN_MINUTES = (5 * 365 + 2) * 24 * 60
# A cron without a year field fires in every five-year window (checked at parse time); past
# 2100, a non-leap century year, 29 February can be eight years apart.
_SEARCH_YEARS = 10
# The Gregorian calendar repeats every 28 years between 1901 and 2099: checking a span of
# years from 2000 covers every combination of weekday and leap year.
_CHECK_FIRST_YEAR = 2000
_CHECK_LAST_WINDOW = 2028


class ScheduleError(ValueError):
    """An expression or timezone that cannot be scheduled; str(err) says why."""

    def __init__(self, message: str, field: str = EXPRESSION_FIELD) -> None:
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------------------------------------
# Public interface
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A validated schedule expression in a timezone that computes its occurrences."""

    expression: str
    timezone: str
    kind: str  # "cron", "aws_cron", "rate", "at" or "every"
    _plan: _Plan | None = field(default=None, repr=False, compare=False)
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
        current: datetime | None = after
        while len(found) < count:
            current = self.next_after(current, anchor)
            if current is None:
                break
            found.append(current)
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


# ---------------------------------------------------------------------------------------------
# Dialects
# ---------------------------------------------------------------------------------------------


def _parse_expression(expression: str) -> tuple[str, _Plan]:
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


_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _parse_descriptor(text: str) -> tuple[str, _Plan]:
    word, *rest = text.split(None, 1)
    word, argument = word.lower(), rest[0] if rest else ""
    if word == "@every":
        return "every", _IntervalPlan(_parse_go_duration(argument.strip()))
    if word not in _DESCRIPTORS:
        raise ScheduleError(f"unknown descriptor {word}")
    if argument.strip():
        raise ScheduleError(f"{word} takes no argument")
    return "cron", _parse_minion_cron(_DESCRIPTORS[word])


def _parse_minion_cron(text: str) -> _CalendarPlan:
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected 5 fields, found {len(fields)}")
    # `?` means `*` in every field of the minion dialect.
    minute, hour, dom, month, dow = (f.replace("?", "*") for f in fields)
    doms = _parse_field(dom, _DAY_OF_MONTH)
    dows = frozenset(0 if d == 7 else d for d in _parse_field(dow, _CRON_DAY_OF_WEEK))
    dom_star, dow_star = _is_star(dom), _is_star(dow)
    rule: _DayRule
    if dom_star and dow_star:
        rule = _AllDays()
    elif dom_star:
        rule = _DowSet(dows)
    elif dow_star:
        rule = _DomSet(tuple(sorted(doms)))
    else:
        rule = _EitherDays(tuple(sorted(doms)), dows)  # classic cron: either may match
    plan = _CalendarPlan(
        minutes=_parse_field(minute, _MINUTE),
        hours=_parse_field(hour, _HOUR),
        months=_parse_field(month, _MONTH),
        rule=rule,
        years=None,
    )
    plan.check_fires()
    return plan


def _is_star(text: str) -> bool:
    """A day field counts as unrestricted (for the OR rule) only when written as a bare star."""
    return text in ("*", "*/1")


def _parse_aws_cron(body: str) -> _CalendarPlan:
    fields = body.split()
    if len(fields) != 6:
        raise ScheduleError(f"expected 6 fields in cron(...), found {len(fields)}")
    minute, hour, dom, month, dow, year = fields
    for name, text in (("minute", minute), ("hour", hour), ("month", month), ("year", year)):
        if "?" in text:
            raise ScheduleError(f"? is not allowed in the {name} field")
    if dom == "?" and dow == "?":
        raise ScheduleError("day-of-month and day-of-week cannot both be ?")
    if dom != "?" and dow != "?":
        raise ScheduleError("one of day-of-month and day-of-week must be ?")
    rule = _parse_aws_day_of_month(dom) if dow == "?" else _parse_aws_day_of_week(dow)
    years = None if year == "*" else tuple(sorted(_parse_field(year, _YEAR)))
    plan = _CalendarPlan(
        minutes=_parse_field(minute, _MINUTE),
        hours=_parse_field(hour, _HOUR),
        months=_parse_field(month, _MONTH),
        rule=rule,
        years=years,
    )
    plan.check_fires()
    return plan


def _parse_aws_day_of_month(field_text: str) -> _DayRule:
    text = field_text.upper()
    if "?" in text:
        raise ScheduleError("? must stand alone in the day-of-month field")
    if text == "*":
        return _AllDays()
    if text == "L":
        return _LastDay()
    if text == "LW":
        return _LastWeekday()
    nearest = re.fullmatch(r"([0-9]+)W", text)
    if nearest:
        day = _number(nearest.group(1), _DAY_OF_MONTH)
        return _NearestWeekday(day)
    if "L" in text or "W" in text:
        raise ScheduleError("L and W must stand alone in the day-of-month field (L, LW or 15W)")
    return _DomSet(tuple(sorted(_parse_field(field_text, _DAY_OF_MONTH))))


def _parse_aws_day_of_week(field_text: str) -> _DayRule:
    text = field_text.upper()
    if "?" in text:
        raise ScheduleError("? must stand alone in the day-of-week field")
    if text == "*":
        return _AllDays()
    if text == "L":
        return _DowSet(frozenset({6}))  # alone, L is the last day of the week: Saturday
    last = re.fullmatch(r"([0-9]+|[A-Z]{3})L", text)
    if last:
        return _LastDow(_aws_to_cron_weekday(_value(last.group(1), _AWS_DAY_OF_WEEK)))
    nth = re.fullmatch(r"([0-9]+|[A-Z]{3})#([0-9]+)", text)
    if nth:
        weekday = _aws_to_cron_weekday(_value(nth.group(1), _AWS_DAY_OF_WEEK))
        week = int(nth.group(2))
        if not 1 <= week <= 5:
            raise ScheduleError(f"week {week} in the day-of-week field is out of range 1-5")
        return _NthDow(weekday, week)
    if "L" in text or "#" in text:
        raise ScheduleError("L and # must stand alone in the day-of-week field (L, 6L or 6#3)")
    weekdays = _parse_field(field_text, _AWS_DAY_OF_WEEK)
    return _DowSet(frozenset(_aws_to_cron_weekday(d) for d in weekdays))


def _aws_to_cron_weekday(aws_day: int) -> int:
    """AWS numbers days 1-7 from Sunday; cron (and this module) 0-6 from Sunday."""
    return aws_day - 1


_RATE_UNITS = {"minute": 1, "minutes": 1, "hour": 60, "hours": 60, "day": 1440, "days": 1440}


def _parse_rate(body: str) -> _IntervalPlan:
    parts = body.split()
    if len(parts) != 2:
        raise ScheduleError("rate takes a value and a unit, e.g. rate(5 minutes)")
    value_text, unit = parts[0], parts[1].lower()
    if unit not in _RATE_UNITS:
        raise ScheduleError(f"rate unit {parts[1]!r} is not minute(s), hour(s) or day(s)")
    if re.fullmatch(r"[+-]?[0-9]+", value_text, re.ASCII) is None:
        raise ScheduleError(f"rate value {value_text!r} is not a whole number")
    value = int(value_text)
    if value < 1:
        raise ScheduleError("rate value must be at least 1")
    return _IntervalPlan(_checked_interval(value * _RATE_UNITS[unit]))


_GO_UNITS_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,  # noqa: RUF001 - Go accepts both micro signs
    "μs": 10**3,  # noqa: RUF001
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_GO_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")  # noqa: RUF001


def _parse_go_duration(text: str) -> int:
    """Minutes in a Go duration such as 1h30m; whole minutes only, at least one."""
    if not text:
        raise ScheduleError("@every needs a duration, e.g. @every 1h30m")
    if text.startswith("-"):
        raise ScheduleError("interval must be at least one minute")
    body = text[1:] if text.startswith("+") else text
    nanoseconds = Fraction(0)
    position = 0
    while position < len(body):
        part = _GO_DURATION_PART.match(body, position)
        if part is None:
            if body == "0":
                break
            raise ScheduleError(f"{text!r} is not a duration such as 1h30m")
        nanoseconds += Fraction(part.group(1)) * _GO_UNITS_NS[part.group(2)]
        position = part.end()
    minutes = nanoseconds / _GO_UNITS_NS["m"]
    if minutes < 1:
        raise ScheduleError("interval must be at least one minute")
    if minutes.denominator != 1:
        raise ScheduleError("interval must be a whole number of minutes")
    return _checked_interval(int(minutes))


def _checked_interval(minutes: int) -> int:
    if minutes > _FIVE_YEARS_IN_MINUTES:
        raise ScheduleError("never fires within five years")
    return minutes


def _parse_at(body: str) -> _OneTimePlan:
    """at(yyyy-mm-ddThh:mm:ss): any seconds are accepted and it fires at that minute."""
    match = re.fullmatch(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})", body)
    if match is None:
        raise ScheduleError("at(...) takes a date and time such as at(2026-03-01T09:30:00)")
    try:
        local = datetime(*(int(g) for g in match.groups()))
    except ValueError as err:
        raise ScheduleError(f"at({body}) is not a valid date and time: {err}") from None
    return _OneTimePlan(local.replace(second=0))


# ---------------------------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------------------------


class _FieldSpec(NamedTuple):
    name: str
    low: int
    high: int
    star_high: int  # end of `*` and `n/step`: day-of-week accepts 7 but `*` stops at 6
    names: dict[str, int]


_MONTH_NAMES = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_WEEKDAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

_MINUTE = _FieldSpec("minute", 0, 59, 59, {})
_HOUR = _FieldSpec("hour", 0, 23, 23, {})
_DAY_OF_MONTH = _FieldSpec("day-of-month", 1, 31, 31, {})
_MONTH = _FieldSpec("month", 1, 12, 12, _MONTH_NAMES)
_CRON_DAY_OF_WEEK = _FieldSpec(
    "day-of-week", 0, 7, 6, {name: i for i, name in enumerate(_WEEKDAY_NAMES)}
)
_AWS_DAY_OF_WEEK = _FieldSpec(
    "day-of-week", 1, 7, 7, {name: i + 1 for i, name in enumerate(_WEEKDAY_NAMES)}
)
_YEAR = _FieldSpec("year", 1970, 2199, 2199, {})


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    """Values of a comma list of `*`, `n`, `a-b`, each optionally `/step`."""
    values: set[int] = set()
    for element in text.split(","):
        if not element:
            raise ScheduleError(f"empty item in the {spec.name} field {text!r}")
        base, slash, step_text = element.partition("/")
        step = 1
        if slash:
            if re.fullmatch(r"[0-9]+", step_text) is None:
                raise ScheduleError(f"step {step_text!r} in the {spec.name} field is not a number")
            step = int(step_text)
            if step < 1:
                raise ScheduleError("step must be at least 1")
        if base == "*":
            low, high = spec.low, spec.star_high
        elif "-" in base:
            start, _, end = base.partition("-")
            low, high = _value(start, spec), _value(end, spec)
            if low > high:
                raise ScheduleError(f"range {base} in the {spec.name} field is reversed")
        else:
            low = _value(base, spec)
            high = spec.star_high if slash else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


def _value(token: str, spec: _FieldSpec) -> int:
    upper = token.upper()
    if upper in spec.names:
        return spec.names[upper]
    if re.fullmatch(r"[0-9]+", token):
        return _number(token, spec)
    if upper in ("R", "H") or upper.startswith("H("):
        raise ScheduleError(
            f"{token!r} in the {spec.name} field is a croniter extension, not cron"
        )
    if any(c in upper for c in "LW#"):
        raise ScheduleError(
            f"{token!r} is not a valid {spec.name} (L, W and # belong in the day fields of cron(...))"
        )
    raise ScheduleError(f"{token!r} is not a valid {spec.name}")


def _number(token: str, spec: _FieldSpec) -> int:
    number = int(token)
    if not spec.low <= number <= spec.high:
        raise ScheduleError(f"{spec.name} {number} is out of range {spec.low}-{spec.high}")
    return number


# ---------------------------------------------------------------------------------------------
# Which days of a month fire (weekdays numbered as cron: 0 = Sunday ... 6 = Saturday)
# ---------------------------------------------------------------------------------------------


class _DayRule(Protocol):
    def days(self, year: int, month: int) -> tuple[int, ...]: ...


def _month_shape(year: int, month: int) -> tuple[int, int]:
    """(cron weekday of the 1st, number of days) of a month."""
    monday_based, length = calendar.monthrange(year, month)
    return (monday_based + 1) % 7, length


def _weekday(first_weekday: int, day: int) -> int:
    return (first_weekday + day - 1) % 7


@dataclass(frozen=True)
class _AllDays:
    def days(self, year: int, month: int) -> tuple[int, ...]:
        return tuple(range(1, _month_shape(year, month)[1] + 1))


@dataclass(frozen=True)
class _DomSet:
    doms: tuple[int, ...]

    def days(self, year: int, month: int) -> tuple[int, ...]:
        length = _month_shape(year, month)[1]
        return tuple(d for d in self.doms if d <= length)


@dataclass(frozen=True)
class _DowSet:
    dows: frozenset[int]

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, length = _month_shape(year, month)
        return tuple(d for d in range(1, length + 1) if _weekday(first, d) in self.dows)


@dataclass(frozen=True)
class _EitherDays:
    doms: tuple[int, ...]
    dows: frozenset[int]

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, length = _month_shape(year, month)
        doms = set(self.doms)
        return tuple(
            d for d in range(1, length + 1) if d in doms or _weekday(first, d) in self.dows
        )


@dataclass(frozen=True)
class _LastDay:
    def days(self, year: int, month: int) -> tuple[int, ...]:
        return (_month_shape(year, month)[1],)


@dataclass(frozen=True)
class _LastWeekday:
    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, day = _month_shape(year, month)
        while _weekday(first, day) in (0, 6):
            day -= 1
        return (day,)


@dataclass(frozen=True)
class _NearestWeekday:
    """`15W`: the weekday nearest the 15th without leaving the month; none if it is too short."""

    day: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, length = _month_shape(year, month)
        if self.day > length:
            return ()
        weekday = _weekday(first, self.day)
        if weekday == 6:  # Saturday: the Friday before, or Monday 3rd when it is the 1st
            return (self.day - 1,) if self.day > 1 else (self.day + 2,)
        if weekday == 0:  # Sunday: the Monday after, or the Friday before on the last day
            return (self.day + 1,) if self.day < length else (self.day - 2,)
        return (self.day,)


@dataclass(frozen=True)
class _LastDow:
    weekday: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, length = _month_shape(year, month)
        return (length - (_weekday(first, length) - self.weekday) % 7,)


@dataclass(frozen=True)
class _NthDow:
    weekday: int
    week: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, length = _month_shape(year, month)
        day = 1 + (self.weekday - first) % 7 + 7 * (self.week - 1)
        return (day,) if day <= length else ()


@lru_cache(maxsize=16384)
def _matching_days(rule: _DayRule, year: int, month: int) -> tuple[int, ...]:
    return rule.days(year, month)


# ---------------------------------------------------------------------------------------------
# Plans: how each kind computes its next occurrence
# ---------------------------------------------------------------------------------------------


class _Plan(Protocol):
    def next_after(
        self, after: datetime, anchor: datetime | None, zone: ZoneInfo | None
    ) -> datetime | None: ...


class _CalendarPlan:
    """Cron-like sets of minutes, hours, days, months and years in local wall-clock time."""

    __slots__ = ("hour_set", "hours", "minute_set", "minutes", "months", "rule", "year_set", "years")

    def __init__(
        self,
        minutes: frozenset[int],
        hours: frozenset[int],
        months: frozenset[int],
        rule: _DayRule,
        years: tuple[int, ...] | None,
    ) -> None:
        self.minutes = tuple(sorted(minutes))
        self.minute_set = minutes
        self.hours = tuple(sorted(hours))
        self.hour_set = hours
        self.months = months
        self.rule = rule
        self.years = years
        self.year_set = None if years is None else frozenset(years)

    def check_fires(self) -> None:
        """Reject a day pattern that never fires (in its years), or not in every five years."""
        if self.years is not None:
            if not any(self._fires_in_year(y) for y in self.years):
                raise ScheduleError("never fires in the years given")
            return
        firing_years = [
            y for y in range(_CHECK_FIRST_YEAR, _CHECK_LAST_WINDOW + 5) if self._fires_in_year(y)
        ]
        for window_start in range(_CHECK_FIRST_YEAR, _CHECK_LAST_WINDOW + 1):
            if not any(window_start <= y < window_start + 5 for y in firing_years):
                raise ScheduleError("never fires within five years")

    def _fires_in_year(self, year: int) -> bool:
        return any(_matching_days(self.rule, year, month) for month in self.months)

    def next_after(
        self, after: datetime, anchor: datetime | None, zone: ZoneInfo | None
    ) -> datetime | None:
        if zone is None:
            local = self.first_at_or_after(after.replace(tzinfo=None) + _ONE_MINUTE)
            return None if local is None else local.replace(tzinfo=UTC)
        start = after.astimezone(zone).replace(tzinfo=None, fold=0, second=0, microsecond=0)
        while True:
            # Wall times map to UTC non-decreasingly, so the first candidate mapping past
            # `after` is the answer; those skipped are the first instances of a repeated hour
            # when `after` lies in its second instance, or gap times already past.
            local = self.first_at_or_after(start + _ONE_MINUTE)
            if local is None:
                return None
            occurrence = _local_to_utc(local, zone)
            if occurrence > after:
                return occurrence
            start = local

    def first_at_or_after(self, start: datetime) -> datetime | None:
        """Earliest matching naive wall-clock minute at or after `start`."""
        year, month = start.year, start.month
        day_from, time_from = start.day, (start.hour, start.minute)
        last_year = self.years[-1] if self.years is not None else min(9999, year + _SEARCH_YEARS)
        while year <= last_year:
            if self.year_set is not None and year not in self.year_set:
                year = self.years[bisect_left(self.years, year)]  # type: ignore[index]
                month, day_from, time_from = 1, 1, (0, 0)
                continue
            if month in self.months:
                days = _matching_days(self.rule, year, month)
                for day in days[bisect_left(days, day_from) :]:
                    if day == day_from and time_from != (0, 0):
                        hour_minute = self._first_time_from(*time_from)
                        if hour_minute is None:
                            continue
                        return datetime(year, month, day, *hour_minute)
                    return datetime(year, month, day, self.hours[0], self.minutes[0])
            month += 1
            if month > 12:
                year, month = year + 1, 1
            day_from, time_from = 1, (0, 0)
        return None

    def _first_time_from(self, hour: int, minute: int) -> tuple[int, int] | None:
        if hour in self.hour_set:
            index = bisect_left(self.minutes, minute)
            if index < len(self.minutes):
                return hour, self.minutes[index]
        index = bisect_right(self.hours, hour)
        if index < len(self.hours):
            return self.hours[index], self.minutes[0]
        return None


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


# ---------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------

_UTC_NAMES = frozenset({"UTC", "Etc/UTC"})
# Files that ZoneInfo loads but that are not IANA zone names, or depend on the host.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


def _resolve_zone(name: str) -> ZoneInfo | None:
    """The ZoneInfo for an IANA name, or None for UTC (the fast path)."""
    if not name.strip():
        raise ScheduleError("timezone is empty", TIMEZONE_FIELD)
    if name in _UTC_NAMES:
        return None
    unknown = ScheduleError(f"unknown timezone: {_printable(name)}", TIMEZONE_FIELD)
    if name in _NOT_ZONES or name.startswith(("posix/", "right/")):
        raise unknown
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
        # ValueError covers paths such as "../../etc/passwd", OSError directories like "America".
        raise unknown from None


def _printable(text: str, limit: int = 64) -> str:
    """Text safe to echo in an error message: control characters escaped, length bounded."""
    shown = text if text.isprintable() else repr(text)[1:-1]
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _utc_minute(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """UTC minute of a wall-clock minute: its first instance, or the end of the gap it is in."""
    instant = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local:
        instant = _end_of_gap(local, zone)
    return _ceil_minute(instant)


def _end_of_gap(local: datetime, zone: ZoneInfo) -> datetime:
    """First UTC minute after the DST gap that swallows the nonexistent wall time `local`."""
    # In a gap, fold=1 applies the offset from after the transition (landing before it) and
    # fold=0 the offset from before (landing after it): the transition lies between the two.
    before = _ceil_minute(local.replace(tzinfo=zone, fold=1).astimezone(UTC))
    after = _ceil_minute(local.replace(tzinfo=zone, fold=0).astimezone(UTC))
    offset_before = before.astimezone(zone).utcoffset()
    low, high = 0, (after - before) // _ONE_MINUTE  # the answer is before + high minutes at most
    while low < high:
        middle = (low + high) // 2
        if (before + middle * _ONE_MINUTE).astimezone(zone).utcoffset() == offset_before:
            low = middle + 1
        else:
            high = middle
    return before + low * _ONE_MINUTE


def _ceil_minute(moment: datetime) -> datetime:
    """Round up to a whole minute (offsets of some historical zones have seconds)."""
    if moment.second or moment.microsecond:
        return moment.replace(second=0, microsecond=0) + _ONE_MINUTE
    return moment
