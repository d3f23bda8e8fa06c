"""The job-history store: one class for SQLite and PostgreSQL (parameterized SQL only).

Writes (:meth:`Store.apply`, from the events half in cplugind) upsert a job's row only when the
event's ``seq`` is newer than the row's ``last_seq``, so a redelivered or late event changes
nothing; steps keep their own ``last_seq``; node events are keyed by the event id. One call is
one transaction, committed before it returns. Reads (:meth:`Store.query`, from the accounting
half in cranectld) run on one connection per thread, so concurrent ``cacct`` calls do not wait
for each other (SQLite readers never wait for the writer in WAL mode).

SQLite: WAL, ``synchronous=NORMAL`` (a committed event survives a crash of the process; as for
the controller's journal, only an OS crash can lose the last ones), the database and its
``-wal``/``-shm`` files 0600 under a 0077 umask, in a directory of its own that only its owner
may enter (0700: created so, and a directory other users can read is refused).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from crane_kernel.events import JobEvent, JobRecord, NodeEvent, StepEvent
from crane_kernel.history import HistoryQuery, HistoryRecord, StepRecord

from crane_acct_sql.schema import JOB_COLUMNS, LATEST, MIGRATIONS, NODE_EVENT_COLUMNS, STEP_COLUMNS, statements
from crane_acct_sql.settings import Settings

log = logging.getLogger("crane_acct_sql")

PRUNE_CHUNK = 10_000
SMALL_LIST = 64  # up to this many values a filter is IN (?, ...); beyond, one array parameter
_ADVISORY_KEY = 0x63_72_61_6E_65_61_63  # "craneac": serialises migrations of one PostgreSQL database


def _wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL; a switch racing another opener's can fail at once with "locked" (SQLite does not
    always wait on its busy handler for it), so it is retried for up to ten seconds."""
    for attempt in range(200):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 199:
                raise
            time.sleep(0.05)


class StoreError(Exception):
    """The store cannot be used (bad file mode, a schema newer than this plugin, the server gone)."""


def _upsert(table: str, columns: Sequence[str], key: str) -> str:
    cols = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    keys = {k.strip() for k in key.split(",")}
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    return (f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {sets} "
            f"WHERE excluded.last_seq > {table}.last_seq")


_JOB_UPSERT = _upsert("jobs", JOB_COLUMNS, "job_id")
_STEP_UPSERT = _upsert("steps", STEP_COLUMNS, "job_id, step_id")
_NODE_INSERT = (f"INSERT INTO node_events ({', '.join(NODE_EVENT_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(NODE_EVENT_COLUMNS))}) ON CONFLICT (event_id) DO NOTHING")
_JOB_SELECT = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs"
_STEP_SELECT = f"SELECT {', '.join(STEP_COLUMNS)} FROM steps"


def _nodes_text(nodes: Iterable[str]) -> str:
    nodes = list(nodes)
    return f",{','.join(nodes)}," if nodes else ""


def job_row(rec: JobRecord, seq: int) -> tuple:
    """The ``jobs`` row of a record (columns :data:`~crane_acct_sql.schema.JOB_COLUMNS`)."""
    return (rec.job_id, rec.name, rec.user, rec.uid, rec.gid, rec.account, rec.partition, rec.qos, rec.state,
            rec.exit_code, rec.submit_time, rec.start_time, rec.end_time, rec.time_limit, rec.node_num,
            rec.cpus, rec.mem_per_node, json.dumps(rec.gres, sort_keys=True, separators=(",", ":")),
            _nodes_text(rec.nodes), rec.cwd, rec.comment, rec.reason, rec.cpu_time_ms, rec.mem_peak_bytes,
            rec.requeue_count, json.dumps(list(rec.mail_type), separators=(",", ":")), rec.mail_user,
            rec.array_job_id, rec.array_task_id, seq)


def step_row(ev: StepEvent) -> tuple:
    """The ``steps`` row of a step event (its name; a batch script, step 0 without one, is ``batch``)."""
    name = ev.name or ("batch" if ev.step_id == 0 else f"step{ev.step_id}")
    return (ev.job_id, ev.step_id, name, ev.state, ev.exit_code,
            ev.start_time, ev.end_time, _nodes_text(ev.nodes), 0.0, ev.cpu_time_ms, ev.mem_peak_bytes, ev.seq)


def _split_nodes(text: str) -> list[str]:
    return [n for n in text.split(",") if n]


_FIELDS = frozenset(HistoryRecord.model_fields)


def _json(text: str, empty: Any) -> Any:
    return json.loads(text) if text and len(text) > 2 else type(empty)()


