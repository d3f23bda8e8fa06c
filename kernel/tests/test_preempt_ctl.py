"""Preemption in the controller: the preempt plugin's orders checked, carried out, journaled (ctld/preempt.py)."""

from __future__ import annotations

import pytest
from crane_common.states import JobState
from crane_kernel import hookimpl
from crane_kernel import messages as m
from crane_kernel.events import JobEvent
from crane_kernel.sched_types import PreemptOrder
from ctlrig import Rig

PARTS = [{"name": "low", "nodes": "cn01", "priority": 1, "PreemptMode": "cancel"},
         {"name": "high", "nodes": "cn01", "priority": 10}]


def _rig(tmp_path, parts=PARTS, **ctld):
    rig = Rig(str(tmp_path / "state.db"), partitions=parts, **ctld)
    rig.ctl.event_models = True
    rig.all_up()
    return rig


def _events(rig, kind):
    return [e for _, e in rig.sent if isinstance(e, JobEvent) and e.kind == kind]


def _wait(rig, seconds):
    """Let ``seconds`` pass in steps the nodes heartbeat through (listing the jobs they run)."""
    while seconds > 0:
        step = min(seconds, 5)
        rig.clock.t += step
        seconds -= step
        for n in ("cn01", "cn02", "cn03"):
            rig.beat(n, steps=[(j.job_id, 0, j.epoch) for j in rig.ctl.running.values() if j.head_node == n])


def _finish(rig, job, code=256 + 15):
    rig.feed(m.StepStatus(node=job.head_node, job_id=job.job_id, state="finished", exit_code=code, epoch=job.epoch))


def test_a_high_partition_job_cancels_the_low_one_and_starts_in_its_place(tmp_path):
    rig = _rig(tmp_path)
    low = rig.start(partition="low", cpus_per_task=2)
    high = rig.submit(partition="high", cpus_per_task=2)
    rig.cycle()
    # the victim is told to end; the preemptor waits for it, its room kept
    term = rig.to("cn01", m.TerminateStep)
    assert [(t.job_id, t.reason) for t in term] == [(low.job_id, "preempted")]
    assert rig.ctl.jobs[high].state == JobState.Pending
    assert rig.ctl.jobs[high].reason == "WaitingForPreemption"
    assert rig.ctl.preempted_by(low.job_id) == high
    (ev,) = _events(rig, "job.preempted")
    assert ev.job_id == low.job_id and ev.changes["preempted_by"] == high and ev.changes["mode"] == "CANCEL"
    rig.cycle()  # nothing more happens while it is ending
    assert len(rig.to("cn01", m.TerminateStep)) == 1
    _finish(rig, low)
    assert low.state == JobState.Cancelled and low.reason == "Preempted"
    rig.cycle()
    assert rig.ctl.jobs[high].state == JobState.Configuring
    assert rig.ctl.jobs[high].alloc_nodes == ("cn01",)


def test_no_preemption_without_a_rule(tmp_path):
    parts = [{"name": "low", "nodes": "cn01", "priority": 1},      # PreemptMode OFF
             {"name": "high", "nodes": "cn01", "priority": 10}]
    rig = _rig(tmp_path, parts)
    low = rig.start(partition="low", cpus_per_task=2)
    high = rig.submit(partition="high", cpus_per_task=2)
    rig.cycle()
    assert rig.ctl.keeper.view.preemption is None
    assert not rig.to("cn01", m.TerminateStep)
    assert low.state == JobState.Running and rig.ctl.jobs[high].reason == "Resource"


def test_a_lower_or_equal_partition_never_preempts(tmp_path):
    rig = _rig(tmp_path)
    rig.start(partition="high", cpus_per_task=2)
    low = rig.submit(partition="low", cpus_per_task=2)
    rig.cycle()
    assert not rig.to("cn01", m.TerminateStep) and rig.ctl.jobs[low].state == JobState.Pending


def test_only_what_is_needed_is_preempted(tmp_path):
    rig = _rig(tmp_path)
    old = rig.start(partition="low", cpus_per_task=1)
    rig.clock.t += 10
    young = rig.start(partition="low", cpus_per_task=1)
    high = rig.submit(partition="high", cpus_per_task=1)
    rig.cycle()
    # one CPU is enough: the youngest job goes, the older one keeps running
    assert [t.job_id for t in rig.to("cn01", m.TerminateStep)] == [young.job_id]
    assert old.state == JobState.Running and not old.cancel_requested
    assert rig.ctl.preempted_by(young.job_id) == high


def test_the_grace_time_delays_the_end(tmp_path):
    rig = _rig(tmp_path, PreemptGraceTime=30)
    low = rig.start(partition="low", cpus_per_task=2)
    rig.submit(partition="high", cpus_per_task=2)
    rig.cycle()
    assert not rig.to("cn01", m.TerminateStep)  # still in its grace
    _wait(rig, 29)
    rig.cycle()
    assert not rig.to("cn01", m.TerminateStep)
    _wait(rig, 2)
    rig.cycle()
    assert [t.job_id for t in rig.to("cn01", m.TerminateStep)] == [low.job_id]


