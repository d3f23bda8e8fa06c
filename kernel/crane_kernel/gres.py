"""Generic-resource (gres) arithmetic: one set of rules for the controller and every scheduler.

A public kernel API (a scheduler plugin, bundled or not, uses it rather than its own copy).
A request key without a colon (``"gpu"``) asks for any type of that family and
is covered by the sum of a node's ``"gpu"`` and ``"gpu:*"`` entries; a key with
a colon (``"gpu:a100"``) asks for that exact type. When a job asks for several
keys of one family, the family's total must also cover their sum. Taking an
untyped request draws from the types in sorted order after typed requests.

:class:`GresNode` is how GRES plugins (``crane_gres_select``, ``crane_gres_environment``) see a
node's device files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

__all__ = ["GresNode", "family", "available", "fits", "take", "give", "clean", "key_of"]


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


class GresNode:
    """A node's GRES device files, as the GRES plugins see them (read-only).

    * ``name``: the node name.
    * ``devices``: gres key (``"gpu:a100"``, or ``"gpu"`` for an untyped entry) -> the device files
      configured for it, in configuration order.
    * ``device_env``: device file -> ``(EnvInjector, index)``: the configured injector
      (``nvidia``, ``hip``, ``ascend``, ...) and the file's index among the node's devices of the
      same gres name (what ``CUDA_VISIBLE_DEVICES`` counts).
    """

    __slots__ = ("name", "devices", "device_env", "_all")

    def __init__(self, name: str, devices: Mapping[str, Sequence[str]],
                 device_env: Mapping[str, tuple[str, int]] | None = None) -> None:
        self.name = name
        self.devices: Mapping[str, tuple[str, ...]] = MappingProxyType({k: tuple(v) for k, v in devices.items()})
        self.device_env: Mapping[str, tuple[str, int]] = MappingProxyType(dict(device_env or {}))
        self._all = tuple(d for files in self.devices.values() for d in files)

    def all_devices(self) -> tuple[str, ...]:
        """Every device file of the node, in configuration order."""
        return self._all

    def keys_for(self, key: str) -> list[str]:
        """The node's gres keys a request key draws devices from: itself, or every type of an untyped family."""
        if ":" in key or key in self.devices:
            return [key]
        return [k for k in self.devices if family(k) == key]

    def __repr__(self) -> str:
        return f"GresNode({self.name!r}, {dict(self.devices)!r})"
