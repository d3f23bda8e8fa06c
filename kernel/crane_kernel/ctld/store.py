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
holds counters; ``nodes`` holds administrative node state (drain); ``acct_records(kind, name, data)``
holds the account database (``kind`` ``qos``/``account``/``user``, ``data`` the record as JSON) and
``acct_txn`` its transaction log (see :mod:`crane_kernel.ctld.accounts`); ``outbox(seq, data)`` the
events not yet on the events stream (the transactional outbox: an event staged with
:meth:`StateStore.stage_events` is inserted by the next :meth:`StateStore.write`, in the same
transaction as the change it describes; it is deleted, in a later transaction, once published).

Privacy: the journal holds every user's scripts and environments, so its directory is made
0700 and the database with its ``-wal``/``-shm`` files 0600 (fixed at every start, and created
before SQLite opens it). Once a job has ended, its bulky private fields (``script``, ``env``) are
dropped from its stored spec (:data:`COMPACTED_FIELDS`); what queries and history need stays.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from crane_common.states import FINAL_STATES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, state INTEGER NOT NULL, spec TEXT NOT NULL, rt TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, drain INTEGER NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acct_records (kind TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL,
                                         PRIMARY KEY (kind, name));
CREATE TABLE IF NOT EXISTS acct_txn (id INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL,
                                     action TEXT NOT NULL, target TEXT NOT NULL, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB NOT NULL);
"""


FINAL_STATE_NUMBERS = tuple(int(s) for s in FINAL_STATES)
COMPACTED_FIELDS = ("script", "env")
_COMPACT = ("UPDATE jobs SET spec=json_remove(spec, " + ", ".join(f"'$.{f}'" for f in COMPACTED_FIELDS)
            + f") WHERE id=? AND state IN ({','.join(map(str, FINAL_STATE_NUMBERS))})")


def _private_files(path: str) -> None:
    """Make the database's directory 0700 and the database files 0600, owned as they are."""
    os.chmod(os.path.dirname(os.path.abspath(path)), 0o700)
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass


