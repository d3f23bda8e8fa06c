"""Memory sizes: ``--mem`` parsing and display.

Accepted strings match ``^[0-9]+(\\.[0-9]*)?[KkMmGgB]?$``; the default unit is
MB; ``K``/``M``/``G`` are binary units (KiB, MiB, GiB) and ``B`` means bytes.
"""

from __future__ import annotations

from crane_cli.lazyre import LazyRegex

_MEM = LazyRegex(r"^([0-9]+(?:\.[0-9]*)?)([KkMmGgB]?)$")
_MULT = {"": 1 << 20, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class MemoryFormatError(ValueError):
    """A memory string does not match the accepted syntax."""


def parse_memory(text: str) -> int:
    """Parse a memory size (default unit MB) into bytes."""
    m = _MEM.match(text.strip())
    if not m:
        raise MemoryFormatError(f"invalid memory size {text!r}: expected a number with an optional K, M, G or B unit")
    number, unit = m.groups()
    return int(round(float(number) * _MULT[unit.upper()]))


def format_memory(nbytes: int) -> str:
    """A compact size for tables: ``0``, ``512K``, ``1.5G``, ``2T`` (binary units, up to 2 decimals)."""
    if nbytes <= 0:
        return "0"
    value = float(nbytes)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            text = f"{value:.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}" if unit != "B" else f"{int(nbytes)}B"
        value /= 1024
    raise AssertionError("unreachable")
