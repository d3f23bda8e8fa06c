"""Lean structures the scheduler and priority plugins work on.

This module is the written protocol between the kernel and a scheduler plugin
(the role Flux's RFC 27 plays for Flux). The controller and the trace
simulator both build a :class:`ClusterView` and call the ``crane_schedule``
hook with it; the plugin answers with a :class:`Plan`. Nothing here is a
pydantic model: these objects sit on the hot path of a scheduling cycle over
100,000 pending jobs, so they are ``__slots__`` classes with plain fields.

Conventions a plugin can rely on:

* Every job asks for ``node_num`` nodes, each providing ``cpus_per_node``
  CPUs (may be fractional), ``mem_per_node`` bytes and ``gres_per_node``.
  (``-n``/``--ntasks-per-node``/``-c`` are folded into this shape at submit.)
* ``SchedNode.cpus_free``/``mem_free``/``gres_free`` already subtract every
  running job; ``SchedRunning`` lists them with the time they are expected to
  end (start + time limit), which backfilling needs.
* A node is usable only when ``node.usable`` is true (registered, alive and
  not drained). A job with ``exclusive`` needs nodes with ``njobs == 0`` and
  makes them unusable for anyone else while it runs.
* The view is read-only for the plugin. The caller re-checks every start
  against live state before committing it, so a stale plan is harmless.
* Jobs the kernel knows cannot start now whatever the resources (held, a
  future begin time, an account the partition refuses, a time limit above
  its maximum; see :func:`ineligible_reason`) are not in ``pending``; a
  scheduler may apply the same function to views it builds itself. Nor
  are, in the controller, jobs a QoS limit keeps waiting (``ctld/limits.py``;
  reasons ``QosJobsResourceLimit``, ``QosCpuResourceLimit``, ``QosWallTimeLimit``).
* ``SchedJob.qos_priority`` is the account database's priority of the
  job's QoS (``None`` when it is not known there), for priority plugins.
* ``ClusterView.reservations`` (advance reservations, :class:`SchedReservation`) and
  ``ClusterView.job_reservations`` (job id -> the reservation it runs in): a plan must keep the
  rules of the "Advance reservations" block below; the caller re-checks every start with
  :func:`reservation_conflict`. Jobs whose reservation is not active, and jobs whose licenses
  are not free (``Licenses``), are not in ``pending`` in the controller.
* ``view.preemption`` (a :class:`PreemptRules`, or ``None`` when no rule is configured) and
  ``plan.preempt``/``plan.preempt_nodes`` are the preemption protocol
  (:mod:`crane_kernel.sched_types.preempt`, hook ``crane_preempt``).

Views across calls (``version`` and ``delta``). The controller and the
simulator keep ONE :class:`IncrementalView` for their whole life and change
it in place between calls; every view has two attributes that say so:

``version``
    ``None`` for a view built for one call (a plain :class:`ClusterView`);
    for an :class:`IncrementalView`, incremented by the caller right before
    every ``crane_schedule`` call.
``delta``
    ``None`` for a plain view; else a :class:`ViewDelta` listing everything
    that changed since the call with ``version - 1``: pending jobs added and
    removed, running jobs added and removed (``SchedNode`` free resources
    already reflect them), whether priorities changed, and ``other`` for
    anything else (nodes became usable or unusable, a pending job's request
    changed, ...).

A plugin may keep sorted structures across calls and apply only the delta
when it last saw *this same view object* at ``version - 1`` and
``delta.other`` is false; in every other case (a plain view, another view
object, a skipped version, ``other``) it must rebuild from the view. The
same job or running object is never both added and removed in one delta.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crane_kernel.sched_types.incremental import ViewDelta

# Pending reasons, with CraneSched's names. Lower index = higher precedence.
REASON_HELD = "Held"
REASON_BEGIN_TIME = "BeginTime"
REASON_DEPENDENCY_NEVER = "DependencyNeverSatisfied"
REASON_DEPENDENCY = "Dependency"
REASON_RESERVATION = "Reservation"
REASON_LICENSE = "License"
REASON_RESOURCE = "Resource"
REASON_RESOURCE_RESERVED = "ResourceReserved"
REASON_PRIORITY = "Priority"
REASON_PARTITION_LIMIT = "PartitionLimit"
REASON_ACCOUNT = "AccountNotAllowed"
REASON_QOS = "QoSLimit"
REASON_QOS_JOBS = "QosJobsResourceLimit"   # starting it would exceed MaxJobs / MaxJobsPerUser / MaxJobsPerAccount
REASON_QOS_CPU = "QosCpuResourceLimit"     # its CPUs (alone or with the user's running ones) exceed MaxCpusPerUser
REASON_QOS_WALL = "QosWallTimeLimit"       # its time limit is above the QoS's per-job maximum
REASON_NODES_UNAVAILABLE = "ReqNodeNotAvail"

REASON_PRECEDENCE: tuple[str, ...] = (
    REASON_HELD,
    REASON_BEGIN_TIME,
    REASON_DEPENDENCY_NEVER,
    REASON_DEPENDENCY,
    REASON_RESERVATION,
    REASON_LICENSE,
    REASON_ACCOUNT,
    REASON_QOS,
    REASON_PARTITION_LIMIT,
    REASON_QOS_WALL,       # the QoS limits (ctld/limits.py): checked after ineligible_reason's rules
    REASON_QOS_CPU,
    REASON_QOS_JOBS,
    REASON_NODES_UNAVAILABLE,
    REASON_RESOURCE,
    REASON_RESOURCE_RESERVED,
    REASON_PRIORITY,
)


class SchedJob:
    """A pending job as the scheduler sees it (one per pending job, reused across cycles)."""

    __slots__ = (
        "job_id", "partition", "priority", "submit_time", "node_num", "cpus_per_node",
        "mem_per_node", "gres_per_node", "time_limit", "nodelist", "exclude", "exclusive",
        "account", "user", "uid", "qos", "held", "begin_time", "pinned_priority", "qos_priority",
    )

    def __init__(
        self,
        job_id: int,
        partition: str,
        node_num: int = 1,
        cpus_per_node: float = 1.0,
        mem_per_node: int = 0,
        time_limit: int = 3600,
        *,
        priority: float = 0.0,
        submit_time: float = 0.0,
        gres_per_node: Mapping[str, int] | None = None,
        nodelist: frozenset[str] | None = None,
        exclude: frozenset[str] | None = None,
        exclusive: bool = False,
        account: str = "",
        user: str = "",
        uid: int = 0,
        qos: str = "",
        held: bool = False,
        begin_time: float = 0.0,
        pinned_priority: float | None = None,
        qos_priority: float | None = None,
    ) -> None:
        self.job_id = job_id
        self.partition = partition
        self.node_num = node_num
        self.cpus_per_node = cpus_per_node
        self.mem_per_node = mem_per_node
        self.time_limit = time_limit
        self.priority = priority
        self.submit_time = submit_time
        self.gres_per_node = gres_per_node or None
        self.nodelist = nodelist or None
        self.exclude = exclude or None
        self.exclusive = exclusive
        self.account = account
        self.user = user
        self.uid = uid
        self.qos = qos
        self.held = held
        self.begin_time = begin_time
        self.pinned_priority = pinned_priority
        self.qos_priority = qos_priority  # the account database's priority of its QoS; None: not known there

    def __repr__(self) -> str:
        return (f"SchedJob({self.job_id}, {self.partition!r}, N={self.node_num}, "
                f"cpu={self.cpus_per_node}, mem={self.mem_per_node}, t={self.time_limit})")


class SchedNode:
    """A node's capacity and what is free on it right now."""

    __slots__ = (
        "name", "index", "partitions", "cpus_total", "mem_total", "gres_total",
        "cpus_free", "mem_free", "gres_free", "usable", "njobs",
    )

    def __init__(
        self,
        name: str,
        index: int,
        cpus_total: float,
        mem_total: int,
        *,
        partitions: tuple[str, ...] = (),
        gres_total: Mapping[str, int] | None = None,
        cpus_free: float | None = None,
        mem_free: int | None = None,
        gres_free: dict[str, int] | None = None,
        usable: bool = True,
        njobs: int = 0,
    ) -> None:
        self.name = name
        self.index = index
        self.partitions = partitions
        self.cpus_total = cpus_total
        self.mem_total = mem_total
        self.gres_total = dict(gres_total or {})
        self.cpus_free = cpus_total if cpus_free is None else cpus_free
        self.mem_free = mem_total if mem_free is None else mem_free
        self.gres_free = dict(self.gres_total) if gres_free is None else gres_free
        self.usable = usable
        self.njobs = njobs

    def __repr__(self) -> str:
        return f"SchedNode({self.name!r}, cpu={self.cpus_free}/{self.cpus_total}, mem={self.mem_free}/{self.mem_total})"


