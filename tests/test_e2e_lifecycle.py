"""End to end: suspend/resume, requeue, signals, deadlines and ``ccontrol update job`` (docs/lifecycle.md).

Real Redis, cranectld, three craned virtual nodes, the cgroup runtime's real v1 freezer, the real
CLIs; the permission checks run as real unprivileged Linux users with tokens of their own.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from crane_common.hostlist import expand
from crane_common.states import FINAL_STATES, JobState
from crane_e2e import Cluster, cgroups_writable, cli, ensure_user, run_as, running_cluster

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not cgroups_writable(),
                                 reason="LOUD SKIP: root cannot write cgroup v1 here; the freezer is untested")]

ALICE, BOB = "crane_e2e_alice", "crane_e2e_bob"


@pytest.fixture(scope="module")
def cluster() -> Any:
    """Two partitions: ``debug`` (all nodes) and ``small`` (cn03 only)."""
    with running_cluster(Partitions=[{"name": "debug", "nodes": "ALL", "priority": 1},
                                     {"name": "small", "nodes": "cn03", "priority": 1}]) as c:
        yield c


class User:
    """An unprivileged local user with her own token."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.pw = ensure_user(name)
        self.cluster = cluster
        self.token = cluster.lc.token(self.pw.pw_name, self.pw.pw_uid)

    def run(self, *args: str) -> Any:
        """Run a CLI command as her."""
        return run_as(self.cluster, self.pw, *args, token=self.token)

    def cbatch(self, *args: str) -> int:
        """Submit as her; the job id."""
        proc = self.run("cbatch", "-D", self.cluster.workdir, *args)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.strip().rstrip(".").split()[-1])


@pytest.fixture(scope="module")
def alice(cluster: Cluster) -> User:
    return User(cluster, ALICE)


@pytest.fixture(scope="module")
def bob(cluster: Cluster) -> User:
    return User(cluster, BOB)


def _script(cluster: Cluster, name: str, body: str) -> str:
    path = os.path.join(cluster.workdir, name)
    with open(path, "w") as fh:
        fh.write("#!/bin/bash\n" + body)
    os.chmod(path, 0o755)
    return path


def _read(cluster: Cluster, name: str) -> str:
    try:
        return cluster.output(name)
    except FileNotFoundError:
        return ""


def _ticks(cluster: Cluster, name: str) -> int:
    text = _read(cluster, name).strip()
    return int(text) if text.isdigit() else 0


def _wait(pred: Any, timeout: float = 20) -> None:
    end = time.time() + timeout
    while not pred():
        assert time.time() < end, "condition not reached in time"
        time.sleep(0.1)


def _freezer_state(cluster: Cluster, job_id: int, node: str) -> str:
    root, prefix = cluster.lc._cgroup_root_and_prefix()
    with open(os.path.join(root, "freezer", prefix, node, f"job_{job_id}", "freezer.state")) as fh:
        return fh.read().strip()


TICKER = 'i=0; while true; do i=$((i+1)); echo $i > "tick-$CRANE_JOB_ID"; sleep 0.2; done\n'


# ---------------------------------------------------------------------------------------------
# suspend and resume
# ---------------------------------------------------------------------------------------------
def test_suspend_freezes_the_job_and_its_time_limit_clock(cluster, alice):
    jid = alice.cbatch("-t", "0:00:08", _script(cluster, "ticker.sh", TICKER))
    info = cluster.wait_running(jid)
    tick = f"tick-{jid}"
    _wait(lambda: _ticks(cluster, tick) > 2)
    proc = alice.run("ccontrol", "suspend", str(jid))             # the owner is no operator
    assert proc.returncode == 1 and "Permission denied" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert cluster.job(jid).status == JobState.Running
    proc = cluster.run("ccontrol", "suspend", str(jid))
    assert proc.returncode == 0 and proc.stdout.strip() == f"Jobs {jid} modified successfully.", proc
    assert cluster.job(jid).status == JobState.Suspended
    _wait(lambda: _freezer_state(cluster, jid, info.craned_list) == "FROZEN", 10)
    shown = alice.run("cqueue", "-t", "s", "-j", str(jid))
    assert str(jid) in shown.stdout and "Suspended" in shown.stdout, shown
    time.sleep(0.5)
    frozen_at = _ticks(cluster, tick)
    time.sleep(5)
    assert _ticks(cluster, tick) == frozen_at                     # nothing of it ran
    assert cluster.run("ccontrol", "resume", str(jid)).returncode == 0
    assert cluster.job(jid).status == JobState.Running
    _wait(lambda: _ticks(cluster, tick) > frozen_at + 2)          # it goes on where it stopped
    assert _freezer_state(cluster, jid, info.craned_list) == "THAWED"
    done = cluster.wait_done(jid, timeout=30)
    assert done.status == JobState.ExceedTimeLimit
    assert done.suspended_seconds >= 5
    assert done.end_time - done.start_time >= 8 + 5 - 1           # the limit's clock stopped while frozen
    assert abs(done.elapsed - (done.end_time - done.start_time - done.suspended_seconds)) <= 1


