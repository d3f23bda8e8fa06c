"""Schedule metrics: wait, bounded slowdown, utilisation, makespan.

Definitions (the literature's, as in ``performance-anchors.md``):

* wait = start - submit;
* bounded slowdown with tau = 10 s: ``max(1, (wait + run) / max(run, tau))``;
* utilisation = sum(run * size) / (P * (last end - first submit));
* makespan = last end - first submit.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from statistics import median

from crane_tools.sim.model import SimJob

__all__ = ["TAU", "schedule_metrics", "recorded_metrics"]

TAU = 10.0
"""Bounded-slowdown threshold, seconds."""

_submit = attrgetter("submit")
_run = attrgetter("run")
_size = attrgetter("size")


def schedule_metrics(jobs: Sequence[SimJob], starts: Sequence[float | None], procs: int) -> dict[str, float]:
    """Metrics of a schedule: ``starts[i]`` is when ``jobs[i]`` started (``None``: never; excluded).

    Uses NumPy when it is installed (about 6x faster on 200k jobs), plain Python otherwise.
    """
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is optional for the kernel
        return _metrics_py(jobs, starts, procs)
    if None in starts:
        kept = [(j, s) for j, s in zip(jobs, starts, strict=True) if s is not None]
        jobs = [j for j, _ in kept]
        starts = [s for _, s in kept]
    n = len(jobs)
    if not n:
        return _metrics_py(jobs, starts, procs)
    st = np.array(starts, dtype=np.float64)
    sub = np.fromiter(map(_submit, jobs), dtype=np.float64, count=n)
    run = np.fromiter(map(_run, jobs), dtype=np.float64, count=n)
    size = np.fromiter(map(_size, jobs), dtype=np.float64, count=n)
    wait = st - sub
    bsld = np.maximum(1.0, (wait + run) / np.maximum(run, TAU))
    span = float((st + run).max() - sub.min())
    return {
        "mean_wait": float(wait.mean()),
        "median_wait": float(np.median(wait)),
        "max_wait": float(wait.max()),
        "mean_bsld": float(bsld.mean()),
        "utilization": float((run * size).sum() / (procs * span)) if span > 0 else 0.0,
        "makespan": span,
    }


def _metrics_py(jobs: Sequence[SimJob], starts: Sequence[float | None], procs: int) -> dict[str, float]:
    pairs = [(j, s) for j, s in zip(jobs, starts, strict=True) if s is not None]
    n = len(pairs)
    if not n:
        return {"mean_wait": 0.0, "median_wait": 0.0, "max_wait": 0.0, "mean_bsld": 0.0, "utilization": 0.0,
                "makespan": 0.0}
    waits = [s - j.submit for j, s in pairs]
    runs = [j.run for j, _ in pairs]
    tau = TAU
    bsld = [(w + r) / (r if r > tau else tau) for w, r in zip(waits, runs, strict=True)]
    bsld_sum = sum(b if b > 1.0 else 1.0 for b in bsld)
    work = sum(j.run * j.size for j, _ in pairs)
    first = min(j.submit for j, _ in pairs)
    last_end = max(s + j.run for j, s in pairs)
    span = last_end - first
    return {
        "mean_wait": sum(waits) / n,
        "median_wait": float(median(waits)),
        "max_wait": float(max(waits)),
        "mean_bsld": bsld_sum / n,
        "utilization": work / (procs * span) if span > 0 else 0.0,
        "makespan": float(span),
    }


def recorded_metrics(jobs: Sequence[SimJob], procs: int) -> dict[str, float] | None:
    """The same metrics for the production schedule recorded in the trace (jobs with a recorded wait >= 0)."""
    kept = [j for j in jobs if j.recorded_wait >= 0]
    if not kept:
        return None
    return schedule_metrics(kept, [j.submit + j.recorded_wait for j in kept], procs)
