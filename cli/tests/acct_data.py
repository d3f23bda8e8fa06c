"""Canned jobs for the cacct/ceff tests: what the controller holds and what its accounting store has.

Times are fixed local times (2024-01-0X), so the interval filters can be checked exactly.
"""

from __future__ import annotations

import time

from crane_common.proto import crane_pb2 as pb
from fakectld import make_jobs

GIB, MIB = 1 << 30, 1 << 20


def t(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Unix seconds of 2024-01-<day> <hour>:<minute>:<second> local time."""
    return int(time.mktime((2024, 1, day, hour, minute, second, 0, 0, -1)))


def ended(job_id: int, status: int, exit_code: int, day: int, **kw) -> pb.JobInfo:
    """An ended job submitted, started and ended on 2024-01-<day> (10:00, 10:01, 10:01 + elapsed)."""
    start = t(day, 10, 1)
    elapsed = kw.pop("elapsed", 100)
    fields = dict(job_id=job_id, name=f"acct{job_id}", user="alice", uid=1000, gid=1000, account="physics",
                  partition="CPU", qos="normal", status=status, type=pb.Batch, time_limit=3600,
                  submit_time=t(day, 10), start_time=start, end_time=start + elapsed, elapsed=elapsed, node_num=1,
                  req_cpus=2, cpus_per_task=2, req_mem_per_node=GIB, alloc_cpus=2, alloc_mem_per_node=GIB,
                  craned_list="cn01", exit_code=exit_code, priority=10)
    fields.update(kw)
    return pb.JobInfo(**fields)


def step(job_id: int, step_id: int, name: str, status: int, exit_code: int = 0, **kw) -> pb.StepInfo:
    """A step of ``job_id``."""
    return pb.StepInfo(job_id=job_id, step_id=step_id, name=name, status=status, exit_code=exit_code,
                       craned_list="cn01", node_num=1, alloc_cpus=kw.pop("alloc_cpus", 1), **kw)


def controller_jobs() -> list[pb.JobInfo]:
    """Jobs 1-4 (pending, running, running, pending) and job 5, ended a moment ago, still held by the controller."""
    jobs = make_jobs(4)
    jobs.append(ended(5, pb.Completed, 0, 5))
    return jobs


def history_jobs() -> list[pb.JobInfo]:
    """The accounting store: 100 (with three steps, listed out of order), 101-104 ended in several ways."""
    j100 = ended(100, pb.Completed, 0, 2, usage_cpu_ms=150_000, usage_mem_peak=256 * MIB)
    j100.step_info_list.extend([
        step(100, 2, "post", pb.Completed, 1),
        step(100, 0, "batch", pb.Completed, 0, alloc_cpus=2),
        step(100, 1, "solver", pb.Failed, 265),  # killed by signal 9
    ])
    return [
        ended(101, pb.Failed, 1, 3, user="bob", uid=1001, account="chem", partition="GPU", qos="high",
              craned_list="cn07"),
        j100,
        ended(102, pb.Cancelled, 320, 4),           # terminated (Crane code 64)
        ended(103, pb.ExceedTimeLimit, 325, 4),     # exceeded its time limit (Crane code 69)
        ended(104, pb.OutOfMemory, 265, 6),
    ]