def test_suspend_freezes_the_crun_steps_of_a_job_on_every_node(cluster):
    """The batch step's node freezes the job cgroup, the other node its task step: no node runs anything of it."""
    crun_dir = os.path.dirname(cli("crun"))
    ticker = 'i=0; while true; do i=$((i+1)); echo $i > "steptick-$CRANE_JOB_ID-$(hostname)"; sleep 0.2; done'
    jid = cluster.cbatch("-N", "2", "--wrap", f"crun -N 2 bash -c '{ticker}'",
                         env={"PATH": f"{crun_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"})
    info = cluster.wait_running(jid)
    nodes = expand(info.craned_list)
    files = [f"steptick-{jid}-{n}" for n in nodes]
    _wait(lambda: all(_ticks(cluster, f) > 2 for f in files), 30)
    assert cluster.run("ccontrol", "suspend", str(jid)).returncode == 0
    time.sleep(1.5)
    frozen = [_ticks(cluster, f) for f in files]
    time.sleep(2)
    assert [_ticks(cluster, f) for f in files] == frozen                  # frozen on both nodes
    assert cluster.run("ccontrol", "resume", str(jid)).returncode == 0
    _wait(lambda: all(_ticks(cluster, f) > t + 2 for f, t in zip(files, frozen, strict=True)), 15)
    assert cluster.run("ccancel", str(jid)).returncode == 0
    assert cluster.wait_done(jid, timeout=30).status == JobState.Cancelled


@pytest.fixture()
def no_freezer(tmp_path: Any) -> Any:
    """A cluster whose nodes load, before ``cgroup``, a runtime without a freezer (tests/faulty_runtime.py)."""
    import faulty_runtime

    path = faulty_runtime.install(str(tmp_path / "plugins"))
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = path + (os.pathsep + saved if saved else "")
    try:
        with running_cluster(Plugins={"Runtime": [faulty_runtime.NAME, "cgroup"]}) as c:
            yield c
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def test_a_node_that_cannot_freeze_leaves_the_job_running_with_the_reason(no_freezer):
    import faulty_runtime

    c = no_freezer
    jid = c.cbatch("-J", f"{faulty_runtime.NO_FREEZER}-1", "--wrap", "sleep 300")
    info = c.wait_running(jid)
    assert c.run("ccontrol", "suspend", str(jid)).returncode == 0        # accepted, then the node answers
    back = c.wait_state(jid, lambda i: i.status == JobState.Running and "suspend failed" in i.pending_reason, 15)
    assert back.pending_reason == f"suspend failed on {info.craned_list}: the runtime cannot suspend this step"
    assert c.run("ccancel", str(jid)).returncode == 0
    assert c.wait_done(jid, timeout=20).status == JobState.Cancelled


def test_a_suspended_job_survives_a_controller_restart_and_can_be_cancelled(cluster):
    jid = cluster.cbatch("--wrap", "sleep 300")
    info = cluster.wait_running(jid)
    assert cluster.run("ccontrol", "suspend", str(jid)).returncode == 0
    _wait(lambda: _freezer_state(cluster, jid, info.craned_list) == "FROZEN", 10)
    cluster.lc.kill_ctld()
    cluster.lc.start_ctld()
    cluster.lc.wait_ctld()
    cluster.client = cluster.lc.client()
    again = cluster.job(jid)
    assert again.status == JobState.Suspended and again.craned_list == info.craned_list  # resources kept
    proc = cluster.run("ccancel", str(jid))
    assert proc.returncode == 0, proc.stderr
    assert cluster.wait_done(jid, timeout=20).status == JobState.Cancelled    # thawed, then terminated