class StateStore:
    """Thread-safe wrapper around one SQLite connection (the controller serialises writes anyway)."""

    def __init__(self, path: str, durable: bool = False) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        self.path = path
        # created 0600 before SQLite opens it: SQLite gives the -wal/-shm files the database's mode
        # (no os.umask: it is process-wide and would race with other threads creating files)
        fresh = not os.path.exists(path) or os.path.getsize(path) == 0
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        _private_files(path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if fresh:
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # space of compacted jobs is given back
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("PRAGMA cache_size=-8000")  # 8 MB page cache: memory stays bounded
        self._db.executescript(_SCHEMA)
        _private_files(path)
        self._lock = threading.Lock()
        self._staged: list[tuple[int, bytes]] = []      # events of the coming transaction
        self._committed: list[tuple[int, bytes]] = []   # committed, not yet handed to the publisher
        self._delete_upto = 0                           # published: delete outbox rows up to this seq
        self._deleted_upto = 0
        self.compact_ended()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- transactions -----------------------------------------------------
    def write(self, inserts: Iterable[tuple[int, int, str, str]] = (),
              updates: Iterable[tuple[int, str, int]] = (),
              deletes: Iterable[int] = (),
              meta: dict[str, Any] | None = None,
              node_states: Iterable[tuple[str, bool, str]] = ()) -> None:
        """Apply a group of changes in one transaction, with the events staged for it (the outbox).

        ``inserts``: ``(id, state, spec_json, rt_json)``; ``updates``:
        ``(state, rt_json, id)``; ``deletes``: job ids; ``meta``: key -> value;
        ``node_states``: ``(name, drained, reason)``.
        """
        node_states = list(node_states)
        inserts, updates, deletes = list(inserts), list(updates), list(deletes)
        with self._lock:
            staged = self._staged
            if not (inserts or updates or deletes or meta or staged or node_states):
                return
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany("INSERT OR REPLACE INTO jobs(id, state, spec, rt) VALUES (?,?,?,?)", inserts)
                db.executemany("UPDATE jobs SET state=?, rt=? WHERE id=?", updates)
                db.executemany(_COMPACT, ((u[2],) for u in updates if u[0] in FINAL_STATE_NUMBERS))
                db.executemany("DELETE FROM jobs WHERE id=?", ((i,) for i in deletes))
                if meta:
                    db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?,?)",
                                   ((k, json.dumps(v)) for k, v in meta.items()))
                if node_states:
                    db.executemany("INSERT OR REPLACE INTO nodes(name, drain, reason) VALUES (?,?,?)",
                                   ((n, int(d), r) for n, d, r in node_states))
                if staged:
                    db.executemany("INSERT INTO outbox(seq, data) VALUES (?,?)", staged)
                upto = self._delete_upto
                if upto > self._deleted_upto:  # the published events, deleted with this transaction
                    db.execute("DELETE FROM outbox WHERE seq<=?", (upto,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            if staged:
                self._committed.extend(staged)
                self._staged = []
            self._deleted_upto = max(self._deleted_upto, upto)

    # -- the transactional outbox -------------------------------------------
    def stage_events(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Events ``(seq, encoded)`` to insert into the outbox with the next :meth:`write` transaction."""
        with self._lock:
            self._staged.extend(rows)

    def take_committed(self) -> list[tuple[int, bytes]]:
        """The events committed since the last call, in ``seq`` order (the publisher's work)."""
        with self._lock:
            rows, self._committed = self._committed, []
        rows.sort()
        return rows

    def mark_published(self, seq: int) -> None:
        """Every event up to ``seq`` is on the stream: its outbox row is deleted with the next write."""
        with self._lock:
            self._delete_upto = max(self._delete_upto, seq)

    def flush_published(self) -> int:
        """Delete the published outbox rows now (when no write came along to do it); return how many."""
        with self._lock:
            upto = self._delete_upto
            if upto <= self._deleted_upto:
                return 0
            cur = self._db.execute("DELETE FROM outbox WHERE seq<=?", (upto,))
            self._deleted_upto = upto
            return cur.rowcount or 0

    def outbox_rows(self, limit: int = 0) -> list[tuple[int, bytes]]:
        """Events still in the outbox (committed, not known to be published), oldest first."""
        q = "SELECT seq, data FROM outbox ORDER BY seq" + (" LIMIT ?" if limit else "")
        with self._lock:
            rows = self._db.execute(q, (limit,) if limit else ()).fetchall()
        return [(int(seq), bytes(data)) for seq, data in rows]

    def last_event_seq(self) -> int:
        """The highest event ``seq`` ever journaled (AUTOINCREMENT keeps it across deletes)."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
            top = self._db.execute("SELECT MAX(seq) FROM outbox").fetchone()
        return max(int(row[0]) if row else 0, int(top[0] or 0) if top else 0)

    def compact_ended(self) -> int:
        """Drop script and environment from every ended job still holding them (at start); return how many."""
        cond = " OR ".join(f"json_type(spec, '$.{f}') IS NOT NULL" for f in COMPACTED_FIELDS)
        final = ",".join(map(str, FINAL_STATE_NUMBERS))
        with self._lock:
            ids = [r[0] for r in self._db.execute(f"SELECT id FROM jobs WHERE state IN ({final}) AND ({cond})")]
            if ids:
                self._db.execute("BEGIN")
                self._db.executemany(_COMPACT, ((i,) for i in ids))
                self._db.execute("COMMIT")
                self._db.execute("PRAGMA incremental_vacuum")
        return len(ids)

    def set_node(self, name: str, drain: bool, reason: str) -> None:
        """Persist a node's administrative state."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO nodes(name, drain, reason) VALUES (?,?,?)",
                             (name, int(drain), reason))

    def acct_write(self, puts: Iterable[tuple[str, str, str]], drops: Iterable[tuple[str, str]],
                   txns: Iterable[tuple[float, str, str, str, str]]) -> None:
        """One change of the account database in one transaction: records and their log rows together.

        ``puts``: ``(kind, name, data_json)``; ``drops``: ``(kind, name)``; ``txns``:
        ``(time, actor, action, target, info)``.
        """
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany("INSERT OR REPLACE INTO acct_records(kind, name, data) VALUES (?,?,?)", list(puts))
                db.executemany("DELETE FROM acct_records WHERE kind=? AND name=?", list(drops))
                db.executemany("INSERT INTO acct_txn(time, actor, action, target, info) VALUES (?,?,?,?,?)",
                               list(txns))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # -- reads ------------------------------------------------------------
    def acct_records(self) -> list[tuple[str, str, dict]]:
        """Every record of the account database: ``(kind, name, data)``."""
        with self._lock:
            rows = self._db.execute("SELECT kind, name, data FROM acct_records ORDER BY kind, name").fetchall()
        return [(k, n, json.loads(d)) for k, n, d in rows]

    def acct_txns(self, actor: str = "", target: str = "", action: str = "", start: float = 0,
                  end: float = 0, limit: int = 0) -> list[tuple[float, str, str, str, str]]:
        """Transaction-log rows ``(time, actor, action, target, info)`` matching the filters, oldest first.

        Empty filters match everything; ``limit`` keeps the newest ``limit`` rows (0: all).
        """
        where, args = [], []
        for column, value in (("actor", actor), ("target", target), ("action", action)):
            if value:
                where.append(f"{column}=?")
                args.append(value)
        if start:
            where.append("time>=?")
            args.append(start)
        if end:
            where.append("time<=?")
            args.append(end)
        q = "SELECT time, actor, action, target, info FROM acct_txn"
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY id DESC"
        if limit:
            q += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        return list(reversed(rows))

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
