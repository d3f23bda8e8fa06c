"""Engine of ``crane bench acct``: the job history (``sql`` accounting plugin) with a year of records.

For each engine: bulk-load ``--records`` ended jobs (the store's fast path: ``executemany`` on
SQLite, ``COPY`` on PostgreSQL), spread over 100 users, 10 accounts and one year; then time what
cacct asks through the controller's path — the ``crane_history_query`` hook of the plugin loaded
by :func:`crane_kernel.plugins.load_slots`, with ``max_lines`` 1000 (cacct's default) — as
``cacct -S <one day>`` (a start-time range of one day) and ``cacct -u <user>``, each the median
of ``--runs`` runs (a different day or user each run), also with the conversion to the reply's
``JobInfo`` messages; and the sustained write rate of the events half: ``job.ended`` events
through ``crane_event`` one at a time, each committed before the call returns (as cplugind
delivers them), reported in events per second; and the controller's fair-share read at start-up
(:func:`crane_kernel.ctld.history.rebuild_usage`: the last 30 days, a day at a time).

Usage::

    crane bench acct --records 1000000 --engine both [--json]
    crane bench acct --records 100000 --engine postgres --pg-url postgresql://postgres@127.0.0.1:5432/test

PostgreSQL runs in a schema of its own (``crane_bench_<random>``), dropped at the end; SQLite in a
temporary directory (or ``--dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

__all__ = ["main", "run"]

YEAR = 365 * 86400.0
USERS = 100
ACCOUNTS = 10
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
STATES = ("Completed",) * 8 + ("Failed", "Cancelled", "ExceedTimeLimit", "OutOfMemory")


def rows(n: int, end: float, seed: int = 1) -> Iterator[tuple]:
    """``n`` ended jobs' ``jobs`` rows, ids 1..n in submit order over the year before ``end``."""
    from crane_acct_sql.schema import JOB_COLUMNS

    rng = random.Random(seed)
    t0 = end - YEAR
    step = YEAR / max(1, n)
    assert JOB_COLUMNS[0] == "job_id" and JOB_COLUMNS[-1] == "last_seq"
    for i in range(1, n + 1):
        u = rng.randrange(USERS)
        submit = t0 + (i - 1) * step
        start = submit + rng.uniform(0, 3600)
        stop = start + rng.uniform(60, 86400)
        nn = rng.choice((1, 1, 1, 2, 4))
        node = rng.randrange(1000)
        nodes = "," + ",".join(f"cn{(node + k) % 1000:04d}" for k in range(nn)) + ","
        cpus = float(nn * rng.choice((1, 2, 4, 8, 16, 32)))
        yield (i, f"job{i % 997}", f"user{u:03d}", 10_000 + u, 10_000 + u, f"acct{u % ACCOUNTS}",
               ("cpu", "cpu", "gpu", "debug")[i % 4], "normal", rng.choice(STATES), 0, submit, start, stop, 86400,
               nn, cpus, 4 << 30, "{}", nodes, f"/home/user{u:03d}", "", "", int(cpus * (stop - start) * 900),
               1 << 30, 0, "[]", "", 0, 0, i)


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e3, 2)


def _load(url: str) -> tuple[Any, Any, Any]:
    from crane_kernel.plugins import load_slots

    plugins = load_slots({"Events": ["sql"], "Accounting": "sql", "Settings": {"sql": {"Url": url}}},
                         slots=["events", "accounting"])
    writer = plugins.plugins("events")[0]
    return plugins, writer, plugins.hook.crane_history_query


