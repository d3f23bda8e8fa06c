"""Job states and exit codes, with CraneSched's names and raw values."""

from __future__ import annotations

from enum import IntEnum


class JobState(IntEnum):
    """``JobStatus`` of the public API (same numbers as upstream CraneSched)."""

    Pending = 0
    Running = 1
    Completed = 2
    Failed = 3
    ExceedTimeLimit = 4
    Cancelled = 5
    OutOfMemory = 6
    Configuring = 7
    Starting = 8
    Completing = 9
    Suspended = 10
    Deadline = 11
    Invalid = 15


ACTIVE_STATES = frozenset({JobState.Pending, JobState.Running, JobState.Configuring,
                           JobState.Starting, JobState.Completing, JobState.Suspended})
FINAL_STATES = frozenset({JobState.Completed, JobState.Failed, JobState.ExceedTimeLimit,
                          JobState.Cancelled, JobState.OutOfMemory, JobState.Deadline})

# Raw exit-code encoding: 0-255 exit status, 256+N killed by signal N, 320+ Crane codes.
SIGNAL_BASE = 256
CRANE_CODE_BASE = 320
EC_TERMINATED = 320
EC_PERMISSION_DENIED = 321
EC_CGROUP_ERR = 322
EC_FILE_NOT_FOUND = 323
EC_SPAWN_FAILED = 324
EC_EXCEED_TIME_LIMIT = 325
EC_CRANED_DOWN = 326
EC_EXEC_ERR = 327
EC_RPC_ERR = 328
EC_CONTAINER_ERR = 329  # the container runtime could not run the job's container (image missing, runtime down, ...)

CRANE_CODE_NAMES = {
    EC_TERMINATED: "Terminated",
    EC_PERMISSION_DENIED: "Permission Denied",
    EC_CGROUP_ERR: "Cgroup Error",
    EC_FILE_NOT_FOUND: "File Not Found",
    EC_SPAWN_FAILED: "Spawn Process Failed",
    EC_EXCEED_TIME_LIMIT: "Exceeded Time Limit",
    EC_CRANED_DOWN: "Crane Daemon Down",
    EC_EXEC_ERR: "Execution Error",
    EC_RPC_ERR: "RPC Failure",
    EC_CONTAINER_ERR: "Container Runtime Error",
}


def format_exit_code(raw: int) -> str:
    """Render a raw exit code the way ``cacct`` does: ``<code>:0`` or ``0:<signal or crane code>``."""
    if raw < SIGNAL_BASE:
        return f"{raw}:0"
    return f"0:{raw - SIGNAL_BASE}"


def state_from_exit(raw: int, oom: bool = False) -> JobState:
    """The final state a job reaches when its script ends with ``raw``."""
    if oom:
        return JobState.OutOfMemory
    if raw == EC_EXCEED_TIME_LIMIT:
        return JobState.ExceedTimeLimit
    if raw == EC_TERMINATED:
        return JobState.Cancelled
    return JobState.Completed if raw == 0 else JobState.Failed
