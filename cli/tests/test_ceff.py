"""ceff: efficiency arithmetic on hand-computed cases, the Pending/Running notes, JSON keys, errors."""

from __future__ import annotations

import json

import pytest
from acct_data import GIB, MIB, ended
from crane_common.proto import crane_pb2 as pb

from crane_cli import ceff

JSON_KEYS = ["job_id", "qos", "uid", "user_name", "gid", "group_name", "account", "job_state", "nodes",
             "cores_per_node", "cpu_utilized_str", "cpu_efficiency", "run_time_str", "total_mem_mb", "mem_efficiency",
             "total_malloc_mem_mb", "malloc_mem_mb_per_node"]


@pytest.fixture(autouse=True)
def groups(monkeypatch):
    monkeypatch.setattr(ceff, "group_name", lambda gid: f"g{gid}")


@pytest.fixture
def jobs(acct):
    """More ended jobs: 2 nodes x 2 cores; one core; 1.5 cores; never started."""
    acct.history += [
        # 4 cores (2 per node) x 3600 s = 4 core-hours; 7200 s of CPU = 50 %; 1536 MB of 2 x 2048 MB = 37.5 %
        ended(200, pb.Completed, 0, 7, node_num=2, alloc_cpus=4, req_cpus=4, elapsed=3600, usage_cpu_ms=7_200_000,
              alloc_mem_per_node=2 * GIB, usage_mem_peak=1536 * MIB, craned_list="cn[01-02]"),
        # one core x 200 s; 50 s of CPU = 25 %
        ended(201, pb.Completed, 0, 7, alloc_cpus=1, req_cpus=1, elapsed=200, usage_cpu_ms=50_000,
              usage_mem_peak=100 * MIB),
        # 1.5 cores x 100 s = 150 core-seconds; 75 s of CPU = 50 %
        ended(202, pb.Completed, 0, 7, alloc_cpus=1.5, req_cpus=1.5, elapsed=100, usage_cpu_ms=75_000),
        # cancelled before it started: nothing allocated, nothing used
        ended(203, pb.Cancelled, 320, 7, start_time=0, end_time=0, elapsed=0, alloc_cpus=0, alloc_mem_per_node=0,
              craned_list=""),
    ]
    acct.jobs[1].usage_cpu_ms = 65_000  # job 2, running for 65 s on 2 cores: 50 %
    return acct


def test_two_cores_100s_150s_cpu(run_cmd, jobs):
    r = run_cmd(ceff, "100")
    assert r.code == 0, r
    assert r.out.splitlines() == [
        "JobId: 100",
        "Qos: normal",
        "User/Group: alice/g1000",
        "Account: physics",
        "JobState: Completed (exit code 0)",
        "Nodes: 1",
        "Cores per node: 2",
        "CPU Utilized: 00:02:30",
        "CPU Efficiency: 75.00% of 00:03:20 core-walltime",
        "Job Wall-clock time: 00:01:40",
        "Memory Utilized: 256.00 MB (estimated maximum)",
        "Memory Efficiency: 25.00% of 1024.00 MB (1024.00 MB/node)",
    ]
    req = jobs.last("QueryJobsInfo")
    assert list(req.job_ids) == [100] and req.include_history and req.include_finished
    assert list(req.states) == list(range(12))


def test_two_nodes(run_cmd, jobs):
    out = run_cmd(ceff, "200").out.splitlines()
    assert out[5:] == [
        "Nodes: 2",
        "Cores per node: 2",
        "CPU Utilized: 02:00:00",
        "CPU Efficiency: 50.00% of 04:00:00 core-walltime",
        "Job Wall-clock time: 01:00:00",
        "Memory Utilized: 1536.00 MB (estimated maximum)",
        "Memory Efficiency: 37.50% of 4096.00 MB (2048.00 MB/node)",
    ]


def test_one_core(run_cmd, jobs):
    out = run_cmd(ceff, "201").out.splitlines()
    assert out[5:8] == ["Cores: 1", "CPU Utilized: 00:00:50", "CPU Efficiency: 25.00% of 00:03:20 core-walltime"]
    assert not any(line.startswith("Nodes:") for line in out)


def test_fractional_cores(run_cmd, jobs):
    out = run_cmd(ceff, "202").out.splitlines()
    assert out[5:9] == ["Nodes: 1", "Cores per node: 1.5", "CPU Utilized: 00:01:15",
                        "CPU Efficiency: 50.00% of 00:02:30 core-walltime"]


def test_never_started(run_cmd, jobs):
    out = run_cmd(ceff, "203").out.splitlines()
    assert out[4:] == ["JobState: Cancelled (exit code 320)", "Nodes: 1", "Cores per node: 2",
                       "CPU Utilized: 00:00:00", "CPU Efficiency: 0.00% of 00:00:00 core-walltime",
                       "Job Wall-clock time: 00:00:00", "Memory Utilized: 0.00 MB (estimated maximum)",
                       "Memory Efficiency: 0.00% of 1024.00 MB (1024.00 MB/node)"]


def test_pending(run_cmd, jobs):
    assert run_cmd(ceff, "1").out.splitlines() == [
        "JobId: 1", "Qos: normal", "User/Group: bob/g0", "Account: physics", "JobState: Pending", "Nodes: 1",
        "Cores per node: 2", "Efficiency not available for jobs in the PENDING state."]


