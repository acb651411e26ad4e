"""Cases mined from the test suites of other cron implementations (issue 11).

Each table names its source. Peers' expressions are translated where the dialects differ:
robfig/cron v1 has a leading seconds field (dropped here: minion fires on minutes); cronsim's
5-field `L` and `#` are written in AWS cron(...) here (AWS numbers weekdays 1-7 from Sunday,
cron 0-6); Quartz has a leading seconds field too. Where the spec chose differently from a
peer (DST), the test says so and asserts the spec's answer.

Sources:
- robfig/cron v1: spec_test.go (TestActivation, TestNext) and parser_test.go,
  https://github.com/robfig/cron (commit 0422546be427b5713b49358b4b070f9d374aeff6).
- cronsim: tests/test_cronsim.py, https://github.com/cuu508/cronsim
  (commit 098dd10491d9e1612ee54041afc41b1d6ddc3389).
- Quartz: quartz-core/src/test/java/org/quartz/CronExpressionTest.java, and the wrap-around of
  CronExpression.addToSet, https://github.com/quartz-scheduler/quartz
  (commit 117542d846e6663f2af4182ce9866df707d5cb8b).
- aws-croniter (an AWS-cron library): tests/test_next.py,
  https://github.com/siddarth-patil/aws-croniter (commit 4d22ec1f4c479b4b10e53cea77dea80cd11cf5d9);
  the same vectors are in beemhq/aws-cron-parser src/tests/lib/next.test.ts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product
from zoneinfo import ZoneInfo

import pytest

from chalicelib.schedules import ScheduleError, parse_schedule


def at(text: str, zone: str = "UTC") -> datetime:
    """An aware datetime from 'YYYY-MM-DD HH:MM[:SS]' in a zone."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone) if zone != "UTC" else UTC)


