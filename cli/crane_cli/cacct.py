"""cacct: accounting of ended and active jobs, with one row per step.

The query goes to the controller with ``include_history`` (ended jobs from the accounting
store as well as the jobs it holds) and ``include_steps``; every state unless ``-t`` says
otherwise. Rows are sorted by job id, each job followed by its steps (``<job>.<step>``,
``<job>.batch`` for the batch script's step), and shown as a table (default, ``--full`` or
``--format`` columns) or, with ``--json``, the reply as protojson.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from crane_cli.cliparse import Command, Option, common_options, parse, run, split_list
from crane_cli.errors import EXIT_BACKEND, EXIT_FORMAT, EXIT_OK, CliError, arg_error

DEFAULT_MAX_LINES = 1000
MAX_LINES_ERROR = "Output line number limit must be greater than 0."

# -t values -> JobStatus numbers (crane.proto). "running" covers Configuring, Starting and
# Completing as in cqueue; Deadline (11) is only in "all".
_PENDING, _RUNNING, _SUSPENDED = (0,), (1, 7, 8, 9), (10,)
STATE_FILTERS: dict[str, tuple[int, ...]] = {
    "pending": _PENDING, "p": _PENDING,
    "running": _RUNNING, "r": _RUNNING,
    "completed": (2,), "c": (2,),
    "failed": (3,), "f": (3,),
    "cancelled": (5,), "x": (5,),
    "time-limit-exceeded": (4,), "tle": (4,), "t": (4,),
    "oom": (6,), "o": (6,),
    "suspended": _SUSPENDED, "s": _SUSPENDED,
    # Slurm's abbreviations (sacct -s CD,F,CA,TO,OOM): scripts written for Slurm keep working
    "pd": _PENDING, "cd": (2,), "ca": (5,), "to": (4,), "dl": (11,), "cf": (7,), "cg": (9,),
}
ALL_STATES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
STATE_HELP = ("pending(p), running(r), completed(c), failed(f), cancelled(x), time-limit-exceeded|tle(t), "
              "oom(o), suspended(s) or all (default: all); Slurm's PD, R, CD, F, CA, TO, OOM, S, DL too")
INTERVAL_HELP = "T1~T2, T1~ or ~T2 (times like 2024-01-02T15:04:05 or 2024-01-02)"


def build_command() -> Command:
    """cacct's flags."""
    return Command("cacct", help="Display the accounting records of jobs and their steps.", params=[
        Option("-j", "--job", multiple=True, help="job ids, or id.step (comma-separated)"),
        Option("-n", "--name", multiple=True, help="job names (comma-separated)"),
        Option("-u", "--user", multiple=True, help="users (comma-separated)"),
        Option("-A", "--account", multiple=True, help="accounts (comma-separated)"),
        Option("-p", "--partition", multiple=True, help="partitions (comma-separated)"),
        Option("-q", "--qos", multiple=True, help="QoS (comma-separated)"),
        Option("-t", "--state", multiple=True, help=STATE_HELP),
        Option("--type", multiple=True, help="job types: Interactive, Batch, Container (i, b, c)"),
        Option("-w", "--nodelist", multiple=True, help="nodes (host list, e.g. cn[01-04])"),
        Option("-s", "--submit-time", metavar="INTERVAL", help=f"submitted in {INTERVAL_HELP}"),
        Option("-S", "--start-time", metavar="INTERVAL", help="started in INTERVAL (as -s)"),
        Option("-E", "--end-time", metavar="INTERVAL", help="ended in INTERVAL (as -s)"),
        Option("--deadline", flag=True, default=False, help="add the Deadline column"),
        Option("-N", "--noheader", flag=True, default=False, help="do not print the header line"),
        Option("-F", "--full", flag=True, default=False, help="all columns, cells not shortened"),
        Option("-m", "--max-lines", metavar="N", help=f"show at most N jobs (default {DEFAULT_MAX_LINES})"),
        Option("-o", "--format", help="output format: %[.][width]spec items, e.g. '%j %n %t %e'"),
        *common_options(),
    ])


