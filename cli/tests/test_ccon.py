"""ccon (docker-like container jobs) and cbatch --pod, against FakeCtld."""

from __future__ import annotations

import json
import sys

import pytest
from cli_support import TOKEN, write_config
from crane_common.proto import crane_pb2 as pb

from crane_cli import cbatch, ccon
from crane_cli.errors import CliError


@pytest.fixture
def con(fake, tmp_path, monkeypatch, capsys):
    """``con("ps")``: ccon's command() in-process against the fake; (code, out, err)."""
    conf = write_config(tmp_path, fake.port)
    monkeypatch.setenv("CRANE_TOKEN", TOKEN)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)

    def run(*argv: str):
        capsys.readouterr()
        try:
            code = ccon.command(["-C", str(conf), *argv])
        except CliError as exc:
            print(exc.message, file=sys.stderr)
            code = exc.code
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    return run


def test_run_detached_fills_the_container_spec(con, fake):
    code, out, err = con("-p", "GPU", "-c", "2", "--mem", "1G", "-t", "0:10:00", "run", "-d", "--name", "web",
                         "-e", "A=1", "--user", "1000:100", "-p", "8080:80", "img:1", "sh", "-c", "echo -e hi")
    assert code == 0, err
    job_id = int(out.strip())
    spec = fake.last("SubmitBatchJob").job
    assert spec.partition == "GPU" and spec.cpus_per_task == 2 and spec.mem_per_node == 1 << 30
    assert spec.time_limit == 600 and spec.name == "web"
    assert spec.container.image == "img:1" and spec.container.pod_name == "web"
    assert list(spec.container.command) == ["sh", "-c", "echo -e hi"]
    assert spec.container.user == "1000:100" and list(spec.container.ports) == ["8080:80"]
    assert dict(spec.env) == {"A": "1"}  # nothing from the submitting shell
    assert spec.script.strip()  # the placeholder the server needs
    assert any(j.job_id == job_id for j in fake.jobs)


def test_run_streams_the_output_and_exits_with_the_container_code(con, fake):
    fake.container_output = "hello from a container\n"
    fake.container_status, fake.container_exit = pb.Failed, 3
    code, out, err = con("run", "localhost/crane-busybox:1", "sh", "-c", "echo hi; exit 3")
    assert code == 3, err
    assert out == "hello from a container\n"


@pytest.mark.parametrize(("status", "raw", "expect"), [
    (pb.Completed, 0, 0), (pb.Failed, 256 + 15, 143), (pb.Cancelled, 320, 137), (pb.OutOfMemory, 0, 137),
    (pb.ExceedTimeLimit, 325, 124), (pb.Failed, 324, 125)])
def test_exit_status(status, raw, expect):
    assert ccon.exit_status(pb.JobInfo(status=status, exit_code=raw)) == expect


def test_ps_lists_only_container_jobs(con, fake):
    assert con("run", "-d", "--name", "box", "img:1", "true")[0] == 0
    code, out, _ = con("ps")
    assert code == 0 and out.split("\n")[0].split() == ["ID", "IMAGE", "COMMAND", "STATUS", "NODE", "NAME"]
    assert len(out.strip().splitlines()) == 1  # the finished one is shown with -a only
    code, out, _ = con("ps", "-a")
    lines = out.strip().splitlines()
    assert len(lines) == 2 and "img:1" in lines[1] and "Completed (0)" in lines[1] and lines[1].endswith("box")
    assert con("ps", "-a", "-q")[1].strip() == lines[1].split()[0]
    assert con("pods", "-a")[1] == out


def test_inspect_logs_wait_stop(con, fake, tmp_path):
    fake.container_output = "line1\nline2\n"
    job_id = con("run", "-d", "img:1", "echo")[1].strip()
    code, out, _ = con("inspect", job_id)
    data = json.loads(out)
    assert code == 0 and data[0]["container"]["image"] == "img:1" and data[0]["job_id"] == int(job_id)
    assert json.loads(con("inspectp", job_id)[1]) == data
    assert con("logs", job_id)[1] == "line1\nline2\n"
    assert con("logs", "-f", job_id)[1] == "line1\nline2\n"
    assert con("wait", job_id)[1] == "0\n"
    code, out, _ = con("stop", job_id)
    assert code == 0 and out.strip() == job_id
    code, _, err = con("stop", "99999")
    assert code == 4 and "99999" in err
    assert con("inspect", "99999")[0] == 4
    assert con("logs", "x")[0] == 2


