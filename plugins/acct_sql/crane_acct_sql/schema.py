"""The store's schema as ordered, versioned migrations (one logical schema for SQLite and PostgreSQL).

``schema_version(version, applied_at)`` has one row per applied step. Each step runs in its own
transaction, together with its ``schema_version`` row, so a database is always at a whole step;
a step is applied once (cplugind and cranectld may open the store at the same time: SQLite's
``BEGIN IMMEDIATE`` and PostgreSQL's transaction-scoped advisory lock serialise them, and the
version is read again inside the transaction). Never edit a released step: append a new one.

Types are written once: ``{pk}`` is the job id key (``INTEGER PRIMARY KEY``, SQLite's rowid, or
``BIGINT PRIMARY KEY``), ``{real}`` a double; ``BIGINT`` and ``TEXT`` mean the same on both.
Columns are the fields of :class:`crane_kernel.events.JobRecord` (``user`` is ``user_name`` and
``partition`` ``partition_name``, words SQL reserves), plus ``last_seq``, the ``seq`` of the
last event applied to the row. ``nodes`` is ``,cn01,cn02,`` (a node filter is one ``LIKE``),
``gres`` and ``mail_type`` are JSON.
"""

from __future__ import annotations

JOB_COLUMNS = ("job_id", "name", "user_name", "uid", "gid", "account", "partition_name", "qos", "state",
               "exit_code", "submit_time", "start_time", "end_time", "time_limit", "node_num", "cpus",
               "mem_per_node", "gres", "nodes", "cwd", "comment", "reason", "cpu_time_ms", "mem_peak_bytes",
               "requeue_count", "mail_type", "mail_user", "array_job_id", "array_task_id", "last_seq")
"""The ``jobs`` columns in the order :meth:`Store.bulk_load` and the upsert take them."""

STEP_COLUMNS = ("job_id", "step_id", "name", "state", "exit_code", "start_time", "end_time", "nodes", "cpus",
                "cpu_time_ms", "mem_peak_bytes", "last_seq")

NODE_EVENT_COLUMNS = ("event_id", "seq", "time", "kind", "node", "reason", "actor", "cpus", "memory")

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "jobs and steps, with the indexes of cacct's filters", [
        """CREATE TABLE jobs (
            job_id {pk},
            name TEXT NOT NULL DEFAULT '',
            user_name TEXT NOT NULL DEFAULT '',
            uid BIGINT NOT NULL DEFAULT 0,
            gid BIGINT NOT NULL DEFAULT 0,
            account TEXT NOT NULL DEFAULT '',
            partition_name TEXT NOT NULL DEFAULT '',
            qos TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'Pending',
            exit_code BIGINT NOT NULL DEFAULT 0,
            submit_time {real} NOT NULL DEFAULT 0,
            start_time {real} NOT NULL DEFAULT 0,
            end_time {real} NOT NULL DEFAULT 0,
            time_limit BIGINT NOT NULL DEFAULT 0,
            node_num BIGINT NOT NULL DEFAULT 0,
            cpus {real} NOT NULL DEFAULT 0,
            mem_per_node BIGINT NOT NULL DEFAULT 0,
            gres TEXT NOT NULL DEFAULT '{{}}',
            nodes TEXT NOT NULL DEFAULT '',
            cwd TEXT NOT NULL DEFAULT '',
            comment TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '',
            cpu_time_ms BIGINT NOT NULL DEFAULT 0,
            mem_peak_bytes BIGINT NOT NULL DEFAULT 0,
            requeue_count BIGINT NOT NULL DEFAULT 0,
            mail_type TEXT NOT NULL DEFAULT '[]',
            mail_user TEXT NOT NULL DEFAULT '',
            last_seq BIGINT NOT NULL DEFAULT 0)""",
        "CREATE INDEX jobs_end_time ON jobs (end_time)",
        "CREATE INDEX jobs_start_time ON jobs (start_time)",
        "CREATE INDEX jobs_submit_time ON jobs (submit_time)",
        "CREATE INDEX jobs_user ON jobs (user_name, job_id)",
        "CREATE INDEX jobs_account ON jobs (account, job_id)",
        """CREATE TABLE steps (
            job_id BIGINT NOT NULL,
            step_id BIGINT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT '',
            exit_code BIGINT NOT NULL DEFAULT 0,
            start_time {real} NOT NULL DEFAULT 0,
            end_time {real} NOT NULL DEFAULT 0,
            nodes TEXT NOT NULL DEFAULT '',
            cpus {real} NOT NULL DEFAULT 0,
            cpu_time_ms BIGINT NOT NULL DEFAULT 0,
            mem_peak_bytes BIGINT NOT NULL DEFAULT 0,
            last_seq BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (job_id, step_id))""",
    ]),
    (2, "node events (for cacctmgr show event)", [
        """CREATE TABLE node_events (
            event_id TEXT PRIMARY KEY,
            seq BIGINT NOT NULL DEFAULT 0,
            time {real} NOT NULL DEFAULT 0,
            kind TEXT NOT NULL,
            node TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            actor TEXT NOT NULL DEFAULT '',
            cpus {real} NOT NULL DEFAULT 0,
            memory BIGINT NOT NULL DEFAULT 0)""",
        "CREATE INDEX node_events_time ON node_events (time)",
        "CREATE INDEX node_events_node ON node_events (node, time)",
    ]),
    (3, "array tasks: their array's id and index (cacct -j <array id> finds them)", [
        "ALTER TABLE jobs ADD COLUMN array_job_id BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN array_task_id BIGINT NOT NULL DEFAULT 0",
        "CREATE INDEX jobs_array ON jobs (array_job_id, job_id)",
    ]),
]
"""``(version, what, statements)`` in order; the last version is :data:`LATEST`."""

LATEST = MIGRATIONS[-1][0]

TYPES = {"sqlite": {"pk": "INTEGER PRIMARY KEY", "real": "REAL"},
         "postgres": {"pk": "BIGINT PRIMARY KEY", "real": "DOUBLE PRECISION"}}


def statements(engine: str, steps: list[str]) -> list[str]:
    """The statements of one step for ``engine``."""
    return [s.format(**TYPES[engine]) for s in steps]
