"""End to end: crun, calloc and job steps on a real cluster (Redis, cranectld, 3 craned, cgroups, real ptys).

Every command is the real CLI as a separate process; terminals are real ptys (pexpect); the
200 MB transfer is checked byte for byte; client and node deaths are real kill -9s.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from typing import Any

import pexpect
import pytest
from crane_common.states import EC_CRANED_DOWN, JobState
from crane_e2e import cli, ensure_user, run_as, running_cluster
from crane_tools.ptyspawn import spawn_on_pty  # not pexpect.spawn, which forks this gRPC client process

pytestmark = pytest.mark.e2e

INTERACTIVE = {"InteractiveTimeout": 3, "InteractiveHeartbeat": 1}
WITH_CRUN = {"PATH": f"{os.path.dirname(cli('crun'))}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
"""A job's environment that finds crun (jobs get the submitter's PATH)."""


@pytest.fixture(scope="module")
def cluster() -> Any:
    with running_cluster(CraneCtld=INTERACTIVE) as c:
        yield c


def crun(cluster: Any, *args: str, env: dict[str, str] | None = None, input: str | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess:
    e = cluster.lc.env()
    e.pop("CRANE_JOB_ID", None)
    e.update(env or {})
    return subprocess.run([cli("crun"), *args], env=e, capture_output=True, text=True, input=input,
                          cwd=cluster.workdir, timeout=timeout)


def spawn(cluster: Any, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    e = cluster.lc.env()
    e.pop("CRANE_JOB_ID", None)
    e.update(env or {})
    return subprocess.Popen([cli(args[0]), *args[1:]], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, cwd=cluster.workdir)


def job_id_of(stderr: str) -> int:
    found = re.search(r"Job id allocated: (\d+)", stderr)
    assert found, stderr
    return int(found.group(1))


def wait_for(pred: Any, timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def steps_of(cluster: Any, job_id: int) -> list[Any]:
    """The job's steps as the controller reports them (QueryJobsInfo with include_steps)."""
    return [s for j in cluster.client.jobs([job_id], include_finished=True, include_steps=True)
            for s in j.step_info_list]


# --- crun: a job of its own ----------------------------------------------------------------------


def test_crun_runs_a_command_and_its_output_streams_back(cluster):
    proc = crun(cluster, "-N", "3", "hostname")
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ["cn01", "cn02", "cn03"]   # each task on its own (virtual) host
    jid = job_id_of(proc.stderr)
    assert "Allocated craned nodes: cn[01-03]" in proc.stderr
    info = cluster.job(jid)
    assert info.status == JobState.Completed and info.type == 0      # JobType Interactive


def test_crun_sets_the_task_variables(cluster):
    proc = crun(cluster, "-N", "2", "-n", "3", "--label", "bash", "-c",
                "echo $CRANE_PROCID $CRANE_LOCALID $CRANE_NODEID $CRANE_NTASKS $CRANE_STEP_ID")
    assert proc.returncode == 0, proc.stderr
    rows = sorted(proc.stdout.splitlines())
    assert rows == ["0: 0 0 0 3 0", "1: 1 1 0 3 0", "2: 2 0 1 3 0"]


def test_crun_exits_with_the_tasks_exit_code_and_says_why(cluster):
    proc = crun(cluster, "-n", "2", "bash", "-c", "exit $((CRANE_PROCID + 6))")
    assert proc.returncode == 7 and "Failed" in proc.stderr
    proc = crun(cluster, "bash", "-c", "kill -9 $$")
    assert proc.returncode == 137, proc.stderr
    proc = crun(cluster, "/no/such/command")
    assert proc.returncode != 0 and "/no/such/command" in proc.stderr


def test_a_crun_job_ends_at_its_time_limit_and_a_step_at_its_own(cluster):
    proc = crun(cluster, "-t", "0:0:2", "sleep", "30")
    assert proc.returncode != 0 and "ExceedTimeLimit" in proc.stderr, proc.stderr
    assert cluster.job(job_id_of(proc.stderr)).status == JobState.ExceedTimeLimit
    holder = spawn(cluster, "calloc", "-N", "1", "sleep", "30")
    try:
        jid = wait_for(lambda: next((j.job_id for j in cluster.client.jobs() if j.status == JobState.Running
                                     and j.type == 0), None), what="the allocation")
        proc = crun(cluster, "-t", "0:0:1", "sleep", "30", env={"CRANE_JOB_ID": str(jid)})
        assert proc.returncode != 0 and "time limit" in proc.stderr, proc.stderr
        assert cluster.job(jid).status == JobState.Running          # the allocation goes on
    finally:
        holder.kill()
        holder.wait()


