"""EASY backfilling for large clusters, on NumPy arrays of free resources (the ``vector`` engine).

The general path (:mod:`crane_sched_backfill.general`) keeps a time profile per
node and scans every candidate node per job: exact, but O(nodes) of Python per
decision. On 10,000 nodes that is milliseconds per job. This engine makes the
same kind of decisions with vectorised masks over the whole cluster:

* Jobs are walked in queue order. A job starts now when ``node_num`` nodes of
  its partition pass its mask (free CPUs and memory now, gres, ``-w``/``-x``,
  exclusive = idle whole node) *and* it cannot delay a reservation: on a node
  held by a reservation it must end by that reservation's start (the shadow
  time) or fit in the node's slack (what the reservation leaves spare).
  Nodes are chosen best fit (fewest free CPUs, then lowest index).
* The first job of a partition that cannot start gets the partition's one
  reservation (EASY): running jobs (and jobs started earlier in this pass) are
  released in order of their expected end until ``node_num`` nodes can hold
  it; that end is the shadow time, those nodes the reserved ones, and what
  they have beyond the job's need is their slack.
* Identical requests are grouped: when a request shape fails for a duration
  ``d``, every later job of that shape with a duration ``>= d`` fails too
  (free resources only shrink within a pass), so it is answered from a cache.

Because a long job on a reserved node must fit within the slack, and a short
one must end by the shadow time, no start delays a reservation, and no node is
over-allocated (every start is subtracted before the next decision).
Simplifications, documented: a node held by reservations of several
partitions keeps the earliest shadow time and the smallest slack; a long job
asking for gres may not use a reserved node at all.

Advance reservations (``view.reservations``): a node of an active one is closed to every job
that is not the reservation's; a node of a future one gets the reservation's start as its shadow
time with no slack, like a running job's end the other way round, so a job starting now there
must end by then. A reservation's job (``-r``) starts only on its nodes, while it is active;
it never gets a planned start (it waits with ``Resource``) and leaves its partition's alone.
A partition's first blocked job that would fit but for a reservation gets the reservation's reason.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from crane_kernel import gres as gres_mod
from crane_kernel.sched_types import (
    REASON_NODES_UNAVAILABLE,
    REASON_PRIORITY,
    REASON_RESERVATION_DELETED,
    REASON_RESERVATION_WAIT,
    REASON_RESOURCE,
    REASON_RESOURCE_RESERVED,
    Plan,
    priority_order_key,
    reserved_against,
)

from crane_sched_backfill.eligibility import static_reason

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, SchedJob

    from crane_sched_backfill.settings import Settings

__all__ = ["plan_easy_vector"]

EPS = 1e-6
INF = math.inf


class _Arrays:
    """The pass's working copy of free resources (the view itself is never written)."""

    def __init__(self, np: Any, view: "ClusterView") -> None:
        nodes = view.nodes
        self.np = np
        self.n = len(nodes)
        self.cpu = np.array([nd.cpus_free if nd.usable else -1.0 for nd in nodes], dtype=np.float64)
        self.mem = np.array([nd.mem_free if nd.usable else -1 for nd in nodes], dtype=np.int64)
        self.cpu_tot = np.array([nd.cpus_total for nd in nodes], dtype=np.float64)
        self.mem_tot = np.array([nd.mem_total for nd in nodes], dtype=np.int64)
        self.njobs = np.array([nd.njobs for nd in nodes], dtype=np.int64)
        self.usable = self.cpu >= 0
        self.gres = [dict(nd.gres_free) if nd.gres_total else None for nd in nodes]
        keys = sorted({k for nd in nodes for k in nd.gres_total})
        self.gfree = {k: np.array([nd.gres_free.get(k, 0) if nd.usable else 0 for nd in nodes], dtype=np.int64)
                      for k in keys}
        self.gtot = {k: np.array([nd.gres_total.get(k, 0) for nd in nodes], dtype=np.int64) for k in keys}
        self.family = {}
        for k in keys:
            self.family.setdefault(k.partition(":")[0], []).append(k)
        self.res_t = np.full(self.n, INF)       # shadow time of the reservation holding a node
        self.slack_cpu = np.zeros(self.n)       # what that reservation leaves spare at its start
        self.slack_mem = np.zeros(self.n, dtype=np.int64)
        self.any_reservation = False
        # Python mirrors for the scalar path (kept equal to the arrays on every change)
        self.cpu_l = self.cpu.tolist()
        self.mem_l = self.mem.tolist()
        self.res_t_l = [INF] * self.n
        self.slack_cpu_l = [0.0] * self.n
        self.slack_mem_l = [0] * self.n
        self.running_sorted: list | None = None  # running jobs by expected end, built at the first reservation
        self.part_masks: dict[str, Any] = {}
        self.name_idx: dict[frozenset[str], Any] = {}
        self.node_index = view.node_index
        for name, part in view.partitions.items():
            mask = np.zeros(self.n, dtype=bool)
            mask[list(part.node_indices)] = True
            self.part_masks[name] = mask
        self.open_masks = self.part_masks  # what jobs without a reservation may use (see close_reserved)

    def close_reserved(self, reservations: list, now: float) -> None:
        """Apply the advance reservations: active ones close their nodes, future ones cap them at their start."""
        np = self.np
        closed = np.zeros(self.n, dtype=bool)
        for r in reservations:
            idx = list(r.nodes)
            if not idx:
                continue
            if r.active(now):
                closed[idx] = True
                continue
            self.any_reservation = True
            for i in idx:
                if r.start_time < self.res_t_l[i]:
                    self.res_t_l[i] = r.start_time
                self.slack_cpu_l[i], self.slack_mem_l[i] = -1.0, -1
                self.res_t[i], self.slack_cpu[i], self.slack_mem[i] = self.res_t_l[i], -1.0, -1
        if closed.any():
            self.open_masks = {name: mask & ~closed for name, mask in self.part_masks.items()}

    def indices(self, names: frozenset[str]) -> list[int]:
        """Sorted node indices of the named nodes."""
        node_index = self.node_index
        return sorted(node_index[x] for x in names if x in node_index)

    def gres_ok(self, arrays: dict[str, Any], req: Mapping[str, int], where: Any = None) -> Any:
        """Boolean array: nodes (or the ``where`` subset) whose ``arrays`` (free or total gres) cover ``req``."""
        np = self.np
        ok = None
        for key, want in req.items():
            keys = [key] if ":" in key else self.family.get(key, [])
            avail = None
            for kk in keys:
                a = arrays[kk] if where is None else arrays[kk][where]
                avail = a if avail is None else avail + a
            if avail is None:
                return np.zeros(self.n if where is None else len(where), dtype=bool)
            cond = avail >= want
            ok = cond if ok is None else ok & cond
        return ok


