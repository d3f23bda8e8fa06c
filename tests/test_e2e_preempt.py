"""End to end: preemption by partition priority with real daemons (cranectld, craned, supervisors, cgroups).

One node (cn01, 2 CPUs) is shared by three low-priority partitions, one per mode, and a high one:
a high job that needs the whole node preempts the low job running there.
"""

from __future__ import annotations

import os
import time

import pytest
from crane_common.states import JobState
from crane_e2e import cgroups_writable, ensure_user, run_as, running_cluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups, users)")

GRACE = 2.0
PARTS = [
    {"name": "lowrq", "nodes": "cn01", "priority": 1, "PreemptMode": "REQUEUE"},
    {"name": "lowcancel", "nodes": "cn01", "priority": 1, "PreemptMode": "CANCEL"},
    {"name": "lowsusp", "nodes": "cn01", "priority": 1, "PreemptMode": "SUSPEND"},
    {"name": "high", "nodes": "cn01", "priority": 10},
    {"name": "debug", "nodes": "ALL", "priority": 1},
]


@pytest.fixture(scope="module")
def cluster():
    """A cluster whose cn01 is shared by the partitions above; victims get GRACE seconds after their SIGTERM."""
    with running_cluster(Partitions=PARTS, CraneCtld={"PreemptGraceTime": GRACE}) as c:
        yield c


def _lines(cluster, name):
    path = os.path.join(cluster.workdir, name)
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return fh.read().split()