class SchedRunning:
    """A running job: where it runs, what it holds per node, and when it is expected to end."""

    __slots__ = ("job_id", "partition", "nodes", "cpus_per_node", "mem_per_node",
                 "gres_per_node", "end_time", "exclusive", "qos", "start_time")

    def __init__(
        self,
        job_id: int,
        nodes: tuple[int, ...],
        cpus_per_node: float,
        mem_per_node: int,
        end_time: float,
        *,
        partition: str = "",
        gres_per_node: Mapping[str, int] | None = None,
        exclusive: bool = False,
        qos: str = "",
        start_time: float = 0.0,
    ) -> None:
        self.job_id = job_id
        self.partition = partition
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node
        self.mem_per_node = mem_per_node
        self.gres_per_node = gres_per_node or None
        self.end_time = end_time
        self.exclusive = exclusive
        self.qos = qos                # its QoS (preemption by QoS)
        self.start_time = start_time  # when it was allocated (preemption picks the youngest first)

    def with_end(self, end_time: float) -> "SchedRunning":
        """A copy expected to end at ``end_time`` (views list a changed end as a new object)."""
        return SchedRunning(self.job_id, self.nodes, self.cpus_per_node, self.mem_per_node, end_time,
                            partition=self.partition, gres_per_node=self.gres_per_node, exclusive=self.exclusive,
                            qos=self.qos, start_time=self.start_time)


