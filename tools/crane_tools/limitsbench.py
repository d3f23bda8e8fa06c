"""The cost of the QoS limits in a real controller: ``python -m crane_tools.limitsbench [--jobs N] [--limit KIND]``.

An in-process :class:`~crane_kernel.ctld.core.Controller` (real SQLite journal in a temporary
directory, no bus, the ``fifo`` scheduler or ``--scheduler``) with 100 nodes of 64 CPUs, and ``--jobs``
pending jobs (default 10,000) of one user in one limited QoS, submitted in calls of 1,000:

* ``jobs``: ``MaxJobsPerUser 50`` (reason ``QosJobsResourceLimit``);
* ``cpus``: ``MaxCpusPerUser 50`` (1-CPU jobs; reason ``QosCpuResourceLimit``);
* ``none``: the same QoS without limits (the baseline: nothing is counted).

Printed: the submission time with and without the check; the first cycle (all jobs in the view,
the commit stops at the limit) and the next (the blocked jobs leave the view); a steady cycle
(nothing changed: the limits cost nothing); and a *churn* round, repeated: one running job ends,
the next cycle lets the blocked group back into the view and starts one, the cycle after takes it
out again. The view sync (where the gate runs) is timed apart from the whole cycle.
"""

from __future__ import annotations

import argparse
import os
import pwd
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "run"]


class _Book:
    """The account book's interface as the limits use it (``qos_of``, ``enforce``, ``listeners``)."""

    def __init__(self, qos: Any) -> None:
        self.qos = {qos.name: qos}
        self.enforce = frozenset({"limits"})
        self.listeners: list = []

    def qos_of(self, name: str) -> Any:
        return self.qos.get(name)


def run(jobs: int = 10_000, limit: str = "jobs", rounds: int = 20, scheduler: str = "fifo",
        priority: str | None = None) -> dict[str, Any]:
    """Run the scenario; return the timings in milliseconds."""
    from crane_kernel import messages as m
    from crane_kernel.auth_types import Identity
    from crane_kernel.config import parse_config
    from crane_kernel.ctld.acctmodel import Qos
    from crane_kernel.ctld.core import Controller
    from crane_kernel.ctld.main import build_plugin_manager
    from crane_kernel.ctld.store import StateStore

    me = pwd.getpwuid(os.getuid())
    qos = {"jobs": Qos("lim", max_jobs_per_user=50), "cpus": Qos("lim", max_cpus_per_user=50),
           "none": Qos("lim")}[limit]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config({"ClusterName": "bench", "CraneBaseDir": tmp, "RedisUrl": "redis://127.0.0.1:1/0",
                            "Nodes": [{"name": "cn[001-100]", "cpu": 64, "memory": "256G"}],
                            "Partitions": [{"name": "debug", "nodes": "ALL"}],
                            "Plugins": {"Scheduler": scheduler, "Priority": priority}})
        store = StateStore(str(Path(tmp) / "state.db"))
        clock = [1_000_000.0]
        ctl = Controller(cfg, store, build_plugin_manager(cfg), lambda msgs: None, clock=lambda: clock[0])
        ctl.recover()
        ctl.limits.attach(_Book(qos))
        ctl.handle_messages([(f"{i}-0", m.NodeRegister(node=n.name, cpus=n.sched.cpus_total, mem=n.sched.mem_total))
                             for i, n in enumerate(ctl.nodes.values())])
        ident = Identity(me.pw_uid, me.pw_name)
        spec = {"script": "#!/bin/bash\ntrue\n", "cwd": "/tmp", "time_limit": 3600, "qos": "lim"}
        t = time.perf_counter()
        for _ in range(jobs // 1000):
            ctl.submit([dict(spec) for _ in range(1000)], ident)
        submit_ms = (time.perf_counter() - t) * 1e3

        sync_ms: list[float] = []
        real_sync = ctl.keeper.sync

        def timed_sync(*a: Any, **kw: Any) -> None:
            t0 = time.perf_counter()
            real_sync(*a, **kw)
            sync_ms.append((time.perf_counter() - t0) * 1e3)

        ctl.keeper.sync = timed_sync  # type: ignore[method-assign]
        admit_ms: list[float] = []
        real_admit = ctl.limits.admit

        def timed_admit(now: float) -> None:
            t0 = time.perf_counter()
            real_admit(now)
            admit_ms.append((time.perf_counter() - t0) * 1e3)

        ctl.limits.admit = timed_admit  # type: ignore[method-assign]

        def cycle() -> tuple[float, float, int]:
            t0 = time.perf_counter()
            res = ctl.schedule_cycle()
            return (time.perf_counter() - t0) * 1e3, sync_ms[-1], res["started"]

        first = cycle()
        second = cycle()
        steady = cycle()
        churn: list[float] = []
        churn_sync: list[float] = []
        for _ in range(rounds if limit != "none" else 0):
            job = next(iter(ctl.running.values()))
            clock[0] += 1
            ctl.handle_messages([("1-0", m.StepStatus(node=job.head_node, job_id=job.job_id, state="finished",
                                                      epoch=job.epoch, time=clock[0]))])
            a, b = cycle(), cycle()
            churn.append(a[0] + b[0])
            churn_sync.append(a[1] + b[1] + admit_ms[-1] + admit_ms[-2])
        use = ctl.limits.use("lim")
        mem = 0 if use is None else sum(sys.getsizeof(getattr(use, a)) for a in use.__slots__[1:]) + sum(
            sys.getsizeof(c) for d in (use.pend_user, use.pend_acct, use.blocked_by) for c in d.values())
        store.close()
    return {"scheduler": f"{scheduler}, priority {priority or 'none'}", "limits_bytes": mem, "jobs": jobs,
            "limit": limit, "submit_ms": submit_ms, "first": first, "second": second, "steady": steady,
            "churn_ms": statistics.median(churn) if churn else 0.0,
            "churn_sync_ms": statistics.median(churn_sync) if churn_sync else 0.0,
            "running": len(ctl.running), "stats": ctl.limits.stats()}


def main(argv: list[str] | None = None) -> int:
    """Command line: print the figures of :func:`run`."""
    ap = argparse.ArgumentParser(prog="python -m crane_tools.limitsbench", description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--limit", choices=("jobs", "cpus", "none"), default="jobs")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--scheduler", default="fifo")
    ap.add_argument("--priority", default=None, help="a priority plugin, e.g. multifactor (default: none)")
    args = ap.parse_args(argv)
    r = run(args.jobs, args.limit, args.rounds, args.scheduler, None if args.priority == "none" else args.priority)
    print(f"{r['jobs']} pending jobs of one user in QoS 'lim' (limit: {r['limit']}, {r['scheduler']}); at the end: "
          f"{r['running']}; {r['stats']}")
    print(f"  the limits' tables          {r['limits_bytes'] / r['jobs']:8.0f} bytes per job")
    print(f"  submit (10 calls of 1,000)   {r['submit_ms']:8.1f} ms")
    for name in ("first", "second", "steady"):
        total, sync, started = r[name]
        print(f"  {name:<6} cycle   {total:8.1f} ms (view sync {sync:6.1f} ms), {started} started")
    if r["churn_ms"]:
        print(f"  churn (a job ends, 2 cycles) {r['churn_ms']:8.1f} ms median (admission and view sync "
              f"{r['churn_sync_ms']:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
