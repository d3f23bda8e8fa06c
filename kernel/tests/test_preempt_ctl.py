"""Preemption in the controller: the preempt plugin's orders checked, carried out, journaled (ctld/preempt.py)."""

from __future__ import annotations

import pytest
from crane_common.states import JobState
from crane_kernel import hookimpl
from crane_kernel import messages as m
from crane_kernel.events import JobEvent
from crane_kernel.sched_types import PreemptOrder
from ctlrig import ROOT, Rig

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


@pytest.mark.parametrize("case", ["protected", "not_needed", "wrong_mode", "not_on_its_nodes", "malformed"])
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
    if case == "malformed":  # what a broken plugin might put there: ignored, the cycle goes on
        rogue.orders = {victim.job_id: (high, "CANCEL"), "x": PreemptOrder(high, "CANCEL"),
                        victim.job_id + 100: PreemptOrder("y", None)}
        rogue.nodes = {high: "cn01"}
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


@pytest.mark.parametrize("enforced", [True, False])
def test_qos_preemption_only_when_the_qos_is_enforced(tmp_path, enforced):
    """Without ``Accounting.Enforce: [qos]`` a job's QoS is what its submitter wrote: it preempts nobody."""
    from crane_kernel.ctld.acctmodel import Qos

    rig = _rig(tmp_path, [{"name": "debug", "nodes": "cn01"}])
    book = rig.ctl.accounts
    book.qos["low"] = Qos("low", preempt_mode="CANCEL")
    book.qos["high"] = Qos("high", preempt=["low"])
    low = rig.start(partition="debug", cpus_per_task=2)
    low.qos = rig.ctl.running_view[low.job_id].qos = "low"
    high = rig.submit(partition="debug", cpus_per_task=2)
    rig.ctl.jobs[high].qos = "high"
    if enforced:
        book.enforce = frozenset({"qos"})
    rig.cycle()
    if enforced:
        assert [t.job_id for t in rig.to("cn01", m.TerminateStep)] == [low.job_id]
        assert rig.ctl.preempted_by(low.job_id) == high
    else:
        assert rig.ctl.keeper.view.preemption is None and not rig.to("cn01", m.TerminateStep)


def _parts(mode):
    return [{"name": "low", "nodes": "cn01", "priority": 1, "PreemptMode": mode},
            {"name": "high", "nodes": "cn01", "priority": 10}]


def _report_running(rig, job):
    rig.feed(m.StepStatus(node=job.head_node, job_id=job.job_id, state="running", epoch=job.epoch))


def test_requeue_sends_the_victim_back_and_it_runs_again_later(tmp_path):
    rig = _rig(tmp_path, _parts("REQUEUE"))
    low = rig.start(partition="low", cpus_per_task=2)
    first_epoch = low.epoch
    high = rig.submit(partition="high", cpus_per_task=2)
    rig.cycle()
    assert [(t.job_id, t.reason) for t in rig.to("cn01", m.TerminateStep)] == [(low.job_id, "requeue")]
    assert low.state == JobState.Pending and low.reason == "Preempted"
    assert rig.ctl.jobs[high].reason == "WaitingForPreemption"
    assert [e.job_id for e in _events(rig, "job.requeued")] == [low.job_id]
    rig.cycle()
    assert rig.ctl.jobs[high].state == JobState.Pending  # the old processes are not gone yet
    rig.feed(m.StepStatus(node="cn01", job_id=low.job_id, state="finished", exit_code=256 + 15,
                          epoch=first_epoch))  # its node confirms they are gone (the old launch's final status)
    rig.cycle()
    hi = rig.ctl.jobs[high]
    assert hi.state == JobState.Configuring and low.state == JobState.Pending
    _report_running(rig, hi)
    _finish(rig, hi, code=0)
    rig.cycle()
    # the requeued job runs again, same id, a new launch; it may be preempted again later
    assert low.state == JobState.Configuring and low.epoch == first_epoch + 1
    assert rig.ctl.preempted_by(low.job_id) == high
    assert not rig.ctl._being_preempted(low.job_id)


