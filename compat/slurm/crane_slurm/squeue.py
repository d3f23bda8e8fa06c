"""squeue: our job list (``QueryJobsInfo``) in Slurm's columns and state codes.

Default columns ``JOBID PARTITION NAME USER ST TIME NODES NODELIST(REASON)`` (Slurm's
``%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R``), ``-l`` its long form, ``-o/--format`` Slurm's
``%[.][width]X`` letters (:data:`FIELDS`), ``-O/--Format`` its ``name[:[.]width]`` list.
Without ``-t`` the pending, running, suspended, configuring and completing jobs are shown; with
``-j`` and no ``-t``, jobs in every state the controller still holds. ``-j`` naming only jobs
the controller does not know prints Slurm's ``slurm_load_jobs error: Invalid job id
specified`` and exits 1, as scripts polling a job expect.
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
    iterate_seconds,
    node_list,
    translate,
    usage,
)

PROG = "squeue"
DEFAULT_FORMAT = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"
LONG_FORMAT = "%.18i %.9P %.8j %.8u %.8T %.10M %.9l %.6D %R"
DEFAULT_STATES = (0, 1, 7, 8, 9, 10)
ENDED = (2, 3, 4, 5, 6, 11)

OPTIONS = (
    Opt("account", "A", action=LOCAL), Opt("all", "a", NONE, LOCAL), Opt("noheader", "h", NONE, LOCAL),
    Opt("help", arg=NONE, action=LOCAL), Opt("usage", arg=NONE, action=LOCAL), Opt("iterate", "i", action=LOCAL),
    Opt("jobs", "j", action=LOCAL), Opt("long", "l", NONE, LOCAL), Opt("name", "n", action=LOCAL),
    Opt("format", "o", action=LOCAL), Opt("Format", "O", action=LOCAL), Opt("partition", "p", action=LOCAL),
    Opt("qos", "q", action=LOCAL), Opt("reservation", "R", action=LOCAL), Opt("states", "t", action=LOCAL),
    Opt("user", "u", action=LOCAL), Opt("me", arg=NONE, action=LOCAL), Opt("nodelist", "w", action=LOCAL),
    Opt("verbose", "v", NONE, LOCAL), Opt("version", "V", NONE, LOCAL),
    Opt("noconvert", arg=NONE, action=IGNORE), Opt("array", "r", NONE, IGNORE, why="array tasks are listed one a line"),
    Opt("sort", "S", action=LOCAL), Opt("priority", "P", NONE, IGNORE),
    Opt("start", arg=NONE, action=IGNORE, why="no start-time estimates"), Opt("local", arg=NONE, action=IGNORE),
    Opt("federation", arg=NONE, action=IGNORE), Opt("hide", arg=NONE, action=IGNORE),
    Opt("array-unique", arg=NONE, action=IGNORE),
    Opt("clusters", "M", action=REFUSE, why="one cluster"), Opt("licenses", "L", action=REFUSE),
    Opt("steps", "s", OPTIONAL, REFUSE, why="use cqueue -s"),
    Opt("json", arg=OPTIONAL, action=REFUSE, why="use cqueue --json"),
    Opt("yaml", arg=OPTIONAL, action=REFUSE),
)
TABLE = OptionTable(PROG, OPTIONS)


def _elapsed(j, now: float) -> float:  # noqa: ANN001 - JobInfo
    """Seconds the job has run (0 while pending)."""
    if j.status == 0 or j.start_time <= 0:
        return 0
    if j.elapsed:
        return j.elapsed
    end = j.end_time if j.end_time > 0 else now
    return max(0, end - j.start_time - j.suspended_seconds)


def job_id(j) -> str:  # noqa: ANN001
    """Slurm's JOBID: ``<id>``, ``<array>_<task>`` for an array task, ``<id>_[<pending>]`` for an array's rest."""
    from crane_cli.arrayids import display_id

    return display_id(j)


def _is_task(j) -> bool:  # noqa: ANN001
    return bool(j.array_job_id) and j.array_job_id != j.job_id


def nodelist_reason(j) -> str:  # noqa: ANN001
    """``%R``: ``(<reason>)`` for a pending job, its nodes otherwise."""
    if j.status == 0:
        return f"({sf.reason(j.pending_reason)})"
    return j.craned_list or "(None)"


def _cpus(j) -> str:  # noqa: ANN001
    n = j.alloc_cpus if j.alloc_cpus > 0 else j.req_cpus
    return str(int(n)) if n == int(n) else f"{n:g}"


def _end(j) -> str:  # noqa: ANN001
    if j.end_time > 0:
        return sf.timestamp(j.end_time)
    if j.start_time > 0 and 0 < j.time_limit < sf.UNLIMITED_SECONDS:
        return sf.timestamp(j.start_time + j.suspended_seconds + j.time_limit)
    return "N/A"


def _left(j, now: float) -> str:  # noqa: ANN001
    if not 0 < j.time_limit < sf.UNLIMITED_SECONDS:
        return "UNLIMITED"
    return sf.squeue_time(max(0, j.time_limit - _elapsed(j, now)))


def _group(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _or_null(text: str) -> str:
    return text or "(null)"


Getter = Callable[[object, float], str]

# letter -> (header, value)
FIELDS: dict[str, tuple[str, Getter]] = {
    "i": ("JOBID", lambda j, now: job_id(j)),
    "A": ("JOBID", lambda j, now: str(j.job_id)),
    "F": ("ARRAY_JOB_ID", lambda j, now: str(j.array_job_id or j.job_id)),
    "K": ("ARRAY_TASK_ID", lambda j, now: str(j.array_task_id) if _is_task(j) else
          (j.array_pending or "N/A")),
    "j": ("NAME", lambda j, now: j.name),
    "u": ("USER", lambda j, now: j.user),
    "U": ("UID", lambda j, now: str(j.uid)),
    "g": ("GROUP", lambda j, now: _group(j.gid)),
    "G": ("GROUP", lambda j, now: str(j.gid)),
    "T": ("STATE", lambda j, now: sf.state_name(j.status)),
    "t": ("ST", lambda j, now: sf.state_code(j.status)),
    "M": ("TIME", lambda j, now: sf.squeue_time(_elapsed(j, now))),
    "l": ("TIME_LIMIT", lambda j, now: sf.squeue_limit(j.time_limit)),
    "L": ("TIME_LEFT", _left),
    "D": ("NODES", lambda j, now: str(j.node_num)),
    "C": ("CPUS", lambda j, now: _cpus(j)),
    "c": ("MIN_CPUS", lambda j, now: f"{(j.cpus_per_task or 1) * (j.ntasks_per_node or 1):g}"),
    "m": ("MIN_MEMORY", lambda j, now: sf.memory_mb(j.req_mem_per_node)),
    "R": ("NODELIST(REASON)", lambda j, now: nodelist_reason(j)),
    "r": ("REASON", lambda j, now: sf.reason(j.pending_reason) if j.status == 0 else "None"),
    "N": ("NODELIST", lambda j, now: j.craned_list),
    "B": ("EXEC_HOST", lambda j, now: (j.craned_list.split(",")[0] if j.craned_list else "n/a")),
    "P": ("PARTITION", lambda j, now: j.partition),
    "a": ("ACCOUNT", lambda j, now: j.account),
    "q": ("QOS", lambda j, now: j.qos),
    "V": ("SUBMIT_TIME", lambda j, now: sf.timestamp(j.submit_time)),
    "S": ("START_TIME", lambda j, now: sf.timestamp(j.start_time)),
    "e": ("END_TIME", lambda j, now: _end(j)),
    "Q": ("PRIORITY", lambda j, now: str(int(j.priority))),
    "p": ("PRIORITY", lambda j, now: f"{j.priority:.8f}"),
    "Z": ("WORK_DIR", lambda j, now: j.cwd),
    "o": ("COMMAND", lambda j, now: j.command or j.cmd_line),
    "k": ("COMMENT", lambda j, now: _or_null(j.comment)),
    "v": ("RESERVATION", lambda j, now: _or_null(j.reservation)),
    "E": ("DEPENDENCY", lambda j, now: _or_null(j.dependency)),
    "W": ("LICENSES", lambda j, now: _or_null(",".join(f"{k}:{v}" for k, v in sorted(j.licenses.items())))),
    "x": ("EXC_NODES", lambda j, now: j.exclude_nodes),
    "n": ("REQ_NODES", lambda j, now: j.req_nodes),
    "b": ("TRES_PER_NODE", lambda j, now: j.gres or "N/A"),
    "h": ("OVER_SUBSCRIBE", lambda j, now: "NO" if j.exclusive else "OK"),
    "y": ("NICE", lambda j, now: "0"),
    "w": ("WCKEY", lambda j, now: "(null)"),
    "f": ("FEATURES", lambda j, now: "(null)"),
    "O": ("CONTIGUOUS", lambda j, now: "0"),
    "z": ("S:C:T", lambda j, now: "*:*:*"),
    "Y": ("SCHEDNODES", lambda j, now: "(null)"),
    "d": ("MIN_TMP_DISK", lambda j, now: "0"),
}
HEADERS = {k: v[0] for k, v in FIELDS.items()}

# -O/--Format names (case-insensitive) -> letter
LONG_FIELDS = {
    "jobid": "i", "jobarrayid": "i", "arrayjobid": "F", "arraytaskid": "K", "name": "j", "username": "u",
    "userid": "U", "groupname": "g", "groupid": "G", "state": "T", "statecompact": "t", "timeused": "M",
    "timelimit": "l", "timeleft": "L", "numnodes": "D", "numcpus": "C", "mincpus": "c", "minmemory": "m",
    "reasonlist": "R", "reason": "r", "nodelist": "N", "batchhost": "B", "partition": "P", "account": "a",
    "qos": "q", "submittime": "V", "starttime": "S", "endtime": "e", "priority": "p", "prioritylong": "Q",
    "workdir": "Z", "command": "o", "comment": "k", "reservation": "v", "dependency": "E", "licenses": "W",
    "excnodes": "x", "reqnodes": "n", "tres-per-node": "b", "oversubscribe": "h", "nice": "y", "wckey": "w",
    "feature": "f", "contiguous": "O",
}


def parse_long_format(spec: str) -> tuple[list[str | sf.Spec], dict[str, str]]:
    """``-O jobid:10,name:.30,state`` -> a layout and its headers (default width 20, left-justified).

    The keys are ``<letter><position>`` (a field may be asked for twice); :func:`lines` reads the letter.
    """
    layout: list[str | sf.Spec] = []
    headers: dict[str, str] = {}
    for n, item in enumerate(p.strip() for p in spec.split(",")):
        if not item:
            continue
        name, _colon, size = item.partition(":")
        letter = LONG_FIELDS.get(name.lower())
        if letter is None:
            raise usage(PROG, f"Invalid job format specification: {name}")
        right = size.startswith(".")
        size = size.lstrip(".")
        if size and not size.isdigit():
            raise usage(PROG, f"Invalid job format specification: {item}")
        key = f"{letter}{n}"
        headers[key] = HEADERS[letter]  # Slurm titles a -O field as the -o letter it shows
        layout.append(sf.Spec(key, int(size) if size else 20, right))
    if not layout:
        raise usage(PROG, f"Invalid job format specification: {spec!r}")
    return layout, headers


def parse_job_ids(values: list[str]) -> tuple[list[int], list[tuple[int, int]]]:
    """``-j 1,2_3`` -> (job ids, (array id, task id) pairs); a bad id is the usage error."""
    ids: list[int] = []
    tasks: list[tuple[int, int]] = []
    for item in split_list(values):
        head, us, task = item.partition("_")
        if not head.isdigit() or not 0 < int(head) <= 0xFFFFFFFF or (us and not task.isdigit()):
            raise usage(PROG, f"Invalid job id: {item}")
        if us:
            tasks.append((int(head), int(task)))
        else:
            ids.append(int(head))
    return ids, tasks


def user_names(values: list[str]) -> list[str]:
    """``-u alice,1001`` -> user names (uids are looked up)."""
    import pwd

    out = []
    for item in split_list(values):
        if item.isdigit():
            try:
                item = pwd.getpwuid(int(item)).pw_name
            except KeyError:
                raise usage(PROG, f"Invalid user: {item}") from None
        out.append(item)
    return out


def current_user() -> str:
    """The caller's user name (``--me``)."""
    from crane_cli.cqueue import current_user as ours

    return ours()


