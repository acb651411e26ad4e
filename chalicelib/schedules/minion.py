"""The minion dialect: 5-field cron (robfig/cron v1's reading), descriptors and `@every`."""

from __future__ import annotations

import re
from fractions import Fraction

from .calendar_plan import _CalendarPlan
from .common import Plan, ScheduleError
from .fields import (
    _CRON_DAY_OF_WEEK,
    _DAY_OF_MONTH,
    _HOUR,
    _MINUTE,
    _MONTH,
    _cron_list,
    _parse_field,
)
from .plans import _checked_interval, _IntervalPlan

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _parse_descriptor(text: str) -> tuple[str, Plan]:
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


_GO_UNITS_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_GO_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")


def _parse_go_duration(text: str) -> int:
    """Minutes in a Go duration such as 1h30m; whole minutes only, at least one."""
    if not text:
        raise ScheduleError("@every needs a duration, e.g. @every 1h30m")
    if text.startswith("-"):
        raise ScheduleError("interval must be at least one minute")
    body = text.removeprefix("+")
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
