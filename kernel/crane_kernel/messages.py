"""Bus message models: what the daemons say to each other over Redis streams.

Every message is a small pydantic model serialized as compact JSON into the stream
field ``m``. Each carries

* ``kind`` — what it is; commands have plain names (``"node_register"``), events are
  dotted (``"job.ended"``, ``"node.down"``, see :mod:`crane_kernel.events`);
* ``v`` — the schema version (:data:`SCHEMA_VERSION`); a reader rejects other versions;
* ``id`` — a unique random id, so that consumers can de-duplicate: delivery is
  at-least-once and the same message may be handled twice.

Streams and what travels on them (see :class:`crane_kernel.bus.Bus` for the key names):

============================= ==================================================
``crane:{cluster}:report:{n}`` :class:`NodeRegister`, :class:`NodeHeartbeat`, :class:`StepStatus`,
                               :class:`JobControlResult` (node n only)
``crane:{cluster}:node:{n}``   :class:`LaunchStep`, :class:`TerminateStep`, :class:`FreeJob`, :class:`UpdateStep`,
                               :class:`SuspendJob`, :class:`ResumeJob`, :class:`SignalJob` (signed)
``crane:{cluster}:events``     :mod:`crane_kernel.events`: ``JobEvent``, ``StepEvent``, ``NodeEvent``
============================= ==================================================

Every value is bounded (see :data:`MAX_TIME` and the annotated types below): a message with a
time, exit code, count or name out of range is refused by :func:`decode`.

Unknown fields are ignored, so a producer may add an optional field without a version bump;
anything incompatible needs a new ``v``.

:func:`encode` and :func:`decode` are the only (de)serializers; :func:`decode` raises
:class:`~crane_kernel.errors.BusMessageError` with a one-line reason for anything it cannot use.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
from time import time as _now
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    model_validator,
)

from crane_kernel.errors import BusMessageError

__all__ = [
    "MESSAGE_TYPES",
    "SCHEMA_VERSION",
    "BusMessage",
    "FreeJob",
    "JobControlResult",
    "LaunchSpec",
    "LaunchStep",
    "NodeHeartbeat",
    "NodeRegister",
    "ResumeJob",
    "SignalJob",
    "StartStep",
    "StepStatus",
    "SuspendJob",
    "TaskLaunch",
    "TerminateStep",
    "decode",
    "encode",
    "new_id",
]

SCHEMA_VERSION = 1
"""The bus schema version this code writes and reads."""

# --- bounds: every value read from the bus is checked (a forged or broken message is refused at decode) ---

MAX_TIME = 1e10
"""Latest accepted time stamp (seconds since the epoch; the year 2286): times must be finite and in [0, MAX_TIME]."""
MAX_EXIT_CODE = 1023
"""Exit codes are 0..255 for a script, 256+ for cranesched's own (``EC_*``), never above this."""
MAX_LIST = 100_000
"""The longest list (steps, job ids, results) a message may carry."""
MAX_REASON = 1000
"""Free-text reasons are cut to this many characters, their control characters blanked."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str) -> str:
    """Refuse a name with control characters (newline, NUL, escape ...)."""
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _clean_text(value: Any) -> Any:
    """Blank the control characters of a free-text field and cut it to :data:`MAX_REASON`."""
    if isinstance(value, str):
        return _CONTROL.sub(" ", value[:MAX_REASON])
    return value


Name = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_no_control)]
"""A node, user or job name: 1..255 characters, no control characters."""
OptName = Annotated[str, Field(max_length=255), AfterValidator(_no_control)]
Text = Annotated[str, BeforeValidator(_clean_text), Field(max_length=MAX_REASON)]
"""Free text (a reason): control characters blanked, at most :data:`MAX_REASON` characters."""
MsgId = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_control)]
JobId = Annotated[int, Field(ge=0, le=2**53)]
StepId = Annotated[int, Field(ge=0, le=2**31 - 1)]
Epoch = Annotated[int, Field(ge=0, le=2**31 - 1)]
Time = Annotated[float, Field(ge=0, le=MAX_TIME, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=2**62)]
StepRef = tuple[JobId, StepId, Epoch]


_ids: list = [-1, "", None]  # [pid, random prefix, counter] of this process


def new_id() -> str:
    """Return a fresh message id, unique across processes and restarts: a random prefix drawn once per
    process (12 URL-safe characters, 72 bits; drawn again in a forked child) and a counter.

    Ids are keys for de-duplication, not secrets. Drawing 96 random bits per message cost an
    ``os.urandom`` call, which releases the GIL: on a busy controller every message then waited to
    get it back (up to 21 % of the scheduling thread in ``crane bench scale``).
    """
    pid = os.getpid()
    state = _ids
    if state[0] != pid:
        state[:] = [pid, secrets.token_urlsafe(9), itertools.count(1)]
    return f"{state[1]}{next(state[2]):x}"


class BusMessage(BaseModel):
    """Base of every bus message: ``kind`` first (the decoder's fast path relies on it), then ``v`` and ``id``."""

    kind: str = Field(max_length=64)
    v: int = SCHEMA_VERSION
    id: MsgId = Field(default_factory=new_id)


# --- to the controller: crane:{cluster}:report:{node} --------------------------------------------------


class NodeRegister(BusMessage):
    """A craned (re)announces itself: its resources, the jobs whose supervisors still live, unacked results.

    ``steps`` and ``ended`` are as in :class:`NodeHeartbeat`; ``running`` keeps the job ids of ``steps``.
    """

    kind: Literal["node_register"] = "node_register"
    node: Name
    cpus: float = Field(gt=0, le=1e6, allow_inf_nan=False)
    mem: Count
    gres: dict[Name, Annotated[int, Field(ge=0, le=1_000_000)]] = Field(default_factory=dict, max_length=1000)
    running: list[JobId] = Field(default_factory=list, max_length=MAX_LIST)
    finished: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_LIST)
    boot_id: OptName = ""
    pid: int = Field(0, ge=0, le=2**31 - 1)
    steps: list[StepRef] = Field(default_factory=list, max_length=MAX_LIST)
    ended: list[StepRef] = Field(default_factory=list, max_length=MAX_LIST)
    task_steps: list[StepRef] = Field(default_factory=list, max_length=MAX_LIST)
    task_ended: list[StepRef] = Field(default_factory=list, max_length=MAX_LIST)


