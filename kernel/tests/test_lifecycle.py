"""The lifecycle mechanism of the controller: suspend, resume and requeue (ctld/lifecycle.py).

A real :class:`Controller` over a real state store (the ``fifo`` scheduler and ``standard``
lifecycle plugins), driven with the messages nodes would send; the clock is ours.
"""

from __future__ import annotations

from typing import Any

import pytest
from crane_common.states import EC_TERMINATED, JobState
from crane_kernel import messages as m
from crane_kernel.ctld.lifecycle import REASON_REQUEUED, LifecycleRefused
from ctlrig import Rig


@pytest.fixture()
def rig(tmp_path: Any) -> Rig:
    r = Rig(str(tmp_path / "state.db"))
    r.all_up()
    return r


def _call(rig: Rig, fn: Any, *args: Any, **kw: Any) -> list:
    """Call an internal lifecycle method as its callers do: under the lock, journal the rows, publish."""
    ctl, outbox = rig.ctl, []
    with ctl.lock:
        rows = fn(*args, rig.clock.t, outbox, **kw) if kw.get("_plain") is None else []
        ctl.store.write(updates=rows)
    ctl.publish(outbox)
    return rows


def suspend(rig: Rig, job: Any, reason: str = "by test") -> list:
    return _call(rig, lambda j, now, out: rig.ctl.suspend_job(j, now, out, reason), job)


def resume(rig: Rig, job: Any) -> list:
    return _call(rig, rig.ctl.resume_job, job)


def requeue(rig: Rig, job: Any, hold: bool = False) -> list:
    return _call(rig, lambda j, now, out: rig.ctl.requeue_job(j, now, out, "by test", hold=hold), job)


# ---------------------------------------------------------------------------------------------
# suspend and resume
# ---------------------------------------------------------------------------------------------
def test_suspend_freezes_on_every_node_keeps_resources_and_stops_the_clock(rig):
    job = rig.start(node_num=2, time_limit=100)
    nodes = set(job.alloc_nodes)
    free_before = {n: rig.cpus_free(n) for n in nodes}
    rig.sent.clear()
    rows = suspend(rig, job, "admin")
    assert job.state == JobState.Suspended and job.reason == "admin"
    assert rows and rows[0][0] == int(JobState.Suspended)
    assert {n for n in nodes if rig.to(n, m.SuspendJob)} == nodes            # every node of the job
    assert all(msg.epoch == job.epoch for n in nodes for msg in rig.to(n, m.SuspendJob))
    assert {n: rig.cpus_free(n) for n in nodes} == free_before                 # resources stay allocated
    start_end = rig.ctl.running_view[job.job_id].end_time
    rig.clock.t += 30
    assert rig.ctl.suspended_total(job, rig.clock.t) == pytest.approx(30)
    rig.sent.clear()
    resume(rig, job)
    assert job.state == JobState.Running and job.reason == ""
    assert {n for n in nodes if rig.to(n, m.ResumeJob)} == nodes
    assert rig.ctl.life_of(job.job_id).suspended_seconds == pytest.approx(30)
    assert rig.ctl.running_view[job.job_id].end_time == pytest.approx(start_end + 30)  # the limit moved
    rig.clock.t += 100
    assert rig.ctl.suspended_total(job, rig.clock.t) == pytest.approx(30)   # running time is not suspended time


def test_only_a_running_job_can_be_suspended_and_only_a_suspended_one_resumed(rig):
    pending = rig.submit(node_num=3, nodelist=["cn01", "cn02", "cn03"], time_limit=50)
    job = rig.start(nodelist=["cn01"])
    with pytest.raises(LifecycleRefused, match="not suspended"):
        resume(rig, job)
    suspend(rig, job)
    with pytest.raises(LifecycleRefused, match="already suspended"):
        suspend(rig, job)
    with pytest.raises(LifecycleRefused, match="not running"):
        suspend(rig, rig.ctl.jobs[pending])


def test_a_node_that_cannot_freeze_leaves_the_job_running_with_the_reason(rig):
    job = rig.start(node_num=2)
    suspend(rig, job)
    rig.sent.clear()
    other = [n for n in job.alloc_nodes if n != job.head_node][0]
    rig.feed(m.JobControlResult(node=job.head_node, job_id=job.job_id, epoch=job.epoch, action="suspend"),
             m.JobControlResult(node=other, job_id=job.job_id, epoch=job.epoch, action="suspend", ok=False,
                                reason="the runtime could not freeze the step"))
    assert job.state == JobState.Running
    assert job.reason == f"suspend failed on {other}: the runtime could not freeze the step"
    assert all(rig.to(n, m.ResumeJob) for n in job.alloc_nodes)                # the frozen ones are thawed
    stored = dict(((jid, rt) for jid, _spec, rt in rig.store.jobs_by_id([job.job_id])))[job.job_id]
    assert stored["state"] == int(JobState.Running) and "suspend failed" in stored["reason"]


def test_control_results_from_a_node_outside_the_job_or_an_old_launch_are_ignored(rig):
    job = rig.start(nodelist=["cn01"])
    suspend(rig, job)
    rig.feed(m.JobControlResult(node="cn02", job_id=job.job_id, epoch=job.epoch, action="suspend", ok=False),
             m.JobControlResult(node="cn01", job_id=job.job_id, epoch=job.epoch + 5, action="suspend", ok=False))
    assert job.state == JobState.Suspended


