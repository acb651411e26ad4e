"""The cron fields both cron dialects share: lists, ranges (wrapping in AWS cron), steps, names."""

from __future__ import annotations

import calendar
import re
from typing import NamedTuple

from .common import ScheduleError


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
        raise ScheduleError(f"{token!r} in the {spec.name} field is a croniter extension, not cron")
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


def _cron_list(values: frozenset[int]) -> str:
    """A croniter field of explicit values: no range or step for croniter to read its own way."""
    return ",".join(str(v) for v in sorted(values))
