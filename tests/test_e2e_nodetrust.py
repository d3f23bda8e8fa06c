"""Node-side trust (issue 11): attacks by a real unprivileged Linux user on what root does on a node.

Every attacker command runs as the user ``crane_e2e_alice`` through ``runuser``; the victim's jobs
run as ``crane_e2e_bob``. Each test names the attack, what it did before the fix (checked against
the code of commit 8b90227, where the job directory ``<CraneBaseDir>/craned/<node>/jobs/<id>/``
was owned by the job's user and ``craned`` trusted the files in it), and asserts that it fails now.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import time

import pytest
from crane_common.states import EC_PERMISSION_DENIED, JobState
from crane_e2e import Cluster, cli, ensure_user

ATTACKER, VICTIM = "crane_e2e_alice", "crane_e2e_bob"
NODE = "cn01"

# Run as the attacker: rewrite or replace the state files of a job directory, by every means a
# directory's owner has (write in place, write-and-rename, symlink). argv: job_dir, then JSON
# {file name: content}. Prints one line per file: what worked. Never fails.
FORGE = r"""
import json, os, sys
d, files = sys.argv[1], json.loads(sys.argv[2])
for name, content in files.items():
    path, done = os.path.join(d, name), []
    for how in ("write", "rename", "symlink"):
        try:
            if how == "write":
                with open(path, "w") as fh:
                    fh.write(content)
            elif how == "rename":
                with open(path + ".x", "w") as fh:
                    fh.write(content)
                os.replace(path + ".x", path)
            else:
                decoy = os.path.join(sys.argv[3], name + ".decoy")
                with open(decoy, "w") as fh:
                    fh.write(content)
                os.symlink(decoy, path + ".l")
                os.replace(path + ".l", path)
            done.append(how)
        except OSError as exc:
            done.append(f"{how}:{exc.strerror}")
    print(name, " ".join(done))
"""


@pytest.fixture(scope="module")
def users() -> dict[str, pwd.struct_passwd]:
    """The attacker and the victim, real local users."""
    return {"alice": ensure_user(ATTACKER), "bob": ensure_user(VICTIM)}


def as_user(user: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``argv`` as ``user`` (runuser: real uid, gid and groups of that user)."""
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, timeout=timeout)


def token_env(c: Cluster, pw: pwd.struct_passwd) -> dict[str, str]:
    """CLI environment carrying a token of ``pw``'s user."""
    return {"CRANE_TOKEN": c.lc.token(pw.pw_name, pw.pw_uid)}


def job_dir(c: Cluster, job_id: int) -> str:
    """Where craned keeps the job's supervisor state on :data:`NODE`."""
    return os.path.join(c.lc.base_dir, "craned", NODE, "jobs", str(job_id))


