"""Task steps (crun) on the node, for real: craned with the bus ACL, the launcher, the task-step supervisor,
the cgroup runtime (real cgroup v1) and real processes; the test plays the controller's relay.

StartStep/TerminateStep/FreeJob go to craned's ``handle`` (what its consumer does with verified
commands); the test reads each step's ``io`` stream as the relay does (XREAD, then XDEL) and writes
its ``ioin`` stream.
"""

from __future__ import annotations

import grp
import hashlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from crane_common.states import EC_FILE_NOT_FOUND, EC_SPAWN_FAILED, EC_TERMINATED
from crane_kernel import iostream
from crane_kernel import messages as m
from crane_kernel.bus import credentials
from crane_kernel.config import parse_config
from crane_kernel.craned.main import Craned
from crane_tools.redis_server import RedisServer

CLUSTER = "ts"
PREFIX = f"crane_tstest_{os.getpid()}"
CGROOT = "/sys/fs/cgroup"
TEST_USER = "crane_ts_test"
_jobs = itertools.count(7000)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.isdir(f"{CGROOT}/memory"),
                                reason="REAL TASK STEPS NOT TESTED: needs root and cgroup v1")


@dataclass
class Node:
    """One craned "node" of the module's cluster and the admin connection to its Redis."""

    craned: Craned
    r: redis.Redis
    workdir: str
    name: str = "cn01"
    reports_seen: list = field(default_factory=list)

    def start(self, job: int, step: int, argv: list[str], epoch: int = 1, **spec: Any) -> None:
        """Send StartStep for ``job.step`` with a root task in the scratch directory (unless ``spec`` says)."""
        values: dict[str, Any] = {"uid": 0, "gid": 0, "argv": argv, "task_ids": [0], "cwd": self.workdir, **spec}
        self.craned.handle([(None, m.StartStep(job_id=job, step_id=step, epoch=epoch, spec=m.TaskLaunch(**values)))])

    def send(self, msg: m.BusMessage) -> None:
        self.craned.handle([(None, msg)])

    def reports(self) -> list[tuple[bytes, Any]]:
        return [(i, m.decode(f[b"m"])) for i, f in self.r.xrange(f"crane:{CLUSTER}:report:{self.name}")]

    def status(self, job: int, step: int, states: tuple[str, ...] = ("finished", "failed_to_start"),
               timeout: float = 30) -> tuple[bytes, m.StepStatus]:
        """Wait for the step's StepStatus in one of ``states``; its stream id and the message."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for entry_id, msg in self.reports():
                if isinstance(msg, m.StepStatus) and (msg.job_id, msg.step_id) == (job, step) and msg.state in states:
                    return entry_id, msg
            time.sleep(0.05)
        raise AssertionError(f"no {states} status of {job}.{step}")

    def inp(self, job: int, step: int, *entries: dict[bytes, bytes]) -> None:
        for entry in entries:
            self.r.xadd(iostream.in_key(CLUSTER, self.name, job, step), entry)

    def collect(self, job: int, step: int, timeout: float = 60, count: int = 64, pause: float = 0.0) -> "Output":
        """Relay the step's io stream until its end entry (XREAD then XDEL), checking its length as it goes."""
        key = iostream.out_key(CLUSTER, self.name, job, step)
        out = Output()
        last, deadline = "0-0", time.time() + timeout
        while time.time() < deadline:
            out.max_len = max(out.max_len, self.r.xlen(key))
            got = self.r.xread({key: last}, count=count, block=200)
            for _key, entries in got or []:
                for entry_id, fields in entries:
                    last = entry_id
                    e = iostream.parse_out(fields)
                    if e.kind == "o":
                        out.data[(e.task, e.fd)] = out.data.get((e.task, e.fd), b"") + e.data
                    elif e.kind == "x":
                        out.exits[e.task] = e.code
                    else:
                        out.end, out.end_id = (e.code, e.reason), entry_id
                self.r.xdel(key, *[i for i, _ in entries])
            if out.end is not None:
                return out
            if pause:
                time.sleep(pause)
        raise AssertionError(f"no end entry on {key}; got {out}")