def run_engine(engine: str, records: int, runs: int, events: int, workdir: str, pg_url: str) -> dict[str, Any]:
    """Load, query and write one engine's store; return its figures."""
    from crane_kernel.ctld.history import record_info
    from crane_kernel.events import JobEvent, JobRecord
    from crane_kernel.history import HistoryQuery

    schema = ""
    if engine == "sqlite":
        d = os.path.join(workdir, "acct")
        os.makedirs(d, mode=0o700, exist_ok=True)
        path = os.path.join(d, f"bench-{uuid.uuid4().hex[:8]}.db")
        url = f"sqlite://{path}"
    else:
        import psycopg

        schema = f"crane_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
    end = time.time() - 86400.0
    out: dict[str, Any] = {"engine": engine, "records": records}
    plugins, writer, query = _load(url)
    try:
        t = time.perf_counter()
        writer.store.bulk_load(rows(records, end))
        load_s = time.perf_counter() - t
        out["load_s"] = round(load_s, 1)
        out["load_records_per_s"] = round(records / load_s) if load_s else 0
        rng = random.Random(7)

        def timed(make: Any) -> dict[str, Any]:
            hook: list[float] = []
            reply: list[float] = []
            counts: list[int] = []
            query(query=make())  # warm-up
            for _ in range(runs):
                q = make()
                t = time.perf_counter()
                recs = query(query=q)
                t1 = time.perf_counter()
                for r in recs:
                    record_info(r, end, False, ())
                t2 = time.perf_counter()
                hook.append(t1 - t)
                reply.append(t2 - t)
                counts.append(len(recs))
            return {"hook_ms": _median_ms(hook), "with_reply_ms": _median_ms(reply),
                    "rows": int(statistics.median(counts))}

        def day() -> Any:
            lo = end - YEAR + rng.uniform(7, 350) * 86400.0
            return HistoryQuery(start_time=(lo, lo + 86400.0), max_lines=1000)

        def user() -> Any:
            return HistoryQuery(users=[f"user{rng.randrange(USERS):03d}"], max_lines=1000)

        out["cacct_S_one_day"] = timed(day)
        out["cacct_u_user"] = timed(user)
        from crane_kernel.ctld.history import rebuild_usage

        t = time.perf_counter()
        fed = rebuild_usage(query, lambda **_kw: None, set(), end + 1.0)  # the controller's start-up read
        out["fairshare_rebuild"] = {"jobs": fed, "s": round(time.perf_counter() - t, 2)}
        base = records + 1
        evs = [JobEvent(kind="job.ended", job_id=base + i, seq=base + i, time=end, job=JobRecord(
            job_id=base + i, name="w", user=f"user{i % USERS:03d}", uid=10_000 + i % USERS, account="acct0",
            partition="cpu", state="Completed", submit_time=end - 100, start_time=end - 50, end_time=end,
            node_num=1, cpus=4.0, nodes=["cn0001"], cpu_time_ms=1000)) for i in range(events)]
        lat: list[float] = []
        hook = plugins.hook.crane_event
        t = time.perf_counter()
        for ev in evs:
            t1 = time.perf_counter()
            hook(event=ev)
            lat.append(time.perf_counter() - t1)
        total = time.perf_counter() - t
        lat.sort()
        out["write"] = {"events": events, "events_per_s": round(events / total) if total else 0,
                        "median_ms": round(lat[len(lat) // 2] * 1e3, 3),
                        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, 3)}
        if engine == "sqlite":
            out["size_mb"] = round(sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
                                   / 2**20)
        else:
            out["size_mb"] = round(writer.store._read(
                "SELECT pg_total_relation_size('jobs') + pg_total_relation_size('steps')", [])[0][0] / 2**20)
    finally:
        plugins.shutdown()
        if engine == "sqlite":
            for s in ("", "-wal", "-shm"):
                if os.path.exists(path + s):
                    os.unlink(path + s)
        elif schema:
            import psycopg

            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return out


def run(records: int, engines: list[str], runs: int = 7, events: int = 5000, workdir: str | None = None,
        pg_url: str = DEFAULT_PG) -> dict[str, Any]:
    """Run the benchmark on each engine; return the figures and the machine."""
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                          "platform": platform.platform()}, "runs": runs, "engines": []}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        os.chmod(tmp, 0o700)
        for engine in engines:
            result["engines"].append(run_engine(engine, records, runs, events, tmp, pg_url))
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: ``crane bench acct --records N --engine sqlite|postgres|both [--json]``."""
    ap = argparse.ArgumentParser(prog="crane bench acct", description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--runs", type=int, default=7, help="runs per query (the median is reported)")
    ap.add_argument("--events", type=int, default=5000, help="job.ended events for the write rate")
    ap.add_argument("--pg-url", default=os.environ.get("CRANE_BENCH_PG", DEFAULT_PG))
    ap.add_argument("--dir", default=None, help="where the SQLite file goes (default: a temporary directory)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.records < 1 or args.runs < 1 or args.events < 1:
        ap.error("--records, --runs and --events must be positive")
    try:
        import crane_acct_sql  # noqa: F401
    except ImportError:
        sys.stderr.write("crane bench acct: the sql accounting plugin (crane-acct-sql) is not installed\n")
        return 2
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    r = run(args.records, engines, args.runs, args.events, args.dir, args.pg_url)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    m = r["machine"]
    print(f"job history, {args.records:,} records over a year, 100 users; median of {r['runs']} runs; "
          f"{m['cpus']} CPUs, Python {m['python']}")
    for e in r["engines"]:
        d, u, w = e["cacct_S_one_day"], e["cacct_u_user"], e["write"]
        print(f"  {e['engine']:<8} load {e['load_s']:7.1f} s ({e['load_records_per_s']:,}/s, {e['size_mb']} MB)  "
              f"cacct -S <day> {d['hook_ms']:7.2f} ms ({d['rows']} rows; {d['with_reply_ms']:.2f} ms with JobInfo)  "
              f"cacct -u <user> {u['hook_ms']:7.2f} ms ({u['rows']} rows; {u['with_reply_ms']:.2f} ms)  "
              f"writes {w['events_per_s']:,} job.ended/s (median {w['median_ms']} ms, p99 {w['p99_ms']} ms)  "
              f"fair-share rebuild {e['fairshare_rebuild']['jobs']:,} jobs in {e['fairshare_rebuild']['s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
