"""cacct's path through the real gRPC service over TLS: ``include_history`` with the ``sql`` accounting plugin.

The controller (the ``ctld`` harness) loads ``Plugins.Accounting: sql`` as cranectld does, on its
default store (``<CraneBaseDir>/acct/acct.db``); the store is written the way cplugind will, by
the plugin's events half (``crane_event`` with typed events). Callers present real tokens.
"""

from __future__ import annotations

import pwd
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from crane_acct_sql import SqlEvents
from crane_common.proto import crane_pb2 as pb
from crane_common.states import JobState
from crane_kernel.ctld import history as hist
from crane_kernel.events import JobEvent, JobRecord, StepEvent
from crane_kernel.history import HistoryQuery
from tlsapi import TlsApi

ALICE, BOB, CAROL, OPER = (pwd.getpwnam(n) for n in ("daemon", "bin", "sys", "sync"))
NOW = 1_000_000.0  # the harness's clock
BASE = {"Partitions": [{"name": "debug", "nodes": "ALL"}], "Auth": {"Admins": ["root"]},
        "CraneCtld": {"Tls": {"Cert": "tls/cranectld.crt", "Key": "tls/cranectld.key"}},
        "Plugins": {"Accounting": "sql"}}


class Api(TlsApi):
    """The service on a local TLS port; :meth:`md` gives a caller's metadata."""

    def __init__(self, harness: Any, url: str | None = None) -> None:
        super().__init__(harness)
        self.writer = SqlEvents()  # cplugind's half, on the same default store
        self.writer.crane_plugin_configure(settings={"Url": url} if url else {"CraneBaseDir": harness.cfg.base_dir})
        self.seq = 0

    def ended(self, job_id: int, who: pwd.struct_passwd, account: str, **kw: Any) -> None:
        """The history gets an ended job (as cplugind would write it)."""
        self.seq += 1
        base = {"name": f"old{job_id}", "user": who.pw_name, "uid": who.pw_uid, "gid": who.pw_gid,
                "account": account, "partition": "debug", "qos": "normal", "state": "Completed",
                "submit_time": NOW - 7200 + job_id, "start_time": NOW - 3600 + job_id, "end_time": NOW - 60 + job_id,
                "node_num": 1, "cpus": 2.0, "nodes": ["cn01"], "cwd": f"/home/{who.pw_name}", "comment": "secret",
                "cpu_time_ms": 1000, "mem_peak_bytes": 2048}
        base.update(kw)
        self.writer.crane_event(event=JobEvent(kind="job.ended", job_id=job_id, seq=self.seq,
                                               job=JobRecord(job_id=job_id, **base)))

    def query(self, who: pwd.struct_passwd | None, level: str = "none", **kw: Any) -> Any:
        kw.setdefault("include_history", True)
        return self.stub.QueryJobsInfo(pb.QueryJobsInfoRequest(**kw), metadata=self.md(who, level))

    def ids(self, who: pwd.struct_passwd | None, level: str = "none", **kw: Any) -> list[int]:
        r = self.query(who, level, **kw)
        assert r.ok, r.reason
        return [j.job_id for j in r.jobs]

    def close(self) -> None:
        self.writer.crane_plugin_shutdown()
        super().close()


@pytest.fixture
def make_api(ctld: Any) -> Any:
    made: list[Api] = []

    def make(extra: dict[str, Any] | None = None, url: str | None = None) -> Api:
        over = {**BASE, **(extra or {})}
        if url:
            over["Plugins"] = {**over["Plugins"], "Settings": {"sql": {"Url": url}}}
        h = ctld(over)
        h.register_all()
        api = Api(h, url)
        made.append(api)
        setup(api)
        return api

    yield make
    for api in made:
        api.close()


def setup(api: Api) -> None:
    """Accounts phys > hep, chem; alice in hep, bob in chem, carol coordinates phys; a job of alice's runs (1),
    one is pending (2); the history has alice's 100 and 101, bob's 102, carol's 103, and a stale copy of job 1."""
    s, md = api.stub, api.md(None)
    assert s.AddQos(pb.AddQosRequest(qos=pb.QosInfo(name="normal", priority=10)), metadata=md).ok
    for name, parent in (("phys", ""), ("hep", "phys"), ("chem", "")):
        assert s.AddAccount(pb.AddAccountRequest(account=pb.AccountInfo(
            name=name, parent_account=parent, allowed_qos_list=["normal"], default_qos="normal")), metadata=md).ok
    assert s.AddUser(pb.AddUserRequest(name=ALICE.pw_name, account="hep"), metadata=md).ok
    assert s.AddUser(pb.AddUserRequest(name=BOB.pw_name, account="chem"), metadata=md).ok
    assert s.AddUser(pb.AddUserRequest(name=CAROL.pw_name, account="phys", coordinator=True), metadata=md).ok
    spec = pb.JobSpec(script="#!/bin/bash\ntrue\n", cwd="/tmp", cpus_per_task=4, account="hep")
    assert s.SubmitBatchJob(pb.SubmitBatchJobRequest(job=spec), metadata=api.md(ALICE)).job_id == 1
    api.h.ctl.schedule_cycle()  # job 1 starts at NOW
    spec.hold = True
    assert s.SubmitBatchJob(pb.SubmitBatchJobRequest(job=spec), metadata=api.md(ALICE)).job_id == 2
    api.h.ctl.schedule_cycle()
    assert api.h.ctl.jobs[1].state != JobState.Pending and api.h.ctl.jobs[2].state == JobState.Pending
    api.ended(1, ALICE, "hep", name="stale", state="Completed")  # the store is behind/ahead: the controller wins
    api.ended(100, ALICE, "hep")
    api.ended(101, ALICE, "hep", state="Failed", exit_code=1)
    api.ended(102, BOB, "chem")
    api.ended(103, CAROL, "phys", state="Cancelled")


