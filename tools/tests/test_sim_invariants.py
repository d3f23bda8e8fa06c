"""Invariants checked on every decision of a simulated slice of the KTH trace.

* no node is ever over-allocated (checked independently of the simulator's own check);
* with exact estimates (run = estimate), no reserved job starts after the time it was first
  reserved for: EASY's head job starts by the shadow time computed when it became head, and
  under conservative every reservation holds;
* the plugin-driven simulator gives the very same schedule as the compact reference
  simulator on the single-pool model.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from crane_kernel import hookimpl, plugins
from crane_kernel.sched_types import ClusterView, Plan
from crane_tools.sim import reference, run_sim
from crane_tools.sim.engine import Simulation
from crane_tools.sim.model import build_jobs
from crane_tools.sim.swf import read_swf
from simcheck import Checker

KTH = Path("/work/shared/traces/KTH-SP2-1996-2.1-cln.swf.gz")
SLICE = 3000

pytestmark = pytest.mark.skipif(not KTH.exists(), reason="KTH trace not available")


def _check_reservations(res: dict, checker: Checker) -> None:
    starts = {row[0]: row[2] for row in res["schedule"]}
    assert checker.reserved_seen > 0
    late = {j: (starts[j], t) for j, t in checker.first_reserved.items() if starts[j] > t}
    assert not late, f"reserved jobs started late: {dict(list(late.items())[:5])}"


@pytest.mark.parametrize("scheduler", ["easy", "conservative"])
def test_invariants_single_pool(scheduler: str) -> None:
    checker = Checker()
    res = run_sim(str(KTH), scheduler=scheduler, max_jobs=SLICE, exact_estimates=True, observer=checker,
                  keep_schedule=True)
    assert res["jobs"] == SLICE
    assert checker.passes == res["passes"]
    _check_reservations(res, checker)


@pytest.mark.parametrize("scheduler", ["easy", "conservative"])
def test_invariants_node_level(scheduler: str) -> None:
    """The general path on 4-CPU nodes (jobs share nodes), exact estimates."""
    checker = Checker()
    res = run_sim(str(KTH), scheduler=scheduler, max_jobs=800, cpus_per_node=4, exact_estimates=True,
                  observer=checker, keep_schedule=True)
    assert res["jobs"] == 800
    _check_reservations(res, checker)


def test_invariants_user_estimates() -> None:
    """With the trace's own (over-)estimates reservations may move earlier, never over-allocate."""
    checker = Checker()
    res = run_sim(str(KTH), scheduler="easy", max_jobs=SLICE, observer=checker)
    assert res["jobs"] == SLICE


@pytest.mark.parametrize("scheduler", ["fifo", "easy", "conservative"])
def test_same_schedule_as_reference(scheduler: str) -> None:
    if scheduler not in {ep.name for ep in entry_points(group="crane.scheduler")}:
        pytest.skip(f"scheduler {scheduler!r} is not installed")
    res = run_sim(str(KTH), scheduler=scheduler, max_jobs=SLICE, keep_schedule=True)
    mine = {row[0]: row[2] for row in res["schedule"]}
    jobs, procs, skipped = reference.read_jobs(str(KTH))
    keep = set(mine)
    ref = reference.simulate([j for j in jobs if j[0] in keep], procs, scheduler)
    assert len(ref) == SLICE
    assert mine == ref


def test_fifo_count_path_and_general_path_agree_with_the_reference() -> None:
    """The fifo plugin's count-based pool and its node-level path give the reference's schedule."""
    jobs, procs, _ = reference.read_jobs(str(KTH))
    for fast in (True, False):
        res = run_sim(str(KTH), scheduler="fifo", max_jobs=SLICE, keep_schedule=True,
                      scheduler_config={"fast_path": fast})
        mine = {row[0]: row[2] for row in res["schedule"]}
        ref = reference.simulate([j for j in jobs if j[0] in mine], procs, "fifo")
        assert mine == ref, fast


class Twin:
    """A scheduler that answers with a cached instance and checks it against a fresh one each pass."""

    def __init__(self, mode: str) -> None:
        from crane_sched_backfill import BackfillScheduler

        self.mode = mode
        self.make = BackfillScheduler
        self.cached = BackfillScheduler()
        self.cached.crane_plugin_configure(settings={"mode": mode})

    @hookimpl
    def crane_schedule(self, view: ClusterView, now: float) -> Plan:
        a = self.cached.schedule(view, now)
        fresh = self.make()
        fresh.crane_plugin_configure(settings={"mode": self.mode})
        b = fresh.schedule(view, now)
        assert sorted(j for j, _ in a.starts) == sorted(j for j, _ in b.starts), now
        assert a.reserved == b.reserved, now
        if self.mode == "conservative":
            assert a.reasons == b.reasons, now
        return a


@pytest.mark.parametrize("mode", ["easy", "conservative"])
def test_cached_plans_equal_fresh_plans(mode: str) -> None:
    """The incremental fast path answers exactly like a scheduler rebuilt from scratch at every pass."""
    twin = Twin(mode)
    trace = read_swf(str(KTH), max_jobs=1500)
    jobs, _ = build_jobs(trace.records, 100)
    Simulation(jobs, 100, plugins.from_objects({"scheduler": {"twin": twin}})).run()
    pool = twin.cached._pool
    assert pool is not None and pool.shortcuts > 0


def test_invariants_vector_engine() -> None:
    """The NumPy EASY engine (forced on a small cluster) on 4-CPU nodes: no over-allocation, no late reservation."""
    checker = Checker()
    res = run_sim(str(KTH), scheduler="easy", max_jobs=800, cpus_per_node=4, exact_estimates=True,
                  observer=checker, keep_schedule=True, scheduler_config={"vector_nodes": 1})
    assert res["jobs"] == 800
    _check_reservations(res, checker)
