"""The controller keeps ONE IncrementalView across cycles and records in its delta what changed."""

from __future__ import annotations

from crane_kernel import hookimpl
from crane_kernel import messages as m
from crane_kernel.sched_types import REASON_BEGIN_TIME, REASON_HELD, IncrementalView


class Spy:
    """The configured scheduler, wrapped: records every view it is handed, then lets fifo answer."""

    def __init__(self) -> None:
        from crane_sched_fifo import FifoScheduler

        self.calls: list[dict] = []
        self.views: list = []
        self.inner = FifoScheduler()

    @hookimpl
    def crane_schedule(self, view, now):
        d = view.delta
        self.views.append(view)
        self.calls.append({
            "version": view.version, "pending": {j.job_id for j in view.pending},
            "p_add": {j.job_id for j in d.pending_added}, "p_del": {j.job_id for j in d.pending_removed},
            "r_add": [(r.job_id, r.end_time) for r in d.running_added],
            "r_del": [(r.job_id, r.end_time) for r in d.running_removed],
            "priorities": d.priorities, "other": d.other,
        })
        return self.inner.crane_schedule(view=view, now=now)


def _status(h, jid, state, **kw):
    job = h.ctl.jobs[jid]
    return m.StepStatus(node=job.head_node, job_id=jid, state=state, epoch=job.epoch, **kw)


def test_one_view_and_its_delta_across_cycles(ctld):
    spy = Spy()
    h = ctld(scheduler=spy)
    h.register_all()
    a, b, c = (h.submit(time_limit=600) for _ in range(3))
    h.ctl.schedule_cycle()
    first = spy.calls[-1]
    assert first["version"] == 1 and first["p_add"] == {a, b, c} and first["other"]  # nodes came up
    assert isinstance(spy.views[0], IncrementalView)

    d = h.submit(time_limit=600, cpus_per_task=4)
    h.now += 5
    h.feed(_status(h, a, "running", time=h.now))          # a started: its expected end moves
    h.feed(_status(h, b, "running", time=h.now), _status(h, b, "finished", time=h.now + 1))
    h.ctl.schedule_cycle()
    second = spy.calls[-1]
    assert spy.views[1] is spy.views[0] and second["version"] == 2
    assert second["p_del"] == {a, b, c} and second["p_add"] == {d} and not second["other"]
    added = dict(second["r_add"])
    assert set(added) == {a, c}                            # b came and went between the calls: in neither list
    assert added[a] == h.now + 600 and not second["r_del"]
    assert not second["priorities"]
    assert d in h.ctl.running

    h.now += 5
    h.feed(_status(h, c, "running", time=h.now))
    e = h.submit(hold=True)
    f = h.submit(begin_time=h.now + 100)
    g = h.submit()
    h.ctl.schedule_cycle()
    third = spy.calls[-1]
    assert third["p_add"] == {g} and third["p_del"] == {d} and third["pending"] == {g}
    assert h.ctl.jobs[e].reason == REASON_HELD and h.ctl.jobs[f].reason == REASON_BEGIN_TIME
    assert [jid for jid, _ in third["r_del"]] == [c]       # a new expected end: the old entry out ...
    assert dict(third["r_add"]) == {c: h.now + 600, d: h.ctl.running_view[d].end_time}  # ... the new one in


def test_hold_release_begin_time_priority_and_drain_reach_the_delta(ctld):
    spy = Spy()
    h = ctld({"Nodes": [{"name": "cn01", "cpu": 1, "memory": "1G"}]}, scheduler=spy)
    h.register_all()
    blocker = h.submit(time_limit=600)
    h.ctl.schedule_cycle()
    held = h.submit(hold=True)
    later = h.submit(begin_time=h.now + 60)
    waiting = h.submit()
    h.ctl.schedule_cycle()
    assert spy.calls[-1]["p_add"] == {waiting} and spy.calls[-1]["p_del"] == {blocker}
    assert h.ctl.jobs[held].reason == REASON_HELD and h.ctl.jobs[later].reason == REASON_BEGIN_TIME

    done, _ = h.ctl.modify([held], h.me, hold=False)
    assert done == [held]
    h.now += 61                                            # the begin time has come
    h.beat()
    h.ctl.schedule_cycle()
    call = spy.calls[-1]
    assert call["p_add"] == {held, later} and call["pending"] == {held, later, waiting}
    assert not call["priorities"] and not call["other"]

    root = type(h.me)(0, "root", "admin")
    h.ctl.modify([waiting], root, priority=100)
    h.ctl.schedule_cycle()
    assert spy.calls[-1]["priorities"] and not spy.calls[-1]["p_add"]

    h.ctl.modify([later], h.me, time_limit=30)             # a pending job's request changed
    h.ctl.schedule_cycle()
    assert spy.calls[-1]["other"]

    h.ctl.modify([held], h.me, hold=True)
    h.ctl.schedule_cycle()
    assert spy.calls[-1]["p_del"] == {held} and not spy.calls[-1]["other"]

    h.ctl.set_drain(["cn01"], True, "maintenance", root)
    h.ctl.schedule_cycle()
    assert spy.calls[-1]["other"]                          # a node became unusable
    assert spy.calls[-1]["version"] == len(spy.calls)


def test_backfill_keeps_its_pool_across_controller_cycles(ctld):
    h = ctld({"Plugins": {"Scheduler": "easy"}})
    sched = h.pm.plugins("scheduler")[0]
    h.register_all()
    for _ in range(6):
        h.submit(cpus_per_task=4, time_limit=600)          # whole 4-CPU nodes: the count-based fast path
    h.ctl.schedule_cycle()
    pool = sched._pool
    assert sched.last_path == "pool" and pool is not None
    assert len(h.ctl.running) == 4
    for _ in range(3):
        h.submit(cpus_per_task=4, time_limit=60)
    h.now += 1
    h.ctl.schedule_cycle()
    assert sched.last_path == "pool" and sched._pool is pool  # applied the delta, not rebuilt
    assert pool.version == h.ctl.keeper.view.version == 2
    assert h.ctl.jobs[5].reason in ("Resource", "Priority")