class SchedPartition:
    """A partition: its nodes (indices into ``ClusterView.nodes``) and its access rules."""

    __slots__ = ("name", "node_indices", "priority", "allowed_accounts", "denied_accounts",
                 "max_time_limit", "preempt_mode")

    def __init__(
        self,
        name: str,
        node_indices: tuple[int, ...],
        priority: int = 0,
        *,
        allowed_accounts: frozenset[str] | None = None,
        denied_accounts: frozenset[str] | None = None,
        max_time_limit: int = 0,
        preempt_mode: str = "OFF",
    ) -> None:
        self.name = name
        self.node_indices = node_indices
        self.priority = priority
        self.allowed_accounts = allowed_accounts or None
        self.denied_accounts = denied_accounts or None
        self.max_time_limit = max_time_limit
        self.preempt_mode = preempt_mode  # how its jobs are preempted by higher-priority partitions' (PREEMPT_MODES)


class ClusterView:
    """Everything a scheduling pass may look at.

    ``pending`` holds the candidate jobs in no particular order; the scheduler
    orders them (by ``priority`` descending, then ``submit_time``, then
    ``job_id``, unless its policy says otherwise). ``node_index`` maps a node
    name to its index in ``nodes``. ``version`` and ``delta`` are ``None``: a
    plain view is built for one call (see the module docstring and
    :class:`IncrementalView`).
    """

    __slots__ = ("nodes", "partitions", "pending", "running", "node_index", "config", "version", "delta",
                 "reservations", "job_reservations", "preemption")

    def __init__(
        self,
        nodes: list[SchedNode],
        partitions: Mapping[str, SchedPartition],
        pending: list[SchedJob],
        running: list[SchedRunning] | None = None,
        *,
        config: Mapping[str, object] | None = None,
    ) -> None:
        self.nodes = nodes
        self.partitions = partitions
        self.pending = pending
        self.running = running if running is not None else []
        self.node_index = {n.name: n.index for n in nodes}
        self.config = config or {}
        self.version: int | None = None
        self.delta: ViewDelta | None = None
        self.reservations: list[SchedReservation] = []  # advance reservations (see SchedReservation)
        self.job_reservations: Mapping[int, str] = {}   # pending job id -> the reservation it runs in
        self.preemption: PreemptRules | None = None  # None: no preemption rule is configured


