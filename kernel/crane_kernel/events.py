"""The events stream ``crane:{cluster}:events``: typed payloads for event plugins.

The controller writes every event into its journal in the same transaction as the change it
describes (the *outbox*), then publishes it; an event is therefore never lost once the change is
acknowledged, and may be published twice after a crash (consumers de-duplicate by ``id``). Each
event carries ``seq``, the controller's global event sequence number (strictly increasing): a
consumer that sees an older ``seq`` for a job than the one it already applied ignores it.

Kinds (:data:`JOB_KINDS`, :data:`STEP_KINDS`, :data:`NODE_KINDS`):

=================== ===================================================================
``job.submitted``   accepted and journaled (``job`` as submitted)
``job.started``     resources allocated and the launch sent (``job.nodes``, ``start_time``)
``job.ended``       a final state: ``job.state``, ``exit_code``, times, usage
``job.held``        ``job.released`` ``job.modified`` (``changes``: field -> new value)
``job.cancelled``   a cancel request was accepted (``actor``); ``job.ended`` follows
``job.requeued``    back to Pending (node failure or ``ccontrol requeue``)
``job.preempted``   chosen as a victim (``changes``: ``preempted_by``, ``mode``, ``grace`` seconds)
``step.started``    a step began on its nodes (``step_id``; 0 is the batch script)
``step.ended``      a step's final state, exit code and usage
``node.registered`` a craned registered (``cpus``, ``memory``)
``node.down``       ``node.drained`` ``node.resumed`` (``reason``, ``actor``)
=================== ===================================================================

Like every bus message the models ignore unknown fields, so a field can be added without a
version bump. :func:`crane_kernel.messages.decode` returns these classes for dotted kinds.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crane_kernel.messages import (
    MAX_LIST,
    BusMessage,
    Count,
    JobId,
    Name,
    OptName,
    StepId,
    Text,
    Time,
)

JOB_KINDS = frozenset({"job.submitted", "job.started", "job.ended", "job.held", "job.released", "job.modified",
                       "job.cancelled", "job.requeued", "job.preempted"})
STEP_KINDS = frozenset({"step.started", "step.ended"})
NODE_KINDS = frozenset({"node.registered", "node.down", "node.drained", "node.resumed"})


class JobRecord(BaseModel):
    """What is known of a job when the event is emitted: every field ``cacct`` shows.

    ``exit_code`` is the raw code (0-255 a status, 256+N signal N, 320+ Crane codes, see
    ``crane_common.states``); ``cpus`` is the total over the job's nodes (requested while
    pending, allocated once started); ``mem_per_node`` in bytes; ``cpu_time_ms`` and
    ``mem_peak_bytes`` (peak RSS from the cgroup) are set on ``job.ended``.
    """

    model_config = ConfigDict(extra="ignore")

    job_id: JobId
    name: OptName = ""
    user: OptName = ""
    uid: Count = 0
    gid: Count = 0
    account: OptName = ""
    partition: OptName = ""
    qos: OptName = ""
    state: OptName = "Pending"
    exit_code: Count = 0
    submit_time: Time = 0.0
    start_time: Time = 0.0
    end_time: Time = 0.0
    time_limit: Count = 0
    node_num: Count = 0
    cpus: float = Field(0.0, ge=0, le=1e9, allow_inf_nan=False)
    mem_per_node: Count = 0
    gres: dict[str, Count] = Field(default_factory=dict, max_length=64)
    nodes: list[Name] = Field(default_factory=list, max_length=MAX_LIST)
    cwd: Text = ""
    comment: Text = ""
    reason: Text = ""
    cpu_time_ms: Count = 0
    mem_peak_bytes: Count = 0
    requeue_count: Count = 0
    mail_type: list[OptName] = Field(default_factory=list, max_length=16)
    mail_user: OptName = ""
    array_job_id: Count = 0       # a task of an array (docs/arrays.md): the array's id, 0 otherwise
    array_task_id: Count = 0


class _Event(BusMessage):
    """Fields every event has: when (``time``), the global sequence number and who caused it."""

    prefix: ClassVar[str] = ""
    kinds: ClassVar[frozenset[str]] = frozenset()
    kind: str = Field(max_length=64)
    seq: Count = 0
    time: Time = 0.0
    actor: OptName = ""

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        """Only the documented kinds of this class."""
        if value not in cls.kinds:
            raise ValueError(f"unknown {cls.prefix.rstrip('.')} event {value!r}")
        return value


class JobEvent(_Event):
    """A job lifecycle event (:data:`JOB_KINDS`)."""

    prefix: ClassVar[str] = "job."
    kinds: ClassVar[frozenset[str]] = JOB_KINDS
    job_id: JobId
    job: JobRecord
    changes: dict[str, Any] = Field(default_factory=dict, max_length=32)


class StepEvent(_Event):
    """A step event (:data:`STEP_KINDS`); the batch script is step 0."""

    prefix: ClassVar[str] = "step."
    kinds: ClassVar[frozenset[str]] = STEP_KINDS
    job_id: JobId
    step_id: StepId = 0
    name: OptName = ""       # the step's name ("" for a batch script: ``batch``)
    state: OptName = ""
    exit_code: Count = 0
    nodes: list[Name] = Field(default_factory=list, max_length=MAX_LIST)
    start_time: Time = 0.0
    end_time: Time = 0.0
    cpu_time_ms: Count = 0
    mem_peak_bytes: Count = 0


class NodeEvent(_Event):
    """A node event (:data:`NODE_KINDS`)."""

    prefix: ClassVar[str] = "node."
    kinds: ClassVar[frozenset[str]] = NODE_KINDS
    node: Name
    reason: Text = ""
    cpus: float = Field(0.0, ge=0, le=1e9, allow_inf_nan=False)
    memory: Count = 0


EVENT_TYPES: tuple[type[_Event], ...] = (JobEvent, StepEvent, NodeEvent)
"""The event classes, found by their ``prefix`` (``job.``, ``step.``, ``node.``)."""


def event_class(kind: str) -> type[_Event] | None:
    """The event class for a dotted ``kind``, or None."""
    for cls in EVENT_TYPES:
        if kind.startswith(cls.prefix):
            return cls
    return None