def following(expression: str, after: datetime, count: int, zone: str = "UTC") -> list[str]:
    """`count` occurrences after `after`, as wall-clock 'YYYY-MM-DD HH:MM' in the zone."""
    found = parse_schedule(expression, zone).occurrences(after, count)
    return [t.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M") for t in found]


def fires_at(expression: str, moment: datetime) -> bool:
    """Whether the schedule fires at that minute (robfig's TestActivation: Next(t - 1s) == t)."""
    return parse_schedule(expression).next_after(moment - timedelta(seconds=1)) == moment


# --- robfig/cron v1, spec_test.go ------------------------------------------------------------

# (time, robfig spec without its seconds field, fires at that time)
ROBFIG_ACTIVATION = [
    ("2012-07-09 15:00", "0/15 * * * *", True),
    ("2012-07-09 15:45", "0/15 * * * *", True),
    ("2012-07-09 15:40", "0/15 * * * *", False),
    ("2012-07-09 15:05", "5/15 * * * *", True),
    ("2012-07-09 15:20", "5/15 * * * *", True),
    ("2012-07-09 15:50", "5/15 * * * *", True),
    ("2012-07-15 08:30", "30 08 ? Jul Sun", True),
    ("2012-07-15 08:30", "30 08 15 Jul ?", True),
    ("2012-07-16 08:30", "30 08 ? Jul Sun", False),
    ("2012-07-16 08:30", "30 08 15 Jul ?", False),
    ("2012-07-09 15:00", "@hourly", True),
    ("2012-07-09 15:04", "@hourly", False),
    ("2012-07-09 15:00", "@daily", False),
    ("2012-07-09 00:00", "@daily", True),
    ("2012-07-09 00:00", "@weekly", False),
    ("2012-07-08 00:00", "@weekly", True),
    ("2012-07-08 01:00", "@weekly", False),
    ("2012-07-08 00:00", "@monthly", False),
    ("2012-07-01 00:00", "@monthly", True),
    # both day fields restricted: either may match
    ("2012-07-15 00:00", "* * 1,15 * Sun", True),
    ("2012-06-15 00:00", "* * 1,15 * Sun", True),
    ("2012-08-01 00:00", "* * 1,15 * Sun", True),
    # one starts with a star (`*/10` too): both must match
    ("2012-07-15 00:00", "* * * * Mon", False),
    ("2012-07-15 00:00", "* * */10 * Sun", False),
    ("2012-07-09 00:00", "* * 1,15 * *", False),
    ("2012-07-15 00:00", "* * 1,15 * *", True),
    ("2012-07-15 00:00", "* * */2 * Sun", True),
]


@pytest.mark.parametrize(("moment", "expression", "expected"), ROBFIG_ACTIVATION)
def test_robfig_activation(moment: str, expression: str, expected: bool) -> None:
    assert fires_at(expression, at(moment)) is expected


# (after, robfig spec without its seconds field, next)
ROBFIG_NEXT = [
    ("2012-07-09 14:45", "0/15 * * * *", "2012-07-09 15:00"),
    ("2012-07-09 14:59", "0/15 * * * *", "2012-07-09 15:00"),
    ("2012-07-09 14:59:59", "0/15 * * * *", "2012-07-09 15:00"),
    ("2012-07-09 15:45", "20-35/15 * * * *", "2012-07-09 16:20"),
    ("2012-07-09 23:46", "*/15 * * * *", "2012-07-10 00:00"),
    ("2012-07-09 23:45", "20-35/15 * * * *", "2012-07-10 00:20"),
    ("2012-07-09 23:35:51", "20-35/15 1/2 * * *", "2012-07-10 01:20"),
    ("2012-07-09 23:35:51", "20-35/15 10-12 * * *", "2012-07-10 10:20"),
    ("2012-07-09 23:35:51", "20-35/15 1/2 */2 * *", "2012-07-11 01:20"),
    ("2012-07-09 23:35:51", "20-35/15 * 9-20 * *", "2012-07-10 00:20"),
    ("2012-07-09 23:35:51", "20-35/15 * 9-20 Jul *", "2012-07-10 00:20"),
    ("2012-07-09 23:35", "0 0 9 Apr-Oct ?", "2012-08-09 00:00"),
    # the case: `*/5` beside Mon means odd-fifth days that are Mondays
    ("2012-07-09 23:35", "0 0 */5 Apr,Aug,Oct Mon", "2012-08-06 00:00"),
    ("2012-07-09 23:35", "0 0 */5 Oct Mon", "2012-10-01 00:00"),
    ("2012-07-09 23:35", "0 0 * Feb Mon", "2013-02-04 00:00"),
    # Mon/2 is Monday, Wednesday, Friday: steps end at 6
    ("2012-07-09 23:35", "0 0 * Feb Mon/2", "2013-02-01 00:00"),
    ("2012-12-31 23:59:45", "* * * * *", "2013-01-01 00:00"),
    ("2012-07-09 23:35", "0 0 29 Feb ?", "2016-02-29 00:00"),
    ("2012-11-04 04:00", "30 2 04 Nov ?", "2012-11-04 07:30"),  # 02:30 EST, once
]


@pytest.mark.parametrize(("after", "expression", "expected"), ROBFIG_NEXT)
def test_robfig_next(after: str, expression: str, expected: str) -> None:
    zone = "America/New_York" if "Nov" in expression else "UTC"
    found = parse_schedule(expression, zone).next_after(at(after))
    assert found is not None and f"{found:%Y-%m-%d %H:%M}" == expected


@pytest.mark.parametrize("expression", ["0 0 30 Feb ?", "0 0 31 Apr ?"])
def test_robfig_unsatisfiable_is_refused_at_once(expression: str) -> None:
    # robfig returns the zero time from Next; minion refuses the expression, saying why
    with pytest.raises(ScheduleError, match="never fires within five years"):
        parse_schedule(expression)


def test_robfig_dst_differences_are_the_specs_choices() -> None:
    # robfig skips 02:30 on the day clocks go forward (next 2013-03-11); the spec fires it at
    # the first minute after the gap: 03:00 EDT
    assert following("30 2 11 Mar ?", at("2012-03-11 05:00"), 1, "America/New_York") == [
        "2012-03-11 03:00"
    ]
    # robfig fires 01:30 again in the repeated hour (01:30 EST after 01:45 EDT); the spec fires
    # a repeated wall time once, at its first instance: next is a year later
    assert following("30 1 04 Nov ?", at("2012-11-04 05:45"), 1, "America/New_York") == [
        "2013-11-04 01:30"
    ]


# robfig parser_test.go TestRange (bounds 0-7 there): `5-7/2`, `5-6/2`; and a reversed range
# is an error in its getRange ("beginning of range after end of range")
@pytest.mark.parametrize(
    ("expression", "minutes"),
    [
        ("5-7/2 * * * *", {5, 7}),
        ("5-6/2 * * * *", {5}),
        ("5-5 * * * *", {5}),
        ("1,5-7/2,3 * * * *", {1, 3, 5, 7}),
    ],
)
def test_robfig_ranges(expression: str, minutes: set[int]) -> None:
    found = parse_schedule(expression).occurrences(at("2026-01-30 10:00"), len(minutes))
    assert {t.minute for t in found} == minutes and {t.hour for t in found} == {10}


# --- cronsim, tests/test_cronsim.py ------------------------------------------------------------

CRONSIM_NEXT = [
    # TestIterator: "first Sunday of the month" and "first Monday of the month"
    (
        "1 1 1-7 * */7",
        ["2020-01-05 01:01", "2020-02-02 01:01", "2020-03-01 01:01", "2020-04-05 01:01"],
    ),
    (
        "1 1 */100,1-7 * MON",
        ["2020-01-06 01:01", "2020-02-03 01:01", "2020-03-02 01:01", "2020-04-06 01:01"],
    ),
    # cronsim's `1 1 L * *`, `1 1 * * 5L`, `0L`/`7L` and `1#2`, in AWS cron (Friday is 6 there)
    ("cron(1 1 L * ? *)", ["2020-01-31 01:01"]),
    (
        "cron(1 1 ? * 6L *)",
        [
            "2020-01-31 01:01",
            "2020-02-28 01:01",
            "2020-03-27 01:01",
            "2020-04-24 01:01",
            "2020-05-29 01:01",
            "2020-06-26 01:01",
            "2020-07-31 01:01",
            "2020-08-28 01:01",
            "2020-09-25 01:01",
            "2020-10-30 01:01",
            "2020-11-27 01:01",
            "2020-12-25 01:01",
        ],
    ),
    ("cron(1 1 ? * 1L *)", ["2020-01-26 01:01"]),
    ("cron(1 1 ? * SUNL *)", ["2020-01-26 01:01"]),
    ("cron(1 1 ? * 2#2 *)", ["2020-01-13 01:01"]),
    # TestParse: `*/2` in the day of week starts from Sunday, 0; `5/15`; `0-10/2`; `sun-tue`
    (
        "0 0 * * */2",
        ["2020-01-02 00:00", "2020-01-04 00:00", "2020-01-05 00:00", "2020-01-07 00:00"],
    ),
    (
        "5/15 0 * * *",
        ["2020-01-01 00:05", "2020-01-01 00:20", "2020-01-01 00:35", "2020-01-01 00:50"],
    ),
    (
        "0-10/2 0 1 1 *",
        [
            "2020-01-01 00:02",
            "2020-01-01 00:04",
            "2020-01-01 00:06",
            "2020-01-01 00:08",
            "2020-01-01 00:10",
        ],
    ),
    ("0 0 * * sun-tue", ["2020-01-05 00:00", "2020-01-06 00:00", "2020-01-07 00:00"]),
    ("0 0 * * 7", ["2020-01-05 00:00"]),
]


@pytest.mark.parametrize(("expression", "expected"), CRONSIM_NEXT)
def test_cronsim_next(expression: str, expected: list[str]) -> None:
    assert following(expression, at("2020-01-01 00:00"), len(expected)) == expected


CRONSIM_BAD_PATTERNS = [
    "%s * * * *",
    "* %s * * *",
    "* * %s * *",
    "* * * %s * ",
    "* * * * %s",
    "* * * * * %s",
    "1-%s * * * *",
    "%s-60 * * * *",
    "* * * %s-DEC *",
    "* * * JAN-%s *",
    "* * * * %s-SUN",
    "* * * * MON-%s",
]
CRONSIM_BAD_VALUES = ["-1", "61", "ABC", "2/", "/2", "2#", "#2", "1##1", "1//2", "\u00b9"]


@pytest.mark.parametrize(
    ("pattern", "value"), list(product(CRONSIM_BAD_PATTERNS, CRONSIM_BAD_VALUES))
)
def test_cronsim_bad_values_are_refused(pattern: str, value: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(pattern % value)
    assert str(caught.value)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * 5-1 * *", "range 5-1 in the day-of-month field is reversed"),  # lopsided range
        ("1-1_0 * * * *", "is not a valid minute"),  # underscores
        ("*/0 * * * *", "step must be at least 1"),
        ("* * 30 2 *", "never fires within five years"),
        ("* * 31 4 *", "never fires within five years"),
    ],
)
def test_cronsim_validation(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleError, match=reason):
        parse_schedule(expression)