def test_crun_stdin_goes_to_task_0_or_all(cluster):
    assert crun(cluster, "cat", input="hello\n").stdout == "hello\n"
    proc = crun(cluster, "-n", "2", "-i", "all", "-l", "cat", input="x\n")
    assert sorted(proc.stdout.splitlines()) == ["0: x", "1: x"]
    assert crun(cluster, "-i", "none", "cat", input="ignored\n").stdout == ""


def test_crun_output_to_a_file_and_per_task(cluster):
    proc = crun(cluster, "-n", "2", "-o", "1", "bash", "-c", "echo task$CRANE_PROCID")
    assert proc.stdout == "task1\n"
    proc = crun(cluster, "-o", "crun-%j.out", "echo", "to-file")
    jid = job_id_of(proc.stderr)
    assert cluster.output(f"crun-{jid}.out") == "to-file\n" and proc.stdout == ""


def test_200_mb_reach_the_client_byte_exact_without_growing_the_controller(cluster):
    rss_before = _rss(cluster.lc.ctld.pid)
    e = cluster.lc.env()
    cmd = [cli("crun"), "bash", "-c", "head -c 200M /dev/urandom | tee >(sha256sum >&2)"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cluster.workdir)
    digest, total, peak_rss = hashlib.sha256(), 0, 0
    while True:
        chunk = proc.stdout.read(1 << 20)
        if not chunk:
            break
        digest.update(chunk)
        total += len(chunk)
        peak_rss = max(peak_rss, _rss(cluster.lc.ctld.pid))
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    elapsed = time.time() - t0
    assert total == 200 << 20
    assert digest.hexdigest() in err
    assert peak_rss - rss_before < 64 << 10, (rss_before, peak_rss)   # KB: far less than the 200 MB that passed
    print(f"200 MB in {elapsed:.2f} s: {200 / elapsed:.0f} MB/s")


def test_a_slow_client_slows_the_task_and_loses_nothing(cluster):
    e = cluster.lc.env()
    proc = subprocess.Popen([cli("crun"), "bash", "-c", "seq 1 400000"], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cluster.workdir)
    bus = cluster.lc.bus()
    longest = 0
    got = b""
    while True:
        chunk = proc.stdout.read(4096)
        if not chunk:
            break
        got += chunk
        for key in bus.redis.scan_iter(match=f"crane:{cluster.lc.cfg.ClusterName}:io:*", count=1000):
            longest = max(longest, bus.redis.xlen(key))
        time.sleep(0.002)
    assert proc.wait(timeout=60) == 0
    assert got.decode().split() == [str(i) for i in range(1, 400001)]
    assert longest <= 64


# --- steps inside allocations ----------------------------------------------------------------------


def test_crun_inside_a_batch_job_uses_every_node(cluster):
    jid = cluster.cbatch("-N", "3", "-o", "steps-%j.out", "--wrap", "crun hostname; crun -N 1 -w cn02 echo one",
                         env=WITH_CRUN)
    info = cluster.wait_done(jid, timeout=60)
    assert info.status == JobState.Completed, cluster.output(f"steps-{jid}.out")
    lines = cluster.output(f"steps-{jid}.out").split()
    assert sorted(lines[:3]) == ["cn01", "cn02", "cn03"] and lines[3] == "one"
    steps = {s.step_id: s for s in steps_of(cluster, jid)}
    assert steps[1].status == JobState.Completed and steps[1].node_num == 3 and steps[1].name == "hostname"
    assert steps[2].craned_list == "cn02"
    shown = cluster.run("cqueue", "-s", "-j", str(jid))  # ended steps are not listed by cqueue, but it answers
    assert shown.returncode == 0, shown.stderr
    acct = cluster.run("cacct", "-j", str(jid), "-o", "%j %n %t", "-N")
    rows = [line.split() for line in acct.stdout.splitlines()]
    assert [str(jid), "wrap", "Completed"] in rows and [f"{jid}.1", "hostname", "Completed"] in rows, acct.stdout
    assert [f"{jid}.2", "echo", "Completed"] in rows


