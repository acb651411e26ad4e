"""Timezones and wall-clock time: IANA names, and wall-clock minutes mapped to UTC across DST."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .common import _ONE_MINUTE, TIMEZONE_FIELD, ScheduleError

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