# -- arguments ---------------------------------------------------------------------------------

def parse_job_ids(values: list[str] | None) -> tuple[list[int], dict[int, set[int | str] | None]]:
    """``-j 5,6.1,6.batch`` -> the job ids to ask for and what to show of each.

    The map gives, per job, None (the job row and all its steps) or the steps asked for
    (step ids, or ``"batch"``); only those rows are shown.
    """
    ids: list[int] = []
    wanted: dict[int, set[int | str] | None] = {}
    for item in split_list(values):
        job, dot, step = item.partition(".")
        if "_" in job and job.replace("_", "").isdigit():
            raise arg_error(f"cacct: array job tasks ({item!r}) are not supported by this cluster")
        if not job.isdigit() or not 0 < int(job) <= 0xFFFFFFFF or (dot and not (step.isdigit() or step == "batch")):
            raise arg_error(f"cacct: invalid job id {item!r}: expected <id> or <id>.<step>")
        job_id = int(job)
        if job_id not in wanted:
            ids.append(job_id)
            wanted[job_id] = set()
        if not dot:
            wanted[job_id] = None
        elif wanted[job_id] is not None:
            wanted[job_id].add("batch" if step == "batch" else int(step))  # type: ignore[union-attr]
    return ids, wanted


def parse_states(values: list[str] | None) -> list[int]:
    """``-t`` values -> JobStatus numbers (default: all)."""
    items = split_list(values)
    out: list[int] = []
    for item in items:
        if item.lower() == "all":
            return list(ALL_STATES)
        states = STATE_FILTERS.get(item.lower())
        if states is None:
            raise arg_error(f"cacct: invalid state {item!r}: expected {STATE_HELP.split(' (default')[0]}")
        out.extend(s for s in states if s not in out)
    return sorted(out) if out else list(ALL_STATES)


def parse_interval(flag: str, text: str | None) -> tuple[int, int] | None:
    """``T1~T2``, ``T1~`` or ``~T2`` -> (lower, upper) unix seconds, 0 = open; None if not given."""
    if text is None:
        return None
    from crane_cli.timefmt import TimeFormatError, parse_time_expr

    lo_text, tilde, hi_text = text.partition("~")
    lo_text, hi_text = _iso(lo_text.strip()), _iso(hi_text.strip())
    if not tilde or "~" in hi_text or not (lo_text or hi_text):
        raise arg_error(f"cacct: invalid {flag} {text!r}: expected T1~T2, T1~ or ~T2")
    try:
        lower = parse_time_expr(lo_text) if lo_text else 0
        upper = parse_time_expr(hi_text) if hi_text else 0
    except TimeFormatError as exc:
        raise arg_error(f"cacct: invalid {flag} {text!r}: {exc}") from None
    if lower and upper and lower > upper:
        raise arg_error(f"cacct: invalid {flag} {text!r}: the start of the interval is after its end")
    return lower, upper


def _iso(text: str) -> str:
    """``2024-01-02 15:04:05`` -> ``2024-01-02T15:04:05`` (a space between date and time, as cacct prints them)."""
    if len(text) > 11 and text[10] == " " and text[:4].isdigit() and text[4] == "-":
        return text[:10] + "T" + text[11:].strip()
    return text


def parse_max_lines(value: str | None) -> int:
    """``-m``: a positive integer (default 1000); 0 is upstream's error."""
    if value is None:
        return DEFAULT_MAX_LINES
    try:
        n = int(value)
    except ValueError:
        raise arg_error(f"cacct: invalid -m/--max-lines {value!r}: expected a positive integer") from None
    if n == 0:
        raise arg_error(f"cacct: {MAX_LINES_ERROR}")
    if n < 0 or n > 0xFFFFFFFF:
        raise arg_error(f"cacct: invalid -m/--max-lines {value!r}: expected a positive integer")
    return n


