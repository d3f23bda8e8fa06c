"""Steps in the query commands: cqueue -s, ccontrol show step, cacct step rows (against FakeCtld)."""

from __future__ import annotations

import json
import time

import pytest
from crane_common.proto import crane_pb2 as pb

from crane_cli.errors import CliError
from crane_cli.steps import parse_selection, step_block


@pytest.fixture
def with_steps(fake):
    """Jobs 2 and 3 (running) get steps: 2.0 running, 2.1 ended, 3.0 and 3.4 running."""
    now = int(time.time())
    jobs = {j.job_id: j for j in fake.jobs}
    jobs[2].step_info_list.extend([
        pb.StepInfo(job_id=2, step_id=0, name="hostname", status=pb.Running, start_time=now - 65, elapsed=65,
                    craned_list="cn02", node_num=1, alloc_cpus=2, ntasks=2, user="bob", uid=1000, partition="CPU"),
        pb.StepInfo(job_id=2, step_id=1, name="old", status=pb.Completed, start_time=now - 60, end_time=now - 50),
    ])
    jobs[3].step_info_list.extend([
        pb.StepInfo(job_id=3, step_id=4, name="solver", status=pb.Running, elapsed=3700, craned_list="cn03"),
        pb.StepInfo(job_id=3, step_id=0, name="interactive", status=pb.Running, elapsed=10, craned_list="cn03",
                    time_limit=90),
    ])
    return fake


def test_parse_selection():
    assert parse_selection(["5", "7.1", "7.0", "5.2"], "x") == ([5, 7], {5: None, 7: {0, 1}})
    for bad in ("0", "x", "5.", "5.a", "1.2.3"):
        with pytest.raises(CliError) as exc:
            parse_selection([bad], "x")
        assert exc.value.code == 2


def test_cqueue_steps(cli, with_steps):
    r = cli("cqueue", "-s")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0].split() == ["StepId", "Name", "Partition", "User", "Time", "NODELIST"]
    assert [line.split()[0] for line in lines[1:]] == ["2.0", "3.0", "3.4"]  # the ended 2.1 is not in the queue
    assert lines[1].split() == ["2.0", "hostname", "CPU", "bob", "00:01:05", "cn02"]
    assert lines[3].split() == ["3.4", "solver", "CPU", "bob", "01:01:40", "cn03"]  # partition, user: the job's
    assert with_steps.last("QueryJobsInfo").include_steps


def test_cqueue_step_selection(cli, with_steps):
    r = cli("cqueue", "-s", "3.4,2", "-N")
    assert [line.split()[0] for line in r.out.splitlines()] == ["2.0", "3.4"]
    assert sorted(with_steps.last("QueryJobsInfo").job_ids) == [2, 3]
    r = cli("cqueue", "--step", "2.1", "-t", "all", "-N")
    assert [line.split()[0] for line in r.out.splitlines()] == ["2.1"]
    r = cli("cqueue", "-s", "-j", "3", "-N")
    assert [line.split()[0] for line in r.out.splitlines()] == ["3.0", "3.4"]
    r = cli("cqueue", "-s", "-u", "bob")
    assert [line.split()[0] for line in r.out.splitlines()[1:]] == ["3.0", "3.4"]  # job 3 is bob's


def test_cqueue_steps_json_and_errors(cli, with_steps):
    r = cli("cqueue", "-s", "2", "--json")
    data = json.loads(r.out)
    assert [s["step_id"] for s in data["job_info_list"][0]["step_info_list"]] == [0, 1]
    r = cli("cqueue", "-s", "2.x")
    assert r.code == 2 and "invalid step id" in r.err
    r = cli("cqueue", "-s", "-o", "%j")
    assert r.code == 2


def test_ccontrol_show_step(cli, with_steps):
    r = cli("ccontrol", "show", "step")
    assert r.code == 0, r
    blocks = r.out.split("\n\n")
    assert [b.split()[0] for b in blocks if b] == ["StepId=2.0", "StepId=3.0", "StepId=3.4"]
    first = blocks[0].splitlines()
    assert first[0].startswith("StepId=2.0 UserId=1000 StartTime=") and first[0].endswith(" TimeLimit=01:00:00")
    assert first[1] == "   State=RUNNING Partition=CPU NodeList=cn02"
    assert first[2] == "   Nodes=1 CPUs=2 Tasks=2 Name=hostname"
    assert "TimeLimit=00:01:30" in blocks[1]
    r = cli("ccontrol", "show", "step", "2.1")
    assert r.code == 0 and r.out.startswith("StepId=2.1 ") and "State=COMPLETED" in r.out


def test_ccontrol_show_step_none(cli, fake):
    r = cli("ccontrol", "show", "step")
    assert (r.code, r.out) == (0, "No step is running.\n")
    r = cli("ccontrol", "show", "step", "2.9")
    assert (r.code, r.err) == (4, "Step 2.9 is not running.\n")


def test_step_block_unknowns():
    job = pb.JobInfo(job_id=9, uid=5, time_limit=0)
    text = step_block(job, pb.StepInfo(job_id=9, step_id=1, status=pb.Pending))
    assert text == ("StepId=9.1 UserId=5 StartTime=Unknown TimeLimit=UNLIMITED\n"
                    "   State=PENDING Partition=(null) NodeList=(null)\n"
                    "   Nodes=0 CPUs=0 Tasks=1 Name=(null)\n")


def test_cacct_step_names(run_cmd, acct):
    from crane_cli import cacct

    job = acct.history[1]
    job.step_info_list.add(job_id=job.job_id, step_id=3, name="hostname", status=pb.Completed)
    r = run_cmd(cacct, "-j", f"{job.job_id}", "-o", "%j %n")
    rows = [line.split() for line in r.out.splitlines()[1:]]
    assert [f"{job.job_id}.3", "hostname"] in rows and [f"{job.job_id}.batch", "batch"] in rows


def test_cqueue_steps_disjoint_selection(cli, with_steps):
    n = len(with_steps.requests)
    r = cli("cqueue", "-s", "3.4", "-j", "2")
    assert (r.code, r.out) == (0, "StepId Name Partition User Time NODELIST\n")
    r = cli("cqueue", "-s", "3.4", "-j", "2", "--json")
    assert json.loads(r.out) == {"ok": True, "job_info_list": [], "reason": ""}
    assert len(with_steps.requests) == n


def test_ccontrol_show_steps_several_words(cli, with_steps):
    r = cli("ccontrol", "show", "step", "2.0", "3.4")
    assert [b.split()[0] for b in r.out.split("\n\n") if b] == ["StepId=2.0", "StepId=3.4"]


def test_ccancel_steps_and_filters(cli, fake):
    r = cli("ccancel", "7.1", "-u", "bob")
    assert r.code == 2 and "cannot be combined" in r.err and fake.requests == []