def _queue_order(np: Any, pending: list["SchedJob"]) -> list["SchedJob"]:
    """Pending jobs by priority descending, then submit time, then id (``priority_order_key``), via NumPy."""
    n = len(pending)
    if n < 2048:
        return sorted(pending, key=priority_order_key)
    prio = np.fromiter((j.priority for j in pending), dtype=np.float64, count=n)
    submit = np.fromiter((j.submit_time for j in pending), dtype=np.float64, count=n)
    ids = np.fromiter((j.job_id for j in pending), dtype=np.int64, count=n)
    order = np.lexsort((ids, submit, -prio))
    return [pending[i] for i in order.tolist()]


def _base_shape(job: "SchedJob", req_gres: Mapping[str, int] | None) -> Hashable:
    """A request without its node lists: if it cannot start, neither can the same request restricted by -w/-x."""
    return (job.partition, job.node_num, job.cpus_per_node, job.mem_per_node, gres_mod.key_of(req_gres),
            job.exclusive)


def _best(np: Any, st: _Arrays, idx: Any, k: int) -> Any:
    """The ``k`` nodes of ``idx`` with the fewest free CPUs (ties: lowest index)."""
    if k == 1:
        return idx[[int(np.argmin(st.cpu[idx]))]]
    if len(idx) == k:
        return idx
    key = st.cpu[idx] * 1e7 + idx          # fewest free CPUs, then lowest index (exact for idx < 1e7)
    return np.sort(idx[np.argpartition(key, k - 1)[:k]])


