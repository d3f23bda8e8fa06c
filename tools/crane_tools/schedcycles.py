"""``crane bench sched --cycles N``: consecutive scheduling cycles, run the way the controller runs them.

After every plan, the started jobs are committed (their CPUs, memory and GRES taken on the nodes,
exclusive jobs taking whole nodes, as ``cranectld`` does), some running jobs end (their resources
given back), new jobs arrive, the clock moves on, and the scheduler is called again. The scheduler
sees the cluster in one of two ways:

``fresh``
    a new :class:`~crane_kernel.sched_types.ClusterView` built for every call (how the controller
    worked before it kept one view; a plugin cannot keep anything across calls);
``incremental``
    one :class:`~crane_kernel.sched_types.IncrementalView` for the whole run, changed through its
    methods, so its ``delta`` lists what changed (how the controller works now).

Both modes replay the same events (same seed). A cycle's time is the view upkeep (building the
view's lists, or recording the changes through the view's methods; committing resources is the
same in both modes and not counted) plus the ``crane_schedule`` call; ``call`` is the call alone.
Every plan is validated (not timed).
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from crane_kernel import gres as gres_rules
from crane_kernel.sched_types import ClusterView, IncrementalView, Plan, SchedJob, SchedRunning

from crane_tools.schedbench import NOW, _pending_job, build_cluster, load_scheduler, validate_plan, whole_job

MODES = ("fresh", "incremental")


class _Cluster:
    """The benchmark's stand-in for the controller's tables: pending jobs, running jobs, node resources."""

    def __init__(self, view: ClusterView, mode: str) -> None:
        self.nodes = view.nodes
        self.partitions = view.partitions
        self.pending: dict[int, SchedJob] = {j.job_id: j for j in view.pending}
        self.running: dict[int, SchedRunning] = {r.job_id: r for r in view.running}
        self.taken: dict[int, list[dict[str, int]]] = {}
        self.mode = mode
        self.view: IncrementalView | None = None
        if mode == "incremental":
            self.view = IncrementalView(self.nodes, self.partitions, list(self.pending.values()),
                                        list(self.running.values()))
        self.upkeep_s = 0.0

    def current_view(self) -> ClusterView:
        """The view for the next call (built now in ``fresh`` mode; its cost counts as upkeep)."""
        if self.view is not None:
            return self.view
        t = time.perf_counter()
        view = ClusterView(self.nodes, self.partitions, list(self.pending.values()), list(self.running.values()))
        self.upkeep_s += time.perf_counter() - t
        return view

    def start(self, job: SchedJob, idxs: list[int], now: float) -> None:
        """Commit one start: take the job's resources, move it from pending to running."""
        taken = []
        for i in idxs:
            nd = self.nodes[i]
            if job.exclusive:
                nd.cpus_free, nd.mem_free = 0.0, 0
                nd.gres_free = {k: 0 for k in nd.gres_total}
            else:
                nd.cpus_free -= job.cpus_per_node
                nd.mem_free -= job.mem_per_node
                if job.gres_per_node:
                    taken.append(gres_rules.take(nd.gres_free, job.gres_per_node))
            nd.njobs += 1
        if taken:
            self.taken[job.job_id] = taken
        r = SchedRunning(job.job_id, tuple(idxs), job.cpus_per_node, job.mem_per_node, now + job.time_limit,
                         partition=job.partition, gres_per_node=job.gres_per_node, exclusive=job.exclusive)
        del self.pending[job.job_id]
        self.running[job.job_id] = r
        if self.view is not None:
            t = time.perf_counter()
            self.view.remove_pending(job)
            self.view.add_running(r)
            self.upkeep_s += time.perf_counter() - t

    def end(self, r: SchedRunning) -> None:
        """A running job ends: give its resources back."""
        taken = self.taken.pop(r.job_id, [])
        for i in r.nodes:
            nd = self.nodes[i]
            nd.njobs -= 1
            if r.exclusive:
                nd.cpus_free, nd.mem_free, nd.gres_free = nd.cpus_total, nd.mem_total, dict(nd.gres_total)
                continue
            nd.cpus_free = min(nd.cpus_total, nd.cpus_free + r.cpus_per_node)
            nd.mem_free = min(nd.mem_total, nd.mem_free + r.mem_per_node)
            if taken:
                gres_rules.give(nd.gres_free, taken.pop(0))
        del self.running[r.job_id]
        if self.view is not None:
            t = time.perf_counter()
            self.view.remove_running(r)
            self.upkeep_s += time.perf_counter() - t

    def submit(self, job: SchedJob) -> None:
        """A new job arrives."""
        self.pending[job.job_id] = job
        if self.view is not None:
            t = time.perf_counter()
            self.view.add_pending(job)
            self.upkeep_s += time.perf_counter() - t


def _summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    out = {"first_ms": round(ms[0], 3), "median_ms": 0.0, "mean_ms": 0.0, "max_ms": 0.0}
    rest = ms[1:] or ms
    out.update(median_ms=round(statistics.median(rest), 3), mean_ms=round(statistics.fmean(rest), 3),
               max_ms=round(max(rest), 3))
    return out