def test_suspend_freezes_the_victim_lends_its_cpus_and_resumes_it(tmp_path):
    rig = _rig(tmp_path, _parts("SUSPEND"))
    low = rig.start(partition="low", cpus_per_task=2)
    mem_low = rig.ctl.nodes["cn01"].sched.mem_free
    high = rig.submit(partition="high", cpus_per_task=2)
    rig.cycle()
    assert [s.job_id for s in rig.to("cn01", m.SuspendJob)] == [low.job_id]
    hi = rig.ctl.jobs[high]
    assert low.state == JobState.Suspended and low.reason == "Preempted"
    assert hi.state == JobState.Configuring  # at once, on the CPUs the frozen job lent it
    node = rig.ctl.nodes["cn01"].sched
    assert node.cpus_free == 0 and node.mem_free == mem_low - hi.mem_per_node  # its memory stays taken
    # the owner cannot thaw it while its CPUs are lent
    done, failed = rig.ctl.suspend_jobs([low.job_id], ROOT, suspend=False)
    assert not done and "preempted" in failed[0][1]
    _report_running(rig, hi)
    _finish(rig, hi, code=0)
    rig.cycle()
    assert [r.job_id for r in rig.to("cn01", m.ResumeJob)] == [low.job_id]
    assert low.state == JobState.Running and node.cpus_free == 0
    _finish(rig, low, code=0)
    assert node.cpus_free == 2 and node.mem_free == node.mem_total


def test_a_suspended_victim_cancelled_gives_everything_back(tmp_path):
    rig = _rig(tmp_path, _parts("SUSPEND"))
    low = rig.start(partition="low", cpus_per_task=2)
    high = rig.submit(partition="high", cpus_per_task=2)
    rig.cycle()
    hi = rig.ctl.jobs[high]
    rig.ctl.cancel([low.job_id], ROOT)
    _finish(rig, low)
    assert low.state == JobState.Cancelled
    node = rig.ctl.nodes["cn01"].sched
    assert node.cpus_free == 0  # the preemptor's two
    resumes = len(rig.to("cn01", m.ResumeJob))  # (the cancel thaws it to end it)
    _report_running(rig, hi)
    _finish(rig, hi, code=0)
    rig.cycle()
    assert node.cpus_free == 2 and node.mem_free == node.mem_total and node.njobs == 0
    assert len(rig.to("cn01", m.ResumeJob)) == resumes  # nothing left to resume


def test_a_suspension_survives_a_controller_restart(tmp_path):
    rig = _rig(tmp_path, _parts("SUSPEND"))
    low = rig.start(partition="low", cpus_per_task=2)
    high = rig.submit(partition="high", cpus_per_task=2)
    rig.cycle()
    hi = rig.ctl.jobs[high]
    _report_running(rig, hi)
    again = Rig(str(tmp_path / "state.db"), partitions=_parts("SUSPEND"), clock=rig.clock)
    again.feed(m.NodeRegister(node="cn01", cpus=2, mem=1 << 30, running=[low.job_id, high],
                              steps=[(low.job_id, 0, low.epoch), (high, 0, hi.epoch)]))
    again.cycle()
    node = again.ctl.nodes["cn01"].sched
    assert again.ctl.jobs[low.job_id].state == JobState.Suspended and node.cpus_free == 0
    hi2 = again.ctl.jobs[high]
    _finish(again, hi2, code=0)
    again.cycle()
    assert [r.job_id for r in again.to("cn01", m.ResumeJob)] == [low.job_id]
    assert again.ctl.jobs[low.job_id].state == JobState.Running and node.cpus_free == 0


@pytest.mark.parametrize("mode", ["REQUEUE", "CANCEL"])
def test_a_victim_that_ends_on_its_sigterm_during_the_grace_still_gets_its_mode(tmp_path, mode):
    rig = _rig(tmp_path, _parts(mode), PreemptGraceTime=30)
    low = rig.start(partition="low", cpus_per_task=2)
    high = rig.submit(partition="high", cpus_per_task=2)
    rig.cycle()
    assert [(s.job_id, s.signum) for s in rig.to("cn01", m.SignalJob)] == [(low.job_id, 15)]
    _finish(rig, low, code=256 + 15)  # it did not trap the SIGTERM
    if mode == "REQUEUE":
        assert low.state == JobState.Pending and rig.ctl.preempted_by(low.job_id) == high
    else:
        assert low.state == JobState.Cancelled and low.reason == "Preempted"
    rig.cycle()
    assert rig.ctl.jobs[high].state == JobState.Configuring
    assert not rig.to("cn01", m.TerminateStep)  # nothing left to end when the grace is over
    _wait(rig, 31)
    rig.cycle()
    assert not rig.to("cn01", m.TerminateStep)