@pytest.mark.parametrize("verb", ["exec", "attach", "login", "logout"])
def test_unsupported_verbs(con, verb):
    code, _, err = con(verb, "1", "sh", "-c", "x")
    assert code == 2 and "not supported" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["run", "-p", "80:0", "img"], ["run", "--user", "bob", "img"],
                                  ["run", "-e", "=x", "img"], ["-c", "zero", "run", "img"], ["run"],
                                  ["nosuch"], ["wait", "abc"]])
def test_bad_arguments_exit_2(con, fake, argv):
    assert con(*argv)[0] == 2
    assert not any(m == "SubmitBatchJob" for m, _r, _md in fake.requests)


def test_network_failure_exits_3(tmp_path, monkeypatch, capsys):
    from fakectld import start

    server, port, _ = start()
    server.stop(0)
    conf = write_config(tmp_path, port)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(CliError) as exc:
        ccon.command(["-C", str(conf), "ps"])
    assert exc.value.code == 3


# -- cbatch --pod ---------------------------------------------------------------------------

def _prepare(*argv: str):
    return cbatch.prepare(list(argv), environ={})[1]


def test_cbatch_pod_flags():
    f = _prepare("--pod", "img:1", "--pod-name", "p1", "--pod-port", "8080:80,53", "--pod-user", "7",
                 "--pod-userns", "--pod-host-network", "--pod-dns", "1.1.1.1,::1", "--wrap", "true")
    assert f["container"] == {"image": "img:1", "pod_name": "p1", "ports": ["8080:80", "53"], "user": "7",
                              "dns": ["1.1.1.1", "::1"], "userns": True, "host_network": True}
    assert pb.JobSpec(**f).container.image == "img:1"
    assert "container" not in _prepare("--wrap", "true")


def test_cbatch_pod_directives(tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#CBATCH --pod img:2\n#SBATCH --pod-port=9000\n#CBATCH --pod-host-network\n"
                      "echo hi\n")
    f = _prepare(str(script))
    assert f["container"] == {"image": "img:2", "ports": ["9000"], "host_network": True}
    assert "#CBATCH" not in f["script"]
    assert _prepare("--pod", "img:3", str(script))["container"]["image"] == "img:3"  # the command line wins


@pytest.mark.parametrize("argv", [
    ["--pod-name", "x"], ["--pod-host-network"], ["--pod-dns", "1.1.1.1"],
    ["--pod", "i", "--pod-port", "70000"], ["--pod", "i", "--pod-port", "a:b"], ["--pod", "i", "--pod-port", "1:2:3"],
    ["--pod", "i", "--pod-user", "root"], ["--pod", "i", "--pod-user", "1:2:3"], ["--pod", "i", "--pod-dns", "dns"],
    ["--pod", "bad image"]])
def test_cbatch_pod_errors_exit_2(argv):
    with pytest.raises(CliError) as exc:
        _prepare(*argv, "--wrap", "true")
    assert exc.value.code == 2 and "\n" not in exc.value.message


def test_cbatch_pod_flag_without_pod_message():
    with pytest.raises(CliError) as exc:
        _prepare("--pod-user", "1000", "--wrap", "true")
    assert exc.value.message == "--pod-user requires --pod IMAGE"


def test_cbatch_pod_script_directive_without_pod(tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#CBATCH --pod-name x\necho hi\n")
    with pytest.raises(CliError) as exc:
        _prepare(str(script))
    assert exc.value.code == 2


def test_cbatch_pod_submits(cli, fake):
    r = cli("cbatch", "--pod", "localhost/crane-busybox:1", "--wrap", "echo hi")
    assert r.code == 0, r
    assert fake.last("SubmitBatchJob").job.container.image == "localhost/crane-busybox:1"
    r = cli("cbatch", "--pod-userns", "--wrap", "echo hi")
    assert r.code == 2 and r.err.strip() == "--pod-userns requires --pod IMAGE"


def test_console_script(cli, fake):
    r = cli("ccon", "exec", "1", "sh")
    assert r.code == 2 and r.err.startswith("ccon exec: not supported: ")
    r = cli("ccon", "-p", "CPU", "run", "-d", "img:1", "true")
    assert r.code == 0 and r.out.strip().isdigit(), r
    r = cli("ccon", "ps", "-a")
    assert r.code == 0 and "img:1" in r.out
