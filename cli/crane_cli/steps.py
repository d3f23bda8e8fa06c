"""Job steps in query replies: ``J.S`` selections, cqueue's step view, ``ccontrol show step`` blocks.

A selection is a list of ``<job>`` (every step of the job) or ``<job>.<step>`` items;
:func:`parse_selection` gives the job ids to ask for and, per job, None (all its steps) or the
step ids wanted. Steps come from ``QueryJobsInfo`` with ``include_steps``.
"""

from __future__ import annotations

import time

from crane_cli.errors import arg_error

ACTIVE_STEP_STATES = frozenset({0, 1, 7, 8, 9, 10})  # Pending Running Configuring Starting Completing Suspended
STEP_HEADERS = ("StepId", "Name", "Partition", "User", "Time", "NODELIST")


def parse_selection(items: list[str], prog: str) -> tuple[list[int], dict[int, set[int] | None]]:
    """``["5", "7.1"]`` -> ([5, 7], {5: None, 7: {1}}) (exit 2 for a malformed id)."""
    ids: list[int] = []
    wanted: dict[int, set[int] | None] = {}
    for item in items:
        job, dot, step = item.partition(".")
        if not job.isdigit() or not 0 < int(job) <= 0xFFFFFFFF or (dot and not step.isdigit()):
            raise arg_error(f"{prog}: invalid step id {item!r}: expected <job> or <job>.<step>")
        job_id = int(job)
        if job_id not in wanted:
            ids.append(job_id)
            wanted[job_id] = set() if dot else None
        if dot:
            if wanted[job_id] is not None:
                wanted[job_id].add(int(step))  # type: ignore[union-attr]
        else:
            wanted[job_id] = None
    return ids, wanted


def select_steps(jobs: list, wanted: dict[int, set[int] | None] | None,
                 states: frozenset[int] | set[int] | None) -> list[tuple[object, object]]:
    """(job, step) pairs sorted by job then step id; ``states`` filters the steps (None: all)."""
    out = []
    for job in sorted(jobs, key=lambda j: j.job_id):
        if wanted and job.job_id not in wanted:
            continue
        chosen = wanted.get(job.job_id) if wanted else None
        for step in sorted(job.step_info_list, key=lambda s: s.step_id):
            if chosen is not None and step.step_id not in chosen:
                continue
            if states is not None and chosen is None and step.status not in states:
                continue
            out.append((job, step))
    return out


def step_elapsed(step: object, now: float) -> int:
    """Seconds a running step has run (0 unless it runs)."""
    if step.status != 1:  # type: ignore[attr-defined]
        return 0
    if step.elapsed:  # type: ignore[attr-defined]
        return int(step.elapsed)  # type: ignore[attr-defined]
    return max(0, int(now - step.start_time)) if step.start_time > 0 else 0  # type: ignore[attr-defined]


def step_row(job: object, step: object, now: float) -> list[str]:
    """A cqueue step-view row: ``StepId Name Partition User Time NODELIST``."""
    from crane_cli.timefmt import format_duration

    seconds = step_elapsed(step, now)
    where = step.craned_list or (f"({step.reason})" if step.status == 0 and step.reason else "-")  # type: ignore
    return [f"{job.job_id}.{step.step_id}", step.name or "-",  # type: ignore[attr-defined]
            step.partition or job.partition or "-", step.user or job.user or "-",  # type: ignore[attr-defined]
            format_duration(seconds) if step.status == 1 else "-", where]  # type: ignore[attr-defined]


def _limit(seconds: int) -> str:
    from crane_cli.timefmt import MAX_TIME_LIMIT

    if seconds <= 0 or seconds >= MAX_TIME_LIMIT:
        return "UNLIMITED"
    days, rest = divmod(int(seconds), 86400)
    hms = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{hms}" if days else hms


def step_block(job: object, step: object) -> str:
    """``ccontrol show step``: three lines (continuations indented by three spaces) and an empty line."""
    from crane_cli.jobfields import num, state_name

    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(step.start_time)) \
        if step.start_time > 0 else "Unknown"  # type: ignore[attr-defined]
    limit = _limit(step.time_limit or job.time_limit)  # type: ignore[attr-defined]
    uid = step.uid or job.uid  # type: ignore[attr-defined]
    return (f"StepId={job.job_id}.{step.step_id} UserId={uid} StartTime={start} TimeLimit={limit}\n"  # type: ignore
            f"   State={state_name(step.status).upper()} Partition={step.partition or job.partition or '(null)'} "  # type: ignore
            f"NodeList={step.craned_list or '(null)'}\n"  # type: ignore[attr-defined]
            f"   Nodes={step.node_num} CPUs={num(step.alloc_cpus)} Tasks={step.ntasks or 1} "  # type: ignore
            f"Name={step.name or '(null)'}\n")  # type: ignore[attr-defined]