def build_request_fields(args) -> tuple[dict, dict[int, set[int | str] | None]]:  # noqa: ANN001 - parsed values
    """The ``QueryJobsInfoRequest`` fields (validated) and the per-job step selection of ``-j``."""
    ids, wanted = parse_job_ids(args.job)
    nodes: list[str] = []
    if args.nodelist:
        from crane_common import hostlist

        try:
            nodes = hostlist.expand(args.nodelist)
        except ValueError as exc:
            raise arg_error(f"cacct: -w/--nodelist: {exc}") from None
    fields: dict = {
        "job_ids": ids, "names": split_list(args.name), "users": split_list(args.user),
        "accounts": split_list(args.account), "partitions": split_list(args.partition), "qos": split_list(args.qos),
        "states": parse_states(args.state), "nodes": nodes,
        "max_lines": parse_max_lines(args.max_lines), "include_history": True, "include_steps": True,
    }
    for flag, attr, text in (("-s/--submit-time", "filter_submit_time", args.submit_time),
                             ("-S/--start-time", "filter_start_time", args.start_time),
                             ("-E/--end-time", "filter_end_time", args.end_time)):
        rng = parse_interval(flag, text)
        if rng is not None:
            fields[attr] = rng
    return fields, wanted


# -- rows --------------------------------------------------------------------------------------

class StepRow:
    """A step shown as a row: its own id, name, state, exit code, times, nodes and CPUs; the rest is its job's."""

    __slots__ = ("job", "step", "display_id")

    def __init__(self, job, step) -> None:  # noqa: ANN001 - JobInfo, StepInfo
        self.job = job
        self.step = step
        label = "batch" if step.name == "batch" else str(step.step_id)
        self.display_id = f"{job.job_id}.{label}"

    def __getattr__(self, attr: str) -> object:
        if attr in _STEP_OWN:
            return getattr(self.step, attr)
        return getattr(self.job, attr)


_STEP_OWN = frozenset({"name", "status", "exit_code", "start_time", "end_time", "craned_list", "node_num",
                       "alloc_cpus", "usage_cpu_ms", "usage_mem_peak"})


def build_rows(jobs: list, wanted: dict[int, set[int | str] | None]) -> list:
    """Job rows, each followed by its step rows, sorted by job id then step id (``-j`` selections applied)."""
    rows: list = []
    for job in sorted(jobs, key=lambda j: j.job_id):
        selection = wanted.get(job.job_id) if wanted else None
        if selection is None:
            rows.append(job)
        for step in sorted(job.step_info_list, key=lambda st: st.step_id):
            if selection is None or step.step_id in selection or ("batch" in selection and step.name == "batch"):
                rows.append(StepRow(job, step))
    return rows


# -- columns -----------------------------------------------------------------------------------