@dataclass
class Output:
    data: dict[tuple[int, int], bytes] = field(default_factory=dict)
    exits: dict[int, int] = field(default_factory=dict)
    end: tuple[int, str] | None = None
    end_id: bytes = b""
    max_len: int = 0

    def text(self, task: int = 0, fd: int = 1) -> str:
        return self.data.get((task, fd), b"").decode(errors="replace")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: Any) -> Iterator[dict[str, Node]]:
    """Two craned nodes (cn01, cn02) on a private Redis with the bus ACL; cgroups under a per-run prefix."""
    base = tmp_path_factory.mktemp("tasksteps")
    bus_dir = str(base / "bus")
    credentials.ensure(bus_dir, CLUSTER, ["cn01", "cn02"])
    admin = credentials.load_role(bus_dir, "admin")
    srv = RedisServer(data_dir=base / "redis", acl_file=os.path.join(bus_dir, credentials.ACL_FILE),
                      auth=(admin.user, admin.password))
    srv.start()
    workdir = tempfile.mkdtemp(prefix="crane_ts_", dir="/tmp")
    os.chmod(workdir, 0o777)
    cfg = parse_config({
        "CraneBaseDir": str(base), "RedisUrl": srv.url, "ClusterName": CLUSTER,
        "Nodes": [{"name": "cn01", "cpu": 2, "memory": "1G"}, {"name": "cn02", "cpu": 2, "memory": "1G"}],
        "Partitions": [{"name": "p", "nodes": "ALL"}], "Bus": {"Auth": True, "CredentialsDir": bus_dir},
        "Craned": {"KillWait": 1},
        "Plugins": {"Runtime": ["cgroup"], "Settings": {"cgroup": {"Prefix": PREFIX, "UtsNamespace": True}}}})
    r = redis.Redis.from_url(srv.url, username=admin.user, password=admin.password)
    nodes = {n: Node(Craned(cfg, n), r, workdir, n) for n in ("cn01", "cn02")}
    try:
        yield nodes
    finally:
        for node in nodes.values():
            node.craned.launcher.close()
        from crane_runtime_cgroup.v1 import CgroupV1Backend

        backend = CgroupV1Backend(CGROOT)
        backend.kill_all(PREFIX, timeout=5)
        backend.remove(PREFIX)
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def node(cluster: dict[str, Node]) -> Node:
    return cluster["cn01"]


def _job_cgroup(job: int, node: str = "cn01") -> str:
    return f"{CGROOT}/memory/{PREFIX}/{node}/job_{job}"


def test_two_tasks_have_their_ids_the_node_name_and_a_step_cgroup(node):
    job = next(_jobs)
    node.start(job, 1, ["sh", "-c", "echo $CRANE_PROCID $CRANE_LOCALID $SLURM_PROCID $CRANE_NTASKS $SLURM_NTASKS "
                        "$CRANE_STEP_ID $CRANE_NODEID $CRANE_NODENAME $(hostname); grep memory /proc/self/cgroup; "
                        "echo err >&2"], task_ids=[3, 5], ntasks=8, node_index=1)
    out = node.collect(job, 1)
    assert out.text(3).splitlines()[0] == "3 0 3 8 8 1 1 cn01 cn01"
    assert out.text(5).splitlines()[0] == "5 1 5 8 8 1 1 cn01 cn01"
    assert f"/{PREFIX}/cn01/job_{job}/step_1" in out.text(3) and out.text(5, 2) == "err\n"
    assert out.exits == {3: 0, 5: 0} and out.end == (0, "")
    status_id, status = node.status(job, 1)
    assert status.state == "finished" and status.exit_code == 0
    assert tuple(map(int, out.end_id.split(b"-"))) <= tuple(map(int, status_id.split(b"-")))  # end entry first
    assert not os.path.exists(_job_cgroup(job))                   # step and job cgroups removed
    beat = node.craned._survey()
    assert (job, 1, 1) in beat.task_ended and not beat.task_steps
    node.send(m.FreeJob(job_id=job))
    assert not os.path.exists(os.path.join(node.craned.jobs_dir, f"{job}.1"))


