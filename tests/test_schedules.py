"""Schedules: every vector and rejection of the spec (scheduling.md), and the known pitfalls."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

from chalicelib.schedules import Schedule, ScheduleError, parse_schedule

FRIDAY_10_17 = datetime(2026, 1, 30, 10, 17, tzinfo=UTC)  # the spec's starting point


def utc(text: str) -> datetime:
    """A UTC datetime from 'YYYY-MM-DD HH:MM'."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def next_three(expression: str, timezone: str = "UTC", after: datetime = FRIDAY_10_17) -> list[str]:
    return [
        f"{t:%Y-%m-%d %H:%M}" for t in parse_schedule(expression, timezone).occurrences(after, 3)
    ]


# ---------------------------------------------------------------------------------------------
# The spec's vectors
# ---------------------------------------------------------------------------------------------

SPEC_VECTORS = [
    (
        "* * * ? *",
        "UTC",
        FRIDAY_10_17,
        ["2026-01-30 10:18", "2026-01-30 10:19", "2026-01-30 10:20"],
    ),
    (
        "*/15 * * * *",
        "UTC",
        FRIDAY_10_17,
        ["2026-01-30 10:30", "2026-01-30 10:45", "2026-01-30 11:00"],
    ),
    (
        "0 18 * * *",
        "UTC",
        FRIDAY_10_17,
        ["2026-01-30 18:00", "2026-01-31 18:00", "2026-02-01 18:00"],
    ),
    (
        "0 0 1 * 1",
        "UTC",
        FRIDAY_10_17,
        ["2026-02-01 00:00", "2026-02-02 00:00", "2026-02-09 00:00"],
    ),
    (
        "0 9 * * MON-FRI",
        "UTC",
        FRIDAY_10_17,
        ["2026-02-02 09:00", "2026-02-03 09:00", "2026-02-04 09:00"],
    ),
    ("@weekly", "UTC", FRIDAY_10_17, ["2026-02-01 00:00", "2026-02-08 00:00", "2026-02-15 00:00"]),
    (
        "0 9 * * *",
        "America/New_York",
        FRIDAY_10_17,
        ["2026-01-30 14:00", "2026-01-31 14:00", "2026-02-01 14:00"],
    ),
    (
        "cron(0 12 L * ? *)",
        "UTC",
        FRIDAY_10_17,
        ["2026-01-31 12:00", "2026-02-28 12:00", "2026-03-31 12:00"],
    ),
    (
        "cron(0/10 * * * ? *)",
        "UTC",
        FRIDAY_10_17,
        ["2026-01-30 10:20", "2026-01-30 10:30", "2026-01-30 10:40"],
    ),
    (
        "cron(0 12 15W * ? *)",
        "UTC",
        FRIDAY_10_17,
        ["2026-02-16 12:00", "2026-03-16 12:00", "2026-04-15 12:00"],
    ),
    (
        "cron(0 10 ? * 6#3 *)",
        "UTC",
        FRIDAY_10_17,
        ["2026-02-20 10:00", "2026-03-20 10:00", "2026-04-17 10:00"],
    ),
    (
        "cron(0 12 ? * 6L *)",
        "UTC",
        FRIDAY_10_17,
        ["2026-01-30 12:00", "2026-02-27 12:00", "2026-03-27 12:00"],
    ),
    (
        "cron(0 12 LW * ? *)",
        "UTC",
        FRIDAY_10_17,
        ["2026-01-30 12:00", "2026-02-27 12:00", "2026-03-31 12:00"],
    ),
    ("cron(0 0 1 1 ? 2027)", "UTC", FRIDAY_10_17, ["2027-01-01 00:00"]),
    (
        "30 2 * * *",
        "America/New_York",
        utc("2026-03-07 12:00"),
        ["2026-03-08 07:00", "2026-03-09 06:30", "2026-03-10 06:30"],
    ),
    (
        "30 1 * * *",
        "America/New_York",
        utc("2026-10-31 12:00"),
        ["2026-11-01 05:30", "2026-11-02 06:30", "2026-11-03 06:30"],
    ),
]


@pytest.mark.parametrize(
    ("expression", "timezone", "after", "expected"),
    SPEC_VECTORS,
    ids=[f"{v[0]} {v[1]}" for v in SPEC_VECTORS],
)
def test_spec_vector_gives_the_next_three_occurrences(
    expression: str, timezone: str, after: datetime, expected: list[str]
) -> None:
    # Given a schedule of the spec's table
    # When asking for three occurrences after its starting point
    # Then they are the spec's, in UTC (fewer when the schedule ends)
    assert next_three(expression, timezone, after) == expected


# ---------------------------------------------------------------------------------------------
# Rejections
# ---------------------------------------------------------------------------------------------

