"""Time parsing and formatting for the commands.

* :func:`parse_duration` and :func:`format_duration` are :mod:`crane_common.units`'s (the one
  duration parser: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``, ``N{s,m,h,d}``,
  ``UNLIMITED``; a bare number is minutes), re-exported here with
  :class:`TimeFormatError` (= :class:`crane_common.units.DurationError`).
* :func:`format_time_limit` adds ``unlimited``.
* :func:`format_timestamp` shows ``YYYY-MM-DD HH:MM:SS`` in local time.
* :func:`parse_time_expr` reads ``--begin``/``--deadline`` expressions.
"""

from __future__ import annotations

import time

from crane_common.units import UNLIMITED as MAX_TIME_LIMIT
from crane_common.units import DurationError as TimeFormatError
from crane_common.units import format_duration, parse_duration

from crane_cli.lazyre import LazyRegex

__all__ = ["MAX_TIME_LIMIT", "TimeFormatError", "format_duration", "format_time_limit", "format_timestamp",
           "parse_duration", "parse_time_expr"]

# MAX_TIME_LIMIT: time limits at or above it are shown as "unlimited" (100 years); 0 also means "no limit".


def format_time_limit(seconds: int) -> str:
    """A time limit for display: ``unlimited`` when 0 or at/above :data:`MAX_TIME_LIMIT`."""
    if seconds <= 0 or seconds >= MAX_TIME_LIMIT:
        return "unlimited"
    return format_duration(seconds)


def format_timestamp(ts: int | float) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in local time; ``-`` for an unset (0) timestamp."""
    if not ts or ts <= 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


_UNITS = {
    "": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_KEYWORD_HOURS = {"midnight": 0, "noon": 12, "elevenses": 11, "fika": 15, "teatime": 16}
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_NOW_REL = LazyRegex(r"^now(?:([+-])(\d+)([a-z]*))?$")
_HMS = LazyRegex(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_ISO = LazyRegex(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_MDY = LazyRegex(r"^(\d{1,2})/(\d{1,2})(?:/(\d{2}))?$")
_MMDDYY = LazyRegex(r"^(\d{2})(\d{2})(\d{2})?$")
_RFC3339 = LazyRegex(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        raise TimeFormatError("date or time out of range")
    t = time.mktime((year, month, day, hour, minute, second, 0, 0, -1))
    check = time.localtime(t)
    if (check.tm_mon, check.tm_mday) != (month, day):
        raise TimeFormatError("no such date")
    return int(t)


def _next_clock(now: float, hour: int, minute: int, second: int = 0) -> int:
    lt = time.localtime(now)
    t = _local(lt.tm_year, lt.tm_mon, lt.tm_mday, hour, minute, second)
    if t <= now:
        nt = time.localtime(now + 86400)
        t = _local(nt.tm_year, nt.tm_mon, nt.tm_mday, hour, minute, second)
    return t


def parse_time_expr(text: str, now: float | None = None) -> int:
    """Parse a ``--begin``/``--deadline`` expression into unix seconds.

    Accepted: ``now``, ``now+N[units]``, ``now-N[units]`` (units s, m, h, d, w and
    their long forms; seconds by default); ``HH:MM[:SS]`` (the next such time);
    ``YYYY-MM-DD[THH:MM[:SS]]``, ``MM/DD[/YY]``, ``MMDD[YY]``; the keywords
    ``midnight``, ``noon``, ``elevenses`` (11:00), ``fika`` (15:00), ``teatime``
    (16:00), ``today``, ``tomorrow`` and weekday names (the next such day); RFC 3339.
    """
    now = time.time() if now is None else now
    s = text.strip()
    low = s.lower()
    try:
        m = _NOW_REL.match(low)
        if m:
            sign, amount, unit = m.groups()
            if sign is None:
                return int(now)
            if unit not in _UNITS:
                raise TimeFormatError(f"unknown time unit {unit!r}")
            delta = int(amount) * _UNITS[unit]
            return int(now + delta if sign == "+" else now - delta)
        if low in _KEYWORD_HOURS:
            return _next_clock(now, _KEYWORD_HOURS[low], 0)
        lt = time.localtime(now)
        if low == "today":
            return _local(lt.tm_year, lt.tm_mon, lt.tm_mday)
        if low == "tomorrow":
            nt = time.localtime(now + 86400)
            return _local(nt.tm_year, nt.tm_mon, nt.tm_mday)
        if low in _WEEKDAYS:
            ahead = (_WEEKDAYS.index(low) - lt.tm_wday) % 7 or 7
            nt = time.localtime(now + ahead * 86400)
            return _local(nt.tm_year, nt.tm_mon, nt.tm_mday)
        m = _HMS.match(s)
        if m:
            return _next_clock(now, int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
        m = _ISO.match(s)
        if m:
            y, mo, d, hh, mm, ss = m.groups()
            return _local(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
        m = _MDY.match(s)
        if m:
            mo, d, yy = m.groups()
            return _local(2000 + int(yy) if yy else lt.tm_year, int(mo), int(d))
        m = _MMDDYY.match(s)
        if m:
            mo, d, yy = m.groups()
            return _local(2000 + int(yy) if yy else lt.tm_year, int(mo), int(d))
        if _RFC3339.match(s):
            from datetime import datetime

            return int(datetime.fromisoformat(s.replace("z", "Z").replace("t", "T")).timestamp())
    except (TimeFormatError, ValueError, OverflowError) as exc:
        raise TimeFormatError(f"invalid time {text!r}: {exc}") from None
    raise TimeFormatError(f"invalid time {text!r}")