def test_a_small_job_may_not_take_the_preemptors_room(tmp_path):
    parts = [{"name": "low", "nodes": "cn01", "priority": 1, "PreemptMode": "CANCEL"},
             {"name": "high", "nodes": "cn01", "priority": 10}]
    rig = _rig(tmp_path, parts)
    low = rig.start(partition="low", cpus_per_task=2)
    high = rig.submit(partition="high", cpus_per_task=2)
    rig.cycle()
    _finish(rig, low)
    # an older low job arrives before the next pass: it may not take the room kept for `high`
    other = rig.submit(partition="low", cpus_per_task=1)
    rig.ctl.jobs[other].submit_time = 0.0
    rig.cycle()
    assert rig.ctl.jobs[high].state == JobState.Configuring
    assert rig.ctl.jobs[other].state == JobState.Pending


class _Rogue:
    """A preempt plugin that orders what the test says (to see the kernel's checks refuse it)."""

    def __init__(self):
        self.orders, self.nodes = {}, {}

    @hookimpl
    def crane_preempt(self, view, plan, now):
        plan.preempt.update(self.orders)
        plan.preempt_nodes.update(self.nodes)
        return True


@pytest.mark.parametrize("case", ["protected", "not_needed", "wrong_mode", "not_on_its_nodes"])
def test_the_kernel_refuses_orders_the_rules_do_not_allow(tmp_path, case):
    parts = [{"name": "low", "nodes": "cn[01-02]", "priority": 1, "PreemptMode": "CANCEL"},
             {"name": "top", "nodes": "cn[01-02]", "priority": 20},
             {"name": "high", "nodes": "cn[01-02]", "priority": 10}]
    rogue = _Rogue()
    rig = _rig(tmp_path, parts, preempt=rogue)
    if case == "protected":  # a job of a higher partition than the preemptor's
        victim = rig.start(partition="top", cpus_per_task=2, nodelist=["cn01"])
    else:
        victim = rig.start(partition="low", cpus_per_task=1 if case == "not_needed" else 2, nodelist=["cn01"])
    rig.start(partition="top", cpus_per_task=2, nodelist=["cn02"])
    high = rig.submit(partition="high", cpus_per_task=1 if case == "not_needed" else 2)
    mode = "REQUEUE" if case == "wrong_mode" else "CANCEL"
    node = 1 if case == "not_on_its_nodes" else 0
    rogue.orders, rogue.nodes = {victim.job_id: PreemptOrder(high, mode)}, {high: [node]}
    rig.cycle()
    assert not any(t.job_id == victim.job_id for t in rig.to("cn01", m.TerminateStep))
    assert victim.state == JobState.Running and rig.ctl.preempted_by(victim.job_id) == 0
    assert rig.ctl.jobs[high].reason != "WaitingForPreemption"
    if case == "not_needed":  # the refused orders do not keep it from starting where it fits
        assert rig.ctl.jobs[high].state == JobState.Configuring


def test_a_preemption_survives_a_controller_restart(tmp_path):
    rig = _rig(tmp_path, PreemptGraceTime=30)
    low = rig.start(partition="low", cpus_per_task=2)
    high = rig.submit(partition="high", cpus_per_task=2)
    rig.cycle()
    row = rig.store.jobs_by_id([low.job_id])[0]
    assert row[2]["pre"][0] == high
    again = Rig(str(tmp_path / "state.db"), partitions=PARTS, clock=rig.clock, PreemptGraceTime=30)
    again.feed(m.NodeRegister(node="cn01", cpus=2, mem=1 << 30, running=[low.job_id],
                              steps=[(low.job_id, 0, low.epoch)]))
    assert again.ctl.preempted_by(low.job_id) == high
    _wait(again, 31)
    again.cycle()  # the grace ends after the restart as it would have
    assert [t.job_id for t in again.to("cn01", m.TerminateStep)] == [low.job_id]


def test_qos_preemption(tmp_path):
    parts = [{"name": "debug", "nodes": "cn01"}]
    rig = _rig(tmp_path, parts)
    book = rig.ctl.accounts
    from crane_kernel.ctld.acctmodel import Qos
    book.qos["low"] = Qos("low", preempt_mode="CANCEL")
    book.qos["high"] = Qos("high", preempt=["low"])
    low = rig.start(partition="debug", cpus_per_task=2)
    low.qos = "low"
    rig.ctl.running_view[low.job_id].qos = "low"
    high = rig.submit(partition="debug", cpus_per_task=2)
    rig.ctl.jobs[high].qos = "high"
    rig.cycle()
    assert [t.job_id for t in rig.to("cn01", m.TerminateStep)] == [low.job_id]
    assert rig.ctl.preempted_by(low.job_id) == high
