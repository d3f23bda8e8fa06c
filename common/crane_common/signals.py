"""Signal names and the ``--signal [{R|B}:]SIG[@seconds]`` form (cbatch, ccancel -s, the controller's check)."""

from __future__ import annotations

import signal as _signal
from typing import NamedTuple

DEFAULT_WARN_SECONDS = 60
MAX_WARN_SECONDS = 65535


class SignalSpecError(ValueError):
    """A signal name or ``--signal`` value that cannot be used (one-line message)."""


class WarnSignal(NamedTuple):
    """A parsed ``--signal``: ``signum`` sent ``seconds`` before the time limit, to the batch shell only or all."""

    signum: int
    seconds: int
    batch_only: bool


def signal_number(text: str) -> int:
    """``USR1``, ``SIGUSR1``, ``usr1`` or ``10`` -> 10; raise SignalSpecError for anything else (1..64)."""
    raw = (text or "").strip()
    if raw.isdigit():
        num = int(raw)
        if 1 <= num <= 64:
            return num
        raise SignalSpecError(f"signal number {raw} is out of range (1-64)")
    name = raw.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    found = getattr(_signal.Signals, name, None) if name.isidentifier() and name.isupper() else None
    if found is None or name in ("SIG_DFL", "SIG_IGN", "SIG_BLOCK", "SIG_UNBLOCK", "SIG_SETMASK"):
        raise SignalSpecError(f"unknown signal {raw[:20]!r}")
    return int(found)


def parse_warn_signal(text: str) -> WarnSignal:
    """Parse ``[{R|B}:]SIG[@seconds]`` (seconds default 60; ``B:`` the batch shell only, ``R:`` all processes)."""
    raw = (text or "").strip()
    if not raw:
        raise SignalSpecError("the signal is empty")
    batch_only = False
    head, colon, rest = raw.partition(":")
    if colon:
        if head.upper() not in ("B", "R", "RB", "BR"):
            raise SignalSpecError(f"--signal {raw[:40]!r}: expected [{{R|B}}:]SIG[@seconds]")
        batch_only = "B" in head.upper() and "R" not in head.upper()
        raw = rest
    sig, at, secs = raw.partition("@")
    seconds = DEFAULT_WARN_SECONDS
    if at:
        if not secs.isdigit() or not 0 <= int(secs) <= MAX_WARN_SECONDS:
            raise SignalSpecError(f"--signal: {secs[:20]!r} is not a number of seconds (0-{MAX_WARN_SECONDS})")
        seconds = int(secs)
    return WarnSignal(signal_number(sig), seconds, batch_only)
