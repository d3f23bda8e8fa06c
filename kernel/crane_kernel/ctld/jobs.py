"""The controller's job record and the rules that turn a submission into one.

A :class:`Job` *is* a :class:`~crane_kernel.sched_types.SchedJob` (subclass
with more slots), so the scheduler's view of the pending queue is just the
list of pending jobs — nothing is copied per cycle. Only what scheduling and
queries need is kept in memory; the script and the environment live in the
state store and are read back when the job is dispatched.
"""

from __future__ import annotations

import math
import pwd
import sys
from typing import Any

from crane_common.states import JobState

from crane_kernel.config import ClusterConfig
from crane_kernel.ctld.arrayspec import MAX_ARRAY_INDEX, TaskSet, parse_array
from crane_kernel.ctld.speccheck import (
    MAX_BEGIN_AHEAD,
    MAX_GRES,
    MAX_MEM,
    _check_env,
    _check_name,
    _count,
    _number,
    check_text_fields,
    mail_slot,
    normalize_container,
    normalize_lifecycle,
    normalize_mail,
)
from crane_kernel.errors import JobRejected
from crane_kernel.sched_types import SchedJob

_intern = sys.intern
MAX_ARRAY_TASKS_EVER = MAX_ARRAY_INDEX + 1  # recovery re-reads an accepted --array whatever the limit is now

def recheck_spec(spec: dict[str, Any], cfg: ClusterConfig, uid: int, user: str, gid: int) -> None:
    """Validate what the job filters returned: the same bounds as at submission, the same owner.

    A filter may change the request (partition, account, limits...), but it cannot hand the job to
    another user or push a field out of its range; raises :class:`JobRejected`.
    """
    lim = cfg.CraneCtld
    if spec.get("uid") != uid or spec.get("user") != user or spec.get("gid") != gid:
        raise JobRejected("a job filter changed the job's owner")
    check_text_fields(spec, cfg)
    part = next((p for p in cfg.Partitions if p.name == spec.get("partition")), None)
    if part is None:
        raise JobRejected(f"a job filter chose partition {str(spec.get('partition'))[:64]!r}, which does not exist")
    cpt = _number(spec.get("cpus_per_task"), "cpus-per-task")
    cpn = _number(spec.get("cpus_per_node"), "cpus per node")
    if cpt < lim.MinCpusPerTask or cpn < lim.MinCpusPerTask or cpn > lim.MaxCpusPerNode:
        raise JobRejected("a job filter set the CPUs out of range")
    if not 1 <= _count(spec.get("node_num"), "nodes", lim.MaxNodesPerJob):
        raise JobRejected("a job filter set the node count out of range")
    if not 1 <= _count(spec.get("ntasks_per_node"), "ntasks-per-node", lim.MaxTasksPerJob):
        raise JobRejected("a job filter set the tasks per node out of range")
    if _count(spec.get("mem_per_node"), "memory per node", MAX_MEM) < lim.MinMemPerNode:
        raise JobRejected("a job filter set the memory below the minimum")
    tl = _count(spec.get("time_limit"), "time limit", lim.MaxTimeLimit)
    if (part.MaxTimeLimit and not 1 <= tl <= part.MaxTimeLimit):
        raise JobRejected("a job filter set the time limit out of range")
    for k, v in (spec.get("gres") or {}).items():
        _check_name(k, "gres name", lim.MaxNameBytes)
        _count(v, f"gres {k}", MAX_GRES)
    script = spec.get("script", "")
    if not isinstance(script, str) or len(script.encode("utf-8", "surrogatepass")) > lim.MaxScriptBytes:
        raise JobRejected("a job filter made the script too large")
    _check_env(spec.get("env") or {}, cfg)
    normalize_mail(spec, user)
    normalize_container(spec, cfg)


