"""The AWS dialects: EventBridge's `cron(...)` (Quartz's reading), `rate(...)` and `at(...)`."""

from __future__ import annotations

import re
from datetime import datetime

from .calendar_plan import _CalendarPlan
from .common import ScheduleError
from .fields import (
    _AWS_DAY_OF_WEEK,
    _DAY_OF_MONTH,
    _HOUR,
    _MINUTE,
    _MONTH,
    _YEAR,
    _cron_list,
    _number,
    _parse_field,
    _value,
)
from .plans import _checked_interval, _IntervalPlan, _OneTimePlan


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


def _parse_at(body: str) -> _OneTimePlan:
    """at(yyyy-mm-ddThh:mm:ss): any seconds are accepted and it fires at that minute."""
    match = re.fullmatch(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})", body)
    if match is None:
        raise ScheduleError("at(...) takes a date and time such as at(2026-03-01T09:30:00)")
    try:
        year, month, day, hour, minute, second = (int(g) for g in match.groups())
        local = datetime(year, month, day, hour, minute, second)
    except ValueError as err:
        raise ScheduleError(f"at({body}) is not a valid date and time: {err}") from None
    return _OneTimePlan(local.replace(second=0))
