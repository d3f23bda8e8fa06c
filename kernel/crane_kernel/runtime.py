"""The protocol between a step supervisor and the runtime plugins.

A step supervisor (one process per running step on a node, forked by
``craned``) describes the step as a :class:`StepSpec` and asks the runtime
plugins, in configured order, to launch it (``crane_step_launch``); the first
plugin that claims it returns a :class:`StepHandle`. From then on the
supervisor only talks to the step through the runtime hooks
(``crane_step_wait``, ``crane_step_signal``, ``crane_step_usage``, ...), and the
kernel's :class:`StepDispatcher` calls only the implementation of the plugin
that launched the step, so a runtime plugin never sees another's handles.

Runtime-specific settings (cgroup root and prefix, a pids limit, ...) are not
part of :class:`StepSpec`: each runtime plugin takes them from its own
settings (``crane_plugin_configure``).

Exit codes use CraneSched's raw encoding: 0-255 is the exit status, 256+N
means killed by signal N, and 320+ are Crane codes (see :mod:`crane_common.states`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crane_kernel.errors import PluginError


@dataclass
class TaskIo:
    """One task of a task step (crun): its environment and the standard streams the supervisor made for it.

    The descriptors belong to the supervisor (pipes, or a pty's slave end for the ``pty`` task);
    the runtime makes them the task's 0, 1 and 2 and the supervisor closes its copies after the
    launch. With ``pty`` the task starts in a new session with ``stdin_fd`` as its controlling
    terminal.
    """

    task_id: int               # global task id (CRANE_PROCID)
    env: dict[str, str]        # the task's complete environment
    stdin_fd: int
    stdout_fd: int
    stderr_fd: int
    pty: bool = False


@dataclass
class StepSpec:
    """Everything a runtime needs to start one step of a job on this node.

    A batch step runs ``interpreter + [script_path]`` once with the standard streams at the
    ``stdout``/``stderr``/``stdin`` paths. A task step (crun) sets ``argv`` and ``tasks``: one
    process per :class:`TaskIo` runs ``argv`` with that task's environment and descriptors, in a
    cgroup of the step (``step_cpus``/``step_mem_bytes``, 0 = the job's) below the job's cgroup
    (``cpus``/``mem_bytes``: the job's allocation on this node).
    """

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
    devices_allow: list[str] = field(default_factory=list)  # device files the step may open
    devices_deny: list[str] = field(default_factory=list)   # device files the step must not open
    time_limit: int = 0            # seconds, 0 = unlimited (enforced by the supervisor)
    container: dict | None = None  # a container job: image, pod_name, ports, user, userns, host_network, dns,
    # command (messages.ContainerLaunch as a dict); claimed by a container runtime (cri), left by cgroup
    argv: list[str] = field(default_factory=list)      # a task step: the command of every task
    tasks: list[TaskIo] = field(default_factory=list)  # a task step: its tasks on this node
    step_cpus: float = 0.0         # a task step: its CPU quota (0 = the job's)
    step_mem_bytes: int = 0        # a task step: its memory limit (0 = the job's)

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable) for the supervisor's state file."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StepSpec":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        spec = cls(**{k: v for k, v in data.items() if k in names})
        spec.tasks = [t if isinstance(t, TaskIo) else TaskIo(**t) for t in spec.tasks]
        return spec


@dataclass
class StepUsage:
    """Resource usage of a finished (or running) step, read from the runtime."""

    cpu_time_ms: int = 0       # user+system CPU time of all its processes
    mem_peak_bytes: int = 0    # peak memory (max_usage / memory.peak)
    oom_killed: bool = False   # the kernel OOM killer fired inside the step


@dataclass
class StepHandle:
    """A launched step. Runtime plugins subclass this and keep their own state on it.

    ``runtime`` names the plugin that owns the handle. The kernel sets it, when
    ``crane_step_launch`` returns the handle, to the configured name of the
    plugin that returned it, and routes every later runtime hook by it.
    """

    runtime: str
    pid: int
    spec: StepSpec
    task_pids: dict[int, int] = field(default_factory=dict)  # a task step: task id -> pid (pid is the first's)
    task_exit: dict[int, int] = field(default_factory=dict)  # a task step: task id -> raw exit code, as they end


STEP_HOOKS = ("crane_step_wait", "crane_step_signal", "crane_step_suspend", "crane_step_resume",
              "crane_step_usage", "crane_step_cleanup")
"""The runtime hooks that take a ``handle`` and are routed to the plugin that launched the step."""


class StepDispatcher:
    """Launches steps on the configured runtimes and routes every later hook to the one that claimed the step.

    ``runtimes`` is the runtime slot's ``(name, plugin)`` pairs in configured
    order; ``own(hook, plugin)`` returns a caller of that one plugin's
    implementation of ``hook`` (:meth:`crane_kernel.plugins.Plugins.own_caller`,
    a pluggy ``subset_hook_caller``, so pluggy still makes the call). Built by
    :func:`crane_kernel.plugins.load_slots` when the runtime slot is loaded and
    available as ``plugins.steps``; ``plugins.hook.crane_step_*`` are its methods.

    :meth:`crane_step_launch` asks each runtime in order and stamps the
    returned handle's ``runtime`` with the name of the plugin that answered;
    the other methods call only that plugin's implementation (``None`` when it
    does not implement the hook, i.e. "not handled"). The argument names are
    the hooks', so ``steps.crane_step_wait(handle=h, timeout=1.0)`` reads as a
    hook call.
    """

    def __init__(self, runtimes: Sequence[tuple[str, Any]], own: Callable[[str, Any], Callable[..., Any]]) -> None:
        """Build the per-plugin callers once (the set of plugins does not change after loading)."""
        self.names = [name for name, _ in runtimes]
        self._launch = [(name, own("crane_step_launch", obj)) for name, obj in runtimes]
        self._callers: dict[str, dict[str, Callable[..., Any]]] = {
            name: {hook: own(hook, obj) for hook in STEP_HOOKS} for name, obj in runtimes}

    def crane_step_launch(self, step: StepSpec) -> StepHandle | None:
        """Ask each runtime in configured order; the first handle returned is stamped with its plugin's name.

        Returns ``None`` when no runtime claims the step; a plugin's
        :class:`~crane_kernel.errors.StepLaunchError` propagates.
        """
        for name, launch in self._launch:
            handle = launch(step=step)
            if handle is None:
                continue
            if not isinstance(handle, StepHandle):
                raise PluginError(f"runtime plugin {name!r} returned a {type(handle).__name__} from "
                                  "crane_step_launch, not a StepHandle")
            handle.runtime = name
            return handle
        return None

    def _owner(self, hook: str, handle: StepHandle) -> Callable[..., Any]:
        callers = self._callers.get(handle.runtime)
        if callers is None:
            raise PluginError(f"the step handle of job {handle.spec.job_id} belongs to runtime "
                              f"{handle.runtime!r}, which is not loaded (loaded: {', '.join(self.names) or 'none'})")
        return callers[hook]

    def crane_step_wait(self, handle: StepHandle, timeout: float | None) -> int | None:
        """The owner's ``crane_step_wait``: raw exit code once the main process ended, else ``None``."""
        return self._owner("crane_step_wait", handle)(handle=handle, timeout=timeout)

    def crane_step_signal(self, handle: StepHandle, signum: int, all_processes: bool) -> bool | None:
        """The owner's ``crane_step_signal``."""
        return self._owner("crane_step_signal", handle)(handle=handle, signum=signum, all_processes=all_processes)

    def crane_step_suspend(self, handle: StepHandle) -> bool | None:
        """The owner's ``crane_step_suspend`` (``None``: it cannot suspend)."""
        return self._owner("crane_step_suspend", handle)(handle=handle)

    def crane_step_resume(self, handle: StepHandle) -> bool | None:
        """The owner's ``crane_step_resume``."""
        return self._owner("crane_step_resume", handle)(handle=handle)

    def crane_step_usage(self, handle: StepHandle) -> StepUsage | None:
        """The owner's ``crane_step_usage``."""
        return self._owner("crane_step_usage", handle)(handle=handle)

    def crane_step_cleanup(self, handle: StepHandle) -> bool | None:
        """The owner's ``crane_step_cleanup``."""
        return self._owner("crane_step_cleanup", handle)(handle=handle)
