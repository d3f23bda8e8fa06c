"""The ``submit_checks`` job filter: what a partition accepts, decided at submission.

A submission is rejected (``cbatch`` exits 4 with the message) when

* its account is not in the partition's ``AllowedAccounts`` (when that list is set):
  ``Account 'x' is not allowed in partition 'p'``;
* its account is in the partition's ``DeniedAccounts``: ``Account 'x' is denied in partition 'p'``;
* a ``-w`` node is not in the partition: ``node(s) a, b not in partition 'p'``;
* fewer than ``node_num`` of the partition's nodes (minus ``-x``) could hold one node's share
  (CPUs, memory, gres) even when empty:
  ``requested resources (N node(s) x C CPU, M MB[, gres]) exceed what partition 'p' can ever provide``;
* a ``-w`` node could never hold it: ``requested node list cannot hold this job``.

It works on the controller's read-only ``cluster`` description (configured capacities, not what is
free now), so it is a plain job filter: listed in ``Plugins.JobFilters`` (the default) it runs
first; a site filter that changes a job's partition or size should be listed before it. No settings.

Nodes of a partition are counted by *shape* (CPUs, memory, gres), an index built once per cluster
description: a job is checked against the few shapes, not every node (a 10,000-node partition of
three node types is three comparisons; ``-w``/``-x`` nodes are then looked at one by one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crane_kernel import gres as gres_rules
from crane_kernel import hookimpl
from crane_kernel.clusterinfo import ClusterInfo
from crane_kernel.errors import JobRejected

__all__ = ["SubmitChecks", "check"]

EPS = 1e-9

Shape = tuple[float, int, tuple[tuple[str, int], ...]]
_index: tuple[Any, dict[str, list[tuple[Shape, int]]]] | None = None  # (the cluster it describes, per partition)


def _shapes(cluster: ClusterInfo, part_name: str) -> list[tuple[Shape, int]]:
    """The partition's node shapes and how many nodes have each (rebuilt when the description changes)."""
    global _index
    if _index is None or _index[0] is not cluster:
        _index = (cluster, {})
    table = _index[1]
    shapes = table.get(part_name)
    if shapes is None:
        counts: dict[Shape, int] = {}
        for name in cluster.partitions[part_name].nodes:
            node = cluster.nodes[name]
            shape = (node.cpus, node.memory, tuple(sorted(node.gres.items())))
            counts[shape] = counts.get(shape, 0) + 1
        shapes = table[part_name] = list(counts.items())
    return shapes


def _fits(shape: Shape, cpus: float, mem: int, gres: Mapping[str, int]) -> bool:
    if shape[0] + EPS < cpus or shape[1] < mem:
        return False
    return not gres or gres_rules.fits(dict(shape[2]), gres)


def check(job: Mapping[str, Any], cluster: ClusterInfo) -> None:
    """Raise :class:`JobRejected` when ``job`` (a normalised submission) may not or can never run."""
    part_name = job.get("partition", "")
    part = cluster.partitions.get(part_name)
    if part is None:  # the kernel rejects unknown partitions before filters run
        raise JobRejected(f"Partition '{part_name}' does not exist")
    account = job.get("account", "")
    if part.allowed_accounts and account not in part.allowed_accounts:
        raise JobRejected(f"Account '{account}' is not allowed in partition '{part_name}'")
    if account in part.denied_accounts:
        raise JobRejected(f"Account '{account}' is denied in partition '{part_name}'")
    members = part.nodes
    nodelist = list(job.get("nodelist") or [])
    bad = [n for n in nodelist if n not in members]
    if bad:
        raise JobRejected(f"node(s) {', '.join(bad)} not in partition '{part_name}'")
    exclude = set(job.get("exclude") or [])
    cpus, mem = float(job.get("cpus_per_node") or 0), int(job.get("mem_per_node") or 0)
    node_num = int(job.get("node_num") or 1)
    gres = {k: int(v) for k, v in (job.get("gres") or {}).items() if int(v) > 0}

    def fits(name: str) -> bool:
        node = cluster.nodes[name]
        return _fits((node.cpus, node.memory, tuple(sorted(node.gres.items()))), cpus, mem, gres)

    able = sum(count for shape, count in _shapes(cluster, part_name) if _fits(shape, cpus, mem, gres))
    if exclude:
        member_set = set(members)
        able -= sum(1 for n in exclude if n in member_set and fits(n))
    if able < node_num:
        raise JobRejected(
            f"requested resources ({node_num} node(s) x {cpus:g} CPU, {mem >> 20} MB"
            f"{', ' + ','.join(f'{k}:{v}' for k, v in gres.items()) if gres else ''}) exceed what partition "
            f"'{part_name}' can ever provide")
    if nodelist and not all(n not in exclude and fits(n) for n in nodelist):
        raise JobRejected("requested node list cannot hold this job")


class SubmitChecks:
    """Entry point ``crane.job_filter: submit_checks``."""

    @hookimpl
    def crane_job_submit(self, job: dict[str, Any], cluster: ClusterInfo) -> None:
        """Reject what the partition does not accept or could never hold (see the module docstring)."""
        check(job, cluster)
