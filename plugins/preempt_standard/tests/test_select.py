"""The preempt_standard plugin's choices, and the kernel's rule function they follow (pure views, no controller)."""

from __future__ import annotations

import pytest
from crane_kernel.sched_types import (
    REASON_NODES_UNAVAILABLE,
    REASON_RESOURCE,
    REASON_WAITING_PREEMPTION,
    ClusterView,
    Plan,
    PreemptOrder,
    PreemptRules,
    SchedJob,
    SchedNode,
    SchedPartition,
    SchedRunning,
    preempt_mode,
)
from crane_preempt_standard import StandardPreempt

GB = 1 << 30


def _view(nodes=2, cpus=4, low_mode="CANCEL", rules=None):
    ns = [SchedNode(f"n{i}", i, float(cpus), 8 * GB, partitions=("low", "high")) for i in range(nodes)]
    parts = {"low": SchedPartition("low", tuple(range(nodes)), 1, preempt_mode=low_mode),
             "high": SchedPartition("high", tuple(range(nodes)), 10)}
    view = ClusterView(ns, parts, [], [])
    view.preemption = rules or PreemptRules()
    return view


def _run(view, jid, nodes, cpus, *, start=0.0, mem=0, part="low", qos="", exclusive=False):
    r = SchedRunning(jid, tuple(nodes), float(cpus), mem, 10_000.0, partition=part, qos=qos, start_time=start,
                     exclusive=exclusive)
    for i in nodes:
        n = view.nodes[i]
        n.cpus_free -= cpus
        n.mem_free -= mem
        n.njobs += 1
    view.running.append(r)
    return r


def _want(view, jid, cpus, *, nodes=1, mem=0, part="high", qos="", reason=REASON_RESOURCE, plan=None):
    job = SchedJob(jid, part, nodes, float(cpus), mem, 3600, qos=qos)
    view.pending.append(job)
    plan = plan or Plan()
    plan.reasons[jid] = reason
    return plan


def _ask(view, plan, **settings):
    plugin = StandardPreempt()
    if settings:
        plugin.crane_plugin_configure(settings)
    plugin.crane_preempt(view=view, plan=plan, now=0.0)
    return plan


def test_the_youngest_victims_that_make_room_and_no_more():
    view = _view(nodes=1)
    _run(view, 1, [0], 2, start=10)
    _run(view, 2, [0], 1, start=30)
    _run(view, 3, [0], 1, start=20)
    plan = _ask(view, _want(view, 9, 2))
    # the two youngest (2, then 3) free two CPUs; 1, the oldest, keeps running
    assert plan.preempt == {2: PreemptOrder(9, "CANCEL"), 3: PreemptOrder(9, "CANCEL")}
    assert plan.preempt_nodes == {9: [0]}
    assert plan.reasons[9] == REASON_WAITING_PREEMPTION
    assert not plan.starts


def test_a_young_victim_too_small_is_put_back():
    view = _view(nodes=1)
    _run(view, 1, [0], 3, start=10)
    _run(view, 2, [0], 1, start=30)
    plan = _ask(view, _want(view, 9, 3))
    # the youngest (1 CPU) is not enough, the older one (3 CPUs) is: 2 is not needed then
    assert plan.preempt == {1: PreemptOrder(9, "CANCEL")}


def test_multi_node_jobs_take_the_nodes_with_the_fewest_victims():
    view = _view(nodes=3)
    _run(view, 1, [0], 2, start=1)
    _run(view, 2, [0], 2, start=2)
    _run(view, 3, [1], 4, start=3)
    _run(view, 4, [2], 4, start=4)
    plan = _ask(view, _want(view, 9, 4, nodes=2))
    assert plan.preempt_nodes == {9: [1, 2]}
    assert set(plan.preempt) == {3, 4}


def test_nothing_when_the_rules_protect_the_running_jobs():
    view = _view(nodes=1, low_mode="OFF")
    _run(view, 1, [0], 4)
    assert _ask(view, _want(view, 9, 4)).preempt == {}
    view = _view(nodes=1)
    _run(view, 1, [0], 4, part="high")  # same partition: no priority over it
    assert _ask(view, _want(view, 9, 4)).preempt == {}


def test_only_jobs_that_wait_for_resources_preempt():
    view = _view(nodes=1)
    _run(view, 1, [0], 4)
    assert _ask(view, _want(view, 9, 4, reason=REASON_NODES_UNAVAILABLE)).preempt == {}


