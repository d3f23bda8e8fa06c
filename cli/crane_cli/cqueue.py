"""cqueue: list pending and running jobs.

Filters go to the controller (``QueryJobsInfo``); the reply is sorted by job id, cut
to ``--max-lines`` and shown as a table (default, ``--full`` or ``--format``
columns, see :mod:`crane_cli.jobfields`) or as JSON.
"""

from __future__ import annotations

import sys
import time
from typing import NoReturn

from crane_cli.cliparse import Command, Option, common_options, parse, run, split_list
from crane_cli.errors import EXIT_BACKEND, EXIT_FORMAT, EXIT_OK, CliError, arg_error

DEFAULT_MAX_LINES = 1000

# -t values -> JobStatus numbers. "running" covers the states around running
# (Configuring, Starting, Completing); each is shown under its own name.
PENDING_STATES = (0,)
RUNNING_STATES = (1, 7, 8, 9)
SUSPENDED_STATES = (10,)
# "all" also lists the ended jobs the controller still holds (Completed, Failed, ExceedTimeLimit,
# Cancelled, OutOfMemory, Deadline; the request then has include_finished); older ones: cacct.
ENDED_STATES = (2, 3, 4, 5, 6, 11)
STATE_FILTERS = {
    "pending": PENDING_STATES, "p": PENDING_STATES,
    "running": RUNNING_STATES, "r": RUNNING_STATES,
    "suspended": SUSPENDED_STATES, "s": SUSPENDED_STATES,
    "all": PENDING_STATES + RUNNING_STATES + SUSPENDED_STATES + ENDED_STATES,
    # Slurm's abbreviations (squeue -t PD,R): scripts written for Slurm keep working
    "pd": PENDING_STATES, "cf": (7,), "cg": (9,),
}
DEFAULT_STATES = PENDING_STATES + RUNNING_STATES
TYPE_FILTERS = {"interactive": 0, "i": 0, "batch": 1, "b": 1, "container": 2, "c": 2}


def build_command() -> Command:
    """cqueue's flags."""
    return Command("cqueue", help="Display the jobs in the scheduling queue.", params=[
        Option("-j", "--job", multiple=True, help="job ids (comma-separated)"),
        Option("-n", "--name", multiple=True, help="job names (comma-separated)"),
        Option("-u", "--user", multiple=True, group="user", help="users (comma-separated)"),
        Option("--self", flag=True, default=False, group="user", help="only the jobs of the current user"),
        Option("-A", "--account", multiple=True, help="accounts (comma-separated)"),
        Option("-p", "--partition", multiple=True, help="partitions (comma-separated)"),
        Option("-q", "--qos", multiple=True, help="QoS (comma-separated)"),
        Option("-t", "--state", multiple=True,
               help="pending(p), running(r), suspended(s) or all (also recently ended jobs; default: "
                    "pending and running); Slurm's PD, R, S, CF, CG too"),
        Option("--type", multiple=True, help="job types: Interactive, Batch, Container (i, b, c)"),
        Option("-w", "--nodelist", multiple=True, help="nodes (host list, e.g. cn[01-04])"),
        Option("-S", "--start", flag=True, default=False, help="add the StartTime column"),
        Option("--deadline", flag=True, default=False, help="add the Deadline column"),
        Option("-L", "--licenses", flag=True, default=False, help="add the Licenses column"),
        Option("-N", "--noheader", flag=True, default=False, help="do not print the header line"),
        Option("-F", "--full", flag=True, default=False, help="all columns, cells not shortened"),
        Option("-i", "--iterate", metavar="SECONDS", help="repeat every SECONDS seconds"),
        Option("-m", "--max-lines", metavar="N", help=f"show at most N jobs (default {DEFAULT_MAX_LINES})"),
        Option("-o", "--format", help="output format: %[.][width]spec items, e.g. '%.8j %20n %t'"),
        Option("-s", "--step", is_flag=False, flag_value="", metavar="[IDS]",
               help="show steps (of these jobs, or these <job>.<step> ids; a bare -s: every step)"),
        *common_options(),
    ])


