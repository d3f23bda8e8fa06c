"""Probe event plugins for tests (entry-point group ``crane.events``), loaded like any site's plugin.

* ``probe`` — appends each event's ``id``, ``seq``, ``kind``, job id / node and the time it handled
  it to the SQLite file ``Path`` (``INSERT OR IGNORE`` by id: idempotent, so at-least-once delivery
  leaves one row per event);
* ``sleepy`` — sleeps ``Seconds`` (default 10) per event, then does what ``probe`` does if ``Path``
  is set;
* ``flaky`` — raises for the first ``Failures`` (default 2) attempts of each event (counted per
  event id; ``Failures: -1`` always raises), then records it like ``probe`` if ``Path`` is set.

Settings (``Plugins.Settings.<name>``): ``Path``, ``Seconds``, ``Failures``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from crane_kernel import hookimpl

__all__ = ["Flaky", "Probe", "Sleepy", "read_probe"]

_SCHEMA = ("CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, kind TEXT NOT NULL, "
           "job_id INTEGER, node TEXT, state TEXT, event_time REAL, handled REAL NOT NULL)")


class Probe:
    """Records every event in an SQLite file (``Path``), once per event id."""

    def __init__(self) -> None:
        self.path = ""
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @hookimpl
    def crane_plugin_configure(self, settings: dict[str, Any]) -> None:
        """``Path``: the SQLite file (created); other keys are the subclasses'."""
        self.configure(settings)
        self.path = str(settings.get("Path") or "")
        if self.path:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)

    def configure(self, settings: dict[str, Any]) -> None:
        """A subclass's own settings."""

    def record(self, event: Any) -> None:
        """Insert the event (once per id)."""
        if self._db is None:
            return
        job = getattr(event, "job", None)
        state = job.state if job is not None else getattr(event, "state", "")
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?)",
                             (event.id, event.seq, event.kind, getattr(event, "job_id", None),
                              getattr(event, "node", None), state, event.time, time.time()))

    @hookimpl
    def crane_event(self, event: Any) -> None:
        """Record it."""
        self.record(event)

    @hookimpl
    def crane_plugin_shutdown(self) -> None:
        """Close the file."""
        if self._db is not None:
            self._db.close()
            self._db = None


class Sleepy(Probe):
    """Sleeps ``Seconds`` per event (a slow plugin), then records it."""

    seconds = 10.0

    def configure(self, settings: dict[str, Any]) -> None:
        """``Seconds`` (default 10)."""
        self.seconds = float(settings.get("Seconds", 10.0))

    @hookimpl
    def crane_event(self, event: Any) -> None:
        """Sleep, then record."""
        time.sleep(self.seconds)
        self.record(event)


class Flaky(Probe):
    """Fails the first ``Failures`` attempts of every event, then records it."""

    failures = 2

    def configure(self, settings: dict[str, Any]) -> None:
        """``Failures`` (default 2; -1: always)."""
        self.failures = int(settings.get("Failures", 2))
        self.attempts: dict[str, int] = {}

    @hookimpl
    def crane_event(self, event: Any) -> None:
        """Raise until this event's attempt count passes ``Failures``."""
        n = self.attempts.get(event.id, 0) + 1
        self.attempts[event.id] = n
        if self.failures < 0 or n <= self.failures:
            raise RuntimeError(f"flaky: attempt {n} of event {event.id} fails")
        self.record(event)


def read_probe(path: str) -> list[tuple]:
    """The probe file's rows ``(id, seq, kind, job_id, node, state, event_time, handled)`` by seq."""
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute("SELECT id, seq, kind, job_id, node, state, event_time, handled FROM events "
                          "ORDER BY seq").fetchall()
    finally:
        db.close()
