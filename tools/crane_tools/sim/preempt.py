"""The simulator's preemption model: two classes of jobs, the preempt plugin's orders carried out on the virtual clock.

With ``--preempt-every N`` every N-th job of the trace (the first, the (N+1)-th, ...) is in
partition ``high`` (priority 10); the others stay in ``sim`` (priority 1) whose ``PreemptMode`` is
``--preempt-mode`` (``CANCEL``, ``REQUEUE`` or ``SUSPEND``). Both partitions hold every node. After
each ``crane_schedule`` call the engine calls ``crane_preempt`` (the same plugin as cranectld's) and
this model carries the orders out the way the controller does, with a grace time of 0:

* ``CANCEL``: the victim ends now and never runs again (it leaves the metrics; its work so far is lost);
* ``REQUEUE``: the victim goes back to the queue with its submit time; its work so far is lost and
  it runs again from the start later;
* ``SUSPEND``: the victim leaves the running list and frees its CPUs; when its preemptor ends it
  resumes (as soon as its CPUs are free again) and runs what was left of it.

Victims of ``CANCEL`` and ``REQUEUE`` free their nodes at once, so their preemptor starts in the
same pass on the nodes its orders named (the controller starts it as soon as its victims are gone).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from crane_kernel.sched_types import (
    PREEMPT_CANCEL,
    PREEMPT_MODES,
    PREEMPT_OFF,
    PREEMPT_REQUEUE,
    PREEMPT_SUSPEND,
    IncrementalView,
    Plan,
    PreemptRules,
    SchedJob,
    SchedPartition,
    SchedRunning,
)

__all__ = ["HIGH_PARTITION", "PreemptModel", "PreemptSetup"]

HIGH_PARTITION = "high"
"""The partition of the simulated high-priority class."""

_SEQ_BASE = 1 << 50  # tie-breaks of the model's own completions, beyond the engine's


class PreemptSetup:
    """What the replay preempts: every ``every``-th job is high-priority; the others are preempted with ``mode``."""

    __slots__ = ("every", "mode")

    def __init__(self, every: int, mode: str = PREEMPT_REQUEUE) -> None:
        mode = mode.upper()
        if every < 1:
            raise ValueError("--preempt-every must be >= 1")
        if mode not in PREEMPT_MODES or mode == PREEMPT_OFF:
            raise ValueError(f"--preempt-mode must be one of {', '.join(PREEMPT_MODES[1:])}, not {mode!r}")
        self.every = every
        self.mode = mode

    def is_high(self, index: int) -> bool:
        """Whether the trace's ``index``-th job (0-based, in queue order) is in the high class."""
        return index % self.every == 0

    def shape(self, view: IncrementalView, low: str) -> None:
        """Add the high partition (all nodes, priority 10), give ``low`` its mode, and turn the rules on."""
        part = view.partitions[low]
        part.priority = 1
        part.preempt_mode = self.mode
        view.partitions[HIGH_PARTITION] = SchedPartition(HIGH_PARTITION, part.node_indices, 10)
        for node in view.nodes:
            node.partitions = (*node.partitions, HIGH_PARTITION)
        view.preemption = PreemptRules()


