"""Job lifecycle: suspend and resume, requeue, signals, deadlines. A mixin of the controller.

Part of :class:`~crane_kernel.ctld.core.Controller`; every method here runs with its lock held.

* **Suspend/resume** — a ``Running`` job becomes ``Suspended`` at once (journaled): every node of
  it gets :class:`~crane_kernel.messages.SuspendJob`, whose step supervisors freeze their steps
  through the runtime (``crane_step_suspend``) and stop their time-limit clocks. Its resources
  stay allocated. A node that cannot freeze answers
  :class:`~crane_kernel.messages.JobControlResult` with ``ok`` false: the job is resumed
  everywhere and stays ``Running`` with the failure as its reason. The time spent suspended is
  kept (``suspended_seconds``) and excluded from its elapsed time and its time limit.
* **Requeue** — a running or suspended job's processes are ended
  (:class:`~crane_kernel.messages.TerminateStep`) and it goes back to ``Pending`` keeping its id;
  its resources stay held until its nodes confirm its processes are gone (the held allocations of
  :mod:`crane_kernel.ctld.reconcile`, the same path as a requeue after a node failure,
  :meth:`~crane_kernel.ctld.nodemsgs.NodeMessagesMixin._requeue`).
* **Signals and deadlines** — see :mod:`crane_kernel.ctld.jobcontrol`.

The per-job lifecycle state lives in ``self.life`` (job id -> :class:`Life`), only for jobs that
have some, so the lean job record keeps its size; it is journaled in the job's ``rt`` (key
``life``) and restored at recovery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from crane_common.states import EC_TERMINATED, JobState

from crane_kernel import messages as m
from crane_kernel.ctld import reconcile as rc
from crane_kernel.ctld.jobcontrol import JobControlMixin, LifecycleRefused
from crane_kernel.ctld.jobupdate import JobUpdateMixin

log = logging.getLogger("cranectld")

REASON_SUSPENDED = "Suspended"
REASON_REQUEUED = "Requeued"
"""Pending reason of a job requeued by hand whose old processes are not yet confirmed gone."""


@dataclass(slots=True)
class Life:
    """A job's lifecycle state beyond the lean record: suspension and the submission's deadline and signal."""

    suspended_since: float = 0.0    # > 0 while suspended: when it was
    suspended_seconds: float = 0.0  # closed suspension intervals, in total
    deadline: float = 0.0           # --deadline (unix seconds, 0 = none)
    signal: str = ""                # --signal as given
    deadline_hit: bool = False      # the deadline came while it ran: it is being ended, as Deadline

    def to_json(self) -> dict[str, Any]:
        """The journaled form (only what is set)."""
        out: dict[str, Any] = {}
        for key, value in (("ss", self.suspended_since), ("st", self.suspended_seconds), ("dl", self.deadline),
                           ("sig", self.signal), ("dh", self.deadline_hit)):
            if value:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Life:
        """Inverse of :meth:`to_json` (unknown keys ignored, bad values dropped)."""
        def num(key: str) -> float:
            value = data.get(key, 0)
            return float(value) if isinstance(value, int | float) and value >= 0 else 0.0
        sig = data.get("sig", "")
        return cls(num("ss"), num("st"), num("dl"), sig if isinstance(sig, str) else "", data.get("dh") is True)

    def empty(self) -> bool:
        """Nothing worth keeping."""
        return not (self.suspended_since or self.suspended_seconds or self.deadline or self.signal
                    or self.deadline_hit)


class LifecycleMixin(JobControlMixin, JobUpdateMixin):
    """Suspend, resume and requeue of the controller (its attributes are the controller's).

    With the calls of ``ccontrol``/``ccancel -s`` and the deadlines (:mod:`crane_kernel.ctld.jobcontrol`)
    and ``ccontrol update job`` (:mod:`crane_kernel.ctld.jobupdate`).
    """

    def _init_life(self) -> None:
        self.life: dict[int, Life] = {}
        self.with_deadline: set[int] = set()  # the jobs whose deadline each cycle looks at (ctld/jobcontrol.py)

    def _row(self, job: Any) -> tuple[int, str, int]:
        """The journal row of ``job`` as it is now."""
        return (int(job.state), self._rt_json(job), job.job_id)

    def set_deadline(self, job_id: int, deadline: float) -> None:
        """Set (0: remove) a job's deadline; the cycle's deadline check follows it."""
        life = self._life(job_id)
        life.deadline, life.deadline_hit = float(deadline or 0), False
        if life.deadline:
            self.with_deadline.add(job_id)
        else:
            self.with_deadline.discard(job_id)

    # -- the per-job state ------------------------------------------------------------------
    def life_of(self, job_id: int) -> Life | None:
        """The lifecycle state of a job, or None when it has none."""
        return self.life.get(job_id)

    def _life(self, job_id: int) -> Life:
        found = self.life.get(job_id)
        if found is None:
            found = self.life[job_id] = Life()
        return found

    def life_from_spec(self, job: Any, spec: dict[str, Any]) -> None:
        """Remember a submission's deadline and signal (at submission and recovery)."""
        deadline, sig = spec.get("deadline") or 0, spec.get("signal") or ""
        if sig:
            self._life(job.job_id).signal = str(sig)
        if deadline:
            hit = self._life(job.job_id).deadline_hit
            self.set_deadline(job.job_id, deadline)
            self.life[job.job_id].deadline_hit = hit

    def restore_life(self, job: Any, spec: dict[str, Any], rt: dict[str, Any]) -> None:
        """At recovery: the journaled lifecycle state of ``job`` (its ``rt``), its deadline and signal (its spec)."""
        data = rt.get("life")
        if isinstance(data, dict):
            life = Life.from_json(data)
            if not life.empty():
                self.life[job.job_id] = life
        self.life_from_spec(job, spec)
        if job.state == JobState.Suspended and not self._life(job.job_id).suspended_since:
            self._life(job.job_id).suspended_since = self.clock()  # an older journal: suspended from now on

    def life_rt(self, job_id: int) -> dict[str, Any]:
        """The ``rt`` entries of a job's lifecycle state (merged into its journal record)."""
        life = self.life.get(job_id)
        if life is None:
            return {}
        data = life.to_json()
        return {"life": data} if data else {}

    def suspended_total(self, job: Any, now: float) -> float:
        """Seconds ``job`` has spent suspended, the running suspension included."""
        life = self.life.get(job.job_id)
        if life is None:
            return 0.0
        ongoing = max(0.0, now - life.suspended_since) if life.suspended_since else 0.0
        return life.suspended_seconds + ongoing

    def expected_end(self, job: Any, now: float) -> float:
        """When a started job's time limit runs out, the time it spent suspended excluded."""
        if not job.time_limit:
            return job.start_time + 10**9
        return job.start_time + job.time_limit + self.suspended_total(job, now)

    def _move_end(self, job: Any, now: float) -> None:
        """The scheduler's view of a started job's end: its time limit plus the time it spent suspended."""
        rv = self.running_view.get(job.job_id)
        if rv is not None and job.start_time and job.job_id in self.life:
            self.running_view[job.job_id] = rv.with_end(max(self.expected_end(job, now), now + 1))

    def life_info(self, info: Any, job: Any, now: float) -> None:
        """Fill a ``JobInfo``'s lifecycle fields; its elapsed time leaves the time suspended out."""
        if job.epoch > 1:
            info.requeue_count = job.epoch - 1  # launches beyond the first (as the job record's)
        life = self.life.get(job.job_id)
        if life is None:
            return
        info.deadline = int(life.deadline)
        info.signal = life.signal
        suspended = self.suspended_total(job, now if not job.end_time else job.end_time)
        if job.state == JobState.Suspended and job.start_time:
            info.elapsed = int(now - job.start_time)
        if suspended:
            info.suspended_seconds = int(suspended)
            info.elapsed = max(0, int(info.elapsed - suspended))

    def forget_life(self, job_id: int) -> None:
        """A job left memory: drop its lifecycle state."""
        self.life.pop(job_id, None)
        self.with_deadline.discard(job_id)

    # -- suspend and resume (the internal API the preemption plugins' plans use too) --------
    def suspend_job(self, job: Any, now: float, outbox: list, reason: str) -> list:
        """Suspend a running job: state ``Suspended``, its nodes told to freeze it; returns its journal row.

        Raises :class:`LifecycleRefused` unless the job is ``Running``. ``reason`` is shown as its reason.
        """
        if job.state != JobState.Running:
            raise LifecycleRefused("Job is not running" if job.state != JobState.Suspended else
                                   "Job is already suspended")
        life = self._life(job.job_id)
        life.suspended_since = now
        job.state = JobState.Suspended
        job.reason = reason or REASON_SUSPENDED
        for name in self._job_nodes(job):
            outbox.append((self.node_stream(name), m.SuspendJob(job_id=job.job_id, epoch=job.epoch)))
        self._move_end(job, now)
        self._emit_job(outbox, "job.modified", job, now, changes={"state": "Suspended", "reason": job.reason})
        log.info("job %d suspended: %s", job.job_id, job.reason)
        return [self._row(job)]

    def resume_job(self, job: Any, now: float, outbox: list) -> list:
        """Resume a suspended job: state ``Running``, its nodes told to thaw it; returns its journal row.

        The suspension's time is added to ``suspended_seconds`` (the time limit moves by as much).
        Raises :class:`LifecycleRefused` unless the job is ``Suspended``.
        """
        if job.state != JobState.Suspended:
            raise LifecycleRefused("Job is not suspended")
        self._close_suspension(job, now)
        job.state = JobState.Running
        job.reason = ""
        for name in self._job_nodes(job):
            outbox.append((self.node_stream(name), m.ResumeJob(job_id=job.job_id, epoch=job.epoch)))
        self._move_end(job, now)
        self._emit_job(outbox, "job.modified", job, now, changes={"state": "Running"})
        log.info("job %d resumed", job.job_id)
        return [self._row(job)]

    def _close_suspension(self, job: Any, now: float) -> None:
        life = self.life.get(job.job_id)
        if life is not None and life.suspended_since:
            life.suspended_seconds += max(0.0, now - life.suspended_since)
            life.suspended_since = 0.0

    def life_new_run(self, job: Any) -> None:
        """The job goes back to the queue: its next run starts with no time suspended."""
        life = self.life.get(job.job_id)
        if life is not None:
            life.suspended_since = life.suspended_seconds = 0.0

    def _job_nodes(self, job: Any) -> list[str]:
        """The job's nodes that are up (a command to a down node would only wait in its stream)."""
        return [n for n in job.alloc_nodes if n in self.nodes and self.nodes[n].alive]

    def _on_control_result(self, msg: m.JobControlResult, now: float, outbox: list) -> list:
        """A node's answer to a suspend, resume or signal: a failed suspend resumes the job, with why."""
        job = self.jobs.get(msg.job_id)
        if job is None or msg.node not in job.alloc_nodes or (msg.epoch and msg.epoch != job.epoch):
            return []
        if msg.ok:
            log.debug("job %d: %s done on %s (step %d)", job.job_id, msg.action, msg.node, msg.step_id)
            return []
        log.warning("job %d: %s failed on %s (step %d): %s", job.job_id, msg.action, msg.node, msg.step_id,
                    msg.reason)
        if msg.action == "suspend" and job.state == JobState.Suspended:
            self.resume_job(job, now, outbox)
            job.reason = f"suspend failed on {msg.node}: {msg.reason}"[:200]
            return [self._row(job)]  # with the reason (the resume's row is superseded)
        return []

    # -- requeue -----------------------------------------------------------------------------
    def requeue_job(self, job: Any, now: float, outbox: list, reason: str, hold: bool = False) -> list:
        """Send a running (or suspended) job back to ``Pending``, keeping its id; returns its journal rows.

        Its processes are ended on every node (``TerminateStep``, reason ``requeue``); its resources
        stay held until each node confirms they are gone (its final status or heartbeat), and only
        then is it eligible again (reason ``Requeued`` meanwhile). ``hold``: it comes back held.
        The next launch has a new epoch, so ``requeue_count`` (launches beyond the first) grows.
        Raises :class:`LifecycleRefused` for a job that is not running or suspended, or interactive.
        """
        if job.state not in (JobState.Running, JobState.Suspended, JobState.Configuring):
            raise LifecycleRefused("Job is not running" if job.state == JobState.Pending else
                                   f"Job is {job.state.name}")
        if job.interactive:
            raise LifecycleRefused("an interactive job cannot be requeued")
        if job.job_id in self.recon.held:
            raise LifecycleRefused("the job's processes are still being ended")
        waiting = {n for n in job.alloc_nodes if n in self.nodes}
        held = bool(waiting) and job.job_id in self.running
        if held:
            rc.hold(self, job, waiting, requeue=True)
            for name in sorted(waiting):
                if self.nodes[name].alive:
                    outbox.append((self.node_stream(name), m.TerminateStep(job_id=job.job_id, reason="requeue",
                                                                           epoch=job.epoch)))
        job.held = job.held or hold
        return self._requeue(job, now, outbox, reason or "requeued", held, EC_TERMINATED, REASON_REQUEUED)
