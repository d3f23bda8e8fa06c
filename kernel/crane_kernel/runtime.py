"""The protocol between a step supervisor and the runtime plugins.

A step supervisor (one process per running step on a node, forked by
``craned``) describes the step as a :class:`StepSpec` and asks the runtime
plugins, in configured order, to launch it (``crane_step_launch``); the first
plugin that claims it returns a :class:`StepHandle`. From then on the
supervisor only talks to the step through the runtime hooks
(``crane_step_wait``, ``crane_step_signal``, ``crane_step_usage``, ...), each of
which the owning plugin answers for its own handles (``handle.runtime``).

Exit codes use CraneSched's raw encoding: 0-255 is the exit status, 256+N
means killed by signal N, and 320+ are Crane codes (see :mod:`crane_common.states`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class StepSpec:
    """Everything a runtime needs to start one step of a job on this node."""

    job_id: int
    step_id: int
    node: str                      # the (virtual) node name this step runs on
    name: str                      # job name
    uid: int
    gid: int
    user: str
    cwd: str
    script_path: str               # the script written by the supervisor (mode 0700, owned by uid)
    interpreter: list[str]         # argv prefix, e.g. ["/bin/bash"]; script_path is appended
    env: dict[str, str]            # the complete environment of the task
    stdout: str                    # resolved path ('' = /dev/null)
    stderr: str                    # resolved path ('' = same as stdout)
    stdin: str = ""                # resolved path ('' = /dev/null)
    open_mode: str = "truncate"    # truncate | append
    cpus: float = 1.0              # CPU amount (quota)
    cpu_ids: list[int] = field(default_factory=list)  # cores for the cpuset (empty = no cpuset)
    mem_bytes: int = 0             # memory limit (0 = none)
    pids_max: int = 0              # pids limit (0 = none)
    devices_allow: list[str] = field(default_factory=list)  # device files the step may open
    devices_deny: list[str] = field(default_factory=list)   # device files the step must not open
    time_limit: int = 0            # seconds, 0 = unlimited (enforced by the supervisor)
    cgroup_prefix: str = "crane"   # cgroups go under <controller>/<cgroup_prefix>/<node>/job_<id>
    container_image: str = ""      # for container runtimes (unused by runtime_cgroup)

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable) for the supervisor's state file."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StepSpec":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class StepUsage:
    """Resource usage of a finished (or running) step, read from the runtime."""

    cpu_time_ms: int = 0       # user+system CPU time of all its processes
    mem_peak_bytes: int = 0    # peak memory (max_usage / memory.peak)
    oom_killed: bool = False   # the kernel OOM killer fired inside the step


@dataclass
class StepHandle:
    """A launched step. Runtime plugins subclass this and keep their own state on it.

    ``runtime`` names the plugin that owns the handle: hooks other than
    ``crane_step_launch`` must return ``None`` for handles that are not theirs.
    """

    runtime: str
    pid: int
    spec: StepSpec
