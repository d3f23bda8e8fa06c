"""scontrol: ``show job|node|partition`` in Slurm's ``Key=Value`` blocks, and the job and node changes.

``show job [id]``, ``show node [name]``, ``show partition [name]`` print one block per entity,
each followed by a blank line (``-o/--oneliner``: one line each). ``hold|uhold|release <jobs>``,
``suspend|resume <jobs>`` and ``requeue|requeuehold <jobs>`` change jobs (``ModifyJob``,
``RequeueJob``); ``update JobId=<id> Key=Value...`` one ``ModifyJob`` per key, ``update
NodeName=<n> State=DRAIN|RESUME|DOWN [Reason=...]`` a ``ModifyNode``. Success is silent; a
refusal is ``slurm_update error: <reason>`` (exit 1), as Slurm prints it.
"""

from __future__ import annotations

import sys
import time

from crane_cli.errors import EXIT_OK, CliError

from crane_slurm import slurmfmt as sf
from crane_slurm.slurmopts import IGNORE, LOCAL, NONE, REFUSE, Opt, OptionTable, failure, translate, usage
from crane_slurm.support import task_refs

PROG = "scontrol"
FINAL = (2, 3, 4, 5, 6, 11)

OPTIONS = (
    Opt("oneliner", "o", NONE, LOCAL), Opt("details", "d", NONE, IGNORE), Opt("all", "a", NONE, LOCAL),
    Opt("quiet", "Q", NONE, LOCAL), Opt("verbose", "v", NONE, LOCAL), Opt("help", "h", NONE, LOCAL),
    Opt("usage", arg=NONE, action=LOCAL), Opt("version", "V", NONE, LOCAL), Opt("future", "F", NONE, IGNORE),
    Opt("hide", arg=NONE, action=IGNORE), Opt("local", arg=NONE, action=IGNORE),
    Opt("clusters", "M", action=REFUSE, why="one cluster"), Opt("json", arg=NONE, action=REFUSE,
                                                                 why="use ccontrol --json"),
    Opt("yaml", arg=NONE, action=REFUSE),
)
TABLE = OptionTable(PROG, OPTIONS)

# update JobId=... keys (lower case) -> (ModifyJob field, value converter name)
JOB_KEYS = {
    "timelimit": ("time_limit", "duration"), "priority": ("priority", "float"), "partition": ("partition", "str"),
    "qos": ("qos", "str"), "jobname": ("name", "str"), "name": ("name", "str"), "comment": ("comment", "str"),
    "account": ("account", "str"), "numnodes": ("node_num", "int"), "deadline": ("deadline", "time"),
    "starttime": ("begin_time", "time"), "begintime": ("begin_time", "time"), "reqnodelist": ("nodelist", "str"),
    "nodelist": ("nodelist", "str"), "licenses": ("licenses", "str"), "reservation": ("reservation", "str"),
    "mailuser": ("mail_user", "str"), "mailtype": ("mail_type", "str"),
    "arraytaskthrottle": ("array_max_concurrent", "int"),
}
VERBS = ("show", "hold", "uhold", "release", "suspend", "resume", "requeue", "requeuehold", "update")
NODE_STATES = {"drain": "drain", "resume": "resume", "undrain": "resume", "idle": "resume", "down": "down"}


def _user(uid: int, name: str = "") -> str:
    import pwd

    try:
        return f"{name or pwd.getpwuid(uid).pw_name}({uid})"
    except KeyError:
        return f"{name or uid}({uid})"


def _group(gid: int) -> str:
    import grp

    try:
        return f"{grp.getgrgid(gid).gr_name}({gid})"
    except KeyError:
        return f"{gid}({gid})"


def _limit(seconds: int) -> str:
    if seconds <= 0 or seconds >= sf.UNLIMITED_SECONDS:
        return "UNLIMITED"
    return sf.sacct_duration(seconds)


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"


def _null(text: str) -> str:
    return text or "(null)"


