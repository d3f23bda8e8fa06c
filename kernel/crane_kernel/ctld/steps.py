"""Job steps: the record of one step and where its tasks go inside the job's allocation.

A job's steps (``<job>.<step>``, docs/interactive.md) are kept per job by the controller
(``Controller.steps``: job id -> step id -> :class:`Step`); the state machine that starts, ends
and cancels them is :mod:`crane_kernel.ctld.stepexec`. Step 0 is the job's primary step (for a
batch job its script, which the job-level launch runs and which has no :class:`Step` record
here); steps 1, 2, ... are crun's steps inside the allocation.

:func:`place_step` turns a step request into task ids per node, or refuses it with an
:class:`StepRefused` carrying CraneSched's ``ErrCode``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

from crane_common.states import FINAL_STATES, JobState

from crane_kernel.messages import STDIN_ALL, STDIN_NONE

# ErrCode numbers of crane.proto (the kernel does not import the generated protobuf module)
ERR_INVALID_PARAM = 52
ERR_PERMISSION_DENIED = 54
ERR_NON_EXISTENT = 42
ERR_INVALID_NODE_LIST = 44
ERR_STEP_RES_BEYOND = 85
ERR_SYSTEM_ERR = 49

MAX_ENDED_STEPS = 128
"""Ended steps a job keeps in memory and in its journal record (the history plugin keeps all)."""


class StepRefused(Exception):  # noqa: N818 - reads better at the raise sites
    """A step (or interactive job) that cannot be created: ``code`` is its ErrCode, the message one line."""

    def __init__(self, reason: str, code: int = ERR_INVALID_PARAM) -> None:
        super().__init__(reason)
        self.code = code


LIVE_STEP_STATES = frozenset({JobState.Pending, JobState.Configuring, JobState.Running})


@dataclass(eq=False)
class Step:
    """One step of a job: what it runs, where, and how far it got.

    ``tasks`` maps each of its nodes (in order) to the global task ids that node runs; it is
    empty for calloc's step 0, whose shell runs on the client's host. ``done_on`` holds each
    node's raw exit code once its part ended; the step ends when every node's part has.
    ``wakeup`` is set on every change, for the relay that streams the step to its client.
    """

    job_id: int
    step_id: int
    name: str
    uid: int
    user: str
    argv: list[str] = field(default_factory=list)
    cwd: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, list[int]] = field(default_factory=dict)
    cpus: dict[str, float] = field(default_factory=dict)
    mem_per_node: int = 0
    time_limit: int = 0
    ntasks: int = 0
    pty: bool = False
    stdin_task: int = 0
    rows: int = 24
    cols: int = 80
    submit_time: float = 0.0
    state: JobState = JobState.Pending
    reason: str = ""
    exit_code: int = 0
    start_time: float = 0.0
    end_time: float = 0.0
    dispatch_time: float = 0.0
    started_on: set[str] = field(default_factory=set)
    done_on: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    failed_start: bool = False
    oom: bool = False
    usage_cpu_ms: int = 0
    mem_peak: int = 0
    ending: str = ""               # why it is being ended: "cancel", "timeout", "client", "job"
    attached: bool = False         # a client stream relays it (its I/O keys are the relay's until it detaches)
    request: dict[str, Any] = field(default_factory=dict)  # a pending step's placement request
    wakeup: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def nodes(self) -> list[str]:
        """The step's nodes, in task order."""
        return list(self.tasks)

    @property
    def live(self) -> bool:
        """Not ended yet."""
        return self.state in LIVE_STEP_STATES

    @property
    def ended(self) -> bool:
        """In a final state."""
        return self.state in FINAL_STATES

    def changed(self) -> None:
        """Wake whoever waits for this step."""
        self.wakeup.set()

    def to_rt(self) -> dict[str, Any]:
        """The journal's form (without the environment of an ended step)."""
        d: dict[str, Any] = {
            "id": self.step_id, "name": self.name, "uid": self.uid, "user": self.user, "argv": self.argv,
            "cwd": self.cwd, "tasks": self.tasks, "cpus": self.cpus, "mem": self.mem_per_node,
            "tl": self.time_limit, "nt": self.ntasks, "pty": self.pty, "in": self.stdin_task,
            "rows": self.rows, "cols": self.cols, "submit": self.submit_time, "state": int(self.state),
            "reason": self.reason, "exit": self.exit_code, "start": self.start_time, "end": self.end_time,
            "started": sorted(self.started_on), "done": self.done_on, "ucpu": self.usage_cpu_ms,
            "umem": self.mem_peak, "ending": self.ending,
        }
        if self.live:
            d["env"] = self.env
            if self.request:
                d["req"] = self.request
        return d

    @classmethod
    def from_rt(cls, job_id: int, d: dict[str, Any]) -> Step:
        """Rebuild a step from :meth:`to_rt` (at recovery)."""
        return cls(
            job_id=job_id, step_id=int(d["id"]), name=d.get("name", ""), uid=int(d.get("uid", 0)),
            user=d.get("user", ""), argv=list(d.get("argv", [])), cwd=d.get("cwd", "/"), env=dict(d.get("env", {})),
            tasks={k: list(v) for k, v in (d.get("tasks") or {}).items()},
            cpus={k: float(v) for k, v in (d.get("cpus") or {}).items()}, mem_per_node=int(d.get("mem", 0)),
            time_limit=int(d.get("tl", 0)), ntasks=int(d.get("nt", 0)), pty=bool(d.get("pty", False)),
            stdin_task=int(d.get("in", 0)), rows=int(d.get("rows", 24)), cols=int(d.get("cols", 80)),
            submit_time=float(d.get("submit", 0.0)), state=JobState(int(d.get("state", 0))),
            reason=d.get("reason", ""), exit_code=int(d.get("exit", 0)), start_time=float(d.get("start", 0.0)),
            end_time=float(d.get("end", 0.0)), started_on=set(d.get("started", [])),
            done_on={k: int(v) for k, v in (d.get("done") or {}).items()}, usage_cpu_ms=int(d.get("ucpu", 0)),
            mem_peak=int(d.get("umem", 0)), ending=d.get("ending", ""), request=dict(d.get("req") or {}))


