"""``run_sim``: read a trace, load the plugins by name, replay, report."""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping
from typing import Any

from crane_kernel import plugins

from crane_tools.sim.deps import DependencyModel
from crane_tools.sim.engine import Observer, Simulation
from crane_tools.sim.metrics import recorded_metrics, schedule_metrics
from crane_tools.sim.model import build_jobs
from crane_tools.sim.preempt import PreemptSetup
from crane_tools.sim.reservations import parse_reservation
from crane_tools.sim.swf import read_swf

__all__ = ["run_sim"]


def _class_metrics(jobs: list, starts: list, procs: int, members: list[int]) -> dict[str, Any]:
    """Wait and slowdown of one class of jobs (the started ones)."""
    kept = [i for i in members if starts[i] is not None]
    figures = schedule_metrics([jobs[i] for i in kept], [starts[i] for i in kept], procs)
    return {"jobs": len(kept), **{k: figures[k] for k in ("mean_wait", "median_wait", "max_wait", "mean_bsld")}}


def run_sim(
    trace_path: str,
    scheduler: str = "easy",
    procs: int | None = None,
    priority: str | None = None,
    cpus_per_node: int = 1,
    progress: bool = False,
    plot: str | None = None,
    max_jobs: int | None = None,
    *,
    scheduler_config: Mapping[str, Any] | None = None,
    priority_config: Mapping[str, Any] | None = None,
    exact_estimates: bool = False,
    observer: Observer | None = None,
    keep_schedule: bool = False,
    reservations: list[str] | None = None,
    preempt_every: int | None = None,
    depend_every: int | None = None,
    preempt_mode: str = "REQUEUE",
    preempt_plugin: str = "preempt_standard",
) -> dict[str, Any]:
    """Replay the SWF trace at ``trace_path`` through the named plugins and return the metrics.

    * ``scheduler``: name in entry-point group ``crane.scheduler`` (``fifo``, ``easy``, ``conservative``, ...).
    * ``priority``: name in ``crane.priority`` (``multifactor``), or ``None`` for submit order.
    * ``procs``: machine size; default the header's ``MaxProcs``.
    * ``cpus_per_node``: node-level model (see :mod:`crane_tools.sim.model`); 1 = the default model.
    * ``max_jobs``: read only the first that many jobs of the file.
    * ``plot``: write a PNG of queue length and utilisation over time (needs matplotlib).
    * ``scheduler_config`` / ``priority_config``: the plugins' settings (their ``crane_plugin_configure``).
    * ``exact_estimates``: set every estimate to the job's run time.
    * ``observer(now, view, plan)``: called after every scheduling pass.
    * ``keep_schedule``: add ``"schedule": [(job_id, submit, start, run, size, estimate), ...]``.
    * ``reservations``: ``NAME:START:DURATION:NODES`` texts (:mod:`crane_tools.sim.reservations`); the
      result then has ``reservations`` (name, start, end, nodes) and ``reserved_proc_s``.
    * ``depend_every``: every N-th job depends ``afterany`` on its user's previous job
      (:mod:`crane_tools.sim.deps`); the result then has ``dependencies`` (the model's counts) and
      ``classes`` ``dependent``/``independent``.
    * ``preempt_every`` / ``preempt_mode`` / ``preempt_plugin``: the preemption model
      (:mod:`crane_tools.sim.preempt`): every N-th job is high-priority and preempts the others
      with the mode, through the named ``crane.preempt`` plugin. The result then has
      ``preemption`` (counts per mode, ``lost_work`` in processor-seconds, ``cancelled_by_preemption``)
      and ``classes`` (``high`` and ``low``: each class's ``jobs``, ``mean_wait``, ``median_wait``,
      ``max_wait``, ``mean_bsld``); jobs a preemption cancelled leave the other metrics.

    The plugins are loaded with :func:`crane_kernel.plugins.load_slots`, exactly
    as cranectld loads them (a bad name or setting raises a one-line
    :class:`~crane_kernel.errors.PluginError`), and shut down at the end.

    The result holds at least: ``jobs``, ``skipped``, ``mean_wait``, ``median_wait``,
    ``mean_bsld``, ``utilization``, ``makespan``, ``wall_s`` (the whole run,
    including reading the trace) and ``jobs_per_s`` (simulation speed).
    """
    t0 = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived, acyclic objects: the cyclic collector only costs time here
    try:
        setup = PreemptSetup(preempt_every, preempt_mode) if preempt_every is not None else None
        return _run(trace_path, scheduler, procs, priority, cpus_per_node, progress, plot, max_jobs,
                    scheduler_config, priority_config, exact_estimates, observer, keep_schedule, t0,
                    reservations or [], setup, preempt_plugin, depend_every)
    finally:
        if gc_was_enabled:
            gc.enable()


