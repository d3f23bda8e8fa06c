"""Node messages: registration, heartbeats, step status, and what happens when a node goes silent.

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin). ``handle_messages`` is the bus
consumer's handler for the controller stream; it takes the lock and journals one batch in one
transaction. ``_check_liveness`` runs at the start of every scheduling cycle, under the lock.
"""

from __future__ import annotations

import logging
from typing import Any

from crane_common.states import EC_CRANED_DOWN, FINAL_STATES, JobState, state_from_exit

from crane_kernel import messages as m
from crane_kernel.ctld import reconcile as rc
from crane_kernel.ctld.jobs import Job
from crane_kernel.ctld.nodes import NodeState

log = logging.getLogger("cranectld")


class NodeMessagesMixin:
    """Messages from nodes and supervisors, and node liveness."""

    def handle_messages(self, batch: list[tuple[Any, Any]]) -> None:
        """Apply a batch of messages from the controller stream in one journal transaction."""
        outbox: list = []
        now = self.clock()
        with self.lock:
            updates: list = []
            for _entry_id, msg in batch:
                try:
                    if isinstance(msg, m.StepStatus):
                        updates += self._on_step_status(msg, now, outbox)
                    elif isinstance(msg, m.NodeHeartbeat):
                        updates += self._on_heartbeat(msg.node, msg.running, now, outbox, msg.steps, msg.ended)
                        if self.steps and msg.node in self.nodes:
                            updates += self._reconcile_task_steps(msg.node, msg.task_steps, msg.task_ended, now,
                                                                  outbox)
                    elif isinstance(msg, m.NodeRegister):
                        updates += self._on_register(msg, now, outbox)
                    elif isinstance(msg, m.JobControlResult):
                        updates += self._on_control_result(msg, now, outbox)  # ctld/lifecycle.py
                    else:
                        log.warning("ignoring unexpected %s message on the controller stream", msg.kind)
                except Exception:  # a bad message must not take the others down
                    log.exception("failed to apply %s message %s; skipped", getattr(msg, "kind", "?"),
                                  getattr(msg, "id", "?"))
            self.store.write(updates=updates)
        self.publish(outbox)
        self.wake.set()

    def _node_seen(self, name: str, now: float, outbox: list) -> NodeState | None:
        node = self.nodes.get(name)
        if node is None:
            log.warning("message from unknown node %r ignored", name)
            return None
        node.last_seen = now
        node.ever_seen = True
        if not node.alive:
            node.alive = True
            node.refresh_usable()
            log.info("node %s is up", name)
        return node

    def _on_heartbeat(self, name: str, running: list[int], now: float, outbox: list,
                      steps: list | None = None, ended: list | None = None) -> list:
        """A node is alive and reports what it runs: reconcile it with the jobs (returns journal rows)."""
        node = self._node_seen(name, now, outbox)
        if node is None:
            return []
        live = rc.step_map(steps) if steps else rc.step_map(running)  # an older craned sends job ids only
        return rc.reconcile_node(self, node, live, rc.step_map(ended or []), now, outbox)

    def _on_register(self, msg: Any, now: float, outbox: list) -> list:
        node = self._node_seen(msg.node, now, outbox)
        if node is None:
            return []
        self._emit_node(outbox, "node.registered", msg.node, now, cpus=msg.cpus, memory=msg.mem)
        updates: list = []
        for result in msg.finished or []:
            try:
                status = m.StepStatus.model_validate(result)
            except Exception as exc:
                log.warning("bad finished record from %s: %s", msg.node, str(exc).splitlines()[0])
                continue
            if status.node != msg.node:
                log.warning("node %s reported a result of node %r (job %d): dropped", msg.node, status.node,
                            status.job_id)
                continue
            updates += self._on_step_status(status, now, outbox)
        live = rc.step_map(msg.steps) if msg.steps else rc.step_map(msg.running)
        if self.steps:
            updates += self._reconcile_task_steps(msg.node, msg.task_steps, msg.task_ended, now, outbox)
        return updates + rc.reconcile_node(self, node, live, rc.step_map(msg.ended), now, outbox)

    def _on_step_status(self, msg: Any, now: float, outbox: list) -> list:
        """Apply a step's status; only the node the controller placed the job's step on may report it.

        ``msg.node`` is the reporting node (the consumer checked it against the report stream the
        message came on): a status about a job whose head is another node is logged and dropped.
        """
        if self.is_task_step(msg.job_id, msg.step_id):  # crun's steps (ctld/stepexec.py)
            return self._on_task_status(msg, now, outbox)
        job = self.jobs.get(msg.job_id)
        epoch = getattr(msg, "epoch", 0)
        if job is not None and job.head_node and msg.node != job.head_node and job.state not in FINAL_STATES:
            log.warning("node %s sent a %s status for job %d, which runs on %s: dropped", msg.node, msg.state,
                        msg.job_id, job.head_node)
            return []
        if job is None or job.state in FINAL_STATES or job.state == JobState.Pending or \
                (epoch and epoch != job.epoch):
            if msg.state != "running":
                outbox.append((self.node_stream(msg.node), m.FreeJob(job_id=msg.job_id, epoch=epoch or 0)))
                return rc.final_status(self, msg, now)  # a held job's step ended: its node confirms
            return []
        if msg.state == "running":
            if job.state == JobState.Configuring:
                job.state = JobState.Running
                job.start_time = msg.time or now
                rv = self.running_view.get(job.job_id)
                if rv is not None and job.time_limit:
                    self.running_view[job.job_id] = rv.with_end(job.start_time + job.time_limit)
                self._emit_step(outbox, "step.started", job, now, state="Running")
                return [(int(job.state), self._rt_json(job), job.job_id)]
            return []
        if msg.state == "failed_to_start":
            state = JobState.Cancelled if job.cancel_requested else JobState.Failed
        else:
            state = state_from_exit(msg.exit_code, msg.oom)
            if job.cancel_requested and state in (JobState.Failed, JobState.Completed):
                state = JobState.Cancelled
        job.usage_cpu_ms = msg.cpu_time_ms
        job.usage_mem_peak = msg.mem_peak
        outbox.append((self.node_stream(msg.node), m.FreeJob(job_id=msg.job_id, epoch=epoch or 0)))
        return self._finish(job, state, msg.exit_code, msg.time or now, outbox, persist=False,
                            reason=msg.reason)

    def _end_lost(self, job: Job, now: float, outbox: list, why: str) -> list:
        """A running job's node went away: requeue it when the rules allow, else end it as node-down.

        Its resources stay held while any of its nodes may still run its processes (the node is
        DOWN, its last report listed the job, or the launch may still be queued for it; the live
        ones are told to kill it), and a requeued job waits as Pending (reason NodeDown) until they
        are released: it never runs twice at once.
        """
        requeue = self._may_requeue(job, why)
        waiting = rc.may_still_run_on(self, job)
        held = bool(waiting) and job.job_id in self.running
        if held:
            rc.hold(self, job, waiting, requeue=requeue)
            for n in sorted(waiting):
                if self.nodes[n].alive:
                    outbox.append((self.node_stream(n), m.TerminateStep(job_id=job.job_id, reason="node",
                                                                        epoch=job.epoch)))
        if requeue:
            return self._requeue(job, now, outbox, why, held, EC_CRANED_DOWN, rc.REASON_NODE_DOWN)
        return self._finish(job, JobState.Failed, EC_CRANED_DOWN, now, outbox, persist=False, reason=why)

    def _requeue(self, job: Job, now: float, outbox: list, why: str, held: bool, exit_code: int,
                 held_reason: str) -> list:
        """Put a started job back in the queue (its id kept); returns its journal row.

        The one requeue path: after a node failure (:meth:`_end_lost`) and by hand or by a plan
        (:meth:`~crane_kernel.ctld.lifecycle.LifecycleMixin.requeue_job`). ``held``: its resources
        are held until its nodes confirm its processes are gone (``ctld/reconcile.py``); it waits
        with ``held_reason`` until then, and enters the queue when they are released.
        """
        if job.state in (JobState.Running, JobState.Suspended):
            self._emit_step(outbox, "step.ended", job, now, state="Requeued")
        self.life_new_run(job)  # its next run starts with no time suspended (ctld/lifecycle.py)
        if job.job_id in self.steps:
            self._steps_at_job_end(job, now, outbox)  # its crun steps end with this run (ctld/stepexec.py)
        self._release(job)
        job.state = JobState.Pending
        job.alloc_nodes = ()
        job.head_node = ""
        job.exit_code = exit_code
        job.reason = held_reason if held else ""
        if not held:
            job.devices = {}
            self.pending[job.job_id] = job
        log.info("job %d requeued: %s%s", job.job_id, why, " (starts once its old processes are gone)"
                 if held else "")
        self._emit_job(outbox, "job.requeued", job, now, changes={"reason": why})
        return [(int(job.state), self._rt_json(job), job.job_id)]

    def _may_requeue(self, job: Job, reason: str = "") -> bool:
        """Whether a job that lost its node goes back to the queue: the lifecycle plugins decide.

        Never an interactive job: its client waits for it now, not for a rerun.
        """
        if job.interactive:
            return False
        return bool(self.pm.hook.crane_job_requeue(job=job, reason=reason))

    def _check_liveness(self, now: float, outbox: list) -> None:
        timeout = self.cfg.CraneCtld.CranedTimeout
        held = self.recon.held
        updates: list = []
        late = [node for node in self.nodes.values() if now - node.last_seen > timeout]
        if not late:
            return
        on_node: dict[str, list] = {}  # node -> its running jobs, built once for all the late nodes
        for j in self.running.values():
            for name in j.alloc_nodes:
                on_node.setdefault(name, []).append(j)
        with rc.batched(self):  # the held table is journaled once, before the rows below
            for node in late:
                lost = [j for j in on_node.get(node.name, ()) if j.job_id not in held
                        and j.job_id in self.running]
                if not node.alive and not lost:
                    continue
                if node.alive:
                    log.warning("node %s missed heartbeats for %.0fs: DOWN", node.name, now - node.last_seen)
                    self._emit_node(outbox, "node.down", node.name, now, reason="heartbeat timeout")
                node.alive = False
                node.refresh_usable()
                updates += self._task_steps_on_down_node(node.name, now, outbox)
                for job in lost:
                    if job.job_id not in held and job.job_id in self.running:  # an earlier node's loss ended it
                        updates += self._end_lost(job, now, outbox, f"node {node.name} down")
        self.store.write(updates=updates)  # also journals the events (an empty write with none is free)

    def confirm_node_down(self, names: list[str], reason: str, identity: Any) -> tuple[list, list]:
        """An admin confirms nodes are down and run nothing of their jobs (e.g. powered off); admins only.

        See :func:`crane_kernel.ctld.reconcile.confirm_node_down`.
        """
        with self.lock:
            ok, bad, outbox = rc.confirm_node_down(self, names, reason, identity)
        self.publish(outbox)
        self.wake.set()
        return ok, bad
