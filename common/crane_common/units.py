"""Durations and memory amounts: the one parser of each, for config files, the commands and plugins.

Durations (time limits, ages, half-lives), :func:`parse_duration` -> whole seconds:

* CraneSched/Slurm time formats: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
  ``D-HH:MM:SS``. The first field is unbounded (``90:30`` is 90 minutes 30 seconds); the
  minutes and seconds after it must be below 60.
* **A bare number is minutes** (``30`` = 30 minutes), as ``cbatch -t`` and Slurm mean it.
* A whole number with a unit: ``90s``, ``15m``, ``2h``, ``7d`` (also ``sec``, ``min``, ``hour``,
  ``day`` and their plurals), case-insensitive.
* ``UNLIMITED`` / ``INFINITE`` (any case): :data:`UNLIMITED`, which every display shows as
  "unlimited".

:func:`config_duration` is the same parser for values read from YAML config files, where an
unquoted ``1:30:00`` reaches the program as the *integer* 5400 (YAML 1.1 reads ``H:MM:SS``
as a base-60 number of seconds): a YAML number is therefore a number of seconds there, and
a string goes through :func:`parse_duration` (bare number = minutes). Write a unit (``90s``,
``15m``) to leave no doubt.

Memory amounts, :func:`parse_memory` -> bytes:

* a number with an optional binary unit: ``K``, ``M``, ``G``, ``T`` (KiB, MiB, GiB, TiB; any
  case, optionally followed by ``B`` or ``iB``: ``2GB``, ``2GiB``), or ``B`` for bytes;
  decimals allowed (``1.5G``).
* **A bare number is megabytes** (``512`` = 512 MiB), as CraneSched's ``--mem``; a YAML
  number in a config file too.

Rejected, with a one-line :class:`ValueError` naming the value: empty values, NaN and
infinities, negative values, booleans, and absurdly large values (durations above
:data:`MAX_DURATION`, 100 years, other than ``UNLIMITED``; memory above :data:`MAX_MEMORY`,
1 EiB). This module is standard-library only and compiles its patterns on first use.
"""

from __future__ import annotations

import math

__all__ = [
    "DurationError", "MemoryAmountError", "UNLIMITED", "MAX_DURATION", "MAX_MEMORY",
    "parse_duration", "config_duration", "format_duration", "parse_memory", "format_memory",
]

MAX_DURATION = 36525 * 86400
"""The longest duration accepted (100 years, in seconds); it is also what ``UNLIMITED`` means."""

UNLIMITED = MAX_DURATION
"""``parse_duration("UNLIMITED")``: no limit (displayed as ``unlimited``)."""

MAX_MEMORY = 1 << 60
"""The largest memory amount accepted (1 EiB, in bytes)."""

_MAX_TEXT = 64  # longer strings are not a duration or a memory amount of any sensible size

