"""The Slurm wrappers' output: our reply messages rendered in Slurm's exact forms (no network)."""

from __future__ import annotations

import time

import pytest
from crane_cli.cacct import StepRow
from crane_cli.errors import CliError
from crane_common.proto import crane_pb2 as pb
from crane_common.states import EC_SPAWN_FAILED, EC_TERMINATED
from crane_slurm import sacct, scontrol, sinfo, slurmfmt, squeue

NOW = 1_700_000_000.0


def job(**kw) -> pb.JobInfo:
    base = dict(job_id=12, name="wrap", user="root", uid=0, gid=0, account="acct", partition="debug", qos="normal",
                status=pb.Running, type=pb.Batch, time_limit=3600, submit_time=int(NOW) - 100,
                start_time=int(NOW) - 65, node_num=1, req_cpus=2, alloc_cpus=2, cpus_per_task=2,
                ntasks_per_node=1, req_mem_per_node=512 << 20, craned_list="cn1", cwd="/work")
    base.update(kw)
    return pb.JobInfo(**base)


def squeue_lines(jobs, argv=()) -> list[str]:
    parsed = squeue.TABLE.parse(list(argv), False)
    layout, headers = squeue.layout_for(parsed)
    return squeue.lines(jobs, layout, None if parsed.given("noheader") else headers, NOW,
                        parsed.last("sort") or squeue.DEFAULT_SORT)


@pytest.mark.parametrize(("status", "name", "code"), [
    (pb.Pending, "PENDING", "PD"), (pb.Running, "RUNNING", "R"), (pb.Completing, "COMPLETING", "CG"),
    (pb.Completed, "COMPLETED", "CD"), (pb.Failed, "FAILED", "F"), (pb.Cancelled, "CANCELLED", "CA"),
    (pb.ExceedTimeLimit, "TIMEOUT", "TO"), (pb.Suspended, "SUSPENDED", "S"), (pb.OutOfMemory, "OUT_OF_MEMORY", "OOM"),
    (pb.Deadline, "DEADLINE", "DL"), (pb.Configuring, "CONFIGURING", "CF"),
])
def test_state_names_and_codes(status, name, code):
    assert (slurmfmt.state_name(status), slurmfmt.state_code(status)) == (name, code)


def test_times_memory_and_exit_codes():
    assert [slurmfmt.squeue_time(s) for s in (0, 65, 3600, 3725, 90061)] == [
        "0:00", "1:05", "1:00:00", "1:02:05", "1-01:01:01"]
    assert [slurmfmt.sacct_duration(s) for s in (5, 3725, 90061)] == ["00:00:05", "01:02:05", "1-01:01:01"]
    assert slurmfmt.squeue_limit(0) == "UNLIMITED" and slurmfmt.sinfo_limit(0) == "infinite"
    assert [slurmfmt.memory_mb(b) for b in (0, 512 << 20, 4 << 30, 1536 << 20)] == ["0", "512M", "4G", "1.50G"]
    assert [slurmfmt.exit_code(c) for c in (0, 3, 256 + 9, EC_TERMINATED, EC_SPAWN_FAILED)] == [
        "0:0", "3:0", "0:9", "0:15", "1:0"]
    assert slurmfmt.shell_exit(3) == 3 and slurmfmt.shell_exit(256 + 9) == 137


def test_squeue_default_columns_are_slurms():
    lines = squeue_lines([job(), job(job_id=13, name="longjobname", status=pb.Pending, start_time=0, node_num=2,
                                     craned_list="", pending_reason="Resource")])
    assert lines == [
        "             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)",
        "                13     debug longjobn     root PD       0:00      2 (Resources)",
        "                12     debug     wrap     root  R       1:05      1 cn1",
    ]


