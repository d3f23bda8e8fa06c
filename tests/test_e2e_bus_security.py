"""Attacks on the bus, run as a real unprivileged Linux user against a real cluster (issue 11, "A closed bus").

Every attack here worked on the code before the closed bus (Redis without a password, one shared
controller stream, unsigned node commands, unbounded message values) and must fail now. The
attacker's Redis commands run as ``crane_e2e_mallory`` (``runuser``) with the real ``redis-cli``;
"a compromised node" is simulated by giving her that node's password (its root could read it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any

import pytest
from crane_common.states import JobState
from crane_e2e import Cluster, ensure_user
from crane_kernel.bus import credentials

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("redis-cli") or not shutil.which("runuser"),
                                reason="needs root, redis-cli and runuser")

ATTACKER = "crane_e2e_mallory"


# ``cluster`` (tests/conftest.py) is module-scoped: this module gets a cluster of its own, which it restarts.


def attacker_cli(c: Cluster, *args: str, user: str | None = None, password: str | None = None) -> str:
    """Run ``redis-cli`` against the cluster's Redis as the unprivileged attacker; return stdout+stderr."""
    ensure_user(ATTACKER)
    auth = ["--user", user, "--pass", password, "--no-auth-warning"] if user is not None else []
    proc = subprocess.run(["runuser", "-u", ATTACKER, "--", "redis-cli", "-h", "127.0.0.1",
                           "-p", str(c.lc.redis.port), *auth, *args], capture_output=True, text=True, timeout=30)
    return proc.stdout + proc.stderr


def as_attacker(*cmd: str) -> subprocess.CompletedProcess:
    """Run a command as the attacker."""
    ensure_user(ATTACKER)
    return subprocess.run(["runuser", "-u", ATTACKER, "--", *cmd], capture_output=True, text=True, timeout=30)


def root_launch(c: Cluster, marker: str) -> str:
    """The launch_step a local user forged in issue 11: run a script as uid 0 that leaves ``marker``."""
    return json.dumps({"kind": "launch_step", "v": 1, "id": f"forged{time.time_ns()}",
                       "job_id": 990000 + os.getpid() % 1000, "epoch": 1,
                       "spec": {"uid": 0, "gid": 0, "cwd": "/", "script": f"#!/bin/sh\nid > {marker}\n"}},
                      separators=(",", ":"))


def node_password(c: Cluster, node: str) -> str:
    """A node's Redis password, as its (compromised) root could read it."""
    return credentials.load_role(c.lc.bus_dir, credentials.node_user(node)).password


def craned_log(c: Cluster, node: str) -> str:
    """The craned log of ``node``."""
    with open(os.path.join(c.lc.logs, f"craned-{node}.log"), errors="replace") as fh:
        return fh.read()


def test_a_unauthenticated_launch_as_root_is_refused(cluster):
    """(a) Before: ``redis-cli XADD crane:<c>:node:cn01 * m '{launch_step uid 0}'`` ran a script as root.

    Now Redis refuses the connection's command (the default user is off) and nothing runs.
    """
    marker = os.path.join(cluster.workdir, "pwned-a")
    stream = f"crane:{cluster.lc.cfg.ClusterName}:node:cn01"
    out = attacker_cli(cluster, "XADD", stream, "*", "m", root_launch(cluster, marker))
    assert "NOAUTH" in out or "NOPERM" in out or "WRONGPASS" in out, out
    out = attacker_cli(cluster, "XRANGE", stream, "-", "+")  # live launches cannot be read off the bus either
    assert "NOAUTH" in out or "NOPERM" in out, out
    time.sleep(2)
    assert not os.path.exists(marker)


def _near_miss(password: str) -> str:
    """The password with its last character changed (never equal to it)."""
    return password[:-1] + ("1" if password.endswith("0") else "0")


def test_b_guessed_passwords_are_refused(cluster):
    """(b) Before: no password was needed at all. Now guessed users/passwords get WRONGPASS, and nothing runs."""
    marker = os.path.join(cluster.workdir, "pwned-b")
    stream = f"crane:{cluster.lc.cfg.ClusterName}:node:cn01"
    for user, guess in [("node-cn01", "cn01"), ("crane-ctld", "crane"), ("crane-admin", "admin"),
                        ("default", ""), ("node-cn01", _near_miss(node_password(cluster, "cn01")))]:
        out = attacker_cli(cluster, "XADD", stream, "*", "m", root_launch(cluster, marker), user=user,
                           password=guess or "x")
        assert "WRONGPASS" in out or "NOAUTH" in out, (user, out)
    time.sleep(2)
    assert not os.path.exists(marker)


