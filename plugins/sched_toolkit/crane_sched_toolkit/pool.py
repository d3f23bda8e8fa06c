"""The count-based fast path: one partition of identical nodes, every job taking whole nodes.

Shared by the ``fifo`` (:meth:`Pool.fifo`) and the backfill schedulers (:meth:`Pool.easy`,
:meth:`Pool.conservative`); the policies' settings come in as plain arguments.

When the view has a single partition holding every node, all nodes have the
same CPU count and no gres, and every pending and running job takes whole
nodes (``cpus_per_node`` equal to a node's CPUs, or exclusive) with no memory
beyond the smallest node, no gres and no ``-w``/``-x``, then a node is simply
free or busy and backfilling only needs *counts*: the classic single-pool EASY
(shadow time and spare processors) and a count-based availability profile for
conservative. Decisions are identical to the general path's (node choice aside).

The :class:`Pool` is a cache kept across calls. It is rebuilt from the view
(``O(nodes + running + pending log pending)``) unless the caller passes the
same view object with the change journal of
:class:`crane_kernel.sched_types.IncrementalView` (the controller's and the
simulator's) — ``view.version`` one above
the version the pool last saw, ``view.delta`` listing what changed — in which
case only the changes are applied: pending jobs are inserted/removed in the
sorted queue by bisection, running jobs in the sorted list of expected ends,
and only the nodes they touch are re-read. Nodes handed out in a plan are taken
from the free set at once and given back at the next call unless the caller
started the job on them.

Two further shortcuts need no re-examination of the queue, because nothing
the earlier decisions depended on has changed:

* EASY, when only new jobs arrived (queued behind the reserved head job) and
  every start of the previous plan was committed: the previous shadow time
  and spare count still hold, so only the new jobs are examined.
* conservative, when the only completions were at their expected end, every
  queued job holds a reservation and new jobs queue at the tail: the
  profile is kept; jobs whose reservation is due start and new jobs are planned.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from typing import TYPE_CHECKING, Any

from crane_kernel.sched_types import (
    REASON_PRIORITY,
    REASON_RESOURCE,
    REASON_RESOURCE_RESERVED,
    Plan,
    priority_order_key,
)
from crane_kernel.sched_types import ineligible_reason as static_reason

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, SchedJob, SchedRunning

EPS = 1e-6
"""Tolerance for fractional CPU comparisons."""

__all__ = ["Pool", "refresh"]

INF = float("inf")
_REBUILD_FRACTION = 4  # re-sort instead of bisecting when the delta touches > 1/4 of the queue


class Pool:
    """Count-based scheduling state for one view (see the module docstring)."""

    def __init__(self, view: "ClusterView", pname: str, c0: float, m0: int) -> None:
        self.view = view
        self.version: Any = None
        self.pname = pname
        self.part = view.partitions[pname]
        self.c0 = c0
        self.m0 = m0
        self.ptotal = 0
        self.all_usable = True
        self.free: set[int] = set()
        self.ends: list[tuple[float, int, int]] = []  # (end_time, job_id, usable nodes held), sorted
        self.order: list[SchedJob] = []
        self.keys: list[tuple[float, float, int]] = []
        self.ids: list[int] = []
        self.needs: list[int] = []
        self.lims: list[float] = []
        self.tentative: dict[int, list[int]] = {}
        self.special: dict[int, str] = {}  # pending reasons other than Priority
        self.reasons: dict[int, str] = {}  # every pending job's reason, kept up to date across calls
        self.new_pos: list[int] | None = None
        self.arrivals_only = False
        self.exact_ends_only = False
        self.tail_key: tuple[float, float, int] | None = None
        self.easy_state: tuple[float, int, tuple[float, float, int], int] | None = None
        self.fifo_head: tuple[float, float, int] | None = None  # the job a FIFO pass stopped at
        self.cons_state: tuple[list[float], list[int]] | None = None
        self.reserved: dict[int, float] = {}
        self.res_heap: list[tuple[float, int, int]] = []
        self.shortcuts = 0

    # ------------------------------------------------------------------ building and journal

    @classmethod
    def build(cls, view: "ClusterView", now: float) -> "Pool | None":
        """A fresh pool for ``view``, or ``None`` when the view needs the general path."""
        if len(view.partitions) != 1:
            return None
        ((pname, part),) = view.partitions.items()
        nodes = view.nodes
        n = len(nodes)
        if not n or len(part.node_indices) != n or set(part.node_indices) != set(range(n)):
            return None
        c0 = nodes[0].cpus_total
        m0 = nodes[0].mem_total
        for nd in nodes:
            if nd.cpus_total != c0 or nd.gres_total:
                return None
            if nd.mem_total < m0:
                m0 = nd.mem_total
        pool = cls(view, pname, c0, m0)
        whole = pool._whole
        for r in view.running:
            if not whole(r):
                return None
        pool.ptotal = sum(1 for nd in nodes if nd.usable)
        pool.all_usable = pool.ptotal == n
        plain = pool.plain
        for job in view.pending:
            if not plain(job, now):
                return None
        pool.free = {i for i, nd in enumerate(nodes) if nd.usable and nd.njobs == 0}
        held = pool._held
        pool.ends = sorted((r.end_time, r.job_id, held(r)) for r in view.running)
        pool._resort(view.pending)
        pool.reasons = dict.fromkeys(pool.ids, REASON_PRIORITY)
        return pool

    def _whole(self, r: "SchedRunning") -> bool:
        return (r.exclusive or r.cpus_per_node >= self.c0 - EPS) and not r.gres_per_node

    def _held(self, r: "SchedRunning") -> int:
        nodes = self.view.nodes
        return sum(1 for x in r.nodes if nodes[x].usable)

    def plain(self, job: "SchedJob", now: float) -> bool:
        """Whether ``job`` fits the count model (whole nodes, nothing special, eligible now)."""
        c = job.cpus_per_node
        return (job.partition == self.pname and not job.gres_per_node and not job.nodelist and not job.exclude
                and job.mem_per_node <= self.m0 and 1 <= job.node_num <= self.ptotal
                and (self.c0 - EPS <= c <= self.c0 + EPS or (job.exclusive and c <= self.c0 + EPS))
                and static_reason(job, self.part, now) is None)

    def _resort(self, pending: "list[SchedJob]") -> None:
        order = sorted(pending, key=priority_order_key)
        self.order = order
        self.keys = [(-j.priority, j.submit_time, j.job_id) for j in order]
        self.ids = [j.job_id for j in order]
        self.needs = [j.node_num for j in order]
        self.lims = [float(j.time_limit) if j.time_limit >= 1 else 1.0 for j in order]
        self.new_pos = None

    def apply(self, delta: Any, now: float) -> bool:
        """Apply a view's change journal; ``False`` when the pool must be rebuilt instead."""
        nodes = self.view.nodes
        tentative = self.tentative
        last_started = len(tentative)
        started_ids = set(tentative) if last_started else ()
        check: list[int] = []  # nodes whose free/busy state must be re-read from the view
        foreign = False
        all_usable = self.all_usable
        c_min = self.c0 - EPS
        ends = self.ends
        free = self.free
        for r in delta.running_added:
            if r.gres_per_node or not (r.exclusive or r.cpus_per_node >= c_min):
                return False
            held = r.nodes
            insort(ends, (r.end_time, r.job_id, len(held) if all_usable else self._held(r)))
            mine = tentative.pop(r.job_id, None)
            if mine is None or tuple(mine) != held:  # not ours, or not where we put it
                foreign = True
                check.extend(held)
                if mine:
                    check.extend(mine)
        early = False
        for r in delta.running_removed:
            k = bisect_left(ends, (r.end_time, r.job_id))
            if k >= len(ends) or ends[k][1] != r.job_id:
                return False
            del ends[k]
            if foreign or not all_usable:
                check.extend(r.nodes)
            else:
                free.update(r.nodes)
            if r.end_time > now:
                early = True
        leftover = bool(tentative)
        for lst in tentative.values():
            check.extend(lst)
        tentative.clear()
        for x in check:
            nd = nodes[x]
            if nd.usable and nd.njobs == 0:
                free.add(x)
            else:
                free.discard(x)
        added = delta.pending_added
        removed = delta.pending_removed
        plain = self.plain
        reasons = self.reasons
        for job in added:
            if not plain(job, now):
                return False
            reasons[job.job_id] = REASON_PRIORITY
        ours = 0
        for job in removed:
            jid = job.job_id
            reasons.pop(jid, None)
            if jid in started_ids:
                ours += 1
        own = not foreign and not leftover and not delta.priorities and ours == len(removed) == last_started
        self.arrivals_only = own and not delta.running_removed
        self.exact_ends_only = own and not early
        self.tail_key = self.keys[-1] if self.keys else None
        if delta.priorities or (len(added) + len(removed)) * _REBUILD_FRACTION > len(self.order) + 8:
            self._resort(self.view.pending)
            if not delta.priorities and added:
                pos = [bisect_left(self.keys, priority_order_key(j)) for j in added]
                self.new_pos = sorted(pos)
            return True
        keys, order, ids, needs, lims = self.keys, self.order, self.ids, self.needs, self.lims
        for job in removed:
            k = bisect_left(keys, priority_order_key(job))
            if k >= len(order) or order[k] is not job:
                return False
            del keys[k], order[k], ids[k], needs[k], lims[k]
        k = -1
        for job in added:
            key = priority_order_key(job)
            k = bisect_left(keys, key)
            keys.insert(k, key)
            order.insert(k, job)
            ids.insert(k, job.job_id)
            needs.insert(k, job.node_num)
            lims.insert(k, float(job.time_limit) if job.time_limit >= 1 else 1.0)
        if len(added) == 1:
            self.new_pos = [k]
        elif added:
            self.new_pos = sorted(bisect_left(keys, priority_order_key(j)) for j in added)
        else:
            self.new_pos = []
        return True

    # ------------------------------------------------------------------ helpers

    def _start(self, pos: int, plan: Plan) -> None:
        free = self.free
        jid = self.ids[pos]
        need = self.needs[pos]
        if need == 1:
            nodes = [free.pop()]
        else:
            nodes = [free.pop() for _ in range(need)]
            nodes.sort()
        plan.starts.append((jid, nodes))
        self.tentative[jid] = nodes

    def _publish(self, plan: Plan, limit: int, old_special: dict[int, str] | None, new_pos: Any = ()) -> None:
        """Bring the kept reasons up to date and give the plan a copy.

        ``old_special``: the special reasons before a full pass rebuilt them
        (they fall back to Priority unless set again); ``None`` after an
        incremental pass, where only the jobs at ``new_pos`` got reasons.
        """
        reasons = self.reasons
        special = self.special
        if old_special is not None:
            for jid in old_special:
                if jid in reasons:
                    reasons[jid] = REASON_PRIORITY
            reasons.update(special)
        else:
            ids = self.ids
            for pos in new_pos:
                why = special.get(ids[pos])
                if why is not None:
                    reasons[ids[pos]] = why
        for jid, _ in plan.starts:
            reasons.pop(jid, None)
        plan.reasons = reasons.copy()
        plan.considered = limit

    def _shadow(self, new_ends: list[tuple[float, int]], nfree: int, need: int, now: float) -> tuple[float, int]:
        """Earliest expected end at which ``need`` nodes are free, and how many are free then."""
        avail = nfree
        shadow = INF
        floor = now + 1
        ends = self.ends
        ne = len(ends)
        nn = len(new_ends)
        if nn > 1:
            new_ends.sort()
        i = j = 0
        while i < ne or j < nn:
            if j >= nn or (i < ne and ends[i][0] <= new_ends[j][0]):
                e, _, k = ends[i]
                i += 1
            else:
                e, k = new_ends[j]
                j += 1
            if e <= now:
                e = floor
            if shadow != INF and e > shadow:
                break
            avail += k
            if shadow == INF and avail >= need:
                shadow = e
        return shadow, avail

    # ------------------------------------------------------------------ FIFO

    def fifo(self, now: float, max_jobs: int) -> Plan:
        """One strict FIFO pass on counts: start jobs in queue order until one does not fit (``Resource``).

        Every later job waits with ``Priority``. When only new jobs arrived behind the job the
        previous pass stopped at (nothing ended, every start committed), that job still cannot
        start and nothing behind it may: the pass decides nothing new.
        """
        plan = Plan()
        n = len(self.ids)
        limit = min(n, max_jobs) if max_jobs else n
        head = self.fifo_head
        if (head is not None and self.arrivals_only and self.new_pos is not None and limit == n
                and all(self.keys[p] > head for p in self.new_pos)):
            self.shortcuts += 1
            self._publish(plan, limit, None, ())
            return plan
        old_special = self.special
        special = self.special = {}
        self.fifo_head = None
        needs, ids = self.needs, self.ids
        nfree = len(self.free)
        for pos in range(limit):
            s = needs[pos]
            if s <= nfree:
                self._start(pos, plan)
                nfree -= s
                continue
            special[ids[pos]] = REASON_RESOURCE
            self.fifo_head = self.keys[pos]
            break
        self._publish(plan, limit, old_special)
        return plan

    # ------------------------------------------------------------------ EASY

    def easy(self, now: float, ps: Any, max_jobs: int) -> Plan:
        """One EASY pass on counts (see the module docstring)."""
        plan = Plan()
        n = len(self.ids)
        limit = min(n, max_jobs) if max_jobs else n
        needs, lims, ids, keys = self.needs, self.lims, self.ids, self.keys
        nfree = len(self.free)
        horizon = now + ps.window
        st = self.easy_state
        reserved = False
        shadow = INF
        extra = 0
        head_key = None
        head_id = -1
        old_special: dict[int, str] | None = None
        if (st is not None and self.arrivals_only and self.new_pos is not None and limit == n
                and all(keys[p] > st[2] for p in self.new_pos)):
            shadow, extra, head_key, head_id = st
            reserved = True
            positions: Any = self.new_pos
            special = self.special
            self.shortcuts += 1
        else:
            positions = range(limit)
            old_special = self.special
            special = self.special = {}
        new_ends: list[tuple[float, int]] = []
        unreserved = False
        if not reserved:  # phase 1: start jobs in order until one must wait (and gets the reservation)
            for pos in positions:
                s = needs[pos]
                if s <= nfree:
                    self._start(pos, plan)
                    nfree -= s
                    new_ends.append((now + lims[pos], s))
                    continue
                sh, avail = self._shadow(new_ends, nfree, s, now)
                special[ids[pos]] = REASON_RESOURCE
                if sh > horizon:
                    unreserved = True
                    continue
                reserved = True
                shadow = sh
                extra = avail - s
                head_key = keys[pos]
                head_id = ids[pos]
                positions = range(pos + 1, limit)
                break
        if reserved and nfree > 0 and len(positions) and nfree >= _min_at(needs, positions):
            # phase 2: backfill behind the reserved head
            for pos in positions:
                s = needs[pos]
                if s <= nfree:
                    if now + lims[pos] <= shadow:
                        self._start(pos, plan)
                        nfree -= s
                    elif s <= extra:
                        self._start(pos, plan)
                        nfree -= s
                        extra -= s
                    else:
                        special[ids[pos]] = REASON_RESOURCE_RESERVED
                    if nfree == 0:
                        break
        if reserved:
            plan.reserved[head_id] = shadow
        self.easy_state = (shadow, extra, head_key, head_id) if reserved and not unreserved else None  # type: ignore[assignment]
        self._publish(plan, limit, old_special, self.new_pos if old_special is None else ())
        return plan

    # ------------------------------------------------------------------ conservative

    def conservative(self, now: float, ps: Any, max_jobs: int) -> Plan:
        """One conservative pass on a count profile (see the module docstring)."""
        plan = Plan()
        n = len(self.ids)
        limit = min(n, max_jobs) if max_jobs else n
        st = self.cons_state
        if (st is not None and self.exact_ends_only and self.new_pos is not None and limit == n
                and (self.tail_key is None or all(self.keys[p] > self.tail_key for p in self.new_pos))):
            prof = self._trimmed(st, now)
            if prof is not None:
                self.shortcuts += 1
                return self._cons_incremental(now, ps, prof, plan, limit)
        return self._cons_full(now, ps, plan, limit)

    def _trimmed(self, st: tuple[list[float], list[int]], now: float) -> tuple[list[float], list[int]] | None:
        """The kept profile from ``now`` on, if it agrees with the free count; else ``None``."""
        ts, fs = st
        k = bisect_right(ts, now) - 1
        if k < 0:
            return None
        ts = [now] + ts[k + 1:]
        fs = fs[k:]
        due = sum(need for start, _, need in self.res_heap if start <= now)
        if fs[0] + due != len(self.free):
            return None
        return ts, fs

    def _profile(self, now: float) -> tuple[list[float], list[int]]:
        ts = [now]
        fs = [len(self.free)]
        floor = now + 1
        for e, _, k in self.ends:
            if e <= now:
                e = floor
            if e <= ts[-1]:
                fs[-1] += k
            else:
                ts.append(e)
                fs.append(fs[-1] + k)
        return ts, fs

    def _cons_full(self, now: float, ps: Any, plan: Plan, limit: int) -> Plan:
        ts, fs = self._profile(now)
        old_special = self.special
        self.special = {}
        self.reserved = {}
        self.res_heap = []
        complete = self._cons_plan(now, ps, ts, fs, range(limit), plan, 0)
        return self._cons_finish(plan, ts, fs, complete and limit == len(self.ids), limit, old_special)

    def _cons_incremental(self, now: float, ps: Any, prof: tuple[list[float], list[int]],
                          plan: Plan, limit: int) -> Plan:
        ts, fs = prof
        heap = self.res_heap
        reserved = self.reserved
        special = self.special
        free = self.free
        while heap and heap[0][0] <= now:
            start, jid, need = heapq.heappop(heap)
            if reserved.get(jid) != start:
                continue
            del reserved[jid]
            special.pop(jid, None)
            nodes = sorted(free.pop() for _ in range(need))
            plan.starts.append((jid, nodes))
            self.tentative[jid] = nodes
        complete = self._cons_plan(now, ps, ts, fs, self.new_pos or [], plan, len(reserved))
        return self._cons_finish(plan, ts, fs, complete, limit, None)

    def _cons_finish(self, plan: Plan, ts: list[float], fs: list[int], complete: bool, limit: int,
                     old_special: dict[int, str] | None) -> Plan:
        self.cons_state = (ts, fs) if complete else None
        plan.reserved = dict(self.reserved)
        self._publish(plan, limit, old_special, self.new_pos or () if old_special is None else ())
        return plan

    def _cons_plan(self, now: float, ps: Any, ts: list[float], fs: list[int], positions: Any,
                   plan: Plan, nres: int) -> bool:
        """Plan ``positions`` in order on the profile ``ts``/``fs`` (edited in place); True if all got a slot."""
        needs, lims, ids = self.needs, self.lims, self.ids
        special, reserved, heap = self.special, self.reserved, self.res_heap
        horizon = now + ps.window
        depth = ps.depth
        complete = True
        # The profile only loses capacity during a pass, so the first breakpoint with room for s nodes
        # found for one job is a lower bound for every later job of the same size, and the slot found
        # for (s, d) is a lower bound for every later job of the same size and duration.
        floor: dict[Any, float] = {}
        for pos in positions:
            s = needs[pos]
            d = lims[pos]
            if nres < depth:
                lo = floor.get((s, d))
                by_size = lo is None
                if by_size:
                    lo = floor.get(s)
                j, first = _slot(ts, fs, s, d, horizon, bisect_left(ts, lo) if lo is not None else 0)
                if by_size and first >= 0:
                    floor[s] = ts[first]
                if j < 0:
                    special[ids[pos]] = REASON_RESOURCE
                    complete = False
                    continue
                start = ts[j]
                floor[(s, d)] = start
                _carve(ts, fs, j, start + d, s)
                if start <= now:
                    self._start(pos, plan)
                    continue
                jid = ids[pos]
                reserved[jid] = start
                heapq.heappush(heap, (start, jid, s))
                special[jid] = REASON_RESOURCE
                nres += 1
                continue
            complete = False
            if fs[0] >= s and _slot(ts, fs, s, d, now, 0)[0] == 0:
                _carve(ts, fs, 0, now + d, s)
                self._start(pos, plan)
            elif s <= len(self.free):
                special[ids[pos]] = REASON_RESOURCE_RESERVED
        return complete


