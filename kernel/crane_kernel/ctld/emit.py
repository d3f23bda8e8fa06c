"""Events the controller emits: typed models of :mod:`crane_kernel.events`, journaled with their change.

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin). Every emission happens under the
controller's lock, in the same lock hold as the journal write of the change it describes: the
event gets the next ``seq``, is encoded once and staged in the store
(:meth:`~crane_kernel.ctld.store.StateStore.stage_events`), and the following
:meth:`~crane_kernel.ctld.store.StateStore.write` inserts it into the ``outbox`` table in the same
transaction. The daemon publishes committed events in ``seq`` order and deletes them from the
outbox once Redis has them (``CtldDaemon.publish_events``). The event is also appended to the
caller's outbox list, as ``(events stream, event)``, for tests that watch what the controller says.
"""

from __future__ import annotations

from typing import Any

from crane_common.states import JobState

from crane_kernel.events import JobEvent, JobRecord, NodeEvent, StepEvent
from crane_kernel.messages import encode

__all__ = ["EmitMixin", "job_record"]

_STATE_NAMES = {s: s.name for s in JobState}


def job_record(job: Any, *, end_time: float | None = None) -> JobRecord:
    """The :class:`~crane_kernel.events.JobRecord` of a controller ``Job`` as it is now.

    ``cpus`` is the total over the job's nodes; ``requeue_count`` the launches beyond the first;
    ``mail_type``/``mail_user`` come from the job's optional ``mail`` slot, a
    ``(types, user)`` pair or None. Built without validation (the values are the controller's own).
    """
    mail = getattr(job, "mail", None)
    mail_types, mail_user = (list(mail[0]), mail[1] or "") if mail else ([], "")
    state = job.state
    return JobRecord.model_construct(
        job_id=job.job_id, name=job.name[:255], user=job.user, uid=job.uid, gid=job.gid, account=job.account[:255],
        partition=job.partition[:255], qos=job.qos[:255], state=_STATE_NAMES.get(state, str(state)),
        exit_code=int(job.exit_code), submit_time=float(job.submit_time), start_time=float(job.start_time),
        end_time=float(job.end_time if end_time is None else end_time), time_limit=int(job.time_limit or 0),
        node_num=int(job.node_num), cpus=float(job.cpus_per_node * job.node_num), mem_per_node=int(job.mem_per_node),
        gres=dict(job.gres_per_node or {}), nodes=list(job.alloc_nodes), cwd=job.cwd, comment=job.comment,
        reason=job.reason or "", cpu_time_ms=int(job.usage_cpu_ms or 0), mem_peak_bytes=int(job.usage_mem_peak or 0),
        requeue_count=max(int(job.epoch) - 1, 0), mail_type=mail_types, mail_user=mail_user,
    )


class EmitMixin:
    """``_emit_job``, ``_emit_step``, ``_emit_node``: build, sequence, stage and list one event."""

    store: Any
    clock: Any
    event_seq: int

    def events_stream(self) -> str:  # provided by Controller
        raise NotImplementedError

    def _emit(self, outbox: list, event: Any) -> None:
        """Give ``event`` the next seq, stage it for the coming journal transaction, and list it."""
        self.event_seq += 1
        event.seq = self.event_seq
        self.store.stage_events(((self.event_seq, encode(event)),))
        outbox.append((self.events_stream(), event))

    def _emit_job(self, outbox: list, kind: str, job: Any, now: float, *, actor: str = "",
                  changes: dict[str, Any] | None = None) -> None:
        """Emit a job event (``job.<kind>``) with the job's full record."""
        self._emit(outbox, JobEvent.model_construct(
            kind=kind, job_id=job.job_id, job=job_record(job), time=float(now), actor=actor or "",
            changes=changes or {}))

    def _emit_step(self, outbox: list, kind: str, job: Any, now: float, *, state: str = "",
                   step_id: int = 0) -> None:
        """Emit a step event for the job's step ``step_id`` (0: the batch script)."""
        ended = kind == "step.ended"
        self._emit(outbox, StepEvent.model_construct(
            kind=kind, job_id=job.job_id, step_id=step_id, state=state, exit_code=int(job.exit_code) if ended else 0,
            nodes=list(job.alloc_nodes), start_time=float(job.start_time), end_time=float(now) if ended else 0.0,
            cpu_time_ms=int(job.usage_cpu_ms or 0) if ended else 0,
            mem_peak_bytes=int(job.usage_mem_peak or 0) if ended else 0, time=float(now)))

    def _emit_node(self, outbox: list, kind: str, node: str, now: float, *, reason: str = "", actor: str = "",
                   cpus: float = 0.0, memory: int = 0) -> None:
        """Emit a node event."""
        self._emit(outbox, NodeEvent.model_construct(kind=kind, node=node, reason=reason or "", actor=actor or "",
                                                     cpus=float(cpus), memory=int(memory), time=float(now)))
