"""Fair share survives the controller's retention: at recovery the accounting store's ended jobs feed usage.

A controller started on a fresh journal, with the same accounting database (``sql`` plugin on
SQLite), sees the old usage in the multifactor plugin's ledger; jobs its own journal replays are
not counted twice.
"""

from __future__ import annotations

from typing import Any

import pytest
from crane_acct_sql import SqlEvents
from crane_kernel import messages as m
from crane_kernel.ctld import history as hist
from crane_kernel.events import JobEvent, JobRecord
from crane_kernel.history import HistoryQuery

NOW = 1_000_000.0
HALF = 7 * 86400.0


@pytest.fixture
def acct(tmp_path: Any) -> Any:
    d = tmp_path / "acct"
    d.mkdir(mode=0o700)
    url = f"sqlite://{d}/acct.db"
    w = SqlEvents()
    w.crane_plugin_configure(settings={"Url": url})
    yield url, w
    w.crane_plugin_shutdown()


def ended(w: SqlEvents, job_id: int, account: str, cpus: float, start: float, end: float, seq: int) -> None:
    w.crane_event(event=JobEvent(kind="job.ended", job_id=job_id, seq=seq, job=JobRecord(
        job_id=job_id, user="alice", account=account, state="Completed", node_num=2, cpus=cpus,
        submit_time=start - 10, start_time=start, end_time=end)))


def overrides(url: str | None) -> dict[str, Any]:
    plugins: dict[str, Any] = {"Priority": "multifactor"}
    if url:
        plugins |= {"Accounting": "sql", "Settings": {"sql": {"Url": url}}}
    return {"Plugins": plugins}


def decayed(cpu_seconds: float, end: float) -> float:
    return cpu_seconds * 2.0 ** (-(NOW - end) / HALF)


def test_usage_survives_a_fresh_journal(ctld: Any, acct: Any) -> None:
    url, w = acct
    ended(w, 10, "phys", 8.0, NOW - 2 * 86400 - 3600, NOW - 2 * 86400, 1)   # 8 CPUs for an hour, two days ago
    ended(w, 11, "phys", 8.0, NOW - 7200, NOW - 3600, 2)
    without = ctld(overrides(None))
    prio = without.pm.plugins("priority")[0]
    assert prio.ledger.usage("phys", NOW) == 0.0  # no accounting: the fresh journal knows nothing
    h = ctld(overrides(url))
    prio = h.pm.plugins("priority")[0]
    want = decayed(8 * 3600, NOW - 2 * 86400) + decayed(8 * 3600, NOW - 3600)
    assert prio.ledger.usage("phys", NOW) == pytest.approx(want)
    assert prio.ledger.usage("chem", NOW) == 0.0
    # and it shows in the priorities: a phys job now ranks below a fresh account's
    f = prio.ledger.factors({"phys", "bio"}, NOW, {})
    assert f["phys"] < f["bio"] == 1.0


def test_jobs_the_journal_replays_are_not_counted_twice(ctld: Any, acct: Any) -> None:
    url, w = acct
    h = ctld(overrides(url))
    h.register_all()
    jid = h.submit(account="phys", cpus_per_task=2)
    h.ctl.schedule_cycle()
    job = h.ctl.jobs[jid]
    node = job.head_node
    h.feed(m.StepStatus(node=node, job_id=jid, state="running", time=h.now, epoch=job.epoch))
    start = job.start_time
    h.now += 3600
    h.feed(m.StepStatus(node=node, job_id=jid, state="finished", time=h.now, epoch=job.epoch))
    assert job.end_time == h.now
    # cplugind wrote the same job into the history
    ended(w, jid, "phys", 2.0, start, job.end_time, 5)
    # a restart on the same journal: the journal replays the job, the history must not add it again
    from crane_kernel.ctld.core import Controller
    from crane_kernel.ctld.main import build_plugin_manager

    pm = build_plugin_manager(h.cfg)
    try:
        ctl = Controller(h.cfg, h.store, pm, lambda _msgs: None, clock=lambda: h.now)
        ctl.recover()
        usage = pm.plugins("priority")[0].ledger.usage("phys", job.end_time)
        assert usage == pytest.approx(2 * (job.end_time - start))
    finally:
        pm.shutdown()


def test_rebuild_asks_day_by_day_and_feeds_oldest_first() -> None:
    now = 1_700_000_000.0
    recs = [JobRecord(job_id=i, account="a", node_num=1, cpus=1.0, start_time=now - i * 86400 - 100,
                      end_time=now - i * 86400) for i in range(0, 40)]
    asked: list[tuple[float, float]] = []

    def call(query: HistoryQuery) -> list[JobRecord]:
        asked.append(query.end_time)
        lo, hi = query.end_time
        return [r for r in recs if lo <= r.end_time <= hi]

    fed: list[int] = []
    n = hist.rebuild_usage(call, lambda job, start_time, end_time: fed.append(job.job_id), {3}, now)
    assert n == 30 and 3 not in fed and fed == sorted(fed, reverse=True)  # ids grow into the past here
    assert max(fed) == 30 and len(asked) == 30  # 30 days (0-30 inclusive), one query a day, newest first
    assert asked[0] == (now - 86400, now)

    def broken(query: HistoryQuery) -> Any:
        raise RuntimeError("server gone")

    assert hist.rebuild_usage(broken, lambda **kw: None, set(), now) == 0  # logged; the controller starts anyway
