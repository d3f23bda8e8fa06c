"""Backfill scheduler on hand-made views: node-level EASY/conservative, fit rules, reasons, settings."""

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
    REASON_RESOURCE_RESERVED,
    ClusterView,
    SchedJob,
    SchedNode,
    SchedPartition,
    SchedRunning,
)
from crane_sched_backfill import BackfillScheduler, ConservativeScheduler, EasyScheduler

GB = 1 << 30


def node(i: int, cpus: float = 4.0, mem: int = 16 * GB, gres: dict | None = None, parts: tuple = ("p",)) -> SchedNode:
    return SchedNode(f"n{i}", i, cpus, mem, gres_total=gres, partitions=parts)


def view_of(nodes: list[SchedNode], running: list[SchedRunning], pending: list[SchedJob],
            parts: dict[str, SchedPartition] | None = None) -> ClusterView:
    """A view with running jobs subtracted from the nodes."""
    for r in running:
        for i in r.nodes:
            nd = nodes[i]
            nd.cpus_free -= r.cpus_per_node
            nd.mem_free -= r.mem_per_node
            nd.njobs += 1
            for k, v in (r.gres_per_node or {}).items():
                nd.gres_free[k] -= v
    parts = parts or {"p": SchedPartition("p", tuple(range(len(nodes))))}
    return ClusterView(nodes, parts, pending, running)


def job(jid: int, n: int = 1, cpus: float = 1.0, limit: int = 100, submit: float | None = None,
        **kw: object) -> SchedJob:
    return SchedJob(jid, kw.pop("partition", "p"), n, cpus, kw.pop("mem", 0), limit,  # type: ignore[arg-type]
                    submit_time=float(jid) if submit is None else submit, **kw)  # type: ignore[arg-type]


def started(plan: object) -> dict[int, list[int]]:
    return dict(plan.starts)  # type: ignore[attr-defined]


def test_easy_node_level_shadow() -> None:
    """J1 (4 CPUs) is reserved on n1 at 50; J2 would hold n1's CPUs past 50; J3 ends by 50."""
    nodes = [node(0), node(1)]
    running = [SchedRunning(100, (0,), 4.0, 0, 100.0), SchedRunning(101, (1,), 2.0, 0, 50.0)]
    pending = [job(1, cpus=4.0, limit=10), job(2, cpus=2.0, limit=100), job(3, cpus=2.0, limit=40)]
    plan = EasyScheduler().schedule(view_of(nodes, running, pending), now=0.0)
    assert started(plan) == {3: [1]}
    assert plan.reserved == {1: 50.0}
    assert plan.reasons == {1: REASON_RESOURCE, 2: REASON_RESOURCE_RESERVED}


def test_easy_backfills_on_nodes_the_reservation_does_not_need() -> None:
    """J1 needs 1 whole node at 50: it takes n1; a long job may still run on n2."""
    nodes = [node(0), node(1), node(2)]
    running = [SchedRunning(100, (0,), 4.0, 0, 100.0), SchedRunning(101, (1,), 4.0, 0, 50.0),
               SchedRunning(102, (2,), 2.0, 0, 80.0)]
    pending = [job(1, n=1, cpus=4.0, limit=10), job(2, cpus=2.0, limit=1000)]
    plan = EasyScheduler().schedule(view_of(nodes, running, pending), now=0.0)
    assert started(plan) == {2: [2]}
    assert plan.reserved == {1: 50.0}


def test_conservative_protects_every_reservation() -> None:
    nodes = [node(0, cpus=1.0), node(1, cpus=1.0)]
    running = [SchedRunning(100, (0,), 1.0, 0, 100.0)]
    pending = [job(1, n=2, limit=100), job(2, n=1, limit=300), job(3, n=1, limit=50)]
    easy = EasyScheduler().schedule(view_of([node(0, cpus=1.0), node(1, cpus=1.0)],
                                            [SchedRunning(100, (0,), 1.0, 0, 100.0)], list(pending)), now=0.0)
    assert started(easy) == {3: [1]}  # J2 would delay J1; J3 ends by 100
    cons = ConservativeScheduler().schedule(view_of(nodes, running, pending), now=0.0)
    assert started(cons) == {3: [1]}
    assert cons.reserved == {1: 100.0, 2: 200.0}
    assert cons.reasons == {1: REASON_RESOURCE, 2: REASON_RESOURCE}


