"""What one poll of the cluster saw: the gauges' values, built from the controller's replies and Redis.

Pure functions of their inputs (protobuf replies, ``XINFO GROUPS`` rows, the cplugind status
hash), so they are tested without a cluster.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crane_common.states import JobState

NODE_STATES = ("idle", "mix", "alloc", "down", "drain")
RESOURCE_STATES = ("allocated", "idle", "other")
ACTIVE_JOB_STATES = ("Pending", "Configuring", "Running")
PLUGIND_FIELDS = ("handled", "lag", "failures", "dead_letters")
_PLUGIND_ALIASES = {"handled": "handled", "processed": "handled", "lag": "lag", "failures": "failures",
                    "failed": "failures", "errors": "failures", "dead_letters": "dead_letters", "dead": "dead_letters",
                    "deadletters": "dead_letters", "dead_lettered": "dead_letters"}


@dataclass
class Snapshot:
    """The latest poll (every field empty until the first one succeeds)."""

    up: bool = False
    poll_time: float = 0.0
    poll_seconds: float = 0.0
    info: dict[str, str] = field(default_factory=dict)
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)             # (state, partition) -> count
    pending_reasons: dict[tuple[str, str], int] = field(default_factory=dict)  # (partition, reason) -> count
    nodes: dict[str, int] = field(default_factory=dict)                        # state -> count
    cpus: dict[str, float] = field(default_factory=dict)                       # allocated/idle/other -> CPUs
    memory: dict[str, int] = field(default_factory=dict)                       # allocated/idle/other -> bytes
    gres: dict[tuple[str, str], int] = field(default_factory=dict)             # (gres, state) -> count
    cycles: int = 0
    last_cycle_s: float = 0.0
    max_cycle_s: float = 0.0
    last_considered: int = 0
    cycle_bounds: tuple[float, ...] = ()
    cycle_counts: tuple[int, ...] = ()
    cycle_sum: float = 0.0
    bus_groups: dict[str, dict[str, float | None]] = field(default_factory=dict)  # group -> lag, pending, consumers
    stream_length: int | None = None
    plugind: dict[str, dict[str, float]] = field(default_factory=dict)          # plugin -> PLUGIND_FIELDS


def _gres(text: str) -> dict[str, int]:
    """``gpu:a100:2,gpu:1`` (``QueryCranedInfo``'s form) as ``{"gpu:a100": 2, "gpu": 1}``."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, count = part.rpartition(":")
        try:
            out[name or part] = out.get(name or part, 0) + int(count)
        except ValueError:
            continue
    return out


def node_state(node: Any) -> str:
    """One of :data:`NODE_STATES` for a ``CranedInfo``: down first, then drain, else idle/mix/alloc."""
    if node.resource_state == "down":
        return "down"
    if node.control_state == "drain":
        return "drain"
    return node.resource_state if node.resource_state in NODE_STATES else "idle"


def fill_from_controller(snap: Snapshot, server: Any, nodes: Iterable[Any], jobs: Iterable[Any],
                         partitions: Iterable[str] = ()) -> None:
    """Set ``snap``'s controller gauges from ``ServerInfoReply``, ``CranedInfo``s and ``JobInfo``s.

    Every partition in ``partitions`` gets a zero for each of :data:`ACTIVE_JOB_STATES`, so a
    dashboard's series do not vanish when a queue empties.
    """
    snap.info = {"version": server.version, "cluster": server.cluster_name, "scheduler": server.scheduler}
    snap.cycles = int(server.cycles)
    snap.last_cycle_s = float(server.last_cycle_s)
    snap.max_cycle_s = float(server.max_cycle_s)
    snap.last_considered = int(server.last_cycle_considered)
    snap.cycle_bounds = tuple(server.cycle_bucket_bounds)
    snap.cycle_counts = tuple(server.cycle_bucket_counts)
    snap.cycle_sum = float(server.cycle_seconds_sum)

    states: Counter[str] = Counter({s: 0 for s in NODE_STATES})
    cpus = dict.fromkeys(RESOURCE_STATES, 0.0)
    mem = dict.fromkeys(RESOURCE_STATES, 0)
    gres: dict[tuple[str, str], int] = {}
    for node in nodes:
        state = node_state(node)
        states[state] += 1
        usable = state not in ("down", "drain")
        alloc_c, alloc_m = max(0.0, node.cpu_alloc), max(0, node.mem_alloc)
        cpus["allocated"] += alloc_c
        cpus["idle" if usable else "other"] += max(0.0, node.cpu_total - alloc_c)
        mem["allocated"] += alloc_m
        mem["idle" if usable else "other"] += max(0, node.mem_total - alloc_m)
        used = _gres(node.gres_alloc)
        for name, total in _gres(node.gres_total).items():
            taken = min(total, used.get(name, 0))
            for st in RESOURCE_STATES:
                gres.setdefault((name, st), 0)
            gres[(name, "allocated")] += taken
            gres[(name, "idle" if usable else "other")] += total - taken
    snap.nodes = dict(states)
    snap.cpus = cpus
    snap.memory = mem
    snap.gres = gres

    counts: Counter[tuple[str, str]] = Counter({(s, p): 0 for p in partitions for s in ACTIVE_JOB_STATES})
    reasons: Counter[tuple[str, str]] = Counter()
    for job in jobs:
        try:
            state = JobState(job.status).name
        except ValueError:
            state = str(job.status)
        counts[(state, job.partition)] += 1
        if job.status == JobState.Pending:
            reasons[(job.partition, job.pending_reason or "None")] += 1
    snap.jobs = dict(counts)
    snap.pending_reasons = dict(reasons)


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def bus_groups(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """``XINFO GROUPS`` rows (redis-py's dicts) as group -> ``lag``, ``pending``, ``consumers``.

    ``lag`` (Redis 7+) is None when Redis cannot tell (e.g. after deletions in the stream).
    """
    out: dict[str, dict[str, float | None]] = {}
    for row in rows:
        name = row.get("name")
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        if not name:
            continue
        out[str(name)] = {"lag": _num(row.get("lag")), "pending": _num(row.get("pending")),
                          "consumers": _num(row.get("consumers"))}
    return out


def plugind_status(raw: Mapping[Any, Any]) -> dict[str, dict[str, float]]:
    """The cplugind status hash as plugin -> :data:`PLUGIND_FIELDS`.

    Two shapes are read: one field per plugin holding a JSON object (``{"handled": 10, "lag": 0,
    "failures": 1, "dead_letters": 0, ...}``), or one field per number, ``<plugin>.<field>`` or
    ``<plugin>:<field>``. Unknown keys and unparsable values are skipped.
    """
    out: dict[str, dict[str, float]] = {}

    def put(plugin: str, key: str, value: Any) -> None:
        name = _PLUGIND_ALIASES.get(key.lower().replace("-", "_"))
        num = _num(value)
        if name is not None and num is not None and plugin:
            out.setdefault(plugin, {})[name] = num

    for k, v in raw.items():
        k = k.decode(errors="replace") if isinstance(k, bytes) else str(k)
        v = v.decode(errors="replace") if isinstance(v, bytes) else v
        try:
            doc = json.loads(v) if isinstance(v, str) else v
        except ValueError:
            doc = v
        if isinstance(doc, dict):
            for key, value in doc.items():
                put(k, str(key), value)
            continue
        for sep in (".", ":"):
            plugin, found, key = k.rpartition(sep)
            if found:
                put(plugin, key, doc)
                break
    return out