def _candidates(np: Any, st: _Arrays, job: "SchedJob", req: Mapping[str, int] | None, c: float, m: int,
                end: float | None, base: Any = None) -> Any:
    """Indices of the nodes where the job could start now (``end``: respecting reservations; None: ignoring).

    ``base``: the nodes it may use at all (default: its partition's, less those of active reservations).
    """
    if base is None:
        base = st.open_masks[job.partition]
    if job.nodelist:
        where = np.array(st.indices(job.nodelist), dtype=np.int64)
        where = where[base[where]]
        ok = (st.cpu[where] >= c - EPS) & (st.mem[where] >= m)
        if job.exclusive:
            ok &= (st.njobs[where] == 0) & (st.cpu[where] >= st.cpu_tot[where] - EPS) & \
                (st.mem[where] >= st.mem_tot[where])
        if req:
            ok &= st.gres_ok(st.gfree, req, where)
        if end is not None and st.any_reservation:
            spare = np.zeros(len(where), dtype=bool) if (job.exclusive or req) else \
                (st.slack_cpu[where] >= c - EPS) & (st.slack_mem[where] >= m)
            ok &= (end <= st.res_t[where]) | spare
        idx = where[ok]
    else:
        mask = base & (st.cpu >= c - EPS) & (st.mem >= m)
        if job.exclusive:
            mask &= (st.njobs == 0) & (st.cpu >= st.cpu_tot - EPS) & (st.mem >= st.mem_tot)
        if req:
            mask &= st.gres_ok(st.gfree, req)
        if end is not None and st.any_reservation:
            if job.exclusive or req:
                mask &= end <= st.res_t
            else:
                mask &= (end <= st.res_t) | ((st.slack_cpu >= c - EPS) & (st.slack_mem >= m))
        if job.exclude:
            mask[st.indices(job.exclude)] = False
        return mask.nonzero()[0]
    if job.exclude and len(idx):
        idx = idx[~np.isin(idx, st.indices(job.exclude))]
    return idx


