"""End to end: what a node runs and what the controller believes agree, and resources are never double-booked.

* A node that goes DOWN while its job's processes survive (``kill -9`` of ``craned``; the step
  supervisor lives on) keeps the job's resources held, on that node and on the other nodes of a
  multi-node job, until the node confirms the processes are gone (or an admin says it is powered
  off); a requeued job starts again only then.
* A step supervisor that fails (a runtime raising inside ``crane_step_wait``, or ``kill -9``)
  never leaves its job Running: it reports a final status, or the node's heartbeats stop listing
  the step and the controller ends it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import faulty_runtime
import pytest
from crane_common.states import EC_CRANED_DOWN, FINAL_STATES, JobState
from crane_e2e import Cluster, ensure_user, make_cluster

pytestmark = pytest.mark.e2e

TIMEOUT = 3          # CranedTimeout of these clusters (seconds)
KILL_WAIT = 2        # KillWait: a step that ignores SIGTERM lives this long after a kill starts
# A job that survives SIGTERM (only SIGKILL, after KillWait, ends it) and records its pid.
STUBBORN = "echo $$ >> {pids}; trap '' TERM; sleep 300"


def _cluster(**overrides: Any) -> Any:
    return make_cluster(CraneCtld={"CranedTimeout": TIMEOUT, **overrides.pop("CraneCtld", {})},
                        Craned={"PingInterval": 0.5, "KillWait": KILL_WAIT}, **overrides)


@pytest.fixture()
def fresh() -> Iterator[Cluster]:
    """A 3-node cluster (2 CPUs each) with a short CranedTimeout, for one test."""
    lc = _cluster()
    lc.start()
    try:
        yield Cluster(lc)
    finally:
        lc.stop()


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return False
    return data[data.rindex(")") + 2] != "Z"


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``pred`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def pids(c: Cluster, name: str) -> list[int]:
    """The pids a STUBBORN job recorded in the work-directory file ``name``."""
    try:
        return [int(x) for x in c.output(name).split()]
    except (OSError, ValueError):
        return []


def cpu_alloc(c: Cluster, node: str) -> float:
    """CPUs the controller counts as allocated on ``node``."""
    return {n.name: n.cpu_alloc for n in c.client.nodes()}[node]


def node_state(c: Cluster, node: str) -> str:
    """The node's resource state as cinfo shows it."""
    return {n.name: n.resource_state for n in c.client.nodes()}[node]


def head_node(c: Cluster, job_id: int) -> str:
    """The node whose craned runs the job's step (its job directory has a supervisor)."""
    def find() -> str | None:
        for node in c.lc.node_names:
            if os.path.exists(os.path.join(c.lc.base_dir, "craned", node, "jobs", str(job_id), "sup.json")):
                return node
        return None
    return wait_for(find, 10, f"the job directory of job {job_id}")


def supervisor_pid(c: Cluster, node: str, job_id: int) -> int:
    """The pid of the job's step supervisor on ``node``."""
    with open(os.path.join(c.lc.base_dir, "craned", node, "jobs", str(job_id), "sup.json")) as fh:
        return int(json.load(fh)["pid"])


def assert_stays_pending_while(c: Cluster, job_id: int, cond: Callable[[], bool], timeout: float, what: str) -> None:
    """While ``cond()`` holds, job ``job_id`` must stay Pending; wait (up to ``timeout``) for ``cond`` to end."""
    deadline = time.time() + timeout
    while cond():
        info = c.job(job_id)
        assert info.status == JobState.Pending, \
            f"job {job_id} left Pending ({JobState(info.status).name}) while {what}"
        assert time.time() < deadline, f"{what} for more than {timeout:g}s"
        time.sleep(0.02)


