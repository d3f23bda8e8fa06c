"""Command line: ``python -m crane_tools.sim TRACE [options]`` (also wired to ``crane sim``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from crane_kernel.errors import PluginError

from crane_tools.sim.engine import SimError

__all__ = ["build_parser", "main", "format_result"]


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    return key, parsed


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so ``crane sim`` can reuse it)."""
    ap = argparse.ArgumentParser(
        prog="python -m crane_tools.sim",
        description="Replay an SWF workload trace (plain or .gz) through a cranesched scheduler plugin.")
    ap.add_argument("trace", help="SWF trace file")
    ap.add_argument("--scheduler", default="easy",
                    help="scheduler plugin name in crane.scheduler (fifo, easy, conservative, ...); default easy")
    ap.add_argument("--priority", default=None, help="priority plugin name in crane.priority (e.g. multifactor)")
    ap.add_argument("--procs", type=int, default=None, help="machine size in processors (default: header MaxProcs)")
    ap.add_argument("--cpus-per-node", type=int, default=1,
                    help="node-level model: procs/C nodes of C CPUs (default 1 = single-processor nodes)")
    ap.add_argument("--max-jobs", type=int, default=None, help="replay only the first N jobs of the file")
    ap.add_argument("--exact-estimates", action="store_true", help="set every estimate to the job's run time")
    ap.add_argument("--sched-opt", action="append", type=_setting, default=[], metavar="KEY=VALUE",
                    help="scheduler setting (JSON value), repeatable; e.g. --sched-opt depth=100")
    ap.add_argument("--prio-opt", action="append", type=_setting, default=[], metavar="KEY=VALUE",
                    help="priority plugin setting (JSON value), repeatable; e.g. --prio-opt WeightAge=1000")
    ap.add_argument("--reservation", action="append", default=[], metavar="NAME:START:DURATION:NODES",
                    help="an advance reservation: START seconds on the trace's clock, DURATION seconds or "
                         "[D-]HH:MM:SS, NODES a count or an index range A-B; repeatable")
    ap.add_argument("--depend-every", type=int, default=None, metavar="N",
                    help="every N-th job depends (afterany) on its user's previous job (docs/simulation.md)")
    ap.add_argument("--preempt-every", type=int, default=None, metavar="N",
                    help="every N-th job is high-priority and preempts the others (docs/preemption.md)")
    ap.add_argument("--preempt-mode", default="REQUEUE", type=str.upper,
                    choices=["CANCEL", "REQUEUE", "SUSPEND"], help="how the others are preempted (default REQUEUE)")
    ap.add_argument("--preempt-plugin", default="preempt_standard",
                    help="crane.preempt plugin (default preempt_standard)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--plot", default=None, metavar="FILE.png", help="plot queue length and utilisation over time")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    return ap


def format_result(r: dict[str, Any]) -> str:
    """A human-readable summary of a :func:`~crane_tools.sim.run_sim` result."""
    lines = [
        f"trace        {r['trace']}",
        f"scheduler    {r['scheduler']}" + (f" + priority {r['priority']}" if r.get("priority") else ""),
        f"machine      {r['procs']} procs" + (f" ({r['procs'] // r['cpus_per_node']} nodes x "
                                              f"{r['cpus_per_node']} CPUs)" if r["cpus_per_node"] > 1 else ""),
        f"jobs         {r['jobs']} simulated, {r['skipped']} skipped" +
        (f", {r['unstarted']} never started" if r.get("unstarted") else ""),
        f"mean wait    {r['mean_wait']:,.1f} s   median {r['median_wait']:,.1f} s",
        f"mean bsld    {r['mean_bsld']:,.2f}  (tau = 10 s)",
        f"utilization  {r['utilization'] * 100:.2f} %   makespan {r['makespan']:,.0f} s",
        f"wall         {r['wall_s']:.2f} s  (read {r['read_s']:.2f} s)   {r['jobs_per_s']:,.0f} jobs/s   "
        f"{r['passes']:,} passes",
    ]
    for name, start, end, count in r.get("reservations", ()):
        lines.append(f"reservation  {name}: {count} nodes from {start:,.0f} s to {end:,.0f} s")
    if r.get("reservations"):
        lines.append(f"reserved     {r['reserved_proc_s']:,.0f} processor-seconds set aside")
    rec = r.get("recorded")
    if rec:
        lines.append(f"recorded     mean wait {rec['mean_wait']:,.1f} s, bsld {rec['mean_bsld']:,.2f}, "
                     f"utilization {rec['utilization'] * 100:.2f} % (the trace's own schedule)")
    pre = r.get("preemption")
    if pre:
        counts = ", ".join(f"{n} {m.lower()}" for m, n in pre["preemptions"].items() if n) or "none"
        lines.append(f"preemption   every {pre['every']}th job is high ({pre['high_jobs']} jobs), mode {pre['mode']}: "
                     f"{pre['preempted_total']} preempted ({counts}), "
                     f"{pre['lost_work'] / 3600:,.1f} processor-hours of work lost")
        for name, c in r["classes"].items():
            lines.append(f"  {name:<5} {c['jobs']} jobs, mean wait {c['mean_wait']:,.1f} s, median "
                         f"{c['median_wait']:,.1f} s, max {c['max_wait']:,.0f} s, mean bsld {c['mean_bsld']:,.2f}")
    dep = r.get("dependencies")
    if dep:
        lines.append(f"dependencies every {dep['every']}th job waits for its user's previous one: "
                     f"{dep['dependent_jobs']} dependent jobs, {dep['held']} of them held")
        for name, c in r["classes"].items():
            lines.append(f"  {name:<11} {c['jobs']} jobs, mean wait {c['mean_wait']:,.1f} s, median "
                         f"{c['median_wait']:,.1f} s, mean bsld {c['mean_bsld']:,.2f}")
    if r.get("plot"):
        lines.append(f"plot         {r['plot']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the simulator from command-line arguments; return the exit status."""
    args = build_parser().parse_args(argv)
    from crane_tools.sim.runner import run_sim

    try:
        result = run_sim(
            args.trace, scheduler=args.scheduler, procs=args.procs, priority=args.priority,
            cpus_per_node=args.cpus_per_node, progress=sys.stderr.isatty() and not args.no_progress,
            plot=args.plot, max_jobs=args.max_jobs,
            scheduler_config=dict(args.sched_opt) if args.sched_opt else None,
            priority_config=dict(args.prio_opt) if args.prio_opt else None,
            exact_estimates=args.exact_estimates, reservations=args.reservation, preempt_every=args.preempt_every,
            depend_every=args.depend_every,
            preempt_mode=args.preempt_mode, preempt_plugin=args.preempt_plugin,
        )
    except (OSError, ValueError, PluginError, SimError, ImportError) as exc:
        print(f"crane sim: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(format_result(result))
    return 0
