"""The reconciliation rules: what nodes report they run against what the controller believes, held resources.

A real :class:`Controller` (real state store, the ``fifo`` scheduler plugin) is driven with the bus
messages nodes would send; the clock is ours.
"""

from __future__ import annotations

from typing import Any

import pytest
from crane_common.states import EC_CRANED_DOWN, EC_EXEC_ERR, JobState
from crane_kernel import messages as m
from crane_kernel.ctld import reconcile as rc
from ctlrig import ALICE, ROOT, Clock, Rig


@pytest.fixture()
def rig(tmp_path: Any) -> Rig:
    r = Rig(str(tmp_path / "state.db"))
    r.all_up()
    return r


# ---------------------------------------------------------------------------------------------
# pure rules
# ---------------------------------------------------------------------------------------------
def test_step_map_takes_triples_or_ids_and_drops_garbage():
    assert rc.step_map([(5, 1, 2), [6, 1, 3], 7, ("x",), None, (8,)]) == {5: 2, 6: 3, 7: 0, 8: 0}
    assert rc.step_map(None) == {}
    assert rc.same_launch(0, 4) and rc.same_launch(4, 0) and rc.same_launch(4, 4) and not rc.same_launch(3, 4)


def test_node_index_is_rebuilt_when_stale():
    class J:
        def __init__(self, jid: int, head: str) -> None:
            self.job_id, self.head_node = jid, head

    recon = rc.Reconciler()
    running = {1: J(1, "a"), 2: J(2, "b")}
    assert [j.job_id for j in recon.jobs_headed_on("a", running, 100.0)] == [1]
    running[3] = J(3, "a")
    assert [j.job_id for j in recon.jobs_headed_on("a", running, 100.5)] == [1]     # seen at a later report
    del running[1]
    assert [j.job_id for j in recon.jobs_headed_on("a", running, 100.5)] == []      # ended ones never
    assert [j.job_id for j in recon.jobs_headed_on("a", running, 101.6)] == [3]


def test_confirmation_needs_a_trace_only_from_the_head_of_an_unconfirmed_launch():
    held = rc.Held(job_id=9, epoch=1, nodes=("a", "b"), head="a", waiting={"a", "b"}, launched=False)
    assert not rc.confirms(held, "a", {9: 1}, {})       # still runs there
    assert rc.confirms(held, "b", {}, {})               # nothing was ever sent to b
    fresh = rc.Held(job_id=9, epoch=1, nodes=("a",), head="a", waiting={"a"}, launched=False)
    assert not rc.confirms(fresh, "a", {}, {})          # the launch may still be queued for a
    assert rc.confirms(fresh, "a", {}, {9: 0})          # a has seen the job: its directory ended
    started = rc.Held(job_id=9, epoch=1, nodes=("a",), head="a", waiting={"a"}, launched=True)
    assert rc.confirms(started, "a", {}, {})
    again = rc.Held.from_json(9, started.to_json())
    assert (again.nodes, again.waiting, again.launched, again.epoch) == (("a",), {"a"}, True, 1)


# ---------------------------------------------------------------------------------------------
# a step the controller thinks runs but the node does not
# ---------------------------------------------------------------------------------------------
def test_supervisor_gone_without_status_ends_the_job(rig):
    job = rig.start(nodelist=["cn01"])
    rig.beat("cn01", steps=[(job.job_id, 1, job.epoch)])
    assert job.state == JobState.Running
    rig.beat("cn01", ended=[(job.job_id, 1, job.epoch)])      # its directory, no supervisor, no status
    assert job.state == JobState.Failed and job.exit_code == EC_CRANED_DOWN
    assert job.reason == rc.REASON_SUPERVISOR_LOST
    assert [f.job_id for f in rig.to("cn01", m.FreeJob)] == [job.job_id]
    assert rig.cpus_free("cn01") == 2


def test_a_final_status_before_the_heartbeat_wins(rig):
    job = rig.start(nodelist=["cn01"])
    rig.feed(m.StepStatus(node="cn01", job_id=job.job_id, state="finished", exit_code=3, epoch=job.epoch),
             m.NodeHeartbeat(node="cn01", ended=[(job.job_id, 1, job.epoch)]))
    assert job.state == JobState.Failed and job.exit_code == 3 and job.reason == ""