# TestDstTransitions, Europe/Riga 2021 (forward on 28 March at 03:00, back on 31 October at
# 04:00), where cronsim's fixed-time answers agree with the spec: a time in the gap fires at the
# first minute after it, a repeated one once, at its first instance
CRONSIM_RIGA = [
    ("0 3 * * *", "2021-03-27 01:30", ["2021-03-27 03:00", "2021-03-28 04:00", "2021-03-29 03:00"]),
    ("0 3 * * *", "2021-10-31 01:30", ["2021-10-31 03:00", "2021-11-01 03:00"]),
    ("0 4 * * *", "2021-03-27 01:30", ["2021-03-27 04:00", "2021-03-28 04:00", "2021-03-29 04:00"]),
    (
        "15 3 * * *",
        "2021-03-27 00:00",
        ["2021-03-27 03:15", "2021-03-28 04:00", "2021-03-29 03:15"],
    ),
    (
        "15 3 * * *",
        "2021-10-30 00:00",
        ["2021-10-30 03:15", "2021-10-31 03:15", "2021-11-01 03:15"],
    ),
    (
        "30 1,2,3,4,5 * * *",
        "2021-03-28 01:30",
        ["2021-03-28 02:30", "2021-03-28 04:00", "2021-03-28 04:30"],
    ),
    (
        "30 1,2,3,4,5 * * *",
        "2021-10-31 01:30",
        ["2021-10-31 02:30", "2021-10-31 03:30", "2021-10-31 04:30"],
    ),
    (
        "0 1-5 * * *",
        "2021-10-31 01:30",
        ["2021-10-31 02:00", "2021-10-31 03:00", "2021-10-31 04:00"],
    ),
]


