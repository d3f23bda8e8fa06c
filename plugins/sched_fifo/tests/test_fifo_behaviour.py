"""Hand-made small clusters pinning the fifo scheduler's decisions exactly."""

from __future__ import annotations

import random

import pytest
from crane_kernel.sched_types import (
    REASON_ACCOUNT,
    REASON_BEGIN_TIME,
    REASON_HELD,
    REASON_NODES_UNAVAILABLE,
    REASON_PARTITION_LIMIT,
    REASON_PRIORITY,
    REASON_RESOURCE,
    ClusterView,
)
from crane_sched_fifo import FifoScheduler

NOW = 1000.0
MODES = [
    pytest.param({}, id="default"),
    pytest.param({"probe_limit": 0}, id="numpy-always"),
    pytest.param({"use_numpy": False}, id="pure-python"),
]


@pytest.fixture(params=MODES)
def sched(request: pytest.FixtureRequest):
    """The scheduler in each search mode (results must not depend on it)."""
    cfg = dict(request.param)
    if cfg.get("probe_limit") == 0:
        pytest.importorskip("numpy")
    s = FifoScheduler()
    s.crane_plugin_configure(settings=cfg)
    return lambda view: s.schedule(view, NOW)


def starts(plan) -> dict[int, list[int]]:
    return dict(plan.starts)


def test_priority_then_submit_then_id_order(sched, view_builder, mkjob):
    view = view_builder([{"cpus": 4}], None, [
        mkjob(1, cpus=2, submit_time=5.0),
        mkjob(2, cpus=2, priority=10.0, submit_time=9.0),
        mkjob(3, cpus=2, submit_time=1.0),
        mkjob(4, cpus=2, submit_time=1.0),
    ])
    plan = sched(view)
    assert [jid for jid, _ in plan.starts] == [2, 3]
    assert plan.reasons == {4: REASON_RESOURCE, 1: REASON_PRIORITY}
    assert plan.considered == 4
    assert plan.reserved == {}


def test_head_of_line_blocks_its_partition(sched, view_builder, mkjob):
    view = view_builder([{"cpus": 4}], None, [mkjob(1, cpus=3), mkjob(2, cpus=2), mkjob(3, cpus=1)])
    plan = sched(view)
    assert starts(plan) == {1: [0]}
    assert plan.reasons == {2: REASON_RESOURCE, 3: REASON_PRIORITY}  # 3 would fit but is behind 2


def test_other_partition_is_not_blocked(sched, view_builder, mkjob):
    view = view_builder([{"cpus": 4}, {"cpus": 4}], {"a": [0], "b": [1]}, [
        mkjob(1, "a", cpus=8), mkjob(2, "a", cpus=1), mkjob(3, "b", cpus=4),
    ])
    plan = sched(view)
    # job 1 can never fit (ReqNodeNotAvail, not blocking), so job 2 starts too
    assert starts(plan) == {2: [0], 3: [1]}
    assert plan.reasons == {1: REASON_NODES_UNAVAILABLE}
    view = view_builder([{"cpus": 4, "free": 2}, {"cpus": 4}], {"a": [0], "b": [1]}, [
        mkjob(1, "a", cpus=3), mkjob(2, "a", cpus=1), mkjob(3, "b", cpus=4),
    ])
    plan = sched(view)
    assert starts(plan) == {3: [1]}
    assert plan.reasons == {1: REASON_RESOURCE, 2: REASON_PRIORITY}


def test_shared_nodes_are_allocated_against_live_state(sched, view_builder, mkjob):
    # node 1 is in both partitions; the higher-priority job of "a" takes it first
    view = view_builder([{"cpus": 8}, {"cpus": 4}], {"a": [0, 1], "b": [1]}, [
        mkjob(1, "a", cpus=4, priority=5.0), mkjob(2, "b", cpus=2), mkjob(3, "a", cpus=2),
    ])
    plan = sched(view)
    assert starts(plan) == {1: [1], 3: [0]}  # best fit: the 4-CPU node for job 1
    assert plan.reasons == {2: REASON_RESOURCE}