_DURATION_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}
_UNLIMITED_WORDS = frozenset({"unlimited", "infinite"})
_MEMORY_UNITS = {"": 1 << 20, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

_DURATION_FORMS = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, N{s,m,h,d} or UNLIMITED"
_MEMORY_FORMS = "a number of MB or a number with a K, M, G, T or B unit (e.g. 512M, 2G)"

_patterns: dict[str, object] = {}


class DurationError(ValueError):
    """A duration cannot be parsed (one-line message naming the value)."""


class MemoryAmountError(ValueError):
    """A memory amount cannot be parsed (one-line message naming the value)."""


def _pattern(name: str):  # noqa: ANN202 - re.Pattern, without importing re at module level
    pat = _patterns.get(name)
    if pat is None:
        import re

        source = {
            "clock": r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?",
            "unit": r"(\d+)\s*([a-z]+)",
            "memory": r"(\d+(?:\.\d*)?)\s*(?:([kmgt])(?:i?b)?|(b))?",
        }[name]
        pat = _patterns[name] = re.compile(source, re.IGNORECASE)
    return pat


def _check_number(value: object, error: type[ValueError], what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"invalid {what} {value!r}: expected a number or a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"invalid {what} {value!r}: not a finite number")
    if value < 0:
        raise error(f"invalid {what} {value!r}: must not be negative")
    return value


def parse_duration(text: str | int) -> int:
    """Parse a duration into whole seconds; a bare number is minutes (see the module docs).

    An ``int`` is taken as that bare number (minutes). Raises :class:`DurationError`.
    """
    if not isinstance(text, str):
        n = _check_number(text, DurationError, "duration")
        if isinstance(n, float):
            raise DurationError(f"invalid duration {text!r}: expected a whole number of minutes or {_DURATION_FORMS}")
        return _limited(int(n) * 60, text)
    s = text.strip()
    if not s:
        raise DurationError("invalid duration '': empty value")
    if len(s) > _MAX_TEXT:
        raise DurationError(f"invalid duration {text[:_MAX_TEXT]!r}...: too long")
    if s.lower() in _UNLIMITED_WORDS:
        return UNLIMITED
    m = _pattern("clock").fullmatch(s)
    if m is None:
        u = _pattern("unit").fullmatch(s)
        factor = _DURATION_UNITS.get(u.group(2).lower()) if u else None
        if u is None or factor is None:
            raise DurationError(f"invalid duration {text!r}: expected {_DURATION_FORMS}")
        return _limited(int(u.group(1)) * factor, text)
    days, a, b, c = m.groups()
    first, second, third = int(a), int(b or 0), int(c or 0)
    if days is not None or c is not None:  # [D-]H[:M[:S]]: the first field after the day is hours
        hours, minutes, seconds = first, second, third
        checked = [v for v, given in ((minutes, b is not None), (seconds, c is not None)) if given]
    elif b is not None:  # M:S
        hours, minutes, seconds = 0, first, second
        checked = [seconds]
    else:  # M
        hours, minutes, seconds = 0, first, 0
        checked = []
    if any(v > 59 for v in checked):
        raise DurationError(f"invalid duration {text!r}: minutes and seconds must be below 60")
    return _limited(int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds, text)


def _limited(seconds: int, original: object) -> int:
    if seconds > MAX_DURATION:
        raise DurationError(f"invalid duration {original!r}: longer than 100 years (use UNLIMITED)")
    return seconds


def config_duration(value: str | int | float) -> int | float:
    """A duration from a config file: a YAML number is seconds, a string is :func:`parse_duration`.

    YAML 1.1 turns an unquoted ``1:30:00`` into the integer 5400, so a number in a config
    file must mean seconds for ``H:MM:SS`` values to keep their meaning; a quoted or
    otherwise non-numeric string (``"90"``, ``7-0``, ``15m``) is parsed as everywhere else.
    Returns ``int`` seconds (a fractional YAML number stays a ``float``).
    """
    if isinstance(value, str):
        return parse_duration(value)
    n = _check_number(value, DurationError, "duration")
    if n > MAX_DURATION:
        raise DurationError(f"invalid duration {value!r}: longer than 100 years (use UNLIMITED)")
    return int(n) if float(n).is_integer() else n


def format_duration(seconds: int | float) -> str:
    """``D-HH:MM:SS``, or ``HH:MM:SS`` under a day (negative values count as 0); parse_duration reads it back."""
    s = max(int(seconds), 0)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{s:02d}"
    return f"{hours:02d}:{minutes:02d}:{s:02d}"


def parse_memory(value: str | int | float) -> int:
    """Parse a memory amount into bytes; a bare number (or a YAML number) is MB. Raises :class:`MemoryAmountError`."""
    if not isinstance(value, str):
        n = _check_number(value, MemoryAmountError, "memory amount")
        return _sized(n * (1 << 20), value)
    s = value.strip()
    if not s:
        raise MemoryAmountError("invalid memory amount '': empty value")
    if len(s) > _MAX_TEXT:
        raise MemoryAmountError(f"invalid memory amount {value[:_MAX_TEXT]!r}...: too long")
    m = _pattern("memory").fullmatch(s)
    if m is None or (m.group(3) is not None and m.group(3) != "B"):
        raise MemoryAmountError(f"invalid memory amount {value!r}: expected {_MEMORY_FORMS}")
    number, unit, byte = m.groups()
    factor = _MEMORY_UNITS["b" if byte else (unit or "").lower()]
    return _sized(float(number) * factor, value)


def _sized(nbytes: float, original: object) -> int:
    if nbytes > MAX_MEMORY:
        raise MemoryAmountError(f"invalid memory amount {original!r}: larger than 1 EiB")
    return int(round(nbytes))


def format_memory(nbytes: int) -> str:
    """A compact size: ``0``, ``100B``, ``512K``, ``1.5G``, ``2T`` (binary units, up to 2 decimals)."""
    if nbytes <= 0:
        return "0"
    value = float(nbytes)
    for unit in ("B", "K", "M", "G"):
        if value < 1024:
            return f"{int(nbytes)}B" if unit == "B" else f"{_two_decimals(value)}{unit}"
        value /= 1024
    return f"{_two_decimals(value)}T"


def _two_decimals(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")