def _min_at(values: list[int], positions: Any) -> int:
    """The smallest of ``values`` at ``positions`` (a ``range`` or a list of indices)."""
    if isinstance(positions, range):
        return min(values[positions.start:positions.stop])
    return min(values[p] for p in positions)


def _slot(ts: list[float], fs: list[int], s: int, d: float, horizon: float, j: int) -> tuple[int, int]:
    """Earliest breakpoint index ``>= j``, at a time ``<= horizon``, from which ``fs >= s`` for ``d`` seconds.

    Returns ``(index or -1, index of the first breakpoint >= j with fs >= s, or -1)``.
    """
    nb = len(ts)
    first = -1
    while True:
        while j < nb and fs[j] < s:
            j += 1
        if first < 0 and j < nb:
            first = j
        if j >= nb or ts[j] > horizon:
            return -1, first
        end = ts[j] + d
        m = j + 1
        while m < nb and ts[m] < end and fs[m] >= s:
            m += 1
        if m >= nb or ts[m] >= end:
            return j, first
        j = m


def _carve(ts: list[float], fs: list[int], j: int, end: float, s: int) -> None:
    """Subtract ``s`` from the profile over ``[ts[j], end)``."""
    m = bisect_left(ts, end, j)
    if m >= len(ts) or ts[m] != end:
        ts.insert(m, end)
        fs.insert(m, fs[m - 1])
    if m - j > 8:
        fs[j:m] = [f - s for f in fs[j:m]]
    else:
        for x in range(j, m):
            fs[x] -= s


def refresh(pool: "Pool | None", view: "ClusterView", now: float) -> "Pool | None":
    """The pool for this call: ``pool`` brought up to date from the view's change journal when it can
    be (the same view, one version on, nothing but jobs changed), else a fresh one; None when the
    view needs a scheduler's general path."""
    version = getattr(view, "version", None)  # None for a plain ClusterView: rebuild every call
    delta = getattr(view, "delta", None)
    ok = False
    if (pool is not None and pool.view is view and delta is not None and version is not None
            and pool.version is not None and version == pool.version + 1 and not delta.other):
        ok = pool.apply(delta, now)
    if not ok:
        pool = Pool.build(view, now)
        if pool is None:
            return None
    pool.version = version
    return pool