def test_best_fit_picks_fewest_free_cpus_then_lowest_index(sched, view_builder, mkjob):
    view = view_builder([{"cpus": 8}, {"cpus": 8, "free": 3}, {"cpus": 8, "free": 5}, {"cpus": 8, "free": 3}],
                        None, [mkjob(1, cpus=3), mkjob(2, cpus=4), mkjob(3, cpus=3)])
    plan = sched(view)
    assert plan.starts == [(1, [1]), (2, [2]), (3, [3])]


def test_multi_node_jobs(sched, view_builder, mkjob):
    view = view_builder([{"cpus": 8}, {"cpus": 8}, {"cpus": 8, "free": 6}], None, [
        mkjob(1, n=2, cpus=6), mkjob(2, n=2, cpus=6), mkjob(3, cpus=1),
    ])
    plan = sched(view)
    assert starts(plan) == {1: [0, 2]}  # 6-free node is the best fit, then the lowest index
    assert plan.reasons == {2: REASON_RESOURCE, 3: REASON_PRIORITY}
    view = view_builder([{"cpus": 8}, {"cpus": 8}], None, [mkjob(1, n=3, cpus=1), mkjob(2, n=2, cpus=8)])
    plan = sched(view)
    assert starts(plan) == {2: [0, 1]}
    assert plan.reasons == {1: REASON_NODES_UNAVAILABLE}  # only two nodes in the partition


def test_memory_must_fit(sched, view_builder, mkjob):
    view = view_builder([{"cpus": 8, "mem": 4}, {"cpus": 8, "mem": 16}, {"cpus": 8, "mem": 16, "mem_free": 7}],
                        None, [mkjob(1, cpus=1, mem_gib=10), mkjob(2, cpus=1, mem_gib=8), mkjob(3, cpus=1, mem_gib=2)])
    plan = sched(view)
    assert starts(plan) == {1: [1]}
    assert plan.reasons == {2: REASON_RESOURCE, 3: REASON_PRIORITY}
    view = view_builder([{"cpus": 8, "mem": 4}], None, [mkjob(1, cpus=1, mem_gib=8), mkjob(2, cpus=1, mem_gib=4)])
    plan = sched(view)
    assert starts(plan) == {2: [0]}
    assert plan.reasons == {1: REASON_NODES_UNAVAILABLE}


def test_best_fit_prefers_less_free_memory_at_equal_cpus(sched, view_builder, mkjob):
    view = view_builder([{"cpus": 8, "mem": 256}, {"cpus": 8, "mem": 16}], None, [mkjob(1, cpus=2, mem_gib=1)])
    assert starts(sched(view)) == {1: [1]}


def test_gres_typed_and_untyped(sched, view_builder, mkjob):
    nodes = [
        {"cpus": 16, "gres": {"gpu:a100": 2}},
        {"cpus": 16, "gres": {"gpu:v100": 4}},
        {"cpus": 16, "gres": {"gpu:a100": 1, "gpu:v100": 1}},
        {"cpus": 16},
    ]
    jobs = [
        mkjob(1, cpus=1, gres_per_node={"gpu:v100": 3}),   # only node 1
        mkjob(2, cpus=1, gres_per_node={"gpu": 2}),        # any type: node 0 (a100 x2) is the lowest index
        mkjob(3, cpus=1, gres_per_node={"gpu": 2}),        # node 2 has one a100 + one v100
        mkjob(4, cpus=1, gres_per_node={"gpu": 1}),        # node 1 has one v100 left
        mkjob(5, cpus=1, gres_per_node={"gpu:a100": 1}),   # no a100 left anywhere
        mkjob(6, cpus=1),
    ]
    plan = sched(view_builder(nodes, None, jobs))
    assert starts(plan) == {1: [1], 2: [0], 3: [2], 4: [1]}
    assert plan.reasons == {5: REASON_RESOURCE, 6: REASON_PRIORITY}