def test_exit_codes_worst_and_killed_by_signal(node):
    job = next(_jobs)
    node.start(job, 1, ["sh", "-c", "exit $((CRANE_PROCID * 3))"], task_ids=[0, 1], ntasks=2)
    node.start(job, 2, ["sh", "-c", "kill -9 $$"])
    out1, out2 = node.collect(job, 1), node.collect(job, 2)
    assert out1.exits == {0: 0, 1: 3} and out1.end == (3, "") and node.status(job, 1)[1].exit_code == 3
    assert out2.exits == {0: 265} and out2.end == (265, "") and node.status(job, 2)[1].exit_code == 265


def test_stdin_to_task_zero_and_to_all(node):
    job = next(_jobs)
    node.inp(job, 1, iostream.stdin_entry(0, b"hello\n"), iostream.eof_entry(0))  # before the step starts
    node.start(job, 1, ["cat"], task_ids=[0, 1], ntasks=2)
    out = node.collect(job, 1)
    assert out.text(0) == "hello\n" and out.text(1) == "" and out.end == (0, "")
    node.start(job, 2, ["cat"], task_ids=[0, 1], ntasks=2, stdin_task=m.STDIN_ALL)
    node.inp(job, 2, {b"k": b"bogus"}, iostream.stdin_entry(iostream.ALL_TASKS, b"both\n"),
             iostream.eof_entry(iostream.ALL_TASKS))
    out = node.collect(job, 2)
    assert out.text(0) == "both\n" and out.text(1) == "both\n"
    assert node.r.xlen(iostream.in_key(CLUSTER, "cn01", job, 2)) == 0  # consumed entries deleted


def test_pty_task_has_a_terminal_and_follows_the_window_size(node):
    job = next(_jobs)
    node.start(job, 1, ["sh", "-c", "tty; stty size; read x; stty size"], pty=True, rows=30, cols=100)
    key = iostream.out_key(CLUSTER, "cn01", job, 1)
    deadline, seen = time.time() + 20, b""
    while b"30 100" not in seen and time.time() < deadline:
        seen = b"".join(f[b"d"] for _i, f in node.r.xrange(key) if f[b"k"] == b"o")
        time.sleep(0.05)
    node.inp(job, 1, iostream.winsize_entry(40, 120), iostream.stdin_entry(0, b"\n"))
    out = node.collect(job, 1)
    text = out.text(0)
    assert "/dev/pts/" in text and "30 100" in text and "40 120" in text and out.end == (0, "")


def test_signal_entry_reaches_the_tasks(node):
    job = next(_jobs)
    node.start(job, 1, ["sleep", "100"], task_ids=[0, 1], ntasks=2)
    node.status(job, 1, ("running",))
    node.inp(job, 1, iostream.signal_entry(2))
    out = node.collect(job, 1, timeout=20)
    assert out.exits == {0: 258, 1: 258} and out.end == (258, "")


def test_flow_control_keeps_the_window_and_loses_nothing(node):
    job = next(_jobs)
    node.start(job, 1, ["sh", "-c", "head -c 50000000 /dev/urandom > big.$CRANE_JOB_ID; "
                        "sha256sum big.$CRANE_JOB_ID >&2; cat big.$CRANE_JOB_ID; rm big.$CRANE_JOB_ID"])
    out = node.collect(job, 1, timeout=240, count=4, pause=0.002)
    data = out.data[(0, 1)]
    assert len(data) == 50_000_000
    assert hashlib.sha256(data).hexdigest() == out.text(0, 2).split()[0]
    assert out.max_len <= iostream.WINDOW and out.max_len >= iostream.WINDOW // 2  # it did wait for the relay


