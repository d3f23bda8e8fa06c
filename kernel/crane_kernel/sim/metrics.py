"""Schedule metrics: wait, bounded slowdown, utilisation, makespan.

Definitions (the literature's, as in ``performance-anchors.md``):

* wait = start - submit;
* bounded slowdown with tau = 10 s: ``max(1, (wait + run) / max(run, tau))``;
* utilisation = sum(run * size) / (P * (last end - first submit));
* makespan = last end - first submit.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

from crane_kernel.sim.model import SimJob

__all__ = ["TAU", "schedule_metrics", "recorded_metrics"]

TAU = 10.0
"""Bounded-slowdown threshold, seconds."""


def schedule_metrics(jobs: Sequence[SimJob], starts: Sequence[float | None], procs: int) -> dict[str, float]:
    """Metrics of a schedule: ``starts[i]`` is when ``jobs[i]`` started (``None``: never; excluded)."""
    waits: list[float] = []
    bsld_sum = 0.0
    work = 0.0
    first = None
    last_end = None
    for job, st in zip(jobs, starts, strict=True):
        if st is None:
            continue
        w = st - job.submit
        waits.append(w)
        run = job.run
        bsld_sum += max(1.0, (w + run) / max(run, TAU))
        work += run * job.size
        end = st + run
        if first is None or job.submit < first:
            first = job.submit
        if last_end is None or end > last_end:
            last_end = end
    n = len(waits)
    span = (last_end - first) if n else 0.0
    return {
        "mean_wait": sum(waits) / n if n else 0.0,
        "median_wait": float(median(waits)) if n else 0.0,
        "max_wait": max(waits) if n else 0.0,
        "mean_bsld": bsld_sum / n if n else 0.0,
        "utilization": work / (procs * span) if span > 0 else 0.0,
        "makespan": float(span),
    }


def recorded_metrics(jobs: Sequence[SimJob], procs: int) -> dict[str, float] | None:
    """The same metrics for the production schedule recorded in the trace (jobs with a recorded wait >= 0)."""
    kept = [j for j in jobs if j.recorded_wait >= 0]
    if not kept:
        return None
    return schedule_metrics(kept, [j.submit + j.recorded_wait for j in kept], procs)
