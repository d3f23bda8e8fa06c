"""The ``fifo`` scheduler: strict priority order per partition, best-fit placement.

Policy, per scheduling pass:

1. Pending jobs are walked in queue order: priority descending, then submit
   time, then job id (:func:`~crane_kernel.sched_types.priority_order_key`),
   across all partitions at once, allocating against one shared working copy
   of free resources (partitions may share nodes, so a higher-priority job of
   one partition can take the node a job of another partition wanted).
2. Jobs that are not eligible keep a specific reason and never block anyone:
   ``Held``, ``BeginTime`` (begin time in the future), ``AccountNotAllowed``
   (partition allow/deny lists) and ``PartitionLimit`` (time limit above the
   partition's maximum); a job naming an unknown partition gets
   ``ReqNodeNotAvail``. These checks apply to every job.
3. In each partition, the first eligible job that cannot start now is
   checked against capacity (:mod:`crane_sched_fifo.capacity`): if it could
   never run there it gets ``ReqNodeNotAvail`` and is skipped *without
   blocking*; otherwise it gets ``Resource`` and *blocks* the partition:
   every later job of that partition gets ``Priority`` without being
   examined further. Other partitions go on.
4. A job that fits starts on the ``node_num`` fitting nodes with the fewest
   whole free CPUs, then the least free memory (best fit, to limit
   fragmentation; ties to the lowest node index). :mod:`crane_sched_fifo.fit`
   has the fit rules (memory, gres, ``-w``, ``-x``, exclusive) and
   :mod:`crane_sched_fifo.state` the indexes that make this cheap.

``Plan.considered`` counts every job the pass gave a decision to (all pending
jobs, or the first ``batch_size`` of them); :attr:`FifoScheduler.last_stats`
also tells how many were actually fit-tested, and the pass's phase timings.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from crane_kernel import hookimpl
from crane_kernel.sched_types import (
    REASON_NODES_UNAVAILABLE,
    REASON_PRIORITY,
    REASON_RESOURCE,
    Plan,
    ineligible_reason,
)
from crane_sched_toolkit.pool import Pool, refresh

from crane_sched_fifo.capacity import exclude_indices, never_fits, never_fits_among, nodelist_indices, shape_key
from crane_sched_fifo.fit import FALLBACK, pick_among, pick_exclusive, pick_grid, pick_numpy
from crane_sched_fifo.order import order_jobs
from crane_sched_fifo.reserved import Reserved
from crane_sched_fifo.state import EPS, FreeState, PartIndex

try:  # NumPy is optional: it speeds up sorting and rare searches, decisions are identical without it.
    import numpy as _np
except ImportError:  # pragma: no cover - exercised only where numpy is absent
    _np = None

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, SchedJob

_SETTINGS = {"probe_limit", "use_numpy", "batch_size", "pause_gc", "fast_path"}


def gres_request(job: SchedJob) -> Mapping[str, int] | None:
    """The job's per-node gres request without zero entries (``None`` when empty)."""
    req = job.gres_per_node
    if req and min(req.values()) <= 0:
        req = {k: v for k, v in req.items() if v > 0}
    return req or None