def test_terminate_one_step_leaves_the_other_and_free_removes_all(node):
    job = next(_jobs)
    node.start(job, 1, ["sleep", "100"])
    node.start(job, 2, ["sleep", "100"])
    node.status(job, 1, ("running",))
    node.status(job, 2, ("running",))
    assert os.path.isdir(f"{_job_cgroup(job)}/step_1") and os.path.isdir(f"{_job_cgroup(job)}/step_2")
    node.send(m.TerminateStep(job_id=job, step_id=1, epoch=1))
    out = node.collect(job, 1, timeout=20)
    assert out.end == (EC_TERMINATED, "cancelled") and node.status(job, 1)[1].exit_code == EC_TERMINATED
    survey = node.craned._survey()
    assert (job, 2, 1) in survey.task_steps and (job, 1, 1) in survey.task_ended
    assert os.path.isdir(f"{_job_cgroup(job)}/step_2") and not os.path.exists(f"{_job_cgroup(job)}/step_1")
    node.send(m.FreeJob(job_id=job, step_id=1))
    assert not os.path.exists(os.path.join(node.craned.jobs_dir, f"{job}.1"))
    node.craned._heartbeat()
    beat = [x for _i, x in node.reports() if isinstance(x, m.NodeHeartbeat)][-1]
    assert (job, 2, 1) in beat.task_steps
    node.send(m.TerminateStep(job_id=job, epoch=1))            # every step of the job
    assert node.collect(job, 2, timeout=20).end == (EC_TERMINATED, "cancelled")
    node.status(job, 2)
    node.send(m.FreeJob(job_id=job))
    assert not [n for n in os.listdir(node.craned.jobs_dir) if n.startswith(f"{job}.")]
    assert not os.path.exists(_job_cgroup(job))


def test_duplicate_start_is_ignored_and_bad_starts_fail_clearly(node):
    job = next(_jobs)
    node.start(job, 1, ["sh", "-c", "echo once"])
    node.start(job, 1, ["sh", "-c", "echo once"])                 # at-least-once bus: a duplicate
    assert node.collect(job, 1).text() == "once\n"
    node.start(job, 2, ["no-such-command-xyz"])
    _i, status = node.status(job, 2)
    assert status.state == "failed_to_start" and status.exit_code == EC_FILE_NOT_FOUND
    assert status.reason == "cannot execute no-such-command-xyz: No such file or directory"
    bad = m.StartStep.model_validate({"job_id": job, "step_id": 3, "epoch": 1, "spec": {"uid": -1}})
    node.send(bad)
    _i, status = node.status(job, 3)
    assert status.state == "failed_to_start" and status.exit_code == EC_SPAWN_FAILED and "uid" in status.reason
    time.sleep(0.3)
    assert len([x for _i, x in node.reports() if isinstance(x, m.StepStatus) and (x.job_id, x.step_id) == (job, 1)
                and x.state == "running"]) == 1


def _test_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", TEST_USER], check=True)
        return pwd.getpwnam(TEST_USER)


def test_tasks_run_as_the_user_on_two_nodes_without_bus_credentials(cluster):
    user = _test_user()
    job = next(_jobs)
    script = "id -u; id -g; hostname; env | grep -ci -e redis -e password -e crane-admin; true"
    for index, name in enumerate(("cn01", "cn02")):
        cluster[name].start(job, 1, ["sh", "-c", script], uid=user.pw_uid, gid=user.pw_gid, task_ids=[index],
                            ntasks=2, node_index=index, nodes=["cn01", "cn02"])
    for index, name in enumerate(("cn01", "cn02")):
        out = cluster[name].collect(job, 1)
        lines = out.text(index).split()
        assert lines[:3] == [str(user.pw_uid), str(user.pw_gid), name] and lines[3] == "0"
        assert cluster[name].status(job, 1)[1].exit_code == 0
    assert grp.getgrgid(user.pw_gid)