def job_block(j, now: float) -> list[str]:  # noqa: ANN001 - JobInfo
    """The lines of ``scontrol show job`` for one job (Slurm's keys and forms)."""
    from crane_slurm.squeue import _elapsed, _end

    head = f"JobId={j.job_id}"
    if j.array_job_id and j.array_job_id != j.job_id:
        head += f" ArrayJobId={j.array_job_id} ArrayTaskId={j.array_task_id}"
    elif j.array_pending:
        head += f" ArrayJobId={j.job_id} ArrayTaskId={j.array_pending}"
    running = j.status not in (0, *FINAL)
    reason = sf.reason(j.pending_reason) if j.status == 0 else "None"
    cpus = j.alloc_cpus if j.alloc_cpus > 0 else j.req_cpus
    ntasks = max(1, (j.ntasks_per_node or 1) * (j.node_num or 1))
    end = sf.timestamp(j.end_time, "Unknown") if j.end_time > 0 else (_end(j) if running else "Unknown")
    lines = [
        f"{head} JobName={j.name}",
        f"UserId={_user(j.uid, j.user)} GroupId={_group(j.gid)} MCS_label=N/A",
        f"Priority={int(j.priority)} Nice=0 Account={j.account} QOS={j.qos}",
        f"JobState={sf.state_name(j.status)} Reason={reason} Dependency={_null(j.dependency)}",
        f"Requeue=0 Restarts={j.requeue_count} BatchFlag={1 if j.type == 1 else 0} Reboot=0 "
        f"ExitCode={sf.exit_code(j.exit_code) if j.status in FINAL else '0:0'}",
        f"RunTime={sf.sacct_duration(_elapsed(j, now))} TimeLimit={_limit(j.time_limit)} TimeMin=N/A",
        f"SubmitTime={sf.timestamp(j.submit_time, 'Unknown')} EligibleTime={sf.timestamp(j.submit_time, 'Unknown')}",
        f"StartTime={sf.timestamp(j.start_time, 'Unknown')} EndTime={end if end != 'N/A' else 'Unknown'} "
        f"Deadline={sf.timestamp(j.deadline, 'N/A')}",
        f"SuspendTime=None SecsPreSuspend={j.suspended_seconds}",
        f"Partition={j.partition} AllocNode:Sid={j.submit_host or '(null)'}:0",
        f"ReqNodeList={_null(j.req_nodes)} ExcNodeList={_null(j.exclude_nodes)}",
        f"NodeList={_null(j.craned_list)}",
    ]
    if running and j.craned_list:
        from crane_common import hostlist

        lines.append(f"BatchHost={hostlist.expand(j.craned_list)[0]}")
    mem = sf.memory_mb(j.req_mem_per_node)
    lines += [
        f"NumNodes={j.node_num} NumCPUs={_num(cpus)} NumTasks={ntasks} CPUs/Task={_num(j.cpus_per_task or 1)} "
        "ReqB:S:C:T=0:0:*:*",
        f"TRES=cpu={_num(cpus)},mem={mem},node={j.node_num}" + (f",gres/{j.gres}" if j.gres else ""),
        f"MinCPUsNode={_num((j.cpus_per_task or 1) * (j.ntasks_per_node or 1))} MinMemoryNode={mem} MinTmpDiskNode=0",
        "Features=(null) DelayBoot=00:00:00",
        f"OverSubscribe={'NO' if j.exclusive else 'OK'} Contiguous=0 "
        f"Licenses={_null(','.join(f'{k}:{v}' for k, v in sorted(j.licenses.items())))} Network=(null)",
    ]
    if j.reservation:
        lines.append(f"Reservation={j.reservation}")
    lines += [f"Command={_null(j.command or j.cmd_line)}", f"WorkDir={j.cwd}"]
    if j.type == 1:
        out = output_path(j, j.stdout_path or DEFAULT_OUTPUT)
        lines += [f"StdErr={output_path(j, j.stderr_path) if j.stderr_path else out}", "StdIn=/dev/null",
                  f"StdOut={out}"]
    if j.comment:
        lines.append(f"Comment={j.comment}")
    lines.append("Power=")
    return lines


DEFAULT_OUTPUT = "Crane-%j.out"  # what a node writes to when a job names no output file


def output_path(j, pattern: str) -> str:  # noqa: ANN001 - JobInfo
    """An output file pattern as the job's node resolves it (``%j %x %u %%``, relative to the job's cwd)."""
    import os

    from crane_cli.crunio import expand_pattern

    path = expand_pattern(pattern, j.job_id, 0, j.user, j.name, None)
    return path if os.path.isabs(path) or not j.cwd else os.path.join(j.cwd, path)


