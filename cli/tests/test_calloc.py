"""calloc against the scripted test server (crunserver.py): allocation, the local shell, complete, early end."""

from __future__ import annotations

import subprocess
import time

from cli_support import script_path
from crane_common.proto import crane_pb2 as pb
from crunserver import allocated, ended, error, pending

from crane_cli import calloc


def run_calloc(env, *args, timeout=30):
    return subprocess.run([script_path("calloc"), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_prepare(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    _args, start = calloc.prepare(["-N", "2", "-p", "CPU", "-t", "10"], {"A": "1"})
    assert start["allocate_only"] is True and start["argv"] == []
    job = start["job"]
    assert job["name"] == "Interactive" and job["node_num"] == 2 and job["time_limit"] == 600
    assert job["cwd"] == str(tmp_path) and job["env"] == {"A": "1"}
    pb.StepStart(**{**start, "job": pb.JobSpec(**job)})


def completes(status_seen: list):
    def script(s):
        s.wait_for("start")
        yield pending()
        yield allocated(env={"CRANE_JOB_ID": "42", "CRANE_JOB_NODELIST": "cn[01-02]"}, heartbeat=1)
        status_seen.extend(s.wait_for("complete", timeout=20))
        yield ended(exit_code=status_seen[0])
    return script


def test_runs_the_command_with_the_allocation(scripted):
    seen: list = []
    srv, env = scripted(completes(seen))
    p = run_calloc(env, "sh", "-c", "echo id=$CRANE_JOB_ID nodes=$CRANE_JOB_NODELIST; exit 3")
    assert p.returncode == 3, p
    assert p.stdout == "id=42 nodes=cn[01-02]\n"
    assert p.stderr == "Job id allocated: 42, waiting resources.\nAllocated craned nodes: cn[01-02].\n"
    assert seen == [3]
    start = srv.session().start
    assert start.allocate_only and start.job.name == "Interactive" and list(start.argv) == ["sh", "-c",
                                                                                             start.argv[2]]


def test_shell_killed_by_a_signal(scripted):
    seen: list = []
    _srv, env = scripted(completes(seen))
    p = run_calloc(env, "-Q", "sh", "-c", "kill -TERM $$")
    assert (p.returncode, p.stderr) == (143, "")
    assert seen == [256 + 15]


def test_default_shell(scripted, tmp_path):
    seen: list = []
    _srv, env = scripted(completes(seen))
    shell = tmp_path / "myshell"
    shell.write_text("#!/bin/sh\necho \"args=$*\"\nexit 0\n")
    shell.chmod(0o755)
    p = run_calloc({**env, "SHELL": str(shell)}, "-Q")
    assert (p.returncode, p.stdout) == (0, "args=-i\n") and seen == [0]


def test_pings_while_the_shell_runs(scripted):
    def script(s):
        s.wait_for("start")
        yield allocated(heartbeat=1)
        s.wait_for("ping", 2, timeout=10)
        s.wait_for("complete", timeout=20)
        yield ended()

    _srv, env = scripted(script)
    assert run_calloc(env, "-Q", "sleep", "2.5").returncode == 0


def test_job_ends_first(scripted):
    def script(s):
        s.wait_for("start")
        yield pending()
        yield allocated()
        time.sleep(0.5)
        yield ended(pb.Cancelled, reason="cancelled by user")

    _srv, env = scripted(script)
    t0 = time.monotonic()
    p = run_calloc(env, "-Q", "sleep", "30")
    assert p.returncode == 1 and time.monotonic() - t0 < 15
    assert p.stderr == "calloc: error: job 42 Cancelled: cancelled by user\n"


def test_refused(scripted):
    _srv, env = scripted(lambda s: iter([error("Partition 'X' does not exist.")]))
    p = run_calloc(env, "-p", "X")
    assert (p.returncode, p.stderr) == (4, "Failed to allocate job id: Partition 'X' does not exist.\n")


def test_broken_stream(scripted):
    def script(s):
        s.wait_for("start")
        yield pending()

    _srv, env = scripted(script)
    p = run_calloc(env, "true")
    assert p.returncode == 3 and p.stderr.splitlines()[-1].startswith("Connection to CraneCtld is broken.")


def test_interrupt_while_pending_cancels(scripted):
    import signal

    def script(s):
        s.wait_for("start")
        yield pending()
        s.wait_for("cancel")
        yield ended(pb.Cancelled, reason="cancelled by user")

    srv, env = scripted(script)
    proc = subprocess.Popen([script_path("calloc"), "-Q"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    srv.session().wait_for("start")
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and err == "calloc: error: job 42 Cancelled: cancelled by user\n"