def test_the_supervisors_own_failure_report_is_kept(rig):
    job = rig.start(nodelist=["cn01"])
    rig.feed(m.StepStatus(node="cn01", job_id=job.job_id, state="finished", exit_code=EC_EXEC_ERR, epoch=job.epoch,
                          reason="step supervisor failed: RuntimeError: boom"))
    assert job.state == JobState.Failed and "RuntimeError: boom" in job.reason


def test_node_without_any_trace_of_a_running_job_lost_it(rig):
    job = rig.start(nodelist=["cn02"])
    rig.beat("cn02")
    assert job.state == JobState.Failed and job.reason == rc.REASON_NODE_LOST_JOB
    assert rig.cpus_free("cn02") == 2


def test_unconfirmed_launch_is_not_ended_by_a_heartbeat(rig):
    jid = rig.submit(nodelist=["cn01"])
    rig.cycle()
    job = rig.ctl.jobs[jid]
    rig.beat("cn01")                                          # the launch is still on its way
    assert job.state == JobState.Configuring
    rig.beat("cn01", steps=[(jid, 1, job.epoch)])             # being started: listed
    assert job.state == JobState.Configuring
    rig.beat("cn01", ended=[(jid, 1, job.epoch)])             # the supervisor died before reporting
    assert job.state == JobState.Failed and job.reason == rc.REASON_SUPERVISOR_LOST


def test_older_craned_reporting_only_job_ids_loses_nothing(rig):
    job = rig.start(nodelist=["cn01"])
    rig.feed(m.NodeHeartbeat(node="cn01", running=[job.job_id]))
    assert job.state == JobState.Running
    assert not rig.to("cn01", m.TerminateStep)


# ---------------------------------------------------------------------------------------------
# a step the node runs but the controller ended
# ---------------------------------------------------------------------------------------------
def test_unknown_ended_and_stale_steps_are_killed_with_their_epoch(rig):
    done = rig.start(nodelist=["cn03"])
    rig.feed(m.StepStatus(node="cn03", job_id=done.job_id, state="finished", exit_code=0, epoch=done.epoch))
    live = rig.start(nodelist=["cn03"])
    rig.beat("cn03", steps=[(999, 1, 4), (done.job_id, 1, done.epoch), (live.job_id, 1, live.epoch),
                            (live.job_id + 1000, 1, 0)], ended=[(555, 1, 2)])
    kills = {(t.job_id, t.epoch, t.reason) for t in rig.to("cn03", m.TerminateStep)}
    assert kills == {(999, 4, "orphan"), (done.job_id, done.epoch, "orphan"), (live.job_id + 1000, 0, "orphan")}
    assert 555 in {f.job_id for f in rig.to("cn03", m.FreeJob)}   # a directory left for an unknown job
    assert live.state == JobState.Running
    rig.sent.clear()
    rig.beat("cn03", steps=[(live.job_id, 1, live.epoch + 7)])   # another launch than the one that runs
    assert (live.job_id, live.epoch + 7, "orphan") in {(t.job_id, t.epoch, t.reason)
                                                       for t in rig.to("cn03", m.TerminateStep)}
    assert live.state == JobState.Failed and live.reason == rc.REASON_NODE_LOST_JOB
    assert rig.cpus_free("cn03") == 1                         # held while that step still runs
    rig.beat("cn03")
    assert rig.cpus_free("cn03") == 2


# ---------------------------------------------------------------------------------------------
# a DOWN node keeps its jobs' resources until their processes are confirmed gone
# ---------------------------------------------------------------------------------------------
def test_down_node_holds_resources_until_it_stops_listing_the_step(rig):
    job = rig.start(nodelist=["cn01"], cpus_per_task=2)
    rig.beat("cn01", steps=[(job.job_id, 1, job.epoch)])
    rig.timeout("cn02", "cn03")
    assert job.state == JobState.Failed and job.exit_code == EC_CRANED_DOWN   # users see it ended ...
    assert not rig.ctl.nodes["cn01"].alive and rig.cpus_free("cn01") == 0    # ... its CPUs stay held
    nxt = rig.submit(nodelist=["cn01"], cpus_per_task=2, script="#!/bin/bash\ntrue\n")
    rig.feed(m.NodeRegister(node="cn01", cpus=2, mem=1 << 30, running=[job.job_id],
                            steps=[(job.job_id, 1, job.epoch)]))           # back, the orphan still runs
    assert (job.job_id, job.epoch, "orphan") in {(t.job_id, t.epoch, t.reason) for t in rig.to("cn01", m.TerminateStep)}
    rig.cycle()
    assert rig.ctl.jobs[nxt].state == JobState.Pending and rig.cpus_free("cn01") == 0
    rig.beat("cn01", ended=[(job.job_id, 1, job.epoch)])                  # the orphan is gone
    assert rig.cpus_free("cn01") == 2 and job.job_id not in rig.ctl.recon.held
    rig.cycle()
    assert rig.ctl.jobs[nxt].state == JobState.Configuring