class NodeHeartbeat(BusMessage):
    """A craned is alive, and what it runs.

    ``steps`` lists ``(job_id, step_id, epoch)`` of every step whose supervisor lives (or is
    being started) on the node (epoch 0: not known);
    ``ended`` the job directories whose step no longer runs (its final status, if it had one,
    was put on the stream before this heartbeat; the directory waits for the controller's
    ``FreeJob``). ``running`` is the job ids of ``steps``, kept for older controllers.

    ``steps``/``ended`` are about the batch step (step 0 of a batch job, the job directory
    ``jobs/<id>/``); ``task_steps``/``task_ended`` are the same for the task steps that
    :class:`StartStep` started (crun's steps, directories ``jobs/<id>.<step>/``).
    """

    kind: Literal["node_heartbeat"] = "node_heartbeat"
    node: Name
    running: list[JobId] = Field(default_factory=list, max_length=MAX_LIST)
    time: Time = Field(default_factory=_now)
    steps: list[StepRef] = Field(default_factory=list, max_length=MAX_LIST)
    ended: list[StepRef] = Field(default_factory=list, max_length=MAX_LIST)
    task_steps: list[StepRef] = Field(default_factory=list, max_length=MAX_LIST)
    task_ended: list[StepRef] = Field(default_factory=list, max_length=MAX_LIST)


class StepStatus(BusMessage):
    """A step changed state on a node (started, finished, or could not start); ``epoch`` is its launch's.

    ``step_id`` 0 of a batch job is its batch step (:class:`LaunchStep`); every other step is a
    task step (:class:`StartStep`), and its status is this node's part of it: ``exit_code`` the
    largest of its tasks' here (raw), ``finished`` once all of them ended and their output is on
    the step's I/O stream.

    Bounded: ``time`` finite in [0, :data:`MAX_TIME`], ``exit_code`` in [0, :data:`MAX_EXIT_CODE`],
    usage non-negative; a forged ``time=1e308`` is refused at decode.
    """

    kind: Literal["step_status"] = "step_status"
    node: Name
    job_id: JobId
    step_id: StepId = 0
    state: Literal["running", "finished", "failed_to_start"]
    exit_code: int = Field(0, ge=0, le=MAX_EXIT_CODE)
    oom: bool = False
    cpu_time_ms: Count = 0
    mem_peak: Count = 0
    time: Time = Field(default_factory=_now)
    reason: Text = ""
    epoch: Epoch = 0