REJECTED_EXPRESSIONS = [
    # the spec's list
    ("* * * *", "expected 5 fields, found 4"),
    ("0 0 * * * *", "expected 5 fields, found 6"),
    ("0 0 * * * * 2030", "expected 5 fields, found 7"),
    ("R * * * *", "croniter extension"),
    ("61 * * * *", "minute 61 is out of range 0-59"),
    ("*/0 * * * *", "step must be at least 1"),
    ("0 0 30 2 *", "never fires within five years"),
    ("cron(0 12 * * * *)", "one of day-of-month and day-of-week must be ?"),
    ("rate(0 minutes)", "rate value must be at least 1"),
    ("@every 30s", "interval must be at least one minute"),
    # croniter's other extensions and AWS forms in the minion dialect
    ("H * * * *", "croniter extension"),
    ("H(0-29) * * * *", "croniter extension"),
    ("0 0 L * *", "'L' is not a valid day-of-month"),
    ("0 0 15W * *", "'15W' is not a valid day-of-month"),
    ("0 0 * * 5#3", "'5#3' is not a valid day-of-week"),
    ("0 0 * * 5L", "'5L' is not a valid day-of-week"),
    # out of range, malformed fields
    ("0 24 * * *", "hour 24 is out of range 0-23"),
    ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
    ("0 0 32 * *", "day-of-month 32 is out of range 1-31"),
    ("0 0 * 13 *", "month 13 is out of range 1-12"),
    ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
    ("0 0 * * MONDAY", "'MONDAY' is not a valid day-of-week"),
    ("0 0 * FOO *", "'FOO' is not a valid month"),
    ("0 0 * * 5-1", "range 5-1 in the day-of-week field is reversed"),
    ("0 0 * * 7/2", "7/2 in the day-of-week field steps from 7, past 6 where its steps end"),
    ("0 0 * * 1,7/1", "7/1 in the day-of-week field steps from 7"),
    ("1,,2 * * * *", "empty item in the minute field"),
    ("-5 * * * *", "is not a valid minute"),
    ("*/x * * * *", "step 'x' in the minute field is not a number"),
    ("0 0 31 2,4,6,9,11 *", "never fires within five years"),
    # length and emptiness
    ("", "expression is empty"),
    ("   ", "expression is empty"),
    ("0 0 * * " + "1," * 130 + "1", "expression is longer than 256 characters"),
    # descriptors and @every
    ("@reboot", "unknown descriptor @reboot"),
    ("@daily 5", "@daily takes no argument"),
    ("@every", "@every needs a duration"),
    ("@every 90s", "interval must be a whole number of minutes"),
    ("@every 1.5m", "interval must be a whole number of minutes"),
    ("@every 0", "interval must be at least one minute"),
    ("@every -1h", "interval must be at least one minute"),
    ("@every 1h30", "is not a duration"),
    ("@every 1d", "is not a duration"),
    ("@every 6000000h", "never fires within five years"),
    # AWS cron
    ("cron(0 12 ? * ? *)", "day-of-month and day-of-week cannot both be ?"),
    ("cron(0 12 * * ?)", "expected 6 fields in cron(...), found 5"),
    ("cron(0 12 * * ? * *)", "expected 6 fields in cron(...), found 7"),
    ("cron(0 12 * * ? *", "missing its closing parenthesis"),
    ("cron(? 12 * * ? *)", "? is not allowed in the minute field"),
    ("cron(0 0 ? * 0 *)", "day-of-week 0 is out of range 1-7"),  # AWS numbers days 1-7
    ("cron(0 0 ? * 8 *)", "day-of-week 8 is out of range 1-7"),
    ("cron(0 0 ? * 6#6 *)", "week 6 in the day-of-week field is out of range 1-5"),
    ("cron(0 0 ? * 6#3,6#4 *)", "L and # must stand alone"),
    ("cron(0 0 1W,15W * ? *)", "L and W must stand alone"),
    ("cron(0 0 L-2 * ? *)", "L and W must stand alone"),
    ("cron(0 0 32W * ? *)", "day-of-month 32 is out of range 1-31"),
    ("cron(0 0 1 * ? 1969)", "year 1969 is out of range 1970-2199"),
    ("cron(0 0 1 * ? 2200)", "year 2200 is out of range 1970-2199"),
    ("cron(0 0 1 * ? 2027-2026)", "range 2027-2026 in the year field is reversed"),
    (
        "cron(0 0 ? 2 1#5 *)",
        "never fires within five years",
    ),  # 5th Sunday of February: 28 years apart
    ("cron(0 0 29 2 ? 2027)", "never fires in the years given"),
    ("cron(0 12 31W 4,6 ? *)", "never fires within five years"),
    ("cron(R 0 * * ? *)", "croniter extension"),
    # rate
    ("rate(-1 minutes)", "rate value must be at least 1"),
    ("rate(1.5 hours)", "rate value '1.5' is not a whole number"),
    ("rate(five minutes)", "rate value 'five' is not a whole number"),
    ("rate(5 weeks)", "rate unit 'weeks' is not minute(s), hour(s) or day(s)"),
    ("rate(5)", "rate takes a value and a unit"),
    ("rate(3000 days)", "never fires within five years"),
    # at
    ("at(2026-02-30T10:00:00)", "is not a valid date and time"),
    ("at(2026-02-01 10:00:00)", "at(...) takes a date and time"),
    ("at(2026-02-01T25:00:00)", "is not a valid date and time"),
]


@pytest.mark.parametrize(
    ("expression", "reason"), REJECTED_EXPRESSIONS, ids=[r[0][:40] for r in REJECTED_EXPRESSIONS]
)
def test_rejected_expression_says_why(expression: str, reason: str) -> None:
    # Given an expression that cannot be scheduled
    # When parsing it
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression)
    # Then the error names the expression field and says why, without a field prefix
    assert caught.value.field == "schedule_expression"
    assert reason in str(caught.value)
    assert not str(caught.value).startswith("schedule_expression")


REJECTED_TIMEZONES = [
    ("Mars/Olympus", "unknown timezone: Mars/Olympus"),
    ("", "timezone is empty"),
    ("   ", "timezone is empty"),
    ("../../etc/passwd", "unknown timezone: ../../etc/passwd"),
    ("/etc/passwd", "unknown timezone: /etc/passwd"),
    ("America", "unknown timezone: America"),  # a directory of the database
    ("localtime", "unknown timezone: localtime"),  # the host's zone, not an IANA name
    ("posix/Europe/Paris", "unknown timezone"),
    ("utc", "unknown timezone: utc"),
    (" UTC", "unknown timezone"),
    ("Europe/Paris\x00", "unknown timezone: Europe/Paris\\x00"),
    ("x" * 5000, "unknown timezone: xxx"),
]


@pytest.mark.parametrize(
    ("timezone", "reason"), REJECTED_TIMEZONES, ids=[repr(r[0][:20]) for r in REJECTED_TIMEZONES]
)
def test_rejected_timezone_says_why_and_names_the_timezone_field(
    timezone: str, reason: str
) -> None:
    # Given a valid expression in a timezone that is not an IANA name
    # When parsing it
    with pytest.raises(ScheduleError) as caught:
        parse_schedule("0 9 * * *", timezone)
    # Then the error blames the timezone field, with a bounded, printable message
    assert caught.value.field == "schedule_timezone"
    assert reason in str(caught.value)
    assert len(str(caught.value)) < 120 and str(caught.value).isprintable()


def test_schedule_error_is_a_value_error() -> None:
    # Given / When a rejected expression
    # Then callers catching ValueError catch it too
    with pytest.raises(ValueError):
        parse_schedule("61 * * * *")


@pytest.mark.parametrize(
    "timezone",
    [
        "UTC",
        "Etc/UTC",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "Etc/GMT+5",
        "EST5EDT",
    ],
)
def test_iana_timezones_are_accepted(timezone: str) -> None:
    assert parse_schedule("0 9 * * *", timezone).timezone == timezone


# ---------------------------------------------------------------------------------------------
# Kinds and the Schedule object
# ---------------------------------------------------------------------------------------------

KINDS = [
    ("* * * * *", "cron", False),
    ("@daily", "cron", False),
    ("@every 5m", "every", True),
    ("cron(0 12 * * ? *)", "aws_cron", False),
    ("rate(5 minutes)", "rate", True),
    ("at(2026-02-01T09:00:00)", "at", False),
]


@pytest.mark.parametrize(("expression", "kind", "interval"), KINDS)
def test_each_dialect_is_recognised_by_kind(expression: str, kind: str, interval: bool) -> None:
    schedule = parse_schedule(expression)
    assert (schedule.kind, schedule.is_interval()) == (kind, interval)
    assert schedule.expression == expression and schedule.timezone == "UTC"


def test_parse_is_cached_per_expression_and_timezone() -> None:
    # Given the same expression and timezone parsed twice
    # Then the compiled schedule is reused, and another timezone gives another one
    first = parse_schedule("*/5 * * * *", "Europe/London")
    assert parse_schedule("*/5 * * * *", "Europe/London") is first
    assert parse_schedule("*/5 * * * *", "Europe/Paris") is not first