def build_request(parsed) -> tuple[dict, bool]:  # noqa: ANN001 - Parsed
    """The ``QueryJobsInfoRequest`` fields for the options, and whether job ids were asked for."""
    translate(PROG, parsed)  # the refused and ignored options
    ids, tasks = parse_job_ids(parsed.values("jobs"))
    from crane_slurm.support import require_array_tasks

    require_array_tasks(PROG, tasks)
    asked_ids = bool(ids or tasks)
    states = sf.parse_states(PROG, parsed.values("states")) if parsed.given("states") else \
        list(sf.SLURM_STATES) if asked_ids else list(DEFAULT_STATES)
    nodes = node_list(PROG, parsed)
    users = user_names(parsed.values("user"))
    if parsed.given("me"):
        users.append(current_user())
    fields = {
        "job_ids": ids, "array_tasks": tasks, "names": split_list(parsed.values("name")), "users": users,
        "accounts": split_list(parsed.values("account")), "partitions": split_list(parsed.values("partition")),
        "qos": split_list(parsed.values("qos")), "reservations": split_list(parsed.values("reservation")),
        "states": states, "nodes": nodes, "include_finished": any(s in ENDED for s in states),
    }
    return fields, asked_ids


def layout_for(parsed) -> tuple[list[str | sf.Spec], dict[str, str]]:  # noqa: ANN001
    """The output layout: ``-O``, ``-o``, ``-l`` or the default; and its headers."""
    if parsed.given("Format"):
        return parse_long_format(parsed.last("Format") or "")
    fmt = parsed.last("format") or os.environ.get("SQUEUE_FORMAT") or (LONG_FORMAT if parsed.given("long")
                                                                       else DEFAULT_FORMAT)
    try:
        return sf.parse_format(fmt, FIELDS), HEADERS
    except ValueError as exc:
        raise usage(PROG, str(exc)) from None


