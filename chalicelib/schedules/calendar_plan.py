"""Calendar schedules: croniter finds wall-clock minutes, this module filters and maps them.

croniter does the cron arithmetic. Both cron dialects are validated in `minion` and `aws` (the
spec's rejections, with messages that say why), then converted to a five-field croniter expression
whose fields are `*` or explicit lists of values, built once at parse time; croniter iterates
it on naive wall-clock minutes. Around what croniter misreads:
- it reads a 6th field as seconds and a 7th as a year: it only ever gets the 5 converted
  fields, and the AWS year field (1970-2199; croniter's end at 2099) is filtered here;
- it refuses `?` outside the day fields: `?` is read as `*` before conversion;
- it takes `R` and `H` as random and hashed values: refused here;
- it reads `5-5` or `JAN-JAN` as the whole cycle and `5-1` as a wrap-around, with a step its
  own way (`22-2/3` is 22 and 2): ranges and steps are expanded first, so it never sees one;
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
import threading
from bisect import bisect_left
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from .common import _ONE_MINUTE, ScheduleError
from .fields import _cron_list
from .zones import _local_to_utc

# A cron without a year field fires in every five-year window (checked at parse time); past
# 2100, a non-leap century year, 29 February can be eight years apart. croniter searches this
# many years past its start before giving up.
_SEARCH_YEARS = 10
# The Gregorian calendar repeats every 28 years between 1901 and 2099: checking a span of
# years from 2000 covers every combination of weekday and leap year.
_CHECK_FIRST_YEAR = 2000
_CHECK_LAST_WINDOW = 2028


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