# ---------------------------------------------------------------------------------------------
# requeue
# ---------------------------------------------------------------------------------------------
def test_requeue_keeps_the_id_and_runs_the_job_again(cluster, alice, bob):
    script = _script(cluster, "twice.sh", 'echo "run $CRANE_JOB_ID"\nsleep 4\necho done\n')
    jid = alice.cbatch("-o", "twice-%j.out", "--open-mode", "append", script)
    cluster.wait_running(jid)
    _wait(lambda: "run" in _read(cluster, f"twice-{jid}.out"))
    proc = bob.run("ccontrol", "requeue", str(jid))                # not his job
    assert proc.returncode == 4 and f"Job {jid} failed to requeue: Permission denied" in proc.stdout, proc
    proc = alice.run("ccontrol", "requeue", str(jid))
    assert proc.returncode == 0 and proc.stdout.strip() == f"Job {jid} requeued successfully.", proc
    assert cluster.job(jid).status in (JobState.Pending, JobState.Configuring, JobState.Running)
    done = cluster.wait_done(jid, timeout=40)
    assert done.status == JobState.Completed and done.requeue_count == 1
    out = _read(cluster, f"twice-{jid}.out")
    assert out.count(f"run {jid}") == 2 and out.count("done") == 1, out  # the first run was ended, the second ran
    shown = alice.run("cacct", "-j", str(jid), "-o", "%jobid %state %requeuecount", "-N")
    assert shown.returncode == 0 and shown.stdout.splitlines()[0].split() == [str(jid), "Completed", "1"], shown


def test_requeue_of_a_pending_job_is_refused(cluster, alice):
    jid = alice.cbatch("-H", "--wrap", "true")
    proc = alice.run("ccontrol", "requeue", str(jid))
    assert proc.returncode == 4 and "not running" in proc.stdout, proc
    assert cluster.run("ccancel", str(jid)).returncode == 0


# ---------------------------------------------------------------------------------------------
# signals
# ---------------------------------------------------------------------------------------------
def test_signal_before_the_time_limit_reaches_the_scripts_trap(cluster, alice):
    script = _script(cluster, "warned.sh", "trap 'echo got USR1; exit 0' USR1\n"
                                           "while true; do sleep 0.2; done\n")
    jid = alice.cbatch("-t", "0:00:06", "--signal=B:USR1@4", "-o", "warned-%j.out", script)
    done = cluster.wait_done(jid, timeout=30)
    assert "got USR1" in _read(cluster, f"warned-{jid}.out")
    assert done.status == JobState.Completed and done.end_time - done.start_time < 6   # before the limit


def test_sbatch_signal_directive_is_applied(cluster, alice):
    script = _script(cluster, "warned2.sh", "#SBATCH --signal=USR2@3\n#SBATCH --time=0:00:05\n"
                                            "trap 'echo got USR2; exit 0' USR2\nwhile true; do sleep 0.2; done\n")
    jid = alice.cbatch("-o", "warned2-%j.out", script)
    assert cluster.wait_done(jid, timeout=30).status == JobState.Completed
    assert "got USR2" in _read(cluster, f"warned2-{jid}.out")


def test_ccancel_s_signals_a_running_job_without_ending_it(cluster, alice, bob):
    script = _script(cluster, "trap.sh", "trap 'echo got USR1' USR1\nwhile true; do sleep 0.2; done\n")
    jid = alice.cbatch("-o", "trap-%j.out", script)
    cluster.wait_running(jid)
    time.sleep(1)  # the trap is set
    proc = bob.run("ccancel", "-s", "USR1", str(jid))
    assert proc.returncode == 4 and "Permission denied" in proc.stderr, proc
    proc = alice.run("ccancel", "-s", "USR1", str(jid))
    assert proc.returncode == 0 and proc.stdout.strip() == f"Job {jid} signalled successfully.", proc
    _wait(lambda: "got USR1" in _read(cluster, f"trap-{jid}.out"), 10)
    time.sleep(0.5)
    assert cluster.job(jid).status == JobState.Running            # it keeps running
    held = alice.cbatch("-H", "--wrap", "true")
    proc = alice.run("ccancel", "-s", "USR1", str(held))
    assert proc.returncode == 4 and "pending" in proc.stderr, proc
    bad = alice.run("ccancel", "-s", "NOPE", str(jid))
    assert bad.returncode == 2 and "unknown signal" in bad.stderr and "Traceback" not in bad.stderr
    for j in (jid, held):
        alice.run("ccancel", str(j))
    assert cluster.wait_done(jid).status == JobState.Cancelled


