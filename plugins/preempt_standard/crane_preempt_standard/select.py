"""Victim selection of the ``preempt_standard`` plugin (the policy; the rules are the kernel's).

See the package docstring for the order of the steps. Everything here reads the view and the
scheduler's plan and writes only the plan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crane_kernel import gres as gres_rules
from crane_kernel.sched_types import (
    PREEMPT_SUSPEND,
    REASON_PRIORITY,
    REASON_RESOURCE,
    REASON_RESOURCE_RESERVED,
    REASON_WAITING_PREEMPTION,
    PreemptOrder,
    PreemptTable,
    ineligible_reason,
    node_fits_after,
    preempt_table,
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
    classes: dict[tuple[str, str], _Victims | None] = {}  # per (partition, QoS): what its jobs may preempt
    waiting: list[tuple[SchedJob, _Victims]] = []
    taken: Taken = {}
    where = dict(plan.starts) if plan.starts else {}
    by_node: dict[int, list[SchedRunning]] | None = None
    for j in view.pending:
        jid = j.job_id
        if jid in started:
            for i in where[jid]:
                _take(taken, i, j)
            continue
        if jid in in_progress:
            continue
        key = (j.partition, j.qos)
        index = classes.get(key, False)
        if index is False:
            table = preempt_table(j, view)
            if table.empty():
                index = None
            else:
                if by_node is None:
                    by_node = _running_by_node(view)
                index = _Victims(table, by_node)
            classes[key] = index
        if index is not None and reasons.get(jid, REASON_RESOURCE) in WAITING_REASONS:
            waiting.append((j, index))
    if not waiting:
        return False
    chosen: set[int] = set()
    added = False
    looked = 0
    for job, index in sorted(waiting, key=lambda w: priority_order_key(w[0])):
        if looked >= max_preemptors:
            break
        part = view.partitions.get(job.partition)
        if part is None or ineligible_reason(job, part, now) is not None:
            continue
        looked += 1
        picked = _nodes_for(job, view, part.node_indices, index, chosen, taken)
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


def _running_by_node(view: ClusterView) -> dict[int, list[SchedRunning]]:
    """The running jobs of every node (once per pass, only when some class may preempt)."""
    by_node: dict[int, list[SchedRunning]] = {}
    for r in view.running:
        for i in r.nodes:
            got = by_node.get(i)
            if got is None:
                by_node[i] = [r]
            else:
                got.append(r)
    return by_node


class _Victims:
    """What the jobs of one (partition, QoS) class may preempt on each node, worked out when a node is looked at."""

    __slots__ = ("table", "by_node", "cache")

    def __init__(self, table: PreemptTable, by_node: dict[int, list[SchedRunning]]) -> None:
        self.table = table
        self.by_node = by_node
        self.cache: dict[int, tuple[list[tuple[SchedRunning, str]], float, int]] = {}

    def on(self, i: int) -> tuple[list[tuple[SchedRunning, str]], float, int]:
        """Node ``i``'s victims (youngest first), the CPUs they would free together and the memory."""
        got = self.cache.get(i)
        if got is None:
            mode_of = self.table.mode
            victims = [(r, m) for r in self.by_node.get(i, ()) if (m := mode_of(r))]
            victims.sort(key=lambda rm: (-rm[0].start_time, -rm[0].job_id))  # youngest first
            got = self.cache[i] = (victims, sum(r.cpus_per_node for r, _ in victims),
                                   sum(r.mem_per_node for r, m in victims if m != PREEMPT_SUSPEND))
        return got


def _nodes_for(job: SchedJob, view: ClusterView, members: tuple[int, ...], index: _Victims, chosen: set[int],
               taken: Taken) -> tuple[list[int], dict[SchedRunning, str]] | None:
    """The job's ``node_num`` cheapest nodes and the victims they need, or None when too few can hold it."""
    nodes = view.nodes
    excl = {view.node_index[n] for n in job.exclude if n in view.node_index} if job.exclude else None
    allowed = {view.node_index[n] for n in job.nodelist if n in view.node_index} if job.nodelist else None
    k = max(1, job.node_num)
    c, m = job.cpus_per_node, job.mem_per_node
    options: list[tuple[int, float, int, dict[SchedRunning, str]]] = []
    free = 0
    req = job.gres_per_node
    settled = False  # a one-node job found a node needing one victim: only free nodes could do better
    for i in members:
        node = nodes[i]
        if not node.usable or (excl is not None and i in excl) or (allowed is not None and i not in allowed):
            continue
        t = _taken_of(taken, i)
        cpus, mem = node.cpus_free - t[0], node.mem_free - t[1]
        if cpus + 1e-9 >= c and mem >= m and node_fits_after(job, node, (), t):
            free += 1  # it fits here without anyone leaving
            if free >= k:
                return None  # ... and on enough nodes: the scheduler's business, not preemption's
            options.append((0, 0.0, i, {}))
            continue
        if settled or i not in index.by_node or (req and not gres_rules.fits(node.gres_total, req)):
            continue
        on_node, could_cpus, could_mem = index.on(i)
        if cpus + could_cpus + 1e-9 < c or mem + could_mem < m:
            continue  # not even with every victim it could have there gone
        here = _victims_on(job, node, on_node, chosen, t)
        if not here:
            continue
        options.append((len(here), sum(r.cpus_per_node for r in here), i, here))
        settled = k == 1 and len(here) == 1
    if len(options) < k:
        return None
    options.sort(key=lambda o: (o[0], o[1], o[2]))
    best = options[:k]
    victims: dict[SchedRunning, str] = {}
    for _, _, _, here in best:
        victims.update(here)
    return sorted(o[2] for o in best), victims


def _victims_on(job: SchedJob, node: SchedNode, allowed: list[tuple[SchedRunning, str]], chosen: set[int],
                taken: tuple) -> dict[SchedRunning, str] | None:
    """A minimal set of victims on ``node`` after which ``job`` fits there (it does not fit now), or None."""
    if job.partition not in node.partitions:
        return None
    picked: list[tuple[SchedRunning, str]] = []
    cpus = node.cpus_free - taken[0]
    mem = node.mem_free - taken[1]
    exact = not job.gres_per_node and not job.exclusive  # then the CPU and memory sums decide alone
    for rm in allowed:  # youngest first
        if rm[0].job_id in chosen:
            continue
        picked.append(rm)
        cpus += rm[0].cpus_per_node
        if rm[1] != PREEMPT_SUSPEND:
            mem += rm[0].mem_per_node
        if cpus + 1e-9 >= job.cpus_per_node and mem >= job.mem_per_node and (
                exact or node_fits_after(job, node, picked, taken)):
            break  # (the CPU and memory sums first: the full test, with GRES and exclusivity, only then)
    else:
        return None
    for rm in list(reversed(picked)):  # put back every victim it fits without
        r, mode = rm
        if cpus - r.cpus_per_node + 1e-9 < job.cpus_per_node or \
                (mode != PREEMPT_SUSPEND and mem - r.mem_per_node < job.mem_per_node):
            continue  # needed for the CPUs or the memory alone
        rest = [x for x in picked if x is not rm]
        if exact or node_fits_after(job, node, rest, taken):
            picked = rest
            cpus -= r.cpus_per_node
            if mode != PREEMPT_SUSPEND:
                mem -= r.mem_per_node
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
