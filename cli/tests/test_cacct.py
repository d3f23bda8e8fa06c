"""cacct: flags, intervals, states, step rows, columns and specifiers, JSON, errors (against FakeCtld)."""

from __future__ import annotations

import json

import pytest
from acct_data import t
from crane_common.proto import crane_pb2 as pb

from crane_cli import cacct

ALL = list(range(12))


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def ids(text: str) -> list[str]:
    return [r[0] for r in rows(text)[1:]]


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# -- the request and the default table ----------------------------------------------------------

def test_default_request_and_rows(run_cmd, acct):
    r = run_cmd(cacct)
    assert r.code == 0, r
    req = acct.last("QueryJobsInfo")
    assert req.include_history and req.include_steps
    assert list(req.states) == ALL and req.max_lines == 1000
    assert not req.HasField("filter_submit_time") and not req.HasField("filter_end_time")
    table = rows(r.out)
    assert table[0] == ["JOBID", "JOBNAME", "PARTITION", "ACCOUNT", "ALLOCCPUS", "STATE", "EXITCODE"]
    assert ids(r.out) == ["1", "2", "3", "4", "5", "100", "100.batch", "100.1", "100.2", "101", "102", "103", "104"]
    assert table[6] == ["100", "acct100", "CPU", "physics", "2", "Completed", "0:0"]
    # steps: their own name, CPUs, state and exit code; partition and account of their job
    assert table[7] == ["100.batch", "batch", "CPU", "physics", "2", "Completed", "0:0"]
    assert table[8] == ["100.1", "solver", "CPU", "physics", "1", "Failed", "0:9"]
    assert table[9] == ["100.2", "post", "CPU", "physics", "1", "Completed", "1:0"]


def test_the_ended_job_of_the_controller_and_the_store_are_both_listed(run_cmd):
    out = rows(run_cmd(cacct, "-t", "completed").out)
    assert [r[0] for r in out[1:]] == ["5", "100", "100.batch", "100.1", "100.2"]


@pytest.mark.parametrize("job_id,text", [(100, "0:0"), (101, "1:0"), (102, "0:64"), (103, "0:69"), (104, "0:9")])
def test_exit_code_text(run_cmd, job_id, text):
    r = run_cmd(cacct, "-j", str(job_id), "-o", "%j %e", "-N")
    assert rows(r.out)[0] == [str(job_id), text]


def test_filters_are_sent(run_cmd, acct):
    r = run_cmd(cacct, "-j", "100,101", "-j", "102", "-n", "a,b", "-u", "alice", "-u", "bob", "-A", "physics",
                "-p", "CPU,GPU", "-q", "normal", "-w", "cn[01-02]")
    assert r.code == 0, r
    req = acct.last("QueryJobsInfo")
    assert list(req.job_ids) == [100, 101, 102]
    assert list(req.names) == ["a", "b"] and list(req.users) == ["alice", "bob"]
    assert list(req.accounts) == ["physics"] and list(req.partitions) == ["CPU", "GPU"]
    assert list(req.qos) == ["normal"] and list(req.nodes) == ["cn01", "cn02"]


@pytest.mark.parametrize("argv,expected", [
    (["-u", "bob"], ["1", "3", "101"]),
    (["-A", "chem"], ["101"]),
    (["-p", "GPU"], ["1", "101"]),
    (["-q", "high"], ["101"]),
    (["-n", "acct102"], ["102"]),
    (["-w", "cn07"], ["101"]),
    (["--type", "i"], []),
])
def test_filters_select(run_cmd, argv, expected):
    r = run_cmd(cacct, *argv)
    assert r.code == 0, r
    assert [i for i in ids(r.out) if "." not in i] == expected


# -- -j with steps ------------------------------------------------------------------------------

@pytest.mark.parametrize("sel,expected", [
    ("100", ["100", "100.batch", "100.1", "100.2"]),
    ("100.1", ["100.1"]),
    ("100.2,100.0", ["100.batch", "100.2"]),
    ("100.batch", ["100.batch"]),
    ("100.1,100", ["100", "100.batch", "100.1", "100.2"]),
    ("101.1", []),
])
def test_job_and_step_ids(run_cmd, acct, sel, expected):
    r = run_cmd(cacct, "-j", sel)
    assert r.code == 0, r
    assert ids(r.out) == expected
    assert list(acct.last("QueryJobsInfo").job_ids) == sorted({int(x.split(".")[0]) for x in sel.split(",")})


