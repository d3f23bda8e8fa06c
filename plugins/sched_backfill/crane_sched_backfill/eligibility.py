"""Which pending jobs may be scheduled at all, and on which nodes (the FIFO scheduler's rules).

A job that is not eligible keeps a specific pending reason and never blocks
anyone nor gets a reservation (the rules that do not depend on nodes are the
kernel's :func:`crane_kernel.sched_types.ineligible_reason`, applied here too
because a view built by another caller may hold such jobs):

* unknown partition, a ``-w`` node that is unknown/outside the partition/unusable,
  or a request no set of the partition's usable nodes could ever hold
  (even empty): ``ReqNodeNotAvail``;
* ``held``: ``Held``; ``begin_time`` in the future: ``BeginTime``;
* account not allowed by the partition: ``AccountNotAllowed``;
* time limit above the partition's maximum: ``PartitionLimit``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from crane_kernel import gres as gres_mod
from crane_kernel.sched_types import ineligible_reason

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, SchedJob, SchedPartition

__all__ = ["EPS", "static_reason", "CandidateCache"]

EPS = 1e-6
"""Tolerance for fractional CPU comparisons."""


static_reason = ineligible_reason
"""The reason a job cannot be considered this pass regardless of resources, or ``None``: the kernel's rule."""


class CandidateCache:
    """Per-pass cache: the usable nodes a job may use, and whether its request can ever fit there."""

    def __init__(self, view: "ClusterView") -> None:
        self.view = view
        self._cand: dict[Hashable, tuple[int, ...] | None] = {}
        self._never: dict[Hashable, bool] = {}
        self._members: dict[str, tuple[int, ...]] = {}

    def members(self, part: "SchedPartition") -> tuple[int, ...]:
        """The partition's usable nodes, sorted by index."""
        got = self._members.get(part.name)
        if got is None:
            nodes = self.view.nodes
            n = len(nodes)
            got = tuple(sorted({i for i in part.node_indices if 0 <= i < n and nodes[i].usable}))
            self._members[part.name] = got
        return got

    def candidates(self, job: "SchedJob", part: "SchedPartition") -> tuple[int, ...] | None:
        """Usable partition nodes allowed by ``-w``/``-x`` (``None``: a ``-w`` node is unusable or unknown)."""
        key = (part.name, job.nodelist, job.exclude)
        if key in self._cand:
            return self._cand[key]
        members = self.members(part)
        index = self.view.node_index
        out: tuple[int, ...] | None
        if job.nodelist:
            mset = set(members)
            picked = []
            for name in sorted(job.nodelist):
                i = index.get(name)
                if i is None or i not in mset:
                    picked = None
                    break
                picked.append(i)
            out = tuple(sorted(picked)) if picked is not None else None
        else:
            out = members
        if out is not None and job.exclude:
            drop = {index[name] for name in job.exclude if name in index}
            out = tuple(i for i in out if i not in drop)
        self._cand[key] = out
        return out

    def never_fits(self, job: "SchedJob", part: "SchedPartition", cand: tuple[int, ...] | None) -> bool:
        """True when ``job`` could not run on ``cand`` even with every node empty."""
        if cand is None:
            return True
        k = max(1, job.node_num)
        if len(cand) < k:
            return True
        key = (part.name, job.nodelist, job.exclude, k, job.cpus_per_node, job.mem_per_node,
               gres_mod.key_of(job.gres_per_node))
        got = self._never.get(key)
        if got is None:
            nodes = self.view.nodes
            c = job.cpus_per_node - EPS
            m = job.mem_per_node
            req = gres_mod.clean(job.gres_per_node)
            count = 0
            for i in cand:
                nd = nodes[i]
                if nd.cpus_total >= c and nd.mem_total >= m and (req is None or gres_mod.fits(nd.gres_total, req)):
                    count += 1
                    if count >= k:
                        break
            got = self._never[key] = count < k
        return got
