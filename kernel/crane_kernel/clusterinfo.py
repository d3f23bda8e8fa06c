"""A read-only description of the cluster's partitions and node capacities, for job filter plugins.

The controller builds one :class:`ClusterInfo` from the configuration at start-up and passes it
to every ``crane_job_submit`` call as ``cluster``, so a filter can check a submission against the
partitions (membership, account rules, limits) and what their nodes could ever hold, without
reaching into the controller. Capacities are the configured totals, not what is free now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from crane_kernel.config import ClusterConfig

__all__ = ["ClusterInfo", "NodeInfo", "PartitionInfo", "build_cluster_info"]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node's configured capacity: CPUs, memory (bytes), gres totals per key, its partitions."""

    name: str
    cpus: float
    memory: int
    gres: Mapping[str, int]
    partitions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition: its nodes (names, configuration order), account rules and limits (0 = none)."""

    name: str
    nodes: tuple[str, ...]
    allowed_accounts: frozenset[str]
    denied_accounts: frozenset[str]
    max_time_limit: int
    max_mem_per_cpu: int
    priority: int


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """The cluster as job filters see it: ``name``, ``partitions`` and ``nodes`` by name, ``default_partition``."""

    name: str
    partitions: Mapping[str, PartitionInfo]
    nodes: Mapping[str, NodeInfo]
    default_partition: str


def build_cluster_info(cfg: ClusterConfig) -> ClusterInfo:
    """Describe the configured cluster (read-only mappings)."""
    table = cfg.node_table()
    member_of: dict[str, list[str]] = {n: [] for n in table}
    parts: dict[str, PartitionInfo] = {}
    for p in cfg.Partitions:
        names = tuple(cfg.partition_nodes(p))
        for n in names:
            member_of[n].append(p.name)
        parts[p.name] = PartitionInfo(p.name, names, frozenset(p.AllowedAccounts), frozenset(p.DeniedAccounts),
                                      p.MaxTimeLimit, p.MaxMemPerCpu, p.priority)
    nodes: dict[str, NodeInfo] = {}
    for name, group in table.items():
        gres: dict[str, int] = {}
        for g in group.gres:
            gres[g.key] = gres.get(g.key, 0) + int(g.count or 0)
        nodes[name] = NodeInfo(name, group.cpu, group.memory, MappingProxyType(gres), tuple(member_of[name]))
    return ClusterInfo(cfg.ClusterName, MappingProxyType(parts), MappingProxyType(nodes), cfg.DefaultPartition)