# -- states -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,states", [
    ("pending", [0]), ("p", [0]), ("running", [1, 7, 8, 9]), ("r", [1, 7, 8, 9]), ("completed", [2]), ("c", [2]),
    ("failed", [3]), ("f", [3]), ("cancelled", [5]), ("x", [5]), ("time-limit-exceeded", [4]), ("tle", [4]),
    ("t", [4]), ("oom", [6]), ("o", [6]), ("suspended", [10]), ("s", [10]), ("all", ALL), ("ALL", ALL),
    ("Completed,F", [2, 3]), ("c,all", ALL),
])
def test_state_names_and_letters(run_cmd, acct, value, states):
    assert run_cmd(cacct, "-t", value).code == 0
    assert list(acct.last("QueryJobsInfo").states) == states


def test_state_filter_rows(run_cmd):
    assert ids(run_cmd(cacct, "-t", "x,t,o").out) == ["102", "103", "104"]
    assert ids(run_cmd(cacct, "-t", "f").out) == ["101"]
    assert ids(run_cmd(cacct, "-t", "p").out) == ["1", "4"]


# -- time intervals -----------------------------------------------------------------------------

@pytest.mark.parametrize("flag,attr", [("-s", "filter_submit_time"), ("--submit-time", "filter_submit_time"),
                                       ("-S", "filter_start_time"), ("--start-time", "filter_start_time"),
                                       ("-E", "filter_end_time"), ("--end-time", "filter_end_time")])
@pytest.mark.parametrize("text,lower,upper", [
    ("2024-01-02T15:04:05~2024-01-04T00:00:00", t(2, 15, 4, 5), t(4)),
    ("2024-01-02T15:04:05~", t(2, 15, 4, 5), 0),
    ("~2024-01-04T10:00", 0, t(4, 10)),
    ("2024-01-02~2024-01-03", t(2), t(3)),
    ("2024-01-03~2024-01-03", t(3), t(3)),
    ("2024-01-02 15:04:05~2024-01-03 10:00", t(2, 15, 4, 5), t(3, 10)),
])
def test_interval_forms(run_cmd, acct, flag, attr, text, lower, upper):
    r = run_cmd(cacct, flag, text)
    assert r.code == 0, r
    rng = getattr(acct.last("QueryJobsInfo"), attr)
    assert (rng.lower, rng.upper) == (lower, upper)


@pytest.mark.parametrize("argv,expected", [
    (["-s", "2024-01-03~2024-01-04T10:00:00"], ["101", "102", "103"]),  # submitted at 10:00 on the 3rd and 4th
    (["-S", "2024-01-04~"], ["2", "3", "5", "102", "103", "104"]),  # 2 and 3 started just now
    (["-E", "~2024-01-03T23:59:59"], ["100", "101"]),
    (["-E", "2024-01-02T10:02:00~2024-01-02T10:03:00"], ["100"]),  # ended at 10:02:40
])
def test_intervals_select(run_cmd, argv, expected):
    r = run_cmd(cacct, *argv)
    assert r.code == 0, r
    assert [i for i in ids(r.out) if "." not in i] == expected


@pytest.mark.parametrize("flag,column", [("-S", "STARTTIME"), ("-E", "ENDTIME"), ("-s", "SUBMITTIME")])
def test_an_interval_adds_its_column(run_cmd, flag, column):
    r = run_cmd(cacct, flag, "2024-01-02~2024-01-03", "-j", "100")
    header = r.out.splitlines()[0].split()
    assert header[-1] == column
    row = r.out.splitlines()[1]
    assert row.endswith({"STARTTIME": "2024-01-02 10:01:00", "ENDTIME": "2024-01-02 10:02:40",
                         "SUBMITTIME": "2024-01-02 10:00:00"}[column])


def test_interval_columns_in_order(run_cmd):
    header = run_cmd(cacct, "-E", "2024-01-01~", "-s", "2024-01-01~", "-S", "2024-01-01~", "--deadline",
                     "-j", "100").out.splitlines()[0].split()
    assert header[7:] == ["STARTTIME", "ENDTIME", "SUBMITTIME", "DEADLINE"]


