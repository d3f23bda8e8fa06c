"""Node searches: which nodes a job would get right now, or ``None`` if it does not fit.

Every search returns the same answer for the same state — the ``k`` fitting
nodes that are smallest by ``(cpu_bucket(cpus_free), mem_class(mem_free),
node index)``, i.e. best fit by whole free CPUs, then by free memory, with
ties to the lowest index. The Python searches walk
the indexes of :mod:`crane_sched_fifo.state` and give up with :data:`FALLBACK`
after ``limit`` non-fitting nodes; :func:`pick_numpy` then answers with
vectorised masks over all nodes, so a rare request never costs a long Python
scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crane_kernel import gres as gres_mod

from crane_sched_fifo.state import EPS, NCLASS, FreeState, Grid, PartIndex, cpu_bucket

FALLBACK: Any = object()
"""Sentinel: the Python scan hit its probe limit; ask :func:`pick_numpy`."""

Result = list[int] | None


def pick_grid(st: FreeState, grid: Grid | None, k: int, c: float, m: int, req: Mapping[str, int] | None,
              excl: frozenset[int] | None, limit: float) -> Result:
    """Walk ``grid`` in best-fit order for ``k`` nodes with ``c`` CPUs, ``m`` bytes and gres ``req`` free.

    Rows below the job's CPU need and memory classes below its memory need
    are skipped without looking at their nodes.
    """
    if grid is None:
        return None
    b0 = cpu_bucket(c)
    top = grid.top
    if b0 > top:
        return None
    cpu, mem, gres = st.cpu, st.mem, st.gres
    mc0 = st.mem_class(m) if m > 0 else 0
    cmin = c - EPS
    fits = gres_mod.fits
    got: list[int] = []
    misses = 0
    cells, lo, hi = grid.cells, grid.lo, grid.hi
    for b in range(b0, top + 1):
        h = hi[b]
        if h < mc0:
            continue
        row = cells[b]
        for mc in range(mc0 if mc0 > lo[b] else lo[b], h + 1):
            lst = row[mc]
            if not lst:
                continue
            for i in lst:
                if (mem[i] >= m and cpu[i] >= cmin and (excl is None or i not in excl)
                        and (req is None or fits(gres[i], req))):
                    got.append(i)
                    if len(got) == k:
                        return got
                else:
                    misses += 1
                    if misses > limit:
                        return FALLBACK
    return None


def pick_exclusive(st: FreeState, ps: PartIndex, k: int, c: float, m: int, req: Mapping[str, int] | None,
                   excl: frozenset[int] | None, limit: float) -> Result:
    """Search the partition's idle nodes (no job, all CPUs free) for ``k`` that satisfy the request."""
    idle = ps.idle
    if len(idle) < k:
        return None
    n = st.n
    cpu, mem, gres, alive = st.cpu, st.mem, st.gres, st.alive
    cmin = c - EPS
    got: list[int] = []
    misses = 0
    for key in idle:
        i = key % n
        if (alive[i] and mem[i] >= m and cpu[i] >= cmin and (excl is None or i not in excl)
                and (not req or gres_mod.fits(gres[i], req))):
            got.append(i)
            if len(got) == k:
                return got
        else:
            misses += 1
            if misses > limit:
                return FALLBACK
    return None


def pick_among(st: FreeState, cand: list[int], k: int, c: float, m: int, req: Mapping[str, int] | None,
                  excl: frozenset[int] | None, exclusive: bool) -> Result:
    """Choose ``k`` nodes among the candidates ``cand`` by a full scan (``-w`` lists, zero-CPU requests).

    With a ``-w`` list and ``k == len(cand)`` every listed node must fit.
    """
    cpu, mem, gres, alive, njobs, cpu_total = st.cpu, st.mem, st.gres, st.alive, st.njobs, st.cpu_total
    cmin = c - EPS
    ok = []
    for i in cand:
        if not alive[i] or cpu[i] < cmin or mem[i] < m or (excl is not None and i in excl):
            continue
        if exclusive and (njobs[i] != 0 or cpu[i] < cpu_total[i] - EPS):
            continue
        if req and not gres_mod.fits(gres[i], req):
            continue
        ok.append(i)
    if len(ok) < k:
        return None
    mem_class = st.mem_class
    ok.sort(key=lambda i: (cpu_bucket(cpu[i]), mem_class(mem[i]), i))
    return ok[:k]


def pick_numpy(st: FreeState, ps: PartIndex, k: int, c: float, m: int, req: Mapping[str, int] | None,
               excl: frozenset[int] | None, exclusive: bool) -> Result:
    """Vectorised search over every node of the partition (same answer as the Python scans)."""
    np = st.np
    n = st.n
    cpu = st.np_cpu
    mask = ps.mask(np, n) & st.np_alive
    mask &= cpu >= c - EPS
    if m > 0:
        mask &= st.np_mem >= m
    if exclusive:
        mask &= st.np_njobs == 0
        mask &= cpu >= st.np_cpu_total - EPS
    if req:
        mask &= _gres_mask(st, req)
    if excl:
        mask[np.fromiter(excl, dtype=np.intp, count=len(excl))] = False
    fit = np.flatnonzero(mask)
    if len(fit) < k:
        return None
    comp = slot_keys(st, fit) * n + fit
    if k == 1:
        return [int(fit[int(np.argmin(comp))])]
    if k < len(comp):
        comp = comp[np.argpartition(comp, k - 1)[:k]]
    comp.sort()
    return (comp % n).tolist()


def slot_keys(st: FreeState, idx: Any) -> Any:
    """Vectorised ``cpu_bucket * NCLASS + mem_class`` for the nodes ``idx`` (the best-fit order key)."""
    np = st.np
    b = np.floor(np.maximum(st.np_cpu[idx], 0.0) + EPS).astype(np.int64)
    mem = st.np_mem[idx]
    _, e = np.frexp(np.maximum(mem, 0.0))
    mc = np.clip(e.astype(np.int64) - st.mshift, 0, NCLASS - 1)
    mc[mem <= 0] = 0
    return b * NCLASS + mc


def _gres_mask(st: FreeState, req: Mapping[str, int]) -> Any:
    np = st.np
    ok = np.ones(st.n, dtype=bool)
    zero = np.zeros(st.n, dtype=np.int64)
    fam_need: dict[str, int] = {}
    for key, need in req.items():
        if need <= 0:
            continue
        ok &= _gres_avail(st, key, zero) >= need
        f = gres_mod.family(key)
        fam_need[f] = fam_need.get(f, 0) + need
    if len(req) > 1:
        for f, need in fam_need.items():
            ok &= _gres_avail(st, f, zero) >= need
    return ok


def _gres_avail(st: FreeState, key: str, zero: Any) -> Any:
    if ":" in key:
        return st.np_gres.get(key, zero)
    total = zero
    for kk, arr in st.np_gres.items():
        if kk == key or (kk.startswith(key) and kk[len(key)] == ":"):
            total = total + arr
    return total