def test_calloc_runs_a_shell_whose_crun_uses_the_allocation_and_releases_it(cluster):
    e = {**cluster.lc.env(), **WITH_CRUN}
    e.pop("CRANE_JOB_ID", None)
    proc = subprocess.run([cli("calloc"), "-N", "2", "bash", "-c",
                           "echo JOB=$CRANE_JOB_ID; crun hostname; crun -n 1 true; exit 3"], env=e,
                          capture_output=True, text=True, cwd=cluster.workdir, timeout=60)
    assert proc.returncode == 3, proc.stderr
    jid = int(re.search(r"JOB=(\d+)", proc.stdout).group(1))
    assert len([w for w in proc.stdout.split() if w.startswith("cn0")]) == 2
    info = cluster.wait_done(jid)
    assert info.status == JobState.Completed
    steps = {s.step_id: s for s in steps_of(cluster, jid)}
    assert steps[0].name == "interactive" and steps[1].node_num == 2 and steps[2].status == JobState.Completed
    free = {n.name: n for n in cluster.client.nodes()}
    assert all(n.cpu_alloc == 0 for n in free.values())


def test_calloc_takes_tasks_and_memory_per_cpu(cluster):
    e = cluster.lc.env()
    e.pop("CRANE_JOB_ID", None)
    proc = subprocess.run([cli("calloc"), "-n", "2", "--mem-per-cpu", "100M", "bash", "-c",
                           "echo $CRANE_NTASKS $CRANE_MEM_PER_NODE $CRANE_JOB_NUM_NODES"], env=e, capture_output=True,
                          text=True, cwd=cluster.workdir, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "200", "1"]


def test_ccancel_of_one_step_leaves_the_job_running(cluster):
    jid = cluster.cbatch("-o", "cc-%j.out", "--wrap", "crun sleep 100; echo after=$?; crun echo next", env=WITH_CRUN)
    wait_for(lambda: any(s.step_id == 1 and s.status == JobState.Running for s in steps_of(cluster, jid)),
             what="step 1 running")
    proc = cluster.run("ccancel", f"{jid}.1")
    assert proc.returncode == 0 and f"Step {jid}.1 cancelled successfully." in proc.stdout, proc.stdout
    info = cluster.wait_done(jid)
    out = cluster.output(f"cc-{jid}.out")
    assert info.status == JobState.Completed and "next" in out and "after=" in out and "after=0" not in out


# --- bad input ---------------------------------------------------------------------------------------


def test_bad_requests_get_one_line_and_the_documented_exit_code(cluster):
    proc = crun(cluster, "-p", "nosuch", "true")
    assert proc.returncode == 4 and "Failed to allocate job id" in proc.stderr and "nosuch" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = crun(cluster, "--pty", "bash")                      # stdin is not a terminal here
    assert proc.returncode == 2 and "terminal" in proc.stderr
    holder = spawn(cluster, "calloc", "-N", "1", "sleep", "30")
    jid = wait_for(lambda: next((j.job_id for j in cluster.client.jobs() if j.status == JobState.Running
                                 and j.type == 0), None), what="the allocation")
    try:
        proc = crun(cluster, "-N", "3", "true", env={"CRANE_JOB_ID": str(jid)})
        assert proc.returncode == 4 and "Failed to allocate step id" in proc.stderr, proc.stderr
        alice = ensure_user("crane_e2e_alice")
        token = cluster.run("crane", "token", "issue", "--user", alice.pw_name, "--uid", str(alice.pw_uid))
        assert token.returncode == 0, token.stderr
        other = run_as(cluster, alice, "crun", "true", token=token.stdout.strip(), env={"CRANE_JOB_ID": str(jid)})
        assert other.returncode == 4 and "not yours" in other.stderr, other.stderr
        assert crun(cluster, "true", env={"CRANE_JOB_ID": str(jid)}).returncode == 0  # the allocation is fine
    finally:
        holder.kill()
        holder.wait()


# --- terminals and signals -----------------------------------------------------------------------


