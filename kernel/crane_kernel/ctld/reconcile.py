"""Reconciling what nodes run with what the controller believes, and holding resources nobody may reuse yet.

Every heartbeat (and registration) of a node lists the steps it runs, ``(job, step, epoch)``,
and its job directories whose step has ended. The controller compares both ways:

* a step the node runs that the controller has ended (or does not know, or that belongs to an
  older launch) is killed: ``TerminateStep(reason="orphan")`` with the step's epoch;
* a job the controller thinks runs there that the node does not run is ended: when its
  directory is there but its supervisor is gone, the supervisor died without a final status
  (``kill -9``; a final status, when there is one, is on the stream before the heartbeat, so it
  has been applied already); when the node has no trace of a ``Running`` job, the node lost it.
  A ``Configuring`` job the node has no trace of yet is left alone: its launch may still be queued.

A job whose processes may still run where nobody can see them — its node is DOWN, or the job was
ended by the controller while a node still runs it — keeps its resources *held* (a :class:`Held`
record; the job stays in the controller's running set) until every such node confirms the
processes are gone: its heartbeat or registration no longer lists the step, the step's final
status arrives, or an admin confirms the node is powered off. A held job that the rules requeue
waits as ``Pending`` with reason :data:`REASON_NODE_DOWN` and becomes eligible only when it is
released. Held records are journaled (meta key :data:`META_KEY`) and restored at start-up.

This module holds the data, the rules, and the functions that apply them to a
:class:`~crane_kernel.ctld.core.Controller`; they are called with the controller's lock held.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crane_common.hostlist import compress
from crane_common.states import EC_CRANED_DOWN, FINAL_STATES, JobState

from crane_kernel import messages as m
from crane_kernel.ctld.jobs import job_from_spec

if TYPE_CHECKING:
    from crane_kernel.auth_types import Identity
    from crane_kernel.ctld.core import Controller
    from crane_kernel.ctld.jobs import Job
    from crane_kernel.ctld.nodes import NodeState

log = logging.getLogger("cranectld")

REASON_NODE_DOWN = "NodeDown"
"""Pending reason of a requeued job whose old processes are not yet confirmed gone."""

REASON_SUPERVISOR_LOST = "step supervisor died without a final status"
REASON_NODE_LOST_JOB = "node lost the job"

META_KEY = "held_allocations"
"""State-store meta key of the held records (job id -> :meth:`Held.to_json`)."""

INDEX_MAX_AGE = 1.0
"""Seconds the per-node index of running jobs may be stale (it is only used for direction 1)."""


@dataclass
class Held:
    """Resources of job ``job_id`` (launch ``epoch``) kept until its processes are confirmed gone.

    ``waiting`` are the nodes that have not confirmed yet. ``launched`` says the step had
    reported that it runs; if not, its launch may still be queued for the head node, so the head
    confirms only once it has shown a trace of the job (``traced``: a live step, or an ended
    directory, which the controller creates if need be with a ``TerminateStep``: ``fenced``).
    """

    job_id: int
    epoch: int
    nodes: tuple[str, ...]
    head: str
    waiting: set[str]
    launched: bool
    requeue: bool = False
    since: float = 0.0
    traced: set[str] = field(default_factory=set)
    fenced: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        """The journaled form (``traced``/``fenced`` are not kept: they are re-learnt)."""
        return {"epoch": self.epoch, "nodes": list(self.nodes), "head": self.head, "waiting": sorted(self.waiting),
                "launched": self.launched, "requeue": self.requeue, "since": self.since}

    @classmethod
    def from_json(cls, job_id: int, data: dict[str, Any]) -> "Held":
        """Inverse of :meth:`to_json`."""
        return cls(job_id=int(job_id), epoch=int(data.get("epoch", 0)), nodes=tuple(data.get("nodes", ())),
                   head=str(data.get("head", "")), waiting=set(data.get("waiting", ())),
                   launched=bool(data.get("launched", False)), requeue=bool(data.get("requeue", False)),
                   since=float(data.get("since", 0.0)))


def step_map(refs: Iterable[Any]) -> dict[int, int]:
    """``(job, step, epoch)`` triples (or bare job ids) as job id -> epoch; malformed entries are dropped."""
    out: dict[int, int] = {}
    for ref in refs or ():
        try:
            if isinstance(ref, int):
                job_id, epoch = ref, 0
            else:
                job_id, epoch = int(ref[0]), int(ref[2]) if len(ref) > 2 else 0
        except (TypeError, ValueError, IndexError):
            continue
        out[job_id] = max(epoch, out.get(job_id, 0))
    return out


def same_launch(reported: int, epoch: int) -> bool:
    """A reported epoch matches a launch epoch (0 on either side: not known, assume it does)."""
    return not reported or not epoch or reported == epoch


def confirms(held: Held, node: str, live: dict[int, int], ended: dict[int, int]) -> bool:
    """Does this report of ``node`` confirm that ``held``'s processes are gone from it?

    Updates ``held.traced``. A node that still lists the step does not confirm; the head of a
    job whose launch was never confirmed confirms only after showing a trace of the job.
    """
    if held.job_id in live:
        held.traced.add(node)
        return False
    if held.job_id in ended:
        held.traced.add(node)
        return True
    return held.launched or node != held.head or node in held.traced


@dataclass
class Reconciler:
    """The controller's reconciliation state: held allocations, what each node last listed, the node index."""

    held: dict[int, Held] = field(default_factory=dict)
    live_on: dict[str, dict[int, int]] = field(default_factory=dict)   # node -> job -> epoch, last report
    by_head: dict[str, list[int]] = field(default_factory=dict)
    index_at: float = -1e18
    index_max_age: float = INDEX_MAX_AGE
    deferred: bool = False       # inside :func:`batched`: journal the held table once, at its end
    dirty: bool = False

    def journal(self) -> dict[str, Any]:
        """The meta value that records every held allocation."""
        return {str(jid): h.to_json() for jid, h in self.held.items()}

    def jobs_headed_on(self, node: str, running: dict[int, Any], now: float) -> list[Any]:
        """Running-set jobs whose head is ``node``.

        The index is rebuilt once it is older than ``index_max_age`` (:data:`INDEX_MAX_AGE`), so
        that a heartbeat costs what its node runs, not what the cluster runs; a job started since
        is checked at a later report (what makes it end — a directory without supervisor — stays).
        """
        if not 0 <= now - self.index_at < self.index_max_age:
            index: dict[str, list[int]] = {}
            for job in running.values():
                if job.head_node:
                    index.setdefault(job.head_node, []).append(job.job_id)
            self.by_head, self.index_at = index, now
        out = []
        for jid in self.by_head.get(node, ()):
            job = running.get(jid)
            if job is not None and job.head_node == node:
                out.append(job)
        return out


