"""Changes an owner, a coordinator or an operator asks for: modify jobs (priority, hold, release,
time limit) and drain or resume nodes. A mixin of :class:`~crane_kernel.ctld.core.Controller`.

Every change is authorized per job or node (``crane_authorize``), journaled in one transaction
with its events, and published after the commit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from crane_common.states import FINAL_STATES, JobState

from crane_kernel import messages as m
from crane_kernel.sched_types import REASON_HELD

if TYPE_CHECKING:
    from crane_kernel.auth_types import Identity
    from crane_kernel.ctld.jobs import Job
    from crane_kernel.ctld.nodes import NodeState

MAX_PRIORITY = 2**32  # the highest priority an admin can pin


class ChangesMixin:
    """``modify`` and ``set_drain`` of the controller (its attributes are the controller's)."""

    cfg: Any
    jobs: dict
    nodes: dict
    lock: Any
    store: Any
    keeper: Any
    limits: Any
    running_view: Any
    wake: Any
    clock: Any
    publish: Any

    def modify(self, job_ids: Iterable[int], identity: Identity, *, priority: float | None = None,
               hold: bool | None = None, time_limit: int | None = None) -> tuple[list[int], list[tuple[int, str]]]:
        """Pin priority (admin), hold/release, or change the time limit of jobs.

        As in Slurm, a user may only lower her job's time limit (``job.modify``); raising it is
        ``job.time_limit.raise`` (operators and admins), and never beyond ``CraneCtld.MaxTimeLimit``.
        A hold placed by an operator or admin can only be released by one (``job.release_admin_hold``).
        A running job's new limit is sent to its head node (:class:`~crane_kernel.messages.UpdateStep`),
        whose supervisor enforces it.
        """
        done: list[int] = []
        failed: list[tuple[int, str]] = []
        outbox: list = []
        if priority is not None and (not math.isfinite(priority) or not 0 <= priority <= MAX_PRIORITY):
            return [], [(jid, f"priority must be a number from 0 to {MAX_PRIORITY}") for jid in job_ids]
        if time_limit is not None and not 1 <= time_limit <= self.cfg.CraneCtld.MaxTimeLimit:
            return [], [(jid, f"time limit must be from 1 to {self.cfg.CraneCtld.MaxTimeLimit} seconds")
                        for jid in job_ids]
        now = self.clock()
        with self.lock:
            updates = []
            for jid in job_ids:
                job = self.jobs.get(jid)
                if job is None or job.state in FINAL_STATES:
                    failed.append((jid, "Job not found or already finished"))
                    continue
                action = self._modify_action(job, priority, hold, time_limit)
                if not self._authorized(identity, "job.modify", job) or not self._authorized(identity, action, job):
                    failed.append((jid, "Permission denied"))
                    continue
                if time_limit is not None and (why := self.limits.modify_time_refusal(job, time_limit)):
                    failed.append((jid, why))  # the QoS's per-job cap binds everyone, admins too
                    continue
                if priority is not None:
                    job.pinned_priority = float(priority)
                    job.priority = float(priority)
                    self.keeper.priorities_changed()
                    kind, changes = "job.modified", {"priority": float(priority)}
                elif hold is not None:
                    if job.state != JobState.Pending:
                        failed.append((jid, "Job is not pending"))
                        continue
                    job.held = hold
                    job.hold_admin = hold and identity.is_admin and identity.uid != job.uid
                    job.reason = REASON_HELD if hold else ""
                    self.keeper.pending_changed.add(jid)
                    kind, changes = ("job.held" if hold else "job.released"), {"held": bool(hold)}
                elif time_limit is not None:
                    job.time_limit = int(time_limit)
                    kind, changes = "job.modified", {"time_limit": int(time_limit)}
                    rv = self.running_view.get(jid)
                    if rv is not None:
                        self.running_view[jid] = rv.with_end(self.expected_end(job, now))  # suspensions count out
                    else:
                        self.keeper.request_changed(jid)
                    if job.state != JobState.Pending and job.head_node:
                        outbox.append((self.node_stream(job.head_node),
                                       m.UpdateStep(job_id=jid, time_limit=job.time_limit, epoch=job.epoch)))
                else:
                    kind, changes = "", {}
                if kind:
                    self._emit_job(outbox, kind, job, now, actor=identity.user, changes=changes)
                updates.append((int(job.state), self._rt_json(job), jid))
                done.append(jid)
            self.store.write(updates=updates)
        self.publish(outbox)
        self.wake.set()
        return done, failed

    def _modify_action(self, job: Job, priority: float | None, hold: bool | None, time_limit: int | None) -> str:
        """The authorization action of one change (beyond ``job.modify``, which every change needs)."""
        if priority is not None:
            return "job.priority"
        if hold is not None:
            if hold:
                return "job.hold"
            return "job.release_admin_hold" if job.hold_admin else "job.release"
        if time_limit is not None:
            part = next((p for p in self.cfg.Partitions if p.name == job.partition), None)
            over_partition = bool(part and part.MaxTimeLimit and time_limit > part.MaxTimeLimit)
            current = job.time_limit or math.inf  # 0: unlimited
            return "job.time_limit.raise" if time_limit > current or over_partition else "job.time_limit.lower"
        return "job.modify"

    def _modifiable_nodes(self, names: Iterable[str], identity: Identity) -> tuple[list[NodeState], list]:
        """The named nodes ``identity`` may modify (``node.modify``), and ``(name, why)`` for the others."""
        nodes: list[NodeState] = []
        bad: list[tuple[str, str]] = []
        for name in names:
            node = self.nodes.get(name)
            if node is None:
                bad.append((name, "no such node"))
            elif not self._authorized(identity, "node.modify", name):
                bad.append((name, "Permission denied"))
            else:
                nodes.append(node)
        return nodes, bad

    def set_drain(self, names: list[str], drain: bool, reason: str, identity: Identity) -> tuple[list, list]:
        """Drain or resume nodes (admins only)."""
        ok = []
        outbox: list = []
        now = self.clock()
        with self.lock:
            nodes, bad = self._modifiable_nodes(names, identity)
            states = []
            for node in nodes:
                name = node.name
                node.drain, node.drain_reason = drain, reason if drain else ""
                node.refresh_usable()
                states.append((name, drain, node.drain_reason))
                self._emit_node(outbox, "node.drained" if drain else "node.resumed", name, now, reason=reason,
                                actor=identity.user)
                ok.append(name)
            self.store.write(node_states=states)
        self.publish(outbox)
        self.wake.set()
        return ok, bad
