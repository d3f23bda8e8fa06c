"""Preemption in the scheduler protocol: the rules as plain data, the one rule function, the plan's orders.

Part of :mod:`crane_kernel.sched_types` (which re-exports every name here). The controller (and
``crane sim``) puts a :class:`PreemptRules` in ``view.preemption`` when any rule is configured;
the preempt plugins (hook ``crane_preempt``, slot ``crane.preempt``) read it, with the scheduler's
plan, and add :class:`PreemptOrder` entries to ``plan.preempt`` (victim job id -> order) and the
preemptor's nodes to ``plan.preempt_nodes`` (preemptor job id -> node indices). The kernel
validates every order with the same :func:`preempt_mode` and :func:`node_fits_after` before it
carries it out (``ctld/preempt.py``): a plugin can neither preempt a job the rules protect nor one
its preemptor does not need.

Two rules, checked in this order (docs/preemption.md):

* **QoS**: the preemptor's QoS lists the victim's QoS in its ``Preempt``; the mode is the victim's
  QoS's ``PreemptMode``, else the preemptor's, else ``CANCEL`` (when both say ``OFF``).
* **Partition priority**: the preemptor's partition has a higher ``priority`` than the victim's,
  and the victim's partition has a ``PreemptMode`` other than ``OFF`` (that is the mode).

``SUSPEND`` frees only the victim's CPUs (its memory and GRES stay with its frozen processes) and
never applies to a node-exclusive victim; ``CANCEL`` and ``REQUEUE`` free everything it holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from crane_kernel import gres as gres_rules

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, SchedJob, SchedNode, SchedRunning

PREEMPT_OFF = "OFF"
PREEMPT_CANCEL = "CANCEL"
PREEMPT_REQUEUE = "REQUEUE"
PREEMPT_SUSPEND = "SUSPEND"
PREEMPT_MODES: tuple[str, ...] = (PREEMPT_OFF, PREEMPT_CANCEL, PREEMPT_REQUEUE, PREEMPT_SUSPEND)

REASON_PREEMPTED = "Preempted"                       # a victim's reason (CraneSched's name)
REASON_WAITING_PREEMPTION = "WaitingForPreemption"   # a preemptor waiting for its victims to end

_EPS = 1e-9


class PreemptRules:
    """The preemption rules of the cluster as plain data (``view.preemption``).

    * ``qos_preempts``: QoS name -> the QoS names its jobs may preempt.
    * ``qos_mode``: QoS name -> its ``PreemptMode`` (``PREEMPT_MODES``).
    * ``in_progress``: preemptor job id -> its victims still ending; such a preemptor waits
      (reason ``WaitingForPreemption``) and needs no new order.
    * ``victims``: every running job already being preempted (never a victim twice).
    * ``modes``: the modes the kernel can carry out now (an order with another mode is refused).
    """

    __slots__ = ("qos_preempts", "qos_mode", "in_progress", "victims", "modes")

    def __init__(self, qos_preempts: Mapping[str, frozenset[str]] | None = None,
                 qos_mode: Mapping[str, str] | None = None, *,
                 in_progress: Mapping[int, frozenset[int]] | None = None,
                 victims: frozenset[int] = frozenset(),
                 modes: frozenset[str] = frozenset(PREEMPT_MODES[1:])) -> None:
        self.qos_preempts = dict(qos_preempts or {})
        self.qos_mode = dict(qos_mode or {})
        self.in_progress = dict(in_progress or {})
        self.victims = victims
        self.modes = modes


class PreemptOrder:
    """One victim of a plan: the job whose start needs it gone (``preemptor``) and how (``mode``)."""

    __slots__ = ("preemptor", "mode")

    def __init__(self, preemptor: int, mode: str) -> None:
        self.preemptor = preemptor
        self.mode = mode

    def __repr__(self) -> str:
        return f"PreemptOrder(by={self.preemptor}, {self.mode})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PreemptOrder) and (self.preemptor, self.mode) == (other.preemptor, other.mode)

    def __hash__(self) -> int:
        return hash((self.preemptor, self.mode))


class PreemptTable:
    """The modes the jobs of one class (partition and QoS) may preempt with: the rules for that class, as lookups.

    ``by_qos``: victim QoS -> mode (the QoS rule); ``by_partition``: victim partition -> mode (the
    partition rule, for a victim the QoS rule does not cover). Built by :func:`preempt_table`;
    :meth:`mode` applies it to one running job. A plugin looking at many running jobs for the
    same class builds the table once.
    """

    __slots__ = ("by_qos", "by_partition", "victims")

    def __init__(self, by_qos: dict[str, str], by_partition: dict[str, str], victims: frozenset[int]) -> None:
        self.by_qos = by_qos
        self.by_partition = by_partition
        self.victims = victims

    def empty(self) -> bool:
        """True when the class may preempt nothing at all."""
        return not self.by_qos and not self.by_partition

    def mode(self, victim: SchedRunning) -> str | None:
        """The mode a job of the class may preempt ``victim`` with, or ``None``."""
        if victim.job_id in self.victims:
            return None
        mode = self.by_qos.get(victim.qos) if victim.qos else None
        if mode is None:
            mode = self.by_partition.get(victim.partition)
        if not mode or (mode == PREEMPT_SUSPEND and victim.exclusive):
            return None  # ("" : the QoS rule covers it, with a mode the kernel cannot carry out)
        return mode


def preempt_table(job: SchedJob, view: ClusterView) -> PreemptTable:
    """The rules for ``job``'s class (its partition and QoS) as a :class:`PreemptTable` (see the module docstring)."""
    rules = view.preemption
    if rules is None:
        return PreemptTable({}, {}, frozenset())
    by_qos: dict[str, str] = {}
    for victim_qos in rules.qos_preempts.get(job.qos, ()) if job.qos else ():
        mode = rules.qos_mode.get(victim_qos, PREEMPT_OFF)
        if mode == PREEMPT_OFF:
            mode = rules.qos_mode.get(job.qos, PREEMPT_OFF)
        by_qos[victim_qos] = mode if mode != PREEMPT_OFF else PREEMPT_CANCEL
    by_partition: dict[str, str] = {}
    mine = view.partitions.get(job.partition)
    if mine is not None:
        for name, theirs in view.partitions.items():
            if theirs.preempt_mode != PREEMPT_OFF and mine.priority > theirs.priority:
                by_partition[name] = theirs.preempt_mode
    # a QoS the rule covers is decided by it alone (and a mode the kernel cannot carry out means "not at all")
    by_qos = {q: (m if m in rules.modes else "") for q, m in by_qos.items()}
    by_partition = {p: m for p, m in by_partition.items() if m in rules.modes}
    return PreemptTable(by_qos, by_partition, rules.victims)