def test_squeue_sorts_as_slurm_does():
    jobs = [job(job_id=1, priority=5), job(job_id=2, status=pb.Pending, priority=1, start_time=0),
            job(job_id=3, status=pb.Pending, priority=9, start_time=0), job(job_id=4, partition="a")]
    assert squeue_lines(jobs, ["-h", "-o", "%i"]) == ["4", "3", "2", "1"]  # P,t,-p: partition, PD first, priority
    assert squeue_lines(jobs, ["-h", "-o", "%i", "-S", "i"]) == ["1", "2", "3", "4"]
    assert squeue_lines(jobs, ["-h", "-o", "%i", "-S", "-i"]) == ["4", "3", "2", "1"]
    with pytest.raises(CliError) as err:
        squeue_lines(jobs, ["-S", "%"])
    assert err.value.code == 2


def test_squeue_format_letters_noheader_and_held_reason():
    jobs = [job(status=pb.Pending, held=True, pending_reason="Held", start_time=0, craned_list="")]
    assert squeue_lines(jobs, ["-h", "-o", "%i %T %t %r %R"]) == ["12 PENDING PD JobHeldUser (JobHeldUser)"]
    assert squeue_lines([job()], ["-h", "-o", "%.5i|%8j|%u|%a|%P|%q|%C|%m|%D|%l|%L|%N|%Z"]) == [
        "   12|wrap    |root|acct|debug|normal|2|512M|1|1:00:00|58:55|cn1|/work"]
    assert squeue_lines([job()], ["-o", "%T"]) == ["STATE", "RUNNING"]


def test_squeue_array_ids():
    task = job(job_id=20, array_job_id=18, array_task_id=2)
    rest = job(job_id=18, array_job_id=18, status=pb.Pending, array_pending="3-5%2", start_time=0, craned_list="",
               pending_reason="Priority")
    assert squeue_lines([task, rest], ["-h", "-o", "%i %A %F %K %R"]) == [
        "18_[3-5%2] 18 18 3-5%2 (Priority)", "18_2 20 18 2 cn1"]


def test_squeue_long_format_option():
    assert squeue_lines([job()], ["-O", "jobid:6,name:.8,state,timeused:6"]) == [
        "JOBID     NAMESTATE               TIME  ",
        "12        wrapRUNNING             1:05  ",
    ]
    with pytest.raises(CliError) as err:
        squeue_lines([job()], ["-O", "nosuchfield"])
    assert err.value.code == 2


def test_squeue_bad_format_letter_is_a_usage_error():
    with pytest.raises(CliError) as err:
        squeue_lines([job()], ["-o", "%i %!"])
    assert err.value.code == 2 and "'%!'" in err.value.message


def node(name, state="idle", drain=False, cpus=2, alloc=0, reason="") -> pb.CranedInfo:
    return pb.CranedInfo(name=name, cpu_total=cpus, cpu_alloc=alloc, mem_total=1 << 30, resource_state=state,
                         control_state="drain" if drain else "none", partitions=["debug"], reason=reason)


PARTS = [pb.PartitionInfo(name="debug", state="up", nodes=["cn1", "cn2", "cn3", "cn4"], is_default=True),
         pb.PartitionInfo(name="gpu", state="up", nodes=["cn4"], max_time_limit=86400)]
NODES = [node("cn1"), node("cn2"), node("cn3", "mix", alloc=1), node("cn4", drain=True, reason="maint")]


def sinfo_lines(argv=()) -> list[str]:
    return sinfo.lines(PARTS, NODES, sinfo.TABLE.parse(list(argv), False))


def test_sinfo_default_lines_group_by_state():
    assert sinfo_lines() == [
        "PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST",
        "debug*       up   infinite      2   idle cn[1-2]",
        "debug*       up   infinite      1    mix cn3",
        "debug*       up   infinite      1  drain cn4",
        "gpu          up 1-00:00:00      1  drain cn4",
    ]


