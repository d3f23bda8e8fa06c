"""Fixtures for the fifo scheduler tests: a small-cluster builder and an obviously-correct reference scheduler."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
from crane_kernel.sched_types import (
    REASON_ACCOUNT,
    REASON_BEGIN_TIME,
    REASON_HELD,
    REASON_NODES_UNAVAILABLE,
    REASON_PARTITION_LIMIT,
    REASON_PRIORITY,
    REASON_RESOURCE,
    ClusterView,
    SchedJob,
    SchedNode,
    SchedPartition,
    priority_order_key,
)

GiB = 1 << 30
EPS = 1e-6
NCLASS = 16


def build_view(nodes: Iterable[Mapping[str, Any]], partitions: Mapping[str, Iterable[int]] | None,
               jobs: Iterable[SchedJob], **part_kw: Mapping[str, Any]) -> ClusterView:
    """Nodes from dicts (``cpus``, ``mem`` GiB, optional ``free``/``mem_free`` GiB/``gres``/``gres_free``/...)."""
    out = []
    for i, spec in enumerate(nodes):
        spec = dict(spec)
        cpus = float(spec.pop("cpus"))
        mem = int(spec.pop("mem", 64) * GiB)
        free = spec.pop("free", None)
        mem_free = spec.pop("mem_free", None)
        out.append(SchedNode(
            spec.pop("name", f"n{i}"), i, cpus, mem,
            cpus_free=None if free is None else float(free),
            mem_free=None if mem_free is None else int(mem_free * GiB),
            gres_total=spec.pop("gres", None), gres_free=spec.pop("gres_free", None),
            usable=spec.pop("usable", True), njobs=spec.pop("njobs", 0)))
        assert not spec, f"unknown node keys {spec}"
    if partitions is None:
        partitions = {"p": range(len(out))}
    parts = {name: SchedPartition(name, tuple(idx), **part_kw.get(name, {})) for name, idx in partitions.items()}
    return ClusterView(out, parts, list(jobs))


def job(jid: int, part: str = "p", n: int = 1, cpus: float = 1.0, mem_gib: float = 0, **kw: Any) -> SchedJob:
    """A pending job; priority defaults to 0 and submit time to the job id (FIFO by id)."""
    kw.setdefault("submit_time", float(jid))
    for key in ("nodelist", "exclude"):
        if key in kw and kw[key] is not None:
            kw[key] = frozenset(kw[key])
    return SchedJob(jid, part, n, float(cpus), int(mem_gib * GiB), **kw)


# --------------------------------------------------------------------------
# reference scheduler: the policy written as plainly as possible (O(nodes) per job)
# --------------------------------------------------------------------------

def _avail(free: Mapping[str, int] | None, key: str) -> int:
    if not free:
        return 0
    if ":" in key:
        return free.get(key, 0)
    return sum(v for k, v in free.items() if k.split(":")[0] == key)


def _gres_ok(free: Mapping[str, int] | None, req: Mapping[str, int] | None) -> bool:
    if not req:
        return True
    fam: dict[str, int] = {}
    for k, v in req.items():
        if v > 0:
            if _avail(free, k) < v:
                return False
            fam[k.split(":")[0]] = fam.get(k.split(":")[0], 0) + v
    return all(_avail(free, f) >= v for f, v in fam.items())


def _gres_take(free: dict[str, int], req: Mapping[str, int]) -> None:
    for k, v in req.items():
        if ":" in k and v > 0:
            free[k] -= v
    for k, v in req.items():
        if ":" in k or v <= 0:
            continue
        for kk in sorted(free):
            if kk.split(":")[0] == k and v > 0:
                got = min(free[kk], v)
                if got > 0:
                    free[kk] -= got
                    v -= got


def reference_schedule(view: ClusterView, now: float) -> tuple[list[tuple[int, list[int]]], dict[int, str]]:
    """Return (starts, reasons) exactly as the fifo policy specifies them."""
    nodes = view.nodes
    cpu = [n.cpus_free for n in nodes]
    mem = [n.mem_free for n in nodes]
    gres = [dict(n.gres_free) for n in nodes]
    njobs = [n.njobs for n in nodes]
    alive = [n.usable for n in nodes]
    top = max((int(m) for n in nodes for m in (n.mem_total, n.mem_free) if m > 0), default=1)
    mshift = max(0, top.bit_length() - (NCLASS - 1))

    def mclass(x: float) -> int:
        return 0 if x <= 0 else min(NCLASS - 1, max(0, int(x).bit_length() - mshift))

    def slot(i: int) -> tuple[int, int, int]:
        return (int(cpu[i] + EPS) if cpu[i] > 0 else 0, mclass(mem[i]), i)

    members = {name: sorted({i for i in p.node_indices if nodes[i].usable}) for name, p in view.partitions.items()}
    blocked: set[str] = set()
    starts: list[tuple[int, list[int]]] = []
    reasons: dict[int, str] = {}
    for j in sorted(view.pending, key=priority_order_key):
        part = view.partitions.get(j.partition)
        if part is None:
            reasons[j.job_id] = REASON_NODES_UNAVAILABLE
            continue
        if j.held:
            reasons[j.job_id] = REASON_HELD
            continue
        if j.begin_time > now:
            reasons[j.job_id] = REASON_BEGIN_TIME
            continue
        if (part.allowed_accounts and j.account not in part.allowed_accounts) or (
                part.denied_accounts and j.account in part.denied_accounts):
            reasons[j.job_id] = REASON_ACCOUNT
            continue
        if part.max_time_limit and j.time_limit > part.max_time_limit:
            reasons[j.job_id] = REASON_PARTITION_LIMIT
            continue
        if j.partition in blocked:
            reasons[j.job_id] = REASON_PRIORITY
            continue
        k = max(1, j.node_num)
        req = {g: v for g, v in (j.gres_per_node or {}).items() if v > 0}
        cand = members[j.partition]
        if j.nodelist:
            idx = [view.node_index.get(name) for name in j.nodelist]
            if any(i is None or i not in cand for i in idx):
                reasons[j.job_id] = REASON_NODES_UNAVAILABLE
                continue
            cand = sorted(idx)
        excl = {view.node_index[x] for x in (j.exclude or ()) if x in view.node_index}
        c, m = j.cpus_per_node, j.mem_per_node
        fit = [i for i in cand if alive[i] and cpu[i] >= c - EPS and mem[i] >= m and i not in excl
               and _gres_ok(gres[i], req)
               and (not j.exclusive or (njobs[i] == 0 and cpu[i] >= nodes[i].cpus_total - EPS))]
        if len(fit) >= k:
            chosen = sorted(sorted(fit, key=slot)[:k])
            for i in chosen:
                if j.exclusive:
                    cpu[i], mem[i], alive[i] = 0.0, 0, False
                    gres[i] = {g: 0 for g in gres[i]}
                else:
                    cpu[i] -= c
                    mem[i] -= m
                    _gres_take(gres[i], req)
                njobs[i] += 1
            starts.append((j.job_id, chosen))
            continue
        cap = [i for i in cand if nodes[i].cpus_total >= c - EPS and nodes[i].mem_total >= m and i not in excl
               and _gres_ok(nodes[i].gres_total, req)]
        if len(cap) < k:
            reasons[j.job_id] = REASON_NODES_UNAVAILABLE
        else:
            reasons[j.job_id] = REASON_RESOURCE
            blocked.add(j.partition)
    return starts, reasons


@pytest.fixture
def view_builder() -> Callable[..., ClusterView]:
    """:func:`build_view`."""
    return build_view


@pytest.fixture
def mkjob() -> Callable[..., SchedJob]:
    """:func:`job`."""
    return job


@pytest.fixture
def reference() -> Callable[[ClusterView, float], tuple[list[tuple[int, list[int]]], dict[int, str]]]:
    """:func:`reference_schedule`."""
    return reference_schedule