def test_schedule_built_directly_compiles_itself_and_equals_the_parsed_one() -> None:
    direct = Schedule("0 9 * * *", "America/New_York", "cron")
    assert direct == parse_schedule("0 9 * * *", "America/New_York")
    assert direct.next_after(FRIDAY_10_17) == utc("2026-01-30 14:00")


def test_schedule_built_directly_with_a_wrong_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="does not match"):
        Schedule("rate(5 minutes)", "UTC", "cron")


def test_schedule_is_frozen() -> None:
    schedule = parse_schedule("@hourly")
    with pytest.raises(AttributeError):
        schedule.expression = "@daily"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Minion cron
# ---------------------------------------------------------------------------------------------

MINION_CRON = [
    # `?` is `*` in any field, including the minute and hour
    ("? * * * *", ["2026-01-30 10:18", "2026-01-30 10:19", "2026-01-30 10:20"]),
    ("0 ? * * *", ["2026-01-30 11:00", "2026-01-30 12:00", "2026-01-30 13:00"]),
    ("0 0 ? ? ?", ["2026-01-31 00:00", "2026-02-01 00:00", "2026-02-02 00:00"]),
    # Sunday is 0 and 7 and SUN; names are case-insensitive
    ("0 0 * * 0", ["2026-02-01 00:00", "2026-02-08 00:00", "2026-02-15 00:00"]),
    ("0 0 * * 7", ["2026-02-01 00:00", "2026-02-08 00:00", "2026-02-15 00:00"]),
    ("0 0 * * sun", ["2026-02-01 00:00", "2026-02-08 00:00", "2026-02-15 00:00"]),
    ("0 0 * * 5-7", ["2026-01-31 00:00", "2026-02-01 00:00", "2026-02-06 00:00"]),
    ("0 9 * * mon-fri", ["2026-02-02 09:00", "2026-02-03 09:00", "2026-02-04 09:00"]),
    ("0 0 1 jan,Mar *", ["2026-03-01 00:00", "2027-01-01 00:00", "2027-03-01 00:00"]),
    ("0 0 1 FEB-APR/2 *", ["2026-02-01 00:00", "2026-04-01 00:00", "2027-02-01 00:00"]),
    # steps, ranges, `n/step` (from n to the end), lists, a step longer than the range
    ("5/20 * * * *", ["2026-01-30 10:25", "2026-01-30 10:45", "2026-01-30 11:05"]),
    ("10-20/5 * * * *", ["2026-01-30 10:20", "2026-01-30 11:10", "2026-01-30 11:15"]),
    ("17,18,59 10 * * *", ["2026-01-30 10:18", "2026-01-30 10:59", "2026-01-31 10:17"]),
    ("*/100 * * * *", ["2026-01-30 11:00", "2026-01-30 12:00", "2026-01-30 13:00"]),
    ("0 0 * * */2", ["2026-01-31 00:00", "2026-02-01 00:00", "2026-02-03 00:00"]),
    # both day fields restricted: either matches (the 13th, and Fridays)
    ("0 0 13 * FRI", ["2026-02-06 00:00", "2026-02-13 00:00", "2026-02-20 00:00"]),
    ("0 0 13 3 FRI", ["2026-03-06 00:00", "2026-03-13 00:00", "2026-03-20 00:00"]),
    # a day field starting with `*` makes a day match both fields: odd days that are Mondays
    # (robfig/cron v1, Vixie cron, cronsim; issue 11)
    ("0 0 */2 * MON", ["2026-02-09 00:00", "2026-02-23 00:00", "2026-03-09 00:00"]),
    ("0 0 1-7 * */7", ["2026-02-01 00:00", "2026-03-01 00:00", "2026-04-05 00:00"]),
    # one day field a star: the other alone decides
    ("0 0 * * FRI", ["2026-02-06 00:00", "2026-02-13 00:00", "2026-02-20 00:00"]),
    ("0 0 13 * *", ["2026-02-13 00:00", "2026-03-13 00:00", "2026-04-13 00:00"]),
    ("0 0 13 * ?", ["2026-02-13 00:00", "2026-03-13 00:00", "2026-04-13 00:00"]),
    # sparse but possible: 29 February
    ("0 0 29 2 *", ["2028-02-29 00:00", "2032-02-29 00:00", "2036-02-29 00:00"]),
    ("0 0 31 * *", ["2026-01-31 00:00", "2026-03-31 00:00", "2026-05-31 00:00"]),
    # whitespace around and between fields
    ("  0   9 * *\t* ", ["2026-01-31 09:00", "2026-02-01 09:00", "2026-02-02 09:00"]),
]


@pytest.mark.parametrize(("expression", "expected"), MINION_CRON, ids=[m[0] for m in MINION_CRON])
def test_minion_cron_fires_on_matching_minutes(expression: str, expected: list[str]) -> None:
    assert next_three(expression) == expected


DESCRIPTORS = [
    ("@yearly", ["2027-01-01 00:00", "2028-01-01 00:00", "2029-01-01 00:00"]),
    ("@annually", ["2027-01-01 00:00", "2028-01-01 00:00", "2029-01-01 00:00"]),
    ("@monthly", ["2026-02-01 00:00", "2026-03-01 00:00", "2026-04-01 00:00"]),
    ("@weekly", ["2026-02-01 00:00", "2026-02-08 00:00", "2026-02-15 00:00"]),
    ("@daily", ["2026-01-31 00:00", "2026-02-01 00:00", "2026-02-02 00:00"]),
    ("@midnight", ["2026-01-31 00:00", "2026-02-01 00:00", "2026-02-02 00:00"]),
    ("@hourly", ["2026-01-30 11:00", "2026-01-30 12:00", "2026-01-30 13:00"]),
    ("@DAILY", ["2026-01-31 00:00", "2026-02-01 00:00", "2026-02-02 00:00"]),
]


@pytest.mark.parametrize(("expression", "expected"), DESCRIPTORS, ids=[d[0] for d in DESCRIPTORS])
def test_descriptor_fires_like_its_cron_equivalent(expression: str, expected: list[str]) -> None:
    assert next_three(expression) == expected


def test_descriptor_fires_at_local_midnight_in_its_timezone() -> None:
    assert next_three("@daily", "Asia/Kolkata") == [
        "2026-01-30 18:30",
        "2026-01-31 18:30",
        "2026-02-01 18:30",
    ]


# ---------------------------------------------------------------------------------------------
# AWS cron
# ---------------------------------------------------------------------------------------------

