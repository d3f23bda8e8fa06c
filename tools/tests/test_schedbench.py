"""``crane_tools.schedbench``: synthetic cluster, plan validation and the benchmark's JSON."""

from __future__ import annotations

import json

import pytest
from crane_kernel.sched_types import ClusterView, Plan, SchedJob, SchedNode, SchedPartition
from crane_tools import schedbench

KEYS = {"cycle_s", "first_cycle_s", "decisions_per_s", "first_decisions_per_s", "started", "reserved", "nodes",
        "jobs", "scheduler", "valid", "considered", "reasons", "problems"}


def test_small_run_reports_valid_json(capsys):
    pytest.importorskip("crane_sched_fifo")
    rc = schedbench.main(["--nodes", "200", "--jobs", "2000", "--scheduler", "fifo", "--json", "--seed", "3"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert KEYS <= set(res)
    assert res["valid"] is True and res["problems"] == []
    assert (res["nodes"], res["jobs"], res["scheduler"]) == (200, 2000, "fifo")
    assert res["considered"] == 2000
    assert 0 < res["started"] <= 2000
    assert res["cycle_s"] <= res["first_cycle_s"]
    assert res["decisions_per_s"] > 0
    assert sum(res["reasons"].values()) + res["started"] == 2000


def test_run_sched_bench_small_workload():
    pytest.importorskip("crane_sched_fifo")
    res = schedbench.run_sched_bench(100, 1000, "fifo", seed=2, running_fraction=0.3, workload="small", repeat=1)
    assert res["valid"] is True
    assert res["started"] > 100


def test_unknown_scheduler_is_a_one_line_error(capsys):
    assert schedbench.main(["--nodes", "10", "--jobs", "10", "--scheduler", "no-such"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "'no-such' is not installed (installed:" in err
    with pytest.raises(schedbench.SchedulerNotFoundError):
        schedbench.run_sched_bench(10, 10, "no-such")


def test_build_cluster_is_deterministic_and_consistent():
    a = schedbench.build_cluster(300, 500, seed=5)
    b = schedbench.build_cluster(300, 500, seed=5)
    assert [(n.cpus_free, n.mem_free, n.gres_free) for n in a.nodes] == [(n.cpus_free, n.mem_free, n.gres_free)
                                                                           for n in b.nodes]
    assert [(j.job_id, j.partition, j.cpus_per_node) for j in a.pending] == [
        (j.job_id, j.partition, j.cpus_per_node) for j in b.pending]
    assert set(a.partitions) == {"cpu", "bigmem", "gpu", "debug"}
    for n in a.nodes:
        assert 0 <= n.cpus_free <= n.cpus_total and 0 <= n.mem_free <= n.mem_total
    used = {}
    for r in a.running:
        for i in r.nodes:
            used[i] = used.get(i, 0.0) + r.cpus_per_node
    for i, c in used.items():
        assert abs(a.nodes[i].cpus_total - a.nodes[i].cpus_free - c) < 1e-9
    assert any(n.gres_total for n in a.nodes)
    assert any(j.gres_per_node for j in a.pending) and any(j.exclusive for j in a.pending)
    assert any(j.nodelist for j in a.pending) and any(j.exclude for j in a.pending)
    assert any(j.node_num > 1 for j in a.pending)


def _view() -> ClusterView:
    nodes = [SchedNode("a", 0, 4.0, 100, gres_total={"gpu:a100": 2}), SchedNode("b", 1, 4.0, 100, njobs=1,
                                                                                cpus_free=2.0)]
    jobs = [SchedJob(1, "p", 1, 2.0, 10), SchedJob(2, "p", 1, 3.0, 10, exclusive=True),
            SchedJob(3, "p", 1, 1.0, 10, gres_per_node={"gpu": 2}, nodelist=frozenset({"a"}))]
    return ClusterView(nodes, {"p": SchedPartition("p", (0, 1))}, jobs)


def _plan(starts, reasons) -> Plan:
    p = Plan()
    p.starts, p.reasons = starts, reasons
    return p


def test_validate_plan_accepts_a_good_plan():
    assert schedbench.validate_plan(_view(), _plan([(1, [1]), (3, [0])], {2: "Resource"})) == []


@pytest.mark.parametrize(("starts", "reasons", "needle"), [
    ([(1, [0]), (2, [0])], {3: "Priority"}, "over-allocated"),
    ([(2, [1])], {1: "Priority", 3: "Priority"}, "exclusive on busy node"),
    ([(1, [0]), (2, [0])], {3: "Priority"}, "exclusive on busy node"),
    ([(3, [1])], {1: "Priority", 2: "Priority"}, "not in its -w list"),
    ([(3, [0]), (3, [0])], {1: "Priority", 2: "Priority"}, "started twice"),
    ([(1, [0, 1])], {2: "Priority", 3: "Priority"}, "node_num"),
    ([(1, [1])], {2: "Priority"}, "pending without a reason"),
    ([(1, [1])], {1: "Priority", 2: "Priority", 3: "Priority"}, "also given a reason"),
    ([(1, [5])], {2: "Priority", 3: "Priority"}, "out of range"),
])
def test_validate_plan_catches_problems(starts, reasons, needle):
    problems = schedbench.validate_plan(_view(), _plan(starts, reasons))
    assert any(needle in p for p in problems), problems


def test_validate_plan_checks_gres():
    view = _view()
    view.pending[2].gres_per_node = {"gpu": 3}
    problems = schedbench.validate_plan(view, _plan([(3, [0])], {1: "Priority", 2: "Priority"}))
    assert any("gres family gpu over-allocated" in p for p in problems)


@pytest.mark.parametrize("scheduler", ["fifo", "easy", "conservative"])
def test_plans_with_reservations_keep_them(scheduler):
    pytest.importorskip("crane_sched_backfill")
    res = schedbench.run_sched_bench(600, 3000, scheduler, seed=4, repeat=1, reservations=6)
    assert res["valid"] is True, res["problems"]
    assert res["reservations"] == 6 and res["started_in_reservations"] > 0


def test_validation_catches_a_start_inside_a_reservation():
    from crane_kernel.sched_types import SchedReservation

    nodes = [SchedNode("n0", 0, 4, 1 << 30, partitions=("p",))]
    job = SchedJob(1, "p", 1, 1.0, 0, 100)
    view = ClusterView(nodes, {"p": SchedPartition("p", (0,))}, [job])
    view.reservations = [SchedReservation("r", schedbench.NOW + 50, schedbench.NOW + 500, (0,))]
    plan = Plan()
    plan.starts.append((1, [0]))
    assert any("breaks a reservation" in p for p in schedbench.validate_plan(view, plan))
@pytest.mark.parametrize("mode", ["REQUEUE", "CANCEL"])  # (SUSPEND frees CPUs only: these jobs' memory is taken)
def test_the_bench_times_the_preempt_plugin_with_the_scheduler(mode):
    """``--preempt``: a high partition preempting the others; the orders it times follow the kernel's rule."""
    from crane_kernel.sched_types import preempt_mode

    res = schedbench.run_sched_bench(300, 3000, "fifo", seed=2, repeat=1, preempt=mode)
    assert res["valid"] and res["preempt"] == mode and res["high_jobs"] > 0
    assert res["preemptors"] > 0 and res["preempted"] >= res["preemptors"]
    assert 0 < res["preempt_s"] <= res["cycle_s"]
    view = schedbench.build_cluster(300, 3000, 2)
    schedbench.configure_preemption(view, mode, seed=2)
    high = [j for j in view.pending if j.partition == "high"]
    assert high and all(preempt_mode(high[0], r, view) == mode for r in view.running if not r.exclusive)