# ------------------------------------------------------------------------------------------------
# applying the rules to the controller (called with ctl.lock held)
# ------------------------------------------------------------------------------------------------
def reconcile_node(ctl: "Controller", node: "NodeState", live: dict[int, int], ended: dict[int, int], now: float,
                   outbox: list) -> list:
    """Compare one node's report (job -> epoch, of its live steps and of its ended directories) with the jobs.

    Returns the journal rows of the jobs it changed; messages for nodes go to ``outbox``.
    """
    name = node.name
    stream = ctl.node_stream(name)
    recon = ctl.recon
    updates: list = []
    recon.live_on[name] = live
    # held resources: does this report confirm their processes are gone from this node?
    for held in [h for h in recon.held.values() if name in h.waiting]:
        if confirms(held, name, live, ended):
            held.waiting.discard(name)
            if held.job_id in ended:
                outbox.append((stream, m.FreeJob(job_id=held.job_id, epoch=ended[held.job_id])))
            if held.waiting:
                persist(ctl)
            else:
                updates += release_held(ctl, held, now, f"{name} confirmed its processes are gone")
        elif held.job_id not in live and name not in held.fenced:
            # its launch may still be queued for the node: make sure it never starts, and leave a trace
            held.fenced.add(name)
            outbox.append((stream, m.TerminateStep(job_id=held.job_id, reason="node", epoch=held.epoch)))
    # a step the node runs but the controller has ended, does not know, or moved on from: kill it
    for jid, epoch in live.items():
        job = ctl.jobs.get(jid)
        if job is None or job.state in FINAL_STATES or job.state == JobState.Pending or job.head_node != name \
                or not same_launch(epoch, job.epoch):
            outbox.append((stream, m.TerminateStep(job_id=jid, reason="orphan", epoch=epoch)))
    # a job directory left for a job that has ended: the node may forget it
    for jid in ended:
        job = ctl.jobs.get(jid)
        if jid not in recon.held and (job is None or job.state in FINAL_STATES):
            outbox.append((stream, m.FreeJob(job_id=jid, epoch=ended[jid])))
    # a job the controller thinks runs here that the node does not run: end it
    for job in recon.jobs_headed_on(name, ctl.running, now):
        jid = job.job_id
        if jid in recon.held or job.state not in (JobState.Running, JobState.Configuring, JobState.Suspended) or \
                job.interactive:
            continue  # (an interactive job has no batch step: its steps are reconciled by ctld/stepexec.py)
        if jid in live and same_launch(live[jid], job.epoch):
            continue
        if ended.get(jid) == job.epoch:
            # its directory is there, its supervisor gone, and no final status came before this report
            log.warning("job %d: the step supervisor on %s died without a final status", jid, name)
            outbox.append((stream, m.FreeJob(job_id=jid, epoch=job.epoch)))
            state = JobState.Cancelled if job.cancel_requested else JobState.Failed
            updates += ctl._finish(job, state, EC_CRANED_DOWN, now, outbox, persist=False,
                                   reason=REASON_SUPERVISOR_LOST)
        elif job.state in (JobState.Running, JobState.Suspended):
            log.warning("job %d: node %s no longer has it", jid, name)
            updates += ctl._end_lost(job, now, outbox, REASON_NODE_LOST_JOB)
    return updates


