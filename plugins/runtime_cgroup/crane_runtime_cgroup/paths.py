"""Naming of the job cgroups: ``<prefix>/<node>/job_<job_id>`` relative to each hierarchy."""

from __future__ import annotations

from crane_runtime_cgroup.errors import CgroupError

JOB_DIR_PREFIX = "job_"
STEP_DIR_PREFIX = "step_"


def node_cgroup_path(prefix: str, node: str) -> str:
    """The relative cgroup path holding a node's jobs, ``<prefix>/<node>``; validated against escapes."""
    prefix = prefix.strip("/")
    for part in prefix.split("/"):
        if part in ("", ".", ".."):
            raise CgroupError(f"invalid cgroup prefix {prefix!r}")
    if not node or "/" in node or node in (".", ".."):
        raise CgroupError(f"invalid node name for a cgroup path: {node!r}")
    return f"{prefix}/{node}"


def job_cgroup_path(prefix: str, node: str, job_id: int) -> str:
    """The relative cgroup path of one job on one node, ``<prefix>/<node>/job_<job_id>``."""
    return f"{node_cgroup_path(prefix, node)}/{JOB_DIR_PREFIX}{int(job_id)}"


def step_cgroup_path(prefix: str, node: str, job_id: int, step_id: int) -> str:
    """The relative cgroup path of a task step, below its job's: ``.../job_<job_id>/step_<step_id>``."""
    return f"{job_cgroup_path(prefix, node, job_id)}/{STEP_DIR_PREFIX}{int(step_id)}"


def format_cpu_list(cpu_ids: list[int]) -> str:
    """Render CPU ids in the kernel's list format, e.g. ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    from crane_common.hostlist import format_ranges

    return format_ranges(cpu_ids)
