"""cplugind's status: per plugin counters and lag in the Redis hash ``crane:{cluster}:plugind:status``.

Each field of the hash is a plugin name, its value a JSON object: ``handled``, ``failed`` (failed
attempts), ``dead_letters``, ``malformed``, ``skipped`` (duplicates), ``last_error`` (and its
``last_error_time``), ``last_seq``, ``lag`` (entries of the events stream the plugin has not
settled: ``undelivered`` + ``pending``), ``undelivered`` (not yet delivered to the plugin's group:
XINFO GROUPS ``lag``; None when Redis cannot tell, e.g. Redis 6.2), ``pending`` (delivered, not yet
acked), ``busy_since`` (a call in progress since then), ``host``, ``pid`` and ``updated``. Fields of
plugins no longer configured are removed when cplugind starts. The hash is behind the closed bus:
reading it takes the cplugind or admin credentials (root on the head node).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from crane_kernel.bus.client import Bus

__all__ = ["StatusWriter", "format_table", "group_lags", "read_status", "status_key"]

log = logging.getLogger("cplugind")


def status_key(bus: Bus) -> str:
    """The status hash: ``crane:{cluster}:plugind:status``."""
    return f"{bus.prefix}:plugind:status"


def _get(d: dict, key: str) -> Any:
    return d[key.encode()] if key.encode() in d else d.get(key)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def group_lags(bus: Bus) -> dict[str, tuple[int | None, int]]:
    """Group name -> (lag, pending) of every group on the events stream (lag None if Redis cannot tell)."""
    try:
        groups = bus.redis.xinfo_groups(bus.events_stream())
    except Exception:  # noqa: BLE001 - no stream yet
        return {}
    out: dict[str, tuple[int | None, int]] = {}
    for g in groups:
        name = _get(g, "name")
        name = name.decode() if isinstance(name, bytes) else str(name)
        lag = _get(g, "lag")
        out[name] = (int(lag) if lag is not None else None, int(_get(g, "pending") or 0))
    return out


class StatusWriter:
    """Writes every worker's status to the hash each ``interval`` seconds; trims what every group acked."""

    def __init__(self, bus: Bus, workers: Iterable[Any], interval: float = 1.0, trim_every: float = 10.0) -> None:
        self.bus = bus
        self.workers = list(workers)
        self.interval = interval
        self.trim_every = trim_every
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.host = socket.gethostname()
        self._cleaned = False

    def write_once(self) -> None:
        """One HSET of every plugin's status."""
        lags = group_lags(self.bus)
        now = time.time()
        mapping = {}
        for w in self.workers:
            st = w.status()
            undelivered, pending = lags.get(w.group, (None, 0))
            st.update(lag=None if undelivered is None else undelivered + pending, undelivered=undelivered,
                      pending=pending, host=self.host, pid=os.getpid(), updated=now)
            mapping[w.name] = json.dumps(st, separators=(",", ":"))
        if mapping:
            key = status_key(self.bus)
            if not self._cleaned:  # plugins no longer configured: their fields go
                stale = [f for f in self.bus.redis.hgetall(key) if _text(f) not in mapping]
                if stale:
                    self.bus.redis.hdel(key, *stale)
                self._cleaned = True
            self.bus.redis.hset(key, mapping=mapping)

    def trim(self) -> int:
        """XTRIM MINID below what every group of the events stream still needs (see the bus janitor)."""
        from crane_kernel.bus.recovery import RecoveryMixin

        trimmer = RecoveryMixin()
        trimmer._r = self.bus.redis
        trimmer.stream = self.bus.events_stream()
        return trimmer.trim_acked()

    def run(self) -> None:
        """Write the status until stopped; never raises."""
        next_trim = time.monotonic() + self.trim_every
        while not self.stop.is_set():
            try:
                self.write_once()
                if time.monotonic() >= next_trim:
                    next_trim = time.monotonic() + self.trim_every
                    self.trim()
            except Exception as exc:  # noqa: BLE001 - Redis down: try again next time
                log.debug("status not written: %s", exc)
            self.stop.wait(self.interval)

    def start(self) -> None:
        """Run in a daemon thread."""
        self.thread = threading.Thread(target=self.run, name="status", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop, after a last write."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(3)
        try:
            self.write_once()
        except Exception:  # noqa: BLE001
            pass


def read_status(bus: Bus) -> list[dict[str, Any]]:
    """Every plugin's status from the hash, by plugin name."""
    raw = bus.redis.hgetall(status_key(bus))
    rows = []
    for name, value in raw.items():
        try:
            row = json.loads(value)
        except ValueError:
            continue
        row.setdefault("plugin", name.decode() if isinstance(name, bytes) else str(name))
        rows.append(row)
    return sorted(rows, key=lambda r: r["plugin"])


def format_table(rows: list[dict[str, Any]], now: float | None = None) -> str:
    """The status as a table (one line per plugin)."""
    now = time.time() if now is None else now
    head = ("PLUGIN", "HANDLED", "FAILED", "DEAD", "MALFORMED", "LAG", "PENDING", "BUSY", "UPDATED", "LAST ERROR")
    lines = [head]
    for r in rows:
        lag = r.get("lag")
        age = now - float(r.get("updated") or 0)
        busy = float(r.get("busy_since") or 0)
        lines.append((str(r["plugin"]), str(r.get("handled", 0)), str(r.get("failed", 0)),
                      str(r.get("dead_letters", 0)), str(r.get("malformed", 0)), "?" if lag is None else str(lag),
                      str(r.get("pending", 0)), f"{max(0.0, now - busy):.0f}s" if busy else "-", f"{age:.0f}s ago",
                      (r.get("last_error") or "-")[:60]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
                     for line in lines)
