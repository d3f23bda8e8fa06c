"""The scheduler's private working copy of free resources, indexed for fast searches.

Built once per cycle from the read-only :class:`~crane_kernel.sched_types.ClusterView`
(whose ``SchedNode`` objects are never written). Every start the plan makes is
subtracted here, so later decisions in the same pass see it.

Each node has a *slot* ``(cpu_bucket(cpus_free), mem_class(mem_free))``:
whole free CPUs, and a logarithmic class of free memory (:meth:`FreeState.mem_class`,
``NCLASS`` classes over the cluster's memory range). The best-fit order of
every search is ``(cpu bucket, mem class, node index)``: fewest whole free
CPUs first, then least free memory, then lowest index.

Indexes, per partition (:class:`PartIndex`):

* ``grid`` (:class:`Grid`): the partition's usable nodes with some CPU
  free (more than ``EPS``), one sorted list per slot. Walking rows (CPU buckets) upward from the job's need and, in each
  row, memory classes upward from the job's need visits nodes in best-fit
  order and skips nodes whose memory is known to be too small.
* ``ggrid``: the same, restricted to nodes with some free gres, so a GPU
  request does not walk thousands of CPU-only nodes.
* ``idle``: nodes with no job and every CPU free (what ``exclusive`` needs),
  as sorted keys ``slot * n + index``.

Partitions may share nodes; an allocation updates the indexes of every
partition that holds the node.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crane_kernel import gres as gres_mod

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, SchedPartition

EPS = 1e-6
"""Tolerance for fractional CPU comparisons."""

NCLASS = 16
"""Number of memory classes (each class doubles the free memory of the one below)."""


def cpu_bucket(x: float) -> int:
    """Whole free CPUs of a node, as used for bucketing and best-fit ordering."""
    return int(x + EPS) if x > 0 else 0


def _remove(lst: list[int], value: int) -> None:
    del lst[bisect_left(lst, value)]


class Grid:
    """Nodes filed by slot: ``cells[cpu_bucket][mem_class]`` is a list sorted by node index.

    ``lo[b]``/``hi[b]`` bound the memory classes present in row ``b``
    (``hi[b] < 0`` when the row is empty) and ``top`` is the highest
    non-empty row, so a search skips empty rows and cells cheaply.
    """

    __slots__ = ("cells", "hi", "lo", "top")

    def __init__(self, nrows: int) -> None:
        self.cells: list[list[list[int]]] = [[[] for _ in range(NCLASS)] for _ in range(nrows)]
        self.lo = [NCLASS] * nrows
        self.hi = [-1] * nrows
        self.top = -1

    def append(self, i: int, b: int, mc: int) -> None:
        """Add node ``i`` during the build (nodes must come in increasing index order)."""
        self.cells[b][mc].append(i)
        self._widen(b, mc)

    def insert(self, i: int, b: int, mc: int) -> None:
        """Put node ``i`` into slot ``(b, mc)``."""
        insort(self.cells[b][mc], i)
        self._widen(b, mc)

    def _widen(self, b: int, mc: int) -> None:
        if mc < self.lo[b]:
            self.lo[b] = mc
        if mc > self.hi[b]:
            self.hi[b] = mc
        if b > self.top:
            self.top = b

    def remove(self, i: int, b: int, mc: int) -> None:
        """Take node ``i`` out of slot ``(b, mc)``."""
        row = self.cells[b]
        lst = row[mc]
        del lst[bisect_left(lst, i)]
        if lst:
            return
        lo, hi = self.lo[b], self.hi[b]
        if mc == lo:
            while lo <= hi and not row[lo]:
                lo += 1
            self.lo[b] = lo
        if mc == hi:
            while hi >= lo and not row[hi]:
                hi -= 1
            self.hi[b] = hi
        if hi < lo:
            self.lo[b], self.hi[b] = NCLASS, -1
            if b == self.top:
                rows_hi = self.hi
                while b >= 0 and rows_hi[b] < 0:
                    b -= 1
                self.top = b


class PartIndex:
    """One partition's view of the working state: members, slot grids, idle nodes and access rules."""

    __slots__ = ("name", "members", "member_set", "grid", "ggrid", "idle", "max_cpu_total", "max_mem_total",
                 "part", "blocked", "_mask")

    def __init__(self, part: SchedPartition, state: FreeState) -> None:
        n = state.n
        usable, cpu, mem = state.usable, state.cpu, state.mem
        self.name = part.name
        self.members = sorted({i for i in part.node_indices if 0 <= i < n and usable[i]})
        self.member_set = frozenset(self.members)
        nrows = max((cpu_bucket(cpu[i]) for i in self.members), default=-1) + 1
        self.grid = Grid(nrows)
        self.ggrid: Grid | None = Grid(nrows) if any(state.in_ggrid(i) for i in self.members) else None
        self.idle: list[int] = []
        njobs, cpu_total, mem_class = state.njobs, state.cpu_total, state.mem_class
        for i in self.members:
            b = cpu_bucket(cpu[i])
            mc = mem_class(mem[i])
            if cpu[i] > EPS:
                self.grid.append(i, b, mc)
            if self.ggrid is not None and state.in_ggrid(i):
                self.ggrid.append(i, b, mc)
            if njobs[i] == 0 and cpu[i] >= cpu_total[i] - EPS:
                self.idle.append((b * NCLASS + mc) * n + i)
            state.node_parts[i].append(self)
        self.idle.sort()
        self.max_cpu_total = max((cpu_total[i] for i in self.members), default=0.0)
        self.max_mem_total = max((state.mem_total[i] for i in self.members), default=0)
        self.part = part  # for the kernel's eligibility rule (sched_types.ineligible_reason)
        self.blocked = False
        self._mask: Any = None

    def mask(self, np: Any, n: int) -> Any:
        """Boolean NumPy membership mask over all nodes (built on first use)."""
        if self._mask is None:
            m = np.zeros(n, dtype=bool)
            if self.members:
                m[np.asarray(self.members, dtype=np.intp)] = True
            self._mask = m
        return self._mask


