"""The sql accounting plugin against real SQLite and PostgreSQL: schema, writes, every filter, retention, privacy."""

from __future__ import annotations

import os
import stat
import threading
import time
from typing import Any

import pytest
from crane_acct_sql import SqlAccounting, SqlEvents, Store, StoreError
from crane_acct_sql.schema import LATEST, MIGRATIONS
from crane_acct_sql.settings import parse_settings
from crane_kernel.events import JobEvent, JobRecord, NodeEvent, StepEvent
from crane_kernel.history import HistoryQuery

DAY = 86400.0
T0 = 1_700_000_000.0


def rec(job_id: int, **kw: Any) -> JobRecord:
    base = {"name": f"j{job_id}", "user": "alice", "uid": 1000, "gid": 1000, "account": "phys",
            "partition": "debug", "qos": "normal", "state": "Completed", "submit_time": T0 + job_id,
            "start_time": T0 + job_id + 10, "end_time": T0 + job_id + 100, "node_num": 1, "cpus": 2.0,
            "nodes": ["cn01"], "cwd": "/home/alice", "time_limit": 3600}
    base.update(kw)
    return JobRecord(job_id=job_id, **base)


def ended(job_id: int, seq: int, **kw: Any) -> JobEvent:
    return JobEvent(kind="job.ended", job_id=job_id, seq=seq, time=T0, job=rec(job_id, **kw))


def plugins(url: str, **settings: Any) -> tuple[SqlEvents, SqlAccounting]:
    w, r = SqlEvents(), SqlAccounting()
    w.crane_plugin_configure(settings={"Url": url, **settings})
    r.crane_plugin_configure(settings={"Url": url, **settings})
    return w, r


def q(r: SqlAccounting, **kw: Any) -> list[int]:
    return [x.job_id for x in r.crane_history_query(query=HistoryQuery(**kw))]


@pytest.fixture
def pair(url: str) -> Any:
    w, r = plugins(url)
    yield w, r
    w.crane_plugin_shutdown()
    r.crane_plugin_shutdown()


def test_migrations_from_empty_and_rerun(url: str) -> None:
    st = parse_settings({"Url": url})
    s = Store(st)
    assert s.version() == LATEST == MIGRATIONS[-1][0]
    assert s.migrate() == []  # nothing left to apply
    s.close()
    s2 = Store(st)  # opening again migrates nothing and keeps the data
    assert s2.migrate() == [] and s2.version() == LATEST
    rows = s2._read("SELECT version FROM schema_version ORDER BY version", [])
    assert [r[0] for r in rows] == [v for v, _w, _s in MIGRATIONS]
    s2.close()


def test_migrations_step_by_step_and_newer_schema_refused(url: str, monkeypatch: Any) -> None:
    from crane_acct_sql import schema, store

    st = parse_settings({"Url": url})
    monkeypatch.setattr(store, "MIGRATIONS", schema.MIGRATIONS[:1])
    s = Store(st)
    assert s.version() == 1
    s.close()
    monkeypatch.setattr(store, "MIGRATIONS", schema.MIGRATIONS)
    s = Store(st)
    assert s.version() == LATEST
    s._transaction(lambda cur: cur.execute(s._sql("INSERT INTO schema_version VALUES (?, ?)"), (LATEST + 1, 0.0)))
    s.close()
    with pytest.raises(StoreError, match="newer than this plugin knows"):
        Store(st)


def test_concurrent_openers_migrate_once(url: str) -> None:
    st = parse_settings({"Url": url})
    errors: list[BaseException] = []
    stores: list[Store] = []

    def opener() -> None:
        try:
            stores.append(Store(st))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = stores[0]._read("SELECT version FROM schema_version", [])
    assert sorted(r[0] for r in rows) == [v for v, _w, _s in MIGRATIONS]
    for s in stores:
        s.close()