def test_time_limit_and_terminate_of_step_zero(node):
    from crane_common.states import EC_EXCEED_TIME_LIMIT

    job = next(_jobs)
    node.start(job, 1, ["sleep", "100"], time_limit=1)
    out = node.collect(job, 1, timeout=20)
    assert out.end == (EC_EXCEED_TIME_LIMIT, "time limit exceeded") and out.exits == {0: 256 + 15}
    node.start(job, 0, ["sleep", "100"])                        # an interactive job's step 0: jobs/<job>.0/
    node.status(job, 0, ("running",))
    node.send(m.TerminateStep(job_id=job, step_id=0, epoch=1))
    assert node.collect(job, 0, timeout=20).end == (EC_TERMINATED, "cancelled")
    node.send(m.TerminateStep(job_id=job, step_id=5, epoch=1))  # before its StartStep: it never starts
    node.start(job, 5, ["echo", "never"])
    _i, status = node.status(job, 5)
    assert (status.exit_code, status.reason) == (EC_TERMINATED, "cancelled before launch")


def test_dead_task_supervisors_are_reaped_and_their_results_sent_before_the_heartbeat(node):
    import json

    from crane_kernel.craned.jobfiles import RESULT_FILE, SUP_FILE

    job = next(_jobs)
    dead = subprocess.Popen(["true"])
    dead.wait()
    lost, unsent = (os.path.join(node.craned.jobs_dir, f"{job}.{s}") for s in (4, 6))
    for d in (lost, unsent):
        os.mkdir(d, 0o700)
        with open(os.path.join(d, SUP_FILE), "w") as fh:
            json.dump({"pid": dead.pid, "start": 1, "epoch": 3, "step": int(d.rsplit(".", 1)[1])}, fh)
    with open(os.path.join(unsent, RESULT_FILE), "w") as fh:
        json.dump(m.StepStatus(node="cn01", job_id=job, step_id=6, state="finished", exit_code=7,
                               epoch=3).model_dump(), fh)
    os.makedirs(f"{_job_cgroup(job)}/step_4")                  # what the dead supervisor left
    before = len(node.reports())
    node.craned._heartbeat()
    msgs = [x for _i, x in node.reports()[before:]]
    # (craned's own heartbeat thread may send one of its own meanwhile: look at this job's messages)
    statuses = [k for k, x in enumerate(msgs) if isinstance(x, m.StepStatus) and x.job_id == job]
    beats = [k for k, x in enumerate(msgs) if isinstance(x, m.NodeHeartbeat)
             and {(job, 4, 3), (job, 6, 3)} <= set(x.task_ended)]
    assert len(statuses) == 1 and beats and statuses[0] < beats[0], msgs
    assert (msgs[statuses[0]].step_id, msgs[statuses[0]].exit_code) == (6, 7)
    assert not os.path.exists(f"{_job_cgroup(job)}/step_4")    # reaped before it was listed as ended
    survey, finished = node.craned._scan()
    lost_status = [f for f in finished if f["job_id"] == job and f["step_id"] == 4]
    assert lost_status and lost_status[0]["reason"] == "step supervisor lost"
    node.send(m.FreeJob(job_id=job))
    assert not [n for n in os.listdir(node.craned.jobs_dir) if n.startswith(f"{job}.")]


def test_a_signal_is_not_stuck_behind_unread_stdin(node):
    job = next(_jobs)
    node.start(job, 1, ["sleep", "100"])                        # never reads its stdin
    node.status(job, 1, ("running",))
    chunk = b"x" * iostream.MAX_CHUNK
    node.inp(job, 1, *[iostream.stdin_entry(0, chunk)] * 4, iostream.signal_entry(2))  # 256 KiB > the pipe
    out = node.collect(job, 1, timeout=20)
    assert out.exits == {0: 258} and out.end == (258, "")
