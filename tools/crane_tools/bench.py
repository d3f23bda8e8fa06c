"""``crane bench``: the benchmarks, ``crane bench e2e|sched|acct|containers|interactive ...``."""

from __future__ import annotations

import sys

BENCHMARKS = {
    "e2e": ("crane_tools.benche2e", "end-to-end: submit, schedule, launch and finish jobs on a local cluster"),
    "sched": ("crane_tools.schedbench", "one scheduling pass of a scheduler plugin on a synthetic cluster"),
    "acct": ("crane_tools.acctbench", "the job history (sql accounting plugin): bulk load, cacct queries, writes"),
    "containers": ("crane_tools.benchcontainers", "container jobs (cri, private containerd) beside plain cgroup "
                                                  "jobs: start latency, drain rate"),
    "array": ("crane_tools.arraybench", "an array of N tasks beside N plain jobs: submit time, controller memory "
                                        "per pending task"),
    "scale": ("crane_tools.benchscale", "the real controller with N emulated nodes (one process): jobs started and "
                                        "finished per second, cycle time, bus lag, controller memory"),
    "interactive": ("crane_tools.benchinteractive", "crun and calloc beside srun and salloc: round trips, a step "
                                                    "in an allocation, output throughput"),
}


def main(argv: list[str] | None = None) -> int:
    """Run a benchmark: ``e2e`` (whole cluster), ``sched`` (scheduler plugin alone), ``acct`` (job history),
    ``containers`` (container jobs beside plain ones) or ``interactive`` (crun/calloc beside srun/salloc)."""
    import importlib

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stderr.write("usage: crane bench {e2e,sched,acct,containers,array,interactive,scale} ...\n")
        return 2
    if args[0] in ("-h", "--help"):
        lines = ["usage: crane bench {e2e,sched,acct,containers,array,interactive,scale} ...", ""]
        lines += [f"  {name:<12} {about}" for name, (_mod, about) in BENCHMARKS.items()]
        print("\n".join(lines))
        return 0
    name, rest = args[0], args[1:]
    if name not in BENCHMARKS:
        sys.stderr.write(f"crane: unknown benchmark {name!r}: expected one of {', '.join(BENCHMARKS)}\n")
        return 2
    return int(importlib.import_module(BENCHMARKS[name][0]).main(rest) or 0)
