"""crun: flags -> StepStart, and the client loop against a scripted test server (crunserver.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from cli_support import TOKEN, script_path, write_config
from crane_common.proto import crane_pb2 as pb
from crunserver import allocated, ended, error, output, pending

from crane_cli import crun
from crane_cli.errors import CliError

# -- flags -> StepStart ---------------------------------------------------------------------------


def test_new_job_start(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args, start = crun.prepare(["-N", "2", "-c", "3", "--mem", "1G", "-p", "CPU", "/bin/hostname", "-s"],
                               {"HOME": "/h", "CRANE_TOKEN": "secret"})
    job = start["job"]
    assert start["argv"] == ["/bin/hostname", "-s"] and "job_id" not in start
    assert job["name"] == "hostname" and job["cwd"] == str(tmp_path) and job["partition"] == "CPU"
    assert job["node_num"] == 2 and job["cpus_per_task"] == 3 and job["mem_per_node"] == 1 << 30
    assert job["env"] == {"HOME": "/h"}  # --export ALL, the token left out (as cbatch)
    assert "script" not in job and "interpreter" not in job
    assert start["stdin_target"] == "0" and not start.get("pty")
    pb.StepStart(**{**start, "job": pb.JobSpec(**job)})  # every field exists in the proto


def test_flags_before_the_command_only():
    _args, start = crun.prepare(["-J", "x", "ls", "-N", "5", "-l"], {})
    assert start["argv"] == ["ls", "-N", "5", "-l"] and start["job"]["name"] == "x"
    assert "node_num" not in start["job"]


def test_step_of_an_allocation(capsys):
    env = {"CRANE_JOB_ID": "7", "PATH": "/bin"}
    _args, start = crun.prepare(["-n", "4", "-w", "cn[01-02]", "-t", "1:00", "-p", "GPU", "-A", "a", "-i", "all",
                                 "./a.out"], env)
    assert "job" not in start and start["job_id"] == 7
    assert start["ntasks"] == 4 and start["nodelist"] == ["cn01", "cn02"] and start["time_limit"] == 60
    assert start["name"] == "a.out" and start["env"]["CRANE_JOB_ID"] == "7" and start["stdin_target"] == "all"
    assert "partition" not in start and "account" not in start
    assert "-p/--partition, -A/--account ignored for a step of job 7" in capsys.readouterr().err
    pb.StepStart(**start)


def test_default_name_interactive():
    from crane_cli.stepspec import default_name

    assert default_name(["", "/usr/bin/env", "x"]) == "env"
    assert default_name([]) == "Interactive"


@pytest.mark.parametrize("argv, message", [
    (["--x11", "true"], "crun: error: --x11 is not supported"),
    ([], "crun: error: a command to run is required"),
    (["-N", "0", "true"], "invalid node count (-N) '0': must be greater than 0"),
    (["-o", "", "true"], "crun: -o/--output needs a value: all, none, a task id or a file"),
])
def test_bad_flags(argv, message):
    with pytest.raises(CliError) as exc:
        crun.prepare(argv, {})
    assert exc.value.code == 2 and exc.value.message == message


def test_pty_needs_a_terminal(tmp_path):
    proc = subprocess.run([script_path("crun"), "--pty", "bash"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30, env={**os.environ, "CRANE_CONFIG": str(tmp_path / "none")})
    assert proc.returncode == 2 and proc.stderr == "crun: error: --pty needs a terminal on stdin\n"
    assert proc.stdout == ""


# -- the client loop --------------------------------------------------------------------------------


def run_crun(env, *args, stdin=b"", timeout=30, cwd=None):
    return subprocess.run([script_path("crun"), *args], env=env, input=stdin, capture_output=True, timeout=timeout,
                          cwd=cwd)


def simple(*replies):
    def script(s):
        s.wait_for("start")
        yield from replies
    return script


def test_output_byte_exact(scripted):
    _srv, env = scripted(simple(pending(), allocated(), output(0, 1, b"hello\n"), output(1, 2, b"e\x00\xff"),
                                output(1, 1, b"no newline"), ended()))
    p = run_crun(env, "hostname")
    assert p.returncode == 0
    assert p.stdout == b"hello\nno newline"
    assert p.stderr == (b"Job id allocated: 42, waiting resources.\nAllocated craned nodes: cn[01-02]\ne\x00\xff")


def test_quiet_and_metadata(scripted):
    srv, env = scripted(simple(pending(), allocated(), output(0, 2, b"x"), ended()))
    p = run_crun(env, "-Q", "true")
    assert (p.returncode, p.stdout, p.stderr) == (0, b"", b"x")
    assert srv.session().metadata["authorization"] == f"Bearer {TOKEN}"


def test_label(scripted):
    _srv, env = scripted(simple(pending(), allocated(), output(0, 1, b"a\nb"), output(1, 1, b"x\n"),
                                output(0, 1, b"c\nd\n"), ended()))
    p = run_crun(env, "-l", "-Q", "true")
    assert p.stdout == b"0: a\n0: b1: x\nc\n0: d\n"


@pytest.mark.parametrize("flag, out, err", [(["-o", "none"], b"", b"E0E1"), (["-o", "1"], b"O1", b"E0E1"),
                                            (["-e", "0"], b"O0O1", b"E0"), (["-o", "none", "-e", "none"], b"", b"")])
def test_output_filters(scripted, flag, out, err):
    _srv, env = scripted(simple(pending(), allocated(), output(0, 1, b"O0"), output(1, 1, b"O1"),
                                output(0, 2, b"E0"), output(1, 2, b"E1"), ended()))
    p = run_crun(env, "-Q", *flag, "true")
    assert (p.returncode, p.stdout, p.stderr) == (0, out, err)


def test_output_file_pattern(scripted, tmp_path):
    _srv, env = scripted(simple(pending(7, 3), allocated(7, 3), output(0, 1, b"O0"), output(1, 1, b"O1"),
                                output(1, 2, b"E1"), ended(job_id=7, step_id=3)))
    p = run_crun(env, "-Q", "-J", "nm", "-o", "out-%J-%j-%s-%x-%t-%%.txt", "true", cwd=str(tmp_path))
    assert (p.returncode, p.stdout, p.stderr) == (0, b"", b"")
    assert (tmp_path / "out-7.3-7-3-nm-0-%.txt").read_bytes() == b"O0"
    assert (tmp_path / "out-7.3-7-3-nm-1-%.txt").read_bytes() == b"O1E1"  # no -e: stderr goes with stdout


def test_exit_code_and_error_line(scripted):
    _srv, env = scripted(simple(pending(), allocated(), output(0, 1, b"partial"),
                                ended(pb.Failed, exit_code=3, crun_exit=3, reason="task 1 failed")))
    p = run_crun(env, "-Q", "false")
    assert p.returncode == 3 and p.stdout == b"partial"
    assert p.stderr == b"crun: error: step 42.0 Failed: task 1 failed\n"


def test_cancelled_without_task_code_exits_1(scripted):
    _srv, env = scripted(simple(pending(), ended(pb.Cancelled, exit_code=320, crun_exit=0, reason="cancelled")))
    p = run_crun(env, "-Q", "sleep", "9")
    assert p.returncode == 1 and p.stderr == b"crun: error: step 42.0 Cancelled: cancelled\n"


def test_plain_exit_code(scripted):
    _srv, env = scripted(simple(pending(), allocated(), ended(pb.Completed, exit_code=0, crun_exit=0)))
    assert run_crun(env, "true").returncode == 0
    _srv, env = scripted(simple(pending(), allocated(), ended(pb.Failed, exit_code=265, crun_exit=137)))
    p = run_crun(env, "-Q", "true")
    assert p.returncode == 137 and p.stderr == b""


def test_error_new_job(scripted):
    _srv, env = scripted(simple(error("Partition 'X' does not exist.")))
    p = run_crun(env, "-p", "X", "true")
    assert p.returncode == 4 and p.stderr == b"Failed to allocate job id: Partition 'X' does not exist.\n"


def test_error_step(scripted):
    srv, env = scripted(simple(error("job 9 is not running")))
    p = run_crun({**env, "CRANE_JOB_ID": "9"}, "true")
    assert p.returncode == 4 and p.stderr == b"Failed to allocate step id: job 9 is not running\n"
    start = srv.session().start
    assert start.job_id == 9 and not start.HasField("job")


def test_step_messages(scripted):
    _srv, env = scripted(simple(pending(9, 2), allocated(9, 2, nodes="cn03"), ended(job_id=9, step_id=2)))
    p = run_crun({**env, "CRANE_JOB_ID": "9"}, "true")
    assert p.stderr == b"Job 9 step 2 allocated, waiting resources.\n"   # it waited: it says so


def test_a_step_that_starts_at_once_prints_nothing(scripted):
    _srv, env = scripted(simple(pending(9, 3, reason=""), allocated(9, 3, nodes="cn03"), ended(job_id=9, step_id=3)))
    p = run_crun({**env, "CRANE_JOB_ID": "9"}, "true")
    assert p.returncode == 0 and p.stderr == b""          # a batch script's output stays its own


def test_stream_ends_early(scripted):
    _srv, env = scripted(simple(pending(), allocated(), output(0, 1, b"x")))
    p = run_crun(env, "-Q", "true")
    assert p.returncode == 3 and p.stdout == b"x"
    assert p.stderr.decode().splitlines() == ["Connection to CraneCtld is broken. (the stream ended before the step "
                                              "did)"]


def test_server_dies_mid_stream(scripted):
    box = {}

    def script(s):
        s.wait_for("start")
        yield pending()
        yield allocated()
        box["srv"].server.stop(0)
        time.sleep(5)
        yield ended()

    srv, env = scripted(script)
    box["srv"] = srv
    p = run_crun(env, "-Q", "true")
    assert p.returncode == 3, p
    assert len(p.stderr.decode().splitlines()) == 1 and b"Traceback" not in p.stderr


def test_unreachable(tmp_path):
    conf = write_config(tmp_path, 1)
    p = run_crun({**os.environ, "CRANE_CONFIG": str(conf), "CRANE_TOKEN": TOKEN}, "true")
    assert p.returncode == 3 and p.stderr == b"Connection to CraneCtld is broken.\n"


def test_stdin_forwarded(scripted):
    def script(s):
        s.wait_for("stdin_eof")
        yield pending()
        yield ended()

    srv, env = scripted(script)
    data = bytes(range(256)) * 600  # > 64 KiB: several messages
    p = run_crun(env, "-Q", "cat", stdin=data)
    assert p.returncode == 0
    s = srv.session()
    chunks = [v for k, v in s.requests if k == "stdin"]
    assert b"".join(chunks) == data and all(len(c) <= 65536 for c in chunks)
    assert s.kinds()[-1] == "stdin_eof" and s.kinds()[0] == "start"


def test_stdin_none_and_file(scripted, tmp_path):
    (tmp_path / "in.txt").write_bytes(b"from file")

    def script(s):
        start = s.start
        if start.stdin_target == "none":
            time.sleep(0.3)
        else:
            s.wait_for("stdin_eof")
        yield ended()

    srv, env = scripted(script)
    assert run_crun(env, "-i", "none", "cat", stdin=b"ignored").returncode == 0
    assert "stdin" not in srv.session().kinds() and srv.session().start.stdin_target == "none"
    srv, env = scripted(script)
    assert run_crun(env, "-i", str(tmp_path / "in.txt"), "cat", stdin=b"ignored").returncode == 0
    assert [v for k, v in srv.session().requests if k == "stdin"] == [b"from file"]


def test_heartbeat(scripted):
    def script(s):
        s.wait_for("start")
        yield allocated(heartbeat=1)
        s.wait_for("ping", 2, timeout=5)
        yield ended()

    srv, env = scripted(script)
    p = run_crun(env, "-Q", "-i", "none", "true")
    assert p.returncode == 0, p


def _spawn(env, *args):
    return subprocess.Popen([script_path("crun"), *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_sigint_once_forwards(scripted):
    def script(s):
        s.wait_for("start")
        yield allocated()
        s.wait_for("signal")
        yield ended(pb.Failed, exit_code=258, crun_exit=130, reason="")

    srv, env = scripted(script)
    proc = _spawn(env, "-Q", "sleep", "100")
    srv.session().wait_for("start")
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert err == b"crun: interrupt (one more within 1 sec to abort)\n"
    assert srv.session().wait_for("signal") == [2] and "cancel" not in srv.session().kinds()


def test_sigint_twice_cancels(scripted):
    def script(s):
        s.wait_for("start")
        yield allocated()
        s.wait_for("cancel")
        yield ended(pb.Cancelled, exit_code=320, crun_exit=0, reason="cancelled by user")

    srv, env = scripted(script)
    proc = _spawn(env, "-Q", "sleep", "100")
    s = srv.session()
    s.wait_for("start")
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    s.wait_for("signal")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert err.decode().splitlines()[-1] == "crun: error: step 42.0 Cancelled: cancelled by user"
    assert s.kinds().count("signal") == 1 and "cancel" in s.kinds()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_cancels(scripted, sig):
    def script(s):
        s.wait_for("start")
        yield allocated()
        s.wait_for("cancel")
        yield ended(pb.Cancelled, crun_exit=0, reason="cancelled")

    srv, env = scripted(script)
    proc = _spawn(env, "-Q", "sleep", "100")
    srv.session().wait_for("start")
    time.sleep(0.2)
    proc.send_signal(sig)
    proc.communicate(timeout=20)
    assert proc.returncode == 1 and "signal" not in srv.session().kinds()


def test_pty(scripted, tmp_path):
    pexpect = pytest.importorskip("pexpect")

    def script(s):
        start = s.start
        yield pending()
        yield allocated()
        s.wait_for("winsize")
        yield output(0, 1, b"remote$ ")
        got = b""
        while b"\x03" not in got or b"q" not in got:
            got = b"".join(v for k, v in s.requests if k == "stdin")
            time.sleep(0.05)
        yield output(0, 1, f"rows={start.rows} cols={start.cols} term={start.term} pty={start.pty}\r\n".encode())
        yield ended(crun_exit=5, status=pb.Failed, reason="")

    srv, env = scripted(script)
    env["TERM"] = "vt100"
    from crane_tools.ptyspawn import spawn_on_pty  # not pexpect.spawn: it forks this gRPC-serving process

    child = spawn_on_pty([script_path("crun"), "--pty", "bash"], env=env, dimensions=(31, 97), timeout=20)
    child.expect("remote\\$ ")
    before = _tty_mode(child)
    child.send(b"\x03q")
    child.expect("rows=31 cols=97 term=vt100 pty=True")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 5
    assert before is not None
    s = srv.session()
    assert b"\x03q" in b"".join(v for k, v in s.requests if k == "stdin")
    assert "signal" not in s.kinds()  # Ctrl-C went to the remote terminal as a byte
    ws = s.wait_for("winsize")[0]
    assert (ws.rows, ws.cols) == (31, 97)


def _tty_mode(child):
    """The pty's local modes while crun runs (raw: no ECHO, no ICANON)."""
    import termios

    attrs = termios.tcgetattr(child.child_fd)
    assert not attrs[3] & termios.ICANON and not attrs[3] & termios.ECHO
    return attrs