DEFAULT_SORT = "P,t,-p"
"""Slurm's default order: partition, then state (pending first), then priority, highest first."""

# Slurm's job state numbers (its sort order) for ours: PENDING RUNNING SUSPENDED COMPLETE CANCELLED FAILED
# TIMEOUT ... DEADLINE OOM; configuring and completing are flags on RUNNING there
SLURM_STATE_ORDER = {0: 0, 1: 1, 7: 1, 8: 1, 9: 1, 10: 2, 2: 3, 5: 4, 3: 5, 4: 6, 11: 10, 6: 11}


def _id_key(j) -> tuple:  # noqa: ANN001
    return (j.array_job_id or j.job_id, j.array_task_id, j.job_id)


_SORT_KEYS: dict[str, Callable[[object, float], object]] = {
    "i": lambda j, now: _id_key(j), "A": lambda j, now: j.job_id, "F": lambda j, now: j.array_job_id or j.job_id,
    "K": lambda j, now: j.array_task_id, "t": lambda j, now: SLURM_STATE_ORDER.get(j.status, 99),
    "T": lambda j, now: SLURM_STATE_ORDER.get(j.status, 99), "p": lambda j, now: j.priority,
    "Q": lambda j, now: j.priority, "D": lambda j, now: j.node_num, "C": lambda j, now: j.alloc_cpus or j.req_cpus,
    "M": lambda j, now: _elapsed(j, now), "l": lambda j, now: j.time_limit, "U": lambda j, now: j.uid,
    "V": lambda j, now: j.submit_time, "S": lambda j, now: j.start_time, "m": lambda j, now: j.req_mem_per_node,
}


