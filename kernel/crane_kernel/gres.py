"""Generic-resource (gres) arithmetic: one set of rules for the controller and every scheduler.

A public kernel API (a scheduler plugin, bundled or not, uses it rather than its own copy).
A request key without a colon (``"gpu"``) asks for any type of that family and
is covered by the sum of a node's ``"gpu"`` and ``"gpu:*"`` entries; a key with
a colon (``"gpu:a100"``) asks for that exact type. When a job asks for several
keys of one family, the family's total must also cover their sum. Taking an
untyped request draws from the types in sorted order after typed requests.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["family", "available", "fits", "take", "give", "clean", "key_of"]


def family(key: str) -> str:
    """The family part of a gres key (``"gpu:a100"`` -> ``"gpu"``)."""
    return key.partition(":")[0]


def available(free: Mapping[str, int] | None, key: str) -> int:
    """What ``free`` offers for request key ``key`` (exact type, or the whole family when untyped)."""
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
    """Whether one node's ``free`` gres covers the per-node request ``req``."""
    for k, n in req.items():
        if n > 0 and available(free, k) < n:
            return False
    if len(req) > 1:
        need: dict[str, int] = {}
        for k, n in req.items():
            if n > 0:
                fam = k.partition(":")[0]
                need[fam] = need.get(fam, 0) + n
        for fam, n in need.items():
            if available(free, fam) < n:
                return False
    return True


def take(free: dict[str, int], req: Mapping[str, int]) -> dict[str, int]:
    """Subtract ``req`` from ``free`` in place; return exactly what was taken, per concrete key."""
    taken: dict[str, int] = {}
    for k, n in req.items():
        if ":" in k and n > 0:
            free[k] = free.get(k, 0) - n
            taken[k] = taken.get(k, 0) + n
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
                    taken[kk] = taken.get(kk, 0) + got
                    n -= got
        if n > 0:  # not covered: record the shortfall on the plain key (never happens after fits())
            free[k] = free.get(k, 0) - n
            taken[k] = taken.get(k, 0) + n
    return taken


def give(free: dict[str, int], amounts: Mapping[str, int]) -> None:
    """Add concrete ``amounts`` back to ``free`` in place."""
    for k, n in amounts.items():
        free[k] = free.get(k, 0) + n


def clean(req: Mapping[str, int] | None) -> dict[str, int] | None:
    """The request without zero entries (``None`` when nothing is left)."""
    if not req:
        return None
    out = {k: int(v) for k, v in req.items() if v > 0}
    return out or None


def key_of(req: Mapping[str, int] | None) -> tuple[tuple[str, int], ...]:
    """A hashable, order-independent form of a request (for caches)."""
    return tuple(sorted(req.items())) if req else ()