def test_final_status_from_the_down_head_releases_the_held_resources(rig):
    job = rig.start(node_num=2, nodelist=["cn01", "cn02"], cpus_per_task=2)
    head = job.head_node
    other = "cn02" if head == "cn01" else "cn01"
    rig.beat(head, steps=[(job.job_id, 1, job.epoch)])
    rig.timeout(other, "cn03")
    rig.beat(other)
    assert job.state == JobState.Failed and rig.cpus_free(other) == 0
    rig.feed(m.StepStatus(node=head, job_id=job.job_id, state="finished", exit_code=0, epoch=job.epoch + 1))
    assert rig.cpus_free(other) == 0                          # another launch's status proves nothing
    rig.feed(m.StepStatus(node=head, job_id=job.job_id, state="finished", exit_code=0, epoch=job.epoch))
    assert rig.cpus_free(other) == 2 and job.state == JobState.Failed   # the verdict stands; resources free


def test_multi_node_job_holds_the_live_nodes_while_its_head_is_down(rig):
    job = rig.start(node_num=2, nodelist=["cn01", "cn02"], cpus_per_task=2)
    head = job.head_node
    other = "cn02" if head == "cn01" else "cn01"
    rig.beat(head, steps=[(job.job_id, 1, job.epoch)])
    rig.timeout(other, "cn03")
    assert job.state == JobState.Failed
    assert rig.cpus_free(other) == 0                          # the head may still run the script
    rig.beat(other)                                           # nothing of it runs on the other node ...
    assert rig.cpus_free(other) == 0                          # ... but all is released together
    rig.feed(m.NodeRegister(node=head, cpus=2, mem=1 << 30))  # the head restarted without it
    assert rig.cpus_free(other) == 2 and rig.cpus_free(head) == 2


def test_requeued_job_waits_for_its_old_processes(tmp_path):
    r = Rig(str(tmp_path / "state.db"), requeue=True)
    r.all_up()
    job = r.start(nodelist=["cn01"])
    r.beat("cn01", steps=[(job.job_id, 1, job.epoch)])
    r.timeout("cn02", "cn03")
    assert job.state == JobState.Pending and job.reason == rc.REASON_NODE_DOWN
    assert job.job_id not in r.ctl.pending                    # not eligible yet
    r.beat("cn01", steps=[(job.job_id, 1, job.epoch)])        # back; the old run still runs: killed
    assert job.job_id not in r.ctl.pending and r.to("cn01", m.TerminateStep)
    r.beat("cn01")
    assert job.job_id in r.ctl.pending and job.reason == ""
    r.cycle()
    assert job.state == JobState.Configuring and job.epoch == 2


def test_job_lost_before_its_launch_was_confirmed_needs_a_trace(rig):
    jid = rig.submit(nodelist=["cn01"])
    rig.cycle()
    job = rig.ctl.jobs[jid]
    rig.timeout("cn02", "cn03")                               # cn01 never took the launch in
    assert job.state == JobState.Failed and rig.cpus_free("cn01") == 1
    rig.feed(m.NodeRegister(node="cn01", cpus=2, mem=1 << 30))  # no trace: the launch may still be queued
    assert rig.cpus_free("cn01") == 1
    fences = [t for t in rig.to("cn01", m.TerminateStep) if t.job_id == jid]
    assert [(t.epoch, t.reason) for t in fences] == [(job.epoch, "node")]
    rig.beat("cn01")
    assert rig.cpus_free("cn01") == 1 and len([t for t in rig.to("cn01", m.TerminateStep) if t.job_id == jid]) == 1
    rig.beat("cn01", ended=[(jid, 1, 0)])                     # the TerminateStep left its mark
    assert rig.cpus_free("cn01") == 2
    assert jid in {f.job_id for f in rig.to("cn01", m.FreeJob)}