def node_state(node) -> str:  # noqa: ANN001 - CranedInfo
    """``scontrol show node``'s State: ``IDLE``, ``MIXED``, ``ALLOCATED``, ``DOWN``, with ``+DRAIN``."""
    base = {"idle": "IDLE", "mix": "MIXED", "alloc": "ALLOCATED", "down": "DOWN"}.get(
        (node.resource_state or "").lower(), "UNKNOWN")
    return base + ("+DRAIN" if (node.control_state or "").lower() == "drain" else "")


def node_block(n) -> list[str]:  # noqa: ANN001 - CranedInfo
    """The lines of ``scontrol show node`` for one node."""
    mem, alloc = n.mem_total >> 20, n.mem_alloc >> 20
    lines = [
        f"NodeName={n.name} Arch=x86_64 CoresPerSocket=1",
        f"CPUAlloc={_num(n.cpu_alloc)} CPUTot={_num(n.cpu_total)} CPULoad=N/A",
        "AvailableFeatures=(null)",
        "ActiveFeatures=(null)",
        f"Gres={_null(n.gres_total)}",
        f"NodeAddr={n.name} NodeHostName={n.name}",
        f"RealMemory={mem} AllocMem={alloc} FreeMem=N/A Sockets={_num(n.cpu_total)} Boards=1",
        f"State={node_state(n)} ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A",
        f"Partitions={','.join(n.partitions)}",
        "BootTime=None SlurmdStartTime=None",
        f"LastBusyTime={sf.timestamp(n.last_seen, 'Unknown')}",
        f"CfgTRES=cpu={_num(n.cpu_total)},mem={sf.memory_mb(n.mem_total)},billing={_num(n.cpu_total)}",
        "AllocTRES=" + (f"cpu={_num(n.cpu_alloc)},mem={sf.memory_mb(n.mem_alloc)}" if n.cpu_alloc else ""),
        "CapWatts=n/a",
        "CurrentWatts=0 AveWatts=0",
        "ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s",
    ]
    if n.reason:
        lines.append(f"Reason={n.reason}")
    return lines


def partition_block(p, nodes: dict) -> list[str]:  # noqa: ANN001 - PartitionInfo, {name: CranedInfo}
    """The lines of ``scontrol show partition`` for one partition."""
    from crane_common import hostlist

    cpus = sum(nodes[n].cpu_total for n in p.nodes if n in nodes) or p.cpu_total
    return [
        f"PartitionName={p.name}",
        "AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL",
        f"AllocNodes=ALL Default={'YES' if p.is_default else 'NO'} QoS=N/A",
        "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO",
        f"MaxNodes=UNLIMITED MaxTime={_limit(p.max_time_limit)} MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED",
        f"Nodes={hostlist.compress(list(p.nodes)) if p.nodes else '(null)'}",
        f"PriorityJobFactor=1 PriorityTier={p.priority or 1} RootOnly=NO ReqResv=NO OverSubscribe=NO",
        "OverTimeLimit=NONE PreemptMode=OFF",
        f"State={(p.state or 'unknown').upper()} TotalCPUs={_num(cpus)} TotalNodes={len(p.nodes)} "
        "SelectTypeParameters=NONE",
        "JobDefaults=(null)",
        f"DefMemPerCPU={p.default_mem_per_cpu >> 20 if p.default_mem_per_cpu else 'UNLIMITED'} "
        "MaxMemPerNode=UNLIMITED",
    ]


def format_blocks(blocks: list[list[str]], oneliner: bool) -> str:
    """Blocks as Slurm prints them: the first line flush, the rest indented 3, a blank line after each."""
    if oneliner:
        return "".join(" ".join(b) + "\n" for b in blocks)
    return "".join(b[0] + "\n" + "".join(f"   {line}\n" for line in b[1:]) + "\n" for b in blocks)


def parse_job_list(words: list[str]) -> tuple[list[int], list[tuple[int, int]]]:
    """``1,2 3_4`` -> (job ids, array tasks); a bad id is the usage error."""
    from crane_slurm.squeue import parse_job_ids
    from crane_slurm.support import require_array_tasks

    try:
        ids, tasks = parse_job_ids(list(words))
    except CliError as exc:
        raise usage(PROG, exc.message.split("error: ", 1)[-1]) from None
    require_array_tasks(PROG, tasks)
    return ids, tasks