def final_status(ctl: "Controller", msg: Any, now: float) -> list:
    """A final status came for a job the controller had ended: if its resources are held, its node confirms.

    The supervisor reports only after it has killed and cleaned up the step, so the processes of
    that launch are gone from ``msg.node`` (even while its craned is down).
    """
    held = ctl.recon.held.get(msg.job_id)
    if held is None or msg.node not in held.waiting or not same_launch(getattr(msg, "epoch", 0), held.epoch):
        return []
    held.waiting.discard(msg.node)
    held.traced.add(msg.node)
    if held.waiting:
        persist(ctl)
        return []
    return release_held(ctl, held, now, f"the step's final status came from {msg.node}")


def may_still_run_on(ctl: "Controller", job: "Job") -> set[str]:
    """The nodes of ``job`` where its processes may still run when the controller ends it as lost.

    A DOWN node; a node whose last report listed the job; the head of a job whose launch has not
    been confirmed (the launch may still be queued for it).
    """
    out = set()
    for n in job.alloc_nodes:
        node = ctl.nodes.get(n)
        if node is None:
            continue
        if not node.alive or job.job_id in ctl.recon.live_on.get(n, {}) or \
                (n == job.head_node and job.state == JobState.Configuring):
            out.add(n)
    return out


def hold(ctl: "Controller", job: "Job", waiting: set[str], requeue: bool) -> None:
    """Keep ``job``'s resources until every node in ``waiting`` confirms its processes are gone."""
    ctl.recon.held[job.job_id] = Held(
        job_id=job.job_id, epoch=job.epoch, nodes=tuple(job.alloc_nodes), head=job.head_node, waiting=set(waiting),
        launched=job.state == JobState.Running, requeue=requeue, since=ctl.clock())
    persist(ctl)
    log.warning("job %d: its resources on %s are held until %s confirm(s) its processes are gone", job.job_id,
                compress(list(job.alloc_nodes)), compress(sorted(waiting)))


def release_held(ctl: "Controller", held: Held, now: float, why: str) -> list:
    """The processes of a held job are gone: free its resources, and queue it if it was requeued."""
    ctl.recon.held.pop(held.job_id, None)
    persist(ctl)
    job = ctl.running.get(held.job_id)
    if job is None:
        return []
    ctl._free(job)
    log.info("job %d: resources released (%s; held %.0fs)", job.job_id, why, now - held.since)
    if job.state != JobState.Pending:
        return []
    job.reason = ""
    job.devices = {}
    ctl.pending[job.job_id] = job
    ctl.wake.set()
    return [(int(job.state), ctl._rt_json(job), job.job_id)]


