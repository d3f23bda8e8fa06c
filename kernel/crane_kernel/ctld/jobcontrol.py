"""What ``ccontrol suspend|resume|requeue``, ``ccancel -s`` and ``--deadline`` ask of the controller.

Part of :class:`~crane_kernel.ctld.core.Controller` (through
:class:`~crane_kernel.ctld.lifecycle.LifecycleMixin`). Each call authorizes every job on its own
(``crane_authorize``; the bundled ``rbac`` plugin: ``job.suspend`` for operators and admins,
``job.requeue`` and ``job.signal`` for the owner, her account's coordinators, operators and
admins), applies the mechanism of :mod:`crane_kernel.ctld.lifecycle`, journals the whole call in
one transaction and publishes the node messages after the commit.

Deadlines: every scheduling cycle (:meth:`JobControlMixin._check_deadlines`) a pending job that
can no longer end before its deadline (now + its time limit is later) ends ``Deadline``; a
running or suspended job whose deadline has come is terminated on its nodes and ends
``Deadline`` when they report its end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from crane_common.states import FINAL_STATES, JobState

from crane_kernel import messages as m

if TYPE_CHECKING:
    from crane_kernel.auth_types import Identity

log = logging.getLogger("cranectld")

REASON_DEADLINE = "Deadline"
"""The reason of a job ended by its deadline."""

NOT_FOUND = "Job not found or already finished"


class LifecycleRefused(Exception):  # noqa: N818 - reads better at the raise sites
    """The job is not in a state that allows this change (a one-line reason for the caller)."""


class JobControlMixin:
    """``suspend_jobs``, ``requeue_jobs``, ``signal_jobs`` and the deadline check."""

    def _control_call(self, job_ids: Iterable[int], identity: Identity, action: str,
                      apply: Any) -> tuple[list[int], list[tuple[int, str]]]:
        """Authorize ``action`` on each job and ``apply(job, now, outbox)``; one journal write, then publish."""
        done: list[int] = []
        failed: list[tuple[int, str]] = []
        outbox: list = []
        now = self.clock()
        with self.lock:
            rows: list = []
            for jid in job_ids:
                job = self.jobs.get(jid)
                if job is None or job.state in FINAL_STATES:
                    failed.append((jid, NOT_FOUND))
                    continue
                if not self._authorized(identity, action, job):
                    failed.append((jid, "Permission denied"))
                    continue
                try:
                    rows += apply(job, now, outbox)
                except LifecycleRefused as exc:
                    failed.append((jid, str(exc)))
                    continue
                done.append(jid)
            self.store.write(updates=rows)
        self.publish(outbox)
        if done:
            self.wake.set()
        return done, failed

    def suspend_jobs(self, job_ids: Iterable[int], identity: Identity,
                     suspend: bool) -> tuple[list[int], list[tuple[int, str]]]:
        """``ccontrol suspend`` (``suspend`` true) or ``resume``: running jobs frozen or thawed (``job.suspend``)."""
        actor = identity.user

        def apply(job: Any, now: float, outbox: list) -> list:
            if suspend:
                return self.suspend_job(job, now, outbox, f"suspended by {actor}")
            return self.resume_job(job, now, outbox)
        return self._control_call(job_ids, identity, "job.suspend", apply)

    def requeue_jobs(self, job_ids: Iterable[int], identity: Identity,
                     hold: bool = False) -> tuple[list[int], list[tuple[int, str]]]:
        """``ccontrol requeue``: running or suspended jobs back to Pending, their ids kept (``job.requeue``)."""
        def apply(job: Any, now: float, outbox: list) -> list:
            self.requeue_job(job, now, outbox, f"requeued by {identity.user}", hold=hold)
            if hold:
                job.hold_admin = identity.is_admin and identity.uid != job.uid  # as ccontrol hold
            return [self._row(job)]  # the record as it is now (the requeue's row is superseded)
        return self._control_call(job_ids, identity, "job.requeue", apply)

    def signal_jobs(self, job_ids: Iterable[int], identity: Identity,
                    signum: int) -> tuple[list[int], list[tuple[int, str]]]:
        """``ccancel -s SIG``: the signal to every process of running jobs, which keep running (``job.signal``)."""
        if not 1 <= signum <= 64:
            return [], [(jid, f"signal {signum} is out of range (1-64)") for jid in job_ids]

        def apply(job: Any, now: float, outbox: list) -> list:
            if job.state not in (JobState.Running, JobState.Suspended):
                raise LifecycleRefused("Job is pending: only a running job can be signalled"
                                       if job.state == JobState.Pending else f"Job is {job.state.name}")
            for name in self._job_nodes(job):
                outbox.append((self.node_stream(name), m.SignalJob(job_id=job.job_id, signum=signum, epoch=job.epoch)))
            self._emit_job(outbox, "job.modified", job, now, actor=identity.user, changes={"signal": signum})
            return []
        return self._control_call(job_ids, identity, "job.signal", apply)

    # -- deadlines -----------------------------------------------------------------------------
    def _check_deadlines(self, now: float, outbox: list) -> list:
        """End the jobs whose deadline can no longer be met (pending) or has come (started); journal rows."""
        rows: list = []
        for jid in list(self.with_deadline):
            job, life = self.jobs.get(jid), self.life.get(jid)
            if job is None or life is None or not life.deadline or job.state in FINAL_STATES:
                self.with_deadline.discard(jid)
                continue
            if job.state == JobState.Pending:
                if jid in self.recon.held:
                    continue  # its old processes are still being ended
                if now + (job.time_limit or 0) > life.deadline:
                    log.info("job %d: it can no longer end before its deadline", jid)
                    rows += self._finish(job, JobState.Deadline, 0, now, outbox, persist=False,
                                         reason=REASON_DEADLINE)
            elif now >= life.deadline and not life.deadline_hit:
                rows += self._end_at_deadline(job, now, outbox)
        return rows

    def _end_at_deadline(self, job: Any, now: float, outbox: list) -> list:
        """A started job reached its deadline: terminate it on its nodes (it ends ``Deadline``)."""
        life = self._life(job.job_id)
        life.deadline_hit = True
        log.info("job %d: its deadline has come: terminated", job.job_id)
        if job.interactive:
            return self.end_interactive(job, JobState.Deadline, 0, REASON_DEADLINE, "deadline", now, outbox)
        head = self.nodes.get(job.head_node)
        if head is None or not head.alive:
            return self._finish(job, JobState.Deadline, 0, now, outbox, persist=False, reason=REASON_DEADLINE)
        if job.state == JobState.Suspended:
            self.resume_job(job, now, outbox)
        job.cancel_requested = True
        outbox.append((self.node_stream(job.head_node), m.TerminateStep(job_id=job.job_id, reason="deadline",
                                                                        epoch=job.epoch)))
        return [self._row(job)]

    def final_state(self, job: Any, state: JobState) -> tuple[JobState, str]:
        """The state and reason a job that ends as ``state`` ends with: ``Deadline`` once its deadline ended it."""
        life = self.life.get(job.job_id)
        if life is not None and life.deadline_hit and state in (JobState.Cancelled, JobState.Failed):
            return JobState.Deadline, REASON_DEADLINE
        return state, ""
