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

Advance reservations (``view.reservations``) are windows in the profiles
(:mod:`crane_sched_backfill.profile`): other jobs are never placed across them (a blocked job's
planned start comes after the window), and a job of a reservation (``-r``) is placed only on its
nodes, starting inside its window; it uses the reservation's own count of planned starts, not its
partition's. A job that would start now but for a reservation gets that reservation's reason
(``Reservation``, or ``ReqNodeNotAvail, Reserved for maintenance``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from crane_kernel import gres as gres_mod
from crane_kernel.sched_types import (
    REASON_NODES_UNAVAILABLE,
    REASON_PRIORITY,
    REASON_RESERVATION_DELETED,
    REASON_RESERVATION_WAIT,
    REASON_RESOURCE,
    REASON_RESOURCE_RESERVED,
    Plan,
    find_reservation,
    priority_order_key,
    reserved_against,
)

from crane_sched_backfill.eligibility import CandidateCache, static_reason
from crane_sched_backfill.profile import IGNORE_BLOCKS, INF, Profiles, Req

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, SchedJob

    from crane_sched_backfill.settings import Settings

__all__ = ["plan_general"]


def _choose(profiles: Profiles, nodes: list[int], k: int, t: float, d: float, req: Req) -> list[int]:
    """Pick ``k`` of the feasible ``nodes`` for ``[t, t + d)``, returned sorted by index.

    Preference: the free window around the placement starts latest, then ends
    earliest (see :meth:`NodeLine.window`), then the fewest free CPUs at ``t``
    (best fit), then the lowest index.
    """
    if len(nodes) <= k:
        return sorted(nodes)
    end = t + d

    def key(i: int) -> tuple[float, float, int, int]:
        ln = profiles.line(i)
        w0, w1 = ln.window(t, end, req)
        return (-w0, w1, int(ln.cpu_at(t) + 1e-6), i)

    return sorted(sorted(nodes, key=key)[:k])


def _fit_now(profiles: Profiles, cand: tuple[int, ...], job: "SchedJob", req: Req, now: float,
             d: float) -> list[int] | None:
    """Nodes on which ``job`` can start now and run ``d`` seconds, or ``None``."""
    k = max(1, job.node_num)
    ok = []
    end = now + d
    lines = profiles.lines
    cmin = req.cpu - 1e-6
    for i in cand:
        ln = lines[i] or profiles.line(i)
        if ln.cpu[0] >= cmin and ln.ok(0, req) and ln.fits(now, end, req):
            ok.append(i)
    if len(ok) < k:
        return None
    return _choose(profiles, ok, k, now, d, req)


def _fits_instant(profiles: Profiles, cand: tuple[int, ...], job: "SchedJob", req: Req) -> bool:
    """Whether ``job`` fits the resources free right now (ignoring how long it runs)."""
    k = max(1, job.node_num)
    count = 0
    lines = profiles.lines
    cmin = req.cpu - 1e-6
    for i in cand:
        ln = lines[i] or profiles.line(i)
        if ln.cpu[0] >= cmin and ln.ok(0, req):
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
            return t, _choose(profiles, list(active), k, t, d, req)
        while x < n and events[x][0] == t:
            active.discard(events[x][2])
            x += 1
    return None


Placements = dict[int, tuple[float, list[int]]]


def plan_general(view: "ClusterView", now: float, settings: "Settings",
                 previous: Placements | None = None) -> tuple[Plan, Placements]:
    """One backfill pass over ``view`` on node profiles (see the module docstring).

    ``previous`` holds the reservations (start, nodes) of the previous pass;
    a job keeps its previous placement while nothing earlier is available,
    so re-planning never moves a reservation later just because equally
    good nodes were picked differently. Returns the plan and this pass's
    placements (to pass back next time).
    """
    plan = Plan()
    placed: Placements = {}
    previous = previous or {}
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
    job_resv = view.job_reservations if view.reservations or view.job_reservations else None
    used: dict[str, int] = {}
    failed: dict[Hashable, float] = {}  # request shape -> shortest duration that could not start now
    instant: dict[Hashable, tuple[int, bool]] = {}  # request shape -> (profiles.version, fits right now)
    for job in ordered:
        part = parts.get(job.partition)
        why = static_reason(job, part, now)
        if why is not None:
            reasons[job.job_id] = why
            continue
        assert part is not None
        cand = cands.candidates(job, part)
        own = job_resv.get(job.job_id, "") if job_resv else ""
        window = None
        if own:  # a reservation's job: its nodes only, starting inside its window
            rv = find_reservation(view, own)
            if rv is None or rv.end_time <= now:
                reasons[job.job_id] = REASON_RESERVATION_DELETED if rv is None else REASON_RESERVATION_WAIT
                continue
            window = (rv.start_time, rv.end_time)
            if cand is not None:
                cand = tuple(i for i in cand if i in rv.node_set)
        if cands.never_fits(job, part, cand):
            reasons[job.job_id] = REASON_NODES_UNAVAILABLE
            continue
        assert cand is not None
        ps = settings.for_partition(part.name)
        req = Req(job, own, window)
        d = float(job.time_limit) if job.time_limit >= 1 else 1.0
        shape = (part.name, job.node_num, job.cpus_per_node, job.mem_per_node, gres_mod.key_of(req.gres),
                 req.excl, job.nodelist, job.exclude, own)
        prev = previous.get(job.job_id)
        queue = f"resv:{own}" if own else part.name  # whose planned starts it counts against
        if own and not rv.active(now):
            reasons[job.job_id] = REASON_RESERVATION_WAIT  # it can only be planned for the window
            if used.get(queue, 0) < ps.depth:
                got = _earliest(profiles, cand, job, req, d, now + ps.window)
                if got is not None:
                    _commit(profiles, got[1], req, got[0], got[0] + d)
                    plan.reserved[job.job_id] = got[0]
                    placed[job.job_id] = got
                    used[queue] = used.get(queue, 0) + 1
            continue
        if used.get(queue, 0) < ps.depth:
            if prev is not None and _still_fits(profiles, cand, (now, prev[1]), req, d):
                nodes = prev[1]  # a reservation that came due: start on the nodes it held
            else:
                nodes = None if failed.get(shape, INF) <= d else _fit_now(profiles, cand, job, req, now, d)
            if nodes is not None:
                _commit(profiles, nodes, req, now, now + d)
                plan.starts.append((job.job_id, nodes))
                continue
            failed[shape] = min(d, failed.get(shape, INF))
            got = _earliest(profiles, cand, job, req, d, now + ps.window)
            reasons[job.job_id] = _reserved_reason(view, profiles, cand, job, req, now, d) or REASON_RESOURCE
            if got is None:
                continue
            t, nodes = got
            if prev is not None and t >= prev[0] > now and _still_fits(profiles, cand, prev, req, d):
                t, nodes = prev
            _commit(profiles, nodes, req, t, t + d)
            if t <= now:
                del reasons[job.job_id]
                plan.starts.append((job.job_id, nodes))
                continue
            plan.reserved[job.job_id] = t
            placed[job.job_id] = (t, nodes)
            used[queue] = used.get(queue, 0) + 1
            continue
        nodes = None if failed.get(shape, INF) <= d else _fit_now(profiles, cand, job, req, now, d)
        if nodes is not None:
            _commit(profiles, nodes, req, now, now + d)
            plan.starts.append((job.job_id, nodes))
            continue
        failed[shape] = min(d, failed.get(shape, INF))
        seen = instant.get(shape)
        if seen is None or (seen[1] and seen[0] != profiles.version):  # "no" stays "no" within a pass
            seen = instant[shape] = (profiles.version, _fits_instant(profiles, cand, job, req))
        reasons[job.job_id] = REASON_RESOURCE_RESERVED if seen[1] else REASON_PRIORITY
    return plan, placed


def _reserved_reason(view: "ClusterView", profiles: Profiles, cand: tuple[int, ...], job: "SchedJob", req: Req,
                     now: float, d: float) -> str | None:
    """The reason of a reservation that alone keeps ``job`` from starting now (None: it is not that)."""
    if not profiles.blocks or req.resv:
        return None
    against = reserved_against(view, job, now, now + d)
    if not against:
        return None
    free = Req(job, IGNORE_BLOCKS)
    if _fit_now(profiles, cand, job, free, now, d) is None:
        return None
    maint = next((r for r in against if r.maint), against[0])
    return maint.blocked_reason()


def _still_fits(profiles: Profiles, cand: tuple[int, ...], prev: tuple[float, list[int]], req: Req,
                d: float) -> bool:
    """Whether a previous placement ``(start, nodes)`` is still allowed and free."""
    t, nodes = prev
    allowed = set(cand)
    return all(i in allowed and profiles.line(i).fits(t, t + d, req) for i in nodes)


def _commit(profiles: Profiles, nodes: list[int], req: Req, t0: float, t1: float) -> None:
    profiles.version += 1
    for i in nodes:
        profiles.line(i).take(t0, t1, req)
