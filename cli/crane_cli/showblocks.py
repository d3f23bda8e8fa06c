"""``ccontrol show job|node|partition``: upstream's multi-line blocks (cranesched-json.md §4.5, §4.6).

Jobs and nodes: a first line, then TAB-indented continuation lines, no blank line between
records; partitions: the same, each followed by an empty line. Memory prints as ``<MiB>M``
(``0`` for none), CPU counts with two decimals, times as local ``YYYY-MM-DD HH:MM:SS``
(``unknown`` before 1980). One addition to upstream's job block: ``ExitCode=`` ends its
``JobState`` line (Slurm's scontrol shows it; upstream does not).
"""

from __future__ import annotations

import grp
import time

from crane_cli.arrayids import display_id

_1980 = 315532800


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts >= _1980 else "unknown"


def _mem(nbytes: int) -> str:
    return f"{nbytes >> 20}M" if nbytes >= 1 << 20 else "0"


def _duration(seconds: int) -> str:
    days, rest = divmod(max(0, int(seconds)), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{days}-" if days else "") + f"{h:02d}:{m:02d}:{s:02d}"


def _limit(seconds: int) -> str:
    return "unlimited" if not seconds or seconds >= 315576000000 else _duration(seconds)


def _name_of(lookup: object, ident: int) -> str:
    try:
        return lookup(ident)[0]  # type: ignore[operator]
    except KeyError:
        return str(ident)


def _gres(text: str) -> str:
    return ", ".join(part for part in text.split(",") if part) or "None"


def job_block(j: object) -> str:
    """One job's block (``JobInfo``)."""
    from crane_common.states import format_exit_code

    from crane_cli.jobfields import state_name

    running = state_name(j.status) == "Running"  # type: ignore[attr-defined]
    ntasks = max(1, j.node_num * max(1, j.ntasks_per_node))  # type: ignore[attr-defined]
    cpu_per_task = j.cpus_per_task or (j.req_cpus / ntasks)  # type: ignore[attr-defined]
    gres = _gres(j.gres)  # type: ignore[attr-defined]
    lines = [
        f"JobId={display_id(j)} JobName={j.name}",  # type: ignore[attr-defined]
        f"\tUser={j.user}({j.uid}) GroupId={_name_of(grp.getgrgid, j.gid)}({j.gid}) "  # type: ignore[attr-defined]
        f"Account={j.account}",  # type: ignore[attr-defined]
        f"\tJobState={state_name(j.status)} RunTime={_duration(j.elapsed) if running else 'unknown'} "  # type: ignore
        f"TimeLimit={_limit(j.time_limit)} SubmitTime={_when(j.submit_time)} "  # type: ignore[attr-defined]
        f"ExitCode={format_exit_code(j.exit_code)}",  # type: ignore[attr-defined]
        f"\tStartTime={_when(j.start_time)} "  # type: ignore[attr-defined]
        f"EndTime={_when(j.end_time) if j.end_time >= j.start_time else 'unknown'} "  # type: ignore[attr-defined]
        f"Partition={j.partition} NodeList={j.craned_list or 'None'} "  # type: ignore[attr-defined]
        f"ExecutionHost={j.craned_list or 'None'}",  # type: ignore[attr-defined]
        f'\tCmdLine="{j.cmd_line}" Workdir={j.cwd}',  # type: ignore[attr-defined]
        f"\tPriority={int(j.priority)} Qos={j.qos} CpusPerTask={cpu_per_task:g} "  # type: ignore[attr-defined]
        f"MemPerNode={_mem(j.req_mem_per_node)}",  # type: ignore[attr-defined]
        f"\tReqRes:node={j.node_num} cpu={j.req_cpus:.2f} mem={_mem(j.req_mem_per_node)} gres={gres}",  # type: ignore
    ]
    if running:
        lines.append(f"\tAllocRes:node={j.node_num} cpu={j.alloc_cpus:.2f} "  # type: ignore[attr-defined]
                     f"mem={_mem(j.alloc_mem_per_node)} gres={gres}")  # type: ignore[attr-defined]
    lines += [
        f"\tReqNodeList={j.req_nodes or 'None'} ExcludeNodeList={j.exclude_nodes or 'None'}",  # type: ignore
        f"\tExclusive={'true' if j.exclusive else 'false'} Comment={j.comment} Wckey=",  # type: ignore[attr-defined]
    ]
    preempted = j.preempted_by  # type: ignore[attr-defined]
    if preempted:  # docs/preemption.md: the victim's reason, whatever its state, and who preempted it
        lines.append(f"\tReason={j.pending_reason or 'None'} PreemptedBy={preempted}")  # type: ignore[attr-defined]
    elif j.pending_reason and state_name(j.status) == "Pending":  # type: ignore[attr-defined]
        lines.append(f"\tReason={j.pending_reason}")  # type: ignore[attr-defined]
    lines.append(f"\tSubmitNode={j.submit_host}")  # type: ignore[attr-defined]
    return "\n".join(lines) + "\n"


def node_block(n: object) -> str:
    """One node's block (``CranedInfo``): ``State=idle(drain)[power_active]``."""
    state = n.resource_state.lower() + (f"({n.control_state.lower()})"  # type: ignore[attr-defined]
                                        if n.control_state and n.control_state != "none" else "")  # type: ignore
    free_cpu = max(0.0, n.cpu_total - n.cpu_alloc)  # type: ignore[attr-defined]
    return (f"NodeName={n.name} State={state}[power_active] CPU={n.cpu_total:.2f} "  # type: ignore[attr-defined]
            f"AllocCPU={n.cpu_alloc:.2f} FreeCPU={free_cpu:.2f}\n"  # type: ignore[attr-defined]
            f"\tRealMemory={_mem(n.mem_total)} AllocMem={_mem(n.mem_alloc)} "  # type: ignore[attr-defined]
            f"FreeMem={_mem(max(0, n.mem_total - n.mem_alloc))}\n"  # type: ignore[attr-defined]
            f"\tGres={_gres(n.gres_total)} AllocGres={_gres(n.gres_alloc)} FreeGres=None\n"  # type: ignore
            f"\tSockets=1\n"
            f"\tPartition={','.join(n.partitions)} RunningJob={n.running_jobs} Version=unknown\n"  # type: ignore
            f"\tOs=unknown\n\tBootTime=unknown CranedStartTime=unknown\n"
            f"\tLastBusyTime={_when(n.last_seen)}\n")  # type: ignore[attr-defined]


def partition_block(p: object, alive: int) -> str:
    """One partition's block (``PartitionInfo``; ``alive``: its nodes that are up), followed by an empty line."""
    from crane_common.hostlist import compress

    avail_cpu = max(0.0, p.cpu_total - p.cpu_alloc)  # type: ignore[attr-defined]
    return (f"PartitionName={p.name} State={p.state.upper()}\n"  # type: ignore[attr-defined]
            f"\tAllowedAccounts=ALL DeniedAccounts=None\n"
            f"\tTotalNodes={len(p.nodes)} AliveNodes={alive}\n"  # type: ignore[attr-defined]
            f"\tTotalCPU={p.cpu_total:.2f} AvailCPU={avail_cpu:.2f} AllocCPU={p.cpu_alloc:.2f}\n"  # type: ignore
            f"\tTotalMem={_mem(p.mem_total)} AvailMem={_mem(max(0, p.mem_total - p.mem_alloc))} "  # type: ignore
            f"AllocMem={_mem(p.mem_alloc)}\n"  # type: ignore[attr-defined]
            f"\tTotalGres=None AvailGres=None AllocGres=None\n"
            f"\tDefaultMemPerCPU={_mem(p.default_mem_per_cpu)} MaxMemPerCPU=0 DefaultMemPerNode=0 "  # type: ignore
            f"MaxMemPerNode=0\n"
            f"\tHostList={compress(list(p.nodes)) if p.nodes else 'None'}\n\n")  # type: ignore[attr-defined]