def test_cancel_while_the_head_is_down_keeps_the_resources_held(rig):
    job = rig.start(nodelist=["cn02"], cpus_per_task=2)
    rig.ctl.nodes["cn02"].alive = False                       # e.g. just after a controller restart
    done, _ = rig.ctl.cancel([job.job_id], ROOT)
    assert done == [job.job_id] and job.state == JobState.Cancelled
    assert rig.cpus_free("cn02") == 0
    rig.beat("cn02")
    assert rig.cpus_free("cn02") == 2


def test_held_resources_survive_a_controller_restart(tmp_path):
    clock = Clock()
    path = str(tmp_path / "state.db")
    r = Rig(path, requeue=True, clock=clock)
    r.all_up()
    lost = r.start(nodelist=["cn01"], requeue=True)
    failed = r.start(nodelist=["cn01"], no_requeue=True)
    r.beat("cn01", steps=[(lost.job_id, 1, lost.epoch), (failed.job_id, 1, failed.epoch)])
    r.timeout("cn02", "cn03")
    assert lost.state == JobState.Pending and failed.state == JobState.Failed
    r.store.close()
    again = Rig(path, requeue=True, clock=clock)               # kill -9 and restart of cranectld
    assert again.cpus_free("cn01") == 0
    assert set(again.ctl.recon.held) == {lost.job_id, failed.job_id}
    assert lost.job_id not in again.ctl.pending
    again.all_up()
    assert again.cpus_free("cn01") == 2 and lost.job_id in again.ctl.pending


def test_only_an_admin_confirms_a_node_powered_off(rig):
    job = rig.start(nodelist=["cn03"], cpus_per_task=2)
    rig.beat("cn03", steps=[(job.job_id, 1, job.epoch)])
    rig.timeout("cn01", "cn02")
    assert rig.cpus_free("cn03") == 0
    ok, bad = rig.ctl.confirm_node_down(["cn03", "nosuch"], "powered off", ALICE)
    assert ok == [] and [b[1] for b in bad] == ["Permission denied", "no such node"]
    assert rig.cpus_free("cn03") == 0
    ok, bad = rig.ctl.confirm_node_down(["cn03"], "powered off", ROOT)
    assert ok == ["cn03"] and not bad and rig.cpus_free("cn03") == 2


def test_admin_down_of_a_live_node_ends_its_jobs_now(rig):
    job = rig.start(nodelist=["cn02"])
    ok, _ = rig.ctl.confirm_node_down(["cn02"], "power supply failed", ROOT)
    assert ok == ["cn02"] and not rig.ctl.nodes["cn02"].alive
    assert job.state == JobState.Failed and "power supply failed" in job.reason
    assert rig.cpus_free("cn02") == 2


def test_malformed_reports_are_refused_or_ignored(rig):
    from crane_kernel.errors import BusMessageError

    with pytest.raises(BusMessageError):       # the bus dead-letters it; the controller never sees it
        m.decode(b'{"kind":"node_heartbeat","node":"cn01","steps":[["a",1,2]]}')
    job = rig.start(nodelist=["cn01"])
    rig.beat("nosuch", steps=[(job.job_id, 1, job.epoch)])   # an unknown node: ignored
    rig.feed(m.NodeRegister(node="cn01", cpus=2, mem=1 << 30, steps=[(job.job_id, 1, job.epoch)],
                            finished=[{"job_id": "x"}]))       # a bad finished record: skipped
    assert job.state == JobState.Running and not rig.to("nosuch", m.TerminateStep)


def test_a_node_lost_with_many_jobs_journals_the_held_table_once_and_it_survives_a_restart(tmp_path):
    from crane_kernel.ctld.reconcile import META_KEY

    path = str(tmp_path / "state.db")
    r = Rig(path, requeue=True)
    r.all_up()
    jobs = [r.start(partition="debug", cpus_per_task=0.25, nodelist=["cn01"]) for _ in range(8)]
    assert all(j.head_node == "cn01" for j in jobs)
    writes = []
    real = r.store.write

    def counting(*a, **kw):
        if META_KEY in (kw.get("meta") or {}):
            writes.append(1)
        return real(*a, **kw)

    r.store.write = counting
    r.timeout("cn02", "cn03")  # cn01 stops reporting: its 8 jobs are held until it confirms
    assert len(writes) == 1, len(writes)
    assert set(r.ctl.recon.held) == {j.job_id for j in jobs}
    r.store.close()
    again = Rig(path, requeue=True, clock=r.clock)
    assert set(again.ctl.recon.held) == {j.job_id for j in jobs}