def _record(row: Sequence[Any]) -> HistoryRecord:
    """A row as a :class:`HistoryRecord`, built as ``model_construct`` does (the values are the store's own,
    written from validated events), minus its per-field bookkeeping: a cacct page is 1,000 of these."""
    (job_id, name, user, uid, gid, account, partition, qos, state, exit_code, submit_time, start_time, end_time,
     time_limit, node_num, cpus, mem_per_node, gres, nodes, cwd, comment, reason, cpu_time_ms, mem_peak_bytes,
     requeue_count, mail_type, mail_user, array_job_id, array_task_id, _seq) = row
    values = {
        "job_id": int(job_id), "name": name, "user": user, "uid": int(uid), "gid": int(gid), "account": account,
        "partition": partition, "qos": qos, "state": state, "exit_code": int(exit_code),
        "submit_time": float(submit_time), "start_time": float(start_time), "end_time": float(end_time),
        "time_limit": int(time_limit), "node_num": int(node_num), "cpus": float(cpus),
        "mem_per_node": int(mem_per_node), "gres": _json(gres, {}), "nodes": _split_nodes(nodes), "cwd": cwd,
        "comment": comment, "reason": reason, "cpu_time_ms": int(cpu_time_ms), "mem_peak_bytes": int(mem_peak_bytes),
        "requeue_count": int(requeue_count), "mail_type": _json(mail_type, []), "mail_user": mail_user,
        "array_job_id": int(array_job_id), "array_task_id": int(array_task_id), "steps": []}
    rec = HistoryRecord.__new__(HistoryRecord)
    object.__setattr__(rec, "__dict__", values)
    object.__setattr__(rec, "__pydantic_fields_set__", set(_FIELDS))
    object.__setattr__(rec, "__pydantic_extra__", None)
    object.__setattr__(rec, "__pydantic_private__", None)
    return rec