def test_a_job_that_could_never_fit_preempts_nobody():
    view = _view(nodes=1)
    _run(view, 1, [0], 4)
    assert _ask(view, _want(view, 9, 8)).preempt == {}


def test_suspend_frees_cpus_only_and_the_preemptor_starts_at_once():
    view = _view(nodes=1, low_mode="SUSPEND")
    _run(view, 1, [0], 4, mem=6 * GB)
    plan = _ask(view, _want(view, 9, 4, mem=1 * GB))
    assert plan.preempt == {1: PreemptOrder(9, "SUSPEND")}
    assert plan.starts == [(9, [0])] and 9 not in plan.reasons
    # its memory stays with the frozen job: a job that needs it cannot preempt by suspending
    view = _view(nodes=1, low_mode="SUSPEND")
    _run(view, 1, [0], 4, mem=6 * GB)
    assert _ask(view, _want(view, 9, 4, mem=4 * GB)).preempt == {}


def test_an_exclusive_job_is_never_suspended():
    view = _view(nodes=1, low_mode="SUSPEND")
    _run(view, 1, [0], 4, exclusive=True)
    assert _ask(view, _want(view, 9, 1)).preempt == {}


def test_two_preemptors_never_share_a_victim_or_a_room():
    view = _view(nodes=2)
    _run(view, 1, [0], 4)
    _run(view, 2, [1], 4)
    plan = _want(view, 8, 4)
    _want(view, 9, 4, plan=plan)
    view.pending[1].submit_time = 1.0
    _ask(view, plan)
    assert plan.preempt_nodes == {8: [0], 9: [1]}
    assert {v: o.preemptor for v, o in plan.preempt.items()} == {1: 8, 2: 9}


def test_preemptors_in_progress_and_victims_being_preempted_are_left_alone():
    view = _view(nodes=1, rules=PreemptRules(in_progress={9: frozenset({1})}, victims=frozenset({1})))
    _run(view, 1, [0], 4)
    assert _ask(view, _want(view, 9, 4)).preempt == {}
    view = _view(nodes=1, rules=PreemptRules(victims=frozenset({1})))
    _run(view, 1, [0], 4)
    assert _ask(view, _want(view, 8, 4)).preempt == {}


def test_max_preemptors_bounds_a_pass():
    view = _view(nodes=3)
    for i in range(3):
        _run(view, i + 1, [i], 4)
    plan = Plan()
    for jid in (7, 8, 9):
        _want(view, jid, 4, plan=plan)
    _ask(view, plan, max_preemptors=2)
    assert sorted(plan.preempt_nodes) == [7, 8]
    with pytest.raises(ValueError):
        StandardPreempt().crane_plugin_configure({"max_preemptors": -1})
    with pytest.raises(ValueError):
        StandardPreempt().crane_plugin_configure({"victims": 3})


@pytest.mark.parametrize(("low_mode", "high_mode", "expected"), [
    ("REQUEUE", "SUSPEND", "REQUEUE"),   # the victim's QoS says how it is preempted
    ("OFF", "SUSPEND", "SUSPEND"),       # else the preemptor's
    ("OFF", "OFF", "CANCEL"),            # else CANCEL: listing a QoS in Preempt means it may be preempted
])
def test_the_qos_rule_and_its_mode(low_mode, high_mode, expected):
    rules = PreemptRules({"high": frozenset({"low"})}, {"low": low_mode, "high": high_mode})
    view = _view(nodes=1, low_mode="OFF", rules=rules)
    victim = _run(view, 1, [0], 4, part="high", qos="low")
    job = SchedJob(9, "high", 1, 4.0, 0, 60, qos="high")
    assert preempt_mode(job, victim, view) == expected
    assert preempt_mode(SchedJob(10, "high", qos="low"), victim, view) is None        # not in its list
    other = _run(view, 2, [0], 0, part="high", qos="high")
    assert preempt_mode(SchedJob(11, "high", qos="low"), other, view) is None          # no way back


def test_modes_the_kernel_cannot_carry_out_are_not_given():
    rules = PreemptRules(modes=frozenset({"CANCEL"}))
    view = _view(nodes=1, low_mode="REQUEUE", rules=rules)
    victim = _run(view, 1, [0], 4)
    assert preempt_mode(SchedJob(9, "high"), victim, view) is None
