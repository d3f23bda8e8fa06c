"""Per-node availability profiles: what each node has free from now on, as a step function of time.

A :class:`NodeLine` holds segments ``[times[k], times[k+1])`` (the last one open-ended)
with the free CPUs ``C``, memory ``M``, gres ``G`` (dict or ``None``), the
number of jobs ``J`` and of exclusive holders ``X`` on the node during that
segment. It starts from the node's free resources now, gives back every
running job's share at its expected end (``end_time``; an end at or before
``now`` counts as ``now + 1``), and then takes every start and reservation the
pass decides. A job of duration ``d`` placed at ``s`` occupies ``[s, s + d)``
(durations below 1 s count as 1 s), so "does not delay a reservation" is
exactly "fits in the profile".

Advance reservations (``view.reservations``) are kept beside the segments, per node, as
``blocks`` ``(start, end, name)``: a placement of a job that is not the reservation's may not
meet its window on that node (:meth:`NodeLine.fits`, :meth:`NodeLine.feasible_starts`), like a
whole-node job from the reservation's start to its end; a reservation's job (``Req.resv``) may
start only inside its own window (``Req.window``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import TYPE_CHECKING

from crane_kernel import gres as gres_mod

from crane_sched_backfill.eligibility import EPS

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, SchedJob

__all__ = ["Req", "NodeLine", "Profiles", "INF"]

INF = float("inf")


IGNORE_BLOCKS = "\x00any"
"""``Req.resv`` value that ignores every reservation (to tell whether one is what keeps a job waiting)."""


class Req:
    """One node's share of a job: CPUs, memory, gres (clean) and exclusivity; its reservation, if any.

    ``resv``: the reservation the job runs in (``""``: none), ``window``: that reservation's
    ``(start, end)``, within which the job must start (``None``: any time).
    """

    __slots__ = ("cpu", "mem", "gres", "excl", "resv", "window")

    def __init__(self, job: "SchedJob", resv: str = "", window: tuple[float, float] | None = None) -> None:
        self.cpu = job.cpus_per_node
        self.mem = job.mem_per_node
        self.gres = gres_mod.clean(job.gres_per_node)
        self.excl = bool(job.exclusive)
        self.resv = resv
        self.window = window


class NodeLine:
    """The availability profile of one node (see the module docstring)."""

    __slots__ = ("index", "times", "cpu", "mem", "gres", "jobs", "excl", "blocks")

    def __init__(self, index: int, now: float, cpu: float, mem: int, gres: Mapping[str, int] | None,
                 jobs: int, excl: int) -> None:
        self.index = index
        self.times: list[float] = [now]
        self.cpu: list[float] = [cpu]
        self.mem: list[int] = [mem]
        self.gres: list[dict[str, int] | None] = [dict(gres) if gres else None]
        self.jobs: list[int] = [jobs]
        self.excl: list[int] = [excl]
        self.blocks: tuple[tuple[float, float, str], ...] = ()  # reservations on this node: (start, end, name)

    def clear_of(self, t0: float, t1: float, req: Req) -> bool:
        """Whether ``[t0, t1)`` meets no reservation window on this node but the job's own."""
        own = req.resv
        if own == IGNORE_BLOCKS:
            return True
        return all(name == own or s >= t1 or e <= t0 for s, e, name in self.blocks)

    def _split(self, t: float) -> int:
        """Index of the segment starting exactly at ``t`` (``t >= times[0]``), splitting one if needed."""
        times = self.times
        k = bisect_right(times, t) - 1
        if times[k] == t:
            return k
        k += 1
        times.insert(k, t)
        self.cpu.insert(k, self.cpu[k - 1])
        self.mem.insert(k, self.mem[k - 1])
        g = self.gres[k - 1]
        self.gres.insert(k, dict(g) if g is not None else None)
        self.jobs.insert(k, self.jobs[k - 1])
        self.excl.insert(k, self.excl[k - 1])
        return k

    def change(self, t0: float, t1: float, dcpu: float, dmem: int, dgres: Mapping[str, int] | None,
               djobs: int, dexcl: int) -> None:
        """Add ``dcpu``/``dmem``/``dgres`` (concrete keys)/``djobs``/``dexcl`` over ``[t0, t1)`` (may be negative)."""
        if t0 < self.times[0]:
            t0 = self.times[0]
        if t1 <= t0:
            return
        a = self._split(t0)
        b = self._split(t1) if t1 != INF else len(self.times)
        cpu, mem, gres, jobs, excl = self.cpu, self.mem, self.gres, self.jobs, self.excl
        for k in range(a, b):
            cpu[k] += dcpu
            mem[k] += dmem
            jobs[k] += djobs
            excl[k] += dexcl
            if dgres:
                g = gres[k]
                if g is None:
                    g = gres[k] = {}
                for key, v in dgres.items():
                    g[key] = g.get(key, 0) + v

    def ok(self, k: int, req: Req) -> bool:
        """Whether segment ``k`` can hold ``req``."""
        if self.excl[k] or self.cpu[k] < req.cpu - EPS:
            return False
        if req.excl:
            return self.jobs[k] == 0 and self.cpu[k] >= req.cpu - EPS and self.mem[k] >= req.mem and (
                req.gres is None or gres_mod.fits(self.gres[k], req.gres))
        return self.cpu[k] >= req.cpu - EPS and self.mem[k] >= req.mem and (
            req.gres is None or gres_mod.fits(self.gres[k], req.gres))

    def fits(self, t0: float, t1: float, req: Req) -> bool:
        """Whether ``req`` fits in every segment overlapping ``[t0, t1)`` (the segment at ``t0`` always counts).

        Reservation windows on the node count too (:meth:`clear_of`).
        """
        if self.blocks and not self.clear_of(t0, t1, req):
            return False
        times = self.times
        k = bisect_right(times, t0) - 1
        if k < 0:
            k = 0
        n = len(times)
        if not self.ok(k, req):
            return False
        k += 1
        while k < n and times[k] < t1:
            if not self.ok(k, req):
                return False
            k += 1
        return True

    def feasible_starts(self, req: Req, d: float, horizon: float) -> list[tuple[float, float]]:
        """Closed intervals ``[lo, hi]`` of start times ``<= horizon`` at which ``req`` fits for ``d`` seconds."""
        times = self.times
        n = len(times)
        out: list[tuple[float, float]] = []
        k = 0
        while k < n:
            if not self.ok(k, req):
                k += 1
                continue
            lo = times[k]
            if lo > horizon:
                break
            m = k + 1
            while m < n and self.ok(m, req):
                m += 1
            hi = (times[m] - d) if m < n else INF
            if hi >= lo:
                out.append((lo, min(hi, horizon)))
            k = m
        if self.blocks or req.window is not None:
            out = self._within_reservations(out, req, d)
        return out

    def _within_reservations(self, spans: list[tuple[float, float]], req: Req,
                             d: float) -> list[tuple[float, float]]:
        """``spans`` without the starts that would meet another reservation, inside the job's own window."""
        for s, e, name in self.blocks:
            if name == req.resv or req.resv == IGNORE_BLOCKS:
                continue
            cut: list[tuple[float, float]] = []
            for lo, hi in spans:  # a start in (s - d, e) would overlap [s, e)
                if hi <= s - d or lo >= e:
                    cut.append((lo, hi))
                    continue
                if lo <= s - d:
                    cut.append((lo, s - d))
                if hi >= e:
                    cut.append((e, hi))
            spans = cut
        if req.window is not None:
            w0, w1 = req.window
            spans = [(max(lo, w0), min(hi, w1 - 1e-6)) for lo, hi in spans if hi >= w0 and lo < w1]
            spans = [(lo, hi) for lo, hi in spans if hi >= lo]
        return spans

    def window(self, t0: float, t1: float, req: Req) -> tuple[float, float]:
        """The free window ``[start, end)`` around a feasible placement ``[t0, t1)`` of ``req``.

        ``start`` is when the run of segments able to hold ``req`` that
        contains ``t0`` begins, ``end`` when the run containing ``t1`` ends
        (``INF``: never). Placement prefers late ``start`` and early ``end``:
        a reservation then leaves the nodes free soonest to backfilling, and a
        short job fills a gap instead of a long free stretch.
        """
        times = self.times
        n = len(times)
        k = max(0, bisect_right(times, t0) - 1)
        a = k
        while a > 0 and self.ok(a - 1, req):
            a -= 1
        b = k + 1
        while b < n and (times[b] < t1 or self.ok(b, req)):
            b += 1
        return times[a], (times[b] if b < n else INF)

    def cpu_at(self, t: float) -> float:
        """Free CPUs during the segment containing ``t``."""
        return self.cpu[max(0, bisect_right(self.times, t) - 1)]

    def take(self, t0: float, t1: float, req: Req) -> None:
        """Place ``req`` over ``[t0, t1)``; gres are drawn by the types free at ``t0``."""
        taken = None
        if req.gres:
            k = max(0, bisect_right(self.times, t0) - 1)
            probe = dict(self.gres[k] or {})
            taken = {key: -v for key, v in gres_mod.take(probe, req.gres).items()}
        self.change(t0, t1, -req.cpu, -req.mem, taken, 1, 1 if req.excl else 0)


