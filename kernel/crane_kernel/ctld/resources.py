"""Resources: taking and giving back a job's CPUs, memory and GRES on its nodes, and whether a job fits.

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin: the methods use the controller's
``nodes``, ``sched_nodes``, ``pending``, ``running``, ``running_view``, ``gres_taken``, ``pm``
and ``clock``). Callers hold the controller's lock. Which device files a GRES job gets is the
gres plugins' choice (``crane_gres_select``); the kernel only checks they are free.
"""

from __future__ import annotations

import logging
from typing import Any

from crane_kernel import gres as gres_rules
from crane_kernel.ctld import reconcile as rc
from crane_kernel.ctld.jobs import Job
from crane_kernel.ctld.nodes import NodeState
from crane_kernel.sched_types import SchedRunning

EPS = 1e-9

log = logging.getLogger("cranectld")


class ResourcesMixin:
    """Allocation, release and fit checks of the controller."""

    def _allocate(self, job: Job, nodes: list[NodeState], record: bool = True) -> None:
        """Take the job's resources on its nodes and list it as running."""
        gres = job.gres_per_node or {}
        taken: list[dict[str, int]] = []  # per node, the concrete gres keys taken (given back on release)
        for node in nodes:
            s = node.sched
            if job.exclusive:  # the whole node, whatever the job asked for
                node.exclusive_job = job.job_id
                s.cpus_free, s.mem_free = 0.0, 0
                s.gres_free = {k: 0 for k in s.gres_total}
            else:
                s.cpus_free -= job.cpus_per_node
                s.mem_free -= job.mem_per_node
                if gres:
                    taken.append(gres_rules.take(s.gres_free, gres))
            s.njobs += 1
        if taken:
            self.gres_taken[job.job_id] = taken
        self.pending.pop(job.job_id, None)
        self.running[job.job_id] = job
        end = job.start_time + job.time_limit if job.time_limit else float("inf")
        self.running_view[job.job_id] = SchedRunning(
            job.job_id, tuple(n.sched.index for n in nodes), job.cpus_per_node, job.mem_per_node,
            max(end, self.clock() + 1), partition=job.partition, gres_per_node=gres or None,
            exclusive=job.exclusive, qos=job.qos, start_time=job.start_time)

    def _release(self, job: Job) -> None:
        """Give a job's resources back to its nodes — unless its processes may still run unseen.

        When a node of the job is DOWN, its processes there may outlive what the controller knows:
        the resources stay held (see ``ctld/reconcile.py``) until the node confirms they are gone.
        """
        if job.job_id in self.lent_view:
            self.unlend(job)  # a suspended preemption victim: its CPUs were lent (ctld/preempt.py)
        self.release_licenses(job)  # ctld/licenses.py
        if job.job_id in self.recon.held:
            return  # released by reconcile.release_held once confirmed
        if job.job_id in self.running:
            down = {n for n in job.alloc_nodes if n in self.nodes and not self.nodes[n].alive}
            if down:
                rc.hold(self, job, down, requeue=False)
                return
        self._free(job)

    def _free(self, job: Job) -> None:
        """Give a job's resources back to its nodes now."""
        self.running.pop(job.job_id, None)
        rv = self.running_view.pop(job.job_id, None)
        taken = self.gres_taken.pop(job.job_id, [])
        if rv is None:
            return
        for idx in rv.nodes:
            node = self.nodes[self.sched_nodes[idx].name]
            s = node.sched
            s.njobs = max(0, s.njobs - 1)
            if node.exclusive_job == job.job_id:
                node.exclusive_job = 0
                s.cpus_free, s.mem_free, s.gres_free = s.cpus_total, s.mem_total, dict(s.gres_total)
                continue
            s.cpus_free = min(s.cpus_total, s.cpus_free + job.cpus_per_node)
            s.mem_free = min(s.mem_total, s.mem_free + job.mem_per_node)
            if taken:
                gres_rules.give(s.gres_free, taken.pop(0))

    def _fits(self, job: Job, node: NodeState) -> bool:
        s = node.sched
        if not s.usable or job.partition not in s.partitions:
            return False
        if job.exclusive and s.njobs:
            return False
        if s.cpus_free + EPS < job.cpus_per_node or s.mem_free < job.mem_per_node:
            return False
        return not job.gres_per_node or gres_rules.fits(s.gres_free, job.gres_per_node)

    def _assign_devices(self, job: Job, nodes: list[NodeState]) -> dict[str, list[str]]:
        """Device files for the job's GRES on each node, chosen by the gres plugins (``crane_gres_select``)."""
        if not job.gres_per_node:
            return {}
        used: dict[str, set[str]] = {}
        for other in self.running.values():
            for node_name, devs in other.devices.items():
                used.setdefault(node_name, set()).update(devs)
        out: dict[str, list[str]] = {}
        for node in nodes:
            if not node.gres.all_devices():
                out[node.name] = []
                continue
            taken = used.get(node.name, ())
            free = [d for d in node.gres.all_devices() if d not in taken]
            picked = self.pm.hook.crane_gres_select(job=job, node=node.gres, free_devices=free)
            out[node.name] = _checked(job.job_id, node.name, picked, free)
        return out


def _checked(job_id: int, node: str, picked: Any, free: list[str]) -> list[str]:
    """A gres plugin's choice, keeping only free device files of the node (once each)."""
    if picked is None:
        return []
    ok: list[str] = []
    free_set = set(free)
    bad = []
    for dev in picked if isinstance(picked, (list, tuple)) else [picked]:
        if isinstance(dev, str) and dev in free_set and dev not in ok:
            ok.append(dev)
        else:
            bad.append(dev)
    if bad:
        log.warning("job %d on %s: gres plugin chose devices that are not free there, ignored: %s",
                    job_id, node, ", ".join(map(str, bad)))
    return ok