def sort_jobs(jobs: list, spec: str, now: float) -> list:
    """Jobs in ``-S`` order (``P,t,-p``: letters, ``-`` for decreasing), then by job id."""
    keys: list[tuple[str, bool]] = []
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        reverse = item.startswith("-")
        letter = item.lstrip("+-")
        if letter not in FIELDS or len(letter) != 1:
            raise usage(PROG, f"Invalid sort specification: {item}")
        keys.append((letter, reverse))
    out = sorted(jobs, key=_id_key)
    for letter, reverse in reversed(keys):  # stable sorts, the last key first
        get = _SORT_KEYS.get(letter) or FIELDS[letter][1]
        out.sort(key=lambda j, get=get: get(j, now), reverse=reverse)
    return out


def lines(jobs: list, layout: list, headers: dict[str, str] | None, now: float, sort: str = DEFAULT_SORT) -> list[str]:
    """The output lines for ``jobs`` in ``sort`` order (see :func:`sort_jobs`); an array's waiting tasks are one
    ``<id>_[...]`` row, an array's own record only while it has tasks to come (as squeue shows arrays)."""
    from crane_cli.arrayids import collapse_pending

    jobs = [j for j in collapse_pending(jobs) if not (j.array_job_id == j.job_id and not j.array_pending)]
    return sf.render(layout, headers, sort_jobs(jobs, sort, now), lambda j, key: FIELDS[key[0]][1](j, now))