# ---------------------------------------------------------------------------------------------
# deadlines
# ---------------------------------------------------------------------------------------------
def test_a_pending_job_that_cannot_meet_its_deadline_ends_as_deadline(cluster, alice):
    jid = alice.cbatch("-t", "0:10:00", "--deadline", "now+1minute", "--wrap", "true")
    done = cluster.wait_done(jid, timeout=20)
    assert done.status == JobState.Deadline and done.pending_reason == "Deadline" and not done.start_time
    proc = alice.run("cqueue", "-t", "all", "-j", str(jid), "--deadline")
    assert "Deadline" in proc.stdout


def test_a_running_job_is_ended_at_its_deadline(cluster, alice):
    jid = alice.cbatch("-t", "0:01:00", "--deadline", "now+10minutes", "--wrap", "sleep 100")
    cluster.wait_running(jid)
    proc = alice.run("ccontrol", "update", f"jobid={jid}", "deadline=now+3seconds")
    assert proc.returncode == 0, proc
    done = cluster.wait_done(jid, timeout=30)
    assert done.status == JobState.Deadline and done.end_time - done.start_time < 30


def test_a_past_deadline_is_refused_at_submission(cluster, alice):
    proc = alice.run("cbatch", "--deadline", "now-1hour", "--wrap", "true")
    assert proc.returncode == 4 and "deadline is in the past" in proc.stderr, proc


# ---------------------------------------------------------------------------------------------
# ccontrol update job
# ---------------------------------------------------------------------------------------------
def test_update_job_fields_with_permission_checks(cluster, alice, bob):
    jid = alice.cbatch("-H", "-J", "before", "--wrap", "true")
    proc = alice.run("ccontrol", "update", f"jobid={jid}", "jobname=after", "comment=hello world", "numnodes=2",
                     "partition=small")
    assert proc.returncode == 1, proc                              # small has one node: numnodes=2 is refused
    assert "change job node count failed" not in proc.stderr or "partition" in proc.stderr
    info = cluster.job(jid)
    assert info.name == "after" and info.comment == "hello world"
    assert proc.stdout.count("modified successfully") >= 2
    ok = alice.run("ccontrol", "update", f"jobid={jid}", "numnodes=1", "partition=small")
    assert ok.returncode == 0, ok
    info = cluster.job(jid)
    assert info.partition == "small" and info.node_num == 1
    proc = bob.run("ccontrol", "update", f"jobid={jid}", "comment=pwned")
    assert proc.returncode == 1 and f"Failed to modify job: {jid}. Reason: Permission denied." in proc.stderr
    assert cluster.job(jid).comment == "hello world"
    proc = alice.run("ccontrol", "update", f"jobid={jid}", "priority=100000")
    assert proc.returncode == 1 and "change job priority failed" in proc.stderr
    proc = alice.run("ccontrol", "update", f"jobid={jid}", "partition=nope")
    assert proc.returncode == 1 and "nope" in proc.stderr and cluster.job(jid).partition == "small"
    proc = alice.run("ccontrol", "update", f"jobid={jid}", "reservation=r1")
    assert proc.returncode == 1 and "not supported" in proc.stderr
    proc = alice.run("ccontrol", "update", f"jobid={jid}", "colour=blue")
    assert proc.returncode == 2 and "unknown key" in proc.stderr
    assert cluster.run("ccontrol", "release", str(jid)).returncode == 0
    done = cluster.wait_done(jid)
    assert done.status == JobState.Completed and done.craned_list == "cn03"   # ran where its new partition is


def test_update_of_a_running_job_keeps_pending_only_fields(cluster, alice):
    jid = alice.cbatch("--wrap", "sleep 60")
    cluster.wait_running(jid)
    proc = alice.run("ccontrol", "update", f"jobid={jid}", "partition=small")
    assert proc.returncode == 1 and "not pending" in proc.stderr
    assert alice.run("ccontrol", "update", f"jobid={jid}", "comment=still running").returncode == 0
    assert cluster.job(jid).comment == "still running"
    alice.run("ccancel", str(jid))
    assert cluster.wait_done(jid).status in FINAL_STATES