class FifoScheduler:
    """Strict FIFO (priority, then submit order) per partition with best-fit node choice.

    Instantiated by stevedore with no arguments from entry point
    ``crane.scheduler: fifo``; :meth:`crane_plugin_configure` takes optional settings:

    * ``probe_limit`` (int, default 64): non-fitting nodes a Python scan may
      visit before switching to the vectorised NumPy search.
    * ``use_numpy`` (bool, default: whether NumPy is importable).
    * ``batch_size`` (int, default 0 = all): examine at most this many jobs
      per pass, like CraneSched's ``ScheduledBatchSize``; the rest get
      ``Priority``.
    * ``pause_gc`` (bool, default True): disable Python's cyclic garbage
      collector for the duration of the pass (restored afterwards). The pass
      creates no reference cycles, and a full collection over a 100k-job
      queue would otherwise land in the middle of it (up to ~40% of a cycle).
    * ``fast_path`` (bool, default True): on one partition of identical nodes where every job
      takes whole nodes (the trace replays' model), decide on node *counts*, kept across
      passes from the view's change journal (:meth:`crane_sched_toolkit.pool.Pool.fifo`): the
      same starts and reasons, any free nodes instead of the best fit (all are alike there).

    ``last_path`` tells which implementation answered the last pass (``"pool"`` or ``"general"``).
    """

    def __init__(self) -> None:
        self.probe_limit = 64
        self.use_numpy = _np is not None
        self.batch_size = 0
        self.pause_gc = True
        self.fast_path = True
        self.last_stats: dict[str, float] = {}
        self.last_path = ""
        self._pool: Pool | None = None

    @hookimpl
    def crane_plugin_configure(self, settings: Mapping[str, Any]) -> None:
        """Apply settings (see the class docstring); unknown keys raise ``ValueError``."""
        unknown = set(settings) - _SETTINGS
        if unknown:
            raise ValueError(f"fifo scheduler: unknown setting(s) {sorted(unknown)}; known: {sorted(_SETTINGS)}")
        if "probe_limit" in settings:
            self.probe_limit = max(0, int(settings["probe_limit"]))
        if "use_numpy" in settings:
            if settings["use_numpy"] and _np is None:
                raise ValueError("fifo scheduler: use_numpy is set but numpy is not installed")
            self.use_numpy = bool(settings["use_numpy"])
        if "batch_size" in settings:
            self.batch_size = max(0, int(settings["batch_size"]))
        if "pause_gc" in settings:
            self.pause_gc = bool(settings["pause_gc"])
        if "fast_path" in settings:
            self.fast_path = bool(settings["fast_path"])
        self._pool = None

    @hookimpl
    def crane_plugin_shutdown(self) -> None:
        """Drop the state kept between passes (the count-based pool holds the last view and its jobs)."""
        self._pool = None

    @hookimpl
    def crane_schedule(self, view: ClusterView, now: float) -> Plan:
        """Hook entry point: one FIFO pass over ``view`` (see :meth:`schedule`)."""
        return self.schedule(view, now)

    def schedule(self, view: ClusterView, now: float) -> Plan:
        """Run one scheduling pass and return the plan; ``view`` is left untouched."""
        paused = self.pause_gc and gc.isenabled()
        if paused:
            gc.disable()
        try:
            return self._schedule(view, now)
        finally:
            if paused:
                gc.enable()

    def _fast(self, view: ClusterView, now: float) -> Plan | None:
        """The count-based pass (see ``fast_path``), or None when the view needs the general one."""
        pool = self._pool = refresh(self._pool, view, now)
        return None if pool is None else pool.fifo(now, self.batch_size)

    def _schedule(self, view: ClusterView, now: float) -> Plan:
        if self.fast_path and not view.reservations and not view.job_reservations:  # the pool knows no reservations
            plan = self._fast(view, now)
            if plan is not None:
                self.last_path = "pool"
                return plan
        self._pool = None
        self.last_path = "general"
        t0 = time.perf_counter()
        np = _np if self.use_numpy else None
        limit: float = self.probe_limit if np is not None else math.inf
        st = FreeState(view)
        t1 = time.perf_counter()
        ordered = order_jobs(view.pending, np)
        if self.batch_size and len(ordered) > self.batch_size:
            ordered = ordered[: self.batch_size]
        t2 = time.perf_counter()
        plan = Plan()
        resv = Reserved(view, now) if view.reservations or view.job_reservations else None
        special, tested, fallbacks = self._walk(st, view.node_index, ordered, now, limit, plan.starts, resv)
        t3 = time.perf_counter()
        reasons = dict.fromkeys(map(attrgetter("job_id"), view.pending), REASON_PRIORITY)
        reasons.update(special)
        for jid, _ in plan.starts:
            reasons.pop(jid, None)
        plan.reasons = reasons
        plan.considered = len(ordered)
        t4 = time.perf_counter()
        self.last_stats = {
            "jobs": len(view.pending), "considered": len(ordered), "tested": tested,
            "started": len(plan.starts), "numpy_fallbacks": fallbacks, "build_s": t1 - t0,
            "sort_s": t2 - t1, "walk_s": t3 - t2, "reasons_s": t4 - t3, "total_s": t4 - t0,
        }
        return plan

    def _walk(self, st: FreeState, node_index: Mapping[str, int], ordered: list[SchedJob], now: float,
              limit: float, starts: list[tuple[int, list[int]]],
              resv: Reserved | None = None) -> tuple[dict[int, str], int, int]:
        """The main loop: decide each job in order; return (non-Priority reasons, jobs tested, fallbacks).

        ``resv``: the pass's reservations (:mod:`crane_sched_fifo.reserved`), None when there are none.
        """
        parts = st.parts
        special: dict[int, str] = {}
        never_cache: dict[Any, bool] = {}
        tested = 0
        fallbacks = [0]
        allocate = st.allocate
        for job in ordered:
            ps = parts.get(job.partition)
            if ps is None:
                special[job.job_id] = REASON_NODES_UNAVAILABLE
                continue
            why = ineligible_reason(job, ps.part, now)
            if why is not None:
                special[job.job_id] = why
                continue
            closed = None
            if resv is not None:
                own = resv.own(job)
                if own:  # a reservation's job: its own queue, on its nodes only
                    tested += 1
                    self._walk_reserved(st, ps, job, own, resv, node_index, now, special, starts)
                    continue
                closed, closed_why = resv.closed(job, now)
            if ps.blocked:
                continue
            tested += 1
            c = job.cpus_per_node
            if closed is not None:  # reserved nodes it would overlap are out of bounds
                req = gres_request(job) if job.gres_per_node else None
                nodes = self._pick(st, ps, job, req, node_index, limit, fallbacks, closed)
                if nodes is None and self._pick(st, ps, job, req, node_index, limit, fallbacks) is not None:
                    special[job.job_id] = closed_why  # it would fit but for the reservation
                    ps.blocked = True
                    continue
            elif (job.node_num <= 1 and c > EPS and not job.gres_per_node and not job.nodelist
                    and not job.exclude and not job.exclusive):
                # the common case, inlined: one node, CPUs and memory only
                req = None
                nodes = pick_grid(st, ps.grid, 1, c, job.mem_per_node, None, None, limit)
                if nodes is FALLBACK:
                    nodes = self._pick(st, ps, job, None, node_index, limit, fallbacks)
            else:
                req = gres_request(job) if job.gres_per_node else None
                nodes = self._pick(st, ps, job, req, node_index, limit, fallbacks)
            if nodes is None:
                key = (ps.name, shape_key(job))
                nf = never_cache.get(key)
                if nf is None:
                    nf = never_cache[key] = never_fits(st, ps, job, node_index)
                if nf:
                    special[job.job_id] = REASON_NODES_UNAVAILABLE
                else:
                    special[job.job_id] = REASON_RESOURCE
                    ps.blocked = True
                continue
            m, exclusive = job.mem_per_node, job.exclusive
            for i in nodes:
                allocate(i, c, m, req, exclusive)
            starts.append((job.job_id, nodes))
        return special, tested, fallbacks[0]

    def _walk_reserved(self, st: FreeState, ps: PartIndex, job: SchedJob, own: str, resv: Reserved,
                       node_index: Mapping[str, int], now: float, special: dict[int, str],
                       starts: list[tuple[int, list[int]]]) -> None:
        """Decide one job of reservation ``own``: its nodes only, while active; FIFO within the reservation."""
        why = resv.waiting_reason(own, now)
        if why is not None:
            special[job.job_id] = why
            return
        if own in resv.blocked:
            return  # an earlier job of the reservation waits: Priority
        cand = resv.candidates(resv.by_name[own], ps)
        closed, _ = resv.closed(job, now, own)  # a later reservation on the same nodes, if it would run into it
        excl = exclude_indices(job, node_index) if job.exclude else None
        if closed is not None:
            excl = closed if excl is None else excl | closed
        req = gres_request(job) if job.gres_per_node else None
        k = max(1, job.node_num)
        if job.nodelist:
            wanted = nodelist_indices(job, ps, node_index)
            cand = [i for i in cand if wanted is not None and i in wanted]
            if wanted is None or len(cand) < len(wanted):
                special[job.job_id] = REASON_NODES_UNAVAILABLE
                return
        nodes = pick_among(st, cand, k, job.cpus_per_node, job.mem_per_node, req, excl, bool(job.exclusive))
        if nodes is None:
            if never_fits_among(st, cand, job, excl):  # the reservation could never hold it: no blocking
                special[job.job_id] = REASON_NODES_UNAVAILABLE
                return
            special[job.job_id] = REASON_RESOURCE
            resv.blocked.add(own)
            return
        nodes.sort()
        for i in nodes:
            st.allocate(i, job.cpus_per_node, job.mem_per_node, req, job.exclusive)
        starts.append((job.job_id, nodes))

    def _pick(self, st: FreeState, ps: PartIndex, job: SchedJob, req: Mapping[str, int] | None,
              node_index: Mapping[str, int], limit: float, fallbacks: list[int],
              closed: frozenset[int] | None = None) -> list[int] | None:
        """Nodes for ``job`` now (sorted by index), or ``None`` if it does not fit (``closed``: nodes off limits)."""
        k = max(1, job.node_num)
        c, m = job.cpus_per_node, job.mem_per_node
        excl = exclude_indices(job, node_index) if job.exclude else None
        if closed is not None:
            excl = closed if excl is None else excl | closed
        if job.nodelist:
            cand = nodelist_indices(job, ps, node_index)
            if cand is None or len(cand) < k:
                return None
            r = pick_among(st, cand, k, c, m, req, excl, bool(job.exclusive))
        elif c <= EPS:  # zero-CPU request: nodes with no CPU free are not in the grids
            r = pick_among(st, ps.members, k, c, m, req, excl, bool(job.exclusive))
        elif job.exclusive:
            r = pick_exclusive(st, ps, k, c, m, req, excl, limit)
        else:
            r = pick_grid(st, ps.ggrid if req else ps.grid, k, c, m, req, excl, limit)
        if r is FALLBACK:
            fallbacks[0] += 1
            st.arrays(_np)
            r = pick_numpy(st, ps, k, c, m, req, excl, bool(job.exclusive))
        if r is not None and k > 1:
            r.sort()
        return r