def _fields():  # noqa: ANN202 - {title: Field}, built on first use (keeps the imports off the parse path)
    from crane_common.states import format_exit_code
    from crane_common.units import format_memory

    from crane_cli.jobfields import TYPE_NAMES, Field, num, state_name
    from crane_cli.timefmt import format_duration, format_time_limit, format_timestamp

    def elapsed(row, now: float) -> str:  # noqa: ANN001
        if not row.start_time or row.start_time <= 0 or row.status == 0:
            return "-"
        if isinstance(row, StepRow) or not row.elapsed:
            end = row.end_time if row.end_time > 0 else now
            return format_duration(max(0, int(end - row.start_time)))
        return format_duration(row.elapsed)

    def s(attr: str):  # noqa: ANN202
        return lambda r, now: str(getattr(r, attr))

    def dash(attr: str):  # noqa: ANN202
        return lambda r, now: str(getattr(r, attr)) or "-"

    def b(attr: str):  # noqa: ANN202
        return lambda r, now: "true" if getattr(r, attr) else "false"

    f = {
        "JobId": Field("JobId", lambda r, now: getattr(r, "display_id", None) or str(r.job_id)),
        "JobName": Field("JobName", s("name")),
        "UserName": Field("UserName", s("user")),
        "Uid": Field("Uid", s("uid")),
        "Partition": Field("Partition", s("partition")),
        "NodeNum": Field("NodeNum", s("node_num")),
        "Account": Field("Account", s("account")),
        "ReqCPUs": Field("ReqCPUs", lambda r, now: num(r.req_cpus)),
        "ReqMemPerNode": Field("ReqMemPerNode", lambda r, now: format_memory(r.req_mem_per_node)),
        "AllocCPUs": Field("AllocCPUs", lambda r, now: num(r.alloc_cpus)),
        "AllocMemPerNode": Field("AllocMemPerNode", lambda r, now: format_memory(r.alloc_mem_per_node)),
        "State": Field("State", lambda r, now: state_name(r.status)),
        "TimeLimit": Field("TimeLimit", lambda r, now: format_time_limit(r.time_limit)),
        "StartTime": Field("StartTime", lambda r, now: format_timestamp(r.start_time)),
        "EndTime": Field("EndTime", lambda r, now: format_timestamp(r.end_time)),
        "SubmitTime": Field("SubmitTime", lambda r, now: format_timestamp(r.submit_time)),
        "Qos": Field("Qos", s("qos")),
        "Exclusive": Field("Exclusive", b("exclusive")),
        "Held": Field("Held", b("held")),
        "Priority": Field("Priority", lambda r, now: num(r.priority)),
        "CranedList": Field("CranedList", dash("craned_list")),
        "NodeList": Field("NodeList", dash("craned_list")),
        "ExitCode": Field("ExitCode", lambda r, now: format_exit_code(r.exit_code)),
        "Wckey": Field("wckey", lambda r, now: ""),
        "Deadline": Field("Deadline", lambda r, now: format_timestamp(r.deadline)),
        "RequeueCount": Field("RequeueCount", s("requeue_count")),
        "SuspendedTime": Field("SuspendedTime", lambda r, now: format_duration(r.suspended_seconds)),
        "ElapsedTime": Field("ElapsedTime", elapsed),
        "Comment": Field("Comment", s("comment")),
        "Reason": Field("Reason", dash("pending_reason")),
        "ReqNodes": Field("ReqNodes", s("req_nodes")),
        "ExcludeNodes": Field("ExcludeNodes", s("exclude_nodes")),
        "JobType": Field("JobType", lambda r, now: TYPE_NAMES.get(r.type, str(r.type))),
        "ArrayJobId": Field("ArrayJobId", lambda r, now: "-"),
        "ArraySpec": Field("ArraySpec", lambda r, now: "-"),
        "ArrayTaskId": Field("ArrayTaskId", lambda r, now: "-"),
    }
    return f


_FIELDS: dict | None = None


def fields() -> dict:
    """cacct's columns by title (built once)."""
    global _FIELDS
    if _FIELDS is None:
        _FIELDS = _fields()
    return _FIELDS


DEFAULT_COLUMNS = ("JobId", "JobName", "Partition", "Account", "AllocCPUs", "State", "ExitCode")
FULL_COLUMNS = ("JobId", "JobName", "UserName", "Partition", "NodeNum", "Account", "ReqCPUs", "ReqMemPerNode",
                "AllocCPUs", "AllocMemPerNode", "State", "TimeLimit", "StartTime", "EndTime", "SubmitTime", "Qos",
                "Exclusive", "Held", "Priority", "CranedList", "ExitCode", "Wckey", "Deadline")

# Single-letter specifiers (case-sensitive): U is the user name and u the uid, the reverse of cqueue.
LETTERS = {
    "a": "Account", "C": "ReqCPUs", "c": "AllocCPUs", "D": "ElapsedTime", "E": "EndTime", "e": "ExitCode",
    "h": "Held", "j": "JobId", "K": "Wckey", "k": "Comment", "L": "NodeList", "l": "TimeLimit",
    "M": "ReqMemPerNode", "m": "AllocMemPerNode", "N": "NodeNum", "n": "JobName", "P": "Partition",
    "p": "Priority", "q": "Qos", "R": "Reason", "r": "ReqNodes", "S": "StartTime", "s": "SubmitTime",
    "T": "JobType", "t": "State", "U": "UserName", "u": "Uid", "X": "Exclusive", "x": "ExcludeNodes",
}
# Long names (case-insensitive, matched in lower case): every column title, plus a few aliases.
ALIASES = {"elapsed": "ElapsedTime", "name": "JobName", "user": "UserName", "qos": "Qos", "nodelist": "NodeList",
           "cranedlist": "CranedList", "status": "State", "type": "JobType", "exitcode": "ExitCode",
           "reqcpus": "ReqCPUs", "alloccpus": "AllocCPUs", "jobid": "JobId"}


