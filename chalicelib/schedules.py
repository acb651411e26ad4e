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

croniter does the cron arithmetic. Both cron dialects are validated here (the spec's
rejections, with messages that say why), then converted to a five-field croniter expression
whose fields are `*` or explicit lists of values, built once at parse time; croniter iterates
it on naive wall-clock minutes. Around what croniter misreads:
- it reads a 6th field as seconds and a 7th as a year: it only ever gets the 5 converted
  fields, and the AWS year field (1970-2199; croniter's end at 2099) is filtered here;
- it refuses `?` outside the day fields: `?` is read as `*` before conversion;
- it takes `R` and `H` as random and hashed values: refused here;
- it reads `5-5` or `JAN-JAN` as the whole cycle and `5-1` as a wrap-around (without
  carrying a step across it): ranges and steps are expanded here, so croniter never sees one;
- its `day_or=False` makes a day match both day fields: set for a minion field with a `*`;
- it numbers AWS days of the week as cron's: AWS 1-7 from Sunday become cron's 0-6;
- it has no `L` alone in the day of week (Saturday, `6`), spells AWS `nL` as `L<n-1>`, and
  has no `LW`: that is its `31W`, since croniter moves a W day past the month's end to the
  last day, whose nearest weekday is the last weekday of the month;
- that same move makes `30W` fire in February: months shorter than n are skipped here;
- `0 0 30 2 *` fails only when computing: a parse-time check refuses a day pattern that does
  not fire within every five years;
- on aware datetimes it fires a repeated wall time twice: its naive wall-clock results are
  mapped to UTC here, a repeated time at its first instance, a nonexistent one at the end of
  its gap.
"""

from __future__ import annotations

import calendar
import re
import threading
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

__all__ = ["Schedule", "ScheduleError", "parse_schedule"]

UTC = timezone.utc
MAX_EXPRESSION_LENGTH = 256
EXPRESSION_FIELD = "schedule_expression"
TIMEZONE_FIELD = "schedule_timezone"

_ONE_MINUTE = timedelta(minutes=1)
_FIVE_YEARS_IN_MINUTES = (5 * 365 + 2) * 24 * 60
# A cron without a year field fires in every five-year window (checked at parse time); past
# 2100, a non-leap century year, 29 February can be eight years apart. croniter searches this
# many years past its start before giving up.
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
    # `?` means `*` in every field of the minion dialect (croniter takes it in day fields only).
    minute, hour, dom, month, dow = (f.replace("?", "*") for f in fields)
    doms = _parse_field(dom, _DAY_OF_MONTH)
    dows = frozenset(0 if d == 7 else d for d in _parse_field(dow, _CRON_DAY_OF_WEEK))
    # A day field written with a leading star (`*`, `*/2`, `*/5,10`) is unrestricted for the
    # day rule: a day must then match both fields (for a plain `*`, the other alone decides).
    # Only two restricted fields fire when either matches (robfig/cron v1, Vixie, cronsim).
    either = not (dom.startswith("*") or dow.startswith("*"))
    plan = _CalendarPlan(
        minutes=_parse_field(minute, _MINUTE),
        hours=_parse_field(hour, _HOUR),
        # A field matching every day is `*` to croniter only where that means the same: when
        # both must match (under either-matches, croniter would let the other alone decide).
        day_of_month="*" if not either and len(doms) == _DAY_OF_MONTH.high else _cron_list(doms),
        months=_parse_field(month, _MONTH),
        day_of_week="*" if not either and len(dows) == 7 else _cron_list(dows),
        day_or=either,
    )
    plan.check_fires()
    return plan


def _cron_list(values: frozenset[int]) -> str:
    """A croniter field of explicit values: no range or step for croniter to read its own way."""
    return ",".join(str(v) for v in sorted(values))


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
    if dow == "?":
        day_of_month, nearest_day = _parse_aws_day_of_month(dom)
        day_of_week = "*"
    else:
        day_of_month, nearest_day = "*", 0
        day_of_week = _parse_aws_day_of_week(dow)
    # Years do not wrap (Quartz: "Start year must be less than stop year").
    years = None if year == "*" else tuple(sorted(_parse_field(year, _YEAR)))
    plan = _CalendarPlan(
        minutes=_parse_field(minute, _MINUTE, wrap=True),
        hours=_parse_field(hour, _HOUR, wrap=True),
        day_of_month=day_of_month,
        months=_parse_field(month, _MONTH, wrap=True),
        day_of_week=day_of_week,
        years=years,
        nearest_day=nearest_day,
        last_year=_YEAR.high,
    )
    plan.check_fires()
    return plan


def _parse_aws_day_of_month(field_text: str) -> tuple[str, int]:
    """croniter's day-of-month field, and n of `nW` when months shorter than n must be skipped."""
    text = field_text.upper()
    if "?" in text:
        raise ScheduleError("? must stand alone in the day-of-month field")
    if text in ("*", "L"):
        return text, 0
    if text == "LW":
        # croniter has no LW; its 31W is the weekday nearest the month's last day (it moves a
        # W day past the month's end to the last day), without leaving the month: LW.
        return "31W", 0
    nearest = re.fullmatch(r"([0-9]+)W", text)
    if nearest:
        day = _number(nearest.group(1), _DAY_OF_MONTH)
        # croniter would move n to the last day of a shorter month: such months are skipped.
        return f"{day}W", day
    if "L" in text or "W" in text:
        raise ScheduleError("L and W must stand alone in the day-of-month field (L, LW or 15W)")
    return _cron_list(_parse_field(field_text, _DAY_OF_MONTH, wrap=True)), 0


def _parse_aws_day_of_week(field_text: str) -> str:
    """croniter's day-of-week field (cron numbering) for an AWS one (1-7 from Sunday)."""
    text = field_text.upper()
    if "?" in text:
        raise ScheduleError("? must stand alone in the day-of-week field")
    if text == "*":
        return "*"
    if text == "L":
        return "6"  # alone, L is the last day of the week: Saturday (croniter refuses it)
    last = re.fullmatch(r"([0-9]+|[A-Z]{3})L", text)
    if last:
        # The last such weekday of the month: croniter spells AWS `6L` as `L5`.
        return f"L{_aws_to_cron_weekday(_value(last.group(1), _AWS_DAY_OF_WEEK))}"
    nth = re.fullmatch(r"([0-9]+|[A-Z]{3})#([0-9]+)", text)
    if nth:
        weekday = _aws_to_cron_weekday(_value(nth.group(1), _AWS_DAY_OF_WEEK))
        week = int(nth.group(2))
        if not 1 <= week <= 5:
            raise ScheduleError(f"week {week} in the day-of-week field is out of range 1-5")
        return f"{weekday}#{week}"
    if "L" in text or "#" in text:
        raise ScheduleError("L and # must stand alone in the day-of-week field (L, 6L or 6#3)")
    weekdays = _parse_field(field_text, _AWS_DAY_OF_WEEK, wrap=True)
    return _cron_list(frozenset(_aws_to_cron_weekday(d) for d in weekdays))


def _aws_to_cron_weekday(aws_day: int) -> int:
    """AWS numbers days 1-7 from Sunday; cron (and croniter) 0-6 from Sunday."""
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


def _parse_field(text: str, spec: _FieldSpec, wrap: bool = False) -> frozenset[int]:
    """Values of a comma list of `*`, `n`, `a-b`, each optionally `/step`.

    With `wrap` (AWS cron, after Quartz), a range whose start is after its end wraps round
    the field's cycle, its step carried across the wrap; otherwise such a range is refused.
    """
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
                if not wrap:
                    raise ScheduleError(f"range {base} in the {spec.name} field is reversed")
                # Quartz's addToSet: count on past the field's end, then take the modulus.
                cycle = spec.high - spec.low + 1
                values.update(
                    spec.low + (v - spec.low) % cycle for v in range(low, high + cycle + 1, step)
                )
                continue
        else:
            low = _value(base, spec)
            high = spec.star_high if slash else low
            if low > high:
                # Only `7/n` in the minion day-of-week: 7 is Sunday, but steps end at 6. Peers
                # disagree (robfig refuses 7, cronsim reads Sunday, croniter 0/n): refused.
                raise ScheduleError(
                    f"{element} in the {spec.name} field steps from {low}, past "
                    f"{spec.star_high} where its steps end (write 0/{step} to step from Sunday)"
                )
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
# Plans: how each kind computes its next occurrence
# ---------------------------------------------------------------------------------------------


class _Plan(Protocol):
    def next_after(
        self, after: datetime, anchor: datetime | None, zone: ZoneInfo | None
    ) -> datetime | None: ...


# croniter wants a start when built; each query then gives its own. Naive: croniter does no
# timezone arithmetic on naive times.
_CRONITER_START = datetime(2000, 1, 1)


class _CalendarPlan:
    """A cron pattern in local wall-clock time: croniter finds its minutes, this filters them.

    Built once per expression and timezone (parse_schedule is cached), so croniter parses the
    converted expression once; each query moves the one croniter object to a new start.
    """

    def __init__(
        self,
        minutes: frozenset[int],
        hours: frozenset[int],
        day_of_month: str,
        months: frozenset[int],
        day_of_week: str,
        years: tuple[int, ...] | None = None,
        nearest_day: int = 0,
        search_years: int = _SEARCH_YEARS,
        day_or: bool = True,
        last_year: int | None = None,
    ) -> None:
        self.cron_expression = " ".join(
            (_cron_list(minutes), _cron_list(hours), day_of_month, _cron_list(months), day_of_week)
        )
        self._day_pattern = (day_of_month, months, day_of_week, years, nearest_day, day_or)
        self.years = years
        self._last_year = last_year  # AWS years end in 2199, whatever the year field says
        self._year_set = None if years is None else frozenset(years)
        self._nearest_day = nearest_day  # `nW`: months shorter than n do not fire
        self._search_years = search_years
        self._cron = croniter(
            self.cron_expression,
            _CRONITER_START,
            ret_type=datetime,
            max_years_between_matches=search_years,
            day_or=day_or,  # False: a day must match both day fields
        )
        self._lock = threading.Lock()  # get_next keeps its position in the croniter object
        # The last answer, (zone, after, occurrence): it is also the answer for any later
        # `after` before that occurrence, as the tick asks for every due job of a schedule.
        self._last: tuple[ZoneInfo | None, datetime, datetime] | None = None

    def check_fires(self) -> None:
        """Reject a day pattern that never fires (in its years), or not in every five years."""
        error = _day_pattern_error(*self._day_pattern)
        if error is not None:
            raise ScheduleError(error)

    def fires_in(self, year: int) -> bool:
        """Whether the plan fires in a year (searching no further than the year after)."""
        found = self.first_at_or_after(datetime(year, 1, 1))
        return found is not None and found.year == year

    def next_after(
        self, after: datetime, anchor: datetime | None, zone: ZoneInfo | None
    ) -> datetime | None:
        # Occurrences are a fixed set of UTC minutes: the next after any moment from `after`
        # up to the occurrence found for it is that same occurrence.
        last = self._last
        if last is not None and last[0] is zone and last[1] <= after < last[2]:
            return last[2]
        occurrence = self._next_occurrence(after, zone)
        if occurrence is not None:
            self._last = (zone, after, occurrence)
        return occurrence

    def _next_occurrence(self, after: datetime, zone: ZoneInfo | None) -> datetime | None:
        if zone is None:
            local = self.first_at_or_after(after.replace(tzinfo=None) + _ONE_MINUTE)
            return None if local is None else local.replace(tzinfo=UTC)
        start = after.astimezone(zone).replace(tzinfo=None, fold=0, second=0, microsecond=0)
        while True:
            # Wall times map to UTC non-decreasingly, so the first candidate mapping past
            # `after` is the answer; those skipped are the first instances of a repeated hour
            # when `after` lies in its second instance (croniter would fire them again), or
            # gap times already past.
            local = self.first_at_or_after(start + _ONE_MINUTE)
            if local is None:
                return None
            occurrence = _local_to_utc(local, zone)
            if occurrence > after:
                return occurrence
            start = local

    def first_at_or_after(self, start: datetime) -> datetime | None:
        """Earliest matching naive wall-clock minute at or after `start`."""
        moment = start
        while True:
            if self._last_year is not None and moment.year > self._last_year:
                return None
            if self.years is not None:
                index = bisect_left(self.years, moment.year)
                if index == len(self.years):
                    return None  # past the last year
                if self.years[index] != moment.year:
                    moment = datetime(self.years[index], 1, 1)
            found = self._croniter_next(moment - _ONE_MINUTE)
            if found is None:
                if self.years is None:
                    return None
                # None in the years croniter searched: go on from where it gave up.
                moment = datetime(moment.year + self._search_years, 1, 1)
            elif self._last_year is not None and found.year > self._last_year:
                return None
            elif self._year_set is not None and found.year not in self._year_set:
                moment = datetime(found.year, 1, 1)  # then to the next year given
            elif self._nearest_day and self._nearest_day > _month_length(found):
                # croniter moved `nW` to the last day of a month shorter than n: skip it.
                if self.years is None and found.year > start.year + self._search_years:
                    return None  # bounded as croniter's own search
                if found.year == datetime.max.year and found.month == 12:
                    return None
                moment = datetime(found.year + found.month // 12, found.month % 12 + 1, 1)
            else:
                return found

    def _croniter_next(self, moment: datetime) -> datetime | None:
        """croniter's first match strictly after a naive minute; None if it finds none."""
        with self._lock:
            try:
                found: datetime = self._cron.get_next(datetime, start_time=moment)
            except CroniterBadDateError:
                return None  # none within its search years
            except (OverflowError, ValueError):
                if moment.year < datetime.max.year - _SEARCH_YEARS:
                    raise
                return None  # it ran past datetime's year 9999
        return found


def _year_type(year: int) -> tuple[int, bool]:
    """What a day pattern's days in a year depend on: the weekday of 1 January, and leap."""
    return calendar.weekday(year, 1, 1), calendar.isleap(year)


# A year of each of the 14 types (seven weekdays, leap or not): 2000-2027 holds them all.
_YEAR_OF_TYPE = {_year_type(year): year for year in range(2000, 2028)}


@lru_cache(maxsize=1024)
def _day_pattern_error(
    day_of_month: str,
    months: frozenset[int],
    day_of_week: str,
    years: tuple[int, ...] | None,
    nearest_day: int,
    day_or: bool,
) -> str | None:
    """Why a day pattern does not fire in its years, or not in every five years; None if it does.

    Checked once per pattern, whatever its times and timezone, with croniter searching one
    year of each type: at most 14 searches of two years, whatever the years given.
    """
    midnight = frozenset({0})
    plan = _CalendarPlan(
        midnight,
        midnight,
        day_of_month,
        months,
        day_of_week,
        None,
        nearest_day,
        search_years=1,
        day_or=day_or,
    )
    firing_types = {kind for kind, year in _YEAR_OF_TYPE.items() if plan.fires_in(year)}
    if years is not None:
        if any(_year_type(year) in firing_types for year in years):
            return None
        return "never fires in the years given"
    firing_years = [
        year
        for year in range(_CHECK_FIRST_YEAR, _CHECK_LAST_WINDOW + 5)
        if _year_type(year) in firing_types
    ]
    for window in range(_CHECK_FIRST_YEAR, _CHECK_LAST_WINDOW + 1):
        if not any(window <= year < window + 5 for year in firing_years):
            return "never fires within five years"
    return None


def _month_length(day: datetime) -> int:
    return calendar.monthrange(day.year, day.month)[1]


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
