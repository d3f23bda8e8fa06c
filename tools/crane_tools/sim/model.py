"""The workload and machine model: how SWF records become jobs, and what the machine looks like.

Default model (the literature's; exact):

* machine = ``P`` single-processor nodes, ``P`` from ``--procs`` or the header's ``MaxProcs``;
* job size = requested processors (field 8), else allocated processors (field 5);
* estimate = requested time (field 9), else the run time (field 4);
* run time is capped at the estimate;
* jobs with a negative run time, size 0 (unknown) or size above ``P`` are skipped and counted;
* jobs are queued by submit time, then job number.

Node-level model (``cpus_per_node = C > 1``): ``P / C`` nodes of ``C`` CPUs
(``P`` must be a multiple of ``C``). A job of size ``k <= C`` asks one node
with ``k`` CPUs and may share it with other jobs; a job of size ``k > C`` asks
``ceil(k / C)`` whole nodes (``C`` CPUs on each), so it is allocated
``ceil(k / C) * C >= k`` CPUs. Metrics (utilisation, slowdown) still use ``k``.
With ``C = 1`` this is exactly the default model.
"""

from __future__ import annotations

from collections.abc import Sequence

from crane_tools.sim.swf import SwfRecord

__all__ = ["SimJob", "build_jobs", "job_shape", "PARTITION"]

PARTITION = "sim"
"""The single partition every simulated job and node belongs to."""


class SimJob:
    """One trace job under the model: its size in processors, estimate, capped run time and identity."""

    __slots__ = ("job_id", "submit", "size", "estimate", "run", "user", "group", "recorded_wait")

    def __init__(self, job_id: int, submit: int, size: int, estimate: int, run: int,
                 user: int = -1, group: int = -1, recorded_wait: int = -1) -> None:
        self.job_id = job_id
        self.submit = submit
        self.size = size
        self.estimate = estimate
        self.run = run
        self.user = user
        self.group = group
        self.recorded_wait = recorded_wait

    def __repr__(self) -> str:
        return f"SimJob({self.job_id}, submit={self.submit}, size={self.size}, est={self.estimate}, run={self.run})"


def job_shape(size: int, cpus_per_node: int) -> tuple[int, int]:
    """``(node_num, cpus_per_node)`` a job of ``size`` processors asks on nodes of ``cpus_per_node`` CPUs."""
    if cpus_per_node <= 1:
        return size, 1
    if size <= cpus_per_node:
        return 1, size
    return -(-size // cpus_per_node), cpus_per_node


def build_jobs(records: Sequence[SwfRecord], procs: int, *, exact_estimates: bool = False) -> tuple[list[SimJob], int]:
    """Apply the model to ``records``: return ``(jobs sorted by submit time then job number, skipped)``.

    With ``exact_estimates`` every job's estimate is set to its run time (the
    setting under which backfilling's reservations are exact).
    """
    jobs: list[SimJob] = []
    skipped = 0
    append = jobs.append
    for r in records:
        size = r.req_procs if r.req_procs > 0 else r.alloc
        run = r.run
        if run < 0 or size <= 0 or size > procs:
            skipped += 1
            continue
        est = r.req_time if r.req_time > 0 else run
        if exact_estimates:
            est = run
        elif run > est:
            run = est
        append(SimJob(r.job, r.submit, size, est, run, r.user, r.group, r.wait))
    jobs.sort(key=lambda j: (j.submit, j.job_id))
    return jobs, skipped