@pytest.mark.parametrize(("expression", "after", "expected"), CRONSIM_RIGA)
def test_cronsim_riga_dst(expression: str, after: str, expected: list[str]) -> None:
    assert following(expression, at(after, "Europe/Riga"), len(expected), "Europe/Riga") == expected


# --- Quartz, CronExpressionTest.java ------------------------------------------------------------


def test_quartz_is_satisfied_by_year() -> None:
    # "0 15 10 * * ? 2005": 2005-06-01 10:15 fires; 2006 never (and 10:16, 10:14 do not)
    assert fires_at("cron(15 10 * * ? 2005)", at("2005-06-01 10:15"))
    assert not fires_at("cron(15 10 * * ? 2005)", at("2005-06-01 10:16"))
    assert parse_schedule("cron(15 10 * * ? 2005)").next_after(at("2006-01-01 00:00")) is None


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # testLastDayOffset's LW, 2#3, 5W and SUNL, from 2017-05-24 (the 23rd is a Tuesday)
        (
            "cron(0 0 LW * ? *)",
            "2017-05-24 10:15",
            ["2017-05-31 00:00", "2017-06-30 00:00", "2017-07-31 00:00"],
        ),
        ("cron(0 0 ? * 2#3 *)", "2017-05-24 10:15", ["2017-06-19 00:00", "2017-07-17 00:00"]),
        (
            "cron(0 0 5W * ? *)",
            "2017-05-24 10:15",
            ["2017-06-05 00:00", "2017-07-05 00:00", "2017-08-04 00:00"],
        ),
        ("cron(0 0 ? * SUNL *)", "2017-05-24 10:15", ["2017-05-28 00:00", "2017-06-25 00:00"]),
        # addToSet's wrap-around: the step is carried across the end of the cycle
        (
            "cron(0 22-2/3 * * ? *)",
            "2026-01-30 00:00",
            ["2026-01-30 01:00", "2026-01-30 22:00", "2026-01-31 01:00"],
        ),
        (
            "cron(0 0 ? * FRI-MON/2 *)",
            "2026-01-29 00:00",
            ["2026-01-30 00:00", "2026-02-01 00:00", "2026-02-06 00:00"],
        ),
        (
            "cron(0 0 30-2 * ? *)",
            "2026-02-01 12:00",
            ["2026-02-02 00:00", "2026-03-01 00:00", "2026-03-02 00:00", "2026-03-30 00:00"],
        ),
    ],
)
def test_quartz_next(expression: str, after: str, expected: list[str]) -> None:
    assert following(expression, at(after), len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("cron(43 9 1,5,29,L * ? *)", "L and W must stand alone"),  # testQuartz640
        ("cron(43 9 ? * SAT,SUN,L *)", "L and # must stand alone"),
        ("cron(43 9 ? * 6,7,L *)", "L and # must stand alone"),
        ("cron(0/5 * 32W 1 ? *)", "day-of-month 32 is out of range"),  # testQtz96
        ("cron(* * * Foo ? *)", "'Foo' is not a valid month"),  # testQuartz574
        ("cron(* * * Jan-Foo ? *)", "'Foo' is not a valid month"),
        ("cron(0 * * * * *)", "one of day-of-month and day-of-week must be ?"),  # testQuartz621
        ("cron(0 * 4 * * *)", "one of day-of-month and day-of-week must be ?"),
        ("cron(0 * * * 4 *)", "one of day-of-month and day-of-week must be ?"),
        ("cron(/5 0 ? * 2-6 *)", "is not a valid minute"),  # Issue #58: '/' needs a start here
        ("cron(0/ 0 ? * 2-6 *)", "step '' in the minute field is not a number"),
        ("cron(0 0 1 1 ? 2030-2027)", "range 2030-2027 in the year field is reversed"),  # no wrap
    ],
)
def test_quartz_refusals(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleError, match=reason):
        parse_schedule(expression)