def test_include_history_merges_the_controllers_jobs_and_the_store(make_api: Any) -> None:
    api = make_api()
    ctl = api.h.ctl
    assert api.ids(None, include_history=False) == [1, 2]
    r = api.query(None)
    assert r.ok and r.reason == ""
    assert [j.job_id for j in r.jobs] == [1, 2, 100, 101, 102, 103]
    one = r.jobs[0]
    assert one.name != "stale" and one.status == int(ctl.jobs[1].state)  # the controller's copy wins
    old = {j.job_id: j for j in r.jobs}
    assert (old[101].status, old[101].exit_code, old[101].user, old[101].cwd) == (pb.Failed, 1, ALICE.pw_name,
                                                                                 f"/home/{ALICE.pw_name}")
    assert (old[100].craned_list, old[100].elapsed, old[100].usage_cpu_ms) == ("cn01", 3540, 1000)
    # every filter reaches both sides
    assert api.ids(None, users=[BOB.pw_name]) == [102]
    assert api.ids(None, accounts=["hep"]) == [1, 2, 100, 101]
    assert api.ids(None, states=[pb.Failed, pb.Cancelled]) == [101, 103]
    assert api.ids(None, job_ids=[1, 103, 999]) == [1, 103]
    assert api.ids(None, nodes=[ctl.jobs[1].head_node]) == [1] + ([100, 101, 102, 103]
                                                                 if ctl.jobs[1].head_node == "cn01" else [])
    assert api.ids(None, nodes=["cn01", "cn02", "cn03", "cn04"]) == [1, 100, 101, 102, 103]
    assert api.ids(None, max_lines=3) == [1, 2, 100]
    # time ranges, inclusive, on the controller's jobs too: job 1 started at NOW, 2 has not
    started = pb.TimeRange(lower=int(NOW), upper=int(NOW))
    assert api.ids(None, filter_start_time=started) == [1]
    assert api.ids(None, filter_end_time=pb.TimeRange(lower=int(NOW - 60 + 101), upper=0)) == [101, 102, 103]
    assert api.ids(None, filter_submit_time=pb.TimeRange(lower=0, upper=int(NOW - 7200 + 100))) == [100]
    assert api.ids(None, include_history=False, filter_start_time=started) == [1]


def test_steps(make_api: Any) -> None:
    api = make_api()
    api.writer.crane_event(event=StepEvent(kind="step.ended", job_id=102, step_id=0, seq=100, state="Completed",
                                           nodes=["cn02"], start_time=NOW - 3000, end_time=NOW - 100,
                                           cpu_time_ms=900, mem_peak_bytes=10))
    r = api.query(None, include_steps=True, job_ids=[1, 2, 100, 102])
    steps = {j.job_id: list(j.step_info_list) for j in r.jobs}
    (s1,) = steps[1]
    assert (s1.step_id, s1.name, s1.status, s1.craned_list, s1.alloc_cpus) == (0, "batch", pb.Running,
                                                                               api.h.ctl.jobs[1].head_node, 4.0)
    assert steps[2] == []  # pending (held): no step yet
    (s100,) = steps[100]  # no step rows in the store: the batch step is the job's own
    assert (s100.name, s100.status, s100.craned_list, s100.usage_cpu_ms, s100.alloc_cpus) == \
        ("batch", pb.Completed, "cn01", 1000, 2.0)
    (s102,) = steps[102]
    assert (s102.name, s102.craned_list, s102.usage_cpu_ms, s102.end_time) == ("batch", "cn02", 900, int(NOW - 100))
    assert all(not j.step_info_list for j in api.query(None, job_ids=[100]).jobs)


def test_the_history_is_private_even_without_private_data(make_api: Any) -> None:
    """cacct as CraneSched's: a plain user's history query returns only her own jobs (and those of accounts
    she coordinates), whatever PrivateData says; an operator sees everyone's."""
    api = make_api({"CraneCtld": {**BASE["CraneCtld"], "PrivateData": ["usage"]}})
    jobs = {j.job_id: j for j in api.query(BOB).jobs}
    assert jobs and all(j.user == BOB.pw_name for j in jobs.values()) and 100 not in jobs
    assert (jobs[102].cwd, jobs[102].comment, jobs[102].usage_cpu_ms) == (f"/home/{BOB.pw_name}", "secret", 1000)