def parse_job_ids(values: list[str] | None) -> tuple[list[int], list[tuple[int, int]]]:
    """``-j 1,2 -j 3_4`` -> ``([1, 2], [(3, 4)])``: job (or whole array) ids, and array tasks."""
    from crane_cli.arrayids import parse_refs

    return parse_refs(values, "cqueue")


def parse_states(values: list[str] | None) -> list[int]:
    """``-t`` values -> JobStatus numbers (default: pending and running)."""
    items = split_list(values)
    if not items:
        return list(DEFAULT_STATES)
    out: list[int] = []
    for item in items:
        states = STATE_FILTERS.get(item.lower())
        if states is None:
            raise arg_error(f"cqueue: invalid state {item!r}: expected pending(p), running(r), suspended(s) or all")
        out.extend(s for s in states if s not in out)
    return out


def parse_types(values: list[str] | None, prog: str = "cqueue") -> set[int] | None:
    """``--type`` values -> JobType numbers, or None for no filter."""
    items = split_list(values)
    if not items:
        return None
    out = set()
    for item in items:
        t = TYPE_FILTERS.get(item.lower())
        if t is None:
            raise arg_error(f"{prog}: invalid job type {item!r}: expected Interactive, Batch or Container")
        out.add(t)
    return out


def parse_positive(flag: str, value: str | None, default: int | None) -> int | None:
    """A positive integer option (``-m``, ``-i``); an explicit 0 is rejected."""
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise arg_error(f"cqueue: invalid {flag} {value!r}: expected a positive integer") from None
    if n <= 0:
        raise arg_error(f"cqueue: invalid {flag} {value!r}: must be greater than 0")
    return n


def current_user() -> str:
    """The name of the calling user (its uid when it has no name)."""
    import os
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def build_request_fields(args) -> dict:  # noqa: ANN001 - parsed values (crane_cli.cliparse.parse)
    """The ``QueryJobsInfoRequest`` fields for the parsed arguments (validates them)."""
    nodes: list[str] = []
    if args.nodelist:
        from crane_common import hostlist

        try:
            nodes = hostlist.expand(args.nodelist)
        except ValueError as exc:
            raise arg_error(f"cqueue: -w/--nodelist: {exc}") from None
    states = parse_states(args.state)
    ids, tasks = parse_job_ids(args.job)
    from crane_cli import rpc

    return {
        "job_ids": ids,
        "array_tasks": [rpc.pb.ArrayTaskRef(array_job_id=a, task_id=t) for a, t in tasks],
        "names": split_list(args.name),
        "users": [current_user()] if args.self else split_list(args.user),
        "accounts": split_list(args.account),
        "partitions": split_list(args.partition),
        "qos": split_list(args.qos),
        "states": states,
        "nodes": nodes,
        "include_finished": any(s in ENDED_STATES for s in states),
    }


def render(jobs: list, args, layout, now: float) -> str:  # noqa: ANN001
    """The table text for ``jobs`` (already sorted and cut)."""
    from crane_cli import table

    if layout is not None:
        items = [x for x in layout if not isinstance(x, str)]
        headers = None if args.noheader else [x.field.header for x in items]
        rows = [[x.field.get(j, now) for x in items] for j in jobs]
        return table.render_format(layout, headers, rows, full=args.full)
    from crane_cli import jobfields

    cols = jobfields.columns(args.full, start=args.start, qos=bool(args.qos), deadline=args.deadline,
                             licenses=args.licenses)
    headers = None if args.noheader else [c.header for c in cols]
    getters = [c.get for c in cols]
    rows = [[g(j, now) for g in getters] for j in jobs]
    return table.render_table(headers, rows, full=args.full)