# --- to one node: crane:{cluster}:node:{name} -------------------------------------------------


class ContainerLaunch(BaseModel):
    """The container of a container job, as the controller validated it (ctld/jobs.py normalize_container).

    Runtime-neutral: a container runtime plugin (e.g. ``cri``) interprets it; sizes are bounded
    again here so a node never trusts a message blindly.
    """

    image: str = Field(min_length=1, max_length=4096)
    pod_name: str = Field("", max_length=253)
    ports: list[Annotated[str, Field(max_length=11)]] = Field(default_factory=list, max_length=16)
    user: str = Field("", max_length=21)
    userns: bool = False
    host_network: bool = False
    dns: list[Annotated[str, Field(max_length=45)]] = Field(default_factory=list, max_length=3)
    command: list[Annotated[str, Field(max_length=1 << 20)]] = Field(default_factory=list, max_length=256)


def _keep_bad_spec(data: Any, handler: Any) -> Any:
    """Validate a launch message; if its only problems are inside ``spec``, keep it with ``spec=None``
    and the problems in ``spec_error`` (the node then reports the launch as failed, not lost)."""
    try:
        return handler(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if not isinstance(data, dict) or data.get("spec") is None or \
                any(tuple(e.get("loc", ()))[:1] != ("spec",) for e in errors):
            raise
        msg = handler({**data, "spec": None})
        msg.spec_error = problems(exc)
        return msg


class LaunchSpec(BaseModel):
    """What a node needs to run a job's batch step: built by the controller, read by the step supervisor.

    The job's identity (``job_id``, ``step_id``, ``epoch``) travels in the enclosing
    :class:`LaunchStep`. Resources are per node: the supervisor turns this into a
    :class:`~crane_kernel.runtime.StepSpec` for the runtime plugins. Nothing here is specific to
    one runtime (cgroup limits beyond CPU, memory and devices are the runtime plugin's settings).
    Unknown fields are ignored, so a newer controller may add optional fields.
    """

    name: OptName = ""                       # job name (``%x`` in output patterns)
    uid: int = Field(ge=0, le=2**32 - 2)     # the job runs as this user ...
    gid: int = Field(ge=0, le=2**32 - 2)     # ... with this primary group
    user: OptName = ""                       # user name as the controller knows it (informational)
    cwd: str = "/"                           # working directory
    script: str                              # the batch script
    interpreter: str = Field("/bin/bash", min_length=1)  # argv prefix, split on blanks
    env: dict[str, str] = Field(default_factory=dict)    # the job's environment (``--export`` applied)
    output: str = ""                         # stdout pattern (``%j %x %u %%``); "" = Crane-%j.out
    error: str = ""                          # stderr pattern; "" = with stdout
    input: str = ""                          # stdin file; "" = /dev/null
    open_mode: Literal["truncate", "append"] = "truncate"
    cpus: float = Field(1.0, gt=0, le=1e6, allow_inf_nan=False)  # CPUs on this node (may be fractional)
    cpu_ids: list[Annotated[int, Field(ge=0, le=1 << 20)]] = Field(default_factory=list)  # pinned cores (empty = none)
    mem_bytes: Count = 0                     # memory limit on this node (0 = none)
    time_limit: int = Field(0, ge=0, le=2**31 - 1)  # seconds, 0 = unlimited (the supervisor enforces it)
    devices_allow: list[str] = Field(default_factory=list)  # device files the job may open
    devices_deny: list[str] = Field(default_factory=list)   # the node's other device files
    container: ContainerLaunch | None = None  # a container job (the runtime plugin that claims it reads it)
    warn_signal: int = Field(0, ge=0, le=64)  # --signal: this signal (0 = none) ...
    warn_seconds: int = Field(0, ge=0, le=65535)  # ... this many seconds before the time limit ...
    warn_batch_only: bool = False  # ... to the batch shell only (B:), else to every process of the job


class LaunchStep(BusMessage):
    """Start a step with ``spec``; ``epoch`` counts the job's launches (a requeued job gets a new one).

    Validated on receipt like every message, except that a malformed ``spec`` does not make the
    whole message undecodable: it arrives as ``spec=None`` with the reason in ``spec_error``, so
    the node can report the launch as failed to the controller instead of dropping it.
    """

    kind: Literal["launch_step"] = "launch_step"
    job_id: JobId
    step_id: StepId = 0
    spec: LaunchSpec | None
    epoch: Epoch = 0
    spec_error: Text = ""

    @model_validator(mode="wrap")
    @classmethod
    def _keep_bad_spec(cls, data: Any, handler: Any) -> "LaunchStep":
        """Accept a message whose only problems are inside ``spec``: ``spec=None`` and the reason kept."""
        return _keep_bad_spec(data, handler)


STDIN_ALL = -1
"""``TaskLaunch.stdin_task``: every task of the step gets the client's stdin."""
STDIN_NONE = -2
"""``TaskLaunch.stdin_task``: no task gets stdin (/dev/null)."""

Arg = Annotated[str, Field(max_length=1 << 16)]


class TaskLaunch(BaseModel):
    """What one node needs to run its tasks of a task step (crun): built by the controller.

    Resources are this node's: ``cpus``/``mem_bytes``/``cpu_ids``/devices are the job's allocation
    here (the job's cgroup), ``step_cpus``/``step_mem_bytes`` the step's share of it (the step's
    cgroup below). ``task_ids`` are the global task ids (``CRANE_PROCID``) this node runs, in
    order (``CRANE_LOCALID`` is the index); ``env`` is the tasks' environment with the step's
    ``CRANE_*`` variables, the supervisor adds the per-task ones. Output, task exits and the end
    go to the step's I/O stream (:mod:`crane_kernel.iostream`), stdin and signals come from it.
    """

    name: OptName = ""
    uid: int = Field(ge=0, le=2**32 - 2)
    gid: int = Field(ge=0, le=2**32 - 2)
    user: OptName = ""
    cwd: str = Field("/", max_length=4096)
    argv: list[Arg] = Field(min_length=1, max_length=4096)
    env: dict[str, str] = Field(default_factory=dict)
    task_ids: list[Annotated[int, Field(ge=0, le=1 << 20)]] = Field(min_length=1, max_length=4096)
    ntasks: int = Field(1, ge=1, le=1 << 20)           # tasks of the whole step (CRANE_NTASKS)
    node_index: int = Field(0, ge=0, le=1 << 20)       # this node's place in ``nodes`` (CRANE_NODEID)
    nodes: list[Name] = Field(default_factory=list, max_length=MAX_LIST)  # the step's nodes
    cpus: float = Field(1.0, gt=0, le=1e6, allow_inf_nan=False)
    cpu_ids: list[Annotated[int, Field(ge=0, le=1 << 20)]] = Field(default_factory=list)
    mem_bytes: Count = 0
    step_cpus: float = Field(0.0, ge=0, le=1e6, allow_inf_nan=False)   # 0 = the job's
    step_mem_bytes: Count = 0                                          # 0 = the job's
    devices_allow: list[str] = Field(default_factory=list)
    devices_deny: list[str] = Field(default_factory=list)
    time_limit: int = Field(0, ge=0, le=2**31 - 1)     # seconds from the step's start, 0 = none
    pty: bool = False                                  # the first task (of the step) gets a terminal
    stdin_task: int = Field(0, ge=STDIN_NONE, le=1 << 20)  # a task id, STDIN_ALL or STDIN_NONE
    rows: int = Field(24, ge=0, le=10000)
    cols: int = Field(80, ge=0, le=10000)


class StartStep(BusMessage):
    """Start this node's tasks of task step ``job_id.step_id`` (crun; ``epoch`` is the job's launch).

    Like :class:`LaunchStep`, a malformed ``spec`` arrives as ``spec=None`` with ``spec_error``,
    so the node reports the step as failed to start instead of dropping it.
    """

    kind: Literal["start_step"] = "start_step"
    job_id: JobId
    step_id: StepId
    spec: TaskLaunch | None
    epoch: Epoch = 0
    spec_error: Text = ""

    @model_validator(mode="wrap")
    @classmethod
    def _keep_bad_spec(cls, data: Any, handler: Any) -> "StartStep":
        """Accept a message whose only problems are inside ``spec``: ``spec=None`` and the reason kept."""
        return _keep_bad_spec(data, handler)


class TerminateStep(BusMessage):
    """Kill a job's steps on the node; ``reason`` says why and decides the reported exit code.

    Known reasons: ``"cancel"``, ``"timeout"``, ``"node"`` (node lost/removed), ``"orphan"`` (the
    controller does not know the job); a node treats any other value like ``"cancel"``.
    ``step_id`` ``None`` ends every step of the job on the node (its batch step and its task
    steps); a number ends that step only (a task step: ``ccancel <job>.<step>``, an orphan).
    """

    kind: Literal["terminate_step"] = "terminate_step"
    job_id: JobId
    reason: Text = "cancel"
    epoch: Epoch = 0
    step_id: StepId | None = None


class FreeJob(BusMessage):
    """The controller has recorded the job's end: the node may forget it and release its resources."""

    kind: Literal["free_job"] = "free_job"
    job_id: JobId
    epoch: Epoch = 0  # the launch it is about; 0 = any (a newer launch's directory is kept)
    step_id: StepId | None = None  # None: the whole job (every directory of it); a number: that task step's only


# --- events: crane:{cluster}:events -----------------------------------------------------------
# The event models (JobEvent, StepEvent, NodeEvent) live in crane_kernel.events, which imports this
# module; decode finds them by their dotted kind through crane_kernel.events.event_class.


MESSAGE_TYPES: dict[str, type[BusMessage]] = {
    cls.model_fields["kind"].default: cls
    for cls in (NodeRegister, NodeHeartbeat, StepStatus, LaunchStep, StartStep, TerminateStep, FreeJob)
}
"""Command kinds (exact names) -> model class. Dotted kinds go to the event classes by prefix."""

_event_class: Any = None  # crane_kernel.events.event_class, imported on first use (events imports this module)
_KIND_HEAD = b'{"kind":"'


def encode(msg: BusMessage) -> bytes:
    """Serialize ``msg`` to compact JSON bytes (``kind`` first)."""
    return msg.__pydantic_serializer__.to_json(msg)


def _class_for(kind: Any) -> type[BusMessage]:
    """Map a ``kind`` value to its model class, or raise BusMessageError."""
    if not isinstance(kind, str):
        raise BusMessageError("missing or non-string 'kind'")
    cls = MESSAGE_TYPES.get(kind)
    if cls is not None:
        return cls
    global _event_class
    if _event_class is None:
        from crane_kernel.events import event_class

        _event_class = event_class
    event_cls = _event_class(kind)
    if event_cls is not None:
        return event_cls
    raise BusMessageError(f"unknown message kind {kind!r}")


def _sniff_kind(raw: bytes) -> str | None:
    """Read ``kind`` from the head of an :func:`encode` output without parsing it; None if not in that shape."""
    if raw.startswith(_KIND_HEAD):
        end = raw.find(b'"', 9)
        if end > 9:
            kind = raw[9:end]
            if b"\\" not in kind:
                return kind.decode("ascii", "replace")
    return None


def problems(exc: ValidationError) -> str:
    """Condense a pydantic ValidationError to one line: the first problem (``where: what``) and how many more."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "message"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def _validation_reason(kind: str, exc: ValidationError) -> str:
    """One line for a message that failed validation."""
    return f"invalid {kind} message: {problems(exc)}"


def decode(raw: bytes | bytearray | memoryview | str) -> BusMessage:
    """Parse and validate one message; raise BusMessageError (one line) on bad JSON, kind, version or fields."""
    if isinstance(raw, str):
        raw = raw.encode()
    elif not isinstance(raw, bytes):
        raw = bytes(raw)
    kind = _sniff_kind(raw)
    if kind is None:  # not our own compact shape: parse generically to find the kind
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BusMessageError(f"malformed JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise BusMessageError(f"message is a JSON {type(obj).__name__}, not an object")
        kind = obj.get("kind")
    cls = _class_for(kind)
    try:
        msg = cls.model_validate_json(raw)
    except ValidationError as exc:
        _check_version_of_raw(raw)
        if any(e.get("type") == "json_invalid" for e in exc.errors(include_url=False)):
            raise BusMessageError(f"malformed JSON: {exc.errors(include_url=False)[0].get('msg')}") from None
        raise BusMessageError(_validation_reason(kind, exc)) from None
    if msg.v != SCHEMA_VERSION:
        raise BusMessageError(f"unsupported schema version {msg.v} for {kind} (this build reads {SCHEMA_VERSION})")
    return msg


def _check_version_of_raw(raw: bytes) -> None:
    """On the error path: report a foreign schema version rather than the field errors it causes."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return
    if isinstance(obj, dict) and "v" in obj and obj["v"] != SCHEMA_VERSION:
        raise BusMessageError(
            f"unsupported schema version {obj['v']!r} for {obj.get('kind')} (this build reads {SCHEMA_VERSION})"
        )


class UpdateStep(BusMessage):
    """Change a running job's time limit on its head node (seconds from the step's start, > 0).

    Sent on ``crane:{cluster}:node:{n}`` after ``ccontrol update timelimit=``; craned hands the new
    limit to the job's supervisor, which enforces it from then on (ending the step with
    "time limit exceeded" once it has run that long). ``epoch`` as in :class:`TerminateStep`.
    """

    kind: Literal["update_step"] = "update_step"
    job_id: JobId
    time_limit: int = Field(gt=0, le=100 * 365 * 86400)
    epoch: Epoch = 0


MESSAGE_TYPES[UpdateStep.model_fields["kind"].default] = UpdateStep


# --- job control: suspend, resume and signals (ctld/lifecycle.py, craned/jobctl.py) -------------------


class SuspendJob(BusMessage):
    """Freeze every process of the job on the node (its batch step and its task steps) through the runtime.

    Sent on ``crane:{cluster}:node:{n}`` to every node of the job after ``ccontrol suspend``;
    each step's supervisor asks its runtime (``crane_step_suspend``) and stops its time-limit
    clock; a step that cannot be frozen is reported with :class:`JobControlResult` (``ok`` false).
    """

    kind: Literal["suspend_job"] = "suspend_job"
    job_id: JobId
    epoch: Epoch = 0


class ResumeJob(BusMessage):
    """Thaw a suspended job's processes on the node (``crane_step_resume``); their time-limit clock runs again."""

    kind: Literal["resume_job"] = "resume_job"
    job_id: JobId
    epoch: Epoch = 0


class SignalJob(BusMessage):
    """Send ``signum`` to the job's processes on the node without ending it (``ccancel -s``).

    ``batch_only``: only the batch shell (the batch step's main process group), as ``--signal B:``;
    otherwise every process of the job (batch step and task steps).
    """

    kind: Literal["signal_job"] = "signal_job"
    job_id: JobId
    signum: int = Field(ge=1, le=64)
    batch_only: bool = False
    epoch: Epoch = 0


class JobControlResult(BusMessage):
    """A node's answer to :class:`SuspendJob`, :class:`ResumeJob` or :class:`SignalJob` for one of its steps.

    On ``crane:{cluster}:report:{node}``; sent by the step's supervisor, or by craned when the node
    has no live supervisor of the job. ``ok`` false: the action failed there (``reason`` says why).
    """

    kind: Literal["job_control_result"] = "job_control_result"
    node: Name
    job_id: JobId
    step_id: StepId = 0
    epoch: Epoch = 0
    action: Literal["suspend", "resume", "signal"]
    ok: bool = True
    reason: Text = ""


for _cls in (SuspendJob, ResumeJob, SignalJob, JobControlResult):
    MESSAGE_TYPES[_cls.model_fields["kind"].default] = _cls