AWS_CRON = [
    # day-of-week numbers 1-7 from Sunday = 1, not cron's Sunday = 0
    ("cron(0 9 ? * 1 *)", ["2026-02-01 09:00", "2026-02-08 09:00", "2026-02-15 09:00"]),
    ("cron(0 9 ? * SUN *)", ["2026-02-01 09:00", "2026-02-08 09:00", "2026-02-15 09:00"]),
    ("cron(0 9 ? * 7 *)", ["2026-01-31 09:00", "2026-02-07 09:00", "2026-02-14 09:00"]),
    ("cron(0 9 ? * 2-6 *)", ["2026-02-02 09:00", "2026-02-03 09:00", "2026-02-04 09:00"]),
    ("cron(0 9 ? * MON-FRI *)", ["2026-02-02 09:00", "2026-02-03 09:00", "2026-02-04 09:00"]),
    ("cron(0 9 ? * 1,7 *)", ["2026-01-31 09:00", "2026-02-01 09:00", "2026-02-07 09:00"]),
    ("cron(0 9 ? * * *)", ["2026-01-31 09:00", "2026-02-01 09:00", "2026-02-02 09:00"]),
    # L alone in day-of-week: the last day of the week, Saturday
    ("cron(0 12 ? * L *)", ["2026-01-31 12:00", "2026-02-07 12:00", "2026-02-14 12:00"]),
    # nL: the last such weekday of the month (1L = last Sunday, 7L = last Saturday)
    ("cron(0 12 ? * 1L *)", ["2026-02-22 12:00", "2026-03-29 12:00", "2026-04-26 12:00"]),
    ("cron(0 12 ? * FRIL *)", ["2026-01-30 12:00", "2026-02-27 12:00", "2026-03-27 12:00"]),
    # n#k: skipped in months without a 5th such weekday
    ("cron(0 0 ? * 5#5 *)", ["2026-04-30 00:00", "2026-07-30 00:00", "2026-10-29 00:00"]),
    ("cron(0 0 ? * MON#1 *)", ["2026-02-02 00:00", "2026-03-02 00:00", "2026-04-06 00:00"]),
    # W at month edges: a Saturday 1st moves forward to Monday 3rd, never into the month before
    ("cron(0 12 1W 8 ? *)", ["2026-08-03 12:00", "2027-08-02 12:00", "2028-08-01 12:00"]),
    # a Sunday 31st moves back to Friday 29th, never into the month after
    ("cron(0 12 31W 5 ? *)", ["2026-05-29 12:00", "2027-05-31 12:00", "2028-05-31 12:00"]),
    # a Saturday 15th moves back to Friday 14th
    ("cron(0 12 15W 8 ? *)", ["2026-08-14 12:00", "2027-08-16 12:00", "2028-08-15 12:00"]),
    # 31W does not fire in months without a 31st
    ("cron(0 12 31W 4-5 ? *)", ["2026-05-29 12:00", "2027-05-31 12:00", "2028-05-31 12:00"]),
    # LW: the last weekday, when the month ends on a Sunday or a Saturday
    ("cron(0 12 LW 5 ? *)", ["2026-05-29 12:00", "2027-05-31 12:00", "2028-05-31 12:00"]),
    ("cron(0 12 LW 2 ? *)", ["2026-02-27 12:00", "2027-02-26 12:00", "2028-02-29 12:00"]),
    # day-of-month lists and steps, with day-of-week `?`
    ("cron(0 0 1,15 * ? *)", ["2026-02-01 00:00", "2026-02-15 00:00", "2026-03-01 00:00"]),
    ("cron(15 10 ? * 6L 2026-2027)", ["2026-02-27 10:15", "2026-03-27 10:15", "2026-04-24 10:15"]),
    ("cron(20 10 ? * 6L 2026-2027)", ["2026-01-30 10:20", "2026-02-27 10:20", "2026-03-27 10:20"]),
    # year ranges and steps end: then no more occurrences
    ("cron(0 0 1 1 ? 2026-2028)", ["2027-01-01 00:00", "2028-01-01 00:00"]),
    ("cron(0 0 1 1 ? 2030/5)", ["2030-01-01 00:00", "2035-01-01 00:00", "2040-01-01 00:00"]),
    ("cron(0 0 1 JAN ? 2026,2031)", ["2031-01-01 00:00"]),
    ("cron(0 0 1 1 ? 2020)", []),
    # case and inner whitespace
    ("CRON( 0 12 l * ? * )", ["2026-01-31 12:00", "2026-02-28 12:00", "2026-03-31 12:00"]),
]


@pytest.mark.parametrize(("expression", "expected"), AWS_CRON, ids=[a[0] for a in AWS_CRON])
def test_aws_cron_fires_on_matching_minutes(expression: str, expected: list[str]) -> None:
    assert next_three(expression) == expected


def test_aws_cron_six_fields_are_never_read_as_seconds() -> None:
    # Given an AWS cron every minute (croniter would read the 6th field as seconds)
    schedule = parse_schedule("cron(* * * * ? *)")
    # When asking for occurrences
    # Then they are a minute apart
    assert schedule.occurrences(FRIDAY_10_17, 2) == [
        utc("2026-01-30 10:18"),
        utc("2026-01-30 10:19"),
    ]


def test_aws_cron_in_a_timezone_fires_on_local_days() -> None:
    # Given the last day of the month at 23:30 in Sydney (UTC+11 in summer)
    # Then it fires at 12:30 UTC on that local day
    assert next_three("cron(30 23 L * ? *)", "Australia/Sydney") == [
        "2026-01-31 12:30",
        "2026-02-28 12:30",
        "2026-03-31 12:30",
    ]


# ---------------------------------------------------------------------------------------------
# rate and @every: anchored intervals
# ---------------------------------------------------------------------------------------------

ANCHOR = utc("2026-01-30 10:00")

INTERVALS = [
    ("rate(5 minutes)", ["2026-01-30 10:20", "2026-01-30 10:25", "2026-01-30 10:30"]),
    ("rate(1 minute)", ["2026-01-30 10:18", "2026-01-30 10:19", "2026-01-30 10:20"]),
    ("rate(5 minute)", ["2026-01-30 10:20", "2026-01-30 10:25", "2026-01-30 10:30"]),
    ("rate(1 hour)", ["2026-01-30 11:00", "2026-01-30 12:00", "2026-01-30 13:00"]),
    ("rate(2 hours)", ["2026-01-30 12:00", "2026-01-30 14:00", "2026-01-30 16:00"]),
    ("rate(1 day)", ["2026-01-31 10:00", "2026-02-01 10:00", "2026-02-02 10:00"]),
    ("rate(7 days)", ["2026-02-06 10:00", "2026-02-13 10:00", "2026-02-20 10:00"]),
    ("@every 1m", ["2026-01-30 10:18", "2026-01-30 10:19", "2026-01-30 10:20"]),
    ("@every 1h30m", ["2026-01-30 11:30", "2026-01-30 13:00", "2026-01-30 14:30"]),
    ("@every 90m", ["2026-01-30 11:30", "2026-01-30 13:00", "2026-01-30 14:30"]),
    ("@every 2h", ["2026-01-30 12:00", "2026-01-30 14:00", "2026-01-30 16:00"]),
    ("@every 1.5h", ["2026-01-30 11:30", "2026-01-30 13:00", "2026-01-30 14:30"]),
    ("@every 120s", ["2026-01-30 10:18", "2026-01-30 10:20", "2026-01-30 10:22"]),
    ("@every 1h0m0s", ["2026-01-30 11:00", "2026-01-30 12:00", "2026-01-30 13:00"]),
]