def test_gres_never_fit_and_combined_family(sched, view_builder, mkjob):
    nodes = [{"cpus": 16, "gres": {"gpu:a100": 3}}, {"cpus": 16}]
    jobs = [
        mkjob(1, cpus=1, gres_per_node={"gpu:h100": 1}),              # no such type: never
        mkjob(2, cpus=1, gres_per_node={"gpu": 4}),                   # more than any node has: never
        mkjob(3, cpus=1, gres_per_node={"gpu:a100": 2, "gpu": 2}),    # 4 of the family on one node: never
        mkjob(4, cpus=1, gres_per_node={"gpu:a100": 2, "gpu": 1}),    # exactly 3: fits
        mkjob(5, cpus=1, gres_per_node={"gpu": 0}),                   # zero gres = no gres: CPU node (best fit)
    ]
    plan = sched(view_builder(nodes, None, jobs))
    assert starts(plan) == {4: [0], 5: [0]}
    assert plan.reasons == {1: REASON_NODES_UNAVAILABLE, 2: REASON_NODES_UNAVAILABLE, 3: REASON_NODES_UNAVAILABLE}


def test_gres_free_is_respected(sched, view_builder, mkjob):
    nodes = [{"cpus": 16, "gres": {"gpu:a100": 4}, "gres_free": {"gpu:a100": 1}}]
    plan = sched(view_builder(nodes, None, [mkjob(1, gres_per_node={"gpu": 2}), mkjob(2, gres_per_node={"gpu": 1})]))
    assert starts(plan) == {}
    assert plan.reasons == {1: REASON_RESOURCE, 2: REASON_PRIORITY}


def test_nodelist_all_listed_nodes_are_used(sched, view_builder, mkjob):
    nodes = [{"cpus": 8, "free": 2}, {"cpus": 8}, {"cpus": 8}, {"cpus": 8}]
    plan = sched(view_builder(nodes, None, [mkjob(1, n=2, cpus=2, nodelist={"n3", "n1"})]))
    assert starts(plan) == {1: [1, 3]}  # best fit would have been node 0


def test_nodelist_as_candidate_filter_and_blocking(sched, view_builder, mkjob):
    nodes = [{"cpus": 8}, {"cpus": 8, "free": 4}, {"cpus": 8, "free": 1}, {"cpus": 8}]
    jobs = [
        mkjob(1, cpus=2, nodelist={"n0", "n1", "n2"}),  # 1 of 3: best fit among them is node 1
        mkjob(2, cpus=4, nodelist={"n2"}),              # node 2 busy: Resource, blocks the partition
        mkjob(3, cpus=1),
    ]
    plan = sched(view_builder(nodes, None, jobs))
    assert starts(plan) == {1: [1]}
    assert plan.reasons == {2: REASON_RESOURCE, 3: REASON_PRIORITY}


def test_nodelist_outside_partition_or_down_never_fits(sched, view_builder, mkjob):
    nodes = [{"cpus": 8}, {"cpus": 8}, {"cpus": 8, "usable": False}]
    jobs = [
        mkjob(1, "a", cpus=1, nodelist={"n1"}),      # n1 is not in partition a
        mkjob(2, "a", cpus=1, nodelist={"nope"}),    # unknown node
        mkjob(3, "a", cpus=1, nodelist={"n2"}),      # down node
        mkjob(4, "a", n=2, cpus=1, nodelist={"n0"}),  # more nodes than listed
        mkjob(5, "a", cpus=1),
    ]
    plan = sched(view_builder(nodes, {"a": [0, 2], "b": [1]}, jobs))
    assert starts(plan) == {5: [0]}
    assert plan.reasons == {1: REASON_NODES_UNAVAILABLE, 2: REASON_NODES_UNAVAILABLE,
                            3: REASON_NODES_UNAVAILABLE, 4: REASON_NODES_UNAVAILABLE}


