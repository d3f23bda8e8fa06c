"""Host lists: ``cn[01-03,07],gpu1`` <-> ``["cn01", "cn02", "cn03", "cn07", "gpu1"]``."""

from __future__ import annotations

import re

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class HostlistError(ValueError):
    """A host-list expression is malformed."""


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


def expand(expr: str | list[str] | None) -> list[str]:
    """Expand a host-list expression (or a list of them) into host names, keeping order, dropping repeats."""
    if not expr:
        return []
    items = expr if isinstance(expr, list) else [expr]
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
        key = (m.group(1), len(m.group(2)) if m.group(2).startswith("0") else 0)
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
