"""``--format`` strings: ``%[.][width]spec`` items with literal text between them.

* ``spec`` is a single letter (case-sensitive) or a long name (a run of letters,
  case-insensitive); ``%%`` is a literal percent sign.
* ``width`` pads the cell to at least that many characters and cuts longer cells;
  cells are left-aligned unless ``.`` is given (right-aligned).
* Anything that is not a valid item raises :class:`FormatSpecError`; the commands
  exit with code 5 for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from crane_cli.lazyre import LazyRegex

T = TypeVar("T")

_ITEM = LazyRegex(r"%(?:(%)|(\.)?(\d+)?([A-Za-z]+))")


class FormatSpecError(ValueError):
    """An invalid ``--format`` string."""


class Item(Generic[T]):
    """One ``%`` item: the resolved field, its width (None: natural) and alignment."""

    __slots__ = ("field", "width", "right", "spec")

    def __init__(self, field: T, width: int | None, right: bool, spec: str) -> None:
        self.field = field
        self.width = width
        self.right = right
        self.spec = spec

    def __repr__(self) -> str:
        return f"Item({self.spec!r}, width={self.width}, right={self.right})"


def parse_format(fmt: str, resolve: Callable[[str], T | None]) -> list[str | Item[T]]:
    """Split ``fmt`` into literal strings and :class:`Item` s.

    ``resolve(spec)`` maps a single letter (as written) or a long name (lower-cased)
    to a field, or returns ``None`` for an unknown specifier.
    """
    out: list[str | Item[T]] = []
    pos = 0
    literal: list[str] = []
    for m in _ITEM.finditer(fmt):
        text = fmt[pos:m.start()]
        if "%" in text:
            raise FormatSpecError(f"invalid format {fmt!r}: stray '%' at position {pos + text.index('%')}")
        literal.append(text)
        pos = m.end()
        if m.group(1):
            literal.append("%")
            continue
        dot, width, spec = m.group(2), m.group(3), m.group(4)
        key = spec if len(spec) == 1 else spec.lower()
        field = resolve(key)
        if field is None:
            raise FormatSpecError(f"invalid format specifier '%{spec}' in {fmt!r}")
        if literal and "".join(literal):
            out.append("".join(literal))
        literal = []
        w = int(width) if width else None
        if w == 0:
            raise FormatSpecError(f"invalid width 0 for '%{spec}' in {fmt!r}")
        out.append(Item(field, w, bool(dot), spec))
    tail = fmt[pos:]
    if "%" in tail:
        raise FormatSpecError(f"invalid format {fmt!r}: stray '%' at position {pos + tail.index('%')}")
    literal.append(tail)
    if "".join(literal):
        out.append("".join(literal))
    if not any(isinstance(x, Item) for x in out):
        raise FormatSpecError(f"invalid format {fmt!r}: no field specifier")
    return out
