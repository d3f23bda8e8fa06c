"""sacct: the job history (``QueryJobsInfo`` with ``include_history``) in Slurm's accounting layout.

Default columns ``JobID JobName Partition Account AllocCPUS State ExitCode``: titles
right-justified over a line of dashes, values cut to the width with a ``+`` as Slurm does,
one row per job and one per step (``<id>.batch``, ``<id>.<n>``; ``-X``: jobs only).
``-P/--parsable2`` separates fields with ``|`` (``-p``: a ``|`` after each), ``-n`` drops
the header, ``--format=JobID,JobName%30,State`` picks fields (``%N``: the width).
Without ``-j`` only jobs active since ``-S`` (default: today's midnight) until ``-E`` (now) are
listed, and only the caller's unless ``-a``, ``-u`` or the caller is root.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from crane_cli.cliparse import split_list
from crane_cli.errors import EXIT_OK, CliError

from crane_slurm import slurmfmt as sf
from crane_slurm.slurmopts import (
    IGNORE,
    LOCAL,
    NONE,
    OPTIONAL,
    REFUSE,
    Opt,
    OptionTable,
    failure,
    node_list,
    translate,
    usage,
)

PROG = "sacct"
DEFAULT_FIELDS = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"
BRIEF_FIELDS = "JobID,State,ExitCode"
LONG_FIELDS = ("JobID,JobIDRaw,JobName,Partition,MaxRSS,ReqMem,NCPUS,AllocCPUS,Elapsed,State,ExitCode,User,UID,"
               "Account,NNodes,NodeList,Submit,Start,End,Timelimit,QOS")

OPTIONS = (
    Opt("allusers", "a", NONE, LOCAL), Opt("accounts", "A", action=LOCAL), Opt("brief", "b", NONE, LOCAL),
    Opt("endtime", "E", action=LOCAL), Opt("starttime", "S", action=LOCAL), Opt("jobs", "j", action=LOCAL),
    Opt("noheader", "n", NONE, LOCAL), Opt("format", "o", action=LOCAL), Opt("parsable", "p", NONE, LOCAL),
    Opt("parsable2", "P", NONE, LOCAL), Opt("partition", "r", action=LOCAL), Opt("state", "s", action=LOCAL),
    Opt("user", "u", action=LOCAL), Opt("uid", action=LOCAL), Opt("allocations", "X", NONE, LOCAL),
    Opt("long", "l", NONE, LOCAL), Opt("nodelist", "N", action=LOCAL), Opt("name", action=LOCAL),
    Opt("qos", "q", action=LOCAL), Opt("delimiter", action=LOCAL), Opt("helpformat", "e", NONE, LOCAL),
    Opt("help", "h", NONE, LOCAL), Opt("usage", arg=NONE, action=LOCAL), Opt("verbose", "v", NONE, LOCAL),
    Opt("version", "V", NONE, LOCAL),
    Opt("allclusters", "L", NONE, IGNORE), Opt("duplicates", "D", NONE, IGNORE), Opt("truncate", "T", NONE, IGNORE),
    Opt("units", action=IGNORE), Opt("noconvert", arg=NONE, action=IGNORE), Opt("local", arg=NONE, action=IGNORE),
    Opt("array", arg=NONE, action=IGNORE), Opt("federation", arg=NONE, action=IGNORE),
    Opt("clusters", "M", action=REFUSE, why="one cluster"), Opt("completion", "c", NONE, REFUSE),
    Opt("wckeys", "W", action=REFUSE), Opt("reason", "R", action=REFUSE), Opt("timelimit-min", "k", action=REFUSE),
    Opt("timelimit-max", "K", action=REFUSE), Opt("minnodes", "i", action=REFUSE), Opt("maxnodes", "I",
                                                                                     action=REFUSE),
    Opt("group", "g", action=REFUSE), Opt("json", arg=OPTIONAL, action=REFUSE, why="use cacct --json"),
    Opt("yaml", arg=OPTIONAL, action=REFUSE), Opt("file", "f", action=REFUSE),
)
TABLE = OptionTable(PROG, OPTIONS)


def _is_step(r) -> bool:  # noqa: ANN001
    return hasattr(r, "display_id")


def _job_id(r) -> str:  # noqa: ANN001 - a JobInfo or cacct's StepRow
    job = r.job if _is_step(r) else r
    from crane_cli.arrayids import display_id

    base = display_id(job)
    if _is_step(r):
        return base + "." + r.display_id.split(".", 1)[1]
    return base


def _job_only(get: Callable[[object, float], str]) -> Callable[[object, float], str]:
    """A field Slurm leaves empty on step rows."""
    return lambda r, now: "" if _is_step(r) else get(r, now)


def _elapsed(r, now: float) -> float:  # noqa: ANN001
    if not r.start_time or r.start_time <= 0 or r.status == 0:
        return 0
    end = r.end_time if r.end_time > 0 else now
    return max(0, end - r.start_time)


def _user(r) -> str:  # noqa: ANN001
    return r.job.user if _is_step(r) else r.user


def _group(r) -> str:  # noqa: ANN001
    import grp

    gid = r.job.gid if _is_step(r) else r.gid
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _cpus(r) -> str:  # noqa: ANN001
    n = r.alloc_cpus
    return str(int(n)) if n == int(n) else f"{n:g}"


Getter = Callable[[object, float], str]

# Slurm's field name -> (width: negative = left-justified, value)
FIELDS: dict[str, tuple[int, Getter]] = {
    "JobID": (-12, lambda r, now: _job_id(r)),
    "JobIDRaw": (-12, lambda r, now: r.display_id if _is_step(r) else str(r.job_id)),
    "JobName": (10, lambda r, now: r.name),
    "Partition": (10, _job_only(lambda r, now: r.partition)),
    "Account": (10, lambda r, now: r.account),
    "AllocCPUS": (10, lambda r, now: _cpus(r)),
    "NCPUS": (10, lambda r, now: _cpus(r)),
    "ReqCPUS": (8, _job_only(lambda r, now: f"{r.req_cpus:g}")),
    "State": (10, lambda r, now: sf.state_name(r.status)),
    "ExitCode": (8, lambda r, now: sf.exit_code(r.exit_code) if r.status in (2, 3, 4, 5, 6, 11) else "0:0"),
    "User": (9, _job_only(lambda r, now: _user(r))),
    "UID": (6, _job_only(lambda r, now: str(r.uid))),
    "Group": (9, _job_only(lambda r, now: _group(r))),
    "GID": (6, _job_only(lambda r, now: str(r.gid))),
    "Submit": (19, lambda r, now: sf.timestamp(r.submit_time, "Unknown")),
    "Eligible": (19, _job_only(lambda r, now: sf.timestamp(r.submit_time, "Unknown"))),
    "Start": (19, lambda r, now: sf.timestamp(r.start_time, "Unknown")),
    "End": (19, lambda r, now: sf.timestamp(r.end_time, "Unknown")),
    "Elapsed": (10, lambda r, now: sf.sacct_duration(_elapsed(r, now))),
    "ElapsedRaw": (10, lambda r, now: str(int(_elapsed(r, now)))),
    "Timelimit": (10, _job_only(lambda r, now: "UNLIMITED" if not 0 < r.time_limit < sf.UNLIMITED_SECONDS
                                else sf.sacct_duration(r.time_limit))),
    "TimelimitRaw": (12, _job_only(lambda r, now: "UNLIMITED" if not 0 < r.time_limit < sf.UNLIMITED_SECONDS
                                   else str(r.time_limit // 60))),
    "NNodes": (8, lambda r, now: str(r.node_num)),
    "NodeList": (15, lambda r, now: r.craned_list or "None assigned"),
    "ReqMem": (10, _job_only(lambda r, now: sf.memory_mb(r.req_mem_per_node))),
    "MaxRSS": (10, lambda r, now: f"{r.usage_mem_peak >> 10}K" if _is_step(r) and r.usage_mem_peak else ""),
    "TotalCPU": (10, lambda r, now: sf.sacct_duration(r.usage_cpu_ms / 1000) if r.usage_cpu_ms else "00:00:00"),
    "CPUTime": (10, lambda r, now: sf.sacct_duration(_elapsed(r, now) * r.alloc_cpus)),
    "CPUTimeRAW": (10, lambda r, now: str(int(_elapsed(r, now) * r.alloc_cpus))),
    "QOS": (10, _job_only(lambda r, now: r.qos)),
    "Priority": (10, _job_only(lambda r, now: str(int(r.priority)))),
    "WorkDir": (-15, _job_only(lambda r, now: r.cwd)),
    "Comment": (-15, _job_only(lambda r, now: r.comment)),
    "Reason": (-20, _job_only(lambda r, now: sf.reason(r.pending_reason))),
    "Reservation": (20, _job_only(lambda r, now: r.reservation)),
    "Cluster": (10, lambda r, now: os.environ.get("CRANE_CLUSTER_NAME", "")),
    "AllocNodes": (10, lambda r, now: str(r.node_num) if r.start_time > 0 else "0"),
    "ReqNodes": (8, _job_only(lambda r, now: str(r.node_num))),
    "SubmitLine": (-20, _job_only(lambda r, now: r.cmd_line)),
    "ArrayJobID": (15, _job_only(lambda r, now: str(r.array_job_id) if r.array_job_id else "")),
    "ArrayTaskID": (11, _job_only(lambda r, now: str(r.array_task_id)
                                  if r.array_job_id and r.array_job_id != r.job_id else "")),
    "Constraints": (19, lambda r, now: ""),
}
_BY_LOWER = {name.lower(): name for name in FIELDS}


def parse_fields(spec: str) -> list[tuple[str, int]]:
    """``JobID,JobName%30`` -> [(Slurm's field name, width)] (a bad name is the usage error)."""
    out = []
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        name, pct, width = item.partition("%")
        canonical = _BY_LOWER.get(name.lower())
        if canonical is None:
            raise usage(PROG, f"Invalid field requested: \"{name}\"")
        if pct and not width.lstrip("-").isdigit():
            raise usage(PROG, f"Invalid field width: \"{item}\"")
        default = FIELDS[canonical][0]
        w = int(width) if pct else default
        if pct and default < 0 < w:
            w = -w  # a left-justified field stays left-justified
        out.append((canonical, w))
    if not out:
        raise usage(PROG, "No fields requested")
    return out


def cut(value: str, width: int) -> str:
    """A value in a field of ``|width|`` characters: cut with a ``+`` when longer (Slurm's way)."""
    n = abs(width)
    if len(value) > n:
        value = value[:n - 1] + "+" if n > 1 else value[:n]
    return value.ljust(n) if width < 0 else value.rjust(n)


def render(rows: list, fields: list[tuple[str, int]], header: bool, delimiter: str | None, trailing: bool,
           now: float) -> list[str]:
    """The output lines: fixed-width columns, or ``delimiter``-separated ones (``-P``/``-p``)."""
    out = []
    if delimiter is not None:
        end = delimiter if trailing else ""
        if header:
            out.append(delimiter.join(name for name, _w in fields) + end)
        for r in rows:
            out.append(delimiter.join(FIELDS[name][1](r, now) for name, _w in fields) + end)
        return out
    if header:
        out.append(" ".join(name[:abs(w)].rjust(abs(w)) for name, w in fields) + " ")
        out.append(" ".join("-" * abs(w) for _name, w in fields) + " ")
    for r in rows:
        out.append(" ".join(cut(FIELDS[name][1](r, now), w) for name, w in fields) + " ")
    return out


def _time(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    from crane_cli.timefmt import TimeFormatError, parse_time_expr

    try:
        return parse_time_expr(text.strip())
    except TimeFormatError as exc:
        raise usage(PROG, f"Invalid time for {flag}: {exc}") from None


def midnight(now: float) -> int:
    """Today's 00:00:00, local time (sacct's default start)."""
    t = time.localtime(now)
    return int(time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1)))


def build_request(parsed) -> tuple[dict, dict, tuple[int | None, int | None]]:  # noqa: ANN001
    """The ``QueryJobsInfoRequest`` fields, cacct's per-job step selection and the time window."""
    from crane_cli.cacct import parse_job_ids

    translate(PROG, parsed)
    jobs = split_list(parsed.values("jobs"))
    from crane_slurm.squeue import parse_job_ids as array_ids
    from crane_slurm.support import require_array_tasks

    _none, tasks = array_ids([j.split(".")[0] for j in jobs if "_" in j])
    require_array_tasks(PROG, tasks)
    try:
        ids, wanted = parse_job_ids([j for j in jobs if "_" not in j])
    except CliError as exc:
        raise usage(PROG, exc.message.split(": ", 1)[-1]) from None
    from crane_slurm.squeue import current_user, user_names

    users = user_names(parsed.values("user") + parsed.values("uid"))
    if not users and not ids and not tasks and not parsed.given("allusers") and os.getuid() != 0:
        users = [current_user()]
    nodes = node_list(PROG, parsed)
    states = sf.parse_states(PROG, parsed.values("state")) if parsed.given("state") else list(sf.SLURM_STATES)
    fields = {
        "job_ids": ids, "array_tasks": tasks, "users": users, "accounts": split_list(parsed.values("accounts")),
        "partitions": split_list(parsed.values("partition")), "qos": split_list(parsed.values("qos")),
        "names": split_list(parsed.values("name")), "states": states, "nodes": nodes,
        "include_history": True, "include_finished": True, "include_steps": not parsed.given("allocations"),
    }
    start = _time("-S", parsed.last("starttime"))
    end = _time("-E", parsed.last("endtime"))
    if start is None and not ids and not tasks:
        start = midnight(time.time())
    return fields, wanted, (start, end)


def in_window(job, window: tuple[int | None, int | None]) -> bool:  # noqa: ANN001
    """Was the job around between the window's start and end (submitted by the end, not ended before the start)?"""
    start, end = window
    if start is not None and 0 < job.end_time < start:
        return False
    return not (end is not None and job.submit_time > end)


def rows_for(jobs: list, wanted: dict, window: tuple[int | None, int | None], allocations: bool) -> list:
    """Job rows, each followed by its step rows (cacct's), inside the window."""
    from crane_cli.cacct import build_rows

    seen: set[int] = set()
    kept = []
    for j in jobs:
        if j.job_id not in seen and in_window(j, window):
            seen.add(j.job_id)
            kept.append(j)
    rows = build_rows(kept, wanted)
    return [r for r in rows if not (allocations and _is_step(r))]


def command(argv: list[str]) -> int:
    """sacct's body: the exit code (raises CliError on failure)."""
    parsed = TABLE.parse(argv, stop_at_positional=False)
    if parsed.given("helpformat"):
        names = list(FIELDS)
        print("\n".join(" ".join(f"{n:<20}" for n in names[i:i + 4]).rstrip() for i in range(0, len(names), 4)))
        return EXIT_OK
    if parsed.given("help") or parsed.given("usage"):
        sys.stdout.write("Usage: sacct [-a] [-A accounts] [-b] [-j jobs] [-n] [-o fields] [-p|-P] [-r partitions] "
                         "[-s states] [-S start] [-E end] [-u users] [-X]\n")
        return EXIT_OK
    if parsed.positional:
        raise usage(PROG, f"Unrecognized option: {parsed.positional[0]}")
    spec = parsed.last("format") or os.environ.get("SACCT_FORMAT") or (
        BRIEF_FIELDS if parsed.given("brief") else LONG_FIELDS if parsed.given("long") else DEFAULT_FIELDS)
    fields = parse_fields(spec)
    request_fields, wanted, window = build_request(parsed)
    delimiter = None
    if parsed.given("parsable") or parsed.given("parsable2"):
        delimiter = parsed.last("delimiter") or "|"
    from crane_cli import clientconf

    try:
        conf = clientconf.load(None)
        from crane_cli import rpc

        from crane_slurm.support import job_query

        with rpc.Controller(conf) as ctld:
            reply = ctld.call("QueryJobsInfo", job_query(rpc.pb, request_fields))
    except CliError as exc:
        raise failure(PROG, exc.message) from None
    if not reply.ok:
        raise failure(PROG, reply.reason or "the controller refused the query")
    jobs = sorted(reply.jobs, key=lambda j: j.job_id)
    rows = rows_for(jobs, wanted, window, parsed.given("allocations"))
    out = render(rows, fields, not parsed.given("noheader"), delimiter,
                 parsed.given("parsable") and not parsed.given("parsable2"), time.time())
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    return EXIT_OK