@pytest.mark.parametrize("text", ["2024-01-02", "~", "", "2024-01-03~2024-01-02", "x~", "~2024-13-01",
                                  "2024-01-01~2024-01-02~2024-01-03", "2024-02-30~"])
def test_bad_intervals(run_cmd, acct, text):
    r = run_cmd(cacct, "-E", text)
    assert r.code == 2, r
    assert one_line(r.err).startswith("cacct: invalid -E/--end-time")
    assert acct.requests == []


# -- display ------------------------------------------------------------------------------------

def test_noheader_and_max_lines(run_cmd, acct):
    r = run_cmd(cacct, "-N", "-m", "6")
    assert r.code == 0
    assert [x[0] for x in rows(r.out)] == ["1", "2", "3", "4", "5", "100", "100.batch", "100.1", "100.2"]
    assert acct.last("QueryJobsInfo").max_lines == 6  # jobs, not rows: the steps of the last job are shown
    assert rows(run_cmd(cacct, "--noheader", "--max-lines", "1").out) == [
        ["1", "job1.sh", "GPU", "physics", "0", "Pending", "0:0"]]


def test_full(run_cmd):
    r = run_cmd(cacct, "-F", "-j", "101")
    table = r.out.splitlines()
    assert table[0].split() == ["JOBID", "JOBNAME", "USERNAME", "PARTITION", "NODENUM", "ACCOUNT", "REQCPUS",
                                "REQMEMPERNODE", "ALLOCCPUS", "ALLOCMEMPERNODE", "STATE", "TIMELIMIT", "STARTTIME",
                                "ENDTIME", "SUBMITTIME", "QOS", "EXCLUSIVE", "HELD", "PRIORITY", "CRANEDLIST",
                                "EXITCODE", "WCKEY", "DEADLINE"]
    assert table[1].split() == ["101", "acct101", "bob", "GPU", "1", "chem", "2", "1G", "2", "1G", "Failed",
                                "01:00:00", "2024-01-03", "10:01:00", "2024-01-03", "10:02:40", "2024-01-03",
                                "10:00:00", "high", "false", "false", "10", "cn07", "1:0", "-"]


def test_full_does_not_cut_long_cells(run_cmd, acct):
    acct.history[0].name = "n" * 40
    assert "n" * 30 + "..." in run_cmd(cacct, "-j", "101").out
    assert "n" * 40 in run_cmd(cacct, "-F", "-j", "101").out


SPECS = {
    "a": "physics", "C": "2", "c": "2", "D": "00:01:40", "E": "2024-01-02 10:02:40", "e": "0:0", "h": "false",
    "j": "100", "K": "", "k": "", "L": "cn01", "l": "01:00:00", "M": "1G", "m": "1G", "N": "1", "n": "acct100",
    "P": "CPU", "p": "10", "q": "normal", "R": "-", "r": "", "S": "2024-01-02 10:01:00", "s": "2024-01-02 10:00:00",
    "T": "Batch", "t": "Completed", "U": "alice", "u": "1000", "X": "false", "x": "",
}


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_every_letter(run_cmd, spec):
    r = run_cmd(cacct, "-j", "100", "-o", f"[%{spec}]", "-N")
    assert r.code == 0, r
    assert r.out.splitlines()[0][1:-1].rstrip() == SPECS[spec]  # padded to the widest cell (steps included)


def test_user_letters_are_the_reverse_of_cqueue(run_cmd):
    r = run_cmd(cacct, "-j", "101", "-o", "%U|%u")
    assert r.out.splitlines() == ["USERNAME|UID", "bob     |1001"]


@pytest.mark.parametrize("name,value", [("JobId", "100"), ("jobname", "acct100"), ("USERNAME", "alice"),
                                        ("uid", "1000"), ("ExitCode", "0:0"), ("EndTime", "2024-01-02 10:02:40"),
                                        ("ElapsedTime", "00:01:40"), ("cranedlist", "cn01"), ("Deadline", "-"),
                                        ("ArrayJobId", "-"), ("arrayspec", "-"), ("ArrayTaskId", "-"),
                                        ("wckey", ""), ("state", "Completed"), ("qos", "normal")])