def stdin_target(text: str, ntasks: int) -> int:
    """``StepStart.stdin_target`` as a task id, STDIN_ALL or STDIN_NONE; raise StepRefused when invalid."""
    text = (text or "0").strip().lower()
    if text == "all":
        return STDIN_ALL
    if text == "none":
        return STDIN_NONE
    if not text.isdigit() or int(text) >= max(ntasks, 1):
        raise StepRefused(f"stdin target {text[:32]!r} is not a task of the step (0..{max(ntasks, 1) - 1}, all, none)")
    return int(text)


def spread_tasks(nodes: list[str], ntasks: int, per_node: int) -> dict[str, list[int]]:
    """Block distribution: ``per_node`` tasks on each node in order (the last ones may get fewer)."""
    out: dict[str, list[int]] = {}
    task = 0
    for node in nodes:
        if task >= ntasks:
            break
        count = min(per_node, ntasks - task)
        out[node] = list(range(task, task + count))
        task += count
    return out


def place_step(request: dict[str, Any], alloc_nodes: list[str], cpus_per_node: float, mem_per_node: int,
               job_cpus_per_task: float, job_ntasks: int, max_tasks: int) -> tuple[dict[str, list[int]], float, int]:
    """Where a step's tasks go inside an allocation: ``(node -> task ids, CPUs per task, memory per node)``.

    ``request`` holds the step's ``node_num``, ``ntasks``, ``ntasks_per_node``, ``cpus_per_task``,
    ``mem_per_node``, ``nodelist`` and ``exclude`` (0 / empty = as the job: all its nodes, the
    job's task count, its CPUs per task). Raises :class:`StepRefused` with ERR_STEP_RES_BEYOND
    when the step could never fit in the allocation, ERR_INVALID_NODE_LIST for nodes outside it.
    """
    nodelist = [str(n) for n in request.get("nodelist") or []]
    exclude = {str(n) for n in request.get("exclude") or []}
    outside = [n for n in (*nodelist, *exclude) if n not in alloc_nodes]
    if outside:
        raise StepRefused(f"node {outside[0][:64]} is not in the job's allocation", ERR_INVALID_NODE_LIST)
    usable = [n for n in alloc_nodes if n not in exclude]
    if nodelist:  # the named nodes first, in the allocation's order
        usable = [n for n in usable if n in nodelist] + [n for n in usable if n not in nodelist]
    cpt = float(request.get("cpus_per_task") or job_cpus_per_task or 1.0)
    if not math.isfinite(cpt) or cpt <= 0:
        raise StepRefused("cpus-per-task must be a positive number")
    node_num = int(request.get("node_num") or 0)
    ntasks = int(request.get("ntasks") or 0)
    per_node = int(request.get("ntasks_per_node") or 0)
    for what, value in (("nodes", node_num), ("tasks", ntasks), ("tasks per node", per_node)):
        if value < 0 or value > max_tasks:
            raise StepRefused(f"{what} out of range")
    if node_num == 0:
        node_num = len(nodelist) if nodelist else (math.ceil(ntasks / per_node) if ntasks and per_node else
                                                   min(len(usable), ntasks) if ntasks else len(usable))
    if node_num < len(nodelist):
        raise StepRefused(f"{len(nodelist)} nodes named for a step of {node_num} node(s)", ERR_INVALID_NODE_LIST)
    if node_num > len(usable):
        raise StepRefused(f"the step asks for {node_num} node(s); the allocation has {len(usable)} it may use",
                          ERR_STEP_RES_BEYOND)
    if ntasks == 0:  # as Slurm: one task per node when the nodes were asked for, else the job's task count
        if per_node:
            ntasks = node_num * per_node
        elif request.get("node_num") or nodelist:
            ntasks = node_num
        else:
            ntasks = max(node_num, job_ntasks)
    if per_node == 0:
        per_node = math.ceil(ntasks / node_num)
    if ntasks > node_num * per_node:
        raise StepRefused(f"{ntasks} tasks do not fit on {node_num} node(s) with {per_node} task(s) per node")
    if ntasks < node_num:
        raise StepRefused(f"{ntasks} task(s) cannot use {node_num} nodes")
    if per_node * cpt > cpus_per_node + 1e-9:
        raise StepRefused(f"the step needs {per_node * cpt:g} CPUs on a node; the allocation has {cpus_per_node:g}",
                          ERR_STEP_RES_BEYOND)
    mem = int(request.get("mem_per_node") or 0)
    if mem > mem_per_node:
        raise StepRefused(f"the step asks for {mem >> 20} MiB per node; the allocation has {mem_per_node >> 20} MiB",
                          ERR_STEP_RES_BEYOND)
    return spread_tasks(usable[:node_num], ntasks, per_node), cpt, mem or mem_per_node


def cpus_in_use(steps: dict[int, Step], node: str) -> float:
    """CPUs the live steps (other than step 0, which is the allocation's own) use on ``node``."""
    return sum(s.cpus.get(node, 0.0) for s in steps.values()
               if s.step_id != 0 and s.state in (JobState.Configuring, JobState.Running))