def test_idempotent_redelivery_and_out_of_order(pair: Any) -> None:
    w, r = pair
    sub = JobEvent(kind="job.submitted", job_id=1, seq=10, job=rec(1, state="Pending", start_time=0, end_time=0))
    start = JobEvent(kind="job.started", job_id=1, seq=11, job=rec(1, state="Running", end_time=0))
    end = ended(1, 12, exit_code=0, cpu_time_ms=5000)
    for ev in (sub, start, end, end, start, sub):  # redelivered and late events change nothing
        w.crane_event(event=ev)
    (got,) = r.crane_history_query(query=HistoryQuery())
    assert (got.state, got.cpu_time_ms, got.end_time) == ("Completed", 5000, T0 + 101)
    # out of order from the start: the ended event first, then the older ones
    w.crane_event(event=ended(2, 22))
    w.crane_event(event=JobEvent(kind="job.started", job_id=2, seq=21, job=rec(2, state="Running", end_time=0)))
    w.crane_event(event=JobEvent(kind="job.submitted", job_id=2, seq=20, job=rec(2, state="Pending")))
    (j2,) = [x for x in r.crane_history_query(query=HistoryQuery(job_ids=[2]))]
    assert j2.state == "Completed" and j2.end_time == T0 + 102
    # a newer event (requeue, modified) does replace the row
    w.crane_event(event=JobEvent(kind="job.requeued", job_id=2, seq=30, job=rec(2, state="Pending", end_time=0,
                                                                               requeue_count=1)))
    (j2,) = r.crane_history_query(query=HistoryQuery(job_ids=[2]))
    assert (j2.state, j2.requeue_count, j2.end_time) == ("Pending", 1, 0.0)


def test_every_field_round_trips(pair: Any) -> None:
    w, r = pair
    full = rec(7, exit_code=256 + 9, gres={"gpu:a100": 2}, nodes=["cn01", "cn02"], node_num=2, cpus=8.0,
               mem_per_node=4 << 30, comment="c", reason="r", cpu_time_ms=12, mem_peak_bytes=34, requeue_count=2,
               mail_type=["END", "FAIL"], mail_user="a@b", gid=7, uid=70, qos="high", time_limit=60)
    w.crane_event(event=JobEvent(kind="job.ended", job_id=7, seq=1, job=full))
    (got,) = r.crane_history_query(query=HistoryQuery())
    assert JobRecord.model_validate(got.model_dump(exclude={"steps"})) == full


def test_every_filter(pair: Any) -> None:
    w, r = pair
    w.apply_many([
        ended(1, 1, user="alice", account="phys", partition="debug", qos="normal", state="Completed",
              nodes=["cn01"], name="a"),
        ended(2, 2, user="bob", account="chem", partition="gpu", qos="high", state="Failed",
              nodes=["cn02", "cn_3"], name="b"),
        ended(3, 3, user="carol", account="phys", partition="debug", qos="normal", state="Cancelled",
              nodes=["cn10"], name="c", submit_time=T0 + 5 * DAY, start_time=T0 + 6 * DAY, end_time=T0 + 7 * DAY),
        JobEvent(kind="job.started", job_id=4, seq=4, job=rec(4, state="Running", end_time=0, user="dave",
                                                              nodes=["cn04"])),
        JobEvent(kind="job.submitted", job_id=5, seq=5, job=rec(5, state="Pending", start_time=0, end_time=0,
                                                                nodes=[])),
    ])
    assert q(r) == [1, 2, 3, 4, 5]
    assert q(r, job_ids=[3, 1, 99]) == [1, 3]
    assert q(r, names=["b", "c"]) == [2, 3]
    assert q(r, users=["alice", "carol"]) == [1, 3, 5]
    assert q(r, accounts=["chem"]) == [2]
    assert q(r, partitions=["gpu"]) == [2]
    assert q(r, qos=["normal"]) == [1, 3, 4, 5]
    assert q(r, states=["Failed", "Cancelled"]) == [2, 3]
    assert q(r, nodes=["cn01"]) == [1]
    assert q(r, nodes=["cn1"]) == []            # whole names only
    assert q(r, nodes=["cn_3", "cn10"]) == [2, 3]
    assert q(r, nodes=["cn%"]) == []            # LIKE's wildcards are escaped
    assert q(r, accounts=["phys"], users=["carol"]) == [3]  # filters combine with AND
    # time ranges: inclusive, 0 = open; jobs without that time never match a range
    assert q(r, submit_time=(T0 + 5 * DAY, 0)) == [3]
    assert q(r, submit_time=(0, T0 + 2)) == [1, 2]
    assert q(r, start_time=(T0 + 11, T0 + 12)) == [1, 2]
    assert q(r, start_time=(0, T0 + 100)) == [1, 2, 4]      # 5 never started
    assert q(r, end_time=(T0 + 101, T0 + 102)) == [1, 2]
    assert q(r, end_time=(1, 0)) == [1, 2, 3]                # ended at all
    assert q(r, end_time=(T0 + 7 * DAY, T0 + 7 * DAY)) == [3]
    assert q(r, max_lines=2) == [1, 2]
    assert q(r, max_lines=2, users=["alice", "carol"]) == [1, 3]
    many = list(range(1, 5000))
    assert q(r, job_ids=many) == [1, 2, 3, 4, 5]            # a long list is one parameter


