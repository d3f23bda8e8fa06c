"""The controller's side of accounting: cacct's history queries and the fair-share rebuild.

The accounting plugin (``Plugins.Accounting``, the ``crane_history_query`` hook) holds the ended
jobs the event plugins wrote; the controller still has its pending and running jobs and those
ended within ``FinishedJobRetention``. ``QueryJobsInfo`` with ``include_history`` merges both
(:func:`fetch_history`): for a job id the controller knows, its own copy wins. The store is
asked outside the controller's lock.

Privacy: with ``PrivateData: jobs`` a plain user's query is narrowed *before* it reaches the
store (:func:`narrowed`): to her own jobs, plus the jobs of the accounts she coordinates; so
other users' rows never leave the store. The replies are then filtered by ``job.view`` as the
in-memory jobs are.

At start-up (:func:`rebuild_usage`) ended jobs of the last :data:`USAGE_WINDOW` seconds that the
journal no longer has are fed to ``crane_job_finished``, newest first up to :data:`USAGE_CAP`
jobs, then replayed oldest first: fair share survives the journal's retention (or its loss).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from crane_common.hostlist import compress
from crane_common.proto import crane_pb2 as pb
from crane_common.states import JobState

from crane_kernel.auth_types import Identity
from crane_kernel.history import HistoryQuery

if TYPE_CHECKING:
    from crane_kernel.ctld.jobs import Job
    from crane_kernel.events import JobRecord

log = logging.getLogger("cranectld")

USAGE_WINDOW = 30 * 86400.0   # ended jobs of the last 30 days rebuild fair-share usage (4+ default half-lives)
USAGE_CAP = 200_000           # at most this many jobs from the history at start-up (the newest)
USAGE_SLICE = 86400.0         # asked one day at a time, newest first
MAX_ROUNDS = 8                # a page is asked again (twice as long) at most this often


class HistoryUnavailable(Exception):  # noqa: N818
    """The accounting store failed; the reply says why on one line."""


def _state(name: str) -> int:
    try:
        return int(JobState[name])
    except KeyError:
        return int(JobState.Invalid)


def in_range(value: float, rng: tuple[float, float]) -> bool:
    """``rng`` is ``(lower, upper)``, inclusive, 0 = open; a range set on either side needs ``value`` > 0."""
    lo, hi = rng
    if not lo and not hi:
        return True
    return value > 0 and (not lo or value >= lo) and (not hi or value <= hi)


def time_ranges(request: Any) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    """The submit, start and end ranges of a ``QueryJobsInfoRequest``."""
    def rng(field: str) -> tuple[float, float]:
        if not request.HasField(field):
            return (0.0, 0.0)
        r = getattr(request, field)
        return (float(max(0, r.lower)), float(max(0, r.upper)))
    return rng("filter_submit_time"), rng("filter_start_time"), rng("filter_end_time")


def query_from_request(request: Any, states: Iterable[JobState] | None) -> HistoryQuery:
    """The :class:`HistoryQuery` of a ``QueryJobsInfoRequest`` (``states`` None: every state)."""
    submit, start, end = time_ranges(request)
    return HistoryQuery(
        job_ids=sorted(set(request.job_ids)), names=sorted(set(request.names)), users=sorted(set(request.users)),
        accounts=sorted(set(request.accounts)), partitions=sorted(set(request.partitions)),
        qos=sorted(set(request.qos)), states=sorted(s.name for s in states) if states is not None else [],
        nodes=sorted(set(request.nodes)), submit_time=submit, start_time=start, end_time=end,
        max_lines=int(request.max_lines or 0), include_steps=bool(request.include_steps))


def narrowed(query: HistoryQuery, ident: Identity, private_jobs: bool) -> list[HistoryQuery]:
    """The queries the store is asked for ``ident``: the query itself, or (PrivateData jobs, a plain user)
    one for her own jobs and one for the accounts she coordinates (none when she asked for others only)."""
    if not private_jobs or ident.is_admin:
        return [query]
    out = []
    if not query.users or ident.user in query.users:
        out.append(dataclasses.replace(query, users=[ident.user]))
    if ident.coordinated:
        accounts = [a for a in (query.accounts or sorted(ident.coordinated)) if a in ident.coordinated]
        if accounts:
            out.append(dataclasses.replace(query, accounts=accounts))
    return out


def fetch_history(call: Callable[[HistoryQuery], Sequence[JobRecord] | None], queries: Sequence[HistoryQuery],
                  limit: int, known: set[int], memory_ids: Sequence[int]) -> list[JobRecord]:
    """The store's records for ``queries`` without the ids the controller ``known``s, merged by job id.

    With a ``limit``, enough of them that, merged with the controller's own matches
    (``memory_ids``, sorted), the first ``limit`` ids are right: a page from which the controller's
    copies were dropped is asked again, twice as long, until it is complete up to the limit.
    Raises :class:`HistoryUnavailable` when the store fails.
    """
    n = limit
    for _ in range(MAX_ROUNDS):
        got: dict[int, JobRecord] = {}
        complete_upto = math.inf  # every record with an id up to here has been seen
        for q in queries:
            try:
                rows = list(call(dataclasses.replace(q, max_lines=n)) or [])
            except Exception as exc:
                log.warning("the job history failed: %s: %s", type(exc).__name__, exc)
                raise HistoryUnavailable(" ".join(str(exc).split())[:500] or type(exc).__name__) from None
            if n and len(rows) >= n:
                complete_upto = min(complete_upto, rows[-1].job_id)
            for r in rows:
                if r.job_id not in known:
                    got.setdefault(r.job_id, r)
        records = sorted(got.values(), key=lambda r: r.job_id)
        if not limit or complete_upto == math.inf:
            return records
        have = sum(1 for i in memory_ids if i <= complete_upto) + sum(1 for r in records if r.job_id <= complete_upto)
        if have >= limit:
            return [r for r in records if r.job_id <= complete_upto]
        n *= 2
    return [r for r in records if r.job_id <= complete_upto]


def record_info(rec: Any, now: float, private: bool, private_fields: Sequence[str]) -> Any:
    """A store record as the public ``JobInfo``; ``private`` clears the fields others may not see."""
    info = pb.JobInfo(
        job_id=rec.job_id, name=rec.name, user=rec.user, uid=rec.uid, gid=rec.gid, account=rec.account,
        partition=rec.partition, qos=rec.qos, status=_state(rec.state), type=pb.Batch, time_limit=rec.time_limit,
        submit_time=int(rec.submit_time), start_time=int(rec.start_time), end_time=int(rec.end_time),
        node_num=rec.node_num, req_cpus=rec.cpus, req_mem_per_node=rec.mem_per_node, exit_code=rec.exit_code,
        comment=rec.comment, cwd=rec.cwd, usage_cpu_ms=rec.cpu_time_ms, usage_mem_peak=rec.mem_peak_bytes,
        requeue_count=int(getattr(rec, "requeue_count", 0) or 0))
    if rec.nodes:
        info.craned_list = rec.nodes[0] if len(rec.nodes) == 1 else compress(list(rec.nodes))
        info.alloc_cpus = rec.cpus
        info.alloc_mem_per_node = rec.mem_per_node
    if rec.reason:
        info.pending_reason = rec.reason
    if rec.start_time and rec.end_time:
        info.elapsed = max(0, int(rec.end_time - rec.start_time))
    elif rec.start_time and info.status == int(JobState.Running):
        info.elapsed = max(0, int(now - rec.start_time))
    if rec.gres:
        info.gres = ",".join(f"{k}:{v}" for k, v in rec.gres.items())
    if private:
        for name in private_fields:
            info.ClearField(name)
    return info


def record_steps(rec: Any) -> list[Any]:
    """A record's steps as ``StepInfo`` (its batch step made from the job when the store has none)."""
    steps = list(getattr(rec, "steps", None) or [])
    per_node = rec.cpus / max(1, rec.node_num)
    out = []
    for s in steps:
        nodes = list(s.nodes) or (list(rec.nodes[:1]) if s.step_id == 0 else [])
        out.append(pb.StepInfo(
            job_id=rec.job_id, step_id=s.step_id, name=s.name or ("batch" if s.step_id == 0 else ""),
            status=_state(s.state), exit_code=s.exit_code, start_time=int(s.start_time), end_time=int(s.end_time),
            craned_list=compress(nodes) if nodes else "", node_num=len(nodes) or 1,
            alloc_cpus=s.cpus or per_node * (len(nodes) or 1), usage_cpu_ms=s.cpu_time_ms,
            usage_mem_peak=s.mem_peak_bytes))
    if not steps and rec.start_time:
        head = list(rec.nodes[:1])
        out.append(pb.StepInfo(
            job_id=rec.job_id, step_id=0, name="batch", status=_state(rec.state), exit_code=rec.exit_code,
            start_time=int(rec.start_time), end_time=int(rec.end_time), craned_list=compress(head) if head else "",
            node_num=1, alloc_cpus=per_node, usage_cpu_ms=rec.cpu_time_ms, usage_mem_peak=rec.mem_peak_bytes))
    return out