def test_quartz_accepts_5l() -> None:
    assert parse_schedule("cron(43 9 ? * 5L *)").kind == "aws_cron"


# --- aws-croniter, tests/test_next.py -----------------------------------------------------------

AWS_CRONITER_NEXT = [
    (
        "23,24,25 17,18 25 MAR/4 ? 2020,2021,2023,2028",
        "2020-05-09 22:30:57",
        [
            "2020-07-25 17:23",
            "2020-07-25 17:24",
            "2020-07-25 17:25",
            "2020-07-25 18:23",
            "2020-07-25 18:24",
            "2020-07-25 18:25",
            "2020-11-25 17:23",
            "2020-11-25 17:24",
            "2020-11-25 17:25",
            "2020-11-25 18:23",
        ],
    ),
    (
        "15 10 ? * 6L 2002-2025",
        "2020-05-09 22:30:57",
        [
            "2020-05-29 10:15",
            "2020-06-26 10:15",
            "2020-07-31 10:15",
            "2020-08-28 10:15",
            "2020-09-25 10:15",
            "2020-10-30 10:15",
            "2020-11-27 10:15",
            "2020-12-25 10:15",
            "2021-01-29 10:15",
            "2021-02-26 10:15",
        ],
    ),
    (
        "0 */3 */1 * ? *",
        "2020-12-07 15:57:37",
        ["2020-12-07 18:00", "2020-12-07 21:00", "2020-12-08 00:00", "2020-12-08 03:00"],
    ),
    (
        "15 12 ? * sun,mon *",
        "2020-12-07 15:57:37",
        ["2020-12-13 12:15", "2020-12-14 12:15", "2020-12-20 12:15", "2020-12-21 12:15"],
    ),
    (
        "10 7/5 7 * ? 2020,2021",
        "2020-12-07 15:57:37",
        ["2020-12-07 17:10", "2020-12-07 22:10", "2021-01-07 07:10", "2021-01-07 12:10"],
    ),
    (
        "0-29/5 22 09 05 ? 2020,2021,2022",
        "2020-05-09 22:30:57",
        [
            "2021-05-09 22:00",
            "2021-05-09 22:05",
            "2021-05-09 22:10",
            "2021-05-09 22:15",
            "2021-05-09 22:20",
            "2021-05-09 22:25",
            "2022-05-09 22:00",
        ],
    ),
    (
        "30 9 3W * ? *",
        "2020-07-31 22:30:57",
        ["2020-08-03 09:30", "2020-09-03 09:30", "2020-10-02 09:30"],
    ),
    ("30 9 3W * ? *", "2020-04-30 22:30:57", ["2020-05-04 09:30"]),
    (
        "0 0 31W * ? 2020",
        "2020-04-30 22:30:57",
        ["2020-05-29 00:00", "2020-07-31 00:00", "2020-08-31 00:00"],
    ),
    ("0 0 31W * ? *", "2020-12-30 22:30:57", ["2020-12-31 00:00", "2021-01-29 00:00"]),
    (
        "5,4 * * * ? *",
        "2020-04-30 22:30:57",
        ["2020-04-30 23:04", "2020-04-30 23:05", "2020-05-01 00:04", "2020-05-01 00:05"],
    ),
    (
        "15 12 ? AUG,JUL mon,sun *",
        "2020-12-07 15:57:37",
        [
            "2021-07-04 12:15",
            "2021-07-05 12:15",
            "2021-07-11 12:15",
            "2021-07-12 12:15",
            "2021-07-18 12:15",
            "2021-07-19 12:15",
            "2021-07-25 12:15",
            "2021-07-26 12:15",
            "2021-08-01 12:15",
            "2021-08-02 12:15",
        ],
    ),
]


@pytest.mark.parametrize(("body", "after", "expected"), AWS_CRONITER_NEXT)
def test_aws_croniter_next(body: str, after: str, expected: list[str]) -> None:
    assert following(f"cron({body})", at(after), len(expected)) == expected


def test_aws_years_end_in_2199() -> None:
    # EventBridge's year range is 1970-2199: a `*` year fires in 2199 and never after
    assert following("cron(0 0 1 1 ? *)", at("2198-06-01 00:00"), 3) == ["2199-01-01 00:00"]
    assert parse_schedule("cron(0 0 1 1 ? *)").next_after(at("2199-01-01 00:00")) is None
    assert following("cron(0 0 L 12 ? 2190-2199)", at("2199-01-01 00:00"), 2) == [
        "2199-12-31 00:00"
    ]