def test_pty_mode_restored(scripted, tmp_path):
    """After crun --pty ends, the terminal it ran on is in its saved (cooked) mode again."""
    pexpect = pytest.importorskip("pexpect")

    def script(s):
        s.wait_for("start")
        yield allocated()
        s.wait_for("winsize")
        yield output(0, 1, b"ready\r\n")
        s.wait_for("stdin")
        yield ended()

    srv, env = scripted(script)
    crun_bin = script_path("crun")
    # a shell on the pty runs crun, then prints the tty mode after it
    cmd = f"stty -a | grep -o -- '-\\?icanon' ; {crun_bin} --pty x; echo rc=$?; stty -a | grep -o -- '-\\?icanon'"
    child = pexpect.spawn("/bin/sh", ["-c", cmd], env=env, timeout=20)
    child.expect("icanon")
    child.expect("ready")
    child.send(b"z")
    child.expect("rc=0")
    child.expect("(-?)icanon")
    assert child.match.group(1) == b""  # icanon, not -icanon: cooked again
    child.expect(pexpect.EOF)


def test_third_interrupt_leaves(scripted):
    """After the cancel, one more Ctrl-C leaves at once (the stream breaks: the controller ends the step)."""
    def script(s):
        s.wait_for("start")
        yield allocated()
        s.wait_for("cancel")
        time.sleep(30)
        yield ended()

    srv, env = scripted(script)
    proc = _spawn(env, "-Q", "sleep", "100")
    s = srv.session()
    s.wait_for("start")
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    s.wait_for("signal")
    proc.send_signal(signal.SIGINT)
    s.wait_for("cancel")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    assert proc.returncode == 130