def test_running(run_cmd, jobs):
    out = run_cmd(ceff, "2").out.splitlines()
    assert out[4] == "JobState: Running"
    assert out[7:] == ["CPU Utilized: 00:01:05", "CPU Efficiency: 50.00% of 00:02:10 core-walltime",
                       "Job Wall-clock time: 00:01:05", "Memory Utilized: 0.00 MB (estimated maximum)",
                       "Memory Efficiency: 0.00% of 2048.00 MB (2048.00 MB/node)",
                       "WARNING: Efficiency statistics may be misleading for RUNNING jobs."]


@pytest.mark.parametrize("job_id,line", [(101, "JobState: Failed (exit code 1)"),
                                         (103, "JobState: ExceedTimeLimit (exit code 325)"),
                                         (104, "JobState: OutOfMemory (exit code 265)"),
                                         (5, "JobState: Completed (exit code 0)")])
def test_job_state_line(run_cmd, jobs, job_id, line):
    assert run_cmd(ceff, str(job_id)).out.splitlines()[4] == line


def test_several_jobs_in_the_order_given(run_cmd, jobs):
    r = run_cmd(ceff, "201,100", "5", "100")
    assert r.code == 0
    blocks = r.out.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["JobId: 201", "JobId: 100", "JobId: 5"]
    assert list(jobs.last("QueryJobsInfo").job_ids) == [201, 100, 5]


def test_missing_jobs(run_cmd, jobs):
    r = run_cmd(ceff, "100,998,999")
    assert r.code == 4
    assert r.out.splitlines()[0] == "JobId: 100"
    assert r.err == "Job 998,999 does not exist.\n"


def test_json(run_cmd, jobs):
    r = run_cmd(ceff, "--json", "100,200,1")
    assert r.code == 0, r
    data = json.loads(r.out)
    assert [list(rec) for rec in data] == [JSON_KEYS] * 3
    assert data[0] == {
        "job_id": 100, "qos": "normal", "uid": 1000, "user_name": "alice", "gid": 1000, "group_name": "g1000",
        "account": "physics", "job_state": 2, "nodes": 1, "cores_per_node": 2, "cpu_utilized_str": "00:02:30",
        "cpu_efficiency": 75, "run_time_str": "00:03:20", "total_mem_mb": 256, "mem_efficiency": 25,
        "total_malloc_mem_mb": 1024, "malloc_mem_mb_per_node": 1024}
    assert data[1]["cpu_efficiency"] == 50 and data[1]["mem_efficiency"] == 37.5
    assert data[1]["total_malloc_mem_mb"] == 4096 and data[1]["malloc_mem_mb_per_node"] == 2048
    assert data[1]["run_time_str"] == "04:00:00" and data[1]["cores_per_node"] == 2
    # a pending job: only the fields up to cores_per_node
    assert data[2]["job_state"] == 0 and data[2]["cores_per_node"] == 2
    assert [data[2][k] for k in JSON_KEYS[10:]] == ["", 0, "", 0, 0, 0, 0]
    assert r.out.startswith("[\n  {\n    \"job_id\": 100,")  # 2-space indent


def test_json_fractions(run_cmd, jobs):
    jobs.history[1].usage_cpu_ms = 100_000  # job 100: 100 s of 200 core-seconds
    jobs.history[1].usage_mem_peak = 333 * MIB + 512 * 1024
    rec = json.loads(run_cmd(ceff, "--json", "100").out)[0]
    assert rec["cpu_efficiency"] == 50 and rec["total_mem_mb"] == 333.5 and rec["mem_efficiency"] == 32.57


def test_json_missing_and_empty(run_cmd, jobs):
    r = run_cmd(ceff, "--json", "999")
    assert (r.code, json.loads(r.out), r.err) == (4, [], "Job 999 does not exist.\n")


def test_not_ok(run_cmd, acct):
    acct.query_reply = pb.QueryJobsInfoReply(ok=False, reason="accounting store unavailable")
    r = run_cmd(ceff, "100")
    assert (r.code, r.out, r.err) == (4, "", "ceff: accounting store unavailable\n")


@pytest.mark.parametrize("argv,msg", [
    ([], "ceff: the following arguments are required: JOBID[,JOBID...]"),
    ([","], "ceff: the following arguments are required: JOBID[,JOBID...]"),
    (["abc"], "ceff: invalid job id 'abc'"),
    (["0"], "ceff: invalid job id '0'"),
    (["1.1"], "ceff: invalid job id '1.1'"),
    (["4294967296"], "ceff: invalid job id '4294967296'"),
    (["1_2"], "ceff: array job tasks ('1_2') are not supported by this cluster"),
    (["--nope", "1"], "ceff: unrecognized arguments: --nope"),
])
def test_bad_args(run_cmd, acct, argv, msg):
    r = run_cmd(ceff, *argv)
    assert (r.code, r.out, r.err) == (2, "", msg + "\n")
    assert acct.requests == []


def test_console_script(cli, fake, tmp_path):
    r = cli("ceff", "2")
    assert r.code == 0, r
    assert r.out.splitlines()[0] == "JobId: 2" and "Traceback" not in r.err
    r = cli("ceff", "x")
    assert (r.code, r.out, r.err) == (2, "", "ceff: invalid job id 'x'\n")
    fake.token = "other"
    r = cli("ceff", "2")
    assert r.code == 3 and r.err.startswith("Access denied.") and len(r.err.splitlines()) == 1