def _show(ctld, pb, words: list[str], oneliner: bool) -> int:  # noqa: ANN001
    if not words:
        raise usage(PROG, "show: which entity? (job, node, partition)")
    entity, name = words[0].lower(), (words[1] if len(words) > 1 else None)
    if entity in ("job", "jobs"):
        ids, tasks = parse_job_list([name]) if name else ([], [])
        reply = ctld.call("QueryJobsInfo", pb.QueryJobsInfoRequest(
            job_ids=ids, array_tasks=task_refs(pb, tasks),
            include_finished=True, states=list(sf.SLURM_STATES)))
        if not reply.jobs:
            if name:
                raise CliError("slurm_load_jobs error: Invalid job id specified", 1)
            print("No jobs in the system")
            return EXIT_OK
        now = time.time()
        jobs = sorted(reply.jobs, key=lambda j: j.job_id)
        sys.stdout.write(format_blocks([job_block(j, now) for j in jobs], oneliner))
        return EXIT_OK
    if entity in ("node", "nodes"):
        reply = ctld.call("QueryCranedInfo", pb.QueryCranedInfoRequest(names=[name] if name else []))
        if not reply.nodes:
            if name:
                raise CliError(f"Node {name} not found", 1)
            print("No nodes in the system")
            return EXIT_OK
        sys.stdout.write(format_blocks([node_block(n) for n in reply.nodes], oneliner))
        return EXIT_OK
    if entity in ("partition", "partitions"):
        part_reply, node_reply = ctld.call_many([
            ("QueryPartitionInfo", pb.QueryPartitionInfoRequest(names=[name] if name else [])),
            ("QueryCranedInfo", pb.QueryCranedInfoRequest())])
        if not part_reply.partitions:
            if name:
                raise CliError(f"Partition {name} not found", 1)
            print("No partitions in the system")
            return EXIT_OK
        nodes = {n.name: n for n in node_reply.nodes}
        sys.stdout.write(format_blocks([partition_block(p, nodes) for p in part_reply.partitions], oneliner))
        return EXIT_OK
    raise usage(PROG, f"show {entity}: not supported by this cluster (job, node, partition)")


def _convert(key: str, kind: str, value: str) -> object:
    from crane_common.units import parse_duration

    try:
        if kind == "duration":
            return parse_duration(value)
        if kind == "float":
            return float(value)
        if kind == "int":
            return int(value)
        if kind == "time":
            from crane_cli.timefmt import parse_time_expr

            return 0 if value.lower() in ("none", "n/a", "") else parse_time_expr(value)
    except ValueError as exc:
        raise usage(PROG, f"Invalid {key} value: {value} ({exc})") from None
    return value


def job_changes(pairs: list[str]) -> tuple[list[int], list[tuple[int, int]], list[tuple[str, object]]]:
    """``update JobId=1 TimeLimit=10 ...`` -> (ids, array tasks, [(ModifyJob field, value)])."""
    ids: list[int] = []
    tasks: list[tuple[int, int]] = []
    changes: list[tuple[str, object]] = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise usage(PROG, f"Invalid input: {pair}  Request aborted")
        lkey = key.lower()
        if lkey in ("jobid", "job"):
            more_ids, more_tasks = parse_job_list([value])
            ids += more_ids
            tasks += more_tasks
            continue
        entry = JOB_KEYS.get(lkey)
        if entry is None:
            raise usage(PROG, f"Update of {key} is not supported by this cluster")
        changes.append((entry[0], _convert(key, entry[1], value)))
    if not ids and not tasks:
        raise usage(PROG, "No job id specified (update JobId=<id> Key=Value ...)")
    if not changes:
        raise usage(PROG, "No changes specified")
    return ids, tasks, changes


def _modify(ctld, pb, ids: list[int], tasks: list[tuple[int, int]], **change: object) -> list[str]:  # noqa: ANN001
    """One ``ModifyJob``; the refusal lines (empty when every job was changed)."""
    reply = ctld.call("ModifyJob", pb.ModifyJobRequest(
        job_ids=ids, array_tasks=task_refs(pb, tasks), **change))
    return [f"slurm_update error: {(reply.reasons[i] if i < len(reply.reasons) else 'refused').rstrip('.')} "
            f"(job {job_id})" for i, job_id in enumerate(reply.not_modified)]


def _requeue(ctld, pb, ids: list[int], tasks: list[tuple[int, int]], hold: bool) -> list[str]:  # noqa: ANN001
    from crane_cli import rpc

    rpc.REPLIES.setdefault("RequeueJob", pb.RequeueJobReply)  # older crane_cli releases do not list it
    reply = ctld.call("RequeueJob", pb.RequeueJobRequest(
        job_ids=ids, array_tasks=task_refs(pb, tasks), hold=hold))
    return [f"slurm_requeue error: {why.rstrip('.')} (job {job_id})"
            for job_id, why in sorted(reply.not_requeued_jobs.items())]


