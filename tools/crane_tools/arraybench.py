"""``crane bench array``: submitting an array beside submitting the same number of plain jobs.

A local cluster (real cranectld, Redis, one craned; ``--tasks`` default 10,000). In one run, each
side three times:

* ``array``: one ``SubmitBatchJob`` with ``--array 0-<N-1>%10`` (held, so nothing starts);
* ``plain``: one ``SubmitBatchJobs`` of N copies of the same job (held), what a user without
  arrays does.

Printed: the RPC's wall time (median), cranectld's VmRSS growth per pending task (after the
submissions, minus before), and the ratio plain/array. The targets (issue 9) are a submit of at
most 50 ms and at most 0.5 KB per pending task.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

__all__ = ["main", "run"]


def _rss_kb(pid: int) -> int:
    from crane_tools.benchinteractive import rss_kb

    return rss_kb(pid)


def run(tasks: int = 10_000, rounds: int = 3) -> dict[str, Any]:
    """Run both sides; return their figures."""
    from crane_common.proto import crane_pb2 as pb

    from crane_tools.localcluster import LocalCluster

    spec = pb.JobSpec(script="#!/bin/sh\ntrue\n", hold=True, cpus_per_task=1, partition="debug", name="bench")
    out: dict[str, Any] = {"tasks": tasks, "rounds": rounds}
    lc = LocalCluster(nodes=1, cpus=4, memory="4G", cluster="arraybench",
                      CraneCtld={"MaxJobsPerSubmit": max(tasks, 1000), "MaxArrayTasks": max(tasks, 1000),
                                 "FinishedJobRetention": 1})
    lc.start()
    try:
        client = lc.client()
        pid = lc.ctld.pid  # type: ignore[union-attr]
        for side in ("array", "plain"):
            times = []
            before = _rss_kb(pid)
            for _ in range(rounds):
                t0 = time.perf_counter()
                if side == "array":
                    one = pb.JobSpec()
                    one.CopyFrom(spec)
                    one.array = f"0-{tasks - 1}%10"
                    reply = client._call("SubmitBatchJob", pb.SubmitBatchJobRequest(job=one))
                else:
                    reply = client._call("SubmitBatchJobs", pb.SubmitBatchJobsRequest(job=spec, count=tasks))
                times.append(time.perf_counter() - t0)
                if not reply.ok:
                    raise RuntimeError(f"{side}: submission refused: {reply.reason}")
            time.sleep(1.5)  # a scheduling cycle or two: an array creates its first tasks
            grown = max(0, _rss_kb(pid) - before)
            out[side] = {"submit_ms": statistics.median(times) * 1000,
                         "bytes_per_task": grown * 1024 / (tasks * rounds)}
    finally:
        lc.stop()
    out["ratio_submit"] = out["plain"]["submit_ms"] / max(out["array"]["submit_ms"], 1e-6)
    return out


def main(argv: list[str] | None = None) -> int:
    """``crane bench array [--tasks N] [--rounds R]``."""
    parser = argparse.ArgumentParser(prog="crane bench array", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.rounds < 1:
        parser.error("--tasks and --rounds must be positive")
    r = run(args.tasks, args.rounds)
    print(f"{r['tasks']} tasks, {r['rounds']} submissions per side (median)")
    for side in ("array", "plain"):
        s = r[side]
        print(f"  {side:<6} submit {s['submit_ms']:9.1f} ms   cranectld memory {s['bytes_per_task']:8.1f} B per "
              "pending task")
    print(f"  plain/array submit time: {r['ratio_submit']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
