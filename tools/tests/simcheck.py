"""The simulator tests' shared observer: node accounting and reservations checked on every pass."""

from __future__ import annotations

from crane_kernel.sched_types import ClusterView, Plan


class Checker:
    """Observer: per-pass node accounting and first reservation time of every job."""

    def __init__(self) -> None:
        self.first_reserved: dict[int, float] = {}
        self.passes = 0
        self.reserved_seen = 0

    def __call__(self, now: float, view: ClusterView, plan: Plan) -> None:
        self.passes += 1
        used = [0.0] * len(view.nodes)
        count = [0] * len(view.nodes)
        for r in view.running:
            for i in r.nodes:
                used[i] += r.cpus_per_node
                count[i] += 1
        for nd in view.nodes:
            assert used[nd.index] <= nd.cpus_total + 1e-9, f"t={now}: node {nd.name} over-allocated"
            assert abs(nd.cpus_free - (nd.cpus_total - used[nd.index])) < 1e-9
            assert nd.njobs == count[nd.index]
        for jid, t in plan.reserved.items():
            assert t > now
            self.first_reserved.setdefault(jid, t)
            self.reserved_seen += 1