class Plan:
    """A scheduler's answer for one pass.

    * ``starts``: ``(job_id, node_indices)`` pairs to start now, in decision order.
    * ``reasons``: why a job that does not start now stays pending.
    * ``reserved``: the start time planned for a job that got a future slot
      (backfilling's reservations); shown to users as the expected start.
    * ``considered``: how many pending jobs the pass looked at (for the
      decisions-per-second figure).
    * ``preempt`` and ``preempt_nodes``: see :class:`PreemptOrder` (filled by the preempt plugins).
    """

    __slots__ = ("starts", "reasons", "reserved", "considered", "preempt", "preempt_nodes")

    def __init__(self) -> None:
        self.starts: list[tuple[int, list[int]]] = []
        self.reasons: dict[int, str] = {}
        self.reserved: dict[int, float] = {}
        self.considered = 0
        self.preempt: dict[int, PreemptOrder] = {}       # victim job id -> order
        self.preempt_nodes: dict[int, list[int]] = {}    # preemptor job id -> the nodes it is to run on


def ineligible_reason(job: SchedJob, part: SchedPartition | None, now: float) -> str | None:
    """Why ``job`` may not be scheduled now whatever the free resources, or ``None`` when it may.

    The one eligibility rule of the kernel, used by the controller (such jobs stay out of the
    view), the simulator and the bundled schedulers: no partition (``ReqNodeNotAvail``), held
    (``Held``), a begin time after ``now`` (``BeginTime``), an account the partition does not
    allow or denies (``AccountNotAllowed``), a time limit above the partition's maximum
    (``PartitionLimit``). Checked in this order (the reasons' precedence).
    """
    if part is None:
        return REASON_NODES_UNAVAILABLE
    if job.held:
        return REASON_HELD
    if job.begin_time > now:
        return REASON_BEGIN_TIME
    if (part.allowed_accounts is not None and job.account not in part.allowed_accounts) or (
            part.denied_accounts is not None and job.account in part.denied_accounts):
        return REASON_ACCOUNT
    if part.max_time_limit and job.time_limit > part.max_time_limit:
        return REASON_PARTITION_LIMIT
    return None


def priority_order_key(job: SchedJob) -> tuple[float, float, int]:
    """Sort key for the usual queue order: higher priority first, then older, then lower id."""
    return (-job.priority, job.submit_time, job.job_id)


# ---- Advance reservations (ctld/reservations.py keeps them; docs/reservations.md) ---------------
# The mechanism every scheduler shares: ``ClusterView.reservations`` lists the reservations not yet
# over, ``ClusterView.job_reservations`` maps a pending job's id to the reservation it asked for
# (``-r``; absent: none). The rules a plan must keep (the controller re-checks each start with
# :func:`reservation_conflict`, so a plugin cannot break them):
#
# * a job without a reservation never uses a reserved node during ``[start_time, end_time)``:
#   starting now it must end (now + its time limit) by the reservation's start;
# * a job with a reservation starts only while it is active, only on its nodes (and, if it runs
#   past the reservation's end, not into another reservation's window).
REASON_RESERVATION_WAIT = "Reservation"                       # -r: not active yet (or nodes reserved for others)
REASON_RESERVED_MAINT = "ReqNodeNotAvail, Reserved for maintenance"  # kept off nodes of a MAINT reservation
REASON_RESERVATION_DELETED = "Reservation deleted"            # -r of a reservation that ended or was deleted
REASON_RESERVATION_CHANGED = "Reservation changed"            # -r of a reservation that no longer admits the job
REASON_LICENSES = "Licenses"                                  # -L: not enough of its licenses free


class SchedReservation:
    """A reservation as schedulers see it: nodes (indices) held for its jobs over ``[start_time, end_time)``."""

    __slots__ = ("name", "start_time", "end_time", "nodes", "node_set", "maint")

    def __init__(self, name: str, start_time: float, end_time: float, nodes: tuple[int, ...], *,
                 maint: bool = False) -> None:
        self.name = name
        self.start_time = start_time
        self.end_time = end_time
        self.nodes = tuple(sorted(nodes))
        self.node_set = frozenset(self.nodes)
        self.maint = maint

    def active(self, now: float) -> bool:
        """Whether ``now`` is inside the reservation's window."""
        return self.start_time <= now < self.end_time

    def overlaps(self, t0: float, t1: float) -> bool:
        """Whether ``[t0, t1)`` meets the reservation's window."""
        return self.start_time < t1 and self.end_time > t0

    def blocked_reason(self) -> str:
        """The pending reason of a job this reservation keeps off its nodes."""
        return REASON_RESERVED_MAINT if self.maint else REASON_RESERVATION_WAIT

    def __repr__(self) -> str:
        return f"SchedReservation({self.name!r}, {self.start_time}-{self.end_time}, nodes={self.nodes})"


