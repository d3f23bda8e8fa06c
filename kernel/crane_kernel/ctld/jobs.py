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
from crane_kernel.errors import JobRejected
from crane_kernel.sched_types import SchedJob

_intern = sys.intern


class Job(SchedJob):
    """A job known to the controller (pending, running or recently ended)."""

    __slots__ = (
        "name", "gid", "state", "reason", "start_time", "end_time", "ntasks_per_node", "cpus_per_task",
        "exit_code", "alloc_nodes", "cwd", "cmd_line", "comment", "stdout", "stderr", "dispatch_time",
        "epoch", "usage_cpu_ms", "usage_mem_peak", "no_requeue", "requeue", "submit_host", "head_node",
        "cancel_requested", "devices", "planned_start",
    )

    def rt(self) -> dict[str, Any]:
        """The mutable part of the record, as stored in the state store."""
        return {
            "state": int(self.state), "reason": self.reason, "start": self.start_time, "end": self.end_time,
            "exit": self.exit_code, "nodes": list(self.alloc_nodes), "epoch": self.epoch, "held": self.held,
            "pin": self.pinned_priority, "ucpu": self.usage_cpu_ms, "umem": self.usage_mem_peak,
            "dispatch": self.dispatch_time, "tl": self.time_limit, "cancel": self.cancel_requested,
            **({"devs": self.devices} if self.devices else {}),
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


def job_from_spec(job_id: int, spec: dict[str, Any]) -> Job:
    """Build the in-memory record from a normalised spec (see :func:`normalize_spec`)."""
    j = Job(
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
    return j


def normalize_spec(raw: dict[str, Any], cfg: ClusterConfig, uid: int, user: str, now: float) -> dict[str, Any]:
    """Validate a submitted JobSpec (as a dict) and fold it into the controller's shape.

    Mechanism only: the partition (named or default) must exist, the user must be known, and the
    request is folded into per-node amounts with the partition's defaults and limits. Whether the
    account may use the partition and whether its nodes could ever hold the request are policy:
    the job filters decide (the bundled ``submit_checks``). Raises :class:`JobRejected` with a
    one-line reason.
    """
    spec = dict(raw)
    part_name = spec.get("partition") or cfg.DefaultPartition
    part = next((p for p in cfg.Partitions if p.name == part_name), None)
    if part is None:
        raise JobRejected(f"Partition '{part_name}' does not exist")
    try:
        pw = pwd.getpwuid(uid)
        gid = pw.pw_gid
    except KeyError:
        raise JobRejected(f"user {user} (uid {uid}) is unknown on the controller host") from None

    cpus_per_task = float(spec.get("cpus_per_task") or 1.0)
    if cpus_per_task <= 0 or not math.isfinite(cpus_per_task):
        raise JobRejected("cpus-per-task must be positive")
    ntasks = int(spec.get("ntasks") or 0)
    tpn = int(spec.get("ntasks_per_node") or 0)
    node_num = int(spec.get("node_num") or 0)
    if node_num == 0:
        node_num = math.ceil(ntasks / tpn) if (ntasks and tpn) else 1
    if tpn == 0:
        tpn = math.ceil(ntasks / node_num) if ntasks else 1
    if ntasks and ntasks > node_num * tpn:
        raise JobRejected(f"{ntasks} tasks do not fit on {node_num} node(s) with {tpn} task(s) per node")
    cpus_per_node = tpn * cpus_per_task

    mem = int(spec.get("mem_per_node") or 0)
    if not mem and spec.get("mem_per_cpu"):
        mem = int(spec["mem_per_cpu"] * cpus_per_node)
    if not mem:
        mem = int((part.DefaultMemPerCpu or cfg.DefaultMemPerCpu) * cpus_per_node)
    if part.MaxMemPerCpu and mem > part.MaxMemPerCpu * cpus_per_node:
        raise JobRejected(f"memory per node exceeds MaxMemPerCpu of partition '{part_name}'")

    tl = int(spec.get("time_limit") or 0) or part.DefaultTimeLimit or part.MaxTimeLimit
    if part.MaxTimeLimit and tl > part.MaxTimeLimit:
        raise JobRejected(f"time limit exceeds the maximum of partition '{part_name}'")

    nodelist = list(spec.get("nodelist") or [])
    exclude = set(spec.get("exclude") or [])
    if nodelist and len(nodelist) > node_num:
        node_num = len(nodelist)
    gres = {k: int(v) for k, v in (spec.get("gres") or {}).items() if int(v) > 0}
    script = spec.get("script", "")
    if not script.strip():
        raise JobRejected("the batch script is empty")
    if "\x00" in script:
        raise JobRejected("the batch script is not text")

    spec.update(
        partition=part_name, uid=uid, gid=gid, user=user, node_num=node_num, ntasks_per_node=tpn,
        ntasks=ntasks or node_num * tpn, cpus_per_task=cpus_per_task, cpus_per_node=cpus_per_node,
        mem_per_node=mem, time_limit=tl, nodelist=nodelist, exclude=sorted(exclude), gres=gres,
        submit_time=now, name=spec.get("name") or "",
    )
    return spec
