"""crane-runtime-cgroup: the ``cgroup`` runtime plugin of cranesched.

It runs every step's task in a per-job cgroup ``<prefix>/<node>/job_<id>``
(cgroup v1 or v2, detected or configured) with CPU quota, cpuset, memory,
pids and device limits, as the job's user. Entry point: ``crane.runtime`` ->
``cgroup`` = :class:`CgroupRuntime`.
"""

from crane_runtime_cgroup.errors import CgroupError
from crane_runtime_cgroup.handle import CgroupStepHandle
from crane_runtime_cgroup.plugin import CgroupRuntime
from crane_runtime_cgroup.stale import cleanup_stale

__all__ = ["CgroupError", "CgroupRuntime", "CgroupStepHandle", "cleanup_stale"]