# ----------------------------------------------------------------------------------------------
# bug 1: a DOWN node keeps its jobs' resources until their processes are confirmed gone
# ----------------------------------------------------------------------------------------------
def test_kill9_craned_keeps_cpus_until_the_orphan_is_gone(fresh):
    c = fresh
    old = c.cbatch("-c", "2", "-w", "cn01", "--wrap", STUBBORN.format(pids="k1.pids"))
    c.wait_running(old)
    (pid,) = wait_for(lambda: pids(c, "k1.pids"), 10, "the job's pid")
    c.lc.kill_craned("cn01")                       # kill -9: the step supervisor and the job live on
    new = c.cbatch("-c", "2", "-w", "cn01", "--wrap", "true")
    info = c.wait_done(old, timeout=TIMEOUT + 10)  # CranedTimeout passes: the job is lost ...
    assert info.status == JobState.Failed and info.exit_code == EC_CRANED_DOWN, info
    assert alive(pid)                              # ... but its process still runs,
    assert node_state(c, "cn01") == "down"
    assert cpu_alloc(c, "cn01") == 2               # so its CPUs stay held
    c.lc.start_craned("cn01")                      # the node comes back: the orphan is killed first
    assert_stays_pending_while(c, new, lambda: alive(pid), timeout=30, what="the old job's process runs")
    assert c.wait_done(new, timeout=30).status == JobState.Completed
    assert cpu_alloc(c, "cn01") == 0


def test_multi_node_job_keeps_its_other_nodes_until_the_head_confirms(fresh):
    c = fresh
    old = c.cbatch("-N", "2", "-c", "2", "-w", "cn01,cn02", "--wrap", STUBBORN.format(pids="k2.pids"))
    c.wait_running(old)
    (pid,) = wait_for(lambda: pids(c, "k2.pids"), 10, "the job's pid")
    head = head_node(c, old)
    other = "cn02" if head == "cn01" else "cn01"
    c.lc.kill_craned(head)
    new = c.cbatch("-c", "2", "-w", other, "--wrap", "true")
    assert c.wait_done(old, timeout=TIMEOUT + 10).exit_code == EC_CRANED_DOWN
    # the head is DOWN and its step still runs: the job's CPUs on the live node stay held too
    until = time.time() + TIMEOUT
    assert_stays_pending_while(c, new, lambda: time.time() < until, timeout=TIMEOUT + 1,
                               what="the head node is down")
    assert alive(pid) and cpu_alloc(c, other) == 2
    c.lc.start_craned(head)
    assert_stays_pending_while(c, new, lambda: alive(pid), timeout=30, what="the old job's process runs")
    assert c.wait_done(new, timeout=30).status == JobState.Completed


def test_requeued_job_starts_again_only_once_its_old_processes_are_gone():
    lc = _cluster(CraneCtld={"JobRequeue": True})
    lc.start()
    try:
        c = Cluster(lc)
        assert c.client.drain(["cn02", "cn03"], "keep the first run on cn01").modified
        jid = c.cbatch("--wrap", STUBBORN.format(pids="rq.pids"))
        c.wait_running(jid)
        (first,) = wait_for(lambda: pids(c, "rq.pids"), 10, "the first run's pid")
        assert head_node(c, jid) == "cn01"
        assert c.client.resume(["cn02", "cn03"]).modified   # other nodes are free now
        lc.kill_craned("cn01")
        info = c.wait_state(jid, lambda i: i.status == JobState.Pending, timeout=TIMEOUT + 10)
        assert info.pending_reason == "NodeDown"
        # not started elsewhere while the first run may still be running on the lost node
        until = time.time() + TIMEOUT
        assert_stays_pending_while(c, jid, lambda: time.time() < until, timeout=TIMEOUT + 1,
                                   what="the node of its first run is down")
        assert alive(first) and len(pids(c, "rq.pids")) == 1
        lc.start_craned("cn01")
        assert_stays_pending_while(c, jid, lambda: alive(first), timeout=30, what="the first run's process runs")
        c.wait_running(jid, timeout=30)
        wait_for(lambda: len(pids(c, "rq.pids")) == 2, 10, "the second run")
        c.client.cancel([jid])
        c.wait_done(jid, timeout=30)
    finally:
        lc.stop()


