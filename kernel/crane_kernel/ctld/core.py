"""The controller's authoritative state machine.

All state changes happen here, under one lock, and are journaled to the
:class:`~crane_kernel.ctld.store.StateStore` before they are acknowledged.
Messages to nodes and events are collected in an outbox while the lock is
held and published after the journal write, so a crash can lose a message but
never an acknowledged state change (lost launches are re-sent, see
``_retry_dispatch``).

Threads calling in: the gRPC handlers (submit, query, cancel, modify), the
bus consumer (node registration, heartbeats, step status) and the scheduling
loop. The scheduler plugin itself runs *without* the lock, so a cycle over
100k jobs never stalls the API; its plan is re-checked against live state
when committed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from crane_common.states import (
    EC_CRANED_DOWN,
    EC_TERMINATED,
    FINAL_STATES,
    JobState,
)

from crane_kernel import messages as m
from crane_kernel.auth_types import Identity
from crane_kernel.clusterinfo import build_cluster_info
from crane_kernel.config import ClusterConfig
from crane_kernel.ctld import reconcile as rc
from crane_kernel.ctld.accounts import AccountBook
from crane_kernel.ctld.arrays import ArraysMixin
from crane_kernel.ctld.changes import ChangesMixin
from crane_kernel.ctld.cycle import CYCLE_BUCKETS, CycleMixin
from crane_kernel.ctld.deps import DependsMixin, parse_dependency
from crane_kernel.ctld.dispatch import DispatchMixin
from crane_kernel.ctld.emit import EmitMixin
from crane_kernel.ctld.history import rebuild_usage
from crane_kernel.ctld.jobs import ArrayJob, Job, job_from_spec, normalize_spec, recheck_spec
from crane_kernel.ctld.licenses import LicensesMixin
from crane_kernel.ctld.lifecycle import LifecycleMixin
from crane_kernel.ctld.limits import LimitBook, LimitsMixin
from crane_kernel.ctld.nodemsgs import NodeMessagesMixin
from crane_kernel.ctld.nodes import build_nodes
from crane_kernel.ctld.preempt import PreemptMixin
from crane_kernel.ctld.reservations import ReservationsMixin
from crane_kernel.ctld.resources import ResourcesMixin
from crane_kernel.ctld.stepexec import StepsMixin
from crane_kernel.ctld.store import StateStore
from crane_kernel.ctld.view import Tracked, ViewKeeper
from crane_kernel.errors import JobRejected
from crane_kernel.sched_types import (
    SchedRunning,
    ineligible_reason,
)

log = logging.getLogger("cranectld")

HISTORY_REPLAY = 100_000  # ended jobs replayed to crane_job_finished at start-up (usage history)


class Denied(Exception):  # noqa: N818 - reads better at the raise sites
    """The caller may not do this (becomes PERMISSION_DENIED / a per-job reason)."""


class Controller(LimitsMixin, ResourcesMixin, DispatchMixin, NodeMessagesMixin, CycleMixin, EmitMixin,
                 ChangesMixin, StepsMixin, DependsMixin, ArraysMixin, ReservationsMixin, LicensesMixin,
                 PreemptMixin, LifecycleMixin):
    """Jobs, nodes and partitions of one cluster, and every transition between their states."""

    def __init__(self, cfg: ClusterConfig, store: StateStore, pm: Any, publish: Callable[[list], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.pm = pm
        self.publish = publish
        self.clock = clock
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.urgent = threading.Event()  # someone waits at a terminal (crun, calloc): no ScheduleMinInterval pause
        self.nodes, self.sched_nodes, self.partitions = build_nodes(cfg)
        self.keeper = ViewKeeper(self.sched_nodes, self.partitions)  # the scheduler's one view (ctld/view.py)
        self.jobs: dict[int, Job] = {}
        self.pending: dict[int, Job] = Tracked(self.keeper.pending_changed)
        self.running: dict[int, Job] = {}
        self.running_view: dict[int, SchedRunning] = Tracked(self.keeper.running_changed)
        self.gres_taken: dict[int, list[dict[str, int]]] = {}  # job id -> gres taken on each of its nodes
        self.finished: deque[tuple[float, int]] = deque()
        self.cluster_info = build_cluster_info(cfg)  # what job filters see of the cluster
        self.next_job_id = 1
        self.started_at = clock()
        self.cycles = 0
        self.last_cycle_s = 0.0
        self.max_cycle_s = 0.0
        self.last_considered = 0
        self.cycle_counts = [0] * (len(CYCLE_BUCKETS) + 1)  # cycle times per bucket (ctld/cycle.py)
        self.cycle_seconds_sum = 0.0
        self.cluster = cfg.ClusterName
        self.event_seq = store.last_event_seq()  # the events' global sequence (ctld/emit.py)
        self._has_priority = False
        self.recon = rc.Reconciler()  # held allocations and what nodes report they run (ctld/reconcile.py)
        self.accounts = AccountBook(cfg, store, clock, has_jobs=lambda user, account: any(  # ctld/accounts.py
            j.user == user and j.account == account for j in (*self.pending.values(), *self.running.values())))
        self.limits = LimitBook(self)  # QoS limits (ctld/limits.py), enforced from the account book's QoS
        self.keeper.gate = self.limits.gate
        self.limits.attach(self.accounts)
        self._init_steps()  # job steps and interactive jobs (ctld/stepexec.py)
        self._init_deps()  # job dependencies (ctld/deps.py)
        self.keeper.dep_gate = self.dependency_reason
        self._init_arrays()  # array jobs (ctld/arrays.py)
        self._init_reservations()  # advance reservations (ctld/reservations.py)
        self._init_licenses()  # cluster licenses (ctld/licenses.py)
        self._init_life()  # suspend, requeue, deadlines (ctld/lifecycle.py)
        self._init_preempt()  # preemption (ctld/preempt.py)

    # ------------------------------------------------------------------
    # start-up
    # ------------------------------------------------------------------
    def recover(self) -> None:
        """Rebuild pending and running jobs and node drain state from the store."""
        now = self.clock()
        self.next_job_id = int(self.store.get_meta("next_job_id", 1))
        active = [JobState.Pending, JobState.Configuring, JobState.Running, JobState.Starting,
                  JobState.Completing, JobState.Suspended]
        n_pending = n_running = 0
        tasks: list[Job] = []  # array tasks, counted by their arrays once all records are read
        self.restore_reservations()
        for jid, _state, spec, rt in self.store.iter_jobs(active):
            job = job_from_spec(jid, spec)
            job.apply_rt(rt)
            self.jobs[jid] = job
            if isinstance(job, ArrayJob):
                self.add_array(job, spec)  # not queued itself: its tasks are
                self.next_job_id = max(self.next_job_id, jid + 1)
                continue
            if job.array_job_id:
                tasks.append(job)
            self.restore_steps(job, rt, now)
            self.restore_job_reservation(jid, spec)
            self.restore_job_licenses(job, spec, rt)
            self.restore_life(job, spec, rt)
            self.restore_preemption(job, rt)
            if job.state == JobState.Pending:
                self.pending[jid] = job
                n_pending += 1
                if spec.get("dependency"):
                    try:
                        self.register_dependency(jid, parse_dependency(spec.get("dependency_ids") or
                                                                       spec["dependency"]))
                    except JobRejected as exc:  # accepted once: a later version's form; say so, keep the job held
                        log.error("job %d: its dependency %r cannot be read (%s): held", jid, spec["dependency"], exc)
                        job.held = True
            else:
                if any(n not in self.nodes for n in job.alloc_nodes):
                    self._finish(job, JobState.Failed, EC_CRANED_DOWN, now, [], reason="node removed")
                    continue
                self._allocate(job, [self.nodes[n] for n in job.alloc_nodes], record=False)
                self._move_end(job, now)  # the time it spent suspended moves its end (ctld/lifecycle.py)
                n_running += 1
            self.next_job_id = max(self.next_job_id, jid + 1)
        n_history = 0
        replayed: set[int] = set(self.jobs)
        for _jid, spec, rt in self.store.recent_finished(HISTORY_REPLAY):
            replayed.add(_jid)
            if rt.get("start") and rt.get("end"):
                job = job_from_spec(_jid, spec)
                job.apply_rt(rt)
                self.pm.hook.crane_job_finished(job=job, start_time=job.start_time, end_time=job.end_time)
                n_history += 1
        n_accounted = 0
        if self.pm.implemented("crane_history_query") and self.pm.implemented("crane_job_finished"):
            # fair share beyond the journal: ended jobs the accounting store has and the journal does not
            n_accounted = rebuild_usage(self.pm.hook.crane_history_query, self.pm.hook.crane_job_finished,
                                        replayed, now)
        for name, (drain, reason) in self.store.nodes().items():
            if name in self.nodes:
                self.nodes[name].drain, self.nodes[name].drain_reason = drain, reason
        for n in self.nodes.values():
            n.last_seen = now  # a grace period: nodes have CranedTimeout to check in
            n.refresh_usable()
        rc.restore_held(self)
        for job in tasks:
            if job.state not in FINAL_STATES:
                self.recover_array_task(job)
        self.finish_array_recovery()
        self.limits.rebuild()  # QoS limits: count the recovered jobs
        log.info("recovered %d pending and %d running jobs (%d ended jobs replayed for usage history, %d more from "
                 "the accounting store); next job id %d", n_pending, n_running, n_history, n_accounted,
                 self.next_job_id)

    # ------------------------------------------------------------------
    # submission
    # ------------------------------------------------------------------
    def submit(self, specs: list[dict], identity: Identity) -> list[int]:
        """Authorize, validate, filter, re-validate, journal and queue jobs; return their ids.

        All or none are accepted: the first refused spec raises (:class:`JobRejected` or
        :class:`Denied`) before anything is stored. The job filters run after authorization, and
        what they return is checked again (:func:`~crane_kernel.ctld.jobs.recheck_spec`).
        """
        if not self._authorized(identity, "job.submit", None):
            raise Denied("you may not submit jobs")
        if len(specs) > self.cfg.CraneCtld.MaxJobsPerSubmit:
            raise JobRejected(f"at most {self.cfg.CraneCtld.MaxJobsPerSubmit} jobs per call")
        now = self.clock()
        normalized = []
        for raw in specs:
            spec = normalize_spec(raw, self.cfg, identity.uid, identity.user, now)
            spec["account"], spec["qos"] = self.accounts.resolve(identity.user, identity.uid, spec.get("account") or "",
                                                                 spec["partition"], spec.get("qos") or "")
            if not raw.get("time_limit"):
                self.limits.default_time_limit(spec)  # no limit asked for: the QoS's cap, if lower
            gid = spec["gid"]
            self.pm.hook.crane_job_submit(job=spec, identity=identity, cluster=self.cluster_info)
            recheck_spec(spec, self.cfg, identity.uid, identity.user, gid)
            normalized.append(spec)
        early: list = []  # events of array tasks a dependency named (A_T), created for it
        lics = [self.check_licenses(spec) for spec in normalized]  # -L: unknown licenses refuse the job
        with self.lock:
            deps = [self.check_dependency(spec, now, early, identity) for spec in normalized]  # never dropped
            for spec in normalized:
                self.check_reservation(spec)  # -r: it exists and admits the job
        self.publish(early)
        with self.lock:
            self.limits.check_submit(normalized)  # QoS limits: MaxSubmit* for the whole call, DenyOnLimit
            first = self.next_job_id
            ids = list(range(first, first + len(normalized)))
            rows = []
            jobs = []
            outbox: list = []
            for jid, spec in zip(ids, normalized, strict=True):
                job = job_from_spec(jid, spec)
                job.reason = ineligible_reason(job, self.partitions.get(job.partition), now) or ""  # shown at once
                jobs.append(job)
                rows.append((jid, 0, json.dumps(spec, separators=(",", ":")), json.dumps(job.rt())))
                self._emit_job(outbox, "job.submitted", job, now, actor=identity.user)
            self.store.write(inserts=rows, meta={"next_job_id": first + len(ids)})
            self.next_job_id = first + len(ids)
            for job, dep, lic, spec in zip(jobs, deps, lics, normalized, strict=True):
                if isinstance(job, ArrayJob):  # one record; its tasks are created a few at a time
                    self.jobs[job.job_id] = job
                    self.add_array(job, spec)
                    continue
                limit = self.limits.accepted(job)  # QoS limits: counted as submitted
                job.reason = job.reason or limit
                self.jobs[job.job_id] = job
                self.life_from_spec(job, spec)
                self.register_dependency(job.job_id, dep)
                self.register_reservation(job.job_id, spec)
                self.register_licenses(job.job_id, lic)
                self.pending[job.job_id] = job
        self.publish(outbox)
        self.wake.set()
        return ids

    # ------------------------------------------------------------------
    # authorization helper
    # ------------------------------------------------------------------
    def _authorized(self, identity: Identity, action: str, target: Any) -> bool:
        return bool(self.pm.hook.crane_authorize(identity=identity, action=action, target=target))

    # ------------------------------------------------------------------
    # cancel / modify
    # ------------------------------------------------------------------
    def cancel(self, job_ids: Iterable[int], identity: Identity) -> tuple[list[int], list[tuple[int, str]]]:
        """Cancel jobs: pending ones end at once, running ones are terminated on their node."""
        done: list[int] = []
        failed: list[tuple[int, str]] = []
        outbox: list = []
        now = self.clock()
        queue = list(job_ids)
        asked = set(queue)
        with self.lock:
            updates = []
            for jid in queue:  # grows by the created tasks of the arrays cancelled
                job = self.jobs.get(jid)
                if job is None or job.state in FINAL_STATES:
                    if jid in asked:
                        failed.append((jid, "Job not found or already finished"))
                    continue
                if not self._authorized(identity, "job.cancel", job):
                    failed.append((jid, "Permission denied: not your job"))
                    continue
                if isinstance(job, ArrayJob):  # its tasks to come never run; the created ones are cancelled
                    tasks, rows = self.cancel_array(job, now, outbox)
                    updates += rows
                    queue.extend(t for t in tasks if t not in asked)
                    done.append(jid)
                    continue
                self._emit_job(outbox, "job.cancelled", job, now, actor=identity.user)
                if job.interactive:
                    updates += self.end_interactive(job, JobState.Cancelled, EC_TERMINATED if job.start_time else 0,
                                                    "cancelled", "cancel", now, outbox)
                elif job.state == JobState.Pending:
                    updates += self._finish(job, JobState.Cancelled, 0, now, outbox, persist=False)
                else:
                    if job.state == JobState.Suspended:  # resume, then terminate (ctld/lifecycle.py)
                        updates += self.resume_job(job, now, outbox)
                    head = self.nodes.get(job.head_node)
                    if head is None or not head.alive:
                        updates += self._finish(job, JobState.Cancelled, EC_TERMINATED, now, outbox, persist=False)
                    else:
                        job.cancel_requested = True
                        updates.append((int(job.state), self._rt_json(job), job.job_id))
                        outbox.append((self.node_stream(job.head_node),
                                       m.TerminateStep(job_id=jid, reason="cancel", epoch=job.epoch)))
                if jid in asked:
                    done.append(jid)
            self.store.write(updates=updates)
        self.publish(outbox)
        if done:
            self.wake.set()
        return done, failed

    def _finish(self, job: Job, state: JobState, exit_code: int, now: float, outbox: list,
                persist: bool = True, reason: str = "") -> list:
        """Move a job to a final state, free its resources, and emit the events (step 0's end, the job's).

        Its steps still alive end with it (their nodes are told to kill them, ctld/stepexec.py).
        """
        if job.job_id in self.preempted:  # a REQUEUE victim that ended in its grace goes back to the queue
            requeued = self.victim_ended_in_grace(job, now, outbox)
            if requeued is not None:
                if persist:
                    self.store.write(updates=requeued)
                    return []
                return requeued
        state, why = self.final_state(job, state)  # ended by its deadline: Deadline (ctld/jobcontrol.py)
        reason = why or reason
        # a task step emits its own step events; the time a suspended job spent frozen is kept (ctld/lifecycle.py)
        step_ran = job.state in (JobState.Running, JobState.Suspended) and not job.interactive
        self._close_suspension(job, now)
        if job.state != JobState.Pending and job.start_time:
            self.pm.hook.crane_job_finished(job=job, start_time=job.start_time, end_time=now)
        self._release(job)
        self.pending.pop(job.job_id, None)
        self.limits.ended(job)  # QoS limits: no longer submitted
        job.state = state
        job.exit_code = exit_code
        job.end_time = now
        job.reason = self.preempted_reason(job, reason)
        self.finished.append((now, job.job_id))
        if job.job_id in self.steps or job.interactive:
            self._steps_at_job_end(job, now, outbox)
        self.dependency_moved(job)  # the jobs waiting for it are looked at again
        if step_ran:
            self._emit_step(outbox, "step.ended", job, now, state=state.name)
        self._emit_job(outbox, "job.ended", job, now)
        rows = [(int(job.state), self._rt_json(job), job.job_id)]
        if job.array_job_id:
            rows += self.array_task_ended(job, now)  # the array counts it (and ends with its last task)
        if persist:
            self.store.write(updates=rows)
            return []
        return rows

    def _expire_finished(self, now: float) -> None:
        keep = self.cfg.CraneCtld.FinishedJobRetention
        while self.finished and now - self.finished[0][0] > keep:
            _, jid = self.finished.popleft()
            job = self.jobs.get(jid)
            if job is not None and job.state in FINAL_STATES:
                del self.jobs[jid]
                self.arrays.pop(jid, None)
                self.steps.pop(jid, None)
                self.step_counter.pop(jid, None)
                self.forget_life(jid)

    # ------------------------------------------------------------------
    # queries
    # ------------------------------------------------------------------
    def history(self, query: Any) -> Any:
        """The accounting plugin's records for ``query`` (``crane_history_query``); call without the lock."""
        return self.pm.hook.crane_history_query(query=query)

    @property
    def has_history(self) -> bool:
        """True when an accounting plugin answers history queries."""
        return self.pm.implemented("crane_history_query")

    def finished_from_store(self, ids: list[int]) -> list[Job]:
        """Ended jobs no longer in memory, read back from the store."""
        out = []
        missing = [i for i in ids if i not in self.jobs]
        if not missing:
            return out
        for jid, spec, rt in self.store.jobs_by_id(missing):
            job = job_from_spec(jid, spec)
            job.apply_rt(rt)
            out.append(job)
        return out

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------
    def _rt_json(self, job: Job) -> str:
        """The job's journal ``rt`` (with its steps, ctld/stepexec.py) as compact JSON."""
        rt = job.rt()
        if job.job_id in self.steps:
            rt.update(self.steps_rt(job.job_id))
        rt.update(self.licenses_rt(job.job_id))  # the licenses it holds (ctld/licenses.py)
        if job.job_id in self.life:
            rt.update(self.life_rt(job.job_id))
        if job.job_id in self.preempted:
            rt.update(self.preempt_rt(job.job_id))
        return json.dumps(rt, separators=(",", ":"))

    def node_stream(self, name: str) -> str:
        """Stream name for messages to node ``name``."""
        return f"crane:{self.cluster}:node:{name}"

    def events_stream(self) -> str:
        """Stream name for cluster events."""
        return f"crane:{self.cluster}:events"

    def rss_kb(self) -> int:
        """Current resident set size of this process in KB."""
        with open(f"/proc/{os.getpid()}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0