def command(argv: list[str]) -> int:
    """cqueue's body: returns the exit code, raises CliError on failure."""
    args = parse(build_command(), argv)
    fields = build_request_fields(args)
    types = parse_types(args.type)
    max_lines = parse_positive("-m/--max-lines", args.max_lines, DEFAULT_MAX_LINES)
    iterate = parse_positive("-i/--iterate", args.iterate, None)
    layout = None
    if args.format is not None:
        from crane_cli.fmtspec import FormatSpecError, parse_format
        from crane_cli.jobfields import resolve

        try:
            layout = parse_format(args.format, resolve)
        except FormatSpecError as exc:
            raise CliError(f"cqueue: {exc}", EXIT_FORMAT) from None
    wanted = None
    if args.step is not None:
        if layout is not None:
            raise arg_error("cqueue: -o/--format cannot be combined with -s/--step")
        from crane_cli.steps import parse_selection

        step_ids, wanted = parse_selection(split_list([args.step]), "cqueue")
        if step_ids:
            common = [i for i in fields["job_ids"] if i in step_ids] if fields["job_ids"] else step_ids
            if not common:  # -j and -s select no common job: nothing to ask for
                if not args.json and not args.noheader:
                    from crane_cli.steps import STEP_HEADERS

                    print(" ".join(STEP_HEADERS))
                return EXIT_OK if not args.json else _empty_json()
            fields["job_ids"] = common
        fields["include_steps"] = True
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    from crane_cli import rpc

    request = rpc.pb.QueryJobsInfoRequest(max_lines=max_lines, **fields)
    if wanted is not None:
        with rpc.Controller(conf) as ctld:
            return show_steps(ctld.call("QueryJobsInfo", request), args, wanted, set(fields["states"]))
    with rpc.Controller(conf) as ctld:
        if iterate is None:
            return show(ctld.call("QueryJobsInfo", request), args, layout, types, max_lines, False)
        try:
            while True:
                show(ctld.call("QueryJobsInfo", request), args, layout, types, max_lines, True)
                sys.stdout.write("\n")
                sys.stdout.flush()
                time.sleep(iterate)
        except KeyboardInterrupt:
            return EXIT_OK


def show(reply, args, layout, types: set[int] | None, max_lines: int | None, stamp: bool) -> int:  # noqa: ANN001
    """Print one reply (table or JSON); return the exit code."""
    if args.json:
        return show_json(reply, types, max_lines, stamp)
    if not reply.ok:
        raise CliError(f"cqueue: {reply.reason or 'the controller refused the query'}", EXIT_BACKEND)
    jobs = [j for j in reply.jobs if types is None or j.type in types]
    if not args.json:
        from crane_cli.arrayids import collapse_pending

        jobs = collapse_pending(jobs)
    jobs.sort(key=lambda j: j.job_id)
    if max_lines is not None:
        del jobs[max_lines:]
    out = []
    if stamp:
        out.append(time.strftime("%a %b %d %H:%M:%S %Y"))
    text = render(jobs, args, layout, time.time())
    if text:
        out.append(text)
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    return EXIT_OK


def show_json(reply, types: set[int] | None, max_lines: int | None, stamp: bool) -> int:  # noqa: ANN001
    """``--json``: upstream's ``QueryJobsInfoReply`` (the jobs as the controller sent them, ``--type`` and
    ``-m`` applied); with ``-i`` after a line with the local time. Not ok: ``JSON output failed``, exit 4."""
    from crane_cli import upjson

    jobs = [j for j in reply.jobs if types is None or j.type in types]
    if max_lines is not None:
        del jobs[max_lines:]
    if stamp:
        print(time.strftime("%Y-%m-%d %H:%M:%S"))
    print(upjson.dumps(upjson.query_jobs_info_reply(reply, jobs)))
    if not reply.ok:
        raise CliError("JSON output failed", EXIT_BACKEND)
    return EXIT_OK


def _empty_json() -> int:
    """``--json`` for a selection that matches no job: an empty ok reply."""
    from crane_cli import rpc
    from crane_cli.protojson import to_json

    print(to_json(rpc.pb.QueryJobsInfoReply(ok=True)))
    return EXIT_OK


def show_steps(reply, args, wanted: dict, states: set[int]) -> int:  # noqa: ANN001
    """The step view (``-s``): one row per step of the selected jobs, or the reply as JSON."""
    if args.json:
        return show_json(reply, None, None, False)
    if not reply.ok:
        raise CliError(f"cqueue: {reply.reason or 'the controller refused the query'}", EXIT_BACKEND)
    from crane_cli import steps, table

    now = time.time()
    rows = [steps.step_row(job, step, now) for job, step in steps.select_steps(list(reply.jobs), wanted, states)]
    text = table.render_table(None if args.noheader else list(steps.STEP_HEADERS), rows, full=args.full)
    if text:
        sys.stdout.write(text + "\n")
    return EXIT_OK


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="cqueue")