def test_c_credential_files_are_root_only(cluster):
    """(c) Before: there were no credentials to protect. Now the attacker cannot read, list or replace them."""
    bus_dir = cluster.lc.bus_dir
    st = os.stat(bus_dir)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o700
    for name in os.listdir(bus_dir):
        path = os.path.join(bus_dir, name)
        assert os.stat(path).st_mode & 0o077 == 0, name
        proc = as_attacker("cat", path)
        assert proc.returncode != 0 and "Permission denied" in proc.stderr, name
    proc = as_attacker("ls", bus_dir)
    assert proc.returncode != 0 and "Permission denied" in proc.stderr
    proc = as_attacker("sh", "-c", f"echo x > {bus_dir}/node-cn01.json")
    assert proc.returncode != 0


def test_c_the_users_job_sees_no_credential(cluster):
    """(c) A job of the attacker (run by a root supervisor that holds the node's password) finds none of it.

    Not in its environment, not behind an inherited file descriptor, not in the credential files.
    """
    mallory = ensure_user(ATTACKER)
    env = {"CRANE_TOKEN": cluster.lc.token(mallory.pw_name, mallory.pw_uid)}
    script = (f"cat /proc/self/environ | tr '\\0' '\\n'; ls -l /proc/$$/fd | sed 's/^/fd /'; "
              f"cat {cluster.lc.bus_dir}/node-cn01.json; cat /proc/$PPID/environ; echo done")
    jid = cluster.cbatch("-w", "cn01", "-o", "leak-%j.out", "--wrap", script, env=env)
    assert cluster.wait_done(jid).status in (JobState.Completed, JobState.Failed)
    out = cluster.output(f"leak-{jid}.out")
    assert "done" in out
    fds = [line for line in out.splitlines() if line.startswith("fd ") and "->" in line]
    assert fds and not any("socket:" in line or "pipe:" in line or cluster.lc.bus_dir in line for line in fds), fds
    for node in cluster.lc.node_names:
        assert node_password(cluster, node) not in out
    creds = credentials.load_role(cluster.lc.bus_dir, "node-cn01")
    assert creds.command_key.hex() not in out


def _running_job(c: Cluster, node: str) -> Any:
    jid = c.cbatch("-w", node, "--wrap", "sleep 300")
    return c.wait_running(jid)


def test_d_a_compromised_node_cannot_command_or_forge_for_another_node(cluster):
    """(d) Before: anyone could XADD a ``step_status`` (Completed 0:0, killing the job), a fake node
    registration (ending it 0:70) or a terminate for another node's job. Now, with cn02's password:
    XADD to cn01's command or report stream is refused by Redis (NOPERM), and what cn02 forges on its
    own report stream about cn01's job is dropped by the controller: the job keeps running.
    """
    c = cluster
    info = _running_job(c, "cn01")
    jid, epoch = info.job_id, 1
    pw = node_password(c, "cn02")
    pre = f"crane:{c.lc.cfg.ClusterName}"
    finished = json.dumps({"kind": "step_status", "node": "cn01", "job_id": jid, "state": "finished",
                           "exit_code": 0, "epoch": epoch})
    terminate = json.dumps({"kind": "terminate_step", "job_id": jid, "reason": "cancel", "epoch": epoch})
    for stream, payload in [(f"{pre}:report:cn01", finished), (f"{pre}:node:cn01", terminate),
                            (f"{pre}:ctld", finished), (f"{pre}:events", finished)]:
        out = attacker_cli(c, "XADD", stream, "*", "m", payload, user="node-cn02", password=pw)
        assert "NOPERM" in out, (stream, out)
    # on its own stream: a status claiming to come from cn01, one from cn02 about cn01's job, a fake registration
    own = f"{pre}:report:cn02"
    forged = [
        finished,
        json.dumps({"kind": "step_status", "node": "cn02", "job_id": jid, "state": "finished", "exit_code": 0,
                    "epoch": epoch}),
        json.dumps({"kind": "step_status", "node": "cn02", "job_id": jid, "state": "failed_to_start",
                    "epoch": epoch}),
        json.dumps({"kind": "node_register", "node": "cn01", "cpus": 2, "mem": 1 << 30}),
        json.dumps({"kind": "node_register", "node": "cn02", "cpus": 2, "mem": 1 << 30,
                    "finished": [{"node": "cn01", "job_id": jid, "state": "finished", "exit_code": 70,
                                  "epoch": epoch}]}),
    ]
    for payload in forged:
        out = attacker_cli(c, "XADD", own, "*", "m", payload, user="node-cn02", password=pw)
        assert "-" in out and "ERR" not in out and "NOPERM" not in out, out  # Redis takes it: cn02's own stream
    time.sleep(3)
    assert c.job(jid).status == JobState.Running
    assert c.lc.craneds["cn01"].poll() is None and c.lc.ctld.poll() is None
    with open(os.path.join(c.lc.logs, "cranectld.log")) as fh:
        log = fh.read()
    assert "which runs on cn01: dropped" in log and "claims node 'cn01': refused" in log
    assert "reported a result of node 'cn01'" in log
    c.run("ccancel", str(jid))
    c.wait_done(jid)