def job_steps(job: Job, steps: list[Any] = (), now: float = 0.0) -> list[Any]:
    """An in-memory job's steps: a batch job's script (step 0) on its head node once it started, then
    the controller's step records (``steps``: crun's steps, an interactive job's step 0)."""
    out = []
    if job.start_time and not job.interactive:
        state = job.state if job.state != JobState.Configuring else JobState.Running
        head = [job.head_node] if job.head_node else []
        out.append(pb.StepInfo(
            job_id=job.job_id, step_id=0, name="batch", status=int(state), exit_code=job.exit_code,
            start_time=int(job.start_time), end_time=int(job.end_time), craned_list=compress(head) if head else "",
            node_num=1, alloc_cpus=job.cpus_per_node, usage_cpu_ms=job.usage_cpu_ms,
            usage_mem_peak=job.usage_mem_peak, ntasks=1, user=job.user, uid=job.uid, partition=job.partition,
            time_limit=job.time_limit, submit_time=int(job.submit_time),
            elapsed=max(0, int((job.end_time or now) - job.start_time)) if now or job.end_time else 0))
    out.extend(step_info(job, s, now) for s in steps if not (s.step_id == 0 and not job.interactive))
    return out


def step_info(job: Job, step: Any, now: float) -> Any:
    """One step record (ctld/steps.py ``Step``) as ``StepInfo``."""
    nodes = step.nodes or list(job.alloc_nodes)
    started = step.start_time
    return pb.StepInfo(
        job_id=job.job_id, step_id=step.step_id, name=step.name, status=int(step.state), exit_code=step.exit_code,
        start_time=int(started), end_time=int(step.end_time), craned_list=compress(nodes) if nodes else "",
        node_num=len(nodes), alloc_cpus=sum(step.cpus.values()) or job.cpus_per_node * job.node_num,
        usage_cpu_ms=step.usage_cpu_ms, usage_mem_peak=step.mem_peak, ntasks=step.ntasks,
        cmd_line=" ".join(step.argv)[:4096], user=job.user, uid=job.uid, partition=job.partition,
        time_limit=step.time_limit or job.time_limit, submit_time=int(step.submit_time),
        elapsed=max(0, int((step.end_time or now) - started)) if started and (now or step.end_time) else 0,
        reason=step.reason)


