"""End to end: crashes and restarts never lose a job, and nodes that vanish are handled."""

from __future__ import annotations

import time

import pytest
from crane_common.states import EC_CRANED_DOWN, JobState
from crane_e2e import Cluster, make_cluster

pytestmark = pytest.mark.e2e


@pytest.fixture()
def fresh():
    lc = make_cluster()
    lc.start()
    try:
        yield Cluster(lc)
    finally:
        lc.stop()


def test_kill9_controller_keeps_every_job(fresh):
    c = fresh
    running = [c.cbatch("-c", "2", "-w", f"cn0{i}", "--wrap", f"sleep 3; exit {i}") for i in (1, 2, 3)]
    for jid in running:
        c.wait_running(jid)
    pending = [c.cbatch("-c", "2", "--wrap", "exit 7") for _ in range(4)]
    held = c.cbatch("-H", "--wrap", "true")
    c.lc.kill_ctld()                       # kill -9 mid-job
    time.sleep(0.5)
    c.lc.start_ctld()
    c.client = c.lc.client()
    for jid in pending + [held]:
        assert c.job(jid) is not None, f"pending job {jid} lost"
    assert c.job(held).pending_reason in ("Held", "")
    for i, jid in zip((1, 2, 3), running, strict=True):
        info = c.wait_done(jid, timeout=30)
        assert info.status == JobState.Failed and info.exit_code == i, info
    for jid in pending:
        info = c.wait_done(jid, timeout=30)
        assert info.exit_code == 7
    assert c.job(held).status == JobState.Pending


def test_kill9_craned_mid_job_job_finishes_with_true_exit_code(fresh):
    c = fresh
    jid = c.cbatch("-w", "cn02", "--wrap", "sleep 3; exit 5")
    c.wait_running(jid)
    c.lc.kill_craned("cn02")               # the supervisor survives
    time.sleep(1.0)
    c.lc.start_craned("cn02")
    info = c.wait_done(jid, timeout=30)
    assert info.status == JobState.Failed and info.exit_code == 5


def test_job_finishing_while_craned_is_down_is_reported_after_restart(fresh):
    c = fresh
    jid = c.cbatch("-w", "cn03", "--wrap", "sleep 1; exit 4")
    c.wait_running(jid)
    c.lc.kill_craned("cn03")
    time.sleep(2.0)                        # the job ends while its craned is dead
    c.lc.start_craned("cn03")
    info = c.wait_done(jid, timeout=30)
    assert info.exit_code == 4


def test_node_missing_heartbeats_goes_down_and_its_jobs_end_node_down(fresh):
    c = fresh
    jid = c.cbatch("-w", "cn01", "--wrap", "sleep 60")
    c.wait_running(jid)
    c.lc.kill_craned("cn01")
    info = c.wait_done(jid, timeout=20)    # CranedTimeout is 4 s in tests
    assert info.status == JobState.Failed and info.exit_code == EC_CRANED_DOWN
    nodes = {n.name: n for n in c.client.nodes()}
    assert nodes["cn01"].resource_state == "down"
    out = c.run("cinfo").stdout
    assert "down" in out
    # the node comes back: the orphaned step is stopped, the node is usable again
    c.lc.start_craned("cn01")
    c.lc.wait_nodes_up(3)
    again = c.cbatch("-w", "cn01", "--wrap", "true")
    assert c.wait_done(again).status == JobState.Completed


def test_requeue_on_node_down_when_enabled():
    lc = make_cluster(CraneCtld={"JobRequeue": True})
    lc.start()
    try:
        c = Cluster(lc)
        jid = c.cbatch("-N", "1", "-x", "cn02,cn03", "--wrap", "sleep 30")
        c.wait_running(jid)
        lc.kill_craned("cn01")
        # ends up pending again (no other node allowed), not failed
        c.wait_state(jid, lambda i: i.status == JobState.Pending, timeout=20)
        lc.start_craned("cn01")
        c.wait_running(jid, timeout=30)
        c.client.cancel([jid])
    finally:
        lc.stop()
