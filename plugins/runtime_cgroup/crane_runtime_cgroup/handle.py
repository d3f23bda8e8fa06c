"""The handle of a step launched by the cgroup runtime."""

from __future__ import annotations

from dataclasses import dataclass

from crane_kernel.runtime import StepHandle

RUNTIME_NAME = "cgroup"


@dataclass
class CgroupStepHandle(StepHandle):
    """A step running in a job cgroup.

    ``pid`` is the task's main process, which leads its own session and
    process group. ``version``/``root``/``cgroup`` locate the job cgroup
    (``cgroup`` is relative to the hierarchy root(s)), so any instance of the
    plugin can act on the handle. ``exit_code`` caches the raw exit code once
    the main process has been reaped; ``cleaned`` is set by cleanup. A task step's handle has
    ``cgroup`` = its step cgroup (``job_<id>/step_<s>``) and ``job_cgroup`` = the job's.
    """

    version: str = ""
    root: str = ""
    cgroup: str = ""
    exit_code: int | None = None
    cleaned: bool = False
    job_cgroup: str = ""