def _step(row: Sequence[Any]) -> StepRecord:
    d = dict(zip(STEP_COLUMNS, row, strict=True))
    return StepRecord(job_id=int(d["job_id"]), step_id=int(d["step_id"]), name=d["name"], state=d["state"],
                      exit_code=int(d["exit_code"]), start_time=float(d["start_time"]),
                      end_time=float(d["end_time"]), nodes=_split_nodes(d["nodes"]), cpus=float(d["cpus"]),
                      cpu_time_ms=int(d["cpu_time_ms"]), mem_peak_bytes=int(d["mem_peak_bytes"]))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Store:
    """One job-history database (SQLite file or PostgreSQL), its schema migrated when opened."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = settings.engine
        self._local = threading.local()
        self._all: list[Any] = []
        self._all_lock = threading.Lock()
        self._closed = False
        if self.engine == "sqlite":
            self._prepare_sqlite_path(settings.target)
        self.migrate()

    # -- connections --------------------------------------------------------
    @staticmethod
    def _prepare_sqlite_path(path: str) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        if mode & 0o077:
            raise StoreError(f"{directory} is open to other users (mode {mode:04o}): the job history needs a "
                             "directory of its own with mode 0700")

    def _fix_modes(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.chmod(self.settings.target + suffix, 0o600)
            except FileNotFoundError:
                pass

    def _connect(self) -> Any:
        if self.engine == "sqlite":
            # the file is created 0600 before SQLite opens it (SQLite gives its -wal/-shm files the
            # database file's mode); never os.umask here: it is process-wide, and connections are
            # opened from several threads at once (a racing restore would leave the process at 077)
            os.close(os.open(self.settings.target, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
            conn = sqlite3.connect(self.settings.target, isolation_level=None, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA busy_timeout=30000")
            _wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-16000")
            self._fix_modes()
            return conn
        import psycopg

        try:
            return psycopg.connect(self.settings.target, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.settings.describe()}: {' '.join(str(exc).split())}") from None

    def conn(self) -> Any:
        """This thread's connection (opened on first use)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._closed:
                raise StoreError("the store is closed")
            c = self._connect()
            self._local.conn = c
            with self._all_lock:
                self._all.append(c)
        return c

    def _drop_conn(self) -> None:
        """Forget this thread's connection after an error (the next call reconnects)."""
        c = getattr(self._local, "conn", None)
        self._local.conn = None
        if c is not None:
            with self._all_lock:
                if c in self._all:
                    self._all.remove(c)
            try:
                c.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def close(self) -> None:
        """Close every connection."""
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        self._local = threading.local()

    def _sql(self, text: str) -> str:
        return text if self.engine == "sqlite" else text.replace("?", "%s")

    def _any(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """``column`` is any of ``values``: one parameter whatever the length (a JSON array or an array)."""
        if self.engine == "sqlite":
            return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(values))
        return f"{column} = ANY(?)", list(values)

    def _any_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is any of ``values`` for a query's WHERE: ``=`` for one value and ``IN (?, ...)`` for a
        few (the planners then walk the ``(column, job_id)`` indexes in job id order), one array parameter
        for many."""
        if len(values) == 1:
            return f"{column} = ?", [values[0]]
        if len(values) <= SMALL_LIST:
            return f"{column} IN ({', '.join('?' * len(values))})", list(values)
        cond, arg = self._any(column, values)
        return cond, [arg]

    @contextlib.contextmanager
    def _errors(self, conn: Any,
                sqlite_errors: tuple[type[BaseException], ...] = (sqlite3.Error,)) -> Iterator[None]:
        """Turn a database error of ``conn`` into a one-line :class:`StoreError` (a broken PostgreSQL
        connection is dropped, so the next call reconnects); anything else passes through."""
        try:
            yield
        except sqlite_errors as exc:
            raise StoreError(f"{self.settings.describe()}: {' '.join(str(exc).split())}") from None
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                if getattr(conn, "closed", False) or getattr(conn, "broken", False):
                    self._drop_conn()
                raise StoreError(f"{self.settings.describe()}: {' '.join(str(exc).split())}") from None
            raise

    def _transaction(self, work: Any) -> Any:
        """Run ``work(cursor)`` in one transaction on this thread's connection; return its result."""
        conn = self.conn()
        with self._errors(conn, (sqlite3.OperationalError, sqlite3.DatabaseError)):
            if self.engine == "sqlite":
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    out = work(cur)
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
                return out
            with conn.transaction(), conn.cursor() as cur:
                return work(cur)

    def _autocommit(self, sql: str, args: Sequence[Any]) -> None:
        """One statement committed on its own (the connection is in autocommit mode)."""
        conn = self.conn()
        with self._errors(conn):
            conn.execute(sql, args)

    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple]:
        conn = self.conn()
        with self._errors(conn):
            if self.engine == "sqlite":
                return conn.execute(sql, args).fetchall()
            with conn.cursor() as cur:
                cur.execute(self._sql(sql), args)
                return cur.fetchall()

    # -- schema ---------------------------------------------------------------
    def version(self) -> int:
        """The schema version of the database (0: empty)."""
        def read(cur: Any) -> int:
            return self._version(cur)
        return self._transaction(read)

    def _version(self, cur: Any) -> int:
        cur.execute(self._sql("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, "
                              "applied_at " + ("REAL" if self.engine == "sqlite" else "DOUBLE PRECISION")
                              + " NOT NULL)"))
        cur.execute("SELECT MAX(version) FROM schema_version")
        row = cur.fetchone()
        return int(row[0] or 0) if row else 0

    def migrate(self) -> list[int]:
        """Apply the steps the database lacks, each in its own transaction; return the versions applied."""
        done: list[int] = []
        for version, what, steps in MIGRATIONS:
            def step(cur: Any, version: int = version, steps: list[str] = steps) -> bool:
                if self.engine == "postgres":
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
                current = self._version(cur)
                if current > LATEST:
                    raise StoreError(f"the database's schema is version {current}, newer than this plugin knows "
                                     f"({LATEST}): upgrade crane-acct-sql")
                if current >= version:
                    return False
                for sql in statements(self.engine, steps):
                    cur.execute(sql)
                cur.execute(self._sql("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"),
                            (version, time.time()))
                return True
            if self._transaction(step):
                log.info("sql accounting: %s: schema migrated to version %d (%s)", self.settings.describe(),
                         version, what)
                done.append(version)
        return done

    # -- writes ---------------------------------------------------------------
    def apply(self, events: Iterable[Any]) -> int:
        """Apply events in one transaction (job rows, steps, node events); return how many were handled."""
        jobs: list[tuple] = []
        steps: list[tuple] = []
        nodes: list[tuple] = []
        for ev in events:
            if isinstance(ev, JobEvent):
                jobs.append(job_row(ev.job, ev.seq))
            elif isinstance(ev, StepEvent):
                steps.append(step_row(ev))
            elif isinstance(ev, NodeEvent):
                nodes.append((ev.id, ev.seq, ev.time, ev.kind, ev.node, ev.reason, ev.actor, ev.cpus, ev.memory))
        if not (jobs or steps or nodes):
            return 0
        if len(jobs) + len(steps) + len(nodes) == 1:  # one statement: its own transaction, one round trip
            sql, row = next((s, r[0]) for s, r in ((_JOB_UPSERT, jobs), (_STEP_UPSERT, steps), (_NODE_INSERT, nodes))
                            if r)
            self._autocommit(self._sql(sql), row)
            return 1

        def work(cur: Any) -> int:
            for sql, rows in ((_JOB_UPSERT, jobs), (_STEP_UPSERT, steps), (_NODE_INSERT, nodes)):
                if rows:
                    cur.executemany(self._sql(sql), rows)
            return len(jobs) + len(steps) + len(nodes)
        return self._transaction(work)

    def bulk_load(self, jobs: Iterable[Sequence[Any]], steps: Iterable[Sequence[Any]] = ()) -> None:
        """Insert rows as they are (new job ids only): ``executemany`` on SQLite, ``COPY`` on PostgreSQL."""
        def work(cur: Any) -> None:
            for table, columns, rows in (("jobs", JOB_COLUMNS, jobs), ("steps", STEP_COLUMNS, steps)):
                if self.engine == "sqlite":
                    cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                    f"({', '.join('?' * len(columns))})", rows)
                else:
                    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
        self._transaction(work)
        if self.engine == "postgres":
            self._transaction(lambda cur: cur.execute("ANALYZE jobs"))
        else:
            self._transaction(lambda cur: cur.execute("ANALYZE"))

    def prune(self, now: float | None = None, max_chunks: int = 0) -> int:
        """Delete jobs (and their steps) that ended more than ``Retention`` days ago; return how many.

        In transactions of :data:`PRUNE_CHUNK` jobs; at most ``max_chunks`` of them (0: until done).
        """
        days = self.settings.retention_days
        if days <= 0:
            return 0
        cutoff = (time.time() if now is None else now) - days * 86400.0
        total = 0
        chunks = 0
        while True:
            chunks += 1
            def chunk(cur: Any) -> int:
                cur.execute(self._sql("SELECT job_id FROM jobs WHERE end_time > 0 AND end_time < ? LIMIT ?"),
                            (cutoff, PRUNE_CHUNK))
                ids = [int(r[0]) for r in cur.fetchall()]
                if ids:
                    for table in ("steps", "jobs"):
                        cond, arg = self._any("job_id", ids)
                        cur.execute(self._sql(f"DELETE FROM {table} WHERE {cond}"), (arg,))
                return len(ids)
            n = self._transaction(chunk)
            total += n
            if n < PRUNE_CHUNK or (max_chunks and chunks >= max_chunks):
                break
        self._transaction(lambda cur: cur.execute(self._sql("DELETE FROM node_events WHERE time < ?"), (cutoff,)))
        if total:
            log.info("sql accounting: pruned %d job(s) ended before %s", total,
                     time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(cutoff)))
        return total

    # -- reads ----------------------------------------------------------------
    def query(self, q: HistoryQuery) -> list[HistoryRecord]:
        """The jobs matching ``q`` (every filter "any of", time ranges inclusive), by job id, with steps if asked."""
        where: list[str] = []
        args: list[Any] = []
        if q.job_ids:  # a job, or an array and its tasks
            ids = list(dict.fromkeys(int(i) for i in q.job_ids))
            cond, more = self._any_of("job_id", ids)
            acond, amore = self._any_of("array_job_id", ids)
            where.append(f"({cond} OR {acond})")
            args += more + amore
        for column, values in (("name", q.names),
                               ("user_name", q.users), ("account", q.accounts),
                               ("partition_name", q.partitions), ("qos", q.qos), ("state", q.states)):
            if values:
                cond, more = self._any_of(column, list(dict.fromkeys(values)))
                where.append(cond)
                args += more
        if q.nodes:
            where.append("(" + " OR ".join(["nodes LIKE ? ESCAPE '\\'"] * len(q.nodes)) + ")")
            args += [f"%,{_like_escape(n)},%" for n in q.nodes]
        for column, (lo, hi) in (("submit_time", q.submit_time), ("start_time", q.start_time),
                                 ("end_time", q.end_time)):
            if hi and not lo:  # a range asks for jobs that have that time: not yet started/ended ones do not match
                where.append(f"{column} > 0")  # (only when open below: a second lower bound misleads the planner)
            if lo:
                where.append(f"{column} >= ?")
                args.append(float(lo))
            if hi:
                where.append(f"{column} <= ?")
                args.append(float(hi))
        sql = _JOB_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY job_id"
        if q.max_lines:
            sql += " LIMIT ?"
            args.append(int(q.max_lines))
        records = [_record(r) for r in self._read(sql, args)]
        if q.include_steps and records:
            by_id = {r.job_id: r for r in records}
            cond, arg = self._any("job_id", list(by_id))
            for row in self._read(f"{_STEP_SELECT} WHERE {cond} ORDER BY job_id, step_id", [arg]):
                st = _step(row)
                by_id[st.job_id].steps.append(st)
        return records

    def node_events(self, since: float = 0.0, nodes: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Node events recorded since ``since`` (oldest first), optionally of some nodes only."""
        where, args = ["time >= ?"], [float(since)]
        if nodes:
            cond, arg = self._any("node", list(nodes))
            where.append(cond)
            args.append(arg)
        rows = self._read(f"SELECT {', '.join(NODE_EVENT_COLUMNS)} FROM node_events WHERE {' AND '.join(where)} "
                          "ORDER BY time, seq", args)
        return [dict(zip(NODE_EVENT_COLUMNS, r, strict=True)) for r in rows]
