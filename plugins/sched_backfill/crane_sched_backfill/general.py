"""The general (node-level) backfill pass: any mix of nodes, CPUs, memory, gres, exclusive, -w/-x, partitions.

Jobs are walked in queue order (priority descending, then submit time, then
job id) across all partitions, against one shared set of node profiles
(:mod:`crane_sched_backfill.profile`). For each eligible job:

* while its partition has reservations left (EASY: 1; conservative: ``depth``),
  the job gets the earliest start ``s <= now + window`` at which ``node_num``
  nodes can hold it for its whole time limit. ``s == now``: it starts (on the
  feasible nodes with the fewest free CPUs, ties to the lowest index). Later:
  the slot is written into the profiles and ``Plan.reserved[job] = s``
  (reason ``Resource``). No slot inside the window: no reservation, ``Resource``;
* once the partition's reservations are used up, the job may only start now,
  and only where it fits for its whole time limit — i.e. without delaying any
  reservation; otherwise ``ResourceReserved`` if it would fit the resources
  free right now, else ``Priority``.

Because every start is checked against the profile over its full duration,
no decision can over-allocate a node or delay a reservation made earlier in the pass.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from crane_kernel.sched_types import (
    REASON_NODES_UNAVAILABLE,
    REASON_PRIORITY,
    REASON_RESOURCE,
    REASON_RESOURCE_RESERVED,
    Plan,
    priority_order_key,
)

from crane_sched_backfill import gres as gres_mod
from crane_sched_backfill.eligibility import CandidateCache, static_reason
from crane_sched_backfill.profile import INF, Profiles, Req

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, SchedJob

    from crane_sched_backfill.settings import Settings

__all__ = ["plan_general"]


def _choose(profiles: Profiles, nodes: list[int], k: int, t: float) -> list[int]:
    """The ``k`` nodes with the fewest free CPUs at ``t`` (ties: lowest index), sorted by index."""
    if len(nodes) > k:
        nodes = sorted(nodes, key=lambda i: (int(profiles.line(i).cpu_at(t) + 1e-6), i))[:k]
    return sorted(nodes)


def _fit_now(profiles: Profiles, cand: tuple[int, ...], job: "SchedJob", req: Req, now: float,
             d: float) -> list[int] | None:
    """Nodes on which ``job`` can start now and run ``d`` seconds, or ``None``."""
    k = max(1, job.node_num)
    ok = []
    end = now + d
    for i in cand:
        ln = profiles.line(i)
        if ln.ok(0, req) and ln.fits(now, end, req):
            ok.append(i)
    if len(ok) < k:
        return None
    return _choose(profiles, ok, k, now)


def _fits_instant(profiles: Profiles, cand: tuple[int, ...], job: "SchedJob", req: Req) -> bool:
    """Whether ``job`` fits the resources free right now (ignoring how long it runs)."""
    k = max(1, job.node_num)
    count = 0
    for i in cand:
        if profiles.line(i).ok(0, req):
            count += 1
            if count >= k:
                return True
    return False


def _earliest(profiles: Profiles, cand: tuple[int, ...], job: "SchedJob", req: Req, d: float,
              horizon: float) -> tuple[float, list[int]] | None:
    """The earliest start ``<= horizon`` with ``node_num`` nodes free for ``d`` seconds, and those nodes."""
    k = max(1, job.node_num)
    events: list[tuple[float, int, int]] = []
    for i in cand:
        for lo, hi in profiles.line(i).feasible_starts(req, d, horizon):
            events.append((lo, 0, i))
            if hi != INF:
                events.append((hi, 1, i))
    if len(events) < k:
        return None
    events.sort()
    active: set[int] = set()
    n = len(events)
    x = 0
    while x < n:
        t = events[x][0]
        while x < n and events[x][0] == t and events[x][1] == 0:
            active.add(events[x][2])
            x += 1
        if len(active) >= k:
            return t, _choose(profiles, list(active), k, t)
        while x < n and events[x][0] == t:
            active.discard(events[x][2])
            x += 1
    return None


def plan_general(view: "ClusterView", now: float, settings: "Settings") -> Plan:
    """One backfill pass over ``view`` on node profiles (see the module docstring)."""
    plan = Plan()
    reasons = plan.reasons
    ordered = sorted(view.pending, key=priority_order_key)
    if settings.max_jobs and len(ordered) > settings.max_jobs:
        for job in ordered[settings.max_jobs:]:
            reasons[job.job_id] = REASON_PRIORITY
        ordered = ordered[:settings.max_jobs]
    plan.considered = len(ordered)
    profiles = Profiles(view, now)
    cands = CandidateCache(view)
    parts = view.partitions
    used: dict[str, int] = {}
    failed: dict[Hashable, float] = {}  # request shape -> shortest duration that could not start now
    for job in ordered:
        part = parts.get(job.partition)
        why = static_reason(job, part, now)
        if why is not None:
            reasons[job.job_id] = why
            continue
        assert part is not None
        cand = cands.candidates(job, part)
        if cands.never_fits(job, part, cand):
            reasons[job.job_id] = REASON_NODES_UNAVAILABLE
            continue
        assert cand is not None
        ps = settings.for_partition(part.name)
        req = Req(job)
        d = float(job.time_limit) if job.time_limit >= 1 else 1.0
        shape = (part.name, job.node_num, job.cpus_per_node, job.mem_per_node, gres_mod.key_of(req.gres),
                 req.excl, job.nodelist, job.exclude)
        if used.get(part.name, 0) < ps.depth:
            nodes = None if failed.get(shape, INF) <= d else _fit_now(profiles, cand, job, req, now, d)
            if nodes is not None:
                _commit(profiles, nodes, req, now, now + d)
                plan.starts.append((job.job_id, nodes))
                continue
            failed[shape] = min(d, failed.get(shape, INF))
            got = _earliest(profiles, cand, job, req, d, now + ps.window)
            reasons[job.job_id] = REASON_RESOURCE
            if got is None:
                continue
            t, nodes = got
            _commit(profiles, nodes, req, t, t + d)
            if t <= now:
                del reasons[job.job_id]
                plan.starts.append((job.job_id, nodes))
                continue
            plan.reserved[job.job_id] = t
            used[part.name] = used.get(part.name, 0) + 1
            continue
        nodes = None if failed.get(shape, INF) <= d else _fit_now(profiles, cand, job, req, now, d)
        if nodes is not None:
            _commit(profiles, nodes, req, now, now + d)
            plan.starts.append((job.job_id, nodes))
            continue
        failed[shape] = min(d, failed.get(shape, INF))
        reasons[job.job_id] = (REASON_RESOURCE_RESERVED if _fits_instant(profiles, cand, job, req)
                               else REASON_PRIORITY)
    return plan


def _commit(profiles: Profiles, nodes: list[int], req: Req, t0: float, t1: float) -> None:
    for i in nodes:
        profiles.line(i).take(t0, t1, req)