class _Ended:
    """An ended job of the history as ``crane_job_finished`` sees a job (the attributes it reads)."""

    __slots__ = ("job_id", "user", "account", "partition", "qos", "node_num", "cpus_per_node", "start_time",
                 "end_time", "state")

    def __init__(self, rec: Any) -> None:
        self.job_id, self.user, self.account = rec.job_id, rec.user, rec.account
        self.partition, self.qos, self.state = rec.partition, rec.qos, rec.state
        self.node_num = max(1, int(rec.node_num))
        self.cpus_per_node = float(rec.cpus) / self.node_num
        self.start_time, self.end_time = float(rec.start_time), float(rec.end_time)


def rebuild_usage(call: Callable[..., Any], finished: Callable[..., Any], skip: set[int], now: float) -> int:
    """Feed ``finished`` (``crane_job_finished``) the ended jobs of the history not in ``skip``; return how many.

    Asked one day at a time from ``now`` back over :data:`USAGE_WINDOW` (the ``end_time`` index),
    stopping at :data:`USAGE_CAP` jobs; fed oldest first. A store error is logged and ends the
    rebuild (the controller starts anyway, with the usage it has).
    """
    found: dict[int, Any] = {}
    hi = now
    lo_limit = now - USAGE_WINDOW
    try:
        while hi > lo_limit and len(found) < USAGE_CAP:
            lo = max(lo_limit, hi - USAGE_SLICE)
            rows = call(query=HistoryQuery(end_time=(max(lo, 1e-9), hi))) or []
            for r in rows:
                if r.job_id not in skip and r.start_time and r.end_time > r.start_time:
                    found.setdefault(r.job_id, r)
            hi = lo
    except Exception as exc:  # noqa: BLE001 - best effort: the controller must start
        log.error("fair-share usage from the job history: %s: %s", type(exc).__name__, " ".join(str(exc).split()))
    records = sorted(found.values(), key=lambda r: (r.end_time, r.job_id))[-USAGE_CAP:]
    for r in records:
        job = _Ended(r)
        finished(job=job, start_time=job.start_time, end_time=job.end_time)
    return len(records)
