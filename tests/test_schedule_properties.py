"""Schedules, property-based: random expressions of every dialect in random real timezones
agree with a brute-force matcher written here, independently of croniter and of the module.

The brute force reads the spec's timezone rules as one definition: a wall-clock time W fires
at the first UTC minute whose wall-clock time reaches W. Scanning minute by minute, minute t
fires when some matching W lies in (latest wall time seen before t, wall time of t]: a repeated
wall time is reached only once, and the wall times a DST gap skips are reached together at the
first minute after it.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, note, reject, settings
from hypothesis import strategies as st

from chalicelib.schedules import ScheduleError, parse_schedule

MINUTE = timedelta(minutes=1)
WINDOW = timedelta(days=2)

# Real IANA zones: DST north and south, 30- and 45-minute offsets, a 30-minute DST shift
# (Lord_Howe), negative DST (Dublin), transitions at midnight (Santiago, Havana), Ramadan
# transitions (Casablanca), and zones without DST.
DST_ZONES = [
    "America/New_York",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Australia/Adelaide",
    "America/St_Johns",
    "Pacific/Chatham",
    "Pacific/Auckland",
    "America/Santiago",
    "America/Havana",
    "Africa/Casablanca",
]
FIXED_ZONES = [
    "UTC",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Etc/GMT+5",
    "Pacific/Kiritimati",
    "Pacific/Marquesas",
]
ZONES = DST_ZONES + FIXED_ZONES


def fast(examples: int) -> settings:
    """Bounded examples, no per-example deadline (brute force takes tens of milliseconds)."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


MONTH_NAMES = {i: calendar.month_abbr[i].upper() for i in range(1, 13)}
CRON_DAY_NAMES = dict(enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]))
AWS_DAY_NAMES = {i + 1: name for i, name in CRON_DAY_NAMES.items()}


# ---------------------------------------------------------------------------------------------
# Generated schedules: the expression text, and what it means decided here, field by field
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarCase:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    day_ok: Callable[[date], bool]
    years: frozenset[int] | None = None
    last_year: int | None = None  # AWS cron: 2199, whatever the year field says

    def matches(self, wall: datetime) -> bool:
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and (self.years is None or wall.year in self.years)
            and (self.last_year is None or wall.year <= self.last_year)
            and self.day_ok(wall.date())
        )


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]  # the values it matches, decided element by element below


@st.composite
def fields(
    draw: st.DrawFn,
    low: int,
    high: int,
    star_high: int | None = None,
    names: dict[int, str] | None = None,
    star_weight: int = 1,
    max_elements: int = 3,
    kinds: tuple[str, ...] = ("value", "value", "range", "star_step", "range_step", "from"),
    pick: tuple[int, int] | None = None,
    wrap: bool = False,
) -> Field:
    """A comma list of `*`, `n`, `a-b`, `*/s`, `a-b/s`, `a/s`, with names in any case.

    `pick` narrows the values drawn for `n` and `a-b` (years), not what `*` means. With
    `wrap` (AWS cron), also `b-a` and `b-a/s` with b > a, which wrap round the field's cycle.
    """
    if wrap:
        kinds = (*kinds, "wrap", "wrap_step")
    star_high = high if star_high is None else star_high
    pick_low, pick_high = pick or (low, high)
    names = names or {}

    def render(value: int) -> str:
        if value in names and draw(st.booleans()):
            return draw(st.sampled_from([str.upper, str.lower, str.title]))(names[value])
        return str(value)

    if draw(st.integers(0, star_weight)) > 0:
        return Field("*", frozenset(range(low, star_high + 1)))
    texts: list[str] = []
    # Lambdas bind their bounds as default arguments, so they take more than the value.
    matchers: list[Callable[..., bool]] = []
    for _ in range(draw(st.integers(1, max_elements))):
        kind = draw(st.sampled_from(kinds))
        step = draw(st.integers(1, max(1, min(20, pick_high - pick_low))))
        a = draw(st.integers(pick_low, pick_high))
        b = draw(st.integers(a, pick_high))
        if kind == "value":
            texts.append(render(a))
            matchers.append(lambda v, a=a: v == a)
        elif kind == "range":
            texts.append(f"{render(a)}-{render(b)}")
            matchers.append(lambda v, a=a, b=b: a <= v <= b)
        elif kind == "star_step":
            texts.append(f"*/{step}")
            matchers.append(lambda v, s=step: low <= v <= star_high and (v - low) % s == 0)
        elif kind == "range_step":
            texts.append(f"{render(a)}-{render(b)}/{step}")
            matchers.append(lambda v, a=a, b=b, s=step: a <= v <= b and (v - a) % s == 0)
        elif kind in ("wrap", "wrap_step"):
            # Quartz's reading, restated: v is reached from the start b by counting forward
            # round the cycle no further than the end a, in whole steps.
            s = step if kind == "wrap_step" else 1
            cycle = high - low + 1
            texts.append(f"{render(b)}-{render(a)}" + (f"/{s}" if kind == "wrap_step" else ""))
            matchers.append(
                lambda v, a=a, b=b, s=s, c=cycle: (
                    (v - b) % c <= (a - b) % c and (v - b) % c % s == 0
                )
            )
        else:
            a = min(a, star_high)
            texts.append(f"{render(a)}/{step}")
            matchers.append(lambda v, a=a, s=step: a <= v <= star_high and (v - a) % s == 0)
    values = frozenset(v for v in range(low, high + 1) if any(m(v) for m in matchers))
    return Field(",".join(texts), values)