def job_end(job: SchedJob, start: float) -> float:
    """When ``job`` started at ``start`` is expected to end (a time limit of 0 or less: never)."""
    return start + job.time_limit if job.time_limit > 0 else float("inf")


def find_reservation(view: ClusterView, name: str) -> SchedReservation | None:
    """The view's reservation named ``name``, or ``None``."""
    for r in view.reservations:
        if r.name == name:
            return r
    return None


def reserved_against(view: ClusterView, job: SchedJob, t0: float, t1: float) -> list[SchedReservation]:
    """The reservations (other than the job's own) whose window meets ``[t0, t1)``: their nodes are closed to it."""
    if not view.reservations:
        return []
    own = view.job_reservations.get(job.job_id, "")
    return [r for r in view.reservations if r.name != own and r.overlaps(t0, t1)]


def reservation_conflict(view: ClusterView, job: SchedJob, nodes: list[int] | tuple[int, ...],
                         now: float) -> str | None:
    """Why starting ``job`` now on ``nodes`` (indices) would break a reservation, or ``None`` if it would not.

    The kernel's re-check of every planned start (the controller's commit and ``crane sim``).
    """
    own = view.job_reservations.get(job.job_id, "") if view.job_reservations else ""
    if own:
        r = find_reservation(view, own)
        if r is None:
            return REASON_RESERVATION_DELETED
        if not r.active(now) or not r.node_set.issuperset(nodes):
            return REASON_RESERVATION_WAIT
    if not view.reservations:
        return None
    end = job_end(job, now)
    for r in view.reservations:
        if r.name != own and r.overlaps(now, end) and not r.node_set.isdisjoint(nodes):
            return r.blocked_reason()
    return None


from crane_kernel.sched_types.incremental import IncrementalView, ViewDelta  # noqa: E402 - needs ClusterView

# --- preemption (sched_types/preempt.py: the rules, the one rule function, the plan's orders) ---
from crane_kernel.sched_types.preempt import (  # noqa: E402
    PREEMPT_CANCEL,
    PREEMPT_MODES,
    PREEMPT_OFF,
    PREEMPT_REQUEUE,
    PREEMPT_SUSPEND,
    REASON_PREEMPTED,
    REASON_WAITING_PREEMPTION,
    PreemptOrder,
    PreemptRules,
    PreemptTable,
    node_fits_after,
    preempt_mode,
    preempt_table,
)

# --- end of preemption ---

__all__ = [
    "REASON_ACCOUNT", "REASON_BEGIN_TIME", "REASON_DEPENDENCY", "REASON_DEPENDENCY_NEVER", "REASON_HELD",
    "REASON_LICENSE", "REASON_NODES_UNAVAILABLE", "REASON_PARTITION_LIMIT", "REASON_PRECEDENCE", "REASON_PRIORITY",
    "REASON_QOS", "REASON_QOS_CPU", "REASON_QOS_JOBS", "REASON_QOS_WALL", "REASON_RESERVATION", "REASON_RESOURCE",
    "REASON_RESOURCE_RESERVED", "ClusterView",
    "REASON_LICENSES", "REASON_RESERVATION_CHANGED", "REASON_RESERVATION_DELETED", "REASON_RESERVATION_WAIT",
    "REASON_RESERVED_MAINT", "SchedReservation", "find_reservation", "job_end", "reservation_conflict",
    "reserved_against",
    "IncrementalView", "Plan", "SchedJob", "SchedNode", "SchedPartition", "SchedRunning", "ViewDelta",
    "ineligible_reason", "priority_order_key",
    # preemption
    "PREEMPT_CANCEL", "PREEMPT_MODES", "PREEMPT_OFF", "PREEMPT_REQUEUE", "PREEMPT_SUSPEND", "REASON_PREEMPTED",
    "REASON_WAITING_PREEMPTION", "PreemptOrder", "PreemptRules", "PreemptTable", "node_fits_after", "preempt_mode",
    "preempt_table",
]