def _run(trace_path: str, scheduler: str, procs: int | None, priority: str | None, cpus_per_node: int,
         progress: bool, plot: str | None, max_jobs: int | None, scheduler_config: Mapping[str, Any] | None,
         priority_config: Mapping[str, Any] | None, exact_estimates: bool, observer: Observer | None,
         keep_schedule: bool, t0: float, reservation_texts: list[str], setup: PreemptSetup | None = None,
         preempt_plugin: str = "preempt_standard", depend_every: int | None = None) -> dict[str, Any]:
    trace = read_swf(trace_path, max_jobs=max_jobs)
    p = procs or trace.max_procs
    if not p:
        raise ValueError(f"{trace_path}: no MaxProcs in the header; give procs")
    jobs, skipped = build_jobs(trace.records, p, exact_estimates=exact_estimates)
    if depend_every is not None and setup is not None:
        raise ValueError("--depend-every and --preempt-every together are not modelled (a preempted parent)")
    dep_model = DependencyModel(jobs, depend_every) if depend_every is not None else None
    resvs = [parse_reservation(text, p // max(1, cpus_per_node)) for text in reservation_texts]
    t_read = time.perf_counter()
    settings: dict[str, Any] = {}
    if scheduler_config is not None:
        settings[scheduler] = dict(scheduler_config)
    if priority and priority_config is not None:
        settings[priority] = dict(priority_config)
    selection: dict[str, Any] = {"Scheduler": scheduler, "Priority": priority, "Settings": settings}
    slots = ["scheduler", "priority"]
    if setup is not None:
        selection["Preempt"] = preempt_plugin
        slots.append("preempt")
    loaded = plugins.load_slots(selection, slots=slots)
    try:
        sim = Simulation(jobs, p, loaded, cpus_per_node=cpus_per_node, observer=observer,
                         record_series=plot is not None, progress=progress, reservations=resvs,
                         preemption=setup, dependencies=dep_model)
        t_sim = time.perf_counter()
        sim.run()
        t_end = time.perf_counter()
    finally:
        loaded.shutdown()
    starts = sim.start
    model = sim.preempt
    if model is not None and model.cancelled:  # a job a preemption cancelled ran only part of its time
        starts = [None if i in model.cancelled else s for i, s in enumerate(starts)]
    started = sum(1 for s in starts if s is not None)
    result: dict[str, Any] = {
        "trace": trace_path,
        "scheduler": scheduler,
        "priority": priority,
        "procs": p,
        "cpus_per_node": cpus_per_node,
        "jobs": started,
        "skipped": skipped,
        "unstarted": len(jobs) - started - (len(model.cancelled) if model is not None else 0),
        "passes": sim.passes,
    }
    result.update(schedule_metrics(jobs, starts, p))
    if model is not None and setup is not None:
        high = [i for i in range(len(jobs)) if setup.is_high(i)]
        result["preemption"] = {"mode": setup.mode, "every": setup.every, "plugin": preempt_plugin,
                                **model.report(high)}
        result["classes"] = {name: _class_metrics(jobs, starts, p, [i for i in range(len(jobs)) if setup.is_high(i)
                                                                     == (name == "high")])
                             for name in ("high", "low")}
    if dep_model is not None:
        result["dependencies"] = dep_model.report()
        dependent = dep_model.parent
        result["classes"] = {name: _class_metrics(jobs, starts, p, [i for i in range(len(jobs))
                                                                     if (i in dependent) == (name == "dependent")])
                             for name in ("dependent", "independent")}
    if resvs:
        result["reservations"] = [(r.name, r.start, r.end, len(r.nodes)) for r in resvs]
        result["reserved_proc_s"] = sum(r.duration * len(r.nodes) * cpus_per_node for r in resvs)
    rec = recorded_metrics(jobs, p)
    if rec is not None:
        result["recorded"] = rec
    wall = time.perf_counter() - t0
    result["wall_s"] = wall
    result["read_s"] = t_read - t0
    result["sim_s"] = t_end - t_sim
    result["jobs_per_s"] = len(jobs) / wall if wall > 0 else 0.0
    if keep_schedule:
        result["schedule"] = [(j.job_id, j.submit, s, j.run, j.size, j.estimate)
                              for j, s in zip(jobs, sim.start, strict=True)]
    if plot is not None:
        from crane_tools.sim.plot import plot_series

        plot_series(plot, sim.series, p, title=f"{trace_path.rsplit('/', 1)[-1]} — {scheduler}")
        result["plot"] = plot
    return result