@pytest.mark.parametrize("cls", [EasyScheduler, ConservativeScheduler])
def test_memory_gres_exclusive_and_node_lists(cls: type) -> None:
    nodes = [node(0, mem=4 * GB), node(1, gres={"gpu:a100": 2}), node(2), node(3)]
    running = [SchedRunning(100, (3,), 1.0, 0, 1000.0)]
    pending = [
        job(1, mem=8 * GB),  # not on n0
        job(2, gres_per_node={"gpu": 1}),  # only n1
        job(3, exclusive=True),  # an idle node
        job(4, nodelist=frozenset({"n3"})),  # only n3 (1 CPU busy, 3 free)
        job(5, cpus=4.0, exclude=frozenset({"n0", "n1", "n2"})),  # only n3, which is busy: reservation
    ]
    plan = cls().schedule(view_of(nodes, running, pending), now=0.0)
    s = started(plan)
    assert s[2] == [1]
    assert s[4] == [3]
    assert s[1][0] in (1, 2, 3) and s[3][0] in (0, 2) and s[1] != s[3]
    assert plan.reserved == {5: 1000.0}
    assert 5 not in s


def test_exclusive_needs_an_empty_node_and_blocks_it() -> None:
    nodes = [node(0), node(1)]
    running = [SchedRunning(100, (0,), 1.0, 0, 50.0)]
    pending = [job(1, exclusive=True, limit=100), job(2, cpus=1.0, limit=200)]
    plan = EasyScheduler().schedule(view_of(nodes, running, pending), now=0.0)
    assert started(plan) == {1: [1], 2: [0]}  # n1 is the only empty node; J2 fits n0
    # a running exclusive job blocks its node for everyone
    nodes = [node(0), node(1)]
    running = [SchedRunning(100, (0,), 1.0, 0, 50.0), SchedRunning(101, (1,), 1.0, 0, 80.0, exclusive=True)]
    plan = EasyScheduler().schedule(view_of(nodes, running, [job(2, cpus=1.0, limit=200)]), now=0.0)
    assert started(plan) == {2: [0]}


def test_ineligible_jobs_get_their_reason_and_block_nobody() -> None:
    nodes = [node(0), node(1, parts=("p", "small"))]
    parts = {"p": SchedPartition("p", (0, 1), allowed_accounts=frozenset({"ok"})),
             "small": SchedPartition("small", (1,), max_time_limit=50)}
    pending = [
        job(1, account="ok", held=True),
        job(2, account="ok", begin_time=10.0),
        job(3, account="nope"),
        job(4, partition="small", limit=100),
        job(5, account="ok", n=3),
        job(6, partition="ghost"),
        job(7, account="ok", nodelist=frozenset({"n9"})),
        job(8, account="ok", cpus=8.0),
        job(9, account="ok", cpus=4.0, n=2),
    ]
    plan = EasyScheduler().schedule(view_of(nodes, [], pending, parts), now=0.0)
    assert started(plan) == {9: [0, 1]}
    assert plan.reasons == {1: REASON_HELD, 2: REASON_BEGIN_TIME, 3: REASON_ACCOUNT, 4: REASON_PARTITION_LIMIT,
                            5: REASON_NODES_UNAVAILABLE, 6: REASON_NODES_UNAVAILABLE, 7: REASON_NODES_UNAVAILABLE,
                            8: REASON_NODES_UNAVAILABLE}


def test_one_easy_reservation_per_partition() -> None:
    nodes = [node(0, cpus=1.0, parts=("a",)), node(1, cpus=1.0, parts=("b",))]
    parts = {"a": SchedPartition("a", (0,)), "b": SchedPartition("b", (1,))}
    running = [SchedRunning(100, (0,), 1.0, 0, 100.0, partition="a"),
               SchedRunning(101, (1,), 1.0, 0, 200.0, partition="b")]
    pending = [job(1, partition="a"), job(2, partition="b"), job(3, partition="a"), job(4, partition="b")]
    plan = EasyScheduler().schedule(view_of(nodes, running, pending, parts), now=0.0)
    assert plan.starts == []
    assert plan.reserved == {1: 100.0, 2: 200.0}
    assert plan.reasons == {1: REASON_RESOURCE, 2: REASON_RESOURCE, 3: REASON_PRIORITY, 4: REASON_PRIORITY}
    sched = BackfillScheduler()
    sched.crane_plugin_configure(settings={"partitions": {"b": {"mode": "conservative"}}})
    plan = sched.schedule(view_of([node(0, cpus=1.0, parts=("a",)), node(1, cpus=1.0, parts=("b",))],
                                  [SchedRunning(100, (0,), 1.0, 0, 100.0), SchedRunning(101, (1,), 1.0, 0, 200.0)],
                                  list(pending), parts), now=0.0)
    assert plan.reserved == {1: 100.0, 2: 200.0, 4: 300.0}


def test_window_and_depth() -> None:
    def fresh() -> ClusterView:
        nodes = [node(0, cpus=1.0), node(1, cpus=1.0)]
        running = [SchedRunning(100, (0,), 1.0, 0, 100.0), SchedRunning(101, (1,), 1.0, 0, 1000.0)]
        return view_of(nodes, running, [job(1, n=2), job(2), job(3, limit=50)])

    s = ConservativeScheduler()
    s.crane_plugin_configure(settings={"window": 500})
    plan = s.schedule(fresh(), now=0.0)
    assert plan.reserved == {2: 100.0, 3: 200.0}  # J1 (both nodes) cannot start before 1000 > window
    assert plan.reasons[1] == REASON_RESOURCE
    s.crane_plugin_configure(settings={"depth": 1})
    plan = s.schedule(fresh(), now=0.0)
    assert plan.reserved == {1: 1000.0}
    assert plan.reasons[2] == REASON_PRIORITY


