"""Can a job ever run in its partition? (the ``ReqNodeNotAvail`` test)

A job *never fits* when, even with every running job gone, its partition has
fewer than ``node_num`` usable nodes whose total capacity covers one node's
share of the request (CPUs, memory, gres), after applying ``-w``/``-x``. A
``-w`` name that is unknown, outside the partition or not usable (down,
drained) also makes the job never fit. Such a job gets
``REASON_NODES_UNAVAILABLE`` and does not block the jobs behind it.

The test only runs when a job failed to fit right now, and its answer is
cached per request shape for the rest of the pass.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING

from crane_kernel import gres as gres_mod

from crane_sched_fifo.state import EPS, FreeState, PartIndex

if TYPE_CHECKING:
    from crane_kernel.sched_types import SchedJob


def shape_key(job: SchedJob) -> Hashable:
    """Everything about a job's request that the capacity test depends on (partition excluded)."""
    return (job.node_num, job.cpus_per_node, job.mem_per_node, gres_mod.key_of(job.gres_per_node),
            job.nodelist, job.exclude, bool(job.exclusive))


def nodelist_indices(job: SchedJob, ps: PartIndex, node_index: Mapping[str, int]) -> list[int] | None:
    """The job's ``-w`` nodes as indices, or ``None`` if any is unknown, outside the partition or unusable."""
    out = []
    for name in sorted(job.nodelist or ()):
        i = node_index.get(name)
        if i is None or i not in ps.member_set:
            return None
        out.append(i)
    return out


def exclude_indices(job: SchedJob, node_index: Mapping[str, int]) -> frozenset[int] | None:
    """The job's ``-x`` nodes as a set of indices (unknown names are ignored)."""
    if not job.exclude:
        return None
    got = frozenset(node_index[name] for name in job.exclude if name in node_index)
    return got or None


def never_fits(st: FreeState, ps: PartIndex, job: SchedJob, node_index: Mapping[str, int]) -> bool:
    """True when ``job`` could not run in partition ``ps`` even on an empty cluster."""
    k = max(1, job.node_num)
    c = job.cpus_per_node
    m = job.mem_per_node
    if c > ps.max_cpu_total + EPS or m > ps.max_mem_total:
        return True
    if job.nodelist:
        cand = nodelist_indices(job, ps, node_index)
        if cand is None:
            return True
    else:
        cand = ps.members
    if len(cand) < k:
        return True
    excl = exclude_indices(job, node_index)
    req = job.gres_per_node
    cpu_total, mem_total, gres_total = st.cpu_total, st.mem_total, st.gres_total
    cmin = c - EPS
    count = 0
    for i in cand:
        if cpu_total[i] < cmin or mem_total[i] < m or (excl is not None and i in excl):
            continue
        if req and not gres_mod.fits(gres_total[i], req):
            continue
        count += 1
        if count >= k:
            return False
    return True


def never_fits_among(st: FreeState, cand: list[int], job: SchedJob, excl: frozenset[int] | None) -> bool:
    """True when fewer than ``node_num`` of the nodes ``cand`` (less ``excl``) could hold ``job`` even empty."""
    k = max(1, job.node_num)
    c, m, req = job.cpus_per_node - EPS, job.mem_per_node, job.gres_per_node
    count = 0
    for i in cand:
        if (excl is None or i not in excl) and st.cpu_total[i] >= c and st.mem_total[i] >= m and (
                not req or gres_mod.fits(st.gres_total[i], req)):
            count += 1
            if count >= k:
                return False
    return True