def _wait_launch_entry(c: Cluster, node: str, jid: int, timeout: float = 10) -> dict[bytes, bytes]:
    """Catch the (signed) launch of ``jid`` on ``node``'s stream, as someone reading the bus would."""
    admin = c.lc.bus("admin").redis
    stream = f"crane:{c.lc.cfg.ClusterName}:node:{node}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        for _eid, fields in admin.xrange(stream):
            msg = json.loads(fields[b"m"])
            if msg.get("kind") == "launch_step" and msg.get("job_id") == jid:
                return fields
        time.sleep(0.01)
    raise AssertionError(f"launch of job {jid} not seen on {stream}")


def test_e_a_replayed_signed_command_is_refused(cluster):
    """(e) Before: commands were not signed, so a launch seen on the bus could be added again and its
    job ran twice (and any forged command was obeyed). Now a node refuses a replay of a correctly signed
    command, a tampered one and an unsigned one — also after its craned restarted — and logs each.
    """
    c = cluster
    log_file = os.path.join(c.workdir, "replay-runs.txt")
    jid = c.cbatch("-w", "cn01", "--wrap", f"sleep 1; echo run >> {log_file}")
    fields = _wait_launch_entry(c, "cn01", jid)
    assert c.wait_done(jid).status == JobState.Completed
    time.sleep(1.5)  # the FreeJob is applied: cn01 forgot the job
    stream = f"crane:{c.lc.cfg.ClusterName}:node:cn01"
    writer = c.lc.bus("controller").redis  # someone who can write the stream: replays, tampering, no signature
    writer.xadd(stream, fields)
    tampered = dict(fields)
    tampered[b"m"] = fields[b"m"].replace(b'"uid":', b'"uid":0,"x":')
    tampered[b"q"] = fields[b"q"] + b"9"
    writer.xadd(stream, tampered)
    writer.xadd(stream, {b"m": fields[b"m"]})
    c.lc.kill_craned("cn01")  # its last accepted sequence survives the restart
    c.lc.start_craned("cn01")
    writer.xadd(stream, fields)
    time.sleep(3)
    with open(log_file) as fh:
        assert fh.read().count("run") == 1  # ran once
    log = craned_log(c, "cn01")
    assert log.count("replayed or stale command") >= 2
    assert "bad signature" in log and "unsigned command" in log
    assert c.lc.craneds["cn01"].poll() is None
    jid2 = c.cbatch("-w", "cn01", "--wrap", "true")  # and real commands still work
    assert c.wait_done(jid2).status == JobState.Completed


def test_f_a_status_with_an_absurd_time_is_refused_and_cqueue_keeps_working(cluster):
    """(f) Before: one forged status with ``time=1e308`` ended the job (Completed) and left an end time no
    client could convert: ``ccontrol show job`` failed (exit 3, re-run here on the old code; the issue saw plain
    ``cqueue`` fail too), also after a controller restart. Now it is refused at decode (dead-lettered), the
    job keeps running, and ``cqueue``/``ccontrol show job`` work, also after the controller restarted.
    """
    c = cluster
    info = _running_job(c, "cn01")
    jid = info.job_id
    pw = node_password(c, "cn01")
    stream = f"crane:{c.lc.cfg.ClusterName}:report:cn01"
    for extra in ({"state": "finished", "time": 1e308}, {"state": "running", "time": 1e308},
                  {"state": "finished", "exit_code": 10**30}, {"state": "finished", "cpu_time_ms": -5},
                  {"state": "finished", "node": "cn01\n"}):
        payload = json.dumps({"kind": "step_status", "node": "cn01", "job_id": jid, "epoch": 1, **extra})
        out = attacker_cli(c, "XADD", stream, "*", "m", payload, user="node-cn01", password=pw)
        assert "NOPERM" not in out and "WRONGPASS" not in out, out
    time.sleep(2)
    assert c.job(jid).status == JobState.Running
    q = c.run("cqueue")
    assert q.returncode == 0 and str(jid) in q.stdout, q.stderr
    assert c.run("ccontrol", "show", "job", str(jid)).returncode == 0
    dead = c.lc.bus("admin").redis.xrange(stream + ":dead")
    reasons = b" ".join(f.get(b"dlq_reason", b"") for _eid, f in dead)
    assert b"time" in reasons and b"exit_code" in reasons
    c.lc.kill_ctld()
    c.lc.start_ctld()
    c.lc.wait_nodes_up(3)
    q = c.run("cqueue")
    assert q.returncode == 0 and str(jid) in q.stdout, q.stderr
    assert c.run("cqueue", "--json").returncode == 0
    assert c.run("ccontrol", "show", "job", str(jid)).returncode == 0
    c.run("ccancel", str(jid))
    assert c.wait_done(jid).status == JobState.Cancelled
    # signed commands still work after the controller restart (a new, larger epoch)
    jid2 = c.cbatch("-w", "cn01", "--wrap", "true")
    assert c.wait_done(jid2).status == JobState.Completed
