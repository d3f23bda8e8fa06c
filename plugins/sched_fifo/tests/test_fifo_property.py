"""Random clusters and queues: the plan never over-allocates and equals the plain reference policy."""

from __future__ import annotations

import random

import pytest
from crane_kernel.sched_types import ClusterView, SchedJob, SchedNode, SchedPartition
from crane_sched_fifo import FifoScheduler
from crane_tools.schedbench import build_cluster, validate_plan

GiB = 1 << 30
NOW = 5000.0


def random_view(seed: int) -> ClusterView:
    """A small random cluster: mixed nodes, some GPUs, some down, overlapping partitions, every kind of job.

    Odd seeds give roomier clusters (mostly idle nodes, small jobs) so that many jobs start before a head blocks.
    """
    rng = random.Random(seed)
    roomy = seed % 2 == 1
    nnodes = rng.randint(1, 24)
    nodes = []
    for i in range(nnodes):
        cpus = float(rng.choice((2, 4, 8, 16, 32)))
        mem = rng.choice((4, 16, 64, 256)) * GiB
        gres = None
        if rng.random() < 0.3:
            gres = {rng.choice(("gpu:a100", "gpu:v100", "gpu")): rng.choice((1, 2, 4))}
            if rng.random() < 0.3:
                gres["gpu:h100"] = 2
        node = SchedNode(f"n{i}", i, cpus, mem, gres_total=gres, usable=rng.random() > 0.1)
        r = rng.random() + (0.4 if roomy else 0.0)
        if r < 0.15:  # running exclusive job
            node.cpus_free, node.mem_free, node.njobs = 0.0, 0, 1
            node.gres_free = {k: 0 for k in node.gres_total}
        elif r < 0.6:  # partly busy
            node.cpus_free = rng.choice((0.0, 0.5, 1.0, 2.0, cpus / 2, cpus - 1))
            node.mem_free = rng.randint(0, mem // GiB) * GiB
            node.njobs = rng.randint(1, 3)
            node.gres_free = {k: rng.randint(0, v) for k, v in node.gres_total.items()}
        nodes.append(node)
    names = [n.name for n in nodes]
    parts = {}
    for p in ("a", "b", "c")[: rng.randint(1, 3)]:
        idx = sorted(rng.sample(range(nnodes), rng.randint(1, nnodes)))
        parts[p] = SchedPartition(p, tuple(idx), max_time_limit=rng.choice((0, 0, 0, 7200)),
                                  denied_accounts=frozenset({"bad"}) if rng.random() < 0.2 else None)
    pnames = list(parts) * 10 + ["zz"]
    jobs = []
    for jid in range(1, rng.randint(1, 80)):
        kw: dict = {"priority": float(rng.randint(0, 3)), "submit_time": float(rng.randint(0, 20)),
                    "time_limit": rng.choice((600, 3600, 10000)), "account": rng.choice(("ok",) * 8 + ("bad",))}
        r = rng.random()
        if r < 0.15:
            kw["gres_per_node"] = rng.choice(({"gpu": 1}, {"gpu": 2}, {"gpu:a100": 1}, {"gpu:v100": 2},
                                               {"gpu:a100": 1, "gpu": 1}, {"gpu": 0}))
        elif r < 0.25:
            kw["nodelist"] = frozenset(rng.sample(names + ["ghost"], rng.randint(1, min(3, nnodes))))
        elif r < 0.35:
            kw["exclude"] = frozenset(rng.sample(names, rng.randint(1, min(3, nnodes))))
        elif r < 0.45:
            kw["exclusive"] = True
        kw["held"] = rng.random() < 0.03
        kw["begin_time"] = NOW + 10 if rng.random() < 0.03 else 0.0
        jobs.append(SchedJob(jid, rng.choice(pnames), rng.choice((1, 1, 1, 2, 3)),
                             rng.choice((0.5, 1.0, 1.0, 2.0)) if roomy and rng.random() < 0.8 else
                             rng.choice((0.0, 0.5, 1.0, 1.0, 1.0, 2.0, 2.0, 4.0, 8.0, 24.0)),
                             rng.choice((0, 1, 1, 2, 2, 4, 8, 32, 300)) * GiB, **kw))
    return ClusterView(nodes, parts, jobs)


def _plan(view: ClusterView, **cfg):
    s = FifoScheduler()
    s.crane_plugin_configure(settings=cfg)
    return s.schedule(view, NOW)


@pytest.mark.parametrize("seed", range(300))
def test_random_cluster_matches_reference_and_is_valid(seed, reference):
    view = random_view(seed)
    plan = _plan(view)
    assert validate_plan(view, plan) == []
    ref_starts, ref_reasons = reference(view, NOW)
    assert plan.starts == ref_starts
    assert plan.reasons == ref_reasons
    assert plan.considered == len(view.pending)


@pytest.mark.parametrize("seed", range(0, 300, 3))
def test_search_modes_agree(seed):
    pytest.importorskip("numpy")
    view = random_view(seed)
    base = _plan(view, use_numpy=False)
    for cfg in ({"probe_limit": 0}, {"probe_limit": 1}, {}):
        other = _plan(view, **cfg)
        assert other.starts == base.starts, cfg
        assert other.reasons == base.reasons, cfg


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_synthetic_bench_cluster_matches_reference(seed, reference):
    view = build_cluster(60, 600, seed=seed, running_fraction=0.4)
    plan = _plan(view)
    assert validate_plan(view, plan) == []
    ref_starts, ref_reasons = reference(view, 1_000_000_000.0 + 1)
    plan = FifoScheduler().schedule(view, 1_000_000_000.0 + 1)
    assert plan.starts == ref_starts
    assert plan.reasons == ref_reasons


@pytest.mark.parametrize("workload", ["mixed", "small"])
def test_synthetic_bench_small_workload_agrees_across_modes(workload):
    pytest.importorskip("numpy")
    view = build_cluster(300, 5000, seed=4, running_fraction=0.5, workload=workload)
    plans = [_plan(view, **cfg) for cfg in ({}, {"probe_limit": 0}, {"use_numpy": False})]
    for p in plans:
        assert validate_plan(view, p) == []
    assert plans[1].starts == plans[0].starts == plans[2].starts
    assert plans[1].reasons == plans[0].reasons == plans[2].reasons