def resolve(spec: str):  # noqa: ANN201 - Field | None
    """The field of a ``--format`` specifier (a letter as written, or a lower-cased long name)."""
    table = fields()
    if len(spec) == 1:
        title = LETTERS.get(spec)
    else:
        title = ALIASES.get(spec) or next((t for t in table if t.lower() == spec), None)
    return table.get(title) if title else None


def columns(args) -> list:  # noqa: ANN001
    """The columns without ``--format``."""
    table = fields()
    if args.full:
        return [table[t] for t in FULL_COLUMNS]
    titles = list(DEFAULT_COLUMNS)
    if args.start_time is not None:
        titles.append("StartTime")
    if args.end_time is not None:
        titles.append("EndTime")
    if args.submit_time is not None:
        titles.append("SubmitTime")
    if args.deadline:
        titles.append("Deadline")
    return [table[t] for t in titles]


def render(rows: list, args, layout, now: float) -> str:  # noqa: ANN001
    """The table text for ``rows``."""
    from crane_cli import table

    if layout is not None:
        items = [x for x in layout if not isinstance(x, str)]
        headers = None if args.noheader else [x.field.header for x in items]
        cells = [[x.field.get(r, now) for x in items] for r in rows]
        return table.render_format(layout, headers, cells, full=args.full)
    cols = columns(args)
    headers = None if args.noheader else [c.header for c in cols]
    cells = [[c.get(r, now) for c in cols] for r in rows]
    return table.render_table(headers, cells, full=args.full)


# -- the command -------------------------------------------------------------------------------

def command(argv: list[str]) -> int:
    """cacct's body: returns the exit code, raises CliError on failure."""
    args = parse(build_command(), argv)
    fields_, wanted = build_request_fields(args)
    from crane_cli.cqueue import parse_types

    types = parse_types(args.type, prog="cacct")
    layout = None
    if args.format is not None:
        from crane_cli.fmtspec import FormatSpecError, parse_format

        try:
            layout = parse_format(args.format, resolve)
        except FormatSpecError as exc:
            raise CliError(f"cacct: {exc}", EXIT_FORMAT) from None
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    from crane_cli import rpc

    ranges = {k: rpc.pb.TimeRange(lower=v[0], upper=v[1]) for k, v in fields_.items() if k.startswith("filter_")}
    request = rpc.pb.QueryJobsInfoRequest(**{**fields_, **ranges})
    with rpc.Controller(conf) as ctld:
        reply = ctld.call("QueryJobsInfo", request)
    if args.json:
        from crane_cli.protojson import to_json

        if types is not None:  # --type is applied here, not by the controller
            kept = [j for j in reply.jobs if j.type in types]
            del reply.jobs[:]
            reply.jobs.extend(kept)
        print(to_json(reply))
        return EXIT_OK if reply.ok else EXIT_BACKEND
    if not reply.ok:
        raise CliError(f"cacct: {reply.reason or 'the controller refused the query'}", EXIT_BACKEND)
    import time

    seen: set[int] = set()
    jobs = []
    for j in reply.jobs:  # one row per job, should a job come both from the controller and from the store
        if j.job_id not in seen and (types is None or j.type in types):
            seen.add(j.job_id)
            jobs.append(j)
    jobs.sort(key=lambda j: j.job_id)
    del jobs[fields_["max_lines"]:]
    text = render(build_rows(jobs, wanted), args, layout, time.time())
    if text:
        sys.stdout.write(text + "\n")
    return EXIT_OK


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="cacct")