@pytest.mark.parametrize(("expression", "expected"), INTERVALS, ids=[i[0] for i in INTERVALS])
def test_interval_fires_every_n_minutes_counted_from_the_anchor(
    expression: str, expected: list[str]
) -> None:
    # Given an interval set at 10:00 and asked at 10:17
    occurrences = parse_schedule(expression).occurrences(FRIDAY_10_17, 3, anchor=ANCHOR)
    # Then occurrences are anchor + k*N after 10:17
    assert [f"{t:%Y-%m-%d %H:%M}" for t in occurrences] == expected


def test_interval_never_fires_at_the_anchor_itself() -> None:
    # Given a rate anchored in the future
    schedule = parse_schedule("rate(10 minutes)")
    anchor = utc("2026-01-30 12:00")
    # Then the first occurrence is one period after the anchor (k >= 1)
    assert schedule.next_after(FRIDAY_10_17, anchor) == utc("2026-01-30 12:10")
    assert schedule.next_after(anchor, anchor) == utc("2026-01-30 12:10")


def test_interval_ignores_the_timezone_across_dst() -> None:
    # Given an hourly rate in New York over the night clocks go back
    schedule = parse_schedule("rate(1 hour)", "America/New_York")
    anchor = utc("2026-11-01 03:00")
    # Then it stays exactly 60 minutes apart in UTC
    assert schedule.occurrences(anchor, 4, anchor) == [
        utc("2026-11-01 04:00"),
        utc("2026-11-01 05:00"),
        utc("2026-11-01 06:00"),
        utc("2026-11-01 07:00"),
    ]


def test_interval_without_anchor_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="anchor"):
        parse_schedule("@every 1h30m").next_after(FRIDAY_10_17)


def test_interval_anchor_with_seconds_counts_from_its_minute() -> None:
    schedule = parse_schedule("rate(5 minutes)")
    assert schedule.next_after(FRIDAY_10_17, anchor=ANCHOR + timedelta(seconds=42)) == utc(
        "2026-01-30 10:20"
    )


# ---------------------------------------------------------------------------------------------
# at: one time
# ---------------------------------------------------------------------------------------------


def test_at_fires_once_at_its_wall_clock_time_in_the_timezone() -> None:
    # Given a one-time schedule at 09:30 Paris time (UTC+1 in February)
    schedule = parse_schedule("at(2026-02-01T09:30:00)", "Europe/Paris")
    # When asking before, at and after it
    # Then it fires once at 08:30 UTC, and never again
    assert schedule.next_after(FRIDAY_10_17) == utc("2026-02-01 08:30")
    assert schedule.occurrences(FRIDAY_10_17, 5) == [utc("2026-02-01 08:30")]
    assert schedule.next_after(utc("2026-02-01 08:30")) is None
    assert schedule.next_after(utc("2026-03-01 00:00")) is None


def test_at_with_seconds_fires_at_its_minute() -> None:
    schedule = parse_schedule("at(2026-02-01T09:30:59)")
    assert schedule.next_after(FRIDAY_10_17) == utc("2026-02-01 09:30")


def test_at_in_the_past_is_accepted_and_never_fires() -> None:
    # A stored job whose at() already fired must still parse (the tick re-parses it)
    assert parse_schedule("at(2020-01-01T00:00:00)").next_after(FRIDAY_10_17) is None


def test_at_in_a_dst_gap_fires_at_the_first_minute_after_it() -> None:
    schedule = parse_schedule("at(2026-03-08T02:30:00)", "America/New_York")
    assert schedule.next_after(FRIDAY_10_17) == utc("2026-03-08 07:00")


def test_at_in_a_repeated_hour_fires_at_its_first_instance() -> None:
    schedule = parse_schedule("at(2026-11-01T01:30:00)", "America/New_York")
    assert schedule.occurrences(FRIDAY_10_17, 3) == [utc("2026-11-01 05:30")]


# ---------------------------------------------------------------------------------------------
# DST: repeated wall times fire once (first instance), skipped ones at the end of the gap
# ---------------------------------------------------------------------------------------------

DST_CASES = [
    # London: 01:00 GMT -> 02:00 BST on 03-29; 02:00 BST -> 01:00 GMT on 10-25
    (
        "30 1 * * *",
        "Europe/London",
        "2026-03-28 12:00",
        ["2026-03-29 01:00", "2026-03-30 00:30", "2026-03-31 00:30"],
    ),
    (
        "30 1 * * *",
        "Europe/London",
        "2026-10-24 12:00",
        ["2026-10-25 00:30", "2026-10-26 01:30", "2026-10-27 01:30"],
    ),
    # every half hour while London repeats 01:00-01:59: the second 01:00 and 01:30 are skipped
    (
        "*/30 * * * *",
        "Europe/London",
        "2026-10-24 23:15",
        ["2026-10-24 23:30", "2026-10-25 00:00", "2026-10-25 00:30"],
    ),
    (
        "*/30 * * * *",
        "Europe/London",
        "2026-10-25 00:30",
        ["2026-10-25 02:00", "2026-10-25 02:30", "2026-10-25 03:00"],
    ),
    # the whole skipped hour collapses into one run at 02:00 BST, shared with 02:00 itself
    (
        "* 1,2 * * *",
        "Europe/London",
        "2026-03-29 00:58",
        ["2026-03-29 01:00", "2026-03-29 01:01", "2026-03-29 01:02"],
    ),
    # Lord Howe moves by 30 minutes: 02:00 -> 02:30 on 10-04, 02:00 -> 01:30 on 04-05
    (
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-03 12:00",
        ["2026-10-03 15:30", "2026-10-04 15:15", "2026-10-05 15:15"],
    ),
    (
        "45 1 * * *",
        "Australia/Lord_Howe",
        "2026-04-04 12:00",
        ["2026-04-04 14:45", "2026-04-05 15:15", "2026-04-06 15:15"],
    ),
    # New York, every 20 minutes through the repeated hour: the second 01:xx are skipped
    (
        "*/20 * * * *",
        "America/New_York",
        "2026-11-01 05:30",
        ["2026-11-01 05:40", "2026-11-01 07:00", "2026-11-01 07:20"],
    ),
    # New York, nonexistent 02:xx times all land on 03:00 EDT, once
    (
        "*/20 2 * * *",
        "America/New_York",
        "2026-03-08 06:00",
        ["2026-03-08 07:00", "2026-03-09 06:00", "2026-03-09 06:20"],
    ),
    # Santiago changes at midnight: local midnight does not exist on 09-06, and 23:xx repeats on 04-04
    (
        "0 0 * * *",
        "America/Santiago",
        "2026-09-05 00:00",
        ["2026-09-05 04:00", "2026-09-06 04:00", "2026-09-07 03:00"],
    ),
    (
        "30 23 * * *",
        "America/Santiago",
        "2026-04-04 12:00",
        ["2026-04-05 02:30", "2026-04-06 03:30", "2026-04-07 03:30"],
    ),
    # AWS cron in a DST zone: 02:30 on the last Sunday of March does not exist in London
    (
        "cron(30 1 ? * 1L *)",
        "Europe/London",
        "2026-03-01 00:00",
        ["2026-03-29 01:00", "2026-04-26 00:30", "2026-05-31 00:30"],
    ),
]