def test_exclude(sched, view_builder, mkjob):
    nodes = [{"cpus": 8, "free": 2}, {"cpus": 8}, {"cpus": 8}]
    jobs = [
        mkjob(1, cpus=2, exclude={"n0"}),               # best fit would be node 0
        mkjob(2, n=2, cpus=1, exclude={"n1", "zz"}),    # unknown names are ignored
        mkjob(3, cpus=1, exclude={"n0", "n1", "n2"}),   # nothing left: never fits
        mkjob(4, cpus=8, exclude={"n2"}),               # node 1 has 6 left: Resource
    ]
    plan = sched(view_builder(nodes, None, jobs))
    assert starts(plan) == {1: [1], 2: [0, 2]}
    assert plan.reasons == {3: REASON_NODES_UNAVAILABLE, 4: REASON_RESOURCE}


def test_exclusive_needs_an_idle_node_and_takes_it_whole(sched, view_builder, mkjob):
    nodes = [{"cpus": 8, "free": 7, "njobs": 1}, {"cpus": 16}, {"cpus": 8}]
    jobs = [
        mkjob(1, cpus=1, exclusive=True),   # idle nodes: 1 and 2; smallest first -> node 2
        mkjob(2, cpus=1),                   # node 2 is taken whole; best fit is node 0 (7 free)
        mkjob(3, cpus=1, exclusive=True),   # node 1 is the last idle node
        mkjob(4, cpus=1, exclusive=True),   # node 0 has a job: Resource
        mkjob(5, cpus=1),
    ]
    plan = sched(view_builder(nodes, None, jobs))
    assert starts(plan) == {1: [2], 2: [0], 3: [1]}
    assert plan.reasons == {4: REASON_RESOURCE, 5: REASON_PRIORITY}


def test_exclusive_node_with_running_exclusive_job_is_not_used(sched, view_builder, mkjob):
    nodes = [{"cpus": 8, "free": 0, "mem_free": 0, "njobs": 1}, {"cpus": 8}]
    plan = sched(view_builder(nodes, None, [mkjob(1, cpus=1), mkjob(2, n=2, cpus=1)]))
    assert starts(plan) == {1: [1]}
    assert plan.reasons == {2: REASON_RESOURCE}


def test_unusable_nodes_are_skipped(sched, view_builder, mkjob):
    nodes = [{"cpus": 64, "usable": False}, {"cpus": 8}]
    plan = sched(view_builder(nodes, None, [mkjob(1, cpus=32), mkjob(2, cpus=4)]))
    assert starts(plan) == {2: [1]}
    assert plan.reasons == {1: REASON_NODES_UNAVAILABLE}


def test_never_fit_does_not_block(sched, view_builder, mkjob):
    jobs = [mkjob(1, cpus=64), mkjob(2, cpus=2, mem_gib=1000), mkjob(3, cpus=2), mkjob(4, "nope", cpus=1)]
    plan = sched(view_builder([{"cpus": 32}], None, jobs))
    assert starts(plan) == {3: [0]}
    assert plan.reasons == {1: REASON_NODES_UNAVAILABLE, 2: REASON_NODES_UNAVAILABLE,
                            4: REASON_NODES_UNAVAILABLE}


def test_cpu_and_memory_on_different_nodes_never_fits(sched, view_builder, mkjob):
    nodes = [{"cpus": 32, "mem": 8}, {"cpus": 4, "mem": 256}]
    plan = sched(view_builder(nodes, None, [mkjob(1, cpus=16, mem_gib=64), mkjob(2, cpus=2)]))
    assert starts(plan) == {2: [1]}
    assert plan.reasons == {1: REASON_NODES_UNAVAILABLE}