def test_steps(pair: Any) -> None:
    w, r = pair
    w.crane_event(event=ended(1, 5))
    w.crane_event(event=StepEvent(kind="step.started", job_id=1, step_id=0, seq=2, state="Running",
                                  nodes=["cn01"], start_time=T0 + 11))
    w.crane_event(event=StepEvent(kind="step.ended", job_id=1, step_id=0, seq=4, state="Completed",
                                  nodes=["cn01"], start_time=T0 + 11, end_time=T0 + 99, cpu_time_ms=7,
                                  mem_peak_bytes=8))
    w.crane_event(event=StepEvent(kind="step.started", job_id=1, step_id=0, seq=3, state="Running"))  # late
    w.crane_event(event=StepEvent(kind="step.ended", job_id=1, step_id=1, seq=6, state="Failed", exit_code=1))
    (no_steps,) = r.crane_history_query(query=HistoryQuery())
    assert no_steps.steps == []
    (job,) = r.crane_history_query(query=HistoryQuery(include_steps=True))
    assert [(s.step_id, s.name, s.state, s.exit_code) for s in job.steps] == \
        [(0, "batch", "Completed", 0), (1, "step1", "Failed", 1)]
    s0 = job.steps[0]
    assert (s0.nodes, s0.start_time, s0.end_time, s0.cpu_time_ms, s0.mem_peak_bytes) == \
        (["cn01"], T0 + 11, T0 + 99, 7, 8)


def test_node_events_are_kept_once(pair: Any) -> None:
    w, _r = pair
    ev = NodeEvent(kind="node.down", node="cn01", seq=3, time=T0, reason="no heartbeat")
    w.crane_event(event=ev)
    w.crane_event(event=ev)  # redelivered
    w.crane_event(event=NodeEvent(kind="node.resumed", node="cn01", seq=4, time=T0 + 5, actor="root"))
    got = w.store.node_events()
    assert [(e["kind"], e["reason"], e["actor"]) for e in got] == [("node.down", "no heartbeat", ""),
                                                                   ("node.resumed", "", "root")]


def test_retention_prunes_old_ended_jobs(url: str) -> None:
    w, r = plugins(url, Retention=30)
    now = time.time()
    w.apply_many([
        ended(1, 1, end_time=now - 40 * DAY, start_time=now - 41 * DAY, submit_time=now - 41 * DAY),
        ended(2, 2, end_time=now - 10 * DAY, start_time=now - 11 * DAY, submit_time=now - 11 * DAY),
        JobEvent(kind="job.started", job_id=3, seq=3, job=rec(3, state="Running", end_time=0,
                                                              submit_time=now - 90 * DAY)),
        StepEvent(kind="step.ended", job_id=1, step_id=0, seq=4, state="Completed"),
        NodeEvent(kind="node.down", node="cn01", seq=5, time=now - 60 * DAY),
    ])
    assert q(r) == [1, 2, 3]
    w.crane_event(event=ended(4, 6, end_time=now, start_time=now - 1, submit_time=now - 2))  # prunes (first event)
    assert q(r) == [2, 3, 4]  # the running job stays whatever its age
    assert w.store._read("SELECT COUNT(*) FROM steps", [])[0][0] == 0
    assert w.store.node_events() == []
    w.apply_many([ended(5, 7, end_time=now - 400 * DAY)])
    w.crane_event(event=ended(6, 8, end_time=now))  # not yet: PruneInterval has not passed
    assert 5 in q(r)
    assert w.store.prune(now) == 1 and 5 not in q(r)
    keep, rk = plugins(url, Retention=0)  # 0: forever
    keep.apply_many([ended(9, 9, end_time=1.0, start_time=0.5, submit_time=0.1)])
    assert keep.store.prune(now) == 0 and 9 in q(rk)
    for p in (w, r, keep, rk):
        p.crane_plugin_shutdown()