@pytest.mark.parametrize(("extra", "message"), [
    ({"Partitions": [{"name": "p", "nodes": "ALL", "PreemptMode": "sometimes"}]},
     "Partitions.0.PreemptMode: Input should be 'OFF', 'CANCEL', 'REQUEUE' or 'SUSPEND'"),
    ({"CraneCtld": {"PreemptGraceTime": -1}}, "CraneCtld.PreemptGraceTime: Input should be greater than or equal to 0"),
])
def test_bad_preemption_settings_are_one_line_errors(extra, message):
    from crane_kernel.config import parse_config
    from crane_kernel.errors import ConfigError

    base = {"Nodes": [{"name": "cn01", "cpu": 1, "memory": "1G"}], "Partitions": [{"name": "p", "nodes": "ALL"}]}
    with pytest.raises(ConfigError) as err:
        parse_config({**base, **extra})
    assert message in str(err.value) and "\n" not in str(err.value)
    ok = parse_config({**base, "Partitions": [{"name": "p", "nodes": "ALL", "PreemptMode": "requeue"}]})
    assert ok.Partitions[0].PreemptMode == "REQUEUE"


def test_a_victim_its_node_cannot_freeze_is_cancelled_instead(tmp_path):
    rig = _rig(tmp_path, _parts("SUSPEND"))
    low = rig.start(partition="low", cpus_per_task=2)
    high = rig.submit(partition="high", cpus_per_task=2)
    rig.cycle()
    hi = rig.ctl.jobs[high]
    assert low.state == JobState.Suspended and hi.state == JobState.Configuring
    rig.feed(m.JobControlResult(node="cn01", job_id=low.job_id, epoch=low.epoch, action="suspend", ok=False,
                                reason="no freezer"))
    # it would run on the CPUs its preemptor has now: it is told to end, as a CANCEL victim
    assert [t.job_id for t in rig.to("cn01", m.TerminateStep)] == [low.job_id]
    _finish(rig, low)
    assert low.state == JobState.Cancelled and low.reason == "Preempted"
    node = rig.ctl.nodes["cn01"].sched
    assert node.cpus_free == 0 and node.mem_free == node.mem_total - hi.mem_per_node
    _report_running(rig, hi)
    _finish(rig, hi, code=0)
    rig.cycle()
    assert node.cpus_free == 2 and node.mem_free == node.mem_total and not rig.to("cn01", m.ResumeJob)[1:]


def test_a_two_node_job_preempts_on_two_nodes_and_starts_on_them(tmp_path):
    parts = [{"name": "low", "nodes": "cn[01-03]", "priority": 1, "PreemptMode": "CANCEL"},
             {"name": "high", "nodes": "cn[01-03]", "priority": 10}]
    rig = _rig(tmp_path, parts)
    a = rig.start(partition="low", cpus_per_task=2, nodelist=["cn01"])
    b = rig.start(partition="low", cpus_per_task=2, nodelist=["cn02"])
    rig.clock.t += 5
    c = rig.start(partition="low", cpus_per_task=1, nodelist=["cn03"])
    d = rig.start(partition="low", cpus_per_task=1, nodelist=["cn03"])
    high = rig.submit(partition="high", node_num=2, cpus_per_task=2)
    rig.cycle()
    # cn03 would need two victims, cn01 and cn02 one each: those two go
    ended = {t.job_id for n in ("cn01", "cn02", "cn03") for t in rig.to(n, m.TerminateStep)}
    assert ended == {a.job_id, b.job_id}
    assert c.state == d.state == JobState.Running
    _finish(rig, a)
    rig.cycle()
    assert rig.ctl.jobs[high].state == JobState.Pending  # one victim is still there
    _finish(rig, b)
    rig.cycle()
    assert rig.ctl.jobs[high].state == JobState.Configuring
    assert set(rig.ctl.jobs[high].alloc_nodes) == {"cn01", "cn02"}