def preempt_mode(job: SchedJob, victim: SchedRunning, view: ClusterView) -> str | None:
    """The mode ``job`` may preempt running ``victim`` with under the view's rules, or ``None``.

    The one rule, used by the preempt plugins and by the kernel's check of their orders (see the
    module docstring; :func:`preempt_table` is the same rule for many victims at once). A job never
    preempts itself, a victim already being preempted, or with a mode the kernel cannot carry out
    (``rules.modes``).
    """
    if view.preemption is None or victim.job_id == job.job_id:
        return None
    return preempt_table(job, view).mode(victim) or None


def node_fits_after(job: SchedJob, node: SchedNode, freed: Iterable[tuple[SchedRunning, str]],
                    taken: tuple[float, int, Mapping[str, int] | None] = (0.0, 0, None)) -> bool:
    """Whether ``job`` fits on ``node`` once the ``(victim, mode)`` pairs running there are gone.

    ``taken``: CPUs, memory and GRES other decisions of the same plan already use on the node.
    A node-exclusive job needs every job of the node among the victims (and none suspended).
    """
    cpus = node.cpus_free - taken[0]
    mem = node.mem_free - taken[1]
    gres = dict(node.gres_free)
    if taken[2]:
        gres_rules.take(gres, taken[2])
    gone = 0
    for victim, mode in freed:
        gone += 1
        if victim.exclusive:
            cpus, mem, gres = node.cpus_total, node.mem_total, dict(node.gres_total)
            continue
        cpus += victim.cpus_per_node
        if mode != PREEMPT_SUSPEND:
            mem += victim.mem_per_node
            if victim.gres_per_node:
                gres_rules.give(gres, dict(victim.gres_per_node))
    if job.exclusive and (node.njobs - gone > 0 or any(m == PREEMPT_SUSPEND for _, m in freed)):
        return False
    if cpus + _EPS < job.cpus_per_node or mem < job.mem_per_node:
        return False
    return not job.gres_per_node or gres_rules.fits(gres, job.gres_per_node)


__all__ = [
    "PREEMPT_CANCEL", "PREEMPT_MODES", "PREEMPT_OFF", "PREEMPT_REQUEUE", "PREEMPT_SUSPEND", "REASON_PREEMPTED",
    "REASON_WAITING_PREEMPTION", "PreemptOrder", "PreemptRules", "PreemptTable", "node_fits_after", "preempt_mode",
    "preempt_table",
]