def cron_weekday(day: date) -> int:
    """0 = Sunday ... 6 = Saturday."""
    return day.isoweekday() % 7


def aws_weekday(day: date) -> int:
    """1 = Sunday ... 7 = Saturday (EventBridge numbering)."""
    return day.isoweekday() % 7 + 1


def month_length(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def is_weekday(day: date) -> bool:
    return day.isoweekday() <= 5


def time_fields(single: bool, wrap: bool = False) -> st.SearchStrategy[tuple[Field, Field]]:
    if single:
        one: dict[str, Any] = {"max_elements": 1, "star_weight": 0, "kinds": ("value",)}
        return st.tuples(fields(0, 59, **one), fields(0, 23, **one))
    return st.tuples(
        fields(0, 59, star_weight=1, wrap=wrap), fields(0, 23, star_weight=2, wrap=wrap)
    )


@st.composite
def minion_crons(draw: st.DrawFn, single_time: bool = False) -> CalendarCase:
    minute, hour = draw(time_fields(single_time))
    dom = draw(fields(1, 31, star_weight=2))
    month = draw(fields(1, 12, names=MONTH_NAMES, star_weight=3))
    dow = draw(fields(0, 7, star_high=6, names=CRON_DAY_NAMES, star_weight=2))
    texts = [f.text for f in (minute, hour, dom, month, dow)]
    texts = [("?" if t == "*" and draw(st.booleans()) else t) for t in texts]
    doms, dows = dom.values, frozenset(v % 7 for v in dow.values)  # 7 is Sunday too
    # A day field starting with a star (`*`, `?`, `*/2`, `*/5,1-7`) is unrestricted: a day then
    # matches both fields; only two restricted fields fire when either matches (robfig/cron
    # v1, Vixie cron, cronsim).
    dom_star, dow_star = texts[2].startswith(("*", "?")), texts[4].startswith(("*", "?"))

    def day_ok(day: date) -> bool:
        dom_hit, dow_hit = day.day in doms, cron_weekday(day) in dows  # `*` holds every day
        if dom_star or dow_star:
            return dom_hit and dow_hit
        return dom_hit or dow_hit  # both restricted: either

    return CalendarCase(" ".join(texts), minute.values, hour.values, month.values, day_ok)


DESCRIPTOR_CASES = {
    "@yearly": (frozenset({0}), frozenset({0}), frozenset({1}), lambda d: d.day == 1),
    "@annually": (frozenset({0}), frozenset({0}), frozenset({1}), lambda d: d.day == 1),
    "@monthly": (frozenset({0}), frozenset({0}), frozenset(range(1, 13)), lambda d: d.day == 1),
    "@weekly": (
        frozenset({0}),
        frozenset({0}),
        frozenset(range(1, 13)),
        lambda d: cron_weekday(d) == 0,
    ),
    "@daily": (frozenset({0}), frozenset({0}), frozenset(range(1, 13)), lambda d: True),
    "@midnight": (frozenset({0}), frozenset({0}), frozenset(range(1, 13)), lambda d: True),
    "@hourly": (frozenset({0}), frozenset(range(24)), frozenset(range(1, 13)), lambda d: True),
}
descriptors = st.sampled_from(sorted(DESCRIPTOR_CASES)).map(
    lambda name: CalendarCase(name, *DESCRIPTOR_CASES[name])
)


def nearest_weekday(day: date, target: int) -> bool:
    """`nW`, by definition: the weekday of the month closest to the target day."""
    if target > month_length(day):
        return False
    weekdays = [d for d in range(1, month_length(day) + 1) if is_weekday(day.replace(day=d))]
    return day.day == min(weekdays, key=lambda d: abs(d - target))


# Edge days and weekdays are drawn more often: that is where W and nL go wrong.
EDGE_DAYS = st.sampled_from([1, 1, 1, 2, 15, 28, 29, 30, 31]) | st.integers(1, 31)
EDGE_WEEKDAYS = st.sampled_from([1, 7]) | st.integers(1, 7)


@st.composite
def aws_day_of_month(draw: st.DrawFn, special: bool = False) -> tuple[str, Callable[[date], bool]]:
    form = draw(
        st.sampled_from(["L", "LW", "W", "W", "W"] if special else ["*", "list", "L", "LW", "W"])
    )
    if form == "*":
        return "*", lambda d: True
    if form == "L":
        return draw(st.sampled_from(["L", "l"])), lambda d: d.day == month_length(d)
    if form == "LW":
        return (
            "LW",
            lambda d: (
                is_weekday(d)
                and not any(
                    is_weekday(d.replace(day=later))
                    for later in range(d.day + 1, month_length(d) + 1)
                )
            ),
        )
    if form == "W":
        target = draw(st.sampled_from([1, 1, 2, 15, 30, 31]) if special else EDGE_DAYS)
        return f"{target}W", lambda d: nearest_weekday(d, target)
    dom = draw(fields(1, 31, wrap=True))
    return dom.text, lambda d: d.day in dom.values


@st.composite
def aws_day_of_week(draw: st.DrawFn, special: bool = False) -> tuple[str, Callable[[date], bool]]:
    form = draw(st.sampled_from(["L", "nL", "#"] if special else ["*", "list", "L", "nL", "#"]))
    weekday = draw(EDGE_WEEKDAYS)
    name = AWS_DAY_NAMES[weekday] if draw(st.booleans()) else str(weekday)
    if form == "*":
        return "*", lambda d: True
    if form == "L":  # alone: the last day of the week, Saturday
        return "L", lambda d: aws_weekday(d) == 7
    if form == "nL":
        return (
            f"{name}L",
            lambda d: aws_weekday(d) == weekday and (d + timedelta(7)).month != d.month,
        )
    if form == "#":
        week = draw(st.integers(1, 5))
        return (
            f"{name}#{week}",
            lambda d: aws_weekday(d) == weekday and (d.day - 1) // 7 + 1 == week,
        )
    dow = draw(fields(1, 7, names=AWS_DAY_NAMES, wrap=True))
    return dow.text, lambda d: aws_weekday(d) in dow.values


@st.composite
def aws_crons(
    draw: st.DrawFn,
    single_time: bool = False,
    special: bool = False,
    year_pick: tuple[int, int] = (2024, 2031),
) -> CalendarCase:
    """AWS cron; `special` keeps to the L, LW, W, nL and # day forms."""
    minute, hour = draw(time_fields(single_time, wrap=True))
    month = draw(fields(1, 12, names=MONTH_NAMES, star_weight=3, wrap=True))
    if draw(st.booleans()):
        dom_text, day_ok = draw(aws_day_of_month(special))
        dow_text = "?"
    else:
        dow_text, day_ok = draw(aws_day_of_week(special))
        dom_text = "?"
    years: frozenset[int] | None = None
    year_text = "*"
    if draw(st.integers(0, 3)) == 0:
        year = draw(fields(1970, 2199, star_weight=0, pick=year_pick))
        year_text, years = year.text, year.values
    expression = f"cron({minute.text} {hour.text} {dom_text} {month.text} {dow_text} {year_text})"
    return CalendarCase(expression, minute.values, hour.values, month.values, day_ok, years, 2199)


# ---------------------------------------------------------------------------------------------
# Windows: anywhere, at month ends (L, LW, nL fire there), and across each zone's DST changes
# ---------------------------------------------------------------------------------------------


@cache
def transitions(zone_name: str) -> tuple[datetime, ...]:
    """UTC hours of 2026 and 2027 in which the zone's offset changes."""
    zone = ZoneInfo(zone_name)
    found = []
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(zone).utcoffset()
    while moment.year < 2028:
        moment += timedelta(hours=1)
        current = moment.astimezone(zone).utcoffset()
        if current != offset:
            found.append(moment)
            offset = current
    return tuple(found)


@st.composite
def windows(draw: st.DrawFn, zones: list[str] = ZONES) -> tuple[str, datetime]:
    """A timezone and the UTC minute a window of two days starts from."""
    zone = draw(st.sampled_from(zones))
    mode = draw(st.sampled_from(["transition", "transition", "month_end", "anywhere"]))
    if mode == "transition" and transitions(zone):
        change = draw(st.sampled_from(transitions(zone)))
        return zone, change - timedelta(minutes=draw(st.integers(0, 36 * 60)))
    if mode == "month_end":
        year, month = draw(st.integers(2025, 2029)), draw(st.integers(1, 12))
        day = calendar.monthrange(year, month)[1] - draw(st.integers(0, 3))
        start = datetime(year, month, day, tzinfo=UTC) + timedelta(
            minutes=draw(st.integers(-720, 720))
        )
        return zone, start
    start = draw(st.datetimes(datetime(2025, 1, 1), datetime(2029, 12, 31)))
    return zone, start.replace(second=0, microsecond=0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Brute force
# ---------------------------------------------------------------------------------------------


def brute_force(
    matches: Callable[[datetime], bool], zone_name: str, start: datetime, end: datetime
) -> list[datetime]:
    """UTC minutes in (start, end] at which a wall-clock schedule fires, minute by minute."""
    zone = ZoneInfo(zone_name)
    day_cache: dict[datetime, bool] = {}

    def cached(wall: datetime) -> bool:
        if wall not in day_cache:
            day_cache[wall] = matches(wall)
        return day_cache[wall]

    # Warm up a day early so the latest wall time seen is known (repeats last under a day).
    moment = start - timedelta(days=1)
    latest = moment.astimezone(zone).replace(tzinfo=None)
    fired = []
    while moment < end:
        moment += MINUTE
        wall = moment.astimezone(zone).replace(tzinfo=None)
        if wall > latest:
            candidate = latest + MINUTE
            while candidate <= wall:
                if cached(candidate):
                    if moment > start:
                        fired.append(moment)
                    break
                candidate += MINUTE
            latest = wall
    return fired


def occurrences_until(
    expression: str, zone: str, start: datetime, end: datetime, anchor: datetime | None = None
) -> list[datetime]:
    schedule = parse_schedule(expression, zone)
    found: list[datetime] = []
    current = schedule.next_after(start, anchor)
    while current is not None and current <= end:
        found.append(current)
        current = schedule.next_after(current, anchor)
    return found


def parse_or_reject(expression: str, zone: str = "UTC") -> None:
    """Generated expressions are well formed; only a day pattern that never fires is refused."""
    note(f"expression {expression!r} in {zone}")  # shown with a failing example
    try:
        parse_schedule(expression, zone)
    except ScheduleError as err:
        if "never fires" not in str(err):
            raise
        reject()


def assert_well_formed(found: list[datetime], after: datetime) -> None:
    assert all(t.tzinfo is UTC and t.second == 0 and t.microsecond == 0 for t in found)
    assert all(a < b for a, b in zip([after, *found], found, strict=False)), (
        "not strictly increasing"
    )


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@fast(220)
@given(case=st.one_of(minion_crons(), aws_crons(), descriptors), window=windows(), probe=st.data())
def test_calendar_schedules_fire_exactly_when_the_brute_force_matcher_says(
    case: CalendarCase, window: tuple[str, datetime], probe: st.DataObject
) -> None:
    # Given a random expression in a random zone, and a two-day window (often across DST)
    zone, start = window
    parse_or_reject(case.expression, zone)
    end = start + WINDOW
    # When listing its occurrences in the window
    found = occurrences_until(case.expression, zone, start, end)
    # Then they are exactly the brute force's, strictly increasing whole UTC minutes
    assert found == brute_force(case.matches, zone, start, end)
    assert_well_formed(found, start)
    # And asking from any moment inside the window (with seconds) gives the next of them
    after = start + timedelta(seconds=probe.draw(st.integers(0, int(WINDOW.total_seconds()) - 1)))
    expected = next((t for t in found if t > after), None)
    actual = parse_schedule(case.expression, zone).next_after(after)
    if expected is not None:
        assert actual == expected
    else:
        assert actual is None or actual > end


@fast(250)
@given(
    case=st.one_of(
        minion_crons(single_time=True),
        aws_crons(single_time=True),
        aws_crons(single_time=True, special=True),
    ),
    zone=st.sampled_from(FIXED_ZONES),
    start=st.datetimes(datetime(2025, 1, 1), datetime(2029, 12, 31)),
)
def test_day_patterns_agree_with_the_calendar_over_a_year(
    case: CalendarCase, zone: str, start: datetime
) -> None:
    # Given a once-a-day-at-most expression (W, LW, L, nL, #, years, dom/dow OR...) in a zone
    # without DST, and a window of 400 days
    parse_or_reject(case.expression, zone)
    start = start.replace(second=0, microsecond=0, tzinfo=UTC)
    # When listing its occurrences, then they are the calendar's
    assert_agrees_with_the_calendar(case, zone, start, start + timedelta(days=400))


def assert_agrees_with_the_calendar(
    case: CalendarCase, zone: str, start: datetime, end: datetime
) -> None:
    """The schedule's occurrences in (start, end] are the matching local days at the matching
    times, shifted by the zone's fixed offset."""
    offset = ZoneInfo(zone).utcoffset(start)
    assert offset is not None and offset == ZoneInfo(zone).utcoffset(end)
    found = occurrences_until(case.expression, zone, start, end)
    expected = []
    day = (start + offset).date() - timedelta(days=1)
    while day <= (end + offset).date():
        for hour in sorted(case.hours):
            for minute in sorted(case.minutes):
                wall = datetime(day.year, day.month, day.day, hour, minute)
                moment = (wall - offset).replace(tzinfo=UTC)
                if start < moment <= end and case.matches(wall):
                    expected.append(moment)
        day += timedelta(days=1)
    assert found == expected
    assert_well_formed(found, start)


@fast(60)
@given(
    case=st.one_of(
        aws_crons(single_time=True, year_pick=(2190, 2199)),
        aws_crons(single_time=True, special=True, year_pick=(2190, 2199)),
    ),
    zone=st.sampled_from(FIXED_ZONES),
    start=st.datetimes(datetime(2198, 1, 1), datetime(2199, 12, 31)),
)
def test_aws_cron_stops_after_2199_its_last_year(
    case: CalendarCase, zone: str, start: datetime
) -> None:
    # Given an AWS cron (any year field) and a window of 400 days across the end of 2199, in a
    # zone without DST
    parse_or_reject(case.expression, zone)
    start = start.replace(second=0, microsecond=0, tzinfo=UTC)
    # When listing its occurrences, then they are the calendar's up to local 2199-12-31 only,
    # and nothing comes after
    assert_agrees_with_the_calendar(case, zone, start, start + timedelta(days=400))
    assert (
        parse_schedule(case.expression, zone).next_after(datetime(2200, 1, 2, tzinfo=UTC)) is None
    )


def go_durations(minutes: int) -> st.SearchStrategy[str]:
    """Spellings of a whole number of minutes as a Go duration."""
    hours, rest = divmod(minutes, 60)
    spellings = [f"{minutes}m", f"{minutes * 60}s", f"{hours}h{rest}m", f"{hours}h{rest * 60}s"]
    if rest == 0:
        spellings.append(f"{hours}h")
    if rest == 30:
        spellings.append(f"{hours}.5h")
    return st.sampled_from(spellings)


@st.composite
def intervals(draw: st.DrawFn) -> tuple[str, int]:
    """An interval expression and its period in minutes."""
    unit = draw(st.sampled_from(["minutes", "hours", "days", "every"]))
    if unit == "every":
        minutes = draw(st.integers(1, 3000))
        return f"@every {draw(go_durations(minutes))}", minutes
    value = draw(st.integers(1, {"minutes": 3000, "hours": 50, "days": 3}[unit]))
    per_unit = {"minutes": 1, "hours": 60, "days": 1440}[unit]
    spelled = unit[:-1] if value == 1 and draw(st.booleans()) else unit
    return f"rate({value} {spelled})", value * per_unit


@fast(100)
@given(
    interval=intervals(),
    zone=st.sampled_from(ZONES),
    anchor=st.datetimes(datetime(2025, 1, 1), datetime(2029, 12, 31)),
    offset_minutes=st.integers(-3000, 30000),
)
def test_intervals_fire_every_n_minutes_after_their_anchor_whatever_the_zone(
    interval: tuple[str, int], zone: str, anchor: datetime, offset_minutes: int
) -> None:
    # Given rate(...) or @every anchored at a UTC minute, and a window near the anchor
    expression, period = interval
    anchor = anchor.replace(second=0, microsecond=0, tzinfo=UTC)
    start = anchor + timedelta(minutes=offset_minutes)
    end = start + WINDOW
    # When listing occurrences
    found = occurrences_until(expression, zone, start, end, anchor)
    # Then they are the minutes after the anchor a whole number of periods from it
    expected = []
    moment = start + MINUTE
    while moment <= end:
        elapsed = (moment - anchor) // MINUTE
        if elapsed > 0 and elapsed % period == 0:
            expected.append(moment)
        moment += MINUTE
    assert found == expected
    assert_well_formed(found, start)


@fast(100)
@given(
    window=windows(zones=DST_ZONES),
    shift=st.integers(0, 47 * 60),
    jitter=st.integers(-90, 90),
    seconds=st.integers(0, 59),
)
def test_at_fires_once_at_the_first_minute_its_wall_time_is_reached(
    window: tuple[str, datetime], shift: int, jitter: int, seconds: int
) -> None:
    # Given at(...) of a wall-clock time near a DST change of its zone (the jitter lands some
    # in gaps and repeated hours)
    zone, start = window
    wall = (start + timedelta(minutes=shift)).astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    wall = (wall + timedelta(minutes=jitter)).replace(second=seconds)
    expression = f"at({wall:%Y-%m-%dT%H:%M:%S})"
    target = wall.replace(second=0)
    # When asking for its occurrences from a day before
    before = start - timedelta(days=1)
    found = parse_schedule(expression, zone).occurrences(before, 3)
    # Then there is exactly one, where the brute force says, and nothing after it
    expected = brute_force(lambda w: w == target, zone, before, start + timedelta(days=3))
    assert len(expected) == 1
    assert found == expected
    assert parse_schedule(expression, zone).next_after(found[0]) is None


CRONISH = "0123456789*/,-? LWHR#@cronatemiuhsdyly()T:"


@fast(400)
@given(
    expression=st.text(alphabet=CRONISH, max_size=40) | st.text(max_size=300),
    zone=st.sampled_from(["UTC", "America/New_York"]) | st.text(max_size=40),
)
def test_any_input_is_either_a_schedule_or_a_schedule_error(expression: str, zone: str) -> None:
    # Given arbitrary text as expression and timezone
    try:
        schedule = parse_schedule(expression, zone)
    except ScheduleError as err:
        # Then a refusal is a ScheduleError naming one of the two fields
        assert err.field in ("schedule_expression", "schedule_timezone")
        assert str(err)
        return
    # Or an accepted schedule computes a next occurrence that is a later UTC minute (or none)
    after = datetime(2026, 1, 30, 10, 17, 30, tzinfo=UTC)
    anchor = datetime(2026, 1, 30, 10, 0, tzinfo=UTC)
    following = schedule.next_after(after, anchor)
    assert following is None or (following > after and following.second == 0)


@pytest.mark.parametrize("zone", DST_ZONES)
def test_generated_windows_really_cross_dst_changes(zone: str) -> None:
    # The property tests above only probe DST when the zones really change offset in the
    # years the windows are drawn from.
    assert transitions(zone), f"{zone} has no DST change in 2026-2027"


@fast(60)
@given(case=st.one_of(minion_crons(), aws_crons(), descriptors), window=windows(), probe=st.data())
def test_answers_agree_with_the_brute_force_whatever_order_moments_are_asked_in(
    case: CalendarCase, window: tuple[str, datetime], probe: st.DataObject
) -> None:
    # Given a random expression in a random zone, and its brute-force occurrences in a window
    zone, start = window
    parse_or_reject(case.expression, zone)
    end = start + WINDOW
    found = brute_force(case.matches, zone, start, end)
    # When one schedule is asked about moments of the window in random order: any second, and
    # the minutes of its occurrences and those just before and after (where a reused answer
    # would go wrong)
    moments = [
        start + timedelta(seconds=s)
        for s in probe.draw(st.lists(st.integers(0, int(WINDOW.total_seconds()) - 1), max_size=10))
    ]
    if found:
        near = probe.draw(st.lists(st.sampled_from(found), min_size=1, max_size=5))
        moments += [t + timedelta(minutes=d) for t in near for d in (-1, 0, 1)]
    moments = probe.draw(st.permutations(moments))
    schedule = parse_schedule(case.expression, zone)
    for after in moments:
        expected = next((t for t in found if t > after), None)
        actual = schedule.next_after(after)
        # Then each answer is the brute force's next occurrence after that moment
        if expected is not None:
            assert actual == expected, after
        else:
            assert actual is None or actual > end, after
