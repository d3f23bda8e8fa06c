"""``ccontrol show job|node|partition``: upstream's blocks, against the fake controller (fakectld.py)."""

from __future__ import annotations


def test_show_job_prints_upstreams_block(cli, fake):
    r = cli("ccontrol", "show", "job", "1")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0].startswith("JobId=1 JobName=") and all(line.startswith("\t") for line in lines[1:])
    keys = [line.split("=")[0].strip() for line in lines]
    assert keys[:7] == ["JobId", "User", "JobState", "StartTime", "CmdLine", "Priority", "ReqRes:node"]
    assert lines[-1].startswith("\tSubmitNode=") and "Wckey=" in r.out and "ExitCode=" in lines[2]


def test_show_job_says_which_ids_are_not_running(cli, fake):
    r = cli("ccontrol", "show", "job", "1,987654")
    assert r.code == 0 and r.out.splitlines()[-1] == "Job 987654 is not running.", r


def test_show_node_and_partition_blocks(cli, fake):
    r = cli("ccontrol", "show", "node", "cn01")
    assert r.code == 0, r
    first = r.out.splitlines()[0]
    assert first.startswith("NodeName=cn01 State=") and "[power_active] CPU=" in first and " FreeCPU=" in first
    assert "\tRealMemory=" in r.out and "\tPartition=" in r.out and r.out.count("\n") == 8
    r = cli("ccontrol", "show", "partition", "CPU")
    assert r.code == 0, r
    assert r.out.startswith("PartitionName=CPU State=UP\n\tAllowedAccounts=") and r.out.endswith("\n\n")
    assert "\tHostList=cn[01-06]" in r.out and "\tTotalNodes=6 AliveNodes=" in r.out


def test_show_of_a_missing_node_or_partition_is_one_line_and_exit_4(cli, fake):
    r = cli("ccontrol", "show", "node", "nosuch")
    assert r.code == 4 and r.err.strip() == "show nodes failed: Node nosuch not found."
    r = cli("ccontrol", "show", "partition", "nosuch")
    assert r.code == 4 and r.err.strip() == "show partitions failed: Partition nosuch not found."
