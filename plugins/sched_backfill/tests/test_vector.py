"""The NumPy EASY engine (``vector_nodes``): hand-made cases with known answers."""

from __future__ import annotations

import pytest
from crane_kernel.sched_types import ClusterView, SchedJob, SchedNode, SchedPartition, SchedRunning
from crane_sched_backfill import EasyScheduler

pytest.importorskip("numpy")

GB = 1 << 30


def _sched() -> EasyScheduler:
    s = EasyScheduler()
    s.crane_plugin_configure(settings={"vector_nodes": 1})
    return s


def _cluster(running=(), gres=None):
    nodes = [SchedNode(f"n{i}", i, 4, 8 * GB, partitions=("p",), gres_total=gres if i == 1 else None)
             for i in range(2)]
    for r in running:
        for i in r.nodes:
            nodes[i].cpus_free -= r.cpus_per_node
            nodes[i].mem_free -= r.mem_per_node
            nodes[i].njobs += 1
    return nodes, {"p": SchedPartition("p", (0, 1))}


def test_short_job_backfills_long_job_waits():
    running = [SchedRunning(100, (0,), 4, GB, 1000.0), SchedRunning(101, (1,), 2, GB, 1000.0)]
    nodes, parts = _cluster(running)
    head = SchedJob(1, "p", 2, 4, GB, 500, submit_time=1)      # needs both nodes whole: reserved at t=1000
    short = SchedJob(2, "p", 1, 1, GB, 100, submit_time=2)      # ends by 1000: may use n1 now
    long = SchedJob(3, "p", 1, 1, GB, 5000, submit_time=3)      # would still run at 1000 on a reserved node
    view = ClusterView(nodes, parts, [head, short, long], running)
    s = _sched()
    plan = s.schedule(view, 0.0)
    assert s.last_path == "vector"
    assert plan.starts == [(2, [1])]
    assert plan.reserved == {1: 1000.0}
    assert plan.reasons[1] == "Resource" and plan.reasons[3] == "ResourceReserved"


def test_long_job_may_use_the_slack_of_a_reserved_node():
    running = [SchedRunning(100, (0,), 4, GB, 1000.0)]
    nodes, parts = _cluster(running)
    head = SchedJob(1, "p", 1, 4, GB, 500, submit_time=1, nodelist=frozenset({"n0"}))  # waits for n0
    long_small = SchedJob(2, "p", 1, 2, GB, 5000, submit_time=2)                          # n1 is not reserved
    view = ClusterView(nodes, parts, [head, long_small], running)
    plan = _sched().schedule(view, 0.0)
    assert plan.reserved == {1: 1000.0}
    assert plan.starts == [(2, [1])]


def test_best_fit_multi_node_exclusive_and_never_fits():
    nodes, parts = _cluster()
    nodes[0].cpus_free = 1.0
    nodes[0].njobs = 1
    jobs = [SchedJob(1, "p", 1, 1, GB, 100, submit_time=1),                     # best fit: n0 (1 CPU left)
            SchedJob(2, "p", 1, 1, GB, 100, submit_time=2, exclusive=True),     # needs an idle node: n1
            SchedJob(3, "p", 3, 1, GB, 100, submit_time=3),                     # 3 nodes: never
            SchedJob(4, "p", 1, 9, GB, 100, submit_time=4)]                     # 9 CPUs: never
    plan = _sched().schedule(ClusterView(nodes, parts, jobs, []), 0.0)
    assert plan.starts == [(1, [0]), (2, [1])]
    assert plan.reasons[3] == plan.reasons[4] == "ReqNodeNotAvail"


def test_gres_and_node_lists():
    nodes, parts = _cluster(gres={"gpu:a100": 2})
    jobs = [SchedJob(1, "p", 1, 1, GB, 100, submit_time=1, gres_per_node={"gpu": 2}),
            SchedJob(2, "p", 1, 1, GB, 100, submit_time=2, gres_per_node={"gpu:a100": 1}),
            SchedJob(3, "p", 1, 1, GB, 100, submit_time=3, exclude=frozenset({"n0"})),
            SchedJob(4, "p", 1, 1, GB, 100, submit_time=4, nodelist=frozenset({"n0"}))]
    plan = _sched().schedule(ClusterView(nodes, parts, jobs, []), 0.0)
    starts = dict(plan.starts)
    assert starts[1] == [1]
    assert 2 not in starts                       # the GPUs are taken by job 1
    assert starts[3] == [1] and starts[4] == [0]