class PreemptModel:
    """Carries out a plan's preempt orders on the engine's tables (shared with its event loop)."""

    def __init__(self, view: IncrementalView, jobs: list[Any], index_of: dict[int, int], start: list,
                 pend_pos: dict[int, int], pend_job: dict[int, SchedJob], run_pos: dict[int, int],
                 run_job: dict[int, SchedJob], done: list, job_finished: Callable[..., Any] | None) -> None:
        self.view = view
        self.jobs = jobs
        self.index_of = index_of
        self.start = start
        self.pend_pos = pend_pos
        self.pend_job = pend_job
        self.run_pos = run_pos
        self.run_job = run_job
        self.done = done
        self.job_finished = job_finished
        self.sched_jobs: dict[int, SchedJob] = {}     # every job's SchedJob (a requeued victim queues again)
        self.ends: dict[int, float] = {}              # running job -> its actual end
        self.lent: dict[int, list[tuple[SchedRunning, float, float]]] = {}  # preemptor -> (victim, left, est. left)
        self.to_resume: list[tuple[SchedRunning, float, float]] = []
        self.cancelled: set[int] = set()              # indices of jobs ended by a preemption
        self.counts = {PREEMPT_CANCEL: 0, PREEMPT_REQUEUE: 0, PREEMPT_SUSPEND: 0}
        self.lost_work = 0.0                          # processor-seconds of cancelled and requeued runs
        self.seq = _SEQ_BASE

    def started(self, job: SchedJob, r: SchedRunning, end: float) -> None:
        """The engine started ``job`` (running as ``r``, ending at ``end``)."""
        self.sched_jobs[job.job_id] = job
        self.ends[job.job_id] = end

    def stale(self, r: SchedRunning) -> bool:
        """Whether a completion popped from the heap is of a run a preemption already took away."""
        pos = self.run_pos.get(r.job_id)
        running = self.view.running
        return pos is None or pos >= len(running) or running[pos] is not r

    def carry_out(self, plan: Plan, t: float) -> int:
        """Carry out ``plan.preempt`` at ``t``; add the preemptors it freed room for to ``plan.starts``.

        Returns the change of busy processors (negative: the victims' sizes).
        """
        busy = 0
        started = {jid for jid, _ in plan.starts}
        for vid, order in plan.preempt.items():
            r = self._running(vid)
            if r is None:
                continue
            ix = self.index_of[vid]
            size = self.jobs[ix].size
            busy -= size
            self._remove_running(r)
            mode = order.mode
            self.counts[mode] += 1
            if mode == PREEMPT_SUSPEND:
                self.lent.setdefault(order.preemptor, []).append((r, self.ends.pop(vid) - t, r.end_time - t))
                continue
            self.lost_work += (t - self.start[ix]) * size
            job = self.sched_jobs.pop(vid)
            self.ends.pop(vid, None)
            if self.job_finished is not None:
                self.job_finished(job=self.run_job.pop(vid, job), start_time=self.start[ix], end_time=t)
            if mode == PREEMPT_CANCEL:
                self.cancelled.add(ix)
            else:
                self._queue(job)
        for pid, nodes in plan.preempt_nodes.items():
            if pid not in started and pid in self.pend_job:
                plan.starts.append((pid, nodes))
        return busy

    def preemptor_ended(self, job_id: int) -> None:
        """A preemptor ended: the victims it suspended wait to resume."""
        self.to_resume += self.lent.pop(job_id, [])

    def resume_waiting(self, t: float) -> int:
        """Resume the suspended victims whose CPUs are free again; returns the change of busy processors."""
        busy = 0
        nodes = self.view.nodes
        waiting = []
        for item in self.to_resume:
            r, left, expected = item
            if any(nodes[i].cpus_free + 1e-9 < r.cpus_per_node or not nodes[i].usable for i in r.nodes):
                waiting.append(item)
                continue
            for i in r.nodes:
                nodes[i].cpus_free -= r.cpus_per_node
                nodes[i].njobs += 1
            again = r.with_end(t + max(1.0, expected))  # its expected end moves by the time it was frozen
            self.run_pos[r.job_id] = len(self.view.running)
            self.view.running.append(again)
            self.view.delta.running_added.append(again)
            self.ends[r.job_id] = t + left
            self.seq += 1
            heapq.heappush(self.done, (t + left, self.seq, again))
            busy += self.jobs[self.index_of[r.job_id]].size
        self.to_resume = waiting
        return busy

    # -- the engine's tables ----------------------------------------------------------------
    def _running(self, job_id: int) -> SchedRunning | None:
        pos = self.run_pos.get(job_id)
        return self.view.running[pos] if pos is not None else None

    def _remove_running(self, r: SchedRunning) -> None:
        running = self.view.running
        pos = self.run_pos.pop(r.job_id)
        last = running.pop()
        if last is not r:
            running[pos] = last
            self.run_pos[last.job_id] = pos
        self.view.delta.running_removed.append(r)
        for i in r.nodes:
            node = self.view.nodes[i]
            node.cpus_free += r.cpus_per_node
            node.njobs -= 1

    def _queue(self, job: SchedJob) -> None:
        pending = self.view.pending
        self.pend_pos[job.job_id] = len(pending)
        self.pend_job[job.job_id] = job
        pending.append(job)
        self.view.delta.pending_added.append(job)

    def report(self, high: list[int]) -> dict[str, Any]:
        """The preemption figures of the run (``high``: the indices of the high-class jobs)."""
        return {"preemptions": dict(self.counts), "preempted_total": sum(self.counts.values()),
                "cancelled_by_preemption": len(self.cancelled), "lost_work": self.lost_work,
                "high_jobs": len(high)}
