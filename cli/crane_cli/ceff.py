"""ceff: CPU and memory efficiency of jobs (seff-like), from the controller and its accounting store.

``ceff <jobid>[,<jobid>...]`` asks ``QueryJobsInfo`` with ``include_history`` for the jobs and
prints, per job, upstream's lines (``JobId:`` ... ``Memory Efficiency:``), jobs separated by an
empty line; ``--json`` prints upstream's array of objects (keys in upstream's order).

* CPU Efficiency = CPU time used / (allocated cores x elapsed wall-clock time).
* Memory Efficiency = peak memory / memory allocated to the job (per node x nodes).
* ``MB`` is 2**20 bytes. Upstream's JSON puts the allocated memory in bytes into
  ``total_malloc_mem_mb`` and divides MB by bytes for ``mem_efficiency``; here both are what
  their names say (MB, and a percentage of the allocated memory).
"""

from __future__ import annotations

import sys
from typing import NoReturn

from crane_cli.cliparse import Argument, Command, Option, common_options, parse, run, split_list
from crane_cli.errors import EXIT_BACKEND, EXIT_OK, CliError, arg_error

PENDING, RUNNING = 0, 1
ALL_STATES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
MB = 1 << 20
PENDING_NOTE = "Efficiency not available for jobs in the PENDING state."
RUNNING_NOTE = "WARNING: Efficiency statistics may be misleading for RUNNING jobs."


def build_command() -> Command:
    """ceff's arguments."""
    return Command("ceff", help="Display the CPU and memory efficiency of jobs.", params=[
        Argument("job_ids", nargs=-1, required=True, metavar="JOBID[,JOBID...]", help="job ids"),
        *common_options(json_flag=False),
        Option("--json", flag=True, default=False, help="print the efficiency records as JSON", script=()),
    ])


def parse_job_ids(values: list[str] | tuple[str, ...]) -> list[int]:
    """``5,6 7`` -> ``[5, 6, 7]`` (duplicates dropped, order kept)."""
    ids: list[int] = []
    for item in split_list(values):
        if "_" in item and item.replace("_", "").isdigit():
            raise arg_error(f"ceff: array job tasks ({item!r}) are not supported by this cluster")
        if not item.isdigit() or not 0 < int(item) <= 0xFFFFFFFF:
            raise arg_error(f"ceff: invalid job id {item!r}")
        if int(item) not in ids:
            ids.append(int(item))
    if not ids:
        raise arg_error("ceff: the following arguments are required: JOBID[,JOBID...]")
    return ids


def group_name(gid: int) -> str:
    """The local name of group ``gid`` (its number when it has none)."""
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return str(gid)


def wall_seconds(job, now: float) -> int:  # noqa: ANN001 - JobInfo
    """The job's elapsed wall-clock time in seconds (so far, for a running job)."""
    if job.elapsed > 0:
        return int(job.elapsed)
    if job.start_time <= 0:
        return 0
    end = job.end_time if job.end_time > 0 else now
    return max(0, int(end - job.start_time))


def efficiency(job, now: float) -> dict:  # noqa: ANN001 - JobInfo
    """Upstream's record for ``job``: the JSON object's keys, in order."""
    from crane_cli.timefmt import format_duration

    nodes = job.node_num
    cores = job.alloc_cpus if job.alloc_cpus > 0 else job.req_cpus
    cores_per_node = cores / nodes if nodes else 0.0
    rec: dict = {"job_id": job.job_id}
    if job.array_job_id:  # an array task: upstream's display id and the array's id and index (else omitted)
        rec.update({"display_job_id": f"{job.array_job_id}_{job.array_task_id}", "array_job_id": job.array_job_id,
                    "array_task_id": job.array_task_id})
    rec.update({
        "qos": job.qos, "uid": job.uid, "user_name": job.user or str(job.uid),
        "gid": job.gid, "group_name": group_name(job.gid), "account": job.account, "job_state": int(job.status),
        "nodes": nodes, "cores_per_node": _number(cores_per_node),
        "cpu_utilized_str": "", "cpu_efficiency": 0, "run_time_str": "", "total_mem_mb": 0, "mem_efficiency": 0,
        "total_malloc_mem_mb": 0, "malloc_mem_mb_per_node": 0,
    })
    if job.status == PENDING:
        return rec
    wall = wall_seconds(job, now)
    cpu_seconds = job.usage_cpu_ms / 1000
    core_walltime = cores * wall
    mem_per_node = job.alloc_mem_per_node or job.req_mem_per_node
    total_mem = mem_per_node * nodes
    rec.update({
        "cpu_utilized_str": format_duration(cpu_seconds),
        "cpu_efficiency": _pct(cpu_seconds, core_walltime),
        "run_time_str": format_duration(core_walltime),
        "total_mem_mb": _number(job.usage_mem_peak / MB),
        "mem_efficiency": _pct(job.usage_mem_peak, total_mem),
        "total_malloc_mem_mb": _number(total_mem / MB),
        "malloc_mem_mb_per_node": _number(mem_per_node / MB),
    })
    return rec