def wait_for(pred, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """Poll ``pred`` until it returns a true value; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start_time(pid: int) -> int:
    """The process's start time from /proc (world-readable: any user can read it)."""
    with open(f"/proc/{pid}/stat") as fh:
        data = fh.read()
    return int(data[data.rindex(")") + 2:].split()[19])


def task_pid(user: str, marker: str) -> int:
    """The pid of ``user``'s process whose command line contains ``marker`` (as ``ps`` shows anyone)."""
    def find() -> int | None:
        out = subprocess.run(["pgrep", "-u", user, "-f", marker], capture_output=True, text=True).stdout.split()
        return int(out[0]) if out else None
    return wait_for(find, 15, f"{user}'s process {marker!r}")


def running_job(c: Cluster, pw: pwd.struct_passwd, script: str, marker: str) -> tuple[int, int]:
    """Submit ``script`` on :data:`NODE` as ``pw``'s user; wait until it runs; return (job id, task pid)."""
    jid = c.cbatch("-w", NODE, "-o", f"nt-{pw.pw_name}-%j.out", "--wrap", script, env=token_env(c, pw))
    c.wait_running(jid)
    wait_for(lambda: os.path.exists(os.path.join(job_dir(c, jid), "sup.json")), 15, f"job {jid}'s supervisor")
    return jid, task_pid(pw.pw_name, marker)


def epoch_of(c: Cluster, job_id: int) -> int:
    """The launch epoch in the job's real pid file (alice could read her own before the fix)."""
    with open(os.path.join(job_dir(c, job_id), "sup.json")) as fh:
        return int(json.load(fh)["epoch"])


def decoy_dir(c: Cluster, pw: pwd.struct_passwd) -> str:
    """A directory the attacker owns, for her decoy files."""
    d = os.path.join(c.lc.base_dir, f"home-{pw.pw_name}")
    os.makedirs(d, exist_ok=True)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cancel(c: Cluster, pw: pwd.struct_passwd, *jids: int) -> None:
    """Cancel jobs as their owner (clean-up)."""
    c.run("ccancel", *map(str, jids), env=token_env(c, pw))


def test_a_forged_pid_file_cannot_make_craned_signal_another_users_process(cluster, users):
    """Attack (a): alice points her job's ``sup.json`` at bob's task, then cancels her own job.

    Before: the job directory was alice's, craned took the pid (and the start time she copied from
    /proc) from her ``sup.json`` and SIGTERMed bob's process: bob's job died, and alice's job kept
    running. Now the state directory is root's (0700): she cannot write or replace anything there,
    and craned signals a pid only after checking it is its own supervisor.
    """
    alice, bob = users["alice"], users["bob"]
    b_jid, b_pid = running_job(cluster, bob, "sleep 301", "sleep 301")
    a_jid, _ = running_job(cluster, alice, "sleep 302", "sleep 302")
    forged = {"pid": b_pid, "start": start_time(b_pid), "epoch": epoch_of(cluster, a_jid), "step": 1}
    out = as_user(ATTACKER, "/usr/bin/python3", "-c", FORGE, job_dir(cluster, a_jid),
                  json.dumps({"sup.json": json.dumps(forged)}), decoy_dir(cluster, alice))
    print(out.stdout, out.stderr)
    try:
        assert cluster.run("ccancel", str(a_jid), env=token_env(cluster, alice)).returncode == 0
        assert cluster.wait_done(a_jid, timeout=15).status == JobState.Cancelled
        time.sleep(1.5)  # KillWait is 1 s: a SIGTERM meant for bob's task would have been sent by now
        assert alive(b_pid), "bob's task was killed"
        assert cluster.job(b_jid).status == JobState.Running
    finally:
        cancel(cluster, alice, a_jid)
        cancel(cluster, bob, b_jid)
    assert cluster.wait_done(b_jid).status == JobState.Cancelled


def test_a_forged_result_file_cannot_end_another_users_job(cluster, users):
    """Attack (b): alice writes a ``result.json`` saying bob's job completed 0:0 (and a dead ``sup.json``).

    Before: craned's heartbeat read the result file of a directory whose supervisor looked dead
    and published it as a status: bob's job was recorded Completed while it still ran. Now
    craned reads results only from its root-only state directory, which alice cannot write.
    """
    alice, bob = users["alice"], users["bob"]
    b_jid, b_pid = running_job(cluster, bob, "sleep 303", "sleep 303")
    a_jid, _ = running_job(cluster, alice, "sleep 304", "sleep 304")
    result = {"node": NODE, "job_id": b_jid, "step_id": 1, "state": "finished", "exit_code": 0,
              "time": time.time(), "epoch": 0, "reason": ""}
    files = {"sup.json": json.dumps({"pid": 999_999, "start": 1, "epoch": 0, "step": 1}),
             "result.json": json.dumps(result)}
    out = as_user(ATTACKER, "/usr/bin/python3", "-c", FORGE, job_dir(cluster, a_jid), json.dumps(files),
                  decoy_dir(cluster, alice))
    print(out.stdout, out.stderr)
    try:
        time.sleep(3)  # six heartbeats
        assert cluster.job(b_jid).status == JobState.Running
        assert alive(b_pid)
        assert cluster.job(a_jid).status == JobState.Running  # and her own job is untouched too
    finally:
        cancel(cluster, alice, a_jid)
        cancel(cluster, bob, b_jid)
    assert cluster.wait_done(b_jid).status == JobState.Cancelled
    assert cluster.wait_done(a_jid).status == JobState.Cancelled


def test_a_user_cannot_make_her_own_job_uncancellable(cluster, users):
    """Attack (c): alice points her ``sup.json`` at her own task, which ignores SIGTERM, then ccancels.

    Before: ccancel printed success, craned SIGTERMed the task instead of the supervisor, the task
    ignored it, and the job ran on (Running, for ever). Now craned signals its own supervisor,
    which SIGTERMs the task and SIGKILLs it after KillWait: the job really ends Cancelled.
    """
    alice = users["alice"]
    a_jid, _ = running_job(cluster, alice, "trap '' TERM; echo $$ > stubborn-$CRANE_JOB_ID.pid; sleep 305 & wait; "
                           "while :; do sleep 0.2; done", "sleep 305")
    pid_file = os.path.join(cluster.workdir, f"stubborn-{a_jid}.pid")
    a_pid = int(wait_for(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(), 10, "the task's pid"))
    forged = {"pid": a_pid, "start": start_time(a_pid), "epoch": epoch_of(cluster, a_jid), "step": 1}
    out = as_user(ATTACKER, "/usr/bin/python3", "-c", FORGE, job_dir(cluster, a_jid),
                  json.dumps({"sup.json": json.dumps(forged)}), decoy_dir(cluster, alice))
    print(out.stdout, out.stderr)
    try:
        proc = cluster.run("ccancel", str(a_jid), env=token_env(cluster, alice))
        assert proc.returncode == 0, proc.stderr
        assert cluster.wait_done(a_jid, timeout=15).status == JobState.Cancelled
        wait_for(lambda: not alive(a_pid), 10, "the stubborn task to be killed")
    finally:
        if alive(a_pid):
            os.kill(a_pid, signal.SIGKILL)


@pytest.mark.parametrize("via", ["symlink", "direct"])
def test_output_onto_a_root_owned_file_is_refused(cluster, users, via):
    """Attack (d): alice's output path is a symlink she planted to a root-owned file, or the file itself.

    Before: already refused (the supervisor opened the streams with alice's effective ids, so the
    kernel applied her permissions), kept here as a regression test: the root-owned file is
    untouched and the job fails with EC_PERMISSION_DENIED ("cannot open ...: Permission denied").
    """
    alice = users["alice"]
    target = os.path.join(cluster.lc.base_dir, f"root-owned-{via}")
    with open(target, "w") as fh:
        fh.write("precious\n")
    os.chmod(target, 0o644)
    before = os.stat(target)
    if via == "symlink":
        output = os.path.join(cluster.workdir, "alice-evil.out")
        assert as_user(ATTACKER, "ln", "-sfn", target, output).returncode == 0
    else:
        output = target
    jid = cluster.cbatch("-w", NODE, "-o", output, "--wrap", "echo pwned", env=token_env(cluster, alice))
    info = cluster.wait_done(jid)
    assert info.status == JobState.Failed and info.exit_code == EC_PERMISSION_DENIED, info
    with open(target) as fh:
        assert fh.read() == "precious\n"
    after = os.stat(target)
    assert (after.st_uid, after.st_gid, after.st_mode, after.st_mtime_ns) == \
        (before.st_uid, before.st_gid, before.st_mode, before.st_mtime_ns)


def test_token_save_to_does_not_follow_a_planted_symlink(cluster, users):
    """Attack (e): root runs ``crane token issue --user alice --save-to <alice's dir>/token``.

    alice planted a symlink at the path and at every temporary name the old code could pick
    (``<path>.<pid>.tmp``, pids being predictable), all pointing at a root-owned file. Before: root
    opened the temporary name through her symlink, truncated and overwrote the root-owned file with
    the token and chowned it to alice. Now the token is written by a child that has become alice
    (setgid/setuid) with ``O_NOFOLLOW``/``O_EXCL`` and renamed into place: the root-owned file is
    untouched and alice gets a regular 0600 file of her own.
    """
    alice = users["alice"]
    home = decoy_dir(cluster, alice)
    target = os.path.join(cluster.lc.base_dir, "root-secret")
    with open(target, "w") as fh:
        fh.write("root only\n")
    os.chmod(target, 0o600)
    path = os.path.join(home, "token")
    with open("/proc/sys/kernel/ns_last_pid") as fh:
        last = int(fh.read())
    plant = (f"import os\nos.symlink({target!r}, {path!r})\n"
             f"for pid in range({last}, {last} + 3000):\n"
             f"    os.symlink({target!r}, {path!r} + '.' + str(pid) + '.tmp')\n")
    assert as_user(ATTACKER, "/usr/bin/python3", "-c", plant).returncode == 0
    env = cluster.lc.env()
    proc = subprocess.run([cli("crane"), "token", "issue", "--user", ATTACKER, "--save-to", path],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    with open(target) as fh:
        assert fh.read() == "root only\n"
    st = os.stat(target)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    st = os.lstat(path)
    assert os.path.isfile(path) and not os.path.islink(path)
    assert (st.st_uid, st.st_mode & 0o777) == (alice.pw_uid, 0o600)
    with open(path) as fh:
        assert fh.read().strip() == proc.stdout.strip()