def test_private_data_narrows_the_store_query(make_api: Any) -> None:
    api = make_api({"CraneCtld": {**BASE["CraneCtld"], "PrivateData": ["jobs"]}})
    ctl = api.h.ctl
    asked: list[HistoryQuery] = []
    returned: list[Any] = []
    real = ctl.history

    def spy(query: HistoryQuery) -> Any:
        asked.append(query)
        rows = real(query)
        returned.extend(rows)
        return rows

    ctl.history = spy  # type: ignore[method-assign]
    assert api.ids(ALICE) == [1, 2, 100, 101]
    assert [q.users for q in asked] == [[ALICE.pw_name]]
    assert {r.user for r in returned} == {ALICE.pw_name}  # other users' rows never left the store
    asked.clear()
    returned.clear()
    assert api.ids(ALICE, users=[BOB.pw_name]) == []
    assert asked == []  # nothing she may see was asked for: the store is not asked at all
    assert api.ids(BOB) == [102]
    # carol coordinates phys (and so hep): her own jobs and her accounts' jobs, not chem's
    asked.clear()
    returned.clear()
    assert api.ids(CAROL) == [1, 2, 100, 101, 103]
    assert sorted((tuple(q.users), tuple(q.accounts)) for q in asked) == \
        [((), ("hep", "phys")), ((CAROL.pw_name,), ())]
    assert BOB.pw_name not in {r.user for r in returned}
    assert api.ids(CAROL, accounts=["chem"]) == []
    # operators and admins see every job; the store is asked as the request says
    asked.clear()
    assert api.ids(OPER, "operator") == [1, 2, 100, 101, 102, 103]
    assert api.ids(None) == [1, 2, 100, 101, 102, 103]
    assert all(q.users == [] for q in asked)


def test_a_store_error_is_a_one_line_refusal(make_api: Any) -> None:
    api = make_api()
    store = api.h.ctl.pm.plugins("accounting")[0].store

    def broken(_query: Any) -> Any:
        from crane_acct_sql import StoreError

        raise StoreError("database is locked\nline two")

    store.query = broken
    r = api.query(ALICE)
    assert not r.ok and r.jobs == [] and r.reason == "job history unavailable: database is locked line two"
    assert api.query(ALICE, include_history=False).ok  # the controller's own jobs still answer


def test_without_an_accounting_plugin(ctld: Any) -> None:
    h = ctld({**BASE, "Plugins": {}})
    api = Api(h)
    try:
        r = api.query(None)
        assert r.ok and "no accounting plugin" in r.reason
    finally:
        api.close()


def test_fetch_history_fills_the_page_around_the_controllers_copies() -> None:
    rows = [JobRecord(job_id=i) for i in range(1, 101)]
    calls: list[int] = []

    def call(q: HistoryQuery) -> list[JobRecord]:
        calls.append(q.max_lines)
        return rows[:q.max_lines] if q.max_lines else rows

    known = set(range(1, 16))  # the controller has 1-15 (filtered out of its reply, say)
    got = hist.fetch_history(call, [HistoryQuery()], 10, known, memory_ids=[])
    assert [r.job_id for r in got][:10] == list(range(16, 26)) and calls == [10, 20, 40]
    calls.clear()
    got = hist.fetch_history(call, [HistoryQuery()], 10, known, memory_ids=[3, 5])
    assert len(got) >= 8 and calls == [10, 20, 40]


def test_in_range() -> None:
    assert hist.in_range(0, (0, 0)) and hist.in_range(5, (5, 5)) and not hist.in_range(0, (0, 10))
    assert hist.in_range(10, (0, 10)) and not hist.in_range(11, (0, 10)) and hist.in_range(11, (10, 0))


PG = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A schema of its own in PostgreSQL's test database (dropped afterwards); skipped if unreachable."""
    import psycopg

    try:
        conn = psycopg.connect(PG, autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL is unreachable at {PG}: {' '.join(str(exc).split())}")
    name = f"crane_t_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{PG}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def test_the_same_on_postgresql(make_api: Any, pg_url: str) -> None:
    api = make_api({"CraneCtld": {**BASE["CraneCtld"], "PrivateData": ["jobs"]}}, url=pg_url)
    assert api.ids(None) == [1, 2, 100, 101, 102, 103]
    assert api.ids(None, users=[BOB.pw_name], include_steps=True) == [102]
    assert api.ids(ALICE) == [1, 2, 100, 101]
    assert api.ids(CAROL) == [1, 2, 100, 101, 103]
    assert api.ids(None, filter_end_time=pb.TimeRange(lower=int(NOW - 60 + 101), upper=0)) == [101, 102, 103]
