"""Schedules through the API (issue 11): the four wrong answers fixed, the rule on schedules
with no occurrence left, and generated, mutated expressions that must never answer 5xx.

Chalice's test client over the real app, moto behind it; the clock is the real one, so the
cases assert what holds whatever the day (exact dates are in tests/test_schedules.py).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from chalicelib.jobs import Job, new_job_id
from chalicelib.schedules import ScheduleError, parse_schedule
from chalicelib.store import Store
from conftest import TABLE, auth
from test_schedule_properties import aws_crons, descriptors, minion_crons

BASE = "/v1/minion"
GROUP = f"{BASE}/spinup/jobs/space-xy"
DUMMY = {"name": "job", "details": {"runner": "dummyRunner"}, "enabled": True}


def create(client: Any, expression: str, tz: str = "UTC", enabled: bool = True) -> Any:
    body = {**DUMMY, "schedule_expression": expression, "schedule_timezone": tz, "enabled": enabled}
    return client.http.post(GROUP, headers=auth(), body=json.dumps(body))


def preview(client: Any, expression: str, tz: str = "UTC", count: int = 5) -> Any:
    query = urlencode({"expression": expression, "timezone": tz, "count": str(count)})
    return client.http.get(f"{BASE}/schedule?{query}", headers=auth())


def previewed(client: Any, expression: str, tz: str = "UTC", count: int = 5) -> list[datetime]:
    """The previewed occurrences as wall-clock times in the timezone (a 200 that is valid)."""
    response = preview(client, expression, tz, count)
    assert response.status_code == 200, response.body
    assert response.json_body["valid"] is True, response.json_body
    return [datetime.fromisoformat(o["local"]) for o in response.json_body["occurrences"]]


def item_count(aws: dict[str, Any]) -> int:
    return int(aws["dynamodb"].scan(TableName=TABLE, Select="COUNT", ConsistentRead=True)["Count"])


def error_message(response: Any) -> str:
    assert response.status_code == 400, (response.status_code, response.body)
    body = response.json_body
    assert set(body) == {"Code", "Message"} and body["Code"] == "BadRequestError", body
    return str(body["Message"])


@pytest.fixture
def clock(client: Any) -> Any:
    """Set the API's clock (the app's one MinionApi, which the routes share)."""
    import app as app_module

    def set_to(text: str) -> None:
        moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
        app_module._api().clock = lambda: moment

    return set_to


# --- the four wrong answers ------------------------------------------------------------------


def test_aws_documentation_example_wraps_from_20_00_to_02_30(client: Any) -> None:
    # Given the AWS documentation's own example, hours 20-2 (which used to be a 400)
    expression = "cron(0/30 20-2 ? * MON-FRI *)"
    # When created, then it is accepted with a next occurrence
    response = create(client, expression)
    assert response.status_code == 200, response.body
    assert response.json_body["next"] is not None
    # And its occurrences are every half hour from 20:00 to 02:30, Monday to Friday
    found = previewed(client, expression, count=40)
    assert {(t.hour, t.minute) for t in found} == {
        (h, m) for h in (20, 21, 22, 23, 0, 1, 2) for m in (0, 30)
    }
    assert all(t.isoweekday() <= 5 for t in found)


@pytest.mark.parametrize(
    ("expression", "field", "expected"),
    [
        ("cron(0 12 ? * FRI-MON *)", "weekday", {5, 6, 7, 1}),  # Friday, Saturday, Sunday, Monday
        ("cron(0 12 ? * 6-2 *)", "weekday", {5, 6, 7, 1}),  # the same in AWS numbers (1 = Sunday)
        ("cron(0 0 1 NOV-FEB ? *)", "month", {11, 12, 1, 2}),
        ("cron(0 0 28-3 * ? *)", "day", {28, 29, 30, 31, 1, 2, 3}),
        ("cron(50-10/10 * * * ? *)", "minute", {50, 0, 10}),
    ],
)
def test_aws_reversed_ranges_wrap_round(
    client: Any, expression: str, field: str, expected: set[int]
) -> None:
    # Given an AWS range whose start is after its end / When created and previewed
    assert create(client, expression).status_code == 200
    found = previewed(client, expression, count=60)
    # Then it fires on the values from the start round to the end, and no others
    seen = {t.isoweekday() if field == "weekday" else getattr(t, field) for t in found}
    assert seen == expected


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 * * 5-1",  # the minion dialect refuses reversed ranges (robfig/cron, cronsim)
        "cron(0 0 1 1 ? 2030-2027)",  # years never wrap (Quartz: start year must be before stop)
    ],
)
def test_reversed_ranges_that_do_not_wrap_are_refused_saying_why(
    client: Any, aws: dict[str, Any], expression: str
) -> None:
    before = item_count(aws)
    message = error_message(create(client, expression))
    assert "is reversed" in message
    assert item_count(aws) == before


def test_a_5_field_day_field_with_a_star_step_must_match_both_fields(client: Any) -> None:
    # Given every fifth day in April, August and October, on Mondays (robfig/cron's own case)
    found = previewed(client, "0 0 */5 Apr,Aug,Oct Mon", count=8)
    # Then every occurrence is a Monday that is also one of days 1, 6, 11, ... 31
    assert found and all(t.isoweekday() == 1 and t.day % 5 == 1 for t in found)
    assert all(t.month in (4, 8, 10) for t in found)
    # And cronsim's first Sunday of the month: days 1-7 that are Sundays
    sundays = previewed(client, "1 1 1-7 * */7", count=6)
    assert all(t.isoweekday() == 7 and t.day <= 7 for t in sundays)
    assert len({(t.year, t.month) for t in sundays}) == 6


def test_aws_year_field_ends_in_2199(client: Any) -> None:
    # Given a schedule in the last AWS year / Then it fires there once, and then never
    response = create(client, "cron(0 0 1 1 ? 2199)")
    assert response.status_code == 200, response.body
    assert response.json_body["next"] == "2199-01-01T00:00:00Z"
    assert [t.isoformat() for t in previewed(client, "cron(0 0 1 1 ? 2199)")] == [
        "2199-01-01T00:00:00+00:00"
    ]
    # And a year past it is refused, saying why
    assert "year 2200 is out of range 1970-2199" in error_message(
        create(client, "cron(0 0 1 1 ? 2200)")
    )


def test_a_step_from_7_in_the_day_of_week_is_a_400_saying_why_not_a_500(
    client: Any, aws: dict[str, Any]
) -> None:
    # Given `0 0 * * 7/2`, which used to answer 500 on create and on the preview
    before = item_count(aws)
    # When created / Then 400, saying what is wrong, and nothing stored
    message = error_message(create(client, "0 0 * * 7/2"))
    assert message.startswith("schedule_expression: 7/2 in the day-of-week field")
    assert item_count(aws) == before
    # And the preview says the same, with no occurrences
    answer = preview(client, "0 0 * * 7/2").json_body
    assert (answer["valid"], answer["message"], answer["occurrences"]) == (False, message, [])


# --- schedules with no occurrence left -------------------------------------------------------

PAST = ["at(2020-01-01T00:00:00)", "cron(0 0 1 1 ? 2020)", "cron(0 0 ? * 2#1 1970-2021)"]


@pytest.mark.parametrize("expression", PAST)
def test_an_enabled_job_that_would_never_run_is_refused_and_the_preview_says_so(
    client: Any, aws: dict[str, Any], expression: str
) -> None:
    before = item_count(aws)
    # When an enabled job is created with a schedule whose occurrences are all past
    message = error_message(create(client, expression))
    # Then 400 saying it would never run, and nothing stored
    assert message.startswith("schedule_expression: no occurrence after ")
    assert message.endswith("would never run")
    assert item_count(aws) == before
    # And the preview answers no occurrences with a message saying so
    answer = preview(client, expression).json_body
    assert answer["valid"] is False and answer["occurrences"] == []
    assert answer["message"].endswith("would never run")


def test_a_disabled_job_may_keep_a_schedule_with_no_occurrence_left(client: Any) -> None:
    # Given a disabled job with a past at(...)
    response = create(client, "at(2020-01-01T00:00:00)", enabled=False)
    assert response.status_code == 200, response.body
    job = response.json_body
    assert job["next"] is None
    # When it is enabled without changing its schedule / Then accepted, never to run
    body = {**DUMMY, "schedule_expression": job["schedule_expression"], "enabled": True}
    replaced = client.http.put(f"{GROUP}/{job['id']}", headers=auth(), body=json.dumps(body))
    assert replaced.status_code == 202, replaced.body
    assert replaced.json_body["next"] is None and replaced.json_body["enabled"] is True


def test_an_update_to_a_schedule_with_no_occurrence_left_is_refused_and_changes_nothing(
    client: Any, clock: Any
) -> None:
    # Given an enabled one-time job at 10:00 UTC, half an hour from now
    clock("2026-03-01T09:30")
    job = create(client, "at(2026-03-01T10:00:00)").json_body
    assert job["next"] == "2026-03-01T10:00:00Z"
    path = f"{GROUP}/{job['id']}"
    # When its expression, or only its timezone, is changed to one that never fires again
    # (10:00 in Tokyo was 01:00 UTC)
    for expression, tz in [
        ("at(2020-01-01T00:00:00)", "UTC"),
        ("cron(0 0 1 1 ? 2021)", "UTC"),
        ("at(2026-03-01T10:00:00)", "Asia/Tokyo"),
    ]:
        body = {**DUMMY, "schedule_expression": expression, "schedule_timezone": tz}
        response = client.http.put(path, headers=auth(), body=json.dumps(body))
        # Then 400, and the job is as it was
        assert error_message(response).endswith("would never run")
    assert client.http.get(path, headers=auth()).json_body == job


def test_a_one_time_job_that_has_fired_stays_editable(client: Any, store: Store) -> None:
    # Given an enabled one-time job whose time has passed, as the tick leaves it
    stamp = datetime(2020, 1, 1, tzinfo=UTC)
    fired = Job(
        account="spinup",
        group="space-xy",
        id=new_job_id(),
        name="once",
        schedule_expression="at(2020-01-01T00:00:00)",
        details={"runner": "dummyRunner"},
        enabled=True,
        modified_at=stamp,
        anchor=stamp,
    )
    store.create_job(replace(fired, next=None))
    # When it is renamed, its schedule unchanged
    body = {**DUMMY, "name": "renamed", "schedule_expression": fired.schedule_expression}
    response = client.http.put(f"{GROUP}/{fired.id}", headers=auth(), body=json.dumps(body))
    # Then accepted, still never to run again
    assert response.status_code == 202, response.body
    assert response.json_body["name"] == "renamed" and response.json_body["next"] is None


# --- generated, mutated expressions through create and preview --------------------------------

ODD_FIELDS = [
    "7/2",
    "7/7",
    "7/0",
    "*/0",
    "0/0",
    "*/",
    "/5",
    "1-",
    "-1",
    "5-1",
    "1,,2",
    ",",
    "",
    "99999999999999999999",
    "2200",
    "1969",
    "0",
    "L",
    "W",
    "LW",
    "0L",
    "8L",
    "L-2",
    "#",
    "1#9",
    "8#1",
    "SUN#0",
    "SUN-SAT/99",
    "JAN-DEC/13",
    "?",
    "??",
    "*?",
    "H",
    "R",
    "H(0-5)",
    "1-7/0",
    "31W",
    "0W",
    "32W",
    "L/2",
    "5L-6",
    "MONL",
    "FRI-MON",
    "NOV-FEB",
    "20-2",
    "59-0/7",
    "²",
    "١",
    "\u00e9",
    "\x00",
    "\t",
    "*/1000000",
]
STRAY = ["$", "(", ")", "@", "\\", "'", '"', "%", "\x7f", "\u200b", "\ud7ff", "-", "/", ",", "#"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """An expression from one of the grammars, then mutated field by field or character-wise."""
    base = draw(
        st.one_of(
            minion_crons().map(lambda c: c.expression),
            aws_crons().map(lambda c: c.expression),
            descriptors.map(lambda c: c.expression),
            st.sampled_from(
                [
                    "rate(5 minutes)",
                    "rate(1 day)",
                    "@every 1h30m",
                    "at(2099-03-01T09:30:00)",
                    "at(2020-01-01T00:00:00)",
                ]
            ),
        )
    )
    inner = base[5:-1] if base.startswith("cron(") else base
    fields = inner.split(" ")
    for _ in range(draw(st.integers(1, 3))):
        action = draw(
            st.sampled_from(
                [
                    "field",
                    "field",
                    "weekday_step",
                    "weekday_step",
                    "insert",
                    "delete",
                    "drop",
                    "repeat",
                ]
            )
        )
        index = draw(st.integers(0, len(fields) - 1)) if fields else 0
        if action == "weekday_step" and len(fields) > 4:
            # A step from the day-of-week's end (croniter failed on `7/2` with a 500)
            fields[4] = f"{draw(st.sampled_from(['7', '7', '6', 'SAT']))}/{draw(st.integers(0, 9))}"
        elif action == "field" and fields:
            fields[index] = draw(st.sampled_from(ODD_FIELDS) | st.integers(-10, 10**12).map(str))
        elif action == "insert" and fields:
            text = fields[index]
            at = draw(st.integers(0, len(text)))
            fields[index] = text[:at] + draw(st.sampled_from(STRAY)) + text[at:]
        elif action == "delete" and fields and fields[index]:
            at = draw(st.integers(0, len(fields[index]) - 1))
            fields[index] = fields[index][:at] + fields[index][at + 1 :]
        elif action == "drop" and len(fields) > 1:
            del fields[index]
        elif fields:
            fields.insert(index, fields[index])
    text = " ".join(fields)
    return f"cron({text})" if base.startswith("cron(") else text


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(expression=mutated(), tz=st.sampled_from(["UTC", "America/New_York", "Asia/Kathmandu"]))
@example(expression="0 0 * * 7/2", tz="UTC")  # the 500 of issue 11, always tried
@example(expression="cron(0 0 ? * 7/2 *)", tz="UTC")
def test_mutated_expressions_answer_200_or_a_400_saying_why_never_a_5xx(
    client: Any, aws: dict[str, Any], expression: str, tz: str
) -> None:
    note(f"expression {expression!r} in {tz}")
    before = item_count(aws)
    # When a job with the expression is created, and the expression previewed
    created = create(client, expression, tz)
    shown = preview(client, expression, tz)
    # Then the create answers 200 or a 400 that says what is wrong, never a 5xx
    assert created.status_code in (200, 400), (created.status_code, created.body)
    assert shown.status_code == 200, (shown.status_code, shown.body)
    answer = shown.json_body
    if created.status_code == 400:
        # And a refused create stores nothing; the preview gives its very message
        message = error_message(created)
        assert message.startswith(("schedule_expression: ", "schedule_timezone: "))
        assert item_count(aws) == before
        assert (answer["valid"], answer["message"], answer["occurrences"]) == (False, message, [])
    else:
        # And an accepted one has a next occurrence, and the preview lists occurrences
        job = created.json_body
        assert job["next"] is not None
        assert answer["valid"] is True and answer["occurrences"]
        assert client.http.delete(f"{GROUP}/{job['id']}", headers=auth()).status_code == 202


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=mutated(), tz=st.sampled_from(["UTC", "Europe/Dublin", "Pacific/Chatham"]))
@example(expression="0 0 * * 7/2", tz="UTC")
def test_mutated_expressions_parse_or_raise_a_schedule_error_and_compute_without_failing(
    expression: str, tz: str
) -> None:
    # Many more mutations than through the API, at the module the API calls: any other
    # exception would be a 500 there
    note(f"expression {expression!r} in {tz}")
    try:
        schedule = parse_schedule(expression, tz)
    except ScheduleError as error:
        assert str(error) and error.field in ("schedule_expression", "schedule_timezone")
        return
    now = datetime(2026, 1, 30, 10, 17, 30, tzinfo=UTC)
    found = schedule.occurrences(now, 3, now.replace(second=0))
    assert all(b > a for a, b in pairwise([now, *found]))


# --- the issue's exact cases, through the API at a chosen moment --------------------------------


def utc_occurrences(client: Any, expression: str, count: int) -> list[str]:
    response = preview(client, expression, "UTC", count)
    assert response.status_code == 200 and response.json_body["valid"] is True, response.body
    return [o["utc"] for o in response.json_body["occurrences"]]


def test_the_issues_cases_at_their_own_moments(client: Any, clock: Any) -> None:
    # robfig/cron's `0 0 */5 Apr,Aug,Oct Mon` from 2012-07-09: Monday the 6th of August, not
    # the 1st (a Wednesday)
    clock("2012-07-09T23:35")
    assert utc_occurrences(client, "0 0 */5 Apr,Aug,Oct Mon", 2) == [
        "2012-08-06T00:00:00Z",
        "2012-10-01T00:00:00Z",
    ]
    created = create(client, "0 0 */5 Apr,Aug,Oct Mon")
    assert created.status_code == 200 and created.json_body["next"] == "2012-08-06T00:00:00Z"
    # cronsim's `1 1 1-7 * */7`: the first Sunday of each month, not the 1st, 2nd, 3rd...
    clock("2020-01-01T00:00")
    assert utc_occurrences(client, "1 1 1-7 * */7", 4) == [
        "2020-01-05T01:01:00Z",
        "2020-02-02T01:01:00Z",
        "2020-03-01T01:01:00Z",
        "2020-04-05T01:01:00Z",
    ]
    # The AWS documentation's 20:00 to 02:30 on weekdays, from Friday 2026-01-30 19:00
    clock("2026-01-30T19:00")
    assert utc_occurrences(client, "cron(0/30 20-2 ? * MON-FRI *)", 10)[7:] == [
        "2026-01-30T23:30:00Z",
        "2026-02-02T00:00:00Z",
        "2026-02-02T00:30:00Z",
    ]


def test_aws_next_is_null_after_2199(client: Any, clock: Any, aws: dict[str, Any]) -> None:
    # Given mid-2198, `cron(0 0 1 1 ? *)` fires once more, on 1 January 2199, and never after
    clock("2198-06-01T00:00")
    assert utc_occurrences(client, "cron(0 0 1 1 ? *)", 5) == ["2199-01-01T00:00:00Z"]
    job = create(client, "cron(0 0 1 1 ? *)").json_body
    assert job["next"] == "2199-01-01T00:00:00Z"
    # When mid-2199 / Then an enabled job with it would never run: refused, and the preview
    # says so
    clock("2199-06-01T00:00")
    before = item_count(aws)
    message = error_message(create(client, "cron(0 0 1 1 ? *)"))
    assert message == (
        "schedule_expression: no occurrence after 2199-06-01T00:00:00Z: "
        "an enabled job with this schedule would never run"
    )
    assert item_count(aws) == before
    assert preview(client, "cron(0 0 1 1 ? *)").json_body["message"] == message
    # And the stored job, read back, keeps its last occurrence until the tick moves it
    assert client.http.get(f"{GROUP}/{job['id']}", headers=auth()).json_body["next"] == (
        "2199-01-01T00:00:00Z"
    )


def test_an_at_in_the_past_and_one_in_the_future_by_the_apis_clock(client: Any, clock: Any) -> None:
    clock("2026-03-01T09:30")
    # The minute itself has passed (an occurrence is strictly after now): refused
    assert error_message(create(client, "at(2026-03-01T09:30:00)")).endswith("would never run")
    response = create(client, "at(2026-03-01T09:31:00)")
    assert response.status_code == 200 and response.json_body["next"] == "2026-03-01T09:31:00Z"