def plan_easy_vector(view: "ClusterView", now: float, settings: "Settings") -> Plan | None:
    """One EASY pass (see the module docstring); ``None`` when NumPy is missing or a partition is not EASY."""
    try:
        import numpy as np
    except ImportError:
        return None
    if any(settings.for_partition(p).mode != "easy" for p in view.partitions):
        return None
    st = _Arrays(np, view)
    live = [r for r in view.reservations if r.end_time > now]
    if live:
        st.close_reserved(live, now)
    job_resv = view.job_reservations if (live or view.job_reservations) else None
    by_name = {r.name: r for r in live}
    resv_cache: dict[Hashable, Any] = {}
    plan = Plan()
    reasons = plan.reasons
    ordered = _queue_order(np, view.pending)
    if settings.max_jobs and len(ordered) > settings.max_jobs:
        for job in ordered[settings.max_jobs:]:
            reasons[job.job_id] = REASON_PRIORITY
        ordered = ordered[:settings.max_jobs]
    plan.considered = len(ordered)
    parts = view.partitions
    started_here: list[tuple[float, list[int], float, int, bool, Mapping[str, int] | None]] = []
    reserved_parts: set[str] = set()
    failed: dict[Hashable, float] = {}                 # (base) shape -> shortest duration that could not start
    never: dict[Hashable, set[int]] = {}               # base shape -> nodes that could ever hold it
    blocked: dict[Hashable, tuple[int, bool]] = {}     # shape -> (starts so far, fits what is free now)
    lists: dict[Hashable, list] = {}                   # single-node shape -> [candidates in best-fit order, cursor]
    started = 0
    for job in ordered:
        part = parts.get(job.partition)
        why = static_reason(job, part, now)
        if why is not None:
            reasons[job.job_id] = why
            continue
        assert part is not None
        req = job.gres_per_node or None
        own = job_resv.get(job.job_id) if job_resv else None
        if own:
            started += _start_reserved(np, st, job, req, by_name.get(own), now, plan, started_here, resv_cache)
            continue
        base = _base_shape(job, req)
        shape = (base, job.nodelist, job.exclude) if (job.nodelist or job.exclude) else base
        d = max(float(job.time_limit), 1.0) if job.time_limit else INF
        k = max(1, job.node_num)
        c, m = job.cpus_per_node, job.mem_per_node
        feasible = never.get(base)
        if feasible is None:
            feasible = never[base] = _feasible(np, st, job, req)
        if not _can_ever_fit(feasible, st, job, k):
            reasons[job.job_id] = REASON_NODES_UNAVAILABLE
            continue
        if failed.get(base, INF) > d and failed.get(shape, INF) > d:
            end = now + d
            if k == 1 and not (job.exclusive or req or job.nodelist or job.exclude):
                node = _pick_single(np, st, lists, base, job, c, m, end)
                if node is not None:
                    sel = np.array([node], dtype=np.int64)
                    _take(np, st, sel, job, req, c, m, end)
                    started_here.append((end, [node], c, m, False, None))
                    plan.starts.append((job.job_id, [node]))
                    started += 1
                    continue
                failed[shape] = min(d, failed.get(shape, INF))
                idx = None
            else:
                idx = _candidates(np, st, job, req, c, m, end)
        else:
            idx = None
        if idx is not None:
            if len(idx) >= k:  # noqa: SIM102 - kept parallel to the single-node path above
                sel = _best(np, st, idx, k)
                _take(np, st, sel, job, req, c, m, end)
                started_here.append((end, sel.tolist(), c, m, job.exclusive, req))
                plan.starts.append((job.job_id, sel.tolist()))
                started += 1
                continue
            failed[shape] = min(d, failed.get(shape, INF))
        if job.partition not in reserved_parts:
            reasons[job.job_id] = (_kept_off(np, st, view, job, req, c, m, k, now, d) if live else None) \
                or REASON_RESOURCE
            _reserve(np, st, job, req, k, now, view, started_here, plan,
                     settings.for_partition(job.partition).window)
            reserved_parts.add(job.partition)
            continue
        # Would it fit what is free now (then it is held back by the reservation)? Free resources only
        # shrink, so a "no" stays "no"; a "yes" is re-checked once something more has started.
        seen = blocked.get(shape)
        if seen is None or (seen[1] and seen[0] != started):
            seen = blocked[shape] = (started, len(_candidates(np, st, job, req, c, m, None)) >= k)
        reasons[job.job_id] = REASON_RESOURCE_RESERVED if seen[1] else REASON_PRIORITY
    return plan


def _kept_off(np: Any, st: _Arrays, view: "ClusterView", job: "SchedJob", req: Mapping[str, int] | None,
              c: float, m: int, k: int, now: float, d: float) -> str | None:
    """The reason of the reservations that keep ``job`` waiting, when it would fit the free resources of its
    partition's nodes but for them (None: not that). Asked only of each partition's first blocked job."""
    against = reserved_against(view, job, now, now + d)
    if not against or len(_candidates(np, st, job, req, c, m, None, st.part_masks[job.partition])) < k:
        return None
    return next((r for r in against if r.maint), against[0]).blocked_reason()


def _start_reserved(np: Any, st: _Arrays, job: "SchedJob", req: Mapping[str, int] | None, resv: Any,
                    now: float, plan: Plan, started_here: list, cache: dict[Hashable, Any]) -> int:
    """Start a reservation's job on its nodes if it fits now (1), else give it its reason (0).

    ``cache`` (per pass): the reservation's nodes in each partition as a mask, and per request shape
    the shortest duration that did not fit (free resources only shrink within a pass).
    """
    if resv is None or not resv.active(now):
        plan.reasons[job.job_id] = REASON_RESERVATION_DELETED if resv is None else REASON_RESERVATION_WAIT
        return 0
    k = max(1, job.node_num)
    c, m = job.cpus_per_node, job.mem_per_node
    d = max(float(job.time_limit), 1.0) if job.time_limit else INF
    shape = (resv.name, _base_shape(job, req), job.nodelist, job.exclude)
    if cache.get(shape, INF) <= d:
        plan.reasons[job.job_id] = REASON_RESOURCE
        return 0
    key = (resv.name, job.partition)
    base = cache.get(key)
    if base is None:
        mine = np.zeros(st.n, dtype=bool)
        mine[list(resv.nodes)] = True
        base = cache[key] = st.part_masks[job.partition] & mine
    idx = _candidates(np, st, job, req, c, m, now + d, base)
    if len(idx) < k:
        cache[shape] = min(d, cache.get(shape, INF))
        plan.reasons[job.job_id] = REASON_RESOURCE
        return 0
    sel = _best(np, st, idx, k)
    _take(np, st, sel, job, req, c, m, now + d)
    started_here.append((now + d, sel.tolist(), c, m, job.exclusive, req))
    plan.starts.append((job.job_id, sel.tolist()))
    return 1


