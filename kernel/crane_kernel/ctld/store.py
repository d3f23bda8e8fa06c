"""The controller's embedded state store: SQLite in WAL mode.

Every job transition is written here *before* the controller acknowledges it
(to a client, or to the bus by XACK). Writes are grouped: one transaction per
RPC, per scheduling cycle and per batch of bus messages. ``synchronous=NORMAL``
in WAL mode survives a crash of the process (``kill -9``) without losing a
committed transaction; only an OS crash or power loss can lose the last
transactions (set ``durable=True`` for ``synchronous=FULL``).

Layout: ``jobs(id, state, spec, rt)`` where ``spec`` is the immutable
submission (JSON, including script and environment, which the controller does
not keep in memory) and ``rt`` the mutable runtime record (JSON); ``meta``
holds counters; ``nodes`` holds administrative node state (drain).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, state INTEGER NOT NULL, spec TEXT NOT NULL, rt TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, drain INTEGER NOT NULL, reason TEXT NOT NULL);
"""


class StateStore:
    """Thread-safe wrapper around one SQLite connection (the controller serialises writes anyway)."""

    def __init__(self, path: str, durable: bool = False) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("PRAGMA cache_size=-8000")  # 8 MB page cache: memory stays bounded
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- transactions -----------------------------------------------------
    def write(self, inserts: Iterable[tuple[int, int, str, str]] = (),
              updates: Iterable[tuple[int, str, int]] = (),
              deletes: Iterable[int] = (),
              meta: dict[str, Any] | None = None) -> None:
        """Apply a group of changes in one transaction.

        ``inserts``: ``(id, state, spec_json, rt_json)``; ``updates``:
        ``(state, rt_json, id)``; ``deletes``: job ids; ``meta``: key -> value.
        """
        inserts, updates, deletes = list(inserts), list(updates), list(deletes)
        if not (inserts or updates or deletes or meta):
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany("INSERT OR REPLACE INTO jobs(id, state, spec, rt) VALUES (?,?,?,?)", inserts)
                db.executemany("UPDATE jobs SET state=?, rt=? WHERE id=?", updates)
                db.executemany("DELETE FROM jobs WHERE id=?", ((i,) for i in deletes))
                if meta:
                    db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?,?)",
                                   ((k, json.dumps(v)) for k, v in meta.items()))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def set_node(self, name: str, drain: bool, reason: str) -> None:
        """Persist a node's administrative state."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO nodes(name, drain, reason) VALUES (?,?,?)",
                             (name, int(drain), reason))

    # -- reads ------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        """Read a meta value."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def _by_id(self, columns: str, ids: list[int]) -> list[tuple]:
        """Rows ``(id, <columns>)`` of the given jobs, queried in chunks (SQLite's parameter limit)."""
        rows: list[tuple] = []
        with self._lock:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                q = f"SELECT id, {columns} FROM jobs WHERE id IN ({','.join('?' * len(chunk))})"
                rows += self._db.execute(q, chunk).fetchall()
        return rows

    def specs(self, ids: list[int]) -> dict[int, dict]:
        """The submission specs of the given jobs."""
        return {jid: json.loads(spec) for jid, spec in self._by_id("spec", ids)}

    def jobs_by_id(self, ids: list[int]) -> list[tuple[int, dict, dict]]:
        """``(id, spec, rt)`` of the given jobs (those the store has)."""
        return [(jid, json.loads(spec), json.loads(rt)) for jid, spec, rt in self._by_id("spec, rt", ids)]

    def iter_jobs(self, states: Iterable[int]) -> Iterator[tuple[int, int, dict, dict]]:
        """Every job in the given states: ``(id, state, spec, rt)`` (used at start-up)."""
        states = list(states)
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, state, spec, rt FROM jobs WHERE state IN ({','.join('?' * len(states))}) ORDER BY id",
                states).fetchall()
        for jid, state, spec, rt in rows:
            yield jid, state, json.loads(spec), json.loads(rt)

    def recent_finished(self, limit: int) -> list[tuple[int, dict, dict]]:
        """The ``limit`` most recent ended jobs, oldest first: ``(id, spec, rt)``."""
        final = (2, 3, 4, 5, 6, 11)
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, spec, rt FROM jobs WHERE state IN ({','.join('?' * len(final))}) ORDER BY id DESC LIMIT ?",
                (*final, limit)).fetchall()
        return [(jid, json.loads(spec), json.loads(rt)) for jid, spec, rt in reversed(rows)]

    def nodes(self) -> dict[str, tuple[bool, str]]:
        """Administrative node state: name -> (drained, reason)."""
        with self._lock:
            return {n: (bool(d), r) for n, d, r in self._db.execute("SELECT name, drain, reason FROM nodes")}
