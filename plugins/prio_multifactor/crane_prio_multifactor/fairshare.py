"""Historical usage per account with exponential half-life decay, and the fair-share factor.

Usage is charged in CPU-seconds when a job ends (``record(account, cpu_seconds, at_time)``)
and decays continuously: a charge made ``dt`` seconds ago counts
``2 ** (-dt / half_life)`` of its value (Slurm's ``PriorityDecayHalfLife``;
``half_life == 0`` means no decay). Each account keeps ``(usage, as_of)``, the
decayed total as of time ``as_of``, so recording and reading are O(1).

Fair-share factor of account ``a`` (Slurm's classic formula)::

    U = usage(a) / sum of usage(b) over all accounts     (0 when nobody has used anything)
    S = shares(a) / sum of shares(b) over known accounts (configured, charged, or with pending jobs)
    F = 2 ** (-U / S)                                    (1: unused; 0.5: exactly its share; -> 0: over)

An account with 0 shares gets ``F = 0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["UsageLedger"]


class UsageLedger:
    """Decayed CPU-second usage per account."""

    def __init__(self, half_life: float) -> None:
        self.half_life = half_life
        self._usage: dict[str, tuple[float, float]] = {}

    def record(self, account: str, cpu_seconds: float, at_time: float) -> None:
        """Charge ``cpu_seconds`` to ``account`` at ``at_time`` (records may arrive out of time order)."""
        h = self.half_life
        u, t = self._usage.get(account, (0.0, at_time))
        if h <= 0:
            self._usage[account] = (u + cpu_seconds, max(t, at_time))
        elif at_time >= t:
            self._usage[account] = (u * 2.0 ** (-(at_time - t) / h) + cpu_seconds, at_time)
        else:
            self._usage[account] = (u + cpu_seconds * 2.0 ** (-(t - at_time) / h), t)

    def usage(self, account: str, now: float) -> float:
        """The account's usage decayed to ``now`` (0 for an unknown account)."""
        got = self._usage.get(account)
        if got is None:
            return 0.0
        u, t = got
        h = self.half_life
        if h <= 0 or now <= t:
            return u
        return u * 2.0 ** (-(now - t) / h)

    def accounts(self) -> list[str]:
        """Every account ever charged."""
        return list(self._usage)

    def factors(self, accounts: Iterable[str], now: float, shares: Mapping[str, float]) -> dict[str, float]:
        """The fair-share factor of each of ``accounts`` at ``now`` (see the module docstring)."""
        wanted = set(accounts)
        known = wanted | set(self._usage) | set(shares)
        share_of = {a: float(shares.get(a, 1.0)) for a in known}
        share_total = sum(share_of.values())
        decayed = {a: self.usage(a, now) for a in self._usage}
        total = sum(decayed.values())
        out = {}
        for a in wanted:
            s = share_of[a] / share_total if share_total > 0 else 0.0
            if s <= 0:
                out[a] = 0.0
                continue
            u = decayed.get(a, 0.0) / total if total > 0 else 0.0
            out[a] = 2.0 ** (-u / s)
        return out

    def state(self) -> dict[str, list[float]]:
        """``{account: [usage, as_of]}`` (JSON-serialisable)."""
        return {a: [u, t] for a, (u, t) in self._usage.items()}

    def load(self, data: Mapping[str, Iterable[float]]) -> None:
        """Replace the ledger with ``data`` as produced by :meth:`state`."""
        usage = {}
        for a, pair in data.items():
            u, t = (float(x) for x in pair)
            usage[str(a)] = (u, t)
        self._usage = usage