def test_sinfo_format_groups_by_the_fields_shown():
    assert sinfo_lines(["-h", "-o", "%P %D"]) == ["debug* 4", "gpu 1"]
    assert sinfo_lines(["-h", "-o", "%R %F %C %T"]) == [
        "debug 0/2/0/2 0/4/0/4 IDLE", "debug 1/0/0/1 1/1/0/2 MIXED", "debug 0/0/1/1 0/0/2/2 DRAINED",
        "gpu 0/0/1/1 0/0/2/2 DRAINED"]
    assert sinfo_lines(["-h", "-o", "%R %D %T", "-t", "drain"]) == ["debug 1 DRAINED", "gpu 1 DRAINED"]


def test_sinfo_summary_node_oriented_and_reasons():
    assert sinfo_lines(["-s"]) == [
        "PARTITION AVAIL  TIMELIMIT   NODES(A/I/O/T) NODELIST",
        "debug*       up   infinite          1/2/1/4 cn[1-4]",
        "gpu          up 1-00:00:00          0/0/1/1 cn4",
    ]
    assert sinfo_lines(["-N"])[:2] == ["NODELIST  NODES PARTITION STATE ", "cn1           1    debug* idle  "]
    assert sinfo_lines(["-N", "-h"])[-2:] == ["cn4           1    debug* drain ", "cn4           1       gpu drain "]
    assert sinfo_lines(["-R", "-h"]) == ["maint                root      Unknown             cn4"]  # once
    assert sinfo_lines(["-h", "-o", "%D %t"]) == ["2 idle", "1 mix", "1 drain"]  # no partition field: merged


def test_scontrol_show_job_block():
    j = job(stdout_path="slurm-%j.out", stderr_path="/logs/%x-%u.err", cmd_line="sbatch --wrap hostname")
    text = scontrol.format_blocks([scontrol.job_block(j, NOW)], False)
    lines = text.splitlines()
    assert lines[0] == "JobId=12 JobName=wrap"
    assert lines[1] == "   UserId=root(0) GroupId=root(0) MCS_label=N/A"
    assert lines[2] == "   Priority=0 Nice=0 Account=acct QOS=normal"
    assert lines[3] == "   JobState=RUNNING Reason=None Dependency=(null)"
    assert "   RunTime=00:01:05 TimeLimit=01:00:00 TimeMin=N/A" in lines
    assert "   NodeList=cn1" in lines and "   BatchHost=cn1" in lines
    assert "   StdOut=/work/slurm-12.out" in lines and "   WorkDir=/work" in lines  # as the node resolves it
    assert "   StdErr=/logs/wrap-root.err" in lines
    assert text.endswith("   Power=\n\n")
    one = scontrol.format_blocks([scontrol.job_block(j, NOW)], True)
    assert one.count("\n") == 1 and one.startswith("JobId=12 JobName=wrap UserId=root(0) ")


def test_scontrol_show_node_and_partition_blocks():
    lines = scontrol.node_block(node("cn4", drain=True, reason="maint"))
    assert lines[0] == "NodeName=cn4 Arch=x86_64 CoresPerSocket=1"
    assert "State=IDLE+DRAIN ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A" in lines
    assert "RealMemory=1024 AllocMem=0 FreeMem=N/A Sockets=2 Boards=1" in lines
    assert lines[-1] == "Reason=maint"
    part = scontrol.partition_block(PARTS[0], {n.name: n for n in NODES})
    assert part[0] == "PartitionName=debug"
    assert "AllocNodes=ALL Default=YES QoS=N/A" in part
    assert "Nodes=cn[1-4]" in part
    assert "State=UP TotalCPUs=8 TotalNodes=4 SelectTypeParameters=NONE" in part


def finished(**kw) -> pb.JobInfo:
    j = job(status=pb.Completed, end_time=int(NOW) - 5, **kw)
    j.step_info_list.append(pb.StepInfo(job_id=j.job_id, step_id=0, name="batch", status=pb.Completed,
                                        start_time=j.start_time, end_time=j.end_time, alloc_cpus=2, node_num=1))
    return j