def run_cycles(nodes: int, jobs: int, scheduler: str, *, cycles: int = 20, mode: str = "incremental",
               seed: int = 1, running_fraction: float = 0.5, workload: str = "mixed", end_fraction: float = 0.02,
               arrivals: int | None = None, interval: float = 10.0) -> dict[str, Any]:
    """Run ``cycles`` consecutive cycles of ``scheduler`` in one view ``mode``; return the figures.

    Between cycles: about ``end_fraction`` of the running jobs end (chosen at random among them,
    by job id, so both modes see the same events as long as they start the same jobs),
    ``arrivals`` new jobs arrive (default: 1% of ``jobs``), and the clock advances ``interval``
    seconds. Keys: ``mode``, ``cycle`` and ``call`` (``first_ms``; ``median_ms``, ``mean_ms``,
    ``max_ms`` over cycles 2..N), ``per_cycle_ms``, ``paths`` (how often each plugin
    implementation answered, when the plugin says: ``last_path``), ``started``, ``ended``,
    ``submitted``, ``valid`` and ``problems``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown view mode {mode!r} (choose from {', '.join(MODES)})")
    obj, pm = load_scheduler(scheduler)
    view0 = build_cluster(nodes, jobs, seed, running_fraction, workload)
    cl = _Cluster(view0, mode)
    rng = random.Random(seed + 7919)
    cpu_names = [n.name for n in cl.nodes if "cpu" in n.partitions]
    arrivals = max(1, jobs // 100) if arrivals is None else arrivals
    next_id = jobs + 1
    now = NOW
    cycle_s: list[float] = []
    call_s: list[float] = []
    paths: dict[str, int] = {}
    problems: list[str] = []
    started = ended = submitted = 0
    for k in range(max(1, cycles)):
        view = cl.current_view()
        if isinstance(view, IncrementalView):
            view.begin_call()
        t = time.perf_counter()
        plan = pm.hook.crane_schedule(view=view, now=now) or Plan()
        call = time.perf_counter() - t
        if isinstance(view, IncrementalView):
            view.end_call()
        call_s.append(call)
        cycle_s.append(call + cl.upkeep_s)
        cl.upkeep_s = 0.0
        path = getattr(obj, "last_path", "")
        if path:
            paths[path] = paths.get(path, 0) + 1
        if len(problems) < 20:
            problems += [f"cycle {k + 1}: {p}" for p in validate_plan(view, plan, limit=20 - len(problems))]
        for jid, idxs in plan.starts:
            job = cl.pending.get(jid)
            if job is not None:
                cl.start(job, list(idxs), now)
                started += 1
        now += interval
        running_ids = sorted(cl.running)
        for jid in rng.sample(running_ids, min(len(running_ids), max(1, int(len(running_ids) * end_fraction)))):
            cl.end(cl.running[jid])
            ended += 1
        for _ in range(arrivals):
            job = whole_job(rng, next_id, nodes) if workload == "whole" else \
                _pending_job(rng, next_id, cpu_names, workload)
            job.submit_time = now
            cl.submit(job)
            next_id += 1
            submitted += 1
    return {"mode": mode, "cycles": len(cycle_s), "cycle": _summary(cycle_s), "call": _summary(call_s),
            "per_cycle_ms": [round(c * 1000, 3) for c in cycle_s], "paths": paths, "started": started,
            "ended": ended, "submitted": submitted, "valid": not problems, "problems": problems}


def run_cycles_bench(nodes: int, jobs: int, scheduler: str, *, cycles: int = 20, modes: tuple[str, ...] = MODES,
                     **kwargs: Any) -> dict[str, Any]:
    """:func:`run_cycles` for each view mode on the same events; ``speedup`` = fresh / incremental median cycle."""
    out: dict[str, Any] = {"scheduler": scheduler, "nodes": nodes, "jobs": jobs, "cycles": cycles,
                           "workload": kwargs.get("workload", "mixed"), "seed": kwargs.get("seed", 1)}
    for mode in modes:
        out[mode] = run_cycles(nodes, jobs, scheduler, cycles=cycles, mode=mode, **kwargs)
    if "fresh" in out and "incremental" in out and out["incremental"]["cycle"]["median_ms"] > 0:
        out["speedup"] = round(out["fresh"]["cycle"]["median_ms"] / out["incremental"]["cycle"]["median_ms"], 2)
    out["valid"] = all(out[m]["valid"] for m in modes)
    return out


def format_cycles(res: dict[str, Any]) -> str:
    """Human-readable lines for :func:`run_cycles_bench`'s result."""
    lines = [f"scheduler {res['scheduler']}: {res['nodes']} nodes, {res['jobs']} pending at start, "
             f"{res['cycles']} consecutive cycles ({res['workload']}, seed {res['seed']})"]
    for mode in MODES:
        r = res.get(mode)
        if r is None:
            continue
        c, k = r["cycle"], r["call"]
        lines.append(f"  {mode:<11} cycle {c['median_ms']:.1f} ms median, {c['mean_ms']:.1f} mean, "
                     f"{c['max_ms']:.1f} max (first {c['first_ms']:.1f}); call {k['median_ms']:.1f} ms median; "
                     f"started {r['started']}, paths {r['paths'] or '-'}")
    if "speedup" in res:
        lines.append(f"  incremental view: {res['speedup']}x the fresh view's median cycle speed")
    bad = [p for m in MODES if m in res for p in res[m]["problems"]]
    lines.append(f"  valid: {res['valid']}" + ("" if res["valid"] else " - " + "; ".join(bad[:5])))
    return "\n".join(lines)