class Job(SchedJob):
    """A job known to the controller (pending, running or recently ended)."""

    __slots__ = (
        "name", "gid", "state", "reason", "start_time", "end_time", "ntasks_per_node", "cpus_per_task",
        "exit_code", "alloc_nodes", "cwd", "cmd_line", "comment", "stdout", "stderr", "dispatch_time",
        "epoch", "usage_cpu_ms", "usage_mem_peak", "no_requeue", "requeue", "submit_host", "head_node",
        "cancel_requested", "devices", "planned_start", "hold_admin", "mail",
    )
    # ``mail``: None (no mail asked, the common case) or ``(types, recipient)`` (types canonical, one
    # shared tuple per combination); from the spec, so restored at recovery. The slot costs no memory:
    # the record stays in the same allocator size class (kernel/tests/test_mail_spec.py checks it).

    container_image = ""  # class default: a plain job has no container and no slot for one (ContainerJob)
    interactive = ""      # class default: a batch job; "crun" or "calloc" for an InteractiveJob
    array_job_id = 0      # class default: not a task of an array (a task's class has the slots: task_class)
    array_task_id = 0

    def rt(self) -> dict[str, Any]:
        """The mutable part of the record, as stored in the state store."""
        return {
            "state": int(self.state), "reason": self.reason, "start": self.start_time, "end": self.end_time,
            "exit": self.exit_code, "nodes": list(self.alloc_nodes), "epoch": self.epoch, "held": self.held,
            "pin": self.pinned_priority, "ucpu": self.usage_cpu_ms, "umem": self.usage_mem_peak,
            "dispatch": self.dispatch_time, "tl": self.time_limit, "cancel": self.cancel_requested,
            **({"devs": self.devices} if self.devices else {}),
            **({"hadm": True} if self.hold_admin else {}),
        }

    def apply_rt(self, rt: dict[str, Any]) -> None:
        """Restore the mutable part from the state store."""
        self.state = JobState(rt.get("state", 0))
        self.reason = rt.get("reason", "")
        self.start_time = rt.get("start", 0.0)
        self.end_time = rt.get("end", 0.0)
        self.exit_code = rt.get("exit", 0)
        self.alloc_nodes = tuple(rt.get("nodes", ()))
        self.head_node = self.alloc_nodes[0] if self.alloc_nodes else ""
        self.epoch = rt.get("epoch", 0)
        self.held = rt.get("held", False)
        self.pinned_priority = rt.get("pin")
        self.usage_cpu_ms = rt.get("ucpu", 0)
        self.usage_mem_peak = rt.get("umem", 0)
        self.dispatch_time = rt.get("dispatch", 0.0)
        self.time_limit = rt.get("tl", self.time_limit)
        self.cancel_requested = rt.get("cancel", False)
        self.devices = rt.get("devs") or {}
        self.hold_admin = bool(rt.get("hadm", False))


class ContainerJob(Job):
    """A container job (``spec["container"]`` set): a :class:`Job` with the image, for ``ccon ps``.

    A subclass, so a plain job's record keeps its size (the image is all the controller keeps in
    memory; the rest of the container is read from the stored spec at dispatch).
    """

    __slots__ = ("container_image",)


class InteractiveJob(Job):
    """A job of ``crun`` (its command is its step 0) or ``calloc`` (its shell runs on the client's host).

    ``interactive`` is ``"crun"`` or ``"calloc"`` (``spec["interactive"]``, set by the controller's
    CrunStream, never by a client's JobSpec). Nothing is launched for the job itself: its
    processes are task steps (ctld/steps.py), and it is bound to its client's stream.
    """

    __slots__ = ("interactive",)


class ArrayJob(Job):
    """The record of an array (``--array``): its tasks not yet created, and what became of the others.

    Not in the scheduler's queue: its tasks are (ctld/arrays.py creates them a few at a time).
    """

    __slots__ = ("array_spec", "array_tasks", "array_max", "array_live", "array_children", "array_worst",
                 "array_exit")

    def rt(self) -> dict[str, Any]:
        """The job's mutable part plus the array's (tasks left, the worst end of a task so far)."""
        out = Job.rt(self)
        out.update(atasks=self.array_tasks.text(), aworst=int(self.array_worst), aexit=self.array_exit,
                   amax=self.array_max)
        return out

    def apply_rt(self, rt: dict[str, Any]) -> None:
        """Restore the job's and the array's mutable parts."""
        Job.apply_rt(self, rt)
        if "atasks" in rt:
            self.array_tasks = TaskSet.parse_text(rt["atasks"])
            self.array_worst = JobState(rt.get("aworst", int(JobState.Completed)))
            self.array_exit = rt.get("aexit", 0)
            self.array_max = rt.get("amax", self.array_max)

    def pending_text(self) -> str:
        """``5-1000%10``: the tasks not yet created, and the limit (what ``A_[...]`` shows)."""
        if not len(self.array_tasks):
            return ""
        return self.array_tasks.text() + (f"%{self.array_max}" if self.array_max else "")


_TASK_CLASSES: dict[type, type] = {}


def task_class(cls: type) -> type:
    """``cls`` with the two slots of an array task (``array_job_id``, ``array_task_id``); one per class."""
    out = _TASK_CLASSES.get(cls)
    if out is None:
        out = _TASK_CLASSES[cls] = type(cls.__name__ + "Task", (cls,), {
            "__slots__": ("array_job_id", "array_task_id"),
            "__doc__": f"A task of an array: a {cls.__name__} that knows its array and index."})
    return out


INTERACTIVE_KINDS = ("crun", "calloc")