def _pct(part: float, whole: float) -> int | float:
    return _number(part / whole * 100) if whole > 0 else 0


def _number(x: float) -> int | float:
    """Two decimals at most; a whole number without a decimal point (as Go's encoding/json prints it)."""
    x = round(x, 2)
    return int(x) if x == int(x) else x


def render_text(job, rec: dict, now: float) -> str:  # noqa: ANN001 - JobInfo
    """Upstream's text lines for one job."""
    from crane_common.states import JobState

    from crane_cli.jobfields import num
    from crane_cli.timefmt import format_duration

    try:
        state = JobState(job.status).name
    except ValueError:
        state = f"Unknown({job.status})"
    lines = [f"JobId: {job.job_id}", f"Qos: {job.qos}", f"User/Group: {rec['user_name']}/{rec['group_name']}",
             f"Account: {job.account}"]
    lines.append(f"JobState: {state}" if job.status in (PENDING, RUNNING)
                 else f"JobState: {state} (exit code {job.exit_code})")
    cores = job.alloc_cpus if job.alloc_cpus > 0 else job.req_cpus
    if cores == 1:
        lines.append("Cores: 1")
    else:
        lines += [f"Nodes: {job.node_num}", f"Cores per node: {num(rec['cores_per_node'])}"]
    if job.status == PENDING:
        lines.append(PENDING_NOTE)
        return "\n".join(lines)
    lines += [
        f"CPU Utilized: {rec['cpu_utilized_str']}",
        f"CPU Efficiency: {rec['cpu_efficiency']:.2f}% of {rec['run_time_str']} core-walltime",
        f"Job Wall-clock time: {format_duration(wall_seconds(job, now))}",
        f"Memory Utilized: {rec['total_mem_mb']:.2f} MB (estimated maximum)",
        f"Memory Efficiency: {rec['mem_efficiency']:.2f}% of {rec['total_malloc_mem_mb']:.2f} MB "
        f"({rec['malloc_mem_mb_per_node']:.2f} MB/node)",
    ]
    if job.status == RUNNING:
        lines.append(RUNNING_NOTE)
    return "\n".join(lines)


def command(argv: list[str]) -> int:
    """ceff's body: returns the exit code, raises CliError on failure."""
    args = parse(build_command(), argv)
    ids = parse_job_ids(args.job_ids)
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    from crane_cli import rpc

    request = rpc.pb.QueryJobsInfoRequest(job_ids=ids, states=ALL_STATES, include_finished=True,
                                          include_history=True)
    with rpc.Controller(conf) as ctld:
        reply = ctld.call("QueryJobsInfo", request)
    if not reply.ok:
        raise CliError(f"ceff: {reply.reason or 'the controller refused the query'}", EXIT_BACKEND)
    import time

    now = time.time()
    by_id = {j.job_id: j for j in reply.jobs}
    found = [by_id[i] for i in ids if i in by_id]
    missing = [i for i in ids if i not in by_id]
    records = [(job, efficiency(job, now)) for job in found]
    if args.json:
        from crane_cli.protojson import dumps

        print(dumps([rec for _job, rec in records]))
    elif records:
        print("\n\n".join(render_text(job, rec, now) for job, rec in records))
    if missing:
        sys.stderr.write(f"Job {','.join(map(str, missing))} does not exist.\n")
        return EXIT_BACKEND
    return EXIT_OK


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="ceff")
