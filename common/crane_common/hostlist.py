"""Host lists: ``cn[01-03,07],gpu1`` <-> ``["cn01", "cn02", "cn03", "cn07", "gpu1"]``.

Expansion is bounded: an expression that would name more than ``limit`` hosts (default
:data:`DEFAULT_EXPAND_LIMIT`) is refused with :class:`HostlistTooLargeError` *before* anything is
expanded, so ``cn[01-9999999999]`` fails at once instead of running for minutes. The size is
computed from the ranges (a product per bracket chain), not by expanding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


DEFAULT_EXPAND_LIMIT = 100_000
"""Host names one expression may expand to unless the caller gives another limit."""
MAX_EXPR_CHARS = 1 << 20
"""Longest host-list expression accepted (characters)."""


class HostlistError(ValueError):
    """A host-list expression is malformed."""


class HostlistTooLargeError(HostlistError):
    """A host-list expression names more hosts than the expansion limit."""


def _split_top(expr: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in expr:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise HostlistError(f"unbalanced ']' in {expr!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise HostlistError(f"unbalanced '[' in {expr!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _count_one(item: str) -> int:
    """How many names ``item`` expands to (before dropping repeats), without expanding it."""
    m = re.search(r"\[([^\[\]]*)\]", item)
    if not m:
        if "[" in item or "]" in item:
            raise HostlistError(f"malformed host range {item!r}")
        return 1
    total = 0
    for piece in m.group(1).split(","):
        r = _RANGE.match(piece.strip())
        if not r:
            raise HostlistError(f"malformed range {piece!r} in {item!r}")
        a, b = int(r.group(1)), int(r.group(2) or r.group(1))
        if b < a:
            raise HostlistError(f"descending range {piece!r} in {item!r}")
        total += b - a + 1
    return total * _count_one(item[m.end():])


def count(expr: str | list[str] | None) -> int:
    """The number of names an expression expands to, counting repeats (cheap: nothing is expanded)."""
    if not expr:
        return 0
    items = expr if isinstance(expr, list) else [expr]
    return sum(_count_one(part) for e in items for part in _split_top(str(e)))


def _expand_one(item: str) -> list[str]:
    m = re.search(r"\[([^\[\]]*)\]", item)
    if not m:
        if "[" in item or "]" in item:
            raise HostlistError(f"malformed host range {item!r}")
        return [item]
    prefix, body, rest = item[: m.start()], m.group(1), item[m.end():]
    out: list[str] = []
    for piece in body.split(","):
        r = _RANGE.match(piece.strip())
        if not r:
            raise HostlistError(f"malformed range {piece!r} in {item!r}")
        lo, hi = r.group(1), r.group(2) or r.group(1)
        width = len(lo) if lo.startswith("0") or (hi and len(lo) == len(hi)) else 0
        a, b = int(lo), int(hi)
        if b < a:
            raise HostlistError(f"descending range {piece!r} in {item!r}")
        for i in range(a, b + 1):
            for tail in _expand_one(rest):
                out.append(f"{prefix}{i:0{width}d}{tail}")
    return out


def expand(expr: str | list[str] | None, limit: int = DEFAULT_EXPAND_LIMIT) -> list[str]:
    """Expand a host-list expression (or a list of them) into host names, keeping order, dropping repeats.

    Raises :class:`HostlistTooLargeError` when it would name more than ``limit`` hosts (0 = no limit),
    :class:`HostlistError` when it is malformed.
    """
    if not expr:
        return []
    items = expr if isinstance(expr, list) else [expr]
    if sum(len(str(e)) for e in items) > MAX_EXPR_CHARS:
        raise HostlistTooLargeError(f"host list longer than {MAX_EXPR_CHARS} characters")
    if limit:
        n = count(items)
        if n > limit:
            shown = str(items[0])[:60]
            raise HostlistTooLargeError(f"host list {shown!r} names {n} hosts, more than the limit of {limit}")
    seen: dict[str, None] = {}
    for e in items:
        for part in _split_top(str(e)):
            for host in _expand_one(part):
                seen.setdefault(host, None)
    return list(seen)


_TAIL_NUM = re.compile(r"^(.*?)(\d+)$")


def compress(hosts: list[str]) -> str:
    """Compress host names into a host-list expression (``cn01,cn02,cn03`` -> ``cn[01-03]``)."""
    groups: dict[tuple[str, int], list[int]] = {}
    order: list[tuple[str, int] | str] = []
    for h in hosts:
        m = _TAIL_NUM.match(h)
        if not m:
            order.append(h)
            continue
        digits = m.group(2)
        key = (m.group(1), len(digits) if len(digits) > 1 and digits.startswith("0") else 0)  # "0" is not padded
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(int(m.group(2)))
    out: list[str] = []
    for key in order:
        if isinstance(key, str):
            out.append(key)
            continue
        prefix, width = key
        nums = sorted(set(groups[key]))
        ranges: list[str] = []
        start = prev = nums[0]
        for n in nums[1:] + [None]:  # type: ignore[list-item]
            if n is not None and n == prev + 1:
                prev = n
                continue
            ranges.append(f"{start:0{width}d}" if start == prev else f"{start:0{width}d}-{prev:0{width}d}")
            if n is not None:
                start = prev = n
        if len(ranges) == 1 and "-" not in ranges[0]:
            out.append(f"{prefix}{ranges[0]}")
        else:
            out.append(f"{prefix}[{','.join(ranges)}]")
    return ",".join(out)


def format_ranges(values: Iterable[int]) -> str:
    """Integers as runs: ``[0, 1, 2, 5]`` -> ``"0-2,5"`` (sorted, repeats dropped; the kernel's cpuset list
    form, and an array's task indices)."""
    ids = sorted({int(v) for v in values})
    out: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(out)