def _pick_single(np: Any, st: _Arrays, lists: dict[Hashable, list], base: Hashable, job: "SchedJob", c: float,
                 m: int, end: float) -> int | None:
    """A node for a plain one-node job, from its shape's candidate list (best fit when the list was made).

    The list holds the nodes that could take the shape when it was first seen, fewest free CPUs first;
    free resources only shrink within a pass, so a node that no longer fits is dropped for good. A node
    that only a reservation keeps from this job (it would end after the shadow time and the node has
    no slack) is skipped but kept, since a shorter job may still use it.
    """
    entry = lists.get(base)
    if entry is None:
        idx = _candidates(np, st, job, None, c, m, None)
        order = np.argsort(st.cpu[idx] * 1e7 + idx, kind="stable")
        entry = lists[base] = [idx[order].tolist(), 0]
    cand, cursor = entry
    cpu, mem, res_t = st.cpu_l, st.mem_l, st.res_t_l
    lim = c - EPS
    pos = cursor
    n = len(cand)
    while pos < n:
        i = cand[pos]
        if cpu[i] < lim or mem[i] < m:
            if pos == cursor:
                cursor += 1
            pos += 1
            continue
        if end > res_t[i] and (st.slack_cpu_l[i] < lim or st.slack_mem_l[i] < m):
            pos += 1
            continue
        entry[1] = cursor
        return i
    entry[1] = cursor
    return None


def _feasible(np: Any, st: _Arrays, job: "SchedJob", req: Mapping[str, int] | None) -> set[int]:
    """Usable nodes of the job's partition big enough for its per-node request (ignoring -w/-x)."""
    c, m = job.cpus_per_node, job.mem_per_node
    mask = st.part_masks[job.partition] & st.usable & (st.cpu_tot >= c - EPS) & (st.mem_tot >= m)
    if req:
        mask &= st.gres_ok(st.gtot, req)
    return set(mask.nonzero()[0].tolist())


def _can_ever_fit(feasible: set[int], st: _Arrays, job: "SchedJob", k: int) -> bool:
    """Whether enough nodes can ever hold the job, given its -w/-x lists."""
    if job.nodelist:
        pool = feasible.intersection(st.indices(job.nodelist))
    else:
        pool = feasible
    if job.exclude:
        return len(pool) - len(pool.intersection(st.indices(job.exclude))) >= k
    return len(pool) >= k


def _take(np: Any, st: _Arrays, sel: Any, job: "SchedJob", req: Mapping[str, int] | None, c: float, m: int,
          end: float) -> None:
    if job.exclusive:
        st.cpu[sel] = 0.0
        st.mem[sel] = 0
        for arr in st.gfree.values():
            arr[sel] = 0
        for i in sel.tolist():
            if st.gres[i]:
                st.gres[i] = {key: 0 for key in st.gres[i]}
    elif len(sel) == 1 and not req:  # the common case, without NumPy's fancy-indexing overhead
        i = int(sel[0])
        st.cpu_l[i] -= c
        st.mem_l[i] -= m
        st.cpu[i] = st.cpu_l[i]
        st.mem[i] = st.mem_l[i]
        st.njobs[i] += 1
        if end > st.res_t_l[i]:
            st.slack_cpu_l[i] -= c
            st.slack_mem_l[i] -= m
            st.slack_cpu[i] = st.slack_cpu_l[i]
            st.slack_mem[i] = st.slack_mem_l[i]
        return
    else:
        st.cpu[sel] -= c
        st.mem[sel] -= m
        if req:
            for i in sel.tolist():
                for key, n in gres_mod.take(st.gres[i], req).items():  # type: ignore[arg-type]
                    if key in st.gfree:
                        st.gfree[key][i] -= n
    st.njobs[sel] += 1
    for i in sel.tolist():
        st.cpu_l[i] = float(st.cpu[i])
        st.mem_l[i] = int(st.mem[i])
        if end > st.res_t_l[i]:
            st.slack_cpu[i] -= c
            st.slack_mem[i] -= m
            st.slack_cpu_l[i] -= c
            st.slack_mem_l[i] -= m