class FreeState:
    """Free CPU, memory and gres per node for one scheduling pass, plus per-partition indexes.

    Plain Python lists carry the state the hot loop reads; NumPy mirrors are
    created on first need (:meth:`arrays`) and kept in step afterwards.
    """

    def __init__(self, view: ClusterView) -> None:
        nodes = view.nodes
        self.n = n = len(nodes)
        self.cpu: list[float] = [x.cpus_free for x in nodes]
        self.mem: list[int] = [x.mem_free for x in nodes]
        self.njobs: list[int] = [x.njobs for x in nodes]
        self.cpu_total: list[float] = [x.cpus_total for x in nodes]
        self.mem_total: list[int] = [x.mem_total for x in nodes]
        self.gres_total: list[Mapping[str, int] | None] = [x.gres_total or None for x in nodes]
        self.gres: list[dict[str, int] | None] = [
            dict(x.gres_free) if (x.gres_total or x.gres_free) else None for x in nodes]
        self.usable: list[bool] = [bool(x.usable) for x in nodes]
        self.alive: list[bool] = list(self.usable)
        top_mem = max((int(m) for m in self.mem_total + self.mem if m > 0), default=1)
        self.mshift = max(0, top_mem.bit_length() - (NCLASS - 1))
        self.node_parts: list[list[PartIndex]] = [[] for _ in range(n)]
        self.parts: dict[str, PartIndex] = {name: PartIndex(p, self) for name, p in view.partitions.items()}
        self.np: Any = None
        self.np_cpu: Any = None
        self.np_mem: Any = None
        self.np_njobs: Any = None
        self.np_alive: Any = None
        self.np_cpu_total: Any = None
        self.np_gres: dict[str, Any] = {}

    def mem_class(self, x: float) -> int:
        """Logarithmic class of a free-memory amount, in ``0 .. NCLASS-1`` (larger class = more memory)."""
        if x <= 0:
            return 0
        c = int(x).bit_length() - self.mshift
        return c if 0 <= c < NCLASS else (0 if c < 0 else NCLASS - 1)

    def in_ggrid(self, i: int) -> bool:
        """Whether node ``i`` belongs in the gres grids: it has some CPU and some gres free."""
        if not self.gres_total[i]:
            return False
        g = self.gres[i]
        return self.alive[i] and self.cpu[i] > EPS and g is not None and any(v > 0 for v in g.values())

    def arrays(self, np: Any) -> None:
        """Create the NumPy mirrors of the current state (idempotent)."""
        if self.np is not None:
            return
        self.np = np
        self.np_cpu = np.asarray(self.cpu, dtype=np.float64)
        self.np_mem = np.asarray(self.mem, dtype=np.float64)
        self.np_njobs = np.asarray(self.njobs, dtype=np.int64)
        self.np_alive = np.asarray(self.alive, dtype=bool)
        self.np_cpu_total = np.asarray(self.cpu_total, dtype=np.float64)
        keys = sorted({k for g in self.gres if g for k in g})
        for k in keys:
            self.np_gres[k] = np.asarray([g.get(k, 0) if g else 0 for g in self.gres], dtype=np.int64)

    def allocate(self, i: int, cpus: float, mem: int, req: Mapping[str, int] | None, exclusive: bool) -> None:
        """Subtract one node's share of a started job from node ``i`` and update every index holding it.

        An exclusive start takes the whole node: it leaves every index and
        stays unusable for the rest of the pass.
        """
        old_cpu, old_mem = self.cpu[i], self.mem[i]
        was_idle = self.njobs[i] == 0 and old_cpu >= self.cpu_total[i] - EPS
        has_g = bool(self.gres_total[i])
        was_g = has_g and self.in_ggrid(i)
        g = self.gres[i]
        if exclusive:
            new_cpu, new_mem = 0.0, 0
            if g:
                for k in g:
                    g[k] = 0
            self.alive[i] = False
        else:
            new_cpu, new_mem = old_cpu - cpus, old_mem - mem
            if req and g is not None:
                gres_mod.take(g, req)
        self.cpu[i] = new_cpu
        self.mem[i] = new_mem
        self.njobs[i] += 1
        ob = int(old_cpu + EPS) if old_cpu > 0 else 0
        nb = int(new_cpu + EPS) if new_cpu > 0 else 0
        mem_class = self.mem_class
        omc, nmc = mem_class(old_mem), mem_class(new_mem)
        moved = ob != nb or omc != nmc
        was_in = old_cpu > EPS
        now_in = not exclusive and new_cpu > EPS
        now_g = has_g and self.in_ggrid(i)
        for ps in self.node_parts[i]:
            grid = ps.grid
            if was_in and (moved or not now_in):
                grid.remove(i, ob, omc)
            if now_in and (moved or not was_in):
                grid.insert(i, nb, nmc)
            if has_g and ps.ggrid is not None:
                if was_g and (moved or not now_g):
                    ps.ggrid.remove(i, ob, omc)
                if now_g and (moved or not was_g):
                    ps.ggrid.insert(i, nb, nmc)
            if was_idle:
                _remove(ps.idle, (ob * NCLASS + omc) * self.n + i)
        if self.np is not None:
            self.np_cpu[i] = new_cpu
            self.np_mem[i] = new_mem
            self.np_njobs[i] = self.njobs[i]
            self.np_alive[i] = self.alive[i]
            if g:
                for k, v in g.items():
                    self.np_gres[k][i] = v