@pytest.mark.parametrize(
    ("expression", "timezone", "after", "expected"),
    DST_CASES,
    ids=[f"{d[0]} {d[1]} {d[2]}" for d in DST_CASES],
)
def test_dst_transitions_fire_each_wall_time_once(
    expression: str, timezone: str, after: str, expected: list[str]
) -> None:
    assert next_three(expression, timezone, utc(after)) == expected


def test_asking_from_the_second_instance_of_a_repeated_hour_does_not_go_back() -> None:
    # Given every minute in New York, asked at 01:10 EST (the second 01:10, 06:10 UTC)
    schedule = parse_schedule("* * * * *", "America/New_York")
    # Then the next occurrence is 02:00 EST: the rest of the repeated hour already fired
    assert schedule.next_after(utc("2026-11-01 06:10")) == utc("2026-11-01 07:00")


# ---------------------------------------------------------------------------------------------
# Precision and inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "after",
    [
        datetime(2026, 1, 30, 10, 17, 0, tzinfo=UTC),
        datetime(2026, 1, 30, 10, 17, 59, 999999, tzinfo=UTC),
        datetime(2026, 1, 30, 11, 17, 30, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_next_occurrence_is_a_whole_utc_minute_strictly_after(after: datetime) -> None:
    # Given `after` with seconds, or in another offset
    result = parse_schedule("* * * * *", "Asia/Kathmandu").next_after(after)
    # Then the result is the next whole UTC minute
    assert result == utc("2026-01-30 10:18")
    assert result is not None and result.tzinfo is UTC and result > after


def test_next_after_an_occurrence_is_the_following_one() -> None:
    schedule = parse_schedule("*/15 * * * *")
    assert schedule.next_after(utc("2026-01-30 10:30")) == utc("2026-01-30 10:45")


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("@hourly").next_after(datetime(2026, 1, 30, 10, 17))


def test_occurrences_of_zero_is_empty() -> None:
    assert parse_schedule("@hourly").occurrences(FRIDAY_10_17, 0) == []


def test_next_after_near_the_end_of_time_is_none() -> None:
    assert parse_schedule("0 0 1 1 *").next_after(datetime(9999, 6, 1, tzinfo=UTC)) is None


def test_next_after_is_cheap_enough_for_the_tick() -> None:
    # Given the kinds of schedule the tick evaluates thousands of times a minute
    schedules = [
        parse_schedule("*/5 * * * *", "America/New_York"),
        parse_schedule("cron(0 12 ? * 6L *)", "Europe/London"),
        parse_schedule("0 0 29 2 *", "UTC"),
        parse_schedule("rate(5 minutes)"),
    ]
    # When computing 4000 next occurrences (about 30 ms on a laptop)
    started = time.perf_counter()
    for i in range(1000):
        after = FRIDAY_10_17 + timedelta(minutes=7 * i)
        for schedule in schedules:
            schedule.next_after(after, anchor=ANCHOR)
    # Then it takes well under a second, even on a slow CI machine
    assert time.perf_counter() - started < 1.0


# ---------------------------------------------------------------------------------------------
# croniter is the engine: what it misreads on its own, and what this module makes of it.
# Each test pins croniter's raw reading (so an upgrade that changes it is noticed) and the
# spec's reading, which differs.
# ---------------------------------------------------------------------------------------------

FRIDAY_10_17_NAIVE = FRIDAY_10_17.replace(tzinfo=None)


def raw_croniter(
    expression: str, start: datetime = FRIDAY_10_17_NAIVE, count: int = 3, **options: object
) -> list[str]:
    """croniter's own next occurrences, to the second."""
    iterator = croniter(expression, start, **options)
    return [f"{iterator.get_next(datetime):%Y-%m-%d %H:%M:%S}" for _ in range(count)]


@pytest.mark.parametrize(
    ("expression", "raw_first_two", "reason"),
    [
        (
            "0 0 * * * *",
            ["2026-01-31 00:00:00", "2026-01-31 00:00:01"],
            "expected 5 fields, found 6",
        ),
        (
            "0 0 * * * * 2030",
            ["2030-01-01 00:00:00", "2030-01-01 00:00:01"],
            "expected 5 fields, found 7",
        ),
    ],
)
def test_croniter_reads_a_sixth_field_as_seconds_and_a_seventh_as_a_year_we_refuse_both(
    expression: str, raw_first_two: list[str], reason: str
) -> None:
    # Given an expression with more than five fields, which croniter fires every second
    assert raw_croniter(expression, count=2) == raw_first_two
    # When parsing it as a minion cron
    # Then it is refused rather than guessed at
    with pytest.raises(ScheduleError, match=reason):
        parse_schedule(expression)


def test_croniter_reads_the_aws_year_as_seconds_we_hand_it_five_fields() -> None:
    # Given the body of an AWS cron every minute, which croniter fires every second
    assert raw_croniter("* * * * ? *", count=2) == ["2026-01-30 10:17:01", "2026-01-30 10:17:02"]
    # When it is parsed as AWS cron(...)
    # Then it fires every minute
    assert next_three("cron(* * * * ? *)") == [
        "2026-01-30 10:18",
        "2026-01-30 10:19",
        "2026-01-30 10:20",
    ]


def test_croniter_refuses_question_mark_outside_the_day_fields_we_read_it_as_star() -> None:
    # Given `?` in the minute field, which croniter refuses
    with pytest.raises(CroniterBadCronError, match="Question mark"):
        croniter("? * * * *", FRIDAY_10_17_NAIVE)
    # Then the minion dialect reads it as `*`
    assert next_three("? * * * *") == ["2026-01-30 10:18", "2026-01-30 10:19", "2026-01-30 10:20"]


@pytest.mark.parametrize("expression", ["R * * * *", "H * * * *", "cron(0 H * * ? *)"])
def test_croniter_accepts_its_random_and_hashed_values_we_refuse_them(expression: str) -> None:
    # Given croniter's R (a random minute) and H (a minute hashed from an id), which it accepts
    assert raw_croniter("R * * * *", count=1)
    assert raw_croniter("H * * * *", count=1, hash_id="job")
    # When parsing them here
    # Then they are refused as croniter's extensions, not cron
    with pytest.raises(ScheduleError, match="croniter extension"):
        parse_schedule(expression)


@pytest.mark.parametrize(
    ("expression", "raw", "expected"),
    [
        # croniter reads an equal range as the whole cycle: every minute, every month
        (
            "5-5 * * * *",
            ["2026-01-30 10:18:00", "2026-01-30 10:19:00", "2026-01-30 10:20:00"],
            ["2026-01-30 11:05", "2026-01-30 12:05", "2026-01-30 13:05"],
        ),
        (
            "0 0 1 JAN-JAN *",
            ["2026-02-01 00:00:00", "2026-03-01 00:00:00", "2026-04-01 00:00:00"],
            ["2027-01-01 00:00", "2028-01-01 00:00", "2029-01-01 00:00"],
        ),
        (
            "0 0 1 3-3 *",
            ["2026-02-01 00:00:00", "2026-03-01 00:00:00", "2026-04-01 00:00:00"],
            ["2026-03-01 00:00", "2027-03-01 00:00", "2028-03-01 00:00"],
        ),
    ],
)
def test_croniter_reads_an_equal_range_as_the_whole_cycle_we_read_it_as_one_value(
    expression: str, raw: list[str], expected: list[str]
) -> None:
    # Given a range from a value to itself
    assert raw_croniter(expression) == raw
    # Then it means that one value
    assert next_three(expression) == expected


def test_croniter_reads_a_reversed_range_as_a_wrap_around_we_refuse_it() -> None:
    # Given Friday-Monday, which croniter wraps over the weekend
    assert raw_croniter("0 0 * * 5-1") == [
        "2026-01-31 00:00:00",
        "2026-02-01 00:00:00",
        "2026-02-02 00:00:00",
    ]
    # Then the minion dialect refuses it as reversed (robfig/cron, cronsim)
    with pytest.raises(ScheduleError, match="range 5-1 in the day-of-week field is reversed"):
        parse_schedule("0 0 * * 5-1")


def test_croniter_drops_the_step_at_a_wrap_aws_carries_it_across_as_quartz_does() -> None:
    # Given hours 22-2 every third hour: croniter reads 22 and 2
    assert raw_croniter("0 22-2/3 * * *") == [
        "2026-01-30 22:00:00",
        "2026-01-31 02:00:00",
        "2026-01-31 22:00:00",
    ]
    # Then AWS cron(...) counts 22, 25 = 01:00 (Quartz's addToSet; EventBridge's dialect)
    assert next_three("cron(0 22-2/3 * * ? *)") == [
        "2026-01-30 22:00",
        "2026-01-31 01:00",
        "2026-01-31 22:00",
    ]


def test_croniter_reads_a_step_from_7_as_from_sunday_0_we_refuse_it() -> None:
    # Given `7/2` in the day of week: croniter reads Sunday, Tuesday, Thursday, Saturday,
    # cronsim Sunday alone (7 is its last value), robfig refuses 7; the empty set it left
    # here used to reach croniter as a 4-field expression (a 500 through the API)
    assert croniter("0 0 * * 7/2", FRIDAY_10_17_NAIVE).expanded[4] == [0, 2, 4, 6]
    # Then it is refused, saying why
    with pytest.raises(ScheduleError, match="7/2 in the day-of-week field"):
        parse_schedule("0 0 * * 7/2")


def test_croniter_numbers_days_from_sunday_zero_aws_days_are_converted() -> None:
    # Given day 1, Monday to croniter
    assert raw_croniter("0 9 * * 1") == [
        "2026-02-02 09:00:00",
        "2026-02-09 09:00:00",
        "2026-02-16 09:00:00",
    ]
    # Then in AWS cron(...) day 1 is Sunday
    assert next_three("cron(0 9 ? * 1 *)") == [
        "2026-02-01 09:00",
        "2026-02-08 09:00",
        "2026-02-15 09:00",
    ]


def test_croniter_has_no_l_alone_in_the_day_of_week_we_read_it_as_saturday() -> None:
    with pytest.raises(CroniterNotAlphaError):
        croniter("0 12 * * L", FRIDAY_10_17_NAIVE)
    assert next_three("cron(0 12 ? * L *)") == [
        "2026-01-31 12:00",
        "2026-02-07 12:00",
        "2026-02-14 12:00",
    ]


def test_croniter_spells_the_last_weekday_of_the_month_l5_aws_6l_is_converted_to_it() -> None:
    # Given the last Friday of the month: AWS `6L`, which croniter refuses, and its own `L5`
    with pytest.raises(CroniterNotAlphaError):
        croniter("0 12 * * 5L", FRIDAY_10_17_NAIVE)
    last_fridays = raw_croniter("0 12 * * L5")
    # Then the AWS form fires on croniter's last Fridays
    assert [f"{t}:00" for t in next_three("cron(0 12 ? * 6L *)")] == last_fridays
    assert last_fridays == ["2026-01-30 12:00:00", "2026-02-27 12:00:00", "2026-03-27 12:00:00"]


def test_croniter_has_no_lw_its_31w_is_the_last_weekday_we_convert_to_it() -> None:
    # Given LW, which croniter refuses; its 31W moves to the month's last day, then to the
    # nearest weekday within the month: the last weekday
    with pytest.raises(CroniterNotAlphaError):
        croniter("0 12 LW * *", FRIDAY_10_17_NAIVE)
    assert raw_croniter("0 12 31W 5 *") == [
        "2026-05-29 12:00:00",
        "2027-05-31 12:00:00",
        "2028-05-31 12:00:00",
    ]
    # Then LW fires on the last weekday of each month (Sunday 31 May 2026: Friday 29th)
    assert next_three("cron(0 12 LW 5 ? *)") == [
        "2026-05-29 12:00",
        "2027-05-31 12:00",
        "2028-05-31 12:00",
    ]
    assert next_three("cron(0 12 LW 2 ? *)") == [
        "2026-02-27 12:00",
        "2027-02-26 12:00",
        "2028-02-29 12:00",
    ]


def test_croniter_moves_a_w_day_past_the_month_end_to_its_last_day_we_skip_that_month() -> None:
    # Given 30W in February and March, which croniter fires in February too
    assert raw_croniter("0 12 30W 2-3 *") == [
        "2026-02-27 12:00:00",
        "2026-03-30 12:00:00",
        "2027-02-26 12:00:00",
    ]
    # Then February, which has no 30th, does not fire
    assert next_three("cron(0 12 30W 2-3 ? *)") == [
        "2026-03-30 12:00",
        "2027-03-30 12:00",
        "2028-03-30 12:00",
    ]


def test_croniter_accepts_a_day_that_never_comes_and_fails_when_computing_we_refuse_it_at_once() -> (
    None
):
    # Given 30 February, which croniter accepts and only fails to compute
    iterator = croniter("0 0 30 2 *", FRIDAY_10_17_NAIVE)
    with pytest.raises(CroniterBadDateError):
        iterator.get_next(datetime)
    # Then parsing refuses it, saying why
    with pytest.raises(ScheduleError, match="never fires within five years"):
        parse_schedule("0 0 30 2 *")


def test_croniter_years_stop_at_2099_aws_years_to_2199_are_filtered_here() -> None:
    with pytest.raises(CroniterBadCronError, match="out of range"):
        croniter("0 0 1 1 * 0 2150", FRIDAY_10_17_NAIVE)
    assert next_three("cron(0 0 1 1 ? 2150)") == ["2150-01-01 00:00"]


def test_croniter_fires_past_2199_aws_years_end_there() -> None:
    # Given a yearly schedule, which croniter fires in 2200 too
    assert raw_croniter("0 0 1 1 *", datetime(2199, 6, 1)) == [
        "2200-01-01 00:00:00",
        "2201-01-01 00:00:00",
        "2202-01-01 00:00:00",
    ]
    # Then AWS cron(...) with a `*` year stops after 2199, and the 5-field dialect goes on
    assert next_three("cron(0 0 1 1 ? *)", after=utc("2198-06-01 00:00")) == ["2199-01-01 00:00"]
    assert next_three("0 0 1 1 *", after=utc("2199-06-01 00:00")) == [
        "2200-01-01 00:00",
        "2201-01-01 00:00",
        "2202-01-01 00:00",
    ]
    # The years are local: in Tokyo (UTC+9) the last hour of 2199 starts at 14:00 UTC
    tokyo = parse_schedule("cron(0 * ? * * *)", "Asia/Tokyo")
    assert tokyo.next_after(utc("2199-12-31 13:00")) == utc("2199-12-31 14:00")
    assert tokyo.next_after(utc("2199-12-31 14:00")) is None


def test_croniter_fires_a_repeated_wall_time_twice_we_fire_it_once() -> None:
    # Given 01:30 in New York on the night clocks go back (01:30 EDT, then 01:30 EST)
    new_york = ZoneInfo("America/New_York")
    start = datetime(2026, 10, 31, 8, 0, tzinfo=new_york)
    iterator = croniter("30 1 * * *", start)
    raw = [iterator.get_next(datetime).astimezone(UTC) for _ in range(2)]
    assert raw == [utc("2026-11-01 05:30"), utc("2026-11-01 06:30")]
    # Then it fires once, at the first instance, and next on the following day
    assert next_three("30 1 * * *", "America/New_York", utc("2026-10-31 12:00")) == [
        "2026-11-01 05:30",
        "2026-11-02 06:30",
        "2026-11-03 06:30",
    ]


# ---------------------------------------------------------------------------------------------
# Conversion edges: fields reach croniter as lists of values
# ---------------------------------------------------------------------------------------------

CONVERSION_EDGES = [
    # both day fields restricted, one of them to every value: either matches, so every day
    ("0 0 1-31 * MON", ["2026-01-31 00:00", "2026-02-01 00:00", "2026-02-02 00:00"]),
    ("0 0 13 * SUN-SAT", ["2026-01-31 00:00", "2026-02-01 00:00", "2026-02-02 00:00"]),
    ("0 0 13 * 0-7", ["2026-01-31 00:00", "2026-02-01 00:00", "2026-02-02 00:00"]),
    # every value of a field beside a star day field
    ("0 0 * * 0-6", ["2026-01-31 00:00", "2026-02-01 00:00", "2026-02-02 00:00"]),
    ("0-59 10 * * *", ["2026-01-30 10:18", "2026-01-30 10:19", "2026-01-30 10:20"]),
    # AWS day-of-week steps start at Sunday = 1: 2/3 is Monday and Thursday
    ("cron(0 9 ? * 2/3 *)", ["2026-02-02 09:00", "2026-02-05 09:00", "2026-02-09 09:00"]),
    # AWS n#k and W beside lists of times
    ("cron(0,30 9,17 ? * 2#1 *)", ["2026-02-02 09:00", "2026-02-02 09:30", "2026-02-02 17:00"]),
]


@pytest.mark.parametrize(
    ("expression", "expected"), CONVERSION_EDGES, ids=[c[0] for c in CONVERSION_EDGES]
)
def test_fields_converted_for_croniter_keep_their_meaning(
    expression: str, expected: list[str]
) -> None:
    assert next_three(expression) == expected


def test_the_answer_reused_for_the_tick_holds_whatever_order_moments_are_asked_in() -> None:
    # Given a schedule asked first for a late moment, then earlier and later ones
    schedule = parse_schedule("0 9 * * MON-FRI", "America/New_York")
    asked = [
        "2026-02-02 13:00",
        "2026-01-30 10:17",
        "2026-02-02 13:59",
        "2026-02-02 14:00",
        "2026-01-30 14:00",
    ]
    # Then each answer is the first 09:00 New York (14:00 UTC) weekday strictly after it
    assert [f"{schedule.next_after(utc(t)):%Y-%m-%d %H:%M}" for t in asked] == [
        "2026-02-02 14:00",
        "2026-01-30 14:00",
        "2026-02-02 14:00",
        "2026-02-03 14:00",
        "2026-02-02 14:00",
    ]


def test_threads_sharing_a_schedule_get_the_answers_of_one_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given one parsed schedule (one croniter object, which keeps its position) and moments
    schedule = parse_schedule("*/7 * * * *", "Europe/London")
    moments = [FRIDAY_10_17 + timedelta(minutes=13 * i) for i in range(200)]
    expected = [schedule.next_after(moment) for moment in moments]
    # And croniter yielding to other threads between taking a start and computing from it
    computing = croniter._calc_next

    def yielding(self: croniter, is_prev: bool) -> datetime:
        time.sleep(0.0001)
        return computing(self, is_prev)

    monkeypatch.setattr(croniter, "_calc_next", yielding)
    # When four threads ask for them at once
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(
            pool.map(lambda k: [schedule.next_after(m) for m in moments[k::4]], range(4))
        )
    # Then every thread gets the answers one thread gets
    assert all(answers[k] == expected[k::4] for k in range(4))


@pytest.mark.parametrize(
    "expression", ["*/7 * * * *", "cron(15 10 ? * MON-FRI *)", "@daily", "at(2026-02-01T08:30:00)"]
)
def test_a_calendar_schedule_ignores_the_anchor_so_callers_pass_it_whatever_the_kind(
    expression: str,
) -> None:
    # Given a calendar (not interval) schedule, and an anchor that would move an interval
    schedule = parse_schedule(expression, "Europe/Berlin")
    assert not schedule.is_interval()
    anchor = utc("2026-01-30 09:59")
    # When asked with and without the anchor / Then the occurrences are the same
    assert schedule.occurrences(FRIDAY_10_17, 3, anchor) == schedule.occurrences(FRIDAY_10_17, 3)
    assert schedule.occurrences(FRIDAY_10_17, 3)