def test_max_jobs() -> None:
    s = EasyScheduler()
    s.crane_plugin_configure(settings={"max_jobs": 2})
    nodes = [node(0, cpus=1.0), node(1, cpus=1.0), node(2, cpus=1.0)]
    plan = s.schedule(view_of(nodes, [], [job(1), job(2), job(3)]), now=0.0)
    assert sorted(started(plan)) == [1, 2]
    assert plan.reasons == {3: REASON_PRIORITY} and plan.considered == 2


def test_priority_order() -> None:
    nodes = [node(0, cpus=1.0)]
    pending = [job(1, priority=1.0), job(2, priority=5.0), job(3, priority=5.0, submit=0.5)]
    plan = EasyScheduler().schedule(view_of(nodes, [], pending), now=0.0)
    assert started(plan) == {3: [0]}


def test_view_is_not_modified() -> None:
    nodes = [node(0), node(1)]
    running = [SchedRunning(100, (0,), 4.0, 0, 100.0)]
    v = view_of(nodes, running, [job(1, cpus=2.0), job(2, cpus=4.0, limit=500)])
    before = [(n.cpus_free, n.mem_free, n.njobs, dict(n.gres_free)) for n in v.nodes]
    for cls in (EasyScheduler, ConservativeScheduler):
        for fast in (True, False):
            s = cls()
            s.crane_plugin_configure(settings={"fast_path": fast})
            s.schedule(v, now=0.0)
    assert [(n.cpus_free, n.mem_free, n.njobs, dict(n.gres_free)) for n in v.nodes] == before
    assert len(v.pending) == 2 and len(v.running) == 1


@pytest.mark.parametrize("bad", [{"mode": "greedy"}, {"window": -1}, {"depth": 1.5}, {"nope": 1},
                                 {"partitions": {"a": {"depth": -2}}}, {"partitions": {"a": {"colour": 1}}},
                                 {"fast_path": "yes"}, {"partitions": [1]}])
def test_settings_validation(bad: dict) -> None:
    with pytest.raises(ValueError):
        BackfillScheduler().crane_plugin_configure(settings=bad)


def test_backfill_entry_point_mode() -> None:
    s = BackfillScheduler()
    assert s.settings.for_partition("x").mode == "easy"
    s.crane_plugin_configure(settings={"mode": "conservative", "depth": 7, "window": 60})
    ps = s.settings.for_partition("x")
    assert (ps.mode, ps.depth, ps.window) == ("conservative", 7, 60.0)
    assert ConservativeScheduler().settings.for_partition("x").depth == float("inf")


def _random_view(rng: random.Random, now: float) -> ClusterView:
    n = rng.randint(2, 12)
    nodes = [node(i, cpus=1.0) for i in range(n)]
    free = list(range(n))
    rng.shuffle(free)
    running = []
    jid = 1000
    while free and rng.random() < 0.8:
        k = rng.randint(1, min(3, len(free)))
        held = tuple(sorted(free[:k]))
        del free[:k]
        running.append(SchedRunning(jid, held, 1.0, 0, now + rng.choice([10, 20, 30, 40, 50, 60])))
        jid += 1
    pending = [job(j, n=rng.randint(1, n), limit=rng.choice([5, 10, 25, 40, 100]), submit=float(j))
               for j in range(rng.randint(1, 10))]
    return view_of(nodes, running, pending)


@pytest.mark.parametrize("mode", ["easy", "conservative"])
def test_fast_path_matches_node_level_path(mode: str) -> None:
    """On single-CPU nodes the count path and the node-level path start the same jobs (EASY: also reserve alike)."""
    rng = random.Random(7)
    for _ in range(300):
        v = _random_view(rng, 0.0)
        a, b = BackfillScheduler(), BackfillScheduler()
        a.crane_plugin_configure(settings={"mode": mode})
        b.crane_plugin_configure(settings={"mode": mode, "fast_path": False})
        pa = a.schedule(v, 0.0)
        pb = b.schedule(v, 0.0)
        assert a.last_path == "pool" and b.last_path == "general"
        if mode == "easy":
            assert sorted(started(pa)) == sorted(started(pb))
            assert pa.reserved == pb.reserved
            assert pa.reasons == pb.reasons
        for plan in (pa, pb):  # starts never share a node and only use free nodes
            used = [i for _, ns in plan.starts for i in ns]
            assert len(used) == len(set(used))
            assert all(v.nodes[i].njobs == 0 for i in used)
