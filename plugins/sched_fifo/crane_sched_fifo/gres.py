"""Generic-resource (gres) arithmetic shared by the fit searches.

A request key without a colon (``"gpu"``) asks for any type of that family:
it is satisfied by the sum of a node's ``"gpu"`` and ``"gpu:*"`` entries. A
key with a colon (``"gpu:a100"``) asks for that exact type. When a job asks
for several keys of one family (``{"gpu:a100": 2, "gpu": 2}``) the family's
total must also cover their sum.
"""

from __future__ import annotations

from collections.abc import Mapping


def family(key: str) -> str:
    """Return the family part of a gres key (``"gpu:a100"`` -> ``"gpu"``)."""
    return key.partition(":")[0]


def available(free: Mapping[str, int] | None, key: str) -> int:
    """Count what ``free`` offers for request key ``key`` (exact type, or the whole family when untyped)."""
    if not free:
        return 0
    if ":" in key:
        return free.get(key, 0)
    total = 0
    for k, v in free.items():
        if k == key or (k.startswith(key) and k[len(key)] == ":"):
            total += v
    return total


def fits(free: Mapping[str, int] | None, req: Mapping[str, int]) -> bool:
    """Tell whether one node's ``free`` gres covers the per-node request ``req``."""
    for k, n in req.items():
        if n > 0 and available(free, k) < n:
            return False
    if len(req) > 1:
        need: dict[str, int] = {}
        for k, n in req.items():
            if n > 0:
                f = family(k)
                need[f] = need.get(f, 0) + n
        for f, n in need.items():
            if available(free, f) < n:
                return False
    return True


def take(free: dict[str, int], req: Mapping[str, int]) -> None:
    """Subtract ``req`` from ``free`` in place: typed keys first, then untyped ones from types in sorted order."""
    for k, n in req.items():
        if ":" in k and n > 0:
            free[k] = free.get(k, 0) - n
    for k, n in req.items():
        if ":" in k or n <= 0:
            continue
        for kk in sorted(free):
            if n <= 0:
                break
            if kk == k or (kk.startswith(k) and kk[len(k)] == ":"):
                got = min(free[kk], n)
                if got > 0:
                    free[kk] -= got
                    n -= got


def key_of(req: Mapping[str, int] | None) -> tuple[tuple[str, int], ...]:
    """A hashable, order-independent form of a gres request (for shape caches)."""
    return tuple(sorted(req.items())) if req else ()
