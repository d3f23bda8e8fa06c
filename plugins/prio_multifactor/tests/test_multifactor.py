"""Multifactor priority: each factor, weights, caps, decay, favor-small, pinned priority, state, speed."""

from __future__ import annotations

import time

import pluggy
import pytest
from crane_kernel import hookspecs
from crane_kernel.sched_types import ClusterView, SchedJob, SchedNode, SchedPartition
from crane_prio_multifactor import MultifactorPriority
from crane_prio_multifactor.fairshare import UsageLedger
from crane_prio_multifactor.settings import parse_duration

ONLY = {"WeightAge": 0, "WeightFairShare": 0, "WeightJobSize": 0, "WeightPartition": 0, "WeightQoS": 0}


def _view(nodes: int = 10, cpus: float = 4.0, parts: dict[str, int] | None = None) -> ClusterView:
    ns = [SchedNode(f"n{i}", i, cpus, 0) for i in range(nodes)]
    parts = parts or {"p": 0}
    return ClusterView(ns, {name: SchedPartition(name, tuple(range(nodes)), prio) for name, prio in parts.items()}, [])


def _plugin(**weights: float) -> MultifactorPriority:
    m = MultifactorPriority()
    m.crane_plugin_configure(settings={**ONLY, **weights})
    return m


def test_age_factor_and_cap() -> None:
    m = _plugin(WeightAge=1000, MaxAge=1000)
    jobs = [SchedJob(1, "p", submit_time=0.0), SchedJob(2, "p", submit_time=500.0),
            SchedJob(3, "p", submit_time=-5000.0), SchedJob(4, "p", submit_time=2000.0)]
    assert m.crane_job_priorities(jobs=jobs, view=_view(), now=1000.0) == pytest.approx([1000, 500, 1000, 0])


def test_max_age_accepts_slurm_durations() -> None:
    assert parse_duration("7-0", "x") == 7 * 86400
    assert parse_duration("1-02:03:04", "x") == 86400 + 2 * 3600 + 3 * 60 + 4
    assert parse_duration("02:00:00", "x") == 7200
    assert parse_duration("10:30", "x") == 630
    assert parse_duration(90, "x") == 90
    with pytest.raises(ValueError):
        parse_duration("soon", "x")


def test_size_factor_and_favor_small() -> None:
    view = _view(nodes=10, cpus=4.0)  # 40 CPUs, 10 nodes
    jobs = [SchedJob(1, "p", node_num=10, cpus_per_node=4.0), SchedJob(2, "p", node_num=1, cpus_per_node=2.0)]
    big = _plugin(WeightJobSize=100)
    # job 2: cpu term 2/40, node term 1/10 -> mean 0.075
    assert big.crane_job_priorities(jobs=jobs, view=view, now=0.0) == pytest.approx([100, 7.5])
    small = _plugin(WeightJobSize=100, FavorSmall=True)
    assert small.crane_job_priorities(jobs=jobs, view=view, now=0.0) == pytest.approx([0, 92.5])


def test_partition_and_qos_factors() -> None:
    view = _view(parts={"low": 1, "high": 4})
    jobs = [SchedJob(1, "low", qos="normal"), SchedJob(2, "high", qos="urgent"), SchedJob(3, "high", qos="other")]
    m = _plugin(WeightPartition=100, WeightQoS=10, QoSPriority={"normal": 5, "urgent": 20})
    assert m.crane_job_priorities(jobs=jobs, view=view, now=0.0) == pytest.approx([25 + 2.5, 100 + 10, 100])


def test_weights_add_up() -> None:
    m = _plugin(WeightAge=2, WeightFairShare=3, WeightJobSize=5, WeightPartition=7, WeightQoS=11, MaxAge=100,
                QoSPriority={"q": 1})
    view = _view(nodes=1, cpus=1.0, parts={"p": 1})
    job = SchedJob(1, "p", submit_time=0.0, qos="q", account="a")
    # age 1, fairshare 1 (no usage), size 1, partition 1, qos 1
    assert m.crane_job_priorities(jobs=[job], view=view, now=500.0) == pytest.approx([2 + 3 + 5 + 7 + 11])


def test_pinned_priority_wins() -> None:
    m = _plugin(WeightAge=1000, MaxAge=10)
    jobs = [SchedJob(1, "p", submit_time=0.0), SchedJob(2, "p", submit_time=0.0, pinned_priority=-3.5)]
    assert m.crane_job_priorities(jobs=jobs, view=_view(), now=100.0) == pytest.approx([1000, -3.5])


def test_decay_half_life() -> None:
    led = UsageLedger(half_life=100.0)
    led.record("a", 1000.0, 0.0)
    assert led.usage("a", 0.0) == pytest.approx(1000)
    assert led.usage("a", 100.0) == pytest.approx(500)
    assert led.usage("a", 300.0) == pytest.approx(125)
    led.record("a", 200.0, 100.0)  # 500 + 200
    assert led.usage("a", 200.0) == pytest.approx(350)
    led.record("a", 400.0, 0.0)  # out of order: counts 400 * 2^-1 as of t=100
    assert led.usage("a", 100.0) == pytest.approx(900)
    assert led.usage("nobody", 50.0) == 0.0
    flat = UsageLedger(half_life=0.0)
    flat.record("a", 10.0, 0.0)
    flat.record("a", 10.0, 1e9)
    assert flat.usage("a", 2e9) == 20.0


