"""The ``preempt_standard`` preempt plugin: which running jobs make room for a waiting higher-priority job.

Entry point ``crane.preempt: preempt_standard`` (the default of ``Plugins.Preempt``). The kernel
calls it after the scheduler plugin, in the same scheduling phase, whenever a preemption rule is
configured (``view.preemption``); the rules themselves — who may preempt whom, and how — are the
kernel's :func:`~crane_kernel.sched_types.preempt_mode`. This plugin is the policy of *which*
victims (:mod:`crane_preempt_standard.select`):

1. Candidates are the pending jobs the plan did not start and that wait for resources (reason
   ``Resource``, ``Priority`` or ``ResourceReserved``), in queue order, at most ``max_preemptors``
   of them per pass, skipping jobs whose earlier preemption is still in progress.
2. For each candidate and each node of its partition it may use, the victims on that node are
   taken youngest first (latest start: the least work lost; CraneSched's and Slurm's order) until
   the job fits, then every victim the job fits without is put back (a minimal set on that node).
3. The job's ``node_num`` nodes are those needing the fewest victims (then the fewest CPUs
   preempted, then the lowest index); a node that is already free costs nothing, and a job that
   fits on enough free nodes preempts nobody (the scheduler's order kept it waiting, not room).
   A one-node job takes the first node needing a single victim (none needs fewer, short of a free one).
4. The chosen victims get a :class:`~crane_kernel.sched_types.PreemptOrder` and cannot be chosen
   again in the pass; the job's nodes are noted (``plan.preempt_nodes``) and counted as taken for
   the later candidates. A job whose victims are all ``SUSPEND`` starts in the same plan (their
   CPUs are free at once); the others wait with reason ``WaitingForPreemption``.

Settings (``Plugins.Settings.preempt_standard``): ``max_preemptors`` (int >= 0, default 16).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crane_kernel import hookimpl

from crane_preempt_standard.select import select_victims

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, Plan

__all__ = ["StandardPreempt"]


class StandardPreempt:
    """Entry point ``crane.preempt: preempt_standard`` (see the module docstring)."""

    def __init__(self) -> None:
        self.max_preemptors = 16

    @hookimpl
    def crane_plugin_configure(self, settings: Mapping[str, Any]) -> None:
        """Apply ``max_preemptors``; an unknown key or a bad value raises ``ValueError``."""
        unknown = set(settings) - {"max_preemptors"}
        if unknown:
            raise ValueError(f"preempt_standard: unknown setting(s) {sorted(unknown)}; known: ['max_preemptors']")
        if "max_preemptors" in settings:
            value = settings["max_preemptors"]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError("preempt_standard: max_preemptors must be an integer >= 0")
            self.max_preemptors = value

    @hookimpl
    def crane_preempt(self, view: ClusterView, plan: Plan, now: float) -> bool | None:
        """Add the orders of one pass to ``plan`` (see the module docstring); True when any were added."""
        if view.preemption is None or not self.max_preemptors or not view.running:
            return None
        return select_victims(view, plan, now, self.max_preemptors) or None