def job_from_spec(job_id: int, spec: dict[str, Any]) -> Job:
    """Build the in-memory record from a normalised spec (see :func:`normalize_spec`)."""
    kind = spec.get("interactive")
    cls = InteractiveJob if kind in INTERACTIVE_KINDS else ContainerJob if spec.get("container") else Job
    if spec.get("array"):
        cls = ArrayJob
    elif spec.get("array_job_id"):
        cls = task_class(cls)
    j = cls(
        job_id, _intern(spec["partition"]), spec["node_num"], spec["cpus_per_node"], spec["mem_per_node"],
        spec["time_limit"],
        submit_time=spec["submit_time"],
        gres_per_node=spec.get("gres") or None,
        nodelist=frozenset(spec["nodelist"]) if spec.get("nodelist") else None,
        exclude=frozenset(spec["exclude"]) if spec.get("exclude") else None,
        exclusive=spec.get("exclusive", False),
        account=_intern(spec.get("account", "")),
        user=_intern(spec["user"]),
        uid=spec["uid"],
        qos=_intern(spec.get("qos", "")),
        held=spec.get("hold", False),
        begin_time=spec.get("begin_time", 0),
    )
    j.name = _intern(spec.get("name", ""))
    j.gid = spec["gid"]
    j.state = JobState.Pending
    j.reason = ""
    j.start_time = j.end_time = 0.0
    j.ntasks_per_node = spec["ntasks_per_node"]
    j.cpus_per_task = spec["cpus_per_task"]
    j.exit_code = 0
    j.alloc_nodes = ()
    j.head_node = ""
    j.cwd = _intern(spec.get("cwd", ""))
    j.cmd_line = _intern(spec.get("cmd_line", ""))
    j.comment = _intern(spec.get("comment", ""))
    j.stdout = _intern(spec.get("output", ""))
    j.stderr = _intern(spec.get("error", ""))
    j.submit_host = _intern(spec.get("submit_host", ""))
    j.dispatch_time = 0.0
    j.epoch = 0
    j.usage_cpu_ms = j.usage_mem_peak = 0
    j.no_requeue = spec.get("no_requeue", False)
    j.requeue = spec.get("requeue", False)
    j.cancel_requested = False
    j.devices = {}
    j.planned_start = 0.0
    j.hold_admin = False
    j.mail = mail_slot(spec) if "mail_type" in spec else None
    if spec.get("container"):
        j.container_image = _intern(spec["container"]["image"])
    if cls is InteractiveJob:
        j.interactive = kind
    if cls is ArrayJob:
        array = parse_array(spec["array"], MAX_ARRAY_TASKS_EVER)
        j.array_spec = _intern(spec["array"])
        j.array_tasks = array.tasks()
        j.array_max = array.max_concurrent
        j.array_live = 0
        j.array_children = {}
        j.array_worst = JobState.Completed
        j.array_exit = 0
    elif spec.get("array_job_id"):
        j.array_job_id = spec["array_job_id"]
        j.array_task_id = spec["array_task_id"]
    return j