def test_sqlite_file_privacy(tmp_path: Any) -> None:
    base = tmp_path / "base"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    w = SqlEvents()
    w.crane_plugin_configure(settings={"CraneBaseDir": str(base)})  # default: <CraneBaseDir>/acct/acct.db
    w.crane_event(event=ended(1, 1))
    path = base / "acct" / "acct.db"
    assert stat.S_IMODE(os.stat(base / "acct").st_mode) == 0o700
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode) == 0o600, suffix
    w.crane_plugin_shutdown()
    os.chmod(path, 0o644)  # fixed at the next open
    w.crane_plugin_configure(settings={"CraneBaseDir": str(base)})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    w.crane_plugin_shutdown()
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    with pytest.raises(StoreError, match="mode 0700"):
        SqlEvents().crane_plugin_configure(settings={"Url": f"sqlite://{shared}/acct.db"})
    assert not (shared / "acct.db").exists()


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        parse_settings({"Url": "mysql://x"})
    with pytest.raises(ValueError, match="Retention"):
        parse_settings({"Url": "sqlite:///x/y.db", "Retention": -1})
    with pytest.raises(ValueError, match="Url is not set"):
        parse_settings({})
    assert parse_settings({"Url": "sqlite://rel/a.db", "CraneBaseDir": "/b"}).target == "/b/rel/a.db"
    assert parse_settings({"Url": "sqlite:///abs/a.db"}).target == "/abs/a.db"
    pg = parse_settings({"Url": "postgresql://u:secret@h:5/db?options=-csearch_path%3Ds"})
    assert pg.engine == "postgres" and "secret" not in pg.describe()


def test_unreachable_postgres_is_one_line() -> None:
    s = SqlAccounting()
    with pytest.raises(StoreError, match="cannot connect") as info:
        s.crane_plugin_configure(settings={"Url": "postgresql://nobody@127.0.0.1:1/none"})
    assert "\n" not in str(info.value)


def test_loaded_through_the_slots(tmp_path: Any) -> None:
    from crane_kernel import plugins as kp

    d = tmp_path / "a"
    d.mkdir(mode=0o700)
    sel = {"Events": ["sql"], "Accounting": "sql", "Settings": {"sql": {"Url": f"sqlite://{d}/acct.db"}}}
    p = kp.load_slots(sel, slots=["events", "accounting"])
    try:
        p.hook.crane_event(event=ended(1, 1))
        got = p.hook.crane_history_query(query=HistoryQuery())
        assert [x.job_id for x in got] == [1]
    finally:
        p.shutdown()


def test_a_long_prune_goes_on_over_several_events(url: str, monkeypatch: Any) -> None:
    from crane_acct_sql import plugin, store

    monkeypatch.setattr(store, "PRUNE_CHUNK", 3)
    monkeypatch.setattr(plugin, "PRUNE_CHUNK", 3)
    monkeypatch.setattr(plugin, "PRUNE_PASS", 2)
    w, r = plugins(url, Retention=1)
    now = time.time()
    w.apply_many([ended(i, i, end_time=now - 10 * DAY, start_time=now - 11 * DAY, submit_time=now - 11 * DAY)
                  for i in range(1, 15)])
    w.crane_event(event=ended(100, 100, end_time=now))
    assert len(q(r)) == 15 - 6  # one pass: two chunks of three
    w.crane_event(event=ended(101, 101, end_time=now))
    w.crane_event(event=ended(102, 102, end_time=now))
    assert q(r) == [100, 101, 102]
    for p in (w, r):
        p.crane_plugin_shutdown()


def test_a_failing_prune_does_not_fail_the_event(url: str, monkeypatch: Any) -> None:
    w, r = plugins(url, Retention=1)

    def broken(*_a: Any, **_k: Any) -> int:
        raise StoreError("disk full")

    monkeypatch.setattr(w.store, "prune", broken)
    w.crane_event(event=ended(1, 1))
    assert q(r) == [1]
    for p in (w, r):
        p.crane_plugin_shutdown()