def sacct_lines(jobs, argv=()) -> list[str]:
    parsed = sacct.TABLE.parse(list(argv), False)
    fields = sacct.parse_fields(parsed.last("format") or sacct.DEFAULT_FIELDS)
    _request, wanted, window = sacct.build_request(parsed)
    rows = sacct.rows_for(jobs, wanted, window, parsed.given("allocations"))
    delimiter = "|" if parsed.given("parsable2") or parsed.given("parsable") else None
    return sacct.render(rows, fields, not parsed.given("noheader"), delimiter, parsed.given("parsable"), NOW)


def test_sacct_default_table():
    assert sacct_lines([finished()], ["-j", "12"]) == [
        "       JobID    JobName  Partition    Account  AllocCPUS      State ExitCode ",
        "------------ ---------- ---------- ---------- ---------- ---------- -------- ",
        "12                 wrap      debug       acct          2  COMPLETED      0:0 ",
        "12.batch          batch                  acct          2  COMPLETED      0:0 ",
    ]


def test_sacct_parsable_allocations_and_widths():
    failed = finished(job_id=13, name="averyverylongname", exit_code=3)
    failed.status = pb.Failed
    assert sacct_lines([failed], ["-j", "13", "-n", "-P", "-o", "State,ExitCode"]) == ["FAILED|3:0", "COMPLETED|0:0"]
    assert sacct_lines([failed], ["-j", "13", "-X", "-p", "-o", "jobid,jobname"]) == [
        "JobID|JobName|", "13|averyverylongname|"]
    assert sacct_lines([failed], ["-j", "13", "-X", "-n", "-o", "JobID,JobName,JobName%20"]) == [
        "13           averyvery+    averyverylongname "]
    with pytest.raises(CliError) as err:
        sacct.parse_fields("JobID,Nope")
    assert err.value.code == 2 and err.value.message == 'sacct: error: Invalid field requested: "Nope"'


def test_sacct_window_without_job_ids():
    old = finished(job_id=1)
    old.end_time = int(time.time()) - 3 * 86400
    recent = finished(job_id=2)
    recent.end_time = int(time.time())
    running = job(job_id=3)
    kept = sacct.rows_for([old, recent, running], {}, (sacct.midnight(time.time()), None), True)
    assert [r.job_id for r in kept] == [2, 3]


def test_step_rows_are_cacct_rows():
    j = finished()
    rows = sacct.rows_for([j], {}, (None, None), False)
    assert isinstance(rows[1], StepRow) and sacct.FIELDS["JobID"][1](rows[1], NOW) == "12.batch"


def test_show_lines_once_and_every_n_seconds(monkeypatch, capsys):
    from crane_slurm import slurmfmt

    assert slurmfmt.show_lines(lambda: ["a", "b"], None) == 0
    assert capsys.readouterr().out == "a\nb\n"

    class StopError(Exception):
        pass

    naps = []

    def nap(seconds):
        naps.append(seconds)
        if len(naps) == 2:
            raise StopError

    monkeypatch.setattr(slurmfmt.time, "sleep", nap)
    monkeypatch.setattr(slurmfmt.time, "strftime", lambda fmt: "Tue Dec 01 10:00:00 2026")
    with pytest.raises(StopError):
        slurmfmt.show_lines(lambda: ["x"], 3)
    assert capsys.readouterr().out == "Tue Dec 01 10:00:00 2026\nx\n\n" * 2 and naps == [3, 3]


@pytest.mark.parametrize("prog, argv", [("squeue", ["-i", "0"]), ("sinfo", ["--iterate=x"])])
def test_iterate_must_be_a_positive_number(prog, argv):
    import importlib

    module = importlib.import_module(f"crane_slurm.{prog}")
    with pytest.raises(CliError) as err:
        module.command(argv)
    assert err.value.code == 2 and "expected a positive number of seconds" in err.value.message