def _reserve(np: Any, st: _Arrays, job: "SchedJob", req: Mapping[str, int] | None, k: int, now: float,
             view: "ClusterView", started_here: list, plan: Plan, window: float = INF) -> None:
    """Find the blocked job's shadow time and nodes by releasing running jobs in end order; record it."""
    c, m = job.cpus_per_node, job.mem_per_node
    base = st.open_masks[job.partition] & st.usable & (st.cpu_tot >= c - EPS) & (st.mem_tot >= m)
    if job.nodelist:
        only = np.zeros(st.n, dtype=bool)
        only[st.indices(job.nodelist)] = True
        base &= only
    if job.exclude:
        base[st.indices(job.exclude)] = False
    if st.running_sorted is None:
        st.running_sorted = sorted(((r.end_time, r.nodes, r.cpus_per_node, r.mem_per_node, r.exclusive,
                                     r.gres_per_node) for r in view.running), key=lambda e: e[0])
    ends = heapq.merge(st.running_sorted, sorted(started_here, key=lambda e: e[0]), key=lambda e: e[0])
    cpu = st.cpu.tolist()
    mem = st.mem.tolist()
    njobs = st.njobs.tolist()
    cpu_tot = st.cpu_tot.tolist()
    mem_tot = st.mem_tot.tolist()
    gres: dict[int, dict[str, int]] = {}
    ok_base = base.tolist()

    def fits(i: int) -> bool:
        if not ok_base[i] or cpu[i] < c - EPS or mem[i] < m:
            return False
        if job.exclusive and (njobs[i] or cpu[i] < cpu_tot[i] - EPS or mem[i] < mem_tot[i]):
            return False
        if req:
            free = gres.get(i, st.gres[i])
            return gres_mod.fits(free, req)
        return True

    fitting = {i for i in np.flatnonzero(base).tolist() if fits(i)}
    shadow = None
    for end, nodes, cc, mm, excl, g in ends:
        if end == INF:
            break
        for i in nodes:
            if excl:
                cpu[i], mem[i] = cpu_tot[i], mem_tot[i]
                if st.gres[i] is not None:
                    gres[i] = {key: 10**9 for key in st.gres[i]}
            else:
                cpu[i] += cc
                mem[i] += mm
                if g and st.gres[i] is not None:
                    free = gres.setdefault(i, dict(st.gres[i]))
                    for key, want in g.items():
                        free[key] = free.get(key, 0) + want
            njobs[i] -= 1
            if i not in fitting and fits(i):
                fitting.add(i)
        if len(fitting) >= k:
            shadow = max(end, now)
            break
    if shadow is None or shadow - now > window:
        return  # no slot (jobs without time limits, or beyond the window): nothing to protect
    chosen = sorted(fitting, key=lambda i: (cpu[i], i))[:k]
    plan.reserved[job.job_id] = shadow
    st.any_reservation = True
    for i in chosen:
        spare_c, spare_m = (-1.0, -1) if job.exclusive else (cpu[i] - c, mem[i] - m)
        if st.res_t_l[i] == INF:    # the first reservation on this node
            st.res_t_l[i] = shadow
            st.slack_cpu_l[i], st.slack_mem_l[i] = spare_c, spare_m
        else:                       # held by another partition's reservation too: be conservative
            st.res_t_l[i] = min(st.res_t_l[i], shadow)
            st.slack_cpu_l[i] = min(st.slack_cpu_l[i], spare_c)
            st.slack_mem_l[i] = min(st.slack_mem_l[i], spare_m)
        st.res_t[i], st.slack_cpu[i], st.slack_mem[i] = st.res_t_l[i], st.slack_cpu_l[i], st.slack_mem_l[i]
