"""Advance reservations in the backfill engines (general EASY and conservative, the NumPy vector engine).

Every planned start must pass the kernel's re-check (``reservation_conflict``): random views with
random reservations, over every engine; and the cases a user sees: a short job backfills before a
reservation, a long one waits after it, a reservation's job runs inside.
"""

from __future__ import annotations

import random

import pytest
from crane_kernel.sched_types import (
    ClusterView,
    SchedJob,
    SchedNode,
    SchedPartition,
    SchedReservation,
    SchedRunning,
    reservation_conflict,
)
from crane_sched_backfill import BackfillScheduler
from crane_sched_fifo import FifoScheduler

NOW = 1000.0
ENGINES = ["easy", "conservative", "vector", "fifo"]


def _scheduler(engine: str):
    if engine == "fifo":
        return FifoScheduler()
    s = BackfillScheduler()
    if engine == "vector":
        s.crane_plugin_configure({"mode": "easy", "vector_nodes": 1})
    else:
        s.crane_plugin_configure({"mode": engine, "vector_nodes": 0})
    return s


def _view(n: int, jobs: list[SchedJob], resvs: list[SchedReservation], job_resv: dict[int, str] | None = None,
          running: list[SchedRunning] | None = None) -> ClusterView:
    nodes = [SchedNode(f"n{i}", i, 4.0, 4 << 30, partitions=("p",)) for i in range(n)]
    for r in running or []:
        for i in r.nodes:
            nodes[i].cpus_free -= r.cpus_per_node
            nodes[i].mem_free -= r.mem_per_node
            nodes[i].njobs += 1
    view = ClusterView(nodes, {"p": SchedPartition("p", tuple(range(n)))}, jobs, running)
    view.reservations = resvs
    view.job_reservations = job_resv or {}
    return view


def _job(jid: int, tl: int, cpus: float = 4.0, nodes: int = 1) -> SchedJob:
    return SchedJob(jid, "p", nodes, cpus, 1 << 20, tl, submit_time=jid)


@pytest.mark.parametrize("engine", ENGINES)
def test_only_a_job_that_ends_before_the_reservation_starts_on_its_nodes(engine: str) -> None:
    resv = SchedReservation("maint", NOW + 100, NOW + 200, (0, 1), maint=True)
    jobs = [_job(1, 500), _job(2, 50)]
    if engine == "fifo":
        jobs[1].priority = 1.0  # strict order: the short one first (fifo never backfills)
    view = _view(2, jobs, [resv])
    plan = _scheduler(engine).schedule(view, NOW)
    started = {j for j, _ in plan.starts}
    assert 2 in started and 1 not in started
    assert plan.reasons[1] == "ReqNodeNotAvail, Reserved for maintenance"
    if engine in ("easy", "conservative"):
        assert plan.reserved[1] >= NOW + 200  # planned after the window, never across it


@pytest.mark.parametrize("engine", ENGINES)
def test_an_active_reservation_is_for_its_jobs_only(engine: str) -> None:
    resv = SchedReservation("r", NOW - 10, NOW + 1000, (1,))
    view = _view(2, [_job(1, 60), _job(2, 60), _job(3, 60)], [resv], {3: "r"})
    plan = _scheduler(engine).schedule(view, NOW)
    placed = dict(plan.starts)
    assert placed[3] == [1]
    assert list(placed.get(1, [0])) == [0] and 2 not in placed  # one node left for the two others


@pytest.mark.parametrize("engine", ENGINES)
def test_a_reservation_job_waits_until_its_reservation_starts(engine: str) -> None:
    resv = SchedReservation("r", NOW + 10, NOW + 1000, (0,))
    plan = _scheduler(engine).schedule(_view(2, [_job(1, 60)], [resv], {1: "r"}), NOW)
    assert not plan.starts and plan.reasons[1] == "Reservation"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(12))
def test_no_plan_ever_breaks_a_reservation(engine: str, seed: int) -> None:
    rnd = random.Random(seed)
    n = rnd.randint(3, 12)
    resvs = []
    free = list(range(n))
    rnd.shuffle(free)
    for k in range(rnd.randint(1, 3)):
        take = [free.pop() for _ in range(min(len(free), rnd.randint(1, 3)))]
        if not take:
            break
        start = NOW + rnd.choice([-50, 0, 30, 300, 2000])
        resvs.append(SchedReservation(f"r{k}", start, start + rnd.randint(100, 3000), tuple(take),
                                      maint=rnd.random() < 0.5))
    running = [SchedRunning(100 + i, (i,), 2.0, 1 << 20, NOW + rnd.randint(10, 4000), partition="p")
               for i in range(n) if rnd.random() < 0.4]
    jobs, job_resv = [], {}
    for jid in range(1, rnd.randint(5, 40)):
        job = _job(jid, rnd.choice([20, 100, 600, 5000]), cpus=rnd.choice([1.0, 2.0, 4.0]),
                   nodes=rnd.choice([1, 1, 1, 2]))
        job.priority = rnd.random()
        jobs.append(job)
        if rnd.random() < 0.25:
            job_resv[jid] = rnd.choice(resvs).name
    view = _view(n, jobs, resvs, job_resv, running)
    plan = _scheduler(engine).schedule(view, NOW)
    by_id = {j.job_id: j for j in jobs}
    for jid, idxs in plan.starts:
        assert reservation_conflict(view, by_id[jid], idxs, NOW) is None, (jid, idxs, job_resv.get(jid))
