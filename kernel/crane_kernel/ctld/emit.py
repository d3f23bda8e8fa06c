"""Events the controller emits: typed models of :mod:`crane_kernel.events`, journaled with their change.

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin). Every emission happens under the
controller's lock, in the same lock hold as the journal write of the change it describes: the
event gets the next ``seq``, is encoded once and staged in the store
(:meth:`~crane_kernel.ctld.store.StateStore.stage_events`), and the following
:meth:`~crane_kernel.ctld.store.StateStore.write` inserts it into the ``outbox`` table in the same
transaction. The daemon publishes committed events in ``seq`` order and deletes them from the
outbox once Redis has them (``CtldDaemon.publish_events``). With ``event_models`` set (tests) the
event's model is also appended to the caller's outbox list, as ``(events stream, event)``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from crane_common.states import JobState
from pydantic import ValidationError

from crane_kernel.events import JobEvent, JobRecord, NodeEvent, StepEvent
from crane_kernel.messages import SCHEMA_VERSION, encode, new_id

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

log = logging.getLogger("cranectld")

__all__ = ["EmitMixin", "job_record"]

_STATE_NAMES = {s: s.name for s in JobState}


def _record_fields(job: Any) -> dict[str, Any]:
    """The fields of a job's :class:`~crane_kernel.events.JobRecord`, as a dict."""
    mail = getattr(job, "mail", None)
    mail_types, mail_user = (list(mail[0]), mail[1] or "") if mail else ([], "")
    state = job.state
    return {
        "job_id": job.job_id, "name": job.name[:255], "user": job.user, "uid": job.uid, "gid": job.gid,
        "account": job.account[:255], "partition": job.partition[:255], "qos": job.qos[:255],
        "state": _STATE_NAMES.get(state, str(state)), "exit_code": int(job.exit_code),
        "submit_time": float(job.submit_time), "start_time": float(job.start_time), "end_time": float(job.end_time),
        "time_limit": int(job.time_limit or 0), "node_num": int(job.node_num),
        "cpus": float(job.cpus_per_node * job.node_num), "mem_per_node": int(job.mem_per_node),
        "gres": dict(job.gres_per_node or {}), "nodes": list(job.alloc_nodes), "cwd": job.cwd, "comment": job.comment,
        "reason": job.reason or "", "cpu_time_ms": int(job.usage_cpu_ms or 0),
        "mem_peak_bytes": int(job.usage_mem_peak or 0), "requeue_count": max(int(job.epoch) - 1, 0),
        "mail_type": mail_types, "mail_user": str(mail_user)[:255],
        "array_job_id": int(getattr(job, "array_job_id", 0)), "array_task_id": int(getattr(job, "array_task_id", 0)),
    }


def job_record(job: Any) -> JobRecord:
    """The :class:`~crane_kernel.events.JobRecord` of a controller ``Job`` as it is now.

    ``cpus`` is the total over the job's nodes; ``requeue_count`` the launches beyond the first;
    ``mail_type``/``mail_user`` come from the job's optional ``mail`` slot, a
    ``(types, user)`` pair or None. Names are cut to the record's 255 characters.
    """
    return JobRecord.model_validate(_record_fields(job))


class EmitMixin:
    """``_emit_job``, ``_emit_step``, ``_emit_node``: build, sequence, stage and list one event.

    An event is encoded straight from a dict in the models' field order (~20 us for a job event,
    against ~45 us for building and encoding the pydantic model); the values are the controller's
    own, bounded at submission, and ``tests/test_events_emit.py`` decodes every kind.
    """

    store: Any
    clock: Any
    event_seq: int
    event_models = False  # also list each event's model in the caller's outbox (tests)
    events_stream: Any  # the Controller's method

    def _emit(self, outbox: list, cls: Any, fields: dict[str, Any]) -> None:
        """Give the event the next seq, encode it, stage it for the coming journal transaction.

        Encoded straight from the dict (``kind`` first, as :func:`~crane_kernel.messages.encode`
        writes it): the values are the controller's own, already bounded at submission, so the
        pydantic model (2-3x the cost) is built only when ``outbox`` asks for it
        (``self.event_models``, tests).
        """
        self.event_seq += 1
        payload = {"kind": fields.pop("kind"), "v": SCHEMA_VERSION, "id": new_id(), "seq": self.event_seq, **fields}
        try:
            data = _dumps(payload).encode()
        except (TypeError, ValueError, UnicodeEncodeError) as exc:  # never expected: say so, emit it anyway
            log.error("event %s not encodable as is (%s); encoded by its model", payload["kind"], exc)
            try:
                data = encode(cls.model_validate(payload))
            except ValidationError:
                data = encode(cls.model_construct(**payload))
        self.store.stage_events(((self.event_seq, data),))
        if self.event_models:
            outbox.append((self.events_stream(), cls.model_validate(payload)))

    def _emit_job(self, outbox: list, kind: str, job: Any, now: float, *, actor: str = "",
                  changes: dict[str, Any] | None = None) -> None:
        """Emit a job event (``job.<kind>``) with the job's full record."""
        self._emit(outbox, JobEvent, {"kind": kind, "job_id": job.job_id, "job": _record_fields(job),
                                      "time": float(now), "actor": actor or "", "changes": changes or {}})

    def _emit_step(self, outbox: list, kind: str, job: Any, now: float, *, state: str = "",
                   step_id: int = 0) -> None:
        """Emit a step event for the job's step ``step_id`` (0: the batch script)."""
        ended = kind == "step.ended"
        self._emit(outbox, StepEvent, {
            "kind": kind, "job_id": job.job_id, "step_id": step_id, "state": state,
            "exit_code": int(job.exit_code) if ended else 0, "nodes": list(job.alloc_nodes),
            "start_time": float(job.start_time), "end_time": float(now) if ended else 0.0,
            "cpu_time_ms": int(job.usage_cpu_ms or 0) if ended else 0,
            "mem_peak_bytes": int(job.usage_mem_peak or 0) if ended else 0, "time": float(now)})

    def _emit_node(self, outbox: list, kind: str, node: str, now: float, *, reason: str = "", actor: str = "",
                   cpus: float = 0.0, memory: int = 0) -> None:
        """Emit a node event."""
        self._emit(outbox, NodeEvent, {"kind": kind, "node": node, "reason": reason or "", "actor": actor or "",
                                       "cpus": float(cpus), "memory": int(memory), "time": float(now)})
