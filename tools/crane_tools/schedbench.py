"""Engine of ``crane bench sched``: time one scheduling cycle of a scheduler plugin on a synthetic cluster.

The scheduler is loaded by name with :func:`crane_kernel.plugins.load_slots`
(stevedore, entry-point group ``crane.scheduler``) and called through the
kernel's ``plugins.hook.crane_schedule`` — the same path cranectld uses — so
the figure is what the controller would see. The synthetic cluster is deterministic for
a given seed. Every plan is checked (:func:`validate_plan`): no node gets more
than it has free, constraints are honoured, every job gets a start or a
reason, and the view is not modified.

Usage::

    python -m crane_tools.schedbench --nodes 10000 --jobs 100000 --scheduler fifo --json
    python -m crane_tools.schedbench --nodes 1000 --jobs 10000 --scheduler easy --cycles 20   # consecutive cycles
    python -m crane_tools.schedbench --nodes 10000 --jobs 100000 --scheduler easy --reservations 10

``--reservations N`` adds N advance reservations (:func:`add_reservations`), and the plan is also
checked against them (the controller's re-check, ``reservation_conflict``).

``--cycles`` runs :mod:`crane_tools.schedcycles` (fresh view per call vs one incremental view).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from crane_kernel.sched_types import (
    ClusterView,
    Plan,
    SchedJob,
    SchedNode,
    SchedPartition,
    SchedReservation,
    SchedRunning,
    reservation_conflict,
)

GiB = 1 << 30
NOW = 1_000_000_000.0
EPS = 1e-6
WORKLOADS = ("mixed", "small", "whole")


class SchedulerNotFoundError(LookupError):
    """The requested scheduler is not installed (the message lists the installed ones)."""


def installed_schedulers() -> list[str]:
    """Names registered in entry-point group ``crane.scheduler``."""
    from crane_kernel.plugins import installed

    return installed("scheduler")


def load_scheduler(name: str, config: Mapping[str, Any] | None = None, preempt: str | None = None) -> tuple[Any, Any]:
    """Load scheduler ``name`` exactly as cranectld does: :func:`crane_kernel.plugins.load_slots`.

    Returns ``(plugin_object, plugins)`` where ``plugins`` is the
    :class:`~crane_kernel.plugins.Plugins` holding it (call
    ``plugins.hook.crane_schedule``, and ``plugins.shutdown()`` when done).
    Raises :class:`SchedulerNotFoundError` with a one-line message listing the
    installed schedulers when ``name`` is not one of them.
    """
    from crane_kernel.plugins import load_slots

    have = installed_schedulers()
    if name not in have:
        raise SchedulerNotFoundError(f"scheduler {name!r} is not installed (installed: {', '.join(have) or 'none'})")
    slots = ("scheduler", "preempt") if preempt else ("scheduler",)
    loaded = load_slots({"Scheduler": name, "Preempt": preempt, "Settings": {name: dict(config or {})}}, slots=slots)
    return loaded.plugins("scheduler")[0], loaded


# --------------------------------------------------------------------------
# synthetic cluster
# --------------------------------------------------------------------------

def _make_nodes(rng: random.Random, count: int) -> tuple[list[SchedNode], dict[str, list[int]]]:
    nodes: list[SchedNode] = []
    kinds: dict[str, list[int]] = {"cpu": [], "bigmem": [], "gpu": []}
    for i in range(count):
        r = rng.random()
        gres = None
        if r < 0.05:
            kind, cpus, mem, gres = "gpu", 64, 512 * GiB, {"gpu:a100": rng.choice((4, 8))}
        elif r < 0.15:
            kind, cpus, mem = "bigmem", rng.choice((64, 128)), 512 * GiB
        else:
            kind = "cpu"
            cpus = rng.choices((32, 64, 128), weights=(3, 5, 2))[0]
            mem = {32: 128, 64: 256, 128: 256}[cpus] * GiB
        usable = rng.random() >= 0.01  # ~1% down or drained
        nodes.append(SchedNode(f"cn{i:05d}", i, float(cpus), mem, gres_total=gres, usable=usable))
        kinds[kind].append(i)
    return nodes, kinds


def _make_partitions(nodes: list[SchedNode], kinds: dict[str, list[int]]) -> dict[str, SchedPartition]:
    debug = list(range(max(2, len(nodes) // 50)))
    parts = {
        "cpu": SchedPartition("cpu", tuple(sorted(kinds["cpu"] + kinds["bigmem"]))),
        "bigmem": SchedPartition("bigmem", tuple(kinds["bigmem"])),
        "gpu": SchedPartition("gpu", tuple(kinds["gpu"])),
        "debug": SchedPartition("debug", tuple(debug), max_time_limit=3600),
    }
    member: dict[int, list[str]] = {}
    for p in parts.values():
        for i in p.node_indices:
            member.setdefault(i, []).append(p.name)
    for n in nodes:
        n.partitions = tuple(member.get(n.index, ()))
    return parts


def _fill_running(rng: random.Random, nodes: list[SchedNode], fraction: float) -> list[SchedRunning]:
    """Occupy about ``fraction`` of the CPUs with running jobs (some whole-node exclusive ones)."""
    running: list[SchedRunning] = []
    jid = 10_000_000
    for n in nodes:
        if not n.usable or fraction <= 0:
            continue
        jid += 1
        if rng.random() < fraction * 0.1:
            running.append(SchedRunning(jid, (n.index,), n.cpus_total, n.mem_total, NOW + rng.randint(60, 86400),
                                        gres_per_node=dict(n.gres_total) or None, exclusive=True))
            n.cpus_free, n.mem_free, n.njobs = 0.0, 0, 1
            n.gres_free = {k: 0 for k in n.gres_total}
            continue
        target = min(1.0, rng.uniform(0.0, 2.0 * fraction)) * n.cpus_total
        used = 0.0
        while True:
            c = float(rng.choice((1, 2, 4, 8, 16)))
            m = int(c * rng.choice((1, 2, 4)) * GiB)
            if used + c > target or m > n.mem_free:
                break
            g = None
            if n.gres_free and rng.random() < 0.5:
                key = next(iter(n.gres_free))
                if n.gres_free[key] > 0:
                    g = {key: 1}
                    n.gres_free[key] -= 1
            used += c
            jid += 1
            n.cpus_free -= c
            n.mem_free -= m
            n.njobs += 1
            running.append(SchedRunning(jid, (n.index,), c, m, NOW + rng.randint(60, 86400), gres_per_node=g))
    return running


def _pending_job(rng: random.Random, jid: int, cpu_names: list[str], workload: str) -> SchedJob:
    common = {"priority": float(rng.randint(0, 1000)), "submit_time": NOW - rng.uniform(0, 86400),
              "account": rng.choice(("phys", "chem", "bio", "cs"))}
    tl = rng.choice((600, 3600, 4 * 3600, 86400))
    r = rng.random() if workload == "mixed" else 0.0
    if r < 0.60:
        c = rng.choice((0.5, 1, 1, 1, 2, 2, 4, 4, 8, 16, 32))
        part = rng.choices(("cpu", "debug", "bigmem"), weights=(85, 10, 5))[0]
        if part == "debug":
            tl = 600
        return SchedJob(jid, part, 1, float(c), int(c * rng.choice((1, 2, 4)) * GiB), tl, **common)
    if r < 0.72:
        c = rng.choice((8, 16, 32))
        return SchedJob(jid, "cpu", rng.choice((2, 2, 4, 4, 8, 16)), float(c), c * 2 * GiB, tl, **common)
    if r < 0.80:
        g = {"gpu:a100": rng.choice((1, 2, 4))} if rng.random() < 0.7 else {"gpu": rng.choice((1, 2))}
        c = rng.choice((4, 8, 16))
        return SchedJob(jid, "gpu", 2 if rng.random() < 0.1 else 1, float(c), c * 4 * GiB, tl,
                        gres_per_node=g, **common)
    if r < 0.84:
        return SchedJob(jid, "cpu", rng.choice((1, 1, 2, 4)), 1.0, 0, tl, exclusive=True, **common)
    if r < 0.90 and cpu_names:
        k = rng.choice((1, 1, 2))
        wl = frozenset(rng.sample(cpu_names, min(len(cpu_names), k + rng.choice((0, 1)))))
        return SchedJob(jid, "cpu", k, 2.0, 2 * GiB, tl, nodelist=wl, **common)
    if r < 0.96 and cpu_names:
        ex = frozenset(rng.sample(cpu_names, min(len(cpu_names), 3)))
        return SchedJob(jid, "cpu", 1, 4.0, 8 * GiB, tl, exclude=ex, **common)
    if r < 0.999:
        c = rng.choice((4, 8, 16))
        return SchedJob(jid, "bigmem", 1, float(c), rng.choice((128, 256, 384)) * GiB, tl, **common)
    return SchedJob(jid, "cpu", 1, 256.0, 0, tl, **common)  # can never fit: no 256-CPU node


def build_cluster(nodes: int, jobs: int, seed: int = 1, running_fraction: float = 0.5,
                  workload: str = "mixed") -> ClusterView:
    """Build a deterministic synthetic cluster view.

    Nodes are 32/64/128-CPU machines with 128-512 GiB; ~10% are big-memory,
    ~5% GPU nodes with ``gpu:a100`` x4 or x8, ~1% unusable. Partitions:
    ``cpu`` (CPU + big-memory nodes), ``bigmem``, ``gpu`` and a small
    ``debug`` partition overlapping the others. Running jobs occupy about
    ``running_fraction`` of the CPUs. Pending jobs (``workload="mixed"``):
    ~60% 1-node small jobs, 12% multi-node, 8% GPU (typed and untyped), 4%
    exclusive, 6% ``-w``, 6% ``-x``, some big-memory and 0.1% that can never
    fit. ``workload="small"`` makes every pending job a 1-node small job (the
    worst case for the number of starts). ``workload="whole"``: identical
    64-CPU nodes in one partition and jobs of 1-16 whole nodes (backfill's
    count-based path, the one that keeps state across calls).
    """
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r} (choose from {', '.join(WORKLOADS)})")
    rng = random.Random(seed)
    if workload == "whole":
        return _whole_cluster(rng, nodes, jobs, running_fraction)
    node_list, kinds = _make_nodes(rng, nodes)
    parts = _make_partitions(node_list, kinds)
    running = _fill_running(rng, node_list, running_fraction)
    cpu_names = [node_list[i].name for i in kinds["cpu"]]
    pending = [_pending_job(rng, j + 1, cpu_names, workload) for j in range(jobs)]
    return ClusterView(node_list, parts, pending, running)


def configure_preemption(view: ClusterView, mode: str, share: float = 0.01, seed: int = 1) -> int:
    """Preemption on a synthetic view: a ``high`` partition (priority 10) over every node preempts the others.

    Every running job belongs to its node's first partition, whose ``PreemptMode`` becomes ``mode``;
    ``share`` of the pending jobs (chosen with ``seed``) move to ``high``. Returns how many moved.
    """
    from crane_kernel.sched_types import PreemptRules

    rng = random.Random(seed)
    for part in view.partitions.values():
        part.priority, part.preempt_mode = 1, mode
    view.partitions["high"] = SchedPartition("high", tuple(n.index for n in view.nodes), 10)
    for n in view.nodes:
        n.partitions = (*n.partitions, "high")
    for r in view.running:
        r.partition = view.nodes[r.nodes[0]].partitions[0]
    moved = 0
    for job in view.pending:
        if rng.random() < share and not job.nodelist:
            job.partition = "high"
            moved += 1
    view.preemption = PreemptRules()
    return moved


WHOLE_CPUS = 64
WHOLE_MEM = 256 * GiB


def whole_job(rng: random.Random, jid: int, max_nodes: int = 16) -> SchedJob:
    """A pending job of the ``whole`` workload: 1-16 whole 64-CPU nodes, 10 min to 1 day."""
    n = min(max_nodes, rng.choice((1, 1, 1, 1, 2, 2, 4, 8, 16)))
    return SchedJob(jid, "cpu", n, float(WHOLE_CPUS), rng.choice((64, 128, 192)) * GiB,
                    rng.choice((600, 3600, 4 * 3600, 86400)), priority=0.0,
                    submit_time=NOW - rng.uniform(0, 86400), account=rng.choice(("phys", "chem", "bio", "cs")))


def _whole_cluster(rng: random.Random, nodes: int, jobs: int, running_fraction: float) -> ClusterView:
    """Identical 64-CPU nodes in one partition, every job taking whole nodes (backfill's count-based path)."""
    node_list = [SchedNode(f"cn{i:05d}", i, float(WHOLE_CPUS), WHOLE_MEM, partitions=("cpu",)) for i in range(nodes)]
    running: list[SchedRunning] = []
    jid = 10_000_000
    for n in node_list:
        if rng.random() < running_fraction:
            jid += 1
            n.cpus_free, n.mem_free, n.njobs = 0.0, 0, 1
            running.append(SchedRunning(jid, (n.index,), float(WHOLE_CPUS), WHOLE_MEM, NOW + rng.randint(60, 86400),
                                        partition="cpu"))
    parts = {"cpu": SchedPartition("cpu", tuple(range(nodes)))}
    pending = [whole_job(rng, j + 1, nodes) for j in range(jobs)]
    return ClusterView(node_list, parts, pending, running)


# --------------------------------------------------------------------------
# plan validation
# --------------------------------------------------------------------------

def _gres_avail(free: Mapping[str, int], key: str) -> int:
    if ":" in key:
        return free.get(key, 0)
    return sum(v for k, v in free.items() if k.split(":", 1)[0] == key)


def _node_snapshot(view: ClusterView) -> list[tuple[Any, ...]]:
    return [(n.cpus_free, n.mem_free, tuple(sorted(n.gres_free.items())), n.usable, n.njobs) for n in view.nodes]


def add_reservations(view: ClusterView, count: int, seed: int = 1) -> None:
    """Add ``count`` reservations of 1% of the nodes each (disjoint): every other one active now (for
    two hours), the rest starting in an hour; every fourth ``MAINT``. Every 100th pending job asks
    for one of the active ones (``view.job_reservations``)."""
    if count <= 0:
        return
    rng = random.Random(seed * 7919 + count)
    order = list(range(len(view.nodes)))
    rng.shuffle(order)
    per = max(1, len(order) // 100)
    active: list[str] = []
    for k in range(count):
        idx = tuple(order[k * per:(k + 1) * per])
        if not idx:
            break
        start = NOW - 600 if k % 2 == 0 else NOW + 3600
        view.reservations.append(SchedReservation(f"resv{k}", start, start + 7200, idx, maint=k % 4 == 0))
        if k % 2 == 0:
            active.append(f"resv{k}")
    view.job_reservations = {j.job_id: rng.choice(active) for j in view.pending[::100]} if active else {}


def validate_plan(view: ClusterView, plan: Plan, limit: int = 20, now: float = NOW) -> list[str]:
    """Check a plan against the view; return up to ``limit`` problems (empty list = valid).

    Checks: each start names a pending job once, with exactly ``node_num``
    distinct, usable nodes of its partition, honouring ``-w``/``-x`` and
    ``exclusive`` (idle node, alone on it); the sum of starts per node stays
    within its free CPUs, memory and gres (per type, and per family for
    untyped requests); every other pending job has a reason and started jobs
    have none; with reservations in the view, no start breaks one (``reservation_conflict``).
    """
    problems: list[str] = []
    jobs = {j.job_id: j for j in view.pending}
    used_cpu: dict[int, float] = {}
    used_mem: dict[int, int] = {}
    used_gres: dict[int, dict[str, int]] = {}
    exclusive_on: dict[int, int] = {}
    started: set[int] = set()
    member_sets: dict[str, frozenset[int]] = {}

    def bad(msg: str) -> None:
        if len(problems) < limit:
            problems.append(msg)

    for jid, idxs in plan.starts:
        job = jobs.get(jid)
        if job is None or jid in started:
            bad(f"job {jid}: started twice or not pending")
            continue
        started.add(jid)
        members = member_sets.get(job.partition)
        if members is None:
            part = view.partitions.get(job.partition)
            members = member_sets[job.partition] = frozenset(part.node_indices) if part else frozenset()
        if len(idxs) != job.node_num or len(set(idxs)) != len(idxs):
            bad(f"job {jid}: got {len(idxs)} nodes for node_num={job.node_num} (or duplicates)")
        for i in idxs:
            if not 0 <= i < len(view.nodes):
                bad(f"job {jid}: node index {i} out of range")
                continue
            node = view.nodes[i]
            if i not in members or not node.usable:
                bad(f"job {jid}: node {node.name} not a usable node of partition {job.partition}")
            if job.nodelist and node.name not in job.nodelist:
                bad(f"job {jid}: node {node.name} not in its -w list")
            if job.exclude and node.name in job.exclude:
                bad(f"job {jid}: node {node.name} is in its -x list")
            if job.exclusive:
                if node.njobs or node.cpus_free < node.cpus_total - EPS or i in used_cpu:
                    bad(f"job {jid}: exclusive on busy node {node.name}")
                exclusive_on[i] = jid
            elif i in exclusive_on:
                bad(f"job {jid}: shares node {node.name} with exclusive job {exclusive_on[i]}")
            used_cpu[i] = used_cpu.get(i, 0.0) + job.cpus_per_node
            used_mem[i] = used_mem.get(i, 0) + job.mem_per_node
            for k, v in (job.gres_per_node or {}).items():
                g = used_gres.setdefault(i, {})
                g[k] = g.get(k, 0) + v
        if job.nodelist and job.node_num == len(job.nodelist):
            if {view.nodes[i].name for i in idxs if 0 <= i < len(view.nodes)} != set(job.nodelist):
                bad(f"job {jid}: does not use every node of its -w list")
        if view.reservations or view.job_reservations:
            why = reservation_conflict(view, job, idxs, now)
            if why is not None:
                bad(f"job {jid}: its start breaks a reservation ({why})")
    for i, c in used_cpu.items():
        node = view.nodes[i]
        if c > node.cpus_free + EPS or used_mem[i] > node.mem_free:
            bad(f"node {node.name}: over-allocated (cpu {c}/{node.cpus_free}, mem {used_mem[i]}/{node.mem_free})")
    for i, req in used_gres.items():
        free = view.nodes[i].gres_free
        fam: dict[str, int] = {}
        for k, v in req.items():
            if ":" in k and v > free.get(k, 0):
                bad(f"node {view.nodes[i].name}: gres {k} over-allocated ({v}/{free.get(k, 0)})")
            f = k.split(":", 1)[0]
            fam[f] = fam.get(f, 0) + v
        for f, v in fam.items():
            if v > _gres_avail(free, f):
                bad(f"node {view.nodes[i].name}: gres family {f} over-allocated ({v}/{_gres_avail(free, f)})")
    for jid in jobs:
        if jid not in started and jid not in plan.reasons:
            bad(f"job {jid}: pending without a reason")
    for jid in started:
        if jid in plan.reasons:
            bad(f"job {jid}: started but also given a reason")
    return problems


# --------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------

def run_sched_bench(nodes: int, jobs: int, scheduler: str, seed: int = 1, running_fraction: float = 0.5,
                    *, workload: str = "mixed", repeat: int = 3, reservations: int = 0,
                    preempt: str | None = None) -> dict:
    """Time ``repeat`` full cycles of ``scheduler`` on a synthetic cluster and return the figures.

    Keys: ``scheduler``, ``nodes``, ``jobs``, ``running``, ``seed``,
    ``running_fraction``, ``workload``, ``cycle_s`` (best of ``repeat``),
    ``first_cycle_s``, ``decisions_per_s`` (``considered / cycle_s``),
    ``first_decisions_per_s``, ``considered``, ``started``, ``reserved``,
    ``reasons`` (count per reason), ``valid``, ``problems``, ``build_s``, ``reservations`` (how
    many; with ``started_in_reservations``) and, when the plugin exposes ``last_stats``, ``plugin_stats``.
    ``preempt`` (a mode): preemption is
    configured (:func:`configure_preemption`) and every cycle is the scheduler's call followed by
    the ``preempt_standard`` plugin's (``cycle_s`` times both; ``preempt_s``, ``preempted`` and
    ``preemptors`` are the preempt call's share and orders).
    Raises :class:`SchedulerNotFoundError` for an unknown scheduler.
    """
    obj, loaded = load_scheduler(scheduler, preempt="preempt_standard" if preempt else None)
    t0 = time.perf_counter()
    view = build_cluster(nodes, jobs, seed, running_fraction, workload)
    add_reservations(view, reservations, seed)
    high = configure_preemption(view, preempt, seed=seed) if preempt else 0
    build_s = time.perf_counter() - t0
    before = _node_snapshot(view)
    times: list[float] = []
    plan: Plan | None = None
    schedule = loaded.hook.crane_schedule
    preempt_times: list[float] = []
    try:
        for _ in range(max(1, repeat)):
            t = time.perf_counter()
            plan = schedule(view=view, now=NOW)
            if preempt and plan is not None:
                tp = time.perf_counter()
                loaded.hook.crane_preempt(view=view, plan=plan, now=NOW)
                preempt_times.append(time.perf_counter() - tp)
            times.append(time.perf_counter() - t)
    finally:
        loaded.shutdown()
    if plan is None:
        plan = Plan()
    problems = validate_plan(view, plan)
    if _node_snapshot(view) != before:
        problems.append("the scheduler modified the view's nodes")
    reasons: dict[str, int] = {}
    for r in plan.reasons.values():
        reasons[r] = reasons.get(r, 0) + 1
    best, first = min(times), times[0]
    out: dict[str, Any] = {
        "scheduler": scheduler, "nodes": nodes, "jobs": jobs, "running": len(view.running), "seed": seed,
        "running_fraction": running_fraction, "workload": workload,
        "cycle_s": round(best, 6), "first_cycle_s": round(first, 6),
        "decisions_per_s": round(plan.considered / best) if best > 0 else None,
        "first_decisions_per_s": round(plan.considered / first) if first > 0 else None,
        "considered": plan.considered, "started": len(plan.starts), "reserved": len(plan.reserved),
        "reasons": dict(sorted(reasons.items())), "valid": not problems, "problems": problems,
        "build_s": round(build_s, 3), "reservations": len(view.reservations),
        "started_in_reservations": sum(1 for jid, _ in plan.starts if jid in view.job_reservations),
    }
    if preempt:
        out.update(preempt=preempt, high_jobs=high, preempt_s=round(min(preempt_times), 6),
                   preempted=len(plan.preempt), preemptors=len(plan.preempt_nodes))
    stats = getattr(obj, "last_stats", None)
    if isinstance(stats, dict) and stats:
        out["plugin_stats"] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in stats.items()}
    return out


def _format(res: dict) -> str:
    lines = [
        f"scheduler {res['scheduler']}: {res['nodes']} nodes, {res['jobs']} pending, {res['running']} running "
        f"({res['workload']}, seed {res['seed']})",
        f"  cycle {res['cycle_s'] * 1000:.1f} ms best, {res['first_cycle_s'] * 1000:.1f} ms first; "
        f"{res['decisions_per_s']:,} decisions/s best, {res['first_decisions_per_s']:,} first",
        f"  started {res['started']}, reserved {res['reserved']}, considered {res['considered']}"
        + (f" (fit-tested {res['plugin_stats']['tested']})" if "tested" in res.get("plugin_stats", {}) else ""),
        "  reasons: " + ", ".join(f"{k}={v}" for k, v in res["reasons"].items()),
        *([f"  reservations {res['reservations']}, {res['started_in_reservations']} of their jobs started"]
          if res.get("reservations") else []),
        f"  valid: {res['valid']}" + ("" if res["valid"] else " — " + "; ".join(res["problems"][:5])),
    ]
    if res.get("preempt"):
        lines.append(f"  preemption ({res['preempt']}, {res['high_jobs']} high jobs): {res['preempted']} victims "
                     f"for {res['preemptors']} jobs, preempt plugin {res['preempt_s'] * 1000:.1f} ms of the cycle")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m crane_tools.schedbench --nodes N --jobs M [--scheduler S] [--cycles C] [--json]``."""
    ap = argparse.ArgumentParser(prog="crane bench sched", description="Time scheduling cycles of a scheduler plugin.")
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--scheduler", default="fifo")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--running-fraction", type=float, default=0.5)
    ap.add_argument("--workload", choices=WORKLOADS, default="mixed")
    ap.add_argument("--repeat", type=int, default=3, help="one-cycle mode: calls on the same view (best reported)")
    ap.add_argument("--cycles", type=int, default=0,
                    help="run this many consecutive cycles as the controller does (starts committed, jobs "
                         "ending and arriving in between), with a fresh view per call and with one "
                         "incremental view; 0 = the one-cycle benchmark")
    ap.add_argument("--view", choices=("both", "fresh", "incremental"), default="both",
                    help="with --cycles: which view mode(s) to run")
    ap.add_argument("--arrivals", type=int, default=None, help="with --cycles: jobs arriving per cycle (1%% of --jobs)")
    ap.add_argument("--end-fraction", type=float, default=0.02,
                    help="with --cycles: fraction of running jobs ending per cycle")
    ap.add_argument("--reservations", type=int, default=0,
                    help="one-cycle mode: add this many advance reservations (1%% of the nodes each; half active, "
                         "half starting in an hour) and send every 100th job to an active one")
    ap.add_argument("--preempt", type=str.upper, choices=("CANCEL", "REQUEUE", "SUSPEND"), default=None,
                    help="one-cycle mode: configure preemption (1%% of the jobs in a high partition) and time the "
                         "preempt plugin with the scheduler")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    try:
        if args.cycles:
            from crane_tools.schedcycles import MODES, format_cycles, run_cycles_bench

            modes = MODES if args.view == "both" else (args.view,)
            res = run_cycles_bench(args.nodes, args.jobs, args.scheduler, cycles=args.cycles, modes=modes,
                                   seed=args.seed, running_fraction=args.running_fraction, workload=args.workload,
                                   arrivals=args.arrivals, end_fraction=args.end_fraction)
            text = format_cycles(res)
        else:
            res = run_sched_bench(args.nodes, args.jobs, args.scheduler, args.seed, args.running_fraction,
                                  workload=args.workload, repeat=args.repeat, reservations=args.reservations,
                                  preempt=args.preempt)
            text = _format(res)
    except SchedulerNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, sort_keys=True) if args.json else text)
    return 0 if res["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