def test_a_suspended_job_survives_a_controller_restart_with_its_clock(tmp_path):
    path = str(tmp_path / "state.db")
    rig = Rig(path)
    rig.all_up()
    job = rig.start(nodelist=["cn02"], time_limit=100)
    rig.clock.t += 10
    suspend(rig, job)
    rig.clock.t += 20
    resume(rig, job)
    rig.clock.t += 5
    suspend(rig, job)
    jid = job.job_id
    again = Rig(path, clock=rig.clock)
    job2 = again.ctl.jobs[jid]
    assert job2.state == JobState.Suspended and jid in again.ctl.running
    again.clock.t += 7
    assert again.ctl.suspended_total(job2, again.clock.t) == pytest.approx(27)
    assert again.cpus_free("cn02") == 1                                        # still allocated
    outbox: list = []
    with again.ctl.lock:
        again.ctl.resume_job(job2, again.clock.t, outbox)
    assert job2.state == JobState.Running


def test_a_suspended_job_can_be_cancelled_resumed_first(rig):
    from ctlrig import ROOT

    job = rig.start(nodelist=["cn01"])
    suspend(rig, job)
    rig.sent.clear()
    done, failed = rig.ctl.cancel([job.job_id], ROOT)
    assert done == [job.job_id] and not failed
    kinds = [type(msg).__name__ for s, msg in rig.sent if s == rig.ctl.node_stream("cn01")]
    assert kinds.index("ResumeJob") < kinds.index("TerminateStep")             # thawed, then terminated
    rig.feed(m.StepStatus(node="cn01", job_id=job.job_id, state="finished", exit_code=EC_TERMINATED,
                          epoch=job.epoch))
    assert job.state == JobState.Cancelled


# ---------------------------------------------------------------------------------------------
# requeue
# ---------------------------------------------------------------------------------------------
def test_requeue_ends_the_processes_keeps_the_id_and_runs_again_once_they_are_gone(rig):
    job = rig.start(nodelist=["cn01"])
    first_epoch = job.epoch
    rig.sent.clear()
    requeue(rig, job)
    assert job.state == JobState.Pending and job.reason == REASON_REQUEUED
    assert [t.reason for t in rig.to("cn01", m.TerminateStep)] == ["requeue"]
    assert rig.cpus_free("cn01") == 1                                          # held: the old run may still run
    rig.cycle()
    assert job.state == JobState.Pending                                       # not started twice
    rig.feed(m.StepStatus(node="cn01", job_id=job.job_id, state="finished", exit_code=EC_TERMINATED,
                          epoch=first_epoch))
    assert rig.cpus_free("cn01") == 2 and job.reason == ""
    rig.cycle()
    assert job.state == JobState.Configuring and job.epoch == first_epoch + 1  # requeue_count 1
    rig.feed(m.StepStatus(node=job.head_node, job_id=job.job_id, state="running", epoch=job.epoch))
    rig.feed(m.StepStatus(node=job.head_node, job_id=job.job_id, state="finished", exit_code=0, epoch=job.epoch))
    assert job.state == JobState.Completed


def test_requeue_hold_comes_back_held(rig):
    job = rig.start(nodelist=["cn01"])
    epoch = job.epoch
    requeue(rig, job, hold=True)
    rig.feed(m.StepStatus(node="cn01", job_id=job.job_id, state="finished", exit_code=EC_TERMINATED, epoch=epoch))
    rig.cycle()
    assert job.state == JobState.Pending and job.held


def test_a_suspended_job_can_be_requeued_and_its_next_run_starts_unsuspended(rig):
    job = rig.start(nodelist=["cn03"])
    suspend(rig, job)
    rig.clock.t += 5
    epoch = job.epoch
    requeue(rig, job)
    assert job.state == JobState.Pending
    rig.feed(m.StepStatus(node="cn03", job_id=job.job_id, state="finished", exit_code=EC_TERMINATED, epoch=epoch))
    rig.cycle()
    assert job.state == JobState.Configuring
    assert rig.ctl.suspended_total(job, rig.clock.t) == 0


def test_requeue_refuses_pending_interactive_and_ended_jobs(rig):
    pending = rig.submit(node_num=3, nodelist=["cn01", "cn02", "cn03"])
    rig.cycle()
    pj = rig.ctl.jobs[pending]
    if pj.state == JobState.Pending:
        with pytest.raises(LifecycleRefused, match="not running"):
            requeue(rig, pj)
    job = rig.start(nodelist=["cn01"])
    rig.feed(m.StepStatus(node="cn01", job_id=job.job_id, state="finished", exit_code=0, epoch=job.epoch))
    with pytest.raises(LifecycleRefused):
        requeue(rig, job)


def test_a_requeued_job_waiting_for_its_processes_survives_a_restart(tmp_path):
    path = str(tmp_path / "state.db")
    rig = Rig(path)
    rig.all_up()
    job = rig.start(nodelist=["cn02"])
    epoch = job.epoch
    requeue(rig, job)
    again = Rig(path, clock=rig.clock)
    job2 = again.ctl.jobs[job.job_id]
    assert job2.state == JobState.Pending and again.cpus_free("cn02") == 1     # still held
    again.all_up()
    again.feed(m.StepStatus(node="cn02", job_id=job.job_id, state="finished", exit_code=EC_TERMINATED, epoch=epoch))
    assert again.cpus_free("cn02") == 2
    again.cycle()
    assert job2.state == JobState.Configuring and job2.epoch == epoch + 1