def test_pty_gives_a_real_terminal_with_line_editing_window_size_and_ctrl_c(cluster):
    child = spawn_on_pty([cli("crun"), "--pty", "bash", "--norc", "-i"],
                         env={**cluster.lc.env(), "PS1": "PROMPT$ ", "TERM": "xterm"}, cwd=cluster.workdir,
                         timeout=20, encoding="utf-8", dimensions=(30, 100))
    try:
        child.expect("PROMPT\\$ ")
        child.sendline("tty")
        child.expect("/dev/pts/\\d+")
        child.sendline("stty size")
        child.expect("30 100")
        child.setwinsize(40, 120)
        time.sleep(0.3)
        child.sendline("stty size")
        child.expect("40 120")
        child.send("echo abcX")
        child.send("\x7f")          # backspace: the remote line discipline edits the line
        child.sendline("Y")
        child.expect("abcY")
        child.sendline("sleep 100")
        time.sleep(0.5)
        child.sendcontrol("c")      # reaches the remote terminal: sleep dies, bash stays
        child.expect("PROMPT\\$ ")
        child.sendline("sleep 200")
        time.sleep(0.5)
        child.sendcontrol("z")      # job control on the remote side: stopped, back at the prompt
        child.expect("Stopped")
        child.expect("PROMPT\\$ ")
        child.sendline("kill -9 %1; echo killed-$?")
        child.expect("killed-0")
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 5
    child = spawn_on_pty([cli("crun"), "--pty", "cat"], env=cluster.lc.env(), cwd=cluster.workdir, timeout=20,
                         encoding="utf-8")
    try:
        child.expect("Allocated craned nodes")
        time.sleep(0.5)             # the local terminal is raw from now on (typed earlier, it echoes locally)
        child.sendline("echoed")
        child.expect("echoed")
        child.sendcontrol("d")      # end of file at the start of a line: cat ends, and with it the step
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_ctrl_c_once_forwards_sigint_twice_cancels(cluster):
    proc = spawn(cluster, "crun", "sleep", "100")
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130
    proc = spawn(cluster, "crun", "bash", "-c", "trap '' INT; sleep 100")
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) != 0
    assert "Cancelled" in proc.stderr.read().decode()


def test_a_killed_or_frozen_client_leaves_no_orphan(cluster):
    for how in (signal.SIGKILL, signal.SIGSTOP):
        proc = spawn(cluster, "crun", "sleep", "100")
        jid = wait_for(lambda: next((j.job_id for j in cluster.client.jobs() if j.status == JobState.Running
                                     and j.name == "sleep"), None), what="crun's job")
        proc.send_signal(how)
        info = cluster.wait_done(jid, timeout=15)      # InteractiveTimeout is 3 s here
        assert info.status == JobState.Cancelled
        if how == signal.SIGSTOP:
            proc.kill()
        proc.wait()


def test_a_node_dying_during_a_step_ends_it_with_a_reason():
    with running_cluster(CraneCtld=INTERACTIVE) as c:
        proc = spawn(c, "crun", "-N", "2", "-w", "cn01,cn02", "sleep", "100")
        jid = wait_for(lambda: next((j.job_id for j in c.client.jobs() if j.status == JobState.Running), None),
                       what="crun's job")
        c.lc.kill_craned("cn02")
        assert proc.wait(timeout=30) != 0
        err = proc.stderr.read().decode()
        assert "node cn02 down" in err, err
        info = c.wait_done(jid)
        assert info.status == JobState.Failed and info.exit_code == EC_CRANED_DOWN


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0



# --- the forwarder (cfored) and the direct path -------------------------------------------------------


def test_crun_goes_through_the_forwarder_and_works_without_it(cluster):
    sock = cluster.lc.cfored_socket()
    assert os.path.exists(sock) and oct(os.stat(sock).st_mode & 0o777) == "0o666"
    via_forwarder = crun(cluster, "-N", "2", "hostname")
    direct = crun(cluster, "-N", "2", "hostname", env={"CRANE_NO_CFORED": "1"})
    assert via_forwarder.returncode == direct.returncode == 0, (via_forwarder.stderr, direct.stderr)
    assert sorted(via_forwarder.stdout.split()) == sorted(direct.stdout.split()) == ["cn01", "cn02"]


def test_through_the_forwarder_a_user_is_who_her_kernel_says(cluster):
    alice = ensure_user("crane_e2e_alice")
    token = cluster.run("crane", "token", "issue", "--user", alice.pw_name, "--uid", str(alice.pw_uid))
    assert token.returncode == 0, token.stderr
    # no token at all: the forwarder vouches for her uid (SO_PEERCRED), and she gets her own rights only
    mine = run_as(cluster, alice, "crun", "id", "-u", token="", env={})
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.strip() == str(alice.pw_uid)
    jid = job_id_of(mine.stderr)
    assert cluster.job(jid).user == alice.pw_name


def test_only_root_may_act_for_another_user(cluster):
    """A user who calls the controller herself and claims to be someone else is refused."""
    import grpc
    from crane_common.proto import crane_pb2 as pb
    from crane_tools.client import CtldClient

    alice = ensure_user("crane_e2e_alice")
    token = cluster.run("crane", "token", "issue", "--user", alice.pw_name, "--uid", str(alice.pw_uid))
    client = CtldClient.from_config(cluster.lc.config_path, token=token.stdout.strip())
    start = pb.CrunRequest(start=pb.StepStart(job=pb.JobSpec(partition="debug"), argv=["id"]))
    call = client.stub.CrunStream(iter([start]), metadata=(*client.metadata, ("x-crane-on-behalf-of", "0")))
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    client.close()