def test_long_names(run_cmd, name, value):
    r = run_cmd(cacct, "-j", "100", "-o", f"<%{name}>", "-N")
    assert r.code == 0, r
    assert r.out.splitlines()[0][1:-1].rstrip() == value  # padded to the widest cell, the step rows included


def test_format_widths_and_step_rows(run_cmd):
    r = run_cmd(cacct, "-j", "100", "-o", "%.10j|%4n|%t|%e")
    assert r.out.splitlines() == [
        "     JOBID|JOBN|STATE    |EXITCODE",
        "       100|acct|Completed|0:0",
        " 100.batch|batc|Completed|0:0",
        "     100.1|solv|Failed   |0:9",
        "     100.2|post|Completed|1:0",
    ]


def test_step_rows_elapsed(run_cmd, acct):
    s = acct.history[1].step_info_list[2]  # step 100.1
    s.start_time, s.end_time = t(2, 10, 1, 10), t(2, 10, 2, 0)
    r = run_cmd(cacct, "-j", "100.1,100.0", "-o", "%j %D %S")
    assert rows(r.out)[1:] == [["100.batch", "-", "-"], ["100.1", "00:00:50", "2024-01-02", "10:01:10"]]


@pytest.mark.parametrize("fmt", ["%Z", "%j %", "nothing", "%0j", "%bogusname"])
def test_invalid_format(run_cmd, acct, fmt):
    r = run_cmd(cacct, "-o", fmt)
    assert r.code == 5, r
    one_line(r.err)
    assert acct.requests == []


# -- JSON ---------------------------------------------------------------------------------------

def test_json(run_cmd):
    r = run_cmd(cacct, "--json", "-j", "100,5")
    assert r.code == 0, r
    data = json.loads(r.out)  # upstream's QueryJobsInfoReply (cranesched-json.md §2.2), then our reason
    assert list(data) == ["ok", "job_info_list", "reason"] and data["ok"] is True
    assert [j["job_id"] for j in data["job_info_list"]] == [5, 100]
    job = data["job_info_list"][1]
    assert job["status"] == "Completed" and job["exit_code"] == 0 and job["usage_cpu_ms"] == "150000"
    assert "craned_list" in job and "pending_reason" not in job  # the oneof: an ended job has its nodes
    assert "elapsed_time" not in job  # upstream sets it for jobs in memory only (pending/running)
    assert [s["step_id"] for s in job["step_info_list"]] == [2, 0, 1]  # the reply as sent, not re-sorted
    expected = {
        "type": "Batch", "step_type": "COMMON", "job_id": 100, "step_id": 1, "name": "solver",
        "status": "Failed", "exit_code": 265, "start_time": "1970-01-01T00:00:00Z",
        "end_time": "1970-01-01T00:00:00Z", "craned_list": "cn01", "node_num": 1,
        "execution_node": ["cn01"], "usage_cpu_ms": "0", "usage_mem_peak": "0"}
    step = job["step_info_list"][2]
    assert {k: step[k] for k in expected} == expected
    assert step["allocated_res_view"]["cpu_count"] == 1 and '"cpu_count":1,' in r.out  # a whole double: no ".0"
    assert job["step_info_list"][1]["step_type"] == "PRIMARY"  # step 0, the batch script
    assert data["job_info_list"][0]["step_info_list"] == []


def test_a_job_listed_twice_is_shown_once(run_cmd, acct):
    j100, j101 = acct.history[1], acct.history[0]
    acct.query_reply = pb.QueryJobsInfoReply(ok=True, jobs=[j101, j100, j100])  # from the controller and the store
    assert ids(run_cmd(cacct).out) == ["100", "100.batch", "100.1", "100.2", "101"]


def test_json_type_filter(run_cmd):
    assert json.loads(run_cmd(cacct, "--json", "--type", "Interactive").out)["job_info_list"] == []
    assert len(json.loads(run_cmd(cacct, "--json", "--type", "b,c").out)["job_info_list"]) == 10


def test_json_not_ok(run_cmd, acct):
    acct.query_reply = pb.QueryJobsInfoReply(ok=False, reason="accounting store unavailable")
    r = run_cmd(cacct, "--json")
    assert r.code == 4
    assert json.loads(r.out) == {"ok": False, "job_info_list": [], "reason": "accounting store unavailable"}
    assert r.err == ""


