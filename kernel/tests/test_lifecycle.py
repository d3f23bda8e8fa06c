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


# ---------------------------------------------------------------------------------------------
# deadlines (ctld/jobcontrol.py)
# ---------------------------------------------------------------------------------------------
def test_a_pending_job_that_cannot_meet_its_deadline_ends_as_deadline(rig):
    now = rig.clock.t
    blocker = rig.start(node_num=3, nodelist=["cn01", "cn02", "cn03"], exclusive=True)
    fits = rig.submit(time_limit=60, deadline=int(now + 120))
    late = rig.submit(time_limit=600, deadline=int(now + 120))
    rig.cycle()
    assert rig.ctl.jobs[late].state == JobState.Deadline and rig.ctl.jobs[late].reason == "Deadline"
    assert rig.ctl.jobs[fits].state == JobState.Pending                 # it still could
    rig.clock.t += 61
    rig.beat("cn01", steps=[(blocker.job_id, 0, blocker.epoch)]), rig.beat("cn02"), rig.beat("cn03")
    rig.cycle()
    assert rig.ctl.jobs[fits].state == JobState.Deadline                # now it cannot any more
    assert blocker.state == JobState.Running                            # the clock never ends a job without one


def test_a_running_job_is_terminated_at_its_deadline_and_ends_as_deadline(tmp_path):
    path = str(tmp_path / "state.db")
    rig = Rig(path)
    rig.all_up()
    from ctlrig import ROOT

    job = rig.start(nodelist=["cn01"], time_limit=100, deadline=int(rig.clock.t + 200))
    assert rig.ctl.update_jobs([job.job_id], ROOT, "deadline", int(rig.clock.t + 5)) == ([job.job_id], [])
    rig.clock.t += 6
    rig.beat("cn01", steps=[(job.job_id, 0, job.epoch)])
    rig.cycle()
    assert [t.reason for t in rig.to("cn01", m.TerminateStep)] == ["deadline"]
    again = Rig(path, clock=rig.clock)                                   # the decision survives a restart
    job2 = again.ctl.jobs[job.job_id]
    again.all_up()
    again.feed(m.StepStatus(node="cn01", job_id=job.job_id, state="finished", exit_code=EC_TERMINATED,
                            epoch=job.epoch))
    assert job2.state == JobState.Deadline and job2.reason == "Deadline"


def test_a_past_or_bad_deadline_and_a_bad_signal_are_refused_at_submission(rig):
    from crane_kernel.errors import JobRejected

    with pytest.raises(JobRejected, match="in the past"):
        rig.submit(deadline=int(rig.clock.t - 1))
    with pytest.raises(JobRejected, match="unknown signal"):
        rig.submit(signal="B:NOPE@10")
    with pytest.raises(JobRejected, match="expected"):
        rig.submit(signal="X:USR1")
    jid = rig.submit(signal="B:USR1@30", deadline=int(rig.clock.t + 3600))
    assert rig.ctl.life_of(jid).signal == "B:USR1@30"


def test_the_warning_signal_travels_in_the_launch(rig):
    jid = rig.submit(nodelist=["cn02"], signal="B:USR1@30")
    rig.cycle()
    (launch,) = [msg for msg in rig.to("cn02", m.LaunchStep) if msg.job_id == jid]
    assert (launch.spec.warn_signal, launch.spec.warn_seconds, launch.spec.warn_batch_only) == (10, 30, True)


# ---------------------------------------------------------------------------------------------
# signals and the calls with identities
# ---------------------------------------------------------------------------------------------
def test_signal_goes_to_every_node_of_a_running_job_and_is_refused_for_a_pending_one(rig):
    from ctlrig import ROOT

    job = rig.start(node_num=2)
    pending = rig.submit(node_num=3, nodelist=["cn01", "cn02", "cn03"])
    rig.sent.clear()
    done, failed = rig.ctl.signal_jobs([job.job_id, pending, 999], ROOT, 10)
    assert done == [job.job_id]
    assert dict(failed) == {pending: "Job is pending: only a running job can be signalled",
                            999: "Job not found or already finished"}
    assert {n for n in job.alloc_nodes if [s.signum for s in rig.to(n, m.SignalJob)] == [10]} == set(job.alloc_nodes)
    assert job.state == JobState.Running
    assert rig.ctl.signal_jobs([job.job_id], ROOT, 99)[1][0][1].startswith("signal 99 is out of range")


# ---------------------------------------------------------------------------------------------
# ccontrol update job (ctld/jobupdate.py)
# ---------------------------------------------------------------------------------------------
def test_update_fields_are_checked_applied_and_survive_a_restart(tmp_path):
    from ctlrig import ROOT

    path = str(tmp_path / "state.db")
    rig = Rig(path)
    rig.all_up()
    jid = rig.submit(hold=True, name="before")
    ctl = rig.ctl
    for field, value in (("name", "after"), ("comment", "hi"), ("mail_type", "END,FAIL"), ("mail_user", "a@b.org"),
                         ("deadline", int(rig.clock.t + 7200)), ("node_num", 2), ("nodelist", "cn[01-02]"),
                         ("begin_time", int(rig.clock.t + 60))):
        assert ctl.update_jobs([jid], ROOT, field, value) == ([jid], []), field
    job = ctl.jobs[jid]
    assert (job.name, job.comment, job.node_num, sorted(job.nodelist)) == ("after", "hi", 2, ["cn01", "cn02"])
    assert job.mail == (("END", "FAIL"), "a@b.org") and job.held and job.begin_time == rig.clock.t + 60
    bad = {field: ctl.update_jobs([jid], ROOT, field, value)[1][0][1] for field, value in (
        ("partition", "nope"), ("node_num", 2**31), ("nodelist", "cn[01-02],bad\tname"), ("mail_user", "x\ny"),
        ("deadline", int(rig.clock.t - 5)), ("reservation", "r1"), ("licenses", "a:1"), ("array_max_concurrent", 2))}
    assert "nope" in bad["partition"] and bad["reservation"] == "reservation 'r1' does not exist"  # -r: reservations.py
    assert bad["licenses"].startswith("license a does not exist")
    assert "could not end before" in bad["deadline"] and "unknown field" in bad["array_max_concurrent"]  # by its array
    assert all(bad.values())
    again = Rig(path, clock=rig.clock)
    job2 = again.ctl.jobs[jid]
    assert (job2.name, job2.comment, job2.node_num, job2.held) == ("after", "hi", 2, True)
    assert again.ctl.life_of(jid).deadline == rig.clock.t + 7200


