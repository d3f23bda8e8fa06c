"""What the jobs of one limited QoS use: the counters and the index of blocked jobs (:class:`QosUsage`).

:mod:`crane_kernel.ctld.limits` keeps one per QoS that limits something and decides with them;
see its docstring for when the counters change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crane_kernel.sched_types import REASON_QOS_CPU, REASON_QOS_JOBS, REASON_QOS_WALL

if TYPE_CHECKING:
    from crane_kernel.ctld.acctmodel import Qos

__all__ = ["ALL_JOBS", "EPS", "LIMIT_REASONS", "STATIC", "QosUsage", "bump", "has_limits", "job_cpus"]

LIMIT_REASONS = frozenset({REASON_QOS_JOBS, REASON_QOS_CPU, REASON_QOS_WALL})
EPS = 1e-9
STATIC = ("s",)  # the group of jobs over a per-job limit: they wait until the limit or the job changes
ALL_JOBS = ("q",)


def has_limits(q: Qos) -> bool:
    """True when ``q`` limits anything this module enforces."""
    return any(v is not None for v in (
        q.max_jobs_per_user, q.max_jobs_per_account, q.max_jobs, q.max_submit_jobs_per_user,
        q.max_submit_jobs_per_account, q.max_submit_jobs, q.max_cpus_per_user, q.per_job_time_cap))


def job_cpus(job: Any) -> float:
    """The CPUs a job holds in all (its nodes times its CPUs per node)."""
    return float(job.cpus_per_node) * int(job.node_num)


def bump(d: dict, key: Any, by: float) -> float:
    """Add ``by`` to ``d[key]``; a count that drops to zero is removed. Returns the new value."""
    v = d.get(key, 0) + by
    if v > EPS:
        d[key] = v
    else:
        d.pop(key, None)
        v = 0
    return v


class QosUsage:
    """What the jobs of one limited QoS use, and which of its pending jobs its limits block."""

    __slots__ = ("qos", "submitted", "sub_user", "sub_acct", "running", "run_user", "run_acct", "cpus_user",
                 "pend_user", "pend_acct", "pend_all", "blocked", "blocked_by")

    def __init__(self, qos: Qos) -> None:
        self.qos = qos
        self.submitted: set[int] = set()
        self.sub_user: dict[str, int] = {}
        self.sub_acct: dict[str, int] = {}
        self.running: set[int] = set()
        self.run_user: dict[str, int] = {}
        self.run_acct: dict[str, int] = {}
        self.cpus_user: dict[str, float] = {}
        self.pend_user: dict[str, set[int]] = {}   # pending jobs the view keeper has seen, by user
        self.pend_acct: dict[str, set[int]] = {}
        self.pend_all: set[int] = set()
        self.blocked: dict[int, tuple] = {}        # job id -> the group that blocks it
        self.blocked_by: dict[tuple, set[int]] = {}

    def free(self, group: tuple) -> float:
        """How many more jobs (CPUs for a CPU group) the group's limit allows now; inf without a limit."""
        q = self.qos
        kind = group[0]
        if kind == "u":
            lim, used = q.max_jobs_per_user, self.run_user.get(group[1], 0)
        elif kind == "a":
            lim, used = q.max_jobs_per_account, self.run_acct.get(group[1], 0)
        elif kind == "q":
            lim, used = q.max_jobs, len(self.running)
        elif kind == "c":
            lim, used = q.max_cpus_per_user, self.cpus_user.get(group[1], 0.0)
        else:
            return 0.0  # a per-job limit: no count frees it
        return float("inf") if lim is None else lim - used

    # -- the index of pending jobs and of blocked ones ---------------------------------------
    def index(self, job: Any) -> None:
        """Note a pending job the view keeper looked at (by user, by account)."""
        jid = job.job_id
        if jid in self.pend_all:
            return
        self.pend_all.add(jid)
        self.pend_user.setdefault(job.user, set()).add(jid)
        self.pend_acct.setdefault(job.account, set()).add(jid)

    def unindex(self, job: Any) -> None:
        """Forget a job that is no longer pending (and any block on it)."""
        jid = job.job_id
        if jid not in self.pend_all:
            return
        self.pend_all.discard(jid)
        for d, key in ((self.pend_user, job.user), (self.pend_acct, job.account)):
            s = d.get(key)
            if s is not None:
                s.discard(jid)
                if not s:
                    del d[key]
        self.unblock(jid)

    def block(self, jid: int, group: tuple) -> None:
        """File a pending job under the group whose limit keeps it out of the view."""
        old = self.blocked.get(jid)
        if old == group:
            return
        if old is not None:
            self.unblock(jid)
        self.blocked[jid] = group
        self.blocked_by.setdefault(group, set()).add(jid)

    def unblock(self, jid: int) -> None:
        """The job is no longer kept out by this QoS."""
        group = self.blocked.pop(jid, None)
        if group is not None:
            s = self.blocked_by.get(group)
            if s is not None:
                s.discard(jid)
                if not s:
                    del self.blocked_by[group]

    # -- the rule ------------------------------------------------------------------------------
    def check(self, job: Any) -> tuple[str, tuple] | None:
        """Why ``job`` may not start now under this QoS, and the group that blocks it; None when it may."""
        q = self.qos
        cap = q.per_job_time_cap
        if cap is not None and (job.time_limit or float("inf")) > cap:
            return REASON_QOS_WALL, STATIC
        cpus = job_cpus(job)
        mc = q.max_cpus_per_user
        if mc is not None and cpus > mc + EPS:
            return REASON_QOS_CPU, STATIC
        if q.max_jobs_per_user is not None and self.run_user.get(job.user, 0) >= q.max_jobs_per_user:
            return REASON_QOS_JOBS, ("u", job.user)
        if q.max_jobs_per_account is not None and self.run_acct.get(job.account, 0) >= q.max_jobs_per_account:
            return REASON_QOS_JOBS, ("a", job.account)
        if q.max_jobs is not None and len(self.running) >= q.max_jobs:
            return REASON_QOS_JOBS, ALL_JOBS
        if mc is not None and self.cpus_user.get(job.user, 0.0) + cpus > mc + EPS:
            return REASON_QOS_CPU, ("c", job.user)
        return None