def test_admin_confirms_a_powered_off_node(fresh):
    c = fresh
    old = c.cbatch("-c", "2", "-w", "cn03", "--wrap", STUBBORN.format(pids="po.pids"))
    c.wait_running(old)
    (pid,) = wait_for(lambda: pids(c, "po.pids"), 10, "the job's pid")
    sup = supervisor_pid(c, "cn03", old)
    c.lc.kill_craned("cn03")
    assert c.wait_done(old, timeout=TIMEOUT + 10).exit_code == EC_CRANED_DOWN
    assert cpu_alloc(c, "cn03") == 2
    for victim in (sup, pid):                      # the machine is switched off
        os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not alive(pid) and not alive(sup), 10, "the processes to die")
    # a reason is required, and only an admin may say so
    assert c.run("ccontrol", "update", "nodeName=cn03", "state=down").returncode == 2
    alice = ensure_user("crane_e2e_alice")
    a_env = {"CRANE_TOKEN": c.lc.token(alice.pw_name, alice.pw_uid)}
    proc = c.run("ccontrol", "update", "nodeName=cn03", "state=down", "reason=powered off", env=a_env)
    assert proc.returncode == 4 and "Permission denied" in proc.stderr
    assert cpu_alloc(c, "cn03") == 2
    proc = c.run("ccontrol", "update", "nodeName=cn03", "state=down", "reason=powered off")
    assert proc.returncode == 0, proc.stderr
    assert cpu_alloc(c, "cn03") == 0 and node_state(c, "cn03") == "down"
    c.lc.start_craned("cn03")
    c.lc.wait_nodes_up(3)
    again = c.cbatch("-c", "2", "-w", "cn03", "--wrap", "true")
    assert c.wait_done(again, timeout=30).status == JobState.Completed


# ----------------------------------------------------------------------------------------------
# bug 2: a failing step supervisor never leaves its job Running
# ----------------------------------------------------------------------------------------------
@pytest.fixture()
def faulty(tmp_path: Any) -> Iterator[Cluster]:
    """A cluster whose nodes load the ``faulty`` runtime (before ``cgroup``) through its entry point."""
    path = faulty_runtime.install(str(tmp_path / "plugins"))
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = path + (os.pathsep + saved if saved else "")
    lc = _cluster(Plugins={"Runtime": [faulty_runtime.NAME, "cgroup"]})
    try:
        lc.start()
        c = Cluster(lc)
        try:
            yield c
        finally:
            for pid in pids(c, "fw.pids"):    # the faulty runtime's steps are in no cgroup: not left behind
                if alive(pid):
                    os.killpg(pid, signal.SIGKILL)
    finally:
        lc.stop()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def test_supervisor_that_raises_while_waiting_reports_a_final_status(faulty):
    c = faulty
    jid = c.cbatch("-J", f"{faulty_runtime.MARKER}-1", "-w", "cn02", "--wrap", "echo $$ > fw.pids; sleep 300")
    (pid,) = wait_for(lambda: pids(c, "fw.pids"), 10, "the job's pid")
    info = c.wait_done(jid, timeout=10)
    assert info.status == JobState.Failed, info
    assert "RuntimeError" in info.pending_reason and "lost track of the step" in info.pending_reason, info
    wait_for(lambda: not alive(pid), 10, "the step's process to be killed")
    # the node is still usable: other steps (the cgroup runtime's) run normally
    ok = c.cbatch("-w", "cn02", "--wrap", "true")
    assert c.wait_done(ok).status == JobState.Completed


def test_kill9_of_a_step_supervisor_ends_its_job(faulty):
    c = faulty
    jid = c.cbatch("-w", "cn03", "--wrap", "echo $$ > k9.pids; sleep 300")
    c.wait_running(jid)
    (pid,) = wait_for(lambda: pids(c, "k9.pids"), 10, "the job's pid")
    sup = wait_for(lambda: head_node(c, jid) and supervisor_pid(c, "cn03", jid), 10, "the supervisor")
    os.kill(sup, signal.SIGKILL)
    info = c.wait_done(jid, timeout=10)           # a few heartbeats, not for ever
    assert info.status == JobState.Failed, info
    assert "supervisor" in info.pending_reason, info
    assert JobState(info.status) in FINAL_STATES
    # its processes did not outlive it: craned had the runtime kill what was left before reporting it ended
    assert not alive(pid), "the job's process still runs after its job was ended and its CPUs freed"