def test_pending_only_fields_are_refused_for_a_running_job(rig):
    from ctlrig import ROOT

    job = rig.start(nodelist=["cn01"])
    done, failed = rig.ctl.update_jobs([job.job_id], ROOT, "node_num", 2)
    assert not done and "not pending" in failed[0][1]
    assert rig.ctl.update_jobs([job.job_id], ROOT, "comment", "fine") == ([job.job_id], [])
    assert job.comment == "fine"


def test_an_updated_pending_job_is_scheduled_with_its_new_request(rig):
    from ctlrig import ROOT

    jid = rig.submit(hold=True)
    assert rig.ctl.update_jobs([jid], ROOT, "nodelist", "cn03") == ([jid], [])
    rig.ctl.modify([jid], ROOT, hold=False)
    rig.cycle()
    job = rig.ctl.jobs[jid]
    assert job.state == JobState.Configuring and job.alloc_nodes == ("cn03",)


def test_changing_account_or_qos_goes_through_the_account_book_and_the_qos_limits(ctld):
    """A pending job's account and QoS are re-checked as its owner's submission: membership, allowed QoS, MaxSubmit."""
    import pwd

    from crane_kernel.auth_types import Identity
    from crane_kernel.ctld.acctmodel import Account, Qos

    alice = pwd.getpwnam("daemon")
    h = ctld({"Accounting": {"Enforce": ["associations", "qos", "limits"]}})
    h.register_all()
    book = h.ctl.accounts
    book.add_qos(Qos("normal"), "root")
    book.add_qos(Qos("tiny", max_submit_jobs_per_user=1), "root")
    book.add_account(Account("physics", allowed_qos=["normal", "tiny"], default_qos="normal"), "root")
    book.add_account(Account("chem", allowed_qos=["normal"], default_qos="normal"), "root")
    book.add_user(alice.pw_name, "physics", "root")
    me = Identity(alice.pw_uid, alice.pw_name)
    admin = Identity(0, "root", "root")
    spec = {"script": "#!/bin/bash\ntrue\n", "cwd": "/tmp", "hold": True}
    first, second = h.ctl.submit([dict(spec), dict(spec)], me)
    assert h.ctl.jobs[first].qos == "normal"
    done, failed = h.ctl.update_jobs([first], admin, "account", "chem")        # she is not in chem, even for root
    assert not done and "not in account 'chem'" in failed[0][1] and h.ctl.jobs[first].account == "physics"
    assert h.ctl.update_jobs([first], me, "qos", "tiny") == ([first], [])
    assert h.ctl.jobs[first].qos == "tiny"
    done, failed = h.ctl.update_jobs([second], me, "qos", "tiny")                # MaxSubmitJobsPerUser 1
    assert not done and failed and h.ctl.jobs[second].qos == "normal"
    assert h.ctl.update_jobs([first], me, "qos", "normal") == ([first], [])     # counted back under normal
    assert h.ctl.update_jobs([second], me, "qos", "tiny") == ([second], [])


# ---------------------------------------------------------------------------------------------
# automatic requeue after a node failure: the same path, the lifecycle plugin's rules
# ---------------------------------------------------------------------------------------------
def test_node_failure_requeues_by_the_jobs_own_flags_and_the_requeue_count(tmp_path):
    from crane_common.states import EC_CRANED_DOWN

    rig = Rig(str(tmp_path / "a.db"), MaxRequeueCount=1)                 # JobRequeue off
    rig.all_up()
    asks = rig.start(nodelist=["cn01"], requeue=True)                    # --requeue
    rig.timeout("cn02", "cn03")                                          # cn01 is lost
    assert asks.state == JobState.Pending and asks.reason == "NodeDown"
    rig.clock.t += 1
    rig.beat("cn01")                                                     # cn01 is back: the old run is gone
    rig.cycle()
    assert asks.state == JobState.Configuring and asks.epoch == 2        # its second launch
    rig.feed(m.StepStatus(node=asks.head_node, job_id=asks.job_id, state="running", epoch=asks.epoch))
    epoch = asks.epoch
    requeue(rig, asks)                                                   # a manual requeue is a launch too
    rig.feed(m.StepStatus(node="cn01", job_id=asks.job_id, state="finished", exit_code=EC_TERMINATED, epoch=epoch))
    rig.cycle()
    rig.feed(m.StepStatus(node=asks.head_node, job_id=asks.job_id, state="running", epoch=asks.epoch))
    assert asks.epoch == 3
    rig.timeout("cn02", "cn03")                                          # beyond MaxRequeueCount now
    assert asks.state == JobState.Failed and asks.exit_code == EC_CRANED_DOWN

    rig = Rig(str(tmp_path / "b.db"), requeue=True)                      # JobRequeue on
    rig.all_up()
    never = rig.start(nodelist=["cn01"], no_requeue=True)                # --no-requeue
    other = rig.start(nodelist=["cn01"])
    rig.timeout("cn02", "cn03")
    assert never.state == JobState.Failed and other.state == JobState.Pending