def test_ineligible_jobs_keep_their_reason_and_do_not_block(sched, view_builder, mkjob):
    view = view_builder([{"cpus": 8}], None, [
        mkjob(1, cpus=8, held=True),
        mkjob(2, cpus=8, begin_time=NOW + 60),
        mkjob(3, cpus=8, account="bad"),
        mkjob(4, cpus=8, time_limit=7200),
        mkjob(5, cpus=1, begin_time=NOW - 60, account="ok"),
    ], p={"denied_accounts": frozenset({"bad"}), "max_time_limit": 3600})
    plan = sched(view)
    assert starts(plan) == {5: [0]}
    assert plan.reasons == {1: REASON_HELD, 2: REASON_BEGIN_TIME, 3: REASON_ACCOUNT, 4: REASON_PARTITION_LIMIT}
    view = view_builder([{"cpus": 8}], None, [mkjob(1, account="x"), mkjob(2, account="y")],
                        p={"allowed_accounts": frozenset({"y"})})
    plan = sched(view)
    assert starts(plan) == {2: [0]}
    assert plan.reasons == {1: REASON_ACCOUNT}


def test_fractional_cpus(sched, view_builder, mkjob):
    jobs = [mkjob(i, cpus=0.1) for i in range(1, 11)] + [mkjob(11, cpus=0.5), mkjob(12, cpus=0.5)]
    plan = sched(view_builder([{"cpus": 1}, {"cpus": 1, "free": 0.5}], None, jobs))
    # best fit fills the half-free node first (5 x 0.1), then the other (5 x 0.1 + 0.5)
    assert starts(plan) == {**{i: [1] for i in range(1, 6)}, **{i: [0] for i in range(6, 12)}}
    assert plan.reasons == {12: REASON_RESOURCE}


def test_zero_cpu_job_can_use_a_node_with_no_cpu_free(sched, view_builder, mkjob):
    nodes = [{"cpus": 8, "free": 0, "njobs": 1}, {"cpus": 8}]
    plan = sched(view_builder(nodes, None, [mkjob(1, cpus=0, mem_gib=1)]))
    assert starts(plan) == {1: [0]}


def test_empty_inputs(sched, view_builder, mkjob):
    plan = sched(view_builder([], {}, [mkjob(1)]))
    assert plan.starts == [] and plan.reasons == {1: REASON_NODES_UNAVAILABLE}
    plan = sched(view_builder([{"cpus": 4}], None, []))
    assert plan.starts == [] and plan.reasons == {} and plan.considered == 0


def test_view_is_not_modified_and_plan_is_deterministic(sched, view_builder, mkjob):
    rng = random.Random(7)
    nodes = [{"cpus": rng.choice((4, 8, 16)), "gres": {"gpu:a100": 2} if i % 5 == 0 else None} for i in range(30)]
    jobs = [mkjob(i, n=rng.choice((1, 1, 2)), cpus=rng.choice((1, 2, 4)), priority=float(rng.randint(0, 3)),
                  gres_per_node={"gpu": 1} if i % 7 == 0 else None, exclusive=i % 11 == 0) for i in range(1, 200)]
    view = view_builder(nodes, {"p": range(30), "q": range(10, 30)}, jobs)
    snapshot = [(n.cpus_free, n.mem_free, dict(n.gres_free), n.njobs, n.usable) for n in view.nodes]
    first = sched(view)
    assert [(n.cpus_free, n.mem_free, dict(n.gres_free), n.njobs, n.usable) for n in view.nodes] == snapshot
    second = sched(view)
    shuffled = list(view.pending)
    rng.shuffle(shuffled)
    third = sched(ClusterView(view.nodes, view.partitions, shuffled))
    for other in (second, third):
        assert other.starts == first.starts
        assert other.reasons == first.reasons


def test_batch_size_limits_the_jobs_examined(view_builder, mkjob):
    s = FifoScheduler()
    s.crane_plugin_configure(settings={"batch_size": 2})
    plan = s.schedule(view_builder([{"cpus": 8}], None, [mkjob(i) for i in range(1, 5)]), NOW)
    assert starts(plan) == {1: [0], 2: [0]}
    assert plan.reasons == {3: REASON_PRIORITY, 4: REASON_PRIORITY}
    assert plan.considered == 2