def command(argv: list[str]) -> int:
    """squeue's body: the exit code (raises CliError on failure)."""
    parsed = TABLE.parse(argv, stop_at_positional=False)
    if parsed.given("help") or parsed.given("usage"):
        sys.stdout.write("Usage: squeue [-A account] [-j jobs] [-n name] [-o format] [-O fields] [-p partitions] "
                         "[-q qos] [-t states] [-u users] [--me] [-w nodes] [-h] [-l] [-i seconds]\n")
        return EXIT_OK
    if parsed.positional:
        raise usage(PROG, f"Unrecognized option: {parsed.positional[0]}")
    fields, asked_ids = build_request(parsed)
    layout, headers = layout_for(parsed)
    sort = parsed.last("sort") or DEFAULT_SORT
    sort_jobs([], sort, 0)  # check it before connecting
    iterate = iterate_seconds(PROG, parsed)
    from crane_cli import clientconf

    try:
        conf = clientconf.load(None)
        from crane_cli import rpc

        from crane_slurm.support import job_query

        request = job_query(rpc.pb, fields)
        with rpc.Controller(conf) as ctld:
            def report() -> list[str]:
                reply = ctld.call("QueryJobsInfo", request)
                if not reply.ok:
                    raise failure(PROG, reply.reason or "the controller refused the query")
                if asked_ids and not reply.jobs and not parsed.given("states"):
                    raise CliError("slurm_load_jobs error: Invalid job id specified", 1)
                return lines(list(reply.jobs), layout, None if parsed.given("noheader") else headers, time.time(),
                             sort)

            return sf.show_lines(report, iterate)
    except KeyboardInterrupt:
        return EXIT_OK
    except CliError as exc:
        if exc.message.startswith(("squeue:", "slurm_load_jobs")):
            raise
        raise failure(PROG, exc.message) from None
