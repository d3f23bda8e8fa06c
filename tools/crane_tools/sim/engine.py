"""The event loop: replays jobs through a scheduler plugin on a virtual clock.

At each instant with events: completions are processed first (their nodes are
freed), then arrivals join the pending list, then — if anything is pending —
the priority hook (when a priority plugin is loaded) and ONE ``crane_schedule``
call. The plan's starts are checked against the live node state (a start that
would over-allocate a node, or names a non-pending job, raises
:class:`SimError`) and committed. A job that runs 0 s ends at the same
instant, which gives that instant a second pass (after its completion).

The :class:`~crane_kernel.sched_types.IncrementalView` (the scheduler
protocol's, as the controller's) is built once and mutated in place: the same
``SchedNode``, ``SchedJob`` and ``SchedRunning`` objects live for the whole
run, and every change is journaled in ``view.delta``. The engine edits the
lists and the delta itself rather than through the view's methods (fewer
calls per event); like the controller, it refuses to start a job that
:func:`~crane_kernel.sched_types.ineligible_reason` says may not run, or whose start
:func:`~crane_kernel.sched_types.reservation_conflict` refuses (advance reservations,
:mod:`crane_tools.sim.reservations`: their starts and ends are events of the loop too).
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Callable

from crane_kernel.plugins import Plugins
from crane_kernel.sched_types import (
    IncrementalView,
    Plan,
    SchedJob,
    SchedNode,
    SchedPartition,
    SchedRunning,
    ineligible_reason,
    reservation_conflict,
)

from crane_tools.sim.deps import DependencyModel
from crane_tools.sim.model import PARTITION, SimJob, job_shape
from crane_tools.sim.preempt import HIGH_PARTITION, PreemptModel, PreemptSetup
from crane_tools.sim.reservations import SimReservation

__all__ = ["SimError", "Simulation", "make_view"]

EPS = 1e-9

Observer = Callable[[float, IncrementalView, Plan], None]


class SimError(RuntimeError):
    """A scheduler plan the simulator refuses to commit (over-allocation, unknown job, bad node list)."""


def make_view(procs: int, cpus_per_node: int = 1) -> IncrementalView:
    """The simulated machine: ``procs / cpus_per_node`` identical nodes in one partition."""
    if cpus_per_node < 1:
        raise ValueError("cpus_per_node must be >= 1")
    if procs < 1:
        raise ValueError("the machine needs at least one processor")
    if procs % cpus_per_node:
        raise ValueError(f"procs ({procs}) must be a multiple of cpus_per_node ({cpus_per_node})")
    count = procs // cpus_per_node
    width = len(str(count))
    nodes = [SchedNode(f"n{i:0{width}d}", i, float(cpus_per_node), 0, partitions=(PARTITION,))
             for i in range(count)]
    parts = {PARTITION: SchedPartition(PARTITION, tuple(range(count)))}
    return IncrementalView(nodes, parts, [], [])


class Simulation:
    """One replay of ``jobs`` on ``procs`` processors through ``plugins`` (a :class:`~crane_kernel.plugins.Plugins`).

    The hooks are called through the kernel's callers (``plugins.hook``), the
    same path cranectld takes: ``crane_job_priorities`` before every pass (when
    a priority plugin is loaded), ``crane_schedule`` once per pass, and
    ``crane_job_finished`` at every job end (when a plugin implements it; the
    multifactor priority plugin charges fair-share usage there). ``observer(now, view, plan)`` is
    called after every pass, once the plan is committed (tests use it to check
    invariants). After :meth:`run`, ``start[i]`` is the start time of ``jobs[i]``
    (``None`` if it never started).
    """

    def __init__(self, jobs: list[SimJob], procs: int, plugins: Plugins, *, cpus_per_node: int = 1,
                 observer: Observer | None = None, record_series: bool = False, progress: bool = False,
                 reservations: list[SimReservation] | None = None,
                 preemption: PreemptSetup | None = None, dependencies: DependencyModel | None = None) -> None:
        self.jobs = jobs
        self.procs = procs
        self.cpus_per_node = cpus_per_node
        self.plugins = plugins
        self.observer = observer
        self.record_series = record_series
        self.progress = progress
        self.view = make_view(procs, cpus_per_node)
        self.reservations = sorted(reservations or [], key=lambda r: r.start)
        bad = [r for r in self.reservations if r.nodes and r.nodes[-1] >= len(self.view.nodes)]
        if bad:
            raise ValueError(f"reservation {bad[0].name}: the machine has nodes 0-{len(self.view.nodes) - 1}")
        self.preemption = preemption  # the preemption model (crane_tools/sim/preempt.py), or None
        self.preempt: PreemptModel | None = None
        if preemption is not None:
            preemption.shape(self.view, PARTITION)
        self.deps = dependencies  # the dependency model (crane_tools/sim/deps.py), or None
        self.start: list[int | float | None] = [None] * len(jobs)
        self.passes = 0
        self.series: tuple[list[float], list[int], list[int]] = ([], [], [])
        ids = [j.job_id for j in jobs]
        self.renumbered = len(set(ids)) != len(ids)

    def run(self) -> None:
        """Replay every job; fills ``start`` and ``passes``."""
        jobs = self.jobs
        n = len(jobs)
        view = self.view
        nodes = view.nodes
        parts = view.partitions
        pending = view.pending
        running = view.running
        delta = view.delta
        add_pending = delta.pending_added.append
        del_pending = delta.pending_removed.append
        add_running = delta.running_added.append
        del_running = delta.running_removed.append
        loaded = self.plugins
        if not loaded.implemented("crane_schedule"):
            raise SimError("no scheduler plugin implements crane_schedule")
        schedule = loaded.hook.crane_schedule
        prio_hook = loaded.hook.crane_job_priorities if loaded.implemented("crane_job_priorities") else None
        pa_clear = delta.pending_added.clear
        pr_clear = delta.pending_removed.clear
        ra_clear = delta.running_added.clear
        rr_clear = delta.running_removed.clear
        job_finished = loaded.hook.crane_job_finished if loaded.implemented("crane_job_finished") else None
        setup = self.preemption
        preempt_hook = loaded.hook.crane_preempt if setup is not None and loaded.implemented("crane_preempt") else None
        observer = self.observer
        deps = self.deps
        cpn_model = self.cpus_per_node
        renumber = self.renumbered
        start = self.start
        series_t, series_q, series_busy = self.series
        record_series = self.record_series
        progress = self.progress

        index_of: dict[int, int] = {}  # SchedJob.job_id -> index into jobs
        pend_pos: dict[int, int] = {}  # job_id -> position in view.pending
        pend_job: dict[int, SchedJob] = {}  # job_id -> SchedJob
        run_pos: dict[int, int] = {}  # job_id -> position in view.running
        run_job: dict[int, SchedJob] = {}  # job_id -> SchedJob of a running job (for crane_job_finished)
        done: list[tuple[float, int, SchedRunning]] = []  # (actual end, seq, running)
        excl_held: set[int] = set()  # nodes held by a running exclusive job
        busy = 0
        seq = 0
        i = 0
        passes = 0
        last_report = 0.0
        t_start = time.perf_counter()
        heappop = heapq.heappop
        heappush = heapq.heappush
        submits = [j.submit for j in jobs]
        names: dict[tuple[int, int], tuple[str, str]] = {}  # (group, user) -> (account, user name)
        inf = float("inf")
        resvs = self.reservations
        bounds = sorted({x for r in resvs for x in (r.start, r.end)})  # times the reserved nodes change
        bpos = 0
        shown: list = []  # the reservations in the view (not over)
        model = None
        if setup is not None:
            model = self.preempt = PreemptModel(view, jobs, index_of, start, pend_pos, pend_job, run_pos, run_job,
                                                done, job_finished)

        while i < n or done or (pending and bpos < len(bounds)):
            t: float = submits[i] if i < n else inf
            if done and done[0][0] < t:
                t = done[0][0]
            if bpos < len(bounds) and pending and bounds[bpos] < t:
                t = bounds[bpos]  # a reservation starts or ends while jobs wait: a pass then
            while bpos < len(bounds) and bounds[bpos] <= t:
                bpos += 1
            if resvs:
                now_shown = [r for r in resvs if r.end > t]
                if len(now_shown) != len(shown):
                    shown = now_shown
                    view.reservations = [r.sched() for r in shown]
                    delta.other = True
            # 1. completions
            while done and done[0][0] == t:
                r = heappop(done)[2]
                if model is not None and model.stale(r):
                    continue  # a run a preemption took away (ctld's model: crane_tools/sim/preempt.py)
                c = r.cpus_per_node
                for x in r.nodes:
                    nd = nodes[x]
                    nd.cpus_free += c
                    nd.njobs -= 1
                if r.exclusive:
                    excl_held.difference_update(r.nodes)
                pos = run_pos.pop(r.job_id)
                last = running.pop()
                if last is not r:
                    running[pos] = last
                    run_pos[last.job_id] = pos
                del_running(r)
                ix = index_of[r.job_id]
                busy -= jobs[ix].size
                if job_finished is not None:
                    job_finished(job=run_job.pop(r.job_id), start_time=start[ix], end_time=t)
                if deps is not None:
                    for child in deps.finished(ix):  # jobs that waited for it join the queue now
                        pend_pos[child.job_id] = len(pending)
                        pend_job[child.job_id] = child
                        pending.append(child)
                        add_pending(child)
                if model is not None and r.job_id in model.lent:
                    model.preemptor_ended(r.job_id)
            if model is not None and model.to_resume:
                busy += model.resume_waiting(t)
            # 2. arrivals
            while i < n and submits[i] == t:
                sj = jobs[i]
                jid = i + 1 if renumber else sj.job_id
                who = names.get((sj.group, sj.user))
                if who is None:
                    who = names[(sj.group, sj.user)] = (_account(sj), str(sj.user))
                part = HIGH_PARTITION if setup is not None and setup.is_high(i) else PARTITION
                if cpn_model == 1:
                    job = SchedJob(jid, part, sj.size, 1.0, 0, sj.estimate, submit_time=float(t),
                                   account=who[0], user=who[1], uid=sj.user)
                else:
                    node_num, cpn = job_shape(sj.size, cpn_model)
                    job = SchedJob(jid, part, node_num, float(cpn), 0, sj.estimate,
                                   submit_time=float(t), account=who[0], user=who[1], uid=sj.user)
                index_of[jid] = i
                i += 1
                if deps is not None and deps.park(i - 1, job):
                    continue  # its parent has not ended: out of the view, as reason Dependency
                pend_pos[jid] = len(pending)
                pend_job[jid] = job
                pending.append(job)
                add_pending(job)
            if record_series:
                series_t.append(t)
                series_q.append(len(pending))
                series_busy.append(busy)
            if not pending:
                continue
            # 3. one scheduling pass
            if prio_hook is not None:
                prios = prio_hook(jobs=pending, view=view, now=t)
                if prios is not None:
                    for job, p in zip(pending, prios, strict=True):
                        job.priority = p if job.pinned_priority is None else job.pinned_priority
                    delta.priorities = True
            view.version += 1
            plan = schedule(view=view, now=t)
            pa_clear()
            pr_clear()
            ra_clear()
            rr_clear()
            delta.priorities = delta.other = False
            passes += 1
            if plan is None:
                continue
            if preempt_hook is not None:
                preempt_hook(view=view, plan=plan, now=t)  # the preempt plugin adds its orders
                if plan.preempt:
                    busy += model.carry_out(plan, t)  # type: ignore[union-attr]
            for jid, idxs in plan.starts:
                job = pend_job.pop(jid, None)
                if job is None:
                    raise SimError(f"t={t}: plan starts job {jid}, which is not pending")
                why = ineligible_reason(job, parts.get(job.partition), t)
                if why is None and resvs:
                    why = reservation_conflict(view, job, idxs, t)
                if why is not None:
                    raise SimError(f"t={t}: plan starts job {jid}, which may not run now ({why})")
                c = job.cpus_per_node
                k = job.node_num
                if len(idxs) != k or (k > 1 and len(set(idxs)) != k):
                    raise SimError(f"t={t}: job {jid} needs {k} distinct nodes, plan gives {idxs}")
                excl = job.exclusive
                for x in idxs:  # check and commit; a refused plan aborts the run
                    nd = nodes[x]
                    if (not nd.usable or nd.cpus_free < c - EPS or x in excl_held or (excl and nd.njobs)
                            or x < 0):
                        raise SimError(f"t={t}: starting job {jid} on node {x} would over-allocate it ({nd!r})")
                    nd.cpus_free -= c
                    nd.njobs += 1
                if excl:
                    excl_held.update(idxs)
                pos = pend_pos.pop(jid)
                last_job = pending.pop()
                if last_job is not job:
                    pending[pos] = last_job
                    pend_pos[last_job.job_id] = pos
                del_pending(job)
                ix = index_of[jid]
                sj = jobs[ix]
                start[ix] = t
                r = SchedRunning(jid, tuple(idxs), c, 0, t + job.time_limit, partition=job.partition,
                                 exclusive=job.exclusive, start_time=float(t))
                run_pos[jid] = len(running)
                if job_finished is not None:
                    run_job[jid] = job
                running.append(r)
                add_running(r)
                seq += 1
                heappush(done, (t + sj.run, seq, r))
                busy += sj.size
                if model is not None:
                    model.started(job, r, t + sj.run)
            if observer is not None:
                observer(t, view, plan)
            if progress and (passes & 1023) == 0:
                now = time.perf_counter()
                if now - last_report > 0.2:
                    last_report = now
                    _progress(i, n, now - t_start)
        self.passes = passes
        if progress:
            _progress(n, n, time.perf_counter() - t_start)
            sys.stderr.write("\n")


def _account(sj: SimJob) -> str:
    """The account a trace job is charged to: its group, else its user."""
    return f"g{sj.group}" if sj.group >= 0 else f"u{sj.user}"


def _progress(done: int, total: int, elapsed: float) -> None:
    width = 30
    frac = done / total if total else 1.0
    filled = int(frac * width)
    rate = done / elapsed if elapsed > 0 else 0.0
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} jobs  {rate:,.0f} jobs/s ")
    sys.stderr.flush()
