"""The fifo plugin's count-based path (crane_sched_toolkit.pool.Pool.fifo) and when it is used."""

from __future__ import annotations

from crane_kernel.sched_types import REASON_PRIORITY, REASON_RESOURCE, SchedRunning
from crane_kernel.sched_types.incremental import IncrementalView
from crane_sched_fifo import FifoScheduler


def _plans(view) -> tuple:  # noqa: ANN001 - a ClusterView
    fast, general = FifoScheduler(), FifoScheduler()
    general.crane_plugin_configure({"fast_path": False})
    a, b = fast.schedule(view, 100.0), general.schedule(view, 100.0)
    return fast, a, b


def test_whole_node_jobs_on_identical_nodes_take_the_count_path_with_the_same_decisions(view_builder, mkjob) -> None:
    build_view, job = view_builder, mkjob
    view = build_view([{"cpus": 4}] * 4, None, [job(1, n=2, cpus=4), job(2, n=3, cpus=4), job(3, n=1, cpus=4)])
    fast, a, b = _plans(view)
    assert fast.last_path == "pool"
    assert [j for j, _ in a.starts] == [j for j, _ in b.starts] == [1]
    assert len(a.starts[0][1]) == 2
    assert a.reasons == b.reasons == {2: REASON_RESOURCE, 3: REASON_PRIORITY}


def test_partial_node_jobs_or_gres_take_the_node_level_path(view_builder, mkjob) -> None:
    build_view, job = view_builder, mkjob
    fast, _, _ = _plans(build_view([{"cpus": 4}] * 2, None, [job(1, cpus=1)]))
    assert fast.last_path == "general"
    fast, _, _ = _plans(build_view([{"cpus": 4, "gres": {"gpu": 1}}, {"cpus": 4}], None, [job(1, cpus=4)]))
    assert fast.last_path == "general"


def test_the_pool_follows_the_views_changes_across_calls(view_builder, mkjob) -> None:
    build_view, job = view_builder, mkjob
    base = build_view([{"cpus": 2}] * 3, None, [])
    view = IncrementalView(base.nodes, base.partitions, [])
    sched = FifoScheduler()
    jobs = {jid: job(jid, n=n, cpus=2) for jid, n in ((1, 2), (2, 2), (3, 1))}
    for j in jobs.values():
        view.add_pending(j)
    view.begin_call()
    plan = sched.schedule(view, 0.0)
    view.end_call()
    assert [j for j, _ in plan.starts] == [1] and plan.reasons == {2: REASON_RESOURCE, 3: REASON_PRIORITY}
    ((_, nodes),) = plan.starts  # the caller starts it where the plan said
    view.remove_pending(jobs[1])
    view.add_running(SchedRunning(1, tuple(nodes), 2.0, 0, 3600.0, partition="p"))
    for i in nodes:
        view.nodes[i].cpus_free, view.nodes[i].njobs = 0.0, 1
    view.add_pending(job(4, n=1, cpus=2))  # only an arrival behind the blocked job: nothing new starts
    view.begin_call()
    plan = sched.schedule(view, 1.0)
    view.end_call()
    assert sched.last_path == "pool" and plan.starts == [] and plan.reasons[4] == REASON_PRIORITY
    assert sched._pool is not None and sched._pool.shortcuts == 1  # decided without walking the queue