def test_fairshare_formula() -> None:
    m = _plugin(WeightFairShare=1000, HalfLife=100)
    m.record_usage("heavy", 3000.0, 0.0)
    m.record_usage("light", 1000.0, 0.0)
    jobs = [SchedJob(1, "p", account="heavy"), SchedJob(2, "p", account="light"), SchedJob(3, "p", account="new")]
    # three known accounts with one share each: S = 1/3; U = 0.75, 0.25, 0
    got = m.crane_job_priorities(jobs=jobs, view=_view(), now=100.0)  # decay does not change the ratios
    assert got == pytest.approx([1000 * 2 ** (-0.75 * 3), 1000 * 2 ** (-0.25 * 3), 1000])


def test_fairshare_shares_and_decay_over_time() -> None:
    m = _plugin(WeightFairShare=1, HalfLife=100)
    m.crane_plugin_configure(settings={**ONLY, "WeightFairShare": 1, "HalfLife": 100,
                                       "Shares": {"a": 3, "b": 1, "z": 0}})
    m.record_usage("a", 100.0, 0.0)
    m.record_usage("b", 100.0, 200.0)
    jobs = [SchedJob(1, "p", account="a"), SchedJob(2, "p", account="b"), SchedJob(3, "p", account="z")]
    # at t=200: a decayed to 25, b 100 -> U = 0.2, 0.8; S = 0.75, 0.25
    got = m.crane_job_priorities(jobs=jobs, view=_view(), now=200.0)
    assert got == pytest.approx([2 ** (-0.2 / 0.75), 2 ** (-0.8 / 0.25), 0.0])


def test_state_round_trip() -> None:
    m = _plugin(WeightFairShare=1)
    m.record_usage("a", 50.0, 10.0)
    saved = m.state()
    other = MultifactorPriority()
    other.load_state(saved)
    assert other.ledger.usage("a", 10.0) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        other.load_state({"version": 99})


def test_settings_validation_and_aliases() -> None:
    m = MultifactorPriority()
    m.crane_plugin_configure(settings={"PriorityWeightAge": 5, "PriorityMaxAge": "1-0", "PriorityDecayHalfLife": 60,
                 "PriorityFavorSmall": True})
    assert m.settings.weight_age == 5 and m.settings.max_age == 86400
    assert m.settings.half_life == 60 and m.ledger.half_life == 60 and m.settings.favor_small
    for bad in ({"WeightAge": -1}, {"Bogus": 1}, {"FavorSmall": "yes"}, {"WeightAge": 1, "PriorityWeightAge": 2},
                {"QoSPriority": [1]}, {"Shares": {"a": -1}}):
        with pytest.raises(ValueError):
            m.crane_plugin_configure(settings=bad)


def test_job_finished_hook_charges_cpu_seconds() -> None:
    m = _plugin(WeightFairShare=1, HalfLife=0)
    pm = pluggy.PluginManager("crane")
    pm.add_hookspecs(hookspecs)
    pm.register(m)
    job = SchedJob(1, "p", node_num=2, cpus_per_node=4.0, account="acct")
    pm.hook.crane_job_finished(job=job, start_time=100.0, end_time=160.0)
    assert m.ledger.usage("acct", 200.0) == pytest.approx(2 * 4 * 60)
    pm.hook.crane_job_finished(job=object(), start_time=0.0, end_time=1.0)  # malformed: ignored, no raise
    pm.hook.crane_job_finished(job=job, start_time=50.0, end_time=50.0)  # never ran: nothing charged
    assert m.ledger.accounts() == ["acct"]


def test_hook_through_pluggy() -> None:
    pm = pluggy.PluginManager("crane")
    pm.add_hookspecs(hookspecs)
    pm.register(_plugin(WeightAge=10, MaxAge=10))
    jobs = [SchedJob(1, "p", submit_time=0.0)]
    assert pm.hook.crane_job_priorities(jobs=jobs, view=_view(), now=5.0) == pytest.approx([5.0])


def test_hundred_thousand_jobs_fast() -> None:
    nodes = [SchedNode(f"n{i}", i, 64.0, 0) for i in range(1000)]
    parts = {"p": SchedPartition("p", tuple(range(1000)), 10), "q": SchedPartition("q", tuple(range(500)), 5)}
    jobs = [SchedJob(i, "p" if i % 3 else "q", 1 + i % 4, 2.0, submit_time=i * 0.5, account=f"a{i % 50}",
                     qos="high" if i % 7 == 0 else "normal", pinned_priority=5.0 if i % 1000 == 0 else None)
            for i in range(100_000)]
    view = ClusterView(nodes, parts, jobs)
    m = MultifactorPriority()
    m.crane_plugin_configure(settings={"WeightJobSize": 100, "QoSPriority": {"high": 10, "normal": 1}})
    for a in range(50):
        m.record_usage(f"a{a}", 1000.0 * a, 100.0)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        prios = m.crane_job_priorities(jobs=jobs, view=view, now=60_000.0)
        best = min(best, time.perf_counter() - t0)
    assert len(prios) == 100_000 and prios[0] == 5.0
    assert best < 0.3


def test_qos_factor_from_the_account_database_with_the_setting_as_override() -> None:
    """``job.qos_priority`` (the account DB's) counts unless ``QoSPriority`` names the QoS."""
    view = _view()
    jobs = [SchedJob(1, "p", qos="low", qos_priority=10), SchedJob(2, "p", qos="high", qos_priority=40),
            SchedJob(3, "p", qos="gone"), SchedJob(4, "p", qos="pinned", qos_priority=1000)]
    m = _plugin(WeightQoS=100, QoSPriority={"pinned": 20})
    assert m.priorities(jobs, view, 0.0).tolist() == pytest.approx([25.0, 100.0, 0.0, 50.0])
    m = _plugin(WeightQoS=100)
    assert m.priorities(jobs[:3], view, 0.0).tolist() == pytest.approx([25.0, 100.0, 0.0])