def _update_node(ctld, pb, pairs: list[str]) -> list[str]:  # noqa: ANN001
    fields: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise usage(PROG, f"Invalid input: {pair}  Request aborted")
        fields[key.lower()] = value
    from crane_common import hostlist

    names = hostlist.expand(fields.pop("nodename", ""))
    state = NODE_STATES.get(fields.pop("state", "").lower())
    reason = fields.pop("reason", "")
    if fields:
        raise usage(PROG, f"Update of {', '.join(fields)} is not supported by this cluster (State, Reason)")
    if not names or state is None:
        raise usage(PROG, "update NodeName=<nodes> State=DRAIN|RESUME|DOWN [Reason=...]")
    if state in ("drain", "down") and not reason:
        raise usage(PROG, "You must specify a reason when DOWNING or DRAINING a node. Request denied")
    reply = ctld.call("ModifyNode", pb.ModifyNodeRequest(names=names, state=state, reason=reason))
    return [f"slurm_update error: {(reply.reasons[i] if i < len(reply.reasons) else 'refused').rstrip('.')} "
            f"(node {name})" for i, name in enumerate(reply.not_modified)]


def run_words(ctld, pb, words: list[str], oneliner: bool) -> int:  # noqa: ANN001
    """Carry out one scontrol command line (the words after the options)."""
    verb, rest = words[0].lower(), words[1:]
    if verb == "show":
        return _show(ctld, pb, rest, oneliner)
    if verb in ("hold", "uhold", "release", "suspend", "resume", "requeue", "requeuehold"):
        if not rest:
            raise usage(PROG, f"{verb}: a job list is required")
        if verb.startswith("requeue") and rest[0].lower().startswith("state="):
            raise usage(PROG, "requeue State=...: not supported by this cluster")
        ids, tasks = parse_job_list(rest)
        if verb in ("hold", "uhold", "release"):
            errors = _modify(ctld, pb, ids, tasks, hold=verb != "release")
        elif verb in ("suspend", "resume"):
            errors = _modify(ctld, pb, ids, tasks, suspend=verb == "suspend")
        else:
            errors = _requeue(ctld, pb, ids, tasks, hold=verb == "requeuehold")
    elif verb == "update":
        if rest and rest[0].lower().startswith(("nodename=", "node=")):
            errors = _update_node(ctld, pb, [r if not r.lower().startswith("node=") else "NodeName=" + r[5:]
                                             for r in rest])
        else:
            ids, tasks, changes = job_changes(rest)
            errors = []
            for field, value in changes:
                errors += _modify(ctld, pb, ids, tasks, **{field: value})
    else:
        raise usage(PROG, f"{verb}: not supported by this cluster ({', '.join(VERBS)})")
    for line in errors:
        sys.stderr.write(line + "\n")
    return 1 if errors else EXIT_OK


def command(argv: list[str]) -> int:
    """scontrol's body: the exit code (raises CliError on failure)."""
    parsed = TABLE.parse(argv, stop_at_positional=True)
    if parsed.given("help") or parsed.given("usage") or not parsed.positional:
        if not parsed.positional and not (parsed.given("help") or parsed.given("usage")):
            raise usage(PROG, "interactive mode is not supported by this cluster: give a command")
        sys.stdout.write("Usage: scontrol [-o] show job|node|partition [id] | hold|uhold|release|suspend|resume|"
                         "requeue|requeuehold <jobs> | update JobId=<id> K=V... | update NodeName=<n> State=...\n")
        return EXIT_OK
    translate(PROG, parsed)
    if parsed.positional[0].lower() not in VERBS:
        raise usage(PROG, f"{parsed.positional[0]}: not supported by this cluster ({', '.join(VERBS)})")
    from crane_cli import clientconf

    try:
        conf = clientconf.load(None)
        from crane_cli import rpc

        with rpc.Controller(conf) as ctld:
            return run_words(ctld, rpc.pb, parsed.positional, parsed.given("oneliner"))
    except CliError as exc:
        if exc.message.startswith(("scontrol:", "slurm_", "Node ", "Partition ")):
            raise
        raise failure(PROG, exc.message) from None