def persist(ctl: "Controller") -> None:
    """Journal the held allocations (done before the job changes that depend on them are written).

    Inside :func:`batched` the write is made once, when the batch ends (the table is one value:
    writing it per change made a node's loss cost the square of its jobs).
    """
    if ctl.recon.deferred:
        ctl.recon.dirty = True
        return
    ctl.store.write(meta={META_KEY: ctl.recon.journal()})


@contextlib.contextmanager
def batched(ctl: "Controller") -> Iterator[None]:
    """Coalesce the held table's journal writes of a loop into one, made as the loop ends.

    The caller writes the job rows that depend on the held table after the ``with`` block, so
    the table is still journaled before them.
    """
    recon = ctl.recon
    if recon.deferred:
        yield
        return
    recon.deferred, recon.dirty = True, False
    try:
        yield
    finally:
        recon.deferred = False
        if recon.dirty:
            recon.dirty = False
            persist(ctl)


def restore_held(ctl: "Controller") -> None:
    """At start-up, after the jobs were recovered: take the resources of journaled held allocations again."""
    records = ctl.store.get_meta(META_KEY, {}) or {}
    if not records:
        return
    missing = [int(k) for k in records if int(k) not in ctl.jobs]
    stored = {jid: (spec, rt) for jid, spec, rt in ctl.store.jobs_by_id(missing)} if missing else {}
    for key, data in records.items():
        held = Held.from_json(int(key), data)
        job = ctl.jobs.get(held.job_id)
        if job is not None and job.state != JobState.Pending:
            continue  # still active: the controller stopped before ending it; liveness checks redo that
        if job is None and held.job_id in stored:
            spec, rt = stored[held.job_id]
            job = job_from_spec(held.job_id, spec)
            job.apply_rt(rt)
        nodes = [ctl.nodes[n] for n in held.nodes if n in ctl.nodes]
        held.waiting &= set(ctl.nodes)
        if job is None or not nodes or not held.waiting:
            continue
        if job.job_id not in ctl.running:
            ctl._allocate(job, nodes, record=False)  # also takes a requeued job out of the pending queue
        ctl.recon.held[job.job_id] = held
    persist(ctl)
    if ctl.recon.held:
        log.info("%d held allocation(s) restored; they wait for their nodes to confirm", len(ctl.recon.held))


def confirm_node_down(ctl: "Controller", names: list[str], reason: str,
                      identity: "Identity") -> tuple[list[str], list[tuple[str, str]], list]:
    """An admin says nodes are down and run nothing of their jobs (e.g. powered off): act on it.

    The nodes are DOWN at once, their jobs end as node-lost (or are requeued), and the resources
    held for processes on them are released. Should such a node's craned in fact still run, its
    next heartbeat brings it back up and whatever it still runs is killed as an orphan. Returns
    the nodes done, the refused ones with why, and the outbox to publish.
    """
    ok: list[str] = []
    outbox: list = []
    updates: list = []
    now = ctl.clock()
    nodes, bad = ctl._modifiable_nodes(names, identity)
    for node in nodes:
        name = node.name
        log.warning("node %s confirmed down by %s: %s", name, identity.user, reason)
        if node.alive:
            ctl._emit_node(outbox, "node.down", name, now, reason=reason, actor=identity.user)
        node.alive = False
        node.refresh_usable()
        ctl.recon.live_on.pop(name, None)
        for job in [j for j in ctl.running.values() if name in j.alloc_nodes and j.job_id not in ctl.recon.held]:
            updates += ctl._end_lost(job, now, outbox, f"node {name} down: {reason}")
        for held in [h for h in ctl.recon.held.values() if name in h.waiting]:
            held.waiting.discard(name)
            if not held.waiting:
                updates += release_held(ctl, held, now, f"{name} confirmed down by {identity.user}")
        persist(ctl)
        ok.append(name)
    ctl.store.write(updates=updates)
    return ok, bad, outbox