def test_refusal_status_exits_4(scripted):
    def script(s):
        s.wait_for("start")
        s.context.abort(__import__("grpc").StatusCode.PERMISSION_DENIED, "Permission denied: not your job")
        yield ended()

    _srv, env = scripted(script)
    p = run_crun({**env, "CRANE_JOB_ID": "5"}, "true")
    assert (p.returncode, p.stderr) == (4, b"Permission denied: not your job\n")


def test_start_up_imports(scripted):
    """crun's fast path loads nothing heavy (it is benchmarked against srun)."""
    import sys

    from test_import_hygiene import HEAVY

    _srv, env = scripted(simple(pending(), allocated(), output(0, 1, b"hi\n"), ended()))
    for _ in range(2):  # the second run uses the config cache
        p = subprocess.run([sys.executable, "-X", "importtime", script_path("crun"), "true"], env=env,
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and p.stdout == "hi\n"
    names = {line.split("|")[2].strip() for line in p.stderr.splitlines()
             if line.startswith("import time:") and "self [us]" not in line}
    assert "grpc" in names and not names & set(HEAVY), sorted(names & set(HEAVY))
    assert not names & {"termios", "tty", "subprocess"}  # --pty and calloc only


def test_closed_stdout_cancels(scripted):
    """``crun yes | head -1``: once stdout is gone crun cancels the step and exits 141 (128+SIGPIPE)."""
    def script(s):
        s.wait_for("start")
        yield allocated()
        for _ in range(200):
            yield output(0, 1, b"y\n" * 4096)
            if "cancel" in s.kinds():
                break
        s.wait_for("cancel")
        yield ended(pb.Cancelled, crun_exit=0, reason="cancelled")

    _srv, env = scripted(script)
    p = subprocess.run(f"'{script_path('crun')}' -Q yes | head -1; echo rc=${{PIPESTATUS[0]}}", shell=True,
                       executable="/bin/bash", env=env, capture_output=True, timeout=30)
    assert p.stdout == b"y\nrc=141\n" and p.stderr == b""


def test_pty_window_change(scripted):
    pexpect = pytest.importorskip("pexpect")

    def script(s):
        s.wait_for("start")
        yield allocated()
        s.wait_for("winsize")
        yield output(0, 1, b"go\r\n")
        s.wait_for("winsize", 2)
        yield ended()

    srv, env = scripted(script)
    child = pexpect.spawn(script_path("crun"), ["-Q", "--pty", "x"], env=env, dimensions=(24, 80), timeout=20)
    child.expect("go")
    child.setwinsize(50, 132)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    sizes = [(w.rows, w.cols) for w in srv.session().wait_for("winsize", 2)]
    assert sizes == [(24, 80), (50, 132)]


def test_through_the_forwarder_crun_needs_no_grpc(tmp_path):
    """With ``Cfored.Socket`` there, crun talks frames over the Unix socket: no grpc, TLS or token loaded."""
    import socket
    import sys
    import threading

    from crane_common.frames import read_frame, write_frame

    sock_path = tmp_path / "cfored.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    seen: list = []

    def forwarder() -> None:
        conn, _ = server.accept()
        seen.append(pb.CrunRequest.FromString(read_frame(conn)))
        for reply in (pending(), allocated(), output(0, 1, b"hi\n"), ended()):
            write_frame(conn, reply.SerializeToString())
        conn.close()

    threading.Thread(target=forwarder, daemon=True).start()
    conf = tmp_path / "config.yaml"
    conf.write_text(f"ClusterName: test\nControlMachine: 127.0.0.1\nCraneCtldListenPort: 9\nCraneBaseDir: {tmp_path}/\n"
                    "Cfored:\n  Socket: cfored.sock\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRANE_")}
    env.update(CRANE_CONFIG=str(conf), XDG_CACHE_HOME=str(tmp_path / "cache"))
    p = subprocess.run([sys.executable, "-X", "importtime", script_path("crun"), "true"], env=env,
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and p.stdout == "hi\n", p.stderr[-500:]
    names = {line.split("|")[2].strip() for line in p.stderr.splitlines()
             if line.startswith("import time:") and "self [us]" not in line}
    assert not names & {"grpc", "ssl", "google.protobuf.text_format"}, sorted(names & {"grpc", "ssl"})
    assert list(seen[0].start.argv) == ["true"]