class Profiles:
    """Node lines for one pass, built lazily from the view (usable nodes only)."""

    def __init__(self, view: "ClusterView", now: float) -> None:
        self.view = view
        self.now = now
        self.lines: list[NodeLine | None] = [None] * len(view.nodes)
        self.version = 0  # bumped by every placement (lets callers cache per-pass answers)
        releases: dict[int, list[tuple[float, float, int, Mapping[str, int] | None, int]]] = {}
        floor = now + 1
        for r in view.running:
            end = r.end_time if r.end_time > now else floor
            ex = 1 if r.exclusive else 0
            item = (end, r.cpus_per_node, r.mem_per_node, r.gres_per_node, ex)
            for i in r.nodes:
                lst = releases.get(i)
                if lst is None:
                    releases[i] = [item]
                else:
                    lst.append(item)
        self._releases = releases
        blocks: dict[int, list[tuple[float, float, str]]] = {}
        for rv in getattr(view, "reservations", ()):
            if rv.end_time > now:
                for i in rv.nodes:
                    blocks.setdefault(i, []).append((rv.start_time, rv.end_time, rv.name))
        self.blocks = blocks

    def line(self, i: int) -> NodeLine:
        """The profile of node ``i`` (created on first use)."""
        ln = self.lines[i]
        if ln is None:
            nd = self.view.nodes[i]
            rel = self._releases.get(i, ())
            excl_now = sum(item[4] for item in rel)
            ln = NodeLine(i, self.now, nd.cpus_free, nd.mem_free, nd.gres_free or None, nd.njobs, excl_now)
            if rel:
                times, cpus, mems, gress, jobs, excls = ln.times, ln.cpu, ln.mem, ln.gres, ln.jobs, ln.excl
                for end, cpu, mem, gres, ex in sorted(rel, key=lambda it: it[0]):
                    if end != times[-1]:  # a new segment starting at this end
                        times.append(end)
                        cpus.append(cpus[-1])
                        mems.append(mems[-1])
                        g = gress[-1]
                        gress.append(dict(g) if g is not None else None)
                        jobs.append(jobs[-1])
                        excls.append(excls[-1])
                    cpus[-1] += cpu
                    mems[-1] += mem
                    jobs[-1] -= 1
                    excls[-1] -= ex
                    if gres:
                        g = gress[-1]
                        if g is None:
                            g = gress[-1] = {}
                        for key, v in gres.items():
                            g[key] = g.get(key, 0) + v
            if i in self.blocks:
                ln.blocks = tuple(self.blocks[i])
            self.lines[i] = ln
        return ln
