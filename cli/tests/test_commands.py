"""The real console scripts, run as subprocesses against an in-process FakeCtld."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from cli_support import TOKEN, write_config
from crane_common.proto import crane_pb2 as pb


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- cbatch -------------------------------------------------------------------------------

def test_cbatch_wrap(cli, fake, tmp_path):
    r = cli("cbatch", "--wrap", "true")
    assert r.code == 0, r
    assert r.out == "Job id allocated: 1000.\n"
    req = fake.last("SubmitBatchJob")
    job = req.job
    assert job.script == "#!/bin/bash\ntrue\n"
    assert job.interpreter == "/bin/bash"
    assert job.name == "wrap"
    assert job.cwd == str(tmp_path) and job.submit_dir == str(tmp_path)
    assert job.cmd_line == "cbatch --wrap true"
    assert job.submit_host == os.uname().nodename
    assert "CRANE_TOKEN" not in job.env and "PATH" in job.env  # a credential is not copied into the job
    assert job.export == "ALL"
    md = fake.requests[-1][2]
    assert md["authorization"] == f"Bearer {TOKEN}"


def test_cbatch_script_directives_and_overrides(cli, fake, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#CBATCH -N 2\n#CBATCH --time=1:00:00\n#CBATCH -J fromscript\n#CBATCH --mem 2G\n"
                      "#SBATCH -c 4\n#SBATCH --ntasks 3\necho hello\n#CBATCH --gres gpu:a100:2\n")
    r = cli("cbatch", "-N", "3", "--mem-per-cpu", "100", "-w", "cn[01-03]", "--export", "NONE", str(script))
    assert r.code == 0, r
    assert r.err == ""                     # #SBATCH --ntasks is applied, as on the command line
    job = fake.last("SubmitBatchJob").job
    assert job.ntasks == 3
    assert job.node_num == 3  # command line wins
    assert job.time_limit == 3600
    assert job.name == "fromscript"
    assert job.mem_per_node == 0 and job.mem_per_cpu == 100 << 20  # --mem-per-cpu drops the script's --mem
    assert job.cpus_per_task == 4
    assert dict(job.gres) == {"gpu:a100": 2}
    assert list(job.nodelist) == ["cn01", "cn02", "cn03"]
    assert job.script == "#!/bin/sh\necho hello\n"
    assert job.interpreter == "/bin/sh"
    assert all(k.startswith("CRANE_") for k in job.env)


@pytest.mark.parametrize("line, field, value", [
    ("#SBATCH --job-name=x", "name", "x"), ("#SBATCH --job-name x", "name", "x"),
    ("#SBATCH --nodes=2", "node_num", 2), ("#SBATCH --ntasks 3", "ntasks", 3),
    ("#SBATCH --cpus-per-task=2", "cpus_per_task", 2), ("#SBATCH --time=0:10:00", "time_limit", 600),
    ("#SBATCH --output=o-%j.txt", "output", "o-%j.txt"), ("#SBATCH --partition GPU", "partition", "GPU"),
    ("#SBATCH --account p", "account", "p"), ("#SBATCH --hold", "hold", True),
    ("#SBATCH --signal=B:USR1@30", "signal", "B:USR1@30"), ("#SBATCH -s USR2", "signal", "USR2"),
    ("#CBATCH -s TERM@5", "signal", "TERM@5"),
    ("#SBATCH --deadline=2099-01-01T00:00:00", "deadline", int(time.mktime((2099, 1, 1, 0, 0, 0, 0, 0, -1)))),
])
def test_every_sbatch_long_option_applies_as_on_the_command_line(cli, fake, tmp_path, line, field, value):
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/sh\n{line}\necho hi\n")
    r = cli("cbatch", str(script))
    assert r.code == 0 and r.err == "", r
    assert getattr(fake.last("SubmitBatchJob").job, field) == value


@pytest.mark.parametrize("line", ["#SBATCH --array=1-3",
                                  "#SBATCH --time-min=5", "#SBATCH --test-only", "#SBATCH --signal=BAD@x"])
def test_an_sbatch_option_that_changes_when_a_job_runs_is_never_ignored(cli, fake, tmp_path, line):
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/sh\n{line}\necho hi\n")
    before = len(fake.calls) if hasattr(fake, "calls") else None
    r = cli("cbatch", str(script))
    assert r.code == 2 and line.split()[1].split("=")[0] in r.err, r
    if before is not None:
        assert len(fake.calls) == before                   # nothing was submitted


@pytest.mark.parametrize("line", ["#SBATCH --dependency afterok:1", "#SBATCH -d afterok:1"])
def test_an_sbatch_dependency_is_applied(cli, fake, tmp_path, line):
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/sh\n{line}\necho hi\n")
    r = cli("cbatch", str(script))
    assert r.code == 0 and fake.last("SubmitBatchJob").job.dependency == "afterok:1", r


def test_an_unknown_sbatch_option_gets_one_warning_naming_it(cli, fake, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#SBATCH --constraint=haswell\necho hi\n")
    r = cli("cbatch", str(script))
    assert r.code == 0 and r.err.count("Warning") == 1 and "--constraint" in r.err, r


def test_cbatch_mail_flags(cli, fake):
    r = cli("cbatch", "--mail-type", "end,FAIL", "--mail-user", "alice@example.org", "--wrap", "true")
    assert r.code == 0, r
    job = fake.last("SubmitBatchJob").job
    assert list(job.mail_type) == ["END", "FAIL"] and job.mail_user == "alice@example.org"
    r = cli("cbatch", "--wrap", "true")
    job = fake.last("SubmitBatchJob").job
    assert list(job.mail_type) == [] and job.mail_user == ""  # no mail: the common case


def test_cbatch_mail_directives_and_override(cli, fake, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#CBATCH --mail-type=END,FAIL\n#CBATCH --mail-user bob@example.org\necho\n")
    r = cli("cbatch", str(script))
    assert r.code == 0, r
    job = fake.last("SubmitBatchJob").job
    assert list(job.mail_type) == ["END", "FAIL"] and job.mail_user == "bob@example.org"
    assert "mail" not in job.script.lower()
    r = cli("cbatch", "--mail-type", "TIMELIMIT", str(script))  # the command line wins
    assert r.code == 0, r
    job = fake.last("SubmitBatchJob").job
    assert list(job.mail_type) == ["TIME_LIMIT"] and job.mail_user == "bob@example.org"
    sbatch = tmp_path / "slurm.sh"
    sbatch.write_text("#!/bin/bash\n#SBATCH --mail-type=ALL\n#SBATCH --mail-user=carol\necho\n")
    r = cli("cbatch", str(sbatch))
    assert r.code == 0, r
    job = fake.last("SubmitBatchJob").job
    assert list(job.mail_type) == ["BEGIN", "END", "FAIL", "REQUEUE"] and job.mail_user == "carol"


@pytest.mark.parametrize("args,msg", [
    (["--mail-type", "SOMETIMES"], "invalid --mail-type: unknown mail type 'SOMETIMES'"),
    (["--mail-type", "none,end"], "NONE cannot be combined"),
    (["--mail-user", "a@b.org,c@d.org"], "invalid --mail-user"),
    (["--mail-user", "a b"], "invalid --mail-user"),
])
def test_cbatch_bad_mail_args(cli, fake, args, msg):
    r = cli("cbatch", *args, "--wrap", "true")
    assert r.code == 2, r
    assert msg in one_line(r.err)
    assert fake.requests == []


def test_cbatch_bad_mail_directive(cli, fake, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#CBATCH --mail-type=WHENEVER\necho\n")
    r = cli("cbatch", str(script))
    assert r.code == 2, r
    assert "unknown mail type 'WHENEVER'" in one_line(r.err)
    assert fake.requests == []


def test_cbatch_repeat(cli, fake):
    r = cli("cbatch", "--repeat", "3", "--wrap", "true")
    assert r.code == 0, r
    assert r.out == "Job id allocated: 1000, 1001, 1002.\n"
    assert fake.last("SubmitBatchJobs").count == 3


def test_cbatch_json(cli):
    r = cli("cbatch", "--json", "--wrap", "true")
    assert r.code == 0
    assert json.loads(r.out) == {"ok": True, "job_id": 1000, "reason": ""}
    r = cli("cbatch", "--json", "-p", "NOPE", "--wrap", "true")
    assert r.code == 4
    out = json.loads(r.out)  # upstream's oneof: the code instead of the job id
    assert "job_id" not in out and out["ok"] is False and out["reason"] == "Partition 'NOPE' does not exist."
    assert "code" in out


def test_cbatch_backend_refusal(cli):
    r = cli("cbatch", "-p", "NOPE", "--wrap", "true")
    assert r.code == 4
    assert one_line(r.err) == "Job allocation failed: Partition 'NOPE' does not exist."
    assert r.out == ""


@pytest.mark.parametrize("args", [["--bogus"], ["-N"], ["--mem", "1G", "--mem-per-cpu", "1G", "--wrap", "x"],
                                  ["--requeue", "--no-requeue", "--wrap", "x"], [], ["-N", "0", "--wrap", "x"],
                                  ["-t", "x", "--wrap", "x"], ["--repeat", "0", "--wrap", "x"],
                                  ["--wrap", "x", "script.sh"], ["--open-mode", "bad", "--wrap", "x"]])
def test_cbatch_bad_args(cli, fake, args):
    r = cli("cbatch", *args)
    assert r.code == 2, r
    one_line(r.err)
    assert r.out == ""
    assert fake.requests == []


@pytest.mark.parametrize("content,msg", [
    (b"\x7fELF\x02\x01\x01\x00\x00", "not a text file"), (b"", "empty"), (b"echo \xff\xfe\n", "UTF-8"),
    (b"#CBATCH -J two words\necho\n", "fields out of bound"),
    (b"#CBATCH --nope 1\n", "unrecognized '--nope' in script"),
    (b"#SBATCH --time-min=5\n", "changes when or whether the job runs"),
])
def test_cbatch_bad_scripts(cli, fake, tmp_path, content, msg):
    script = tmp_path / "bad.sh"
    script.write_bytes(content)
    r = cli("cbatch", str(script))
    assert r.code == 2, r
    assert msg in one_line(r.err)
    assert fake.requests == []


def test_cbatch_missing_script(cli):
    r = cli("cbatch", "/no/such/script.sh")
    assert r.code == 2
    assert "cannot read script" in one_line(r.err)


def test_cbatch_unreachable_controller(cli, cli_env, tmp_path):
    (tmp_path / "other").mkdir()
    conf = write_config(tmp_path / "other", free_port())
    r = cli("cbatch", "-C", str(conf), "--wrap", "true", env=cli_env)
    assert r.code == 3, r
    assert one_line(r.err) == "Connection to CraneCtld is broken."


def test_cbatch_access_denied(cli, fake):
    fake.token = "the-right-one"
    r = cli("cbatch", "--wrap", "true")
    assert r.code == 3
    assert one_line(r.err).startswith("Access denied.")


def test_missing_and_bad_config(cli, cli_env, tmp_path):
    env = dict(cli_env, CRANE_CONFIG=str(tmp_path / "missing.yaml"))
    r = cli("cbatch", "--wrap", "true", env=env)
    assert r.code == 2
    assert "missing.yaml" in one_line(r.err)
    bad = tmp_path / "bad.yaml"
    bad.write_text("ControlMachine: [\n")
    for cmd in ("cbatch", "cqueue", "cinfo", "ccancel"):
        args = ["--wrap", "true"] if cmd == "cbatch" else ["1"] if cmd == "ccancel" else []
        r = cli(cmd, "-C", str(bad), *args)
        assert r.code == 2, (cmd, r)
        assert "invalid YAML" in one_line(r.err)


# -- cqueue -------------------------------------------------------------------------------

HEADER = "JOBID PARTITION NAME    USER  ACCOUNT STATUS  TYPE  TIME     TIMELIMIT NODES NODELIST/REASON"


def test_cqueue_default(cli, fake):
    r = cli("cqueue")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0].split() == HEADER.split()
    assert len(lines) == 31
    assert lines[1].split() == ["1", "GPU", "job1.sh", "bob", "physics", "Pending", "Batch", "-", "unlimited", "1",
                                "Priority"]
    assert lines[2].split()[5:9] == ["Running", "Batch", "00:01:05", "01:00:00"]
    assert lines[2].split()[-1] == "cn02"
    req = fake.last("QueryJobsInfo")
    assert list(req.states) == [pb.Pending, pb.Running, pb.Configuring, pb.Starting, pb.Completing]
    assert req.max_lines == 1000


def test_cqueue_filters_are_sent(cli, fake):
    r = cli("cqueue", "-j", "1,2", "-j", "3", "-t", "r,s", "-p", "CPU", "-A", "physics", "-n", "a,b", "-q", "normal",
            "-w", "cn[01-02]", "-u", "alice,bob", "-m", "5")
    assert r.code == 0, r
    req = fake.last("QueryJobsInfo")
    assert list(req.job_ids) == [1, 2, 3]
    assert list(req.states) == [pb.Running, pb.Configuring, pb.Starting, pb.Completing, pb.Suspended]
    assert list(req.partitions) == ["CPU"] and list(req.accounts) == ["physics"] and list(req.names) == ["a", "b"]
    assert list(req.nodes) == ["cn01", "cn02"] and list(req.users) == ["alice", "bob"] and req.max_lines == 5
    assert "QOS" in r.out.splitlines()[0].split()  # -q adds the QoS column


def test_cqueue_self(cli, fake):
    import pwd

    assert cli("cqueue", "--self").code == 0
    assert list(fake.last("QueryJobsInfo").users) == [pwd.getpwuid(os.getuid()).pw_name]


def test_cqueue_display_options(cli):
    r = cli("cqueue", "-N", "-m", "2")
    assert len(r.out.splitlines()) == 2 and not r.out.startswith("JOBID")
    r = cli("cqueue", "-F", "-m", "1")
    assert r.out.splitlines()[0].split() == [
        "JOBID", "JOBNAME", "USERNAME", "PARTITION", "ACCOUNT", "NODENUM", "REQCPUS", "REQMEMPERNODE", "ALLOCCPUS",
        "ALLOCMEMPERNODE", "STATUS", "TIME", "TIMELIMIT", "STARTTIME", "SUBMITTIME", "TYPE", "QOS", "EXCLUSIVE",
        "HELD", "PRIORITY", "NODELIST/REASON", "DEADLINE"]
    r = cli("cqueue", "-S", "-m", "1")
    assert r.out.splitlines()[0].split()[-1] == "STARTTIME"
    r = cli("cqueue", "-o", "%.5j|%n|%t|%L", "-m", "2")
    assert r.out.splitlines() == ["JOBID|NAME   |STATE  |NODELIST(REASON)", "    1|job1.sh|Pending|Priority",
                                  "    2|job2.sh|Running|cn02"]
    r = cli("cqueue", "-o", "%JOBID %username", "-m", "1", "-N")
    assert r.out.split() == ["1", "bob"]


def test_cqueue_invalid_format(cli, fake):
    r = cli("cqueue", "-o", "%j %Z")
    assert r.code == 5
    assert "%Z" in one_line(r.err)
    assert fake.requests == []


@pytest.mark.parametrize("args", [["-m", "0"], ["-m", "x"], ["-t", "weird"], ["-j", "abc"], ["-j", "1_2"],
                                  ["--self", "-u", "x"], ["-i", "0"], ["--type", "z"], ["--nope"]])
def test_cqueue_bad_args(cli, args):
    r = cli("cqueue", *args)
    assert r.code == 2, r
    one_line(r.err)


def test_cqueue_backend_refusal(cli):
    r = cli("cqueue", "-p", "NOPE")
    assert r.code == 4
    assert one_line(r.err) == "cqueue: Partition does not exist."


def test_cqueue_json(cli):
    r = cli("cqueue", "--json", "-m", "2")
    assert r.code == 0
    data = json.loads(r.out)
    assert list(data) == ["ok", "jobs", "reason"]
    assert [j["job_id"] for j in data["jobs"]] == [1, 2]
    assert data["jobs"][0]["status"] == "Pending" and data["jobs"][0]["time_limit"] == "0"
    assert list(data["jobs"][0])[:3] == ["job_id", "name", "user"]


def test_cqueue_type_filter(cli):
    assert cli("cqueue", "--type", "i", "-N").out == ""
    assert len(cli("cqueue", "--type", "batch", "-N").out.splitlines()) == 30


def test_cqueue_unreachable(cli, tmp_path):
    (tmp_path / "o").mkdir()
    conf = write_config(tmp_path / "o", free_port())
    r = cli("cqueue", "-C", str(conf))
    assert r.code == 3
    assert one_line(r.err) == "Connection to CraneCtld is broken."


# -- cinfo --------------------------------------------------------------------------------

def test_cinfo_default(cli):
    r = cli("cinfo")
    assert r.code == 0, r
    assert [line.split() for line in r.out.splitlines()] == [
        ["PARTITION", "AVAIL", "NODES", "STATE", "NODELIST"],
        ["CPU", "up", "3", "idle", "cn[01-03]"],
        ["CPU", "up", "2", "alloc", "cn[04-05]"],
        ["CPU", "up", "1", "mix(drain)", "cn06"],
        ["GPU", "up", "1", "mix", "cn07"],
        ["GPU", "up", "1", "down", "cn08"],
        ["EMPTY", "up", "0", "n/a"],
    ]


def test_cinfo_filters_and_format(cli, fake):
    assert [x.split()[3] for x in cli("cinfo", "-d", "-N").out.splitlines()] == ["down"]
    assert "down" not in cli("cinfo", "-r").out
    assert cli("cinfo", "-t", "idle,drain", "-N", "-o", "%s").out.split() == ["idle", "mix(drain)"]
    r = cli("cinfo", "-n", "cn[01-02,07]", "-o", "%p %.6n %l")
    assert r.out.splitlines() == ["PARTITION  NODES NODELIST", "CPU            2 cn[01-02]", "GPU            1 cn07"]
    assert list(fake.last("QueryCranedInfo").names) == ["cn01", "cn02", "cn07"]
    r = cli("cinfo", "-R", "-N")
    assert "maintenance" in r.out


def test_cinfo_errors(cli):
    assert cli("cinfo", "-o", "%x").code == 5
    r = cli("cinfo", "-d", "-r")
    assert r.code == 2
    one_line(r.err)
    assert cli("cinfo", "-t", "sleepy").code == 2


def test_cinfo_json(cli):
    r = cli("cinfo", "--json")
    data = json.loads(r.out)
    assert list(data) == ["partitions", "nodes"]
    assert data["partitions"][0]["name"] == "CPU" and data["nodes"][0]["name"] == "cn01"


# -- ccancel ------------------------------------------------------------------------------

def test_ccancel(cli, fake):
    r = cli("ccancel", "1,2", "3")
    assert r.code == 0, r
    assert r.out == "Job 1,2,3 cancelled successfully.\n"
    assert list(fake.last("CancelJob").job_ids) == [1, 2, 3]


def test_ccancel_failure(cli):
    r = cli("ccancel", "1,999")
    assert r.code == 4
    assert r.out == "Job 1 cancelled successfully.\n"
    assert one_line(r.err) == "Failed to cancel job: 999. Reason: Job not found."


def test_ccancel_filters(cli, fake):
    r = cli("ccancel", "-u", "alice", "-p", "CPU", "-t", "R", "-w", "cn[01-02]", "-n", "x", "-A", "a")
    assert r.code == 0, r
    req = fake.last("CancelJob")
    assert (req.user, req.partition, req.name, req.account) == ("alice", "CPU", "x", "a")
    assert list(req.states) == [pb.Running, pb.Configuring, pb.Starting, pb.Completing]
    assert list(req.nodes) == ["cn01", "cn02"]


@pytest.mark.parametrize("args,msg", [([], "at least one"), (["0"], "Invalid job list"), (["1,,2"], "Invalid job list"),
                                      (["abc"], "Invalid job list"), (["1."], "Invalid job list"),
                                      (["1.2.3"], "Invalid job list"), (["0.1"], "Invalid job list"),
                                      (["1_2"], "not supported"), (["-t", "weird"], "invalid state")])
def test_ccancel_bad_args(cli, fake, args, msg):
    r = cli("ccancel", *args)
    assert r.code == 2, r
    assert msg in one_line(r.err)
    assert fake.requests == []


def test_ccancel_json(cli):
    r = cli("ccancel", "--json", "5,999")
    assert r.code == 4
    assert r.out == ('{"cancelled_steps":{"5":{"steps":[]}},"not_cancelled_job_steps":{"999":{"reason":"Job not found",'
                     '"step_ids":[],"step_reasons":[]}}}\n')
    r = cli("ccancel", "--json", "7")
    assert (r.code, r.out) == (0, '{"cancelled_steps":{"7":{"steps":[]}},"not_cancelled_job_steps":{}}\n')


def test_ccancel_steps(cli, fake):
    r = cli("ccancel", "5,6", "7.1,7.0")
    assert r.code == 0, r
    assert r.out == "Job 5,6 Step 7.1,7.0 cancelled successfully.\n"
    req = fake.last("CancelJob")
    assert list(req.job_ids) == [5, 6] and [(s.job_id, s.step_id) for s in req.steps] == [(7, 1), (7, 0)]
    r = cli("ccancel", "7.1")
    assert (r.code, r.out, r.err) == (0, "Step 7.1 cancelled successfully.\n", "")


def test_ccancel_step_failure(cli):
    r = cli("ccancel", "7.1,7.9,999.1")
    assert r.code == 4
    assert r.out == "Step 7.1 cancelled successfully.\n"
    assert r.err.splitlines() == ["Failed to cancel step: 7-9. Reason: Step not found.",
                                  "Failed to cancel step: 999-1. Reason: Step not found."]
    r = cli("ccancel", "--json", "7.1,7.9,10.2")
    assert r.code == 4
    assert json.loads(r.out) == {"cancelled_steps": {"7": {"steps": [1]}, "10": {"steps": [2]}},
                                 "not_cancelled_job_steps": {"7": {"reason": "", "step_ids": [9],
                                                                   "step_reasons": ["Step not found"]}}}
    assert r.out.index('"10"') < r.out.index('"7"')  # keys sorted as strings


def test_ccancel_json_escapes():
    from crane_common.proto import crane_pb2 as pb

    from crane_cli.ccancel import reply_json

    text = reply_json(pb.CancelJobReply(not_cancelled=[3], reasons=["a<b>&c é"]))
    assert text == '{"cancelled_steps":{},"not_cancelled_job_steps":{"3":{"reason":"a\\u003cb\\u003e\\u0026c é",' \
                   '"step_ids":[],"step_reasons":[]}}}'


# -- crane --------------------------------------------------------------------------------

def test_crane_version(cli, tmp_path, cli_env):
    r = cli("crane", "version")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0].startswith("crane-cli ") and lines[1].startswith("crane-common ")
    assert lines[2].startswith("cranectld fake-0.0 at 127.0.0.1:")
    (tmp_path / "o").mkdir()
    conf = write_config(tmp_path / "o", free_port())
    r = cli("crane", "-C", str(conf), "version")
    assert r.code == 0
    assert "unreachable" in r.out.splitlines()[2]
    r = cli("crane", "version", env=dict(cli_env, CRANE_CONFIG="/nonexistent.yaml"))
    assert r.code == 0 and "unknown" in r.out


def test_crane_whoami(cli):
    r = cli("crane", "whoami")
    assert r.code == 0, r
    assert r.out == "alice\n"


def test_crane_token_issue_show(cli, cli_env, tmp_path):
    (tmp_path / "cluster.key").write_text("k" * 64)
    r = cli("crane", "token", "issue", "--user", "alice", "--uid", "1000", "--level", "admin", "--ttl", "60")
    assert r.code == 0, r
    token = r.out.strip()
    from crane_auth_rbac import jwt_tokens

    payload = jwt_tokens.verify(jwt_tokens.read_keyring(str(tmp_path / "cluster.key")), token, "test")
    assert (payload["sub"], payload["uid"], payload["lvl"]) == ("alice", 1000, "admin")
    assert payload["exp"] - payload["iat"] == 60
    env = dict(cli_env, CRANE_TOKEN=token)
    r = cli("crane", "token", "show", env=env)
    assert r.code == 0
    assert "user:    alice" in r.out and "level:   admin" in r.out
    r = cli("crane", "token", "show", "--json", env=env)
    assert json.loads(r.out)["uid"] == 1000
    import shutil
    import tempfile

    home = tempfile.mkdtemp(prefix="crane-alice-")  # root writes as the token's user, in a directory of theirs
    try:
        if os.geteuid() == 0:
            os.chown(home, 1000, 1000)
        target = Path(home) / "alice-token"
        r = cli("crane", "token", "issue", "--user", "alice", "--uid", "1000", "--save-to", str(target))
        assert r.code == 0, r
        assert target.read_text().strip() == r.out.strip()
        assert oct(target.stat().st_mode & 0o777) == "0o600"
        assert target.stat().st_uid == (1000 if os.geteuid() == 0 else os.getuid())
        if os.geteuid() == 0:  # a symlink alice planted at her token file to a root-owned file
            victim = tmp_path / "root-owned"
            victim.write_text("precious")
            target.unlink()
            os.symlink(victim, target)
            r = cli("crane", "token", "issue", "--user", "alice", "--uid", "1000", "--save-to", str(target))
            assert r.code == 0, r
            assert victim.read_text() == "precious" and victim.stat().st_uid == 0
            assert not target.is_symlink() and target.stat().st_uid == 1000
            r = cli("crane", "token", "issue", "--user", "alice", "--uid", "1000", "--save-to",
                    str(tmp_path / "t"))             # a directory alice cannot write: refused, not done as root
            assert r.code == 6 and "Permission denied" in r.err
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_crane_token_save_own(cli, cli_env, tmp_path):
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    r = cli("crane", "token", "issue", "--user", me, "--key-file", str(tmp_path / "k"))
    assert r.code == 6  # the key file cannot be read
    (tmp_path / "k").write_text("secret")
    r = cli("crane", "token", "issue", "--user", me, "--key-file", str(tmp_path / "k"), "--save")
    assert r.code == 0, r
    saved = tmp_path / "xdgconf" / "crane" / "token"
    assert saved.read_text().strip() == r.out.strip()
    env = {k: v for k, v in cli_env.items() if k != "CRANE_TOKEN"}
    r = cli("crane", "token", "show", env=env)
    assert r.code == 0 and str(saved) in r.out
    r = cli("crane", "token", "issue", "--user", "somebody-else", "--uid", "5", "--key-file", str(tmp_path / "k"),
            "--save")
    assert r.code == 2 and "--save-to" in one_line(r.err)


def test_crane_token_show_without_token(cli, cli_env):
    env = {k: v for k, v in cli_env.items() if k != "CRANE_TOKEN"}
    r = cli("crane", "token", "show", env=env)
    assert r.code == 1
    assert "no token" in one_line(r.err)


def test_crane_bad_usage(cli):
    for args in ([], ["bogus"], ["token"], ["token", "issue"], ["bench", "nope"], ["bench"]):
        r = cli("crane", *args)
        assert r.code == 2, (args, r)
        one_line(r.err)


def _third_party_verb(tmp_path, body: str):
    """A package installed the way pip would leave it: a module plus a dist-info with a crane.commands entry."""
    site = tmp_path / "site"
    (site / "crane_hello_pkg").mkdir(parents=True)
    (site / "crane_hello_pkg" / "__init__.py").write_text(body)
    info = site / "crane_hello_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crane-hello-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[crane.commands]\nhello = crane_hello_pkg:main\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("CRANE_CONFIG", None)
    return env


def test_an_installed_package_adds_a_crane_verb(tmp_path):
    import subprocess
    import sys

    env = _third_party_verb(tmp_path, "import os, sys\n"
                            "def main(argv):\n"
                            "    print('hello', argv, os.environ.get('CRANE_CONFIG', '').endswith('x.yaml'))\n"
                            "    return 7\n")
    crane = [sys.executable, "-c", "from crane_cli.crane import main; main()"]
    r = subprocess.run([*crane, "-C", "x.yaml", "hello", "--a", "b"], env=env, capture_output=True, text=True)
    assert r.returncode == 7, r
    assert r.stdout.strip() == "hello ['--a', 'b'] True"
    r = subprocess.run([*crane, "--help"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "hello" in r.stdout


def test_a_broken_verb_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    env = _third_party_verb(tmp_path, "raise ImportError('needs libfoo')\n")
    r = subprocess.run([sys.executable, "-c", "from crane_cli.crane import main; main()", "hello"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 1, r
    assert one_line(r.stderr).startswith("crane: the 'hello' command")


def test_global_config_goes_before_the_verb_and_the_rest_is_the_verbs(tmp_path):
    import subprocess
    import sys

    from crane_cli.crane import installed_commands

    assert installed_commands()["bench"].value == "crane_tools.bench:main"
    env = _third_party_verb(tmp_path, "import os\n"
                            "def main(argv):\n"
                            "    print(argv, os.environ['CRANE_CONFIG'])\n")
    crane = [sys.executable, "-c", "from crane_cli.crane import main; main()"]
    r = subprocess.run([*crane, "--config=c.yaml", "hello", "e2e", "-C", "z", "--help"], env=env, capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 0, r
    assert r.stdout.strip() == f"['e2e', '-C', 'z', '--help'] {tmp_path}/c.yaml"


def test_a_click_command_can_be_a_crane_verb(tmp_path):
    import subprocess
    import sys

    env = _third_party_verb(tmp_path, "import click\n"
                            "@click.command()\n"
                            "@click.option('--times', type=int, default=1)\n"
                            "@click.argument('who')\n"
                            "def main(times, who):\n"
                            "    print(' '.join(['hello', who] * times))\n"
                            "    return 3\n")
    crane = [sys.executable, "-c", "from crane_cli.crane import main; main()"]
    r = subprocess.run([*crane, "hello", "--times", "2", "bob"], env=env, capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (3, "hello bob hello bob\n"), r
    r = subprocess.run([*crane, "hello", "--times", "x", "bob"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and one_line(r.stderr).startswith("crane hello: "), r
    r = subprocess.run([*crane, "hello", "--help"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "--times" in r.stdout, r


def test_cbatch_parsable_prints_only_the_job_id(cli, fake):
    r = cli("cbatch", "--parsable", "--wrap", "true")
    assert r.code == 0 and r.out == "1000\n", r


@pytest.mark.parametrize("words, states", [
    (["-t", "PD,R"], [0, 1, 7, 8, 9]), (["-t", "pd"], [0]), (["-t", "CF,CG"], [7, 9])])
def test_cqueue_takes_slurms_state_abbreviations(words, states):
    from crane_cli.cqueue import parse_states

    assert parse_states([words[1]]) == states


def test_cacct_takes_slurms_state_abbreviations():
    from crane_cli.cacct import parse_states

    assert sorted(parse_states(["CD,F,CA,TO,OOM"])) == [2, 3, 4, 5, 6]


def test_ccontrol_update_sends_one_call_per_key_in_upstreams_order(cli, fake):
    before = len(fake.requests)
    r = cli("ccontrol", "update", "jobid=7", "deadline=now+1hour", "comment=c", "priority=5", "timelimit=1:00:00",
            "jobname=n", "mailtype=END")
    assert r.code == 0, r
    sent = [req for method, req, _md in fake.requests[before:] if method == "ModifyJob"]
    assert [req.WhichOneof("change") for req in sent] == ["priority", "time_limit", "comment", "mail_type",
                                                           "deadline", "name"]
    assert all(list(req.job_ids) == [7] for req in sent) and sent[1].time_limit == 3600
    assert r.out.splitlines() == ["Jobs 7 modified successfully."] * 6


@pytest.mark.parametrize("args, words", [
    (("update", "jobid=7", "colour=blue"), "unknown key 'colour'"),
    (("update", "jobid=7", "deadline=whenever"), "invalid deadline"),
    (("update", "jobid=7", "numnodes=two"), "invalid node count"),
    (("update", "jobid=x", "comment=c"), "invalid job id list"),
    (("suspend",), "usage: ccontrol suspend"),
    (("requeue", "1", "2"), "usage: ccontrol requeue"),
])
def test_ccontrol_job_actions_refuse_bad_input_before_any_call(cli, fake, args, words):
    before = len(fake.requests)
    r = cli("ccontrol", *args)
    assert r.code == 2 and words in r.err and len(r.err.strip().splitlines()) == 1, r
    assert not [m for m, _req, _md in fake.requests[before:] if m in ("ModifyJob", "RequeueJob")]


def test_ccancel_signal_names_and_numbers(cli, fake):
    for name, num in (("USR1", 10), ("SIGTERM", 15), ("9", 9)):
        r = cli("ccancel", "-s", name, "5")
        assert r.code == 0 and fake.last("CancelJob").signal == num, r
    bad = cli("ccancel", "-s", "BOGUS", "5")
    assert bad.code == 2 and "unknown signal" in bad.err
    steps = cli("ccancel", "-s", "USR1", "5.1")
    assert steps.code == 2 and "not to steps" in steps.err
