"""QoS limits: usage counters kept incrementally, checks at submission, at schedule time and at commit.

The account database (``ctld/accounts.py``, the ``AccountBook``) holds the
:class:`~crane_kernel.ctld.acctmodel.Qos` records; this module enforces their limits when
``Accounting.Enforce`` lists ``limits`` (docs/limits.md). It needs only three things of the
book: ``qos_of(name)``, ``enforce`` and ``listeners`` (called with ``(kind, name)`` after every
committed change).

Counters, per QoS that has a limit (a job whose QoS is ``""``, unknown or without limits costs one
dict lookup): jobs submitted (pending + running; ``MaxSubmit*``) per user, per account and in all;
jobs running and CPUs running (``MaxJobs*``, ``MaxCpusPerUser``). "Running" means *holding
resources*: the counters follow the controller's ``_allocate``/``_free`` (:class:`LimitsMixin`), so
a lost job whose resources are held still counts until they are released. "Submitted" follows
acceptance (:meth:`LimitBook.accepted`) and the job's end (:meth:`LimitBook.ended`, from
``_finish``). Every change is idempotent (the job ids counted are kept), and the whole state is
rebuilt from the job tables at recovery (:meth:`LimitBook.rebuild`) and for one QoS when the book
says it changed.

Schedule time: the view keeper asks :meth:`LimitBook.gate` about every pending job it looks at;
a job that may not start now because of its QoS gets a reason (``QosJobsResourceLimit``,
``QosCpuResourceLimit``, ``QosWallTimeLimit``) and stays out of the view, filed under the group
that blocks it (the user, the account, the whole QoS, or "static" for a per-job limit). When a
counter crosses its limit upwards, the group's pending jobs in the view are noted as changed (so
they leave it at the next sync); when it drops below, the group is *open* and, before the next
syncs, its best blocked jobs are let back in, a bounded number per cycle (:meth:`LimitBook.admit`).
Nothing is rescanned per cycle. The commit re-checks every planned start (:meth:`LimitBook.blocked_reason`)
against the live counters, which every start updates at once.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from crane_common.states import FINAL_STATES

from crane_kernel.ctld.qosusage import ALL_JOBS, EPS, LIMIT_REASONS, QosUsage, bump, has_limits, job_cpus
from crane_kernel.errors import AccountRejected

if TYPE_CHECKING:
    from crane_kernel.ctld.acctmodel import Qos
    from crane_kernel.ctld.jobs import Job
    from crane_kernel.ctld.nodes import NodeState

__all__ = ["LIMIT_REASONS", "LimitBook", "LimitsMixin", "QosUsage", "has_limits"]

log = logging.getLogger("cranectld")

# CraneSched's ErrCode numbers (crane.proto)
ERR_TIME_TIMIT_BEYOND = 46  # upstream's spelling
ERR_MAX_JOB_COUNT_PER_USER = 65
ERR_MAX_JOB_COUNT_PER_ACCOUNT = 97
ERR_QOS_JOB_COUNT_EXCEEDED = 100
ERR_TRES_PER_JOB_BEYOND = 104

class LimitBook:
    """The QoS limits of one controller (``ctl.limits``); inactive until :meth:`attach` gets a book enforcing them.

    Every method is called under the controller's lock, except the book's listener
    (:meth:`_on_change`), which only notes the QoS name: the work is done at the next use
    (:meth:`refresh`), so the book's own lock and the controller's are never nested.
    """

    ADMIT_MIN = 64       # blocked jobs let back into the view per group and cycle, at least
    ADMIT_PER_SLOT = 8   # ... and per free slot of the group

    def __init__(self, ctl: Any) -> None:
        self.ctl = ctl
        self.book: Any = None
        self.active = False               # "limits" in Accounting.Enforce
        self._uses: dict[str, QosUsage | None] = {}   # QoS name -> its usage (None: nothing to count)
        self._prio: dict[str, float | None] = {}      # QoS name -> its priority in the account DB
        self._dirty: set[str] = set()
        self._open: dict[tuple[str, tuple], None] = {}  # (QoS, group) below its limit with jobs to let back in

    # ------------------------------------------------------------------ the book
    def attach(self, book: Any) -> None:
        """Use ``book`` (``qos_of``, ``enforce``, ``listeners``) and count every active job against it."""
        with self.ctl.lock:
            self.book = book
            self.active = "limits" in (getattr(book, "enforce", None) or ())
            book.listeners.append(self._on_change)
            self.rebuild()

    def _on_change(self, kind: str, name: str) -> None:
        """The book's listener: a QoS changed (any thread; applied at the next :meth:`refresh`)."""
        if kind == "qos":
            self._dirty.add(name)
            self.ctl.wake.set()

    def refresh(self) -> None:
        """Apply the QoS changes the book announced since the last call (cheap when there are none)."""
        if not self._dirty:
            return
        names = set()
        while self._dirty:
            names.add(self._dirty.pop())
        self.rebuild(names)

    def _qos(self, name: str) -> Qos | None:
        if not name or self.book is None:
            return None
        return self.book.qos_of(name)

    def use(self, name: str) -> QosUsage | None:
        """The usage record of QoS ``name``, or None when its jobs cost nothing (no limits, not enforced)."""
        try:
            return self._uses[name]
        except KeyError:
            pass
        q = self._qos(name) if self.active else None
        u = QosUsage(q) if q is not None and has_limits(q) else None
        self._uses[name] = u
        return u

    def qos_priority(self, name: str) -> float | None:
        """The priority of QoS ``name`` in the account database, or None when it is not there."""
        try:
            return self._prio[name]
        except KeyError:
            pass
        q = self._qos(name)
        p = float(q.priority) if q is not None else None
        self._prio[name] = p
        return p

    def rebuild(self, names: Iterable[str] | None = None) -> None:
        """Recount from the job tables: every QoS (``names`` None: recovery, attach) or the named ones.

        The pending jobs concerned are noted as changed, so the next view sync gates them again
        (jobs a QoS no longer limits come back into the view, newly limited ones leave it).
        """
        ctl = self.ctl
        only = None if names is None else set(names)
        if only is None:
            self._uses.clear()
            self._prio.clear()
            self._open.clear()
        else:
            for n in only:
                self._uses.pop(n, None)
                self._prio.pop(n, None)
            for key in [k for k in self._open if k[0] in only]:
                del self._open[key]
        changed = ctl.keeper.pending_changed
        running = ctl.running
        for job in ctl.jobs.values():
            if (only is not None and job.qos not in only) or job.state in FINAL_STATES:
                continue
            job.qos_priority = self.qos_priority(job.qos)
            use = self.use(job.qos)
            if use is not None:
                self._count_submitted(use, job)
                if job.job_id in running:
                    self._count_running(use, job)
            if job.job_id in ctl.pending:
                changed.add(job.job_id)
        for job in running.values():  # ended jobs whose resources are still held count as running
            if job.state in FINAL_STATES and (only is None or job.qos in only):
                use = self.use(job.qos)
                if use is not None:
                    self._count_running(use, job)
        if only is not None:
            log.info("QoS %s changed: usage recounted", ", ".join(sorted(only)))
        ctl.keeper.priorities_changed()

    # ------------------------------------------------------------------ counters
    @staticmethod
    def _count_submitted(use: QosUsage, job: Any) -> None:
        if job.job_id in use.submitted:
            return
        use.submitted.add(job.job_id)
        bump(use.sub_user, job.user, 1)
        bump(use.sub_acct, job.account, 1)

    @staticmethod
    def _count_running(use: QosUsage, job: Any) -> None:
        if job.job_id in use.running:
            return
        use.running.add(job.job_id)
        bump(use.run_user, job.user, 1)
        bump(use.run_acct, job.account, 1)
        bump(use.cpus_user, job.user, job_cpus(job))

    def accepted(self, job: Job) -> str:
        """A job was accepted (under the lock, before it is queued): count it; return its limit reason or ""."""
        job.qos_priority = self.qos_priority(job.qos)
        use = self.use(job.qos)
        if use is None:
            return ""
        self._count_submitted(use, job)
        why = use.check(job)
        return why[0] if why else ""

    def started(self, job: Job) -> None:
        """A job took its resources: count it running; the pending jobs of a group now full must leave the view."""
        use = self.use(job.qos)
        if use is None or job.job_id in use.running:
            return
        self._count_running(use, job)
        q = use.qos
        changed = self.ctl.keeper.pending_changed
        blocked = use.blocked

        def mark(ids: set[int] | None) -> None:  # the group's jobs not blocked already (those in the view)
            if ids:
                changed.update(ids.difference(blocked) if blocked else ids)

        user, acct = job.user, job.account
        if q.max_jobs_per_user is not None and use.run_user.get(user, 0) == q.max_jobs_per_user:
            mark(use.pend_user.get(user))
        if q.max_jobs_per_account is not None and use.run_acct.get(acct, 0) == q.max_jobs_per_account:
            mark(use.pend_acct.get(acct))
        if q.max_jobs is not None and len(use.running) == q.max_jobs:
            mark(use.pend_all)
        if q.max_cpus_per_user is not None:
            mark(use.pend_user.get(user))  # any of them may no longer fit in what is left

    def stopped(self, job: Job) -> None:
        """A job gave its resources back: the jobs blocked by a group now below its limit are looked at again."""
        use = self.use(job.qos)
        if use is None or job.job_id not in use.running:
            return
        use.running.discard(job.job_id)
        user, acct = job.user, job.account
        bump(use.run_user, user, -1)
        bump(use.run_acct, acct, -1)
        bump(use.cpus_user, user, -job_cpus(job))
        if not use.blocked_by:
            return
        q = use.qos
        by = use.blocked_by
        groups = (("u", user), ("a", acct), ALL_JOBS, ("c", user))
        for group, lim in zip(groups, (q.max_jobs_per_user, q.max_jobs_per_account, q.max_jobs,
                                       q.max_cpus_per_user), strict=True):
            if lim is not None and group in by and use.free(group) > 0:
                self._open[(job.qos, group)] = None  # let its best jobs back in at the next cycle (admit)
        if self._open:
            self.ctl.wake.set()

    def admit(self, now: float) -> None:
        """Before the view sync: let the best blocked jobs of the groups now below their limit back in.

        At most ``max(ADMIT_MIN, ADMIT_PER_SLOT * free slots)`` per group and cycle, the highest
        first by the priority plugin (called for them here), so a job end in a group with 10,000
        blocked jobs does not put all of them through the view and the scheduler. A group that
        stays below its limit lets the next ones in at the next cycle, until none is left or it
        is full again (then the admitted ones leave).
        """
        if not self._open:
            return
        ctl = self.ctl
        pending = ctl.pending
        changed = ctl.keeper.pending_changed
        for key in list(self._open):
            name, group = key
            use = self._uses.get(name)
            ids = use.blocked_by.get(group) if use is not None else None
            free = use.free(group) if ids else 0.0
            if free <= 0:
                del self._open[key]
                continue
            cands = [j for j in map(pending.get, ids) if j is not None
                     and (group[0] != "c" or job_cpus(j) <= free + EPS)]
            room = max(self.ADMIT_MIN, int(min(free, 1 << 20)) * self.ADMIT_PER_SLOT)
            if len(cands) <= room:
                changed.update(j.job_id for j in cands)
                del self._open[key]
                continue
            prios = ctl.pm.hook.crane_job_priorities(jobs=cands, view=ctl.keeper.view, now=now) or [0.0] * len(cands)
            order = [(-(j.pinned_priority if j.pinned_priority is not None else float(p)), j.submit_time, j.job_id)
                     for j, p in zip(cands, prios, strict=True)]
            changed.update(t[2] for t in heapq.nsmallest(room, order))

    def ended(self, job: Job) -> None:
        """A job reached a final state (``_finish``): it no longer counts as submitted."""
        use = self.use(job.qos)
        if use is None or job.job_id not in use.submitted:
            return
        use.submitted.discard(job.job_id)
        bump(use.sub_user, job.user, -1)
        bump(use.sub_acct, job.account, -1)
        use.unindex(job)

    # ------------------------------------------------------------------ checks
    def default_time_limit(self, spec: dict) -> None:
        """Give a job that asked for no time limit its QoS's per-job cap, when that is lower (Slurm's rule).

        Without this, a job of a QoS with ``MaxTimeLimitPerJob``/``MaxWall`` on a partition without a
        default limit would wait for ever with ``QosWallTimeLimit``.
        """
        use = self.use(spec.get("qos") or "")
        cap = use.qos.per_job_time_cap if use is not None else None
        if cap is not None and not 0 < int(spec.get("time_limit") or 0) <= cap:
            spec["time_limit"] = cap

    def check_submit(self, specs: list[dict]) -> None:
        """Refuse a submission (all its jobs together) that a QoS limit forbids; raises :class:`AccountRejected`.

        Per job: a time limit above the QoS's per-job cap or more CPUs than ``MaxCpusPerUser``
        are refused only with ``DenyOnLimit`` (otherwise the job waits with the reason). Per
        call: the ``MaxSubmit*`` counts with every job of the call added.
        """
        if not self.active:
            return
        self.refresh()
        per_user: dict[tuple[str, str], int] = {}
        per_acct: dict[tuple[str, str], int] = {}
        per_qos: dict[str, int] = {}
        for spec in specs:
            qname = spec.get("qos") or ""
            use = self.use(qname)
            if use is None:
                continue
            q = use.qos
            if q.deny_on_limit:
                cap = q.per_job_time_cap
                tl = int(spec.get("time_limit") or 0)
                if cap is not None and (tl or float("inf")) > cap:
                    shown = f"{tl} s" if tl else "unlimited"
                    raise AccountRejected(f"time limit {shown} exceeds the per-job maximum of {cap} s of QoS "
                                          f"'{qname}' (MaxTimeLimitPerJob/MaxWall, DenyOnLimit)", ERR_TIME_TIMIT_BEYOND)
                cpus = float(spec["cpus_per_node"]) * int(spec["node_num"])
                if q.max_cpus_per_user is not None and cpus > q.max_cpus_per_user + EPS:
                    raise AccountRejected(f"the job's {cpus:g} CPUs exceed MaxCpusPerUser {q.max_cpus_per_user:g} "
                                          f"of QoS '{qname}' (DenyOnLimit)", ERR_TRES_PER_JOB_BEYOND)
            user, acct = spec["user"], spec.get("account") or ""
            per_user[(qname, user)] = per_user.get((qname, user), 0) + 1
            per_acct[(qname, acct)] = per_acct.get((qname, acct), 0) + 1
            per_qos[qname] = per_qos.get(qname, 0) + 1
        for (qname, user), n in per_user.items():
            use = self.use(qname)
            lim = use.qos.max_submit_jobs_per_user
            have = use.sub_user.get(user, 0)
            if lim is not None and have + n > lim:
                raise AccountRejected(f"QoS '{qname}' allows user {user} {lim} submitted jobs "
                                      f"(MaxSubmitJobsPerUser); {have} are pending or running, "
                                      f"{n} more would exceed it",
                                      ERR_MAX_JOB_COUNT_PER_USER)
        for (qname, acct), n in per_acct.items():
            use = self.use(qname)
            lim = use.qos.max_submit_jobs_per_account
            have = use.sub_acct.get(acct, 0)
            if lim is not None and have + n > lim:
                raise AccountRejected(f"QoS '{qname}' allows account {acct or '(none)'} {lim} submitted jobs "
                                      f"(MaxSubmitJobsPerAccount); {have} are pending or running, "
                                      f"{n} more would exceed it",
                                      ERR_MAX_JOB_COUNT_PER_ACCOUNT)
        for qname, n in per_qos.items():
            use = self.use(qname)
            lim = use.qos.max_submit_jobs
            have = len(use.submitted)
            if lim is not None and have + n > lim:
                raise AccountRejected(f"QoS '{qname}' allows {lim} submitted jobs in all (MaxSubmitJobs); "
                                      f"{have} are pending or running, {n} more would exceed it",
                                      ERR_QOS_JOB_COUNT_EXCEEDED)

    def blocked_reason(self, job: Job) -> str | None:
        """Why ``job`` may not start now under its QoS's limits (live counters), or None (the commit's re-check)."""
        use = self.use(job.qos)
        if use is None:
            return None
        why = use.check(job)
        return why[0] if why else None

    def gate(self, job: Any, present: bool, eligible: bool) -> str | None:
        """The view keeper's question about a pending job it looks at: a limit reason keeps it out.

        ``present``: the job is still pending (else it left: forget it); ``eligible``: no other
        rule keeps it out. Files a blocked job under the group that blocks it; a job that may start
        again loses its limit reason.
        """
        use = self.use(job.qos)
        if use is None:
            if present and eligible and job.reason in LIMIT_REASONS:
                job.reason = ""
            return None
        if not present:
            use.unindex(job)
            return None
        use.index(job)
        why = use.check(job) if eligible else None
        if why is None:
            use.unblock(job.job_id)
            if eligible and job.reason in LIMIT_REASONS:
                job.reason = ""
            return None
        use.block(job.job_id, why[1])
        return why[0]

    def modify_time_refusal(self, job: Job, time_limit: int) -> str | None:
        """Why a job's time limit may not become ``time_limit`` (its QoS's per-job cap, for everyone), or None."""
        if not self.active:
            return None
        self.refresh()
        use = self.use(job.qos)
        cap = use.qos.per_job_time_cap if use is not None else None
        if cap is not None and time_limit > cap:
            return (f"time limit {time_limit} s exceeds the per-job maximum of {cap} s of QoS '{job.qos}' "
                    "(MaxTimeLimitPerJob/MaxWall)")
        return None

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per limited QoS: jobs submitted, running, pending jobs seen and blocked (for tests and diagnostics)."""
        return {name: {"submitted": len(u.submitted), "running": len(u.running), "pending": len(u.pend_all),
                       "blocked": len(u.blocked)}
                for name, u in self._uses.items() if u is not None}


class LimitsMixin:
    """Keeps ``ctl.limits`` counting running jobs at the one place resources are taken and given back.

    Listed before :class:`~crane_kernel.ctld.resources.ResourcesMixin` in the controller's bases,
    so every allocation (a start, recovery, a restored held allocation) and every release (an end,
    a requeue, a held allocation released) passes here.
    """

    def _allocate(self, job: Job, nodes: list[NodeState], record: bool = True) -> None:
        super()._allocate(job, nodes, record)  # type: ignore[misc]
        self.limits.started(job)  # type: ignore[attr-defined]

    def _free(self, job: Job) -> None:
        was = job.job_id in self.running  # type: ignore[attr-defined]
        super()._free(job)  # type: ignore[misc]
        if was:
            self.limits.stopped(job)  # type: ignore[attr-defined]