def _wait_lines(cluster, name, pred, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = _lines(cluster, name)
        if pred(lines):
            return lines
        time.sleep(0.1)
    raise AssertionError(f"{name}: {_lines(cluster, name)}")


def test_a_preempted_job_is_requeued_and_finishes_later(cluster):
    low = cluster.cbatch("-p", "lowrq", "-c", "2", "-o", "rq-%j.out", "--wrap",
                         "echo run >> rq.log; sleep 4; echo done >> rq.log")
    cluster.wait_running(low)
    _wait_lines(cluster, "rq.log", lambda lines: lines == ["run"])
    high = cluster.cbatch("-p", "high", "-c", "2", "-o", "hi-%j.out", "--wrap", "echo high >> rq.log; sleep 1")
    info = cluster.wait_state(low, lambda i: i.status == JobState.Pending, timeout=GRACE + 20)
    assert info.preempted_by == str(high)
    cluster.wait_done(high)
    done = cluster.wait_done(low, timeout=60)
    # the same job ran twice: cut short once, then to its end after the preemptor
    assert JobState(done.status) == JobState.Completed
    assert done.requeue_count == 1 and done.preempted_by == str(high)
    assert _lines(cluster, "rq.log") == ["run", "high", "run", "done"]
    show = cluster.run("ccontrol", "show", "job", str(low))
    assert show.returncode == 0 and f"PreemptedBy={high}" in show.stdout


def test_cancel_mode_ends_the_victim_with_its_reason_after_the_grace(cluster):
    low = cluster.cbatch("-p", "lowcancel", "-c", "2", "-o", "cn-%j.out", "--wrap",
                         "trap 'echo term >> cancel.log' TERM; echo up >> cancel.log; "
                         "for i in $(seq 300); do sleep 0.1; done")
    cluster.wait_running(low)
    _wait_lines(cluster, "cancel.log", lambda lines: "up" in lines)
    t0 = time.time()
    high = cluster.cbatch("-p", "high", "-c", "2", "-o", "hc-%j.out", "--wrap", "sleep 1")
    # the victim is told first (SIGTERM, which it traps), and ended once the grace is over
    _wait_lines(cluster, "cancel.log", lambda lines: "term" in lines)
    info = cluster.job(low)
    assert info.status == JobState.Running
    waiting = cluster.job(high)
    assert waiting.status == JobState.Pending and waiting.pending_reason == "WaitingForPreemption"
    ended = cluster.wait_done(low, timeout=GRACE + 20)
    assert time.time() - t0 >= GRACE
    assert JobState(ended.status) == JobState.Cancelled and ended.pending_reason == "Preempted"
    assert ended.preempted_by == str(high)
    assert JobState(cluster.wait_done(high).status) == JobState.Completed
    out = cluster.run("cqueue", "-t", "all", "-j", str(low), "-o", "%j %t %R")
    assert out.returncode == 0 and "Preempted" in out.stdout, out.stdout + out.stderr


@pytest.mark.skipif(not cgroups_writable(), reason="needs writable cgroup v1 controllers (the freezer)")
def test_suspend_mode_freezes_the_victim_and_resumes_it(cluster):
    low = cluster.cbatch("-p", "lowsusp", "-c", "2", "-o", "su-%j.out", "--wrap",
                         "for i in $(seq 400); do echo $i >> susp.log; sleep 0.1; done")
    cluster.wait_running(low)
    _wait_lines(cluster, "susp.log", lambda lines: len(lines) >= 3)
    high = cluster.cbatch("-p", "high", "-c", "2", "-o", "hs-%j.out", "--wrap", "sleep 3")
    # the preemptor runs at once, on the CPUs the frozen job lent it
    cluster.wait_running(high, timeout=15)
    info = cluster.wait_state(low, lambda i: i.status == JobState.Suspended)
    assert info.pending_reason == "Preempted" and info.preempted_by == str(high)
    time.sleep(0.5)  # let a write that was under way land
    frozen = len(_lines(cluster, "susp.log"))
    time.sleep(1.5)
    assert len(_lines(cluster, "susp.log")) == frozen  # not one more line while it is frozen
    cluster.wait_done(high)
    cluster.wait_state(low, lambda i: i.status == JobState.Running, timeout=15)
    _wait_lines(cluster, "susp.log", lambda lines: len(lines) > frozen + 3)
    cluster.client.cancel([low])
    cluster.wait_done(low)


# -- by QoS, with the account database enforced, as real unprivileged users ---------------------------------

ALICE, BOB = "crane_e2e_alice", "crane_e2e_bob"


@pytest.fixture(scope="module")
def qos_cluster():
    """One node; QoS ``high`` may preempt ``low`` (CANCEL); bob may use ``low`` only, alice ``high`` too."""
    ensure_user(ALICE)
    ensure_user(BOB)
    with running_cluster(nodes=1, cpus=2, Accounting={"Enforce": ["associations", "qos"]}) as c:
        for args in (("add", "qos", "low", "PreemptMode=CANCEL"), ("add", "qos", "high", "Preempt=low"),
                     ("add", "account", "batch", "QosList=low", "DefaultQos=low"),
                     ("add", "account", "urgent", "QosList=high,low", "DefaultQos=high"),
                     ("add", "user", BOB, "Account=batch"), ("add", "user", ALICE, "Account=urgent")):
            proc = c.run("cacctmgr", *args)
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        yield c


def _as(cluster, name, *args):
    pw = ensure_user(name)
    return run_as(cluster, pw, *args, token=cluster.lc.token(pw.pw_name, pw.pw_uid))


def _submitted(proc):
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip().rstrip(".").split()[-1])


def test_qos_preemption_and_a_user_cannot_claim_a_preempting_qos(qos_cluster):
    c = qos_cluster
    wd = c.workdir
    low = _submitted(_as(c, BOB, "cbatch", "-c", "2", "-D", wd, "-o", "b-%j.out", "--wrap", "sleep 60"))
    c.wait_running(low)
    # bob names the preempting QoS: refused at submission (one line, an error exit), his job untouched
    claim = _as(c, BOB, "cbatch", "-q", "high", "-c", "2", "-D", wd, "-o", "b-%j.out", "--wrap", "true")
    assert claim.returncode != 0 and "high" in claim.stderr and len(claim.stderr.strip().splitlines()) == 1
    time.sleep(1.5)
    assert c.job(low).status == JobState.Running
    # alice's QoS may preempt bob's: his job ends Cancelled, reason Preempted, and hers runs
    high = _submitted(_as(c, ALICE, "cbatch", "-c", "2", "-D", wd, "-o", "a-%j.out", "--wrap", "sleep 1"))
    ended = c.wait_done(low, timeout=20)
    assert JobState(ended.status) == JobState.Cancelled and ended.pending_reason == "Preempted"
    assert ended.preempted_by == str(high) and ended.qos == "low"
    assert JobState(c.wait_done(high).status) == JobState.Completed
