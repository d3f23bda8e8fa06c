"""Victim selection of the ``preempt_standard`` plugin (the policy; the rules are the kernel's).

See the package docstring for the order of the steps. Everything here reads the view and the
scheduler's plan and writes only the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from crane_kernel.sched_types import (
    PREEMPT_SUSPEND,
    REASON_PRIORITY,
    REASON_RESOURCE,
    REASON_RESOURCE_RESERVED,
    REASON_WAITING_PREEMPTION,
    PreemptOrder,
    ineligible_reason,
    node_fits_after,
    preempt_mode,
    priority_order_key,
)

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, Plan, SchedJob, SchedNode, SchedRunning

WAITING_REASONS = frozenset({REASON_RESOURCE, REASON_PRIORITY, REASON_RESOURCE_RESERVED})
"""Reasons of a job that waits only for resources: such a job may preempt."""

Taken = dict[int, list]  # node index -> [cpus, mem, gres dict] other decisions of the plan use there


def select_victims(view: ClusterView, plan: Plan, now: float, max_preemptors: int) -> bool:
    """Add preemption orders for up to ``max_preemptors`` waiting jobs to ``plan``; True when any were added."""
    started = {jid for jid, _ in plan.starts}
    rules = view.preemption
    assert rules is not None
    in_progress, reasons = rules.in_progress, plan.reasons
    can_preempt: dict[tuple[str, str], bool] = {}  # per (partition, QoS): is anything running preemptible by it?
    waiting = []
    for j in view.pending:
        if j.job_id in started or j.job_id in in_progress:
            continue
        key = (j.partition, j.qos)
        able = can_preempt.get(key)
        if able is None:
            able = can_preempt[key] = any(preempt_mode(j, r, view) for r in view.running)
        if able and reasons.get(j.job_id, REASON_RESOURCE) in WAITING_REASONS:
            waiting.append(j)
    if not waiting:
        return False
    by_node: dict[int, list[SchedRunning]] = {}
    for r in view.running:
        for i in r.nodes:
            by_node.setdefault(i, []).append(r)
    pending = {j.job_id: j for j in view.pending}
    taken: Taken = {}
    for jid, idxs in plan.starts:
        job = pending.get(jid)
        if job is not None:
            for i in idxs:
                _take(taken, i, job)
    chosen: set[int] = set()
    added = False
    looked = 0
    for job in sorted(waiting, key=priority_order_key):
        if looked >= max_preemptors:
            break
        part = view.partitions.get(job.partition)
        if part is None or ineligible_reason(job, part, now) is not None:
            continue
        looked += 1
        picked = _nodes_for(job, view, part.node_indices, by_node, chosen, taken)
        if picked is None:
            continue
        nodes, victims = picked
        if not victims:
            continue  # it fits without anyone leaving: the scheduler's business, not preemption's
        for r, mode in victims.items():
            plan.preempt[r.job_id] = PreemptOrder(job.job_id, mode)
            chosen.add(r.job_id)
        plan.preempt_nodes[job.job_id] = nodes
        for i in nodes:
            _take(taken, i, job)
        if all(mode == PREEMPT_SUSPEND for mode in victims.values()):
            plan.starts.append((job.job_id, nodes))
            plan.reasons.pop(job.job_id, None)
        else:
            plan.reasons[job.job_id] = REASON_WAITING_PREEMPTION
        added = True
    return added


def _nodes_for(job: SchedJob, view: ClusterView, members: tuple[int, ...], by_node: Mapping[int, list[SchedRunning]],
               chosen: set[int], taken: Taken) -> tuple[list[int], dict[SchedRunning, str]] | None:
    """The job's ``node_num`` cheapest nodes and the victims they need, or None when too few can hold it."""
    nodes = view.nodes
    excl = {view.node_index[n] for n in job.exclude if n in view.node_index} if job.exclude else None
    allowed = {view.node_index[n] for n in job.nodelist if n in view.node_index} if job.nodelist else None
    options: list[tuple[int, float, int, dict[SchedRunning, str]]] = []
    for i in members:
        node = nodes[i]
        if not node.usable or (excl is not None and i in excl) or (allowed is not None and i not in allowed):
            continue
        here = _victims_on(job, node, by_node.get(i, ()), view, chosen, _taken_of(taken, i))
        if here is not None:
            options.append((len(here), sum(r.cpus_per_node for r in here), i, here))
    k = max(1, job.node_num)
    if len(options) < k:
        return None
    options.sort(key=lambda o: (o[0], o[1], o[2]))
    best = options[:k]
    victims: dict[SchedRunning, str] = {}
    for _, _, _, here in best:
        victims.update(here)
    return sorted(o[2] for o in best), victims


def _victims_on(job: SchedJob, node: SchedNode, running: list[SchedRunning] | tuple, view: ClusterView,
                chosen: set[int], taken: tuple) -> dict[SchedRunning, str] | None:
    """A minimal set of victims on ``node`` after which ``job`` fits there (``{}``: it fits now), or None."""
    if job.partition not in node.partitions:
        return None
    if node_fits_after(job, node, (), taken):
        return {}
    allowed = []
    for r in running:
        if r.job_id in chosen:
            continue
        mode = preempt_mode(job, r, view)
        if mode is not None:
            allowed.append((r, mode))
    allowed.sort(key=lambda rm: (-rm[0].start_time, -rm[0].job_id))  # youngest first
    picked: list[tuple[SchedRunning, str]] = []
    for rm in allowed:
        picked.append(rm)
        if node_fits_after(job, node, picked, taken):
            break
    else:
        return None
    for rm in list(reversed(picked)):  # put back every victim it fits without
        rest = [x for x in picked if x is not rm]
        if node_fits_after(job, node, rest, taken):
            picked = rest
    return dict(picked)


def _take(taken: Taken, i: int, job: SchedJob) -> None:
    """Count ``job``'s request on node ``i`` as used by the plan."""
    t = taken.setdefault(i, [0.0, 0, {}])
    t[0] += job.cpus_per_node
    t[1] += job.mem_per_node
    if job.gres_per_node:
        for k, v in job.gres_per_node.items():
            t[2][k] = t[2].get(k, 0) + v


def _taken_of(taken: Taken, i: int) -> tuple:
    """The ``taken`` argument of :func:`~crane_kernel.sched_types.node_fits_after` for node ``i``."""
    t = taken.get(i)
    return (0.0, 0, None) if t is None else (t[0], t[1], t[2] or None)


__all__ = ["WAITING_REASONS", "select_victims"]