def test_not_ok(run_cmd, acct):
    acct.query_reply = pb.QueryJobsInfoReply(ok=False, reason="accounting store unavailable")
    r = run_cmd(cacct)
    assert r.code == 4
    assert one_line(r.err) == "cacct: accounting store unavailable"
    assert r.out == ""


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,msg", [
    (["-m", "0"], "cacct: Output line number limit must be greater than 0."),
    (["-m", "-1"], "cacct: invalid -m/--max-lines '-1': expected a positive integer"),
    (["-m", "x"], "cacct: invalid -m/--max-lines 'x': expected a positive integer"),
    (["-t", "weird"], "cacct: invalid state 'weird'"),
    (["-j", "abc"], "cacct: invalid job id 'abc'"),
    (["-j", "0"], "cacct: invalid job id '0'"),
    (["-j", "1.x"], "cacct: invalid job id '1.x'"),
    (["-j", "1."], "cacct: invalid job id '1.'"),
    (["-j", "1_x"], "cacct: invalid array task id '1_x'"),
    (["--type", "z"], "cacct: invalid job type 'z'"),
    (["-w", "cn[01-"], "cacct: -w/--nodelist:"),
    (["--nope"], "cacct: unrecognized arguments: --nope"),
    (["-s"], "cacct: argument -s/--submit-time: expected one argument"),
    (["extra"], "cacct: unrecognized arguments: extra"),
])
def test_bad_args(run_cmd, acct, argv, msg):
    r = run_cmd(cacct, *argv)
    assert r.code == 2, r
    assert one_line(r.err).startswith(msg)
    assert r.out == "" and acct.requests == []


# -- the console script -------------------------------------------------------------------------

def test_console_script(cli, fake):
    r = cli("cacct", "-N")
    assert r.code == 0, r
    assert len(r.out.splitlines()) == 30 and fake.last("QueryJobsInfo").include_history
    r = cli("cacct", "-m", "0")
    assert (r.code, r.out) == (2, "")
    assert one_line(r.err) == "cacct: Output line number limit must be greater than 0."


def test_console_script_unreachable_and_denied(cli, fake, tmp_path):
    import socket

    from cli_support import write_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "o").mkdir()
    r = cli("cacct", "-C", str(write_config(tmp_path / "o", port)))
    assert r.code == 3
    assert one_line(r.err) == "Connection to CraneCtld is broken."
    fake.token = "something-else"
    r = cli("cacct", "--json")
    assert (r.code, r.out) == (3, "")
    assert one_line(r.err).startswith("Access denied.")


# -- ended jobs in cqueue and ccontrol ----------------------------------------------------------

def test_cqueue_all_lists_the_ended_jobs_the_controller_holds(run_cmd, acct):
    from crane_cli import cqueue

    r = run_cmd(cqueue, "-t", "all", "-o", "%j %t")
    req = acct.last("QueryJobsInfo")
    assert req.include_finished and not req.include_history
    assert list(req.states) == [0, 1, 7, 8, 9, 10, 2, 3, 4, 5, 6, 11]
    assert rows(r.out)[1:] == [["1", "Pending"], ["2", "Running"], ["3", "Running"], ["4", "Pending"],
                               ["5", "Completed"]]  # 100-104 are only in the accounting store: cacct
    r = run_cmd(cqueue, "-o", "%j")
    assert ids(r.out) == ["1", "2", "3", "4"] and not acct.last("QueryJobsInfo").include_finished


def test_ccontrol_show_job_of_an_ended_job(run_cmd, acct):
    from crane_cli import ccontrol

    r = run_cmd(ccontrol, "show", "job", "5")
    assert r.code == 0, r
    assert r.out.startswith("JobId=5 JobName=acct5\n\tUser=") and "JobState=Completed" in r.out  # upstream's block
    assert "ExitCode=0:0" in r.out and "\tSubmitNode=" in r.out
    req = acct.last("QueryJobsInfo")
    assert req.include_finished and list(req.job_ids) == [5]
    assert "JobId=5 " not in run_cmd(ccontrol, "show", "job").out  # without an id: pending and running only