def normalize_spec(raw: dict[str, Any], cfg: ClusterConfig, uid: int, user: str, now: float) -> dict[str, Any]:
    """Validate a submitted JobSpec (as a dict) and fold it into the controller's shape.

    Mechanism only: the partition (named or default) must exist, the user must be known, and the
    request is folded into per-node amounts with the partition's defaults and limits. Whether the
    account may use the partition and whether its nodes could ever hold the request are policy:
    the job filters decide (the bundled ``submit_checks``). Every field is bounded first (the
    ``CraneCtld`` limits: CPU share and memory floors, counts, sizes of script, environment, names,
    comments and paths, no control characters; docs/security.md "Input bounds and privacy").
    Raises :class:`JobRejected` with a one-line reason.
    """
    spec = dict(raw)
    for key in ("array_job_id", "array_task_id", "dependency_ids"):  # the controller's own, never a client's
        spec.pop(key, None)
    check_text_fields(spec, cfg)
    if spec.get("array"):
        if spec.get("interactive"):
            raise JobRejected("--array is for batch jobs (crun and calloc cannot be arrays)")
        parse_array(str(spec["array"]), cfg.CraneCtld.MaxArrayTasks)  # refused here with one line when malformed
    part_name = spec.get("partition") or cfg.DefaultPartition
    part = next((p for p in cfg.Partitions if p.name == part_name), None)
    if part is None:
        raise JobRejected(f"Partition '{part_name}' does not exist")
    try:
        pw = pwd.getpwuid(uid)
        gid = pw.pw_gid
    except KeyError:
        raise JobRejected(f"user {user} (uid {uid}) is unknown on the controller host") from None

    lim = cfg.CraneCtld
    cpus_per_task = _number(spec.get("cpus_per_task") or 1.0, "cpus-per-task")
    if cpus_per_task < lim.MinCpusPerTask:
        raise JobRejected(f"cpus-per-task {cpus_per_task:g} is below the minimum of {lim.MinCpusPerTask:g} CPU")
    ntasks = _count(spec.get("ntasks"), "ntasks", lim.MaxTasksPerJob)
    tpn = _count(spec.get("ntasks_per_node"), "ntasks-per-node", lim.MaxTasksPerJob)
    node_num = _count(spec.get("node_num"), "nodes", lim.MaxNodesPerJob)
    if node_num == 0:
        node_num = math.ceil(ntasks / tpn) if (ntasks and tpn) else 1
    if tpn == 0:
        tpn = math.ceil(ntasks / node_num) if ntasks else 1
    if ntasks and ntasks > node_num * tpn:
        raise JobRejected(f"{ntasks} tasks do not fit on {node_num} node(s) with {tpn} task(s) per node")
    cpus_per_node = tpn * cpus_per_task
    if cpus_per_node > lim.MaxCpusPerNode:
        raise JobRejected(f"{cpus_per_node:g} CPUs per node exceed the maximum of {lim.MaxCpusPerNode:g}")

    mem = _count(spec.get("mem_per_node"), "memory per node", MAX_MEM)
    if mem and mem < lim.MinMemPerNode:
        raise JobRejected(f"memory per node {mem} bytes is below the minimum of {lim.MinMemPerNode >> 20} MiB")
    if not mem and spec.get("mem_per_cpu"):
        mem = int(_count(spec["mem_per_cpu"], "memory per CPU", MAX_MEM) * cpus_per_node)
    if not mem:
        mem = int((part.DefaultMemPerCpu or cfg.DefaultMemPerCpu) * cpus_per_node)
    mem = max(mem, lim.MinMemPerNode)  # amounts derived per CPU are raised to the floor
    if mem > MAX_MEM:
        raise JobRejected("memory per node is larger than 1 EiB")
    if part.MaxMemPerCpu and mem > part.MaxMemPerCpu * cpus_per_node:
        raise JobRejected(f"memory per node exceeds MaxMemPerCpu of partition '{part_name}'")

    tl = _count(spec.get("time_limit"), "time limit", 2**63) or part.DefaultTimeLimit or part.MaxTimeLimit
    if part.MaxTimeLimit and tl > part.MaxTimeLimit:
        raise JobRejected(f"time limit exceeds the maximum of partition '{part_name}'")
    if tl > lim.MaxTimeLimit:
        raise JobRejected(f"time limit exceeds the cluster maximum of {lim.MaxTimeLimit} seconds")
    begin = spec.get("begin_time") or 0
    if not isinstance(begin, int | float) or not math.isfinite(begin) or not 0 <= begin <= now + MAX_BEGIN_AHEAD:
        raise JobRejected("begin time must be a time within the next ten years")

    nodelist = list(spec.get("nodelist") or [])
    exclude = set(spec.get("exclude") or [])
    for what, names in (("node list", nodelist), ("excluded node list", exclude)):
        if len(names) > lim.MaxNodesPerJob:
            raise JobRejected(f"the {what} names more than {lim.MaxNodesPerJob} nodes")
        for n in names:
            _check_name(n, what, lim.MaxNameBytes)
    if nodelist and len(nodelist) > node_num:
        node_num = len(nodelist)
        if node_num > lim.MaxNodesPerJob:
            raise JobRejected(f"nodes {node_num} exceeds the maximum of {lim.MaxNodesPerJob}")
    gres: dict[str, int] = {}
    for k, v in (spec.get("gres") or {}).items():
        _check_name(k, "gres name", lim.MaxNameBytes)
        count = _count(v, f"gres {k}", MAX_GRES)
        if count > 0:
            gres[k] = count
    script = spec.get("script", "")
    if spec.get("interactive") in INTERACTIVE_KINDS:
        if spec.get("container"):
            raise JobRejected("an interactive job cannot run in a container (use ccon run)")
        script = spec["script"] = ""
    elif not isinstance(script, str) or not script.strip():
        raise JobRejected("the batch script is empty")
    if "\x00" in script:
        raise JobRejected("the batch script is not text")
    if len(script.encode("utf-8", "surrogatepass")) > lim.MaxScriptBytes:
        raise JobRejected(f"the batch script is larger than {lim.MaxScriptBytes} bytes (CraneCtld.MaxScriptBytes)")
    _check_env(spec.get("env") or {}, cfg)
    normalize_mail(spec, user)
    normalize_container(spec, cfg)
    normalize_lifecycle(spec, now)

    spec.update(
        partition=part_name, uid=uid, gid=gid, user=user, node_num=node_num, ntasks_per_node=tpn,
        ntasks=ntasks or node_num * tpn, cpus_per_task=cpus_per_task, cpus_per_node=cpus_per_node,
        mem_per_node=mem, time_limit=tl, nodelist=nodelist, exclude=sorted(exclude), gres=gres,
        submit_time=now, name=spec.get("name") or "",
    )
    return spec
