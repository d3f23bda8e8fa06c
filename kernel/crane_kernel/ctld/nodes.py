"""The controller's view of nodes: capacity, liveness, drain, and the free-resource index."""

from __future__ import annotations

from crane_kernel.config import ClusterConfig
from crane_kernel.gres import GresNode
from crane_kernel.sched_types import SchedNode, SchedPartition


class NodeState:
    """One node as the controller tracks it; ``sched`` is the live :class:`SchedNode` the scheduler sees."""

    __slots__ = ("name", "sched", "alive", "drain", "drain_reason", "last_seen", "ever_seen", "exclusive_job",
                 "gres", "cpu_ids")

    def __init__(self, sched: SchedNode, gres: GresNode, cpu_ids: list[int]) -> None:
        self.name = sched.name
        self.sched = sched
        self.alive = False
        self.drain = False
        self.drain_reason = ""
        self.last_seen = 0.0
        self.ever_seen = False
        self.exclusive_job = 0
        self.gres = gres            # device files per gres key, as GRES plugins see them
        self.cpu_ids = cpu_ids

    def refresh_usable(self) -> None:
        """Recompute whether the scheduler may place new work here."""
        self.sched.usable = self.alive and not self.drain

    @property
    def resource_state(self) -> str:
        """idle | mix | alloc | down, as ``cinfo`` shows it."""
        s = self.sched
        if not self.alive:
            return "down"
        if s.njobs == 0:
            return "idle"
        if self.exclusive_job or s.cpus_free <= 1e-9 or s.mem_free <= 0:
            return "alloc"
        return "mix"


def build_nodes(cfg: ClusterConfig) -> tuple[dict[str, NodeState], list[SchedNode], dict[str, SchedPartition]]:
    """Create node states, the scheduler's node list and partitions from the configuration."""
    table = cfg.node_table()
    member_of: dict[str, list[str]] = {n: [] for n in table}
    for p in cfg.Partitions:
        for n in cfg.partition_nodes(p):
            member_of[n].append(p.name)
    nodes: dict[str, NodeState] = {}
    sched_nodes: list[SchedNode] = []
    for i, (name, group) in enumerate(table.items()):
        gres_total: dict[str, int] = {}
        devices: dict[str, list[str]] = {}
        device_env: dict[str, tuple[str, int]] = {}
        seen_of_kind: dict[str, int] = {}
        for g in group.gres:
            gres_total[g.key] = gres_total.get(g.key, 0) + int(g.count or 0)
            devices.setdefault(g.key, []).extend(g.DeviceFileList)
            for dev in g.DeviceFileList:
                device_env[dev] = (g.EnvInjector, seen_of_kind.get(g.name, 0))
                seen_of_kind[g.name] = seen_of_kind.get(g.name, 0) + 1
        sn = SchedNode(name, i, group.cpu, group.memory, partitions=tuple(member_of[name]),
                       gres_total=gres_total, usable=False)
        sched_nodes.append(sn)
        nodes[name] = NodeState(sn, GresNode(name, devices, device_env), list(group.cpu_ids))
    index = {n.name: n.index for n in sched_nodes}
    parts = {
        p.name: SchedPartition(
            p.name, tuple(index[n] for n in cfg.partition_nodes(p)), p.priority,
            allowed_accounts=frozenset(p.AllowedAccounts) or None,
            denied_accounts=frozenset(p.DeniedAccounts) or None,
            max_time_limit=p.MaxTimeLimit, preempt_mode=p.PreemptMode)
        for p in cfg.Partitions
    }
    return nodes, sched_nodes, parts
