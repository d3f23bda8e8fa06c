"""Preemption: the rules handed to the preempt plugin, the check of its orders, and carrying them out.

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin). The policy — which running jobs
make room for which waiting job — is the preempt plugin's (hook ``crane_preempt``, called right
after the scheduler plugin in the same phase); the rules — who may preempt whom, with what mode —
are :func:`crane_kernel.sched_types.preempt_mode`. This module is the mechanism:

* :meth:`PreemptMixin.preemption_rules` builds ``view.preemption`` (the QoS ``Preempt`` lists and
  modes, the preemptions in progress) before each scheduling call; ``None`` when no rule is
  configured, so a cluster without preemption pays nothing. The QoS rule counts only when the
  account database enforces QoS (``Accounting.Enforce`` has ``qos`` or ``limits``): otherwise a
  job's QoS is whatever its submitter wrote, and anyone could claim a preempting one.
* :meth:`PreemptMixin.plan_starts` is how ``_commit`` walks a plan's starts: the ordinary ones
  first (a start that would take room a waiting preemptor was promised is refused), then the
  preempt orders, checked (:meth:`_checked_orders`) and carried out, then the starts of the
  preemptors whose victims were suspended.
* A victim is preempted by mode: ``CANCEL`` ends it (state ``Cancelled``, reason ``Preempted``)
  through the terminate path ``ccancel`` takes; ``REQUEUE`` sends it back to Pending (same id, its
  history kept); ``SUSPEND`` freezes it and lends its CPUs to the preemptor until that one ends.
  ``CANCEL`` and ``REQUEUE`` wait ``CraneCtld.PreemptGraceTime`` first (the job is told with a
  SIGTERM when the node supports signals), then act.
* The preemptor waits (reason ``WaitingForPreemption``) and the room is kept for it (a *claim*:
  no other start may take it); once its victims are gone, the next commit starts it first, on the
  nodes its plan named.

Every change is journaled with the victim's ``rt`` (``"pre"``: preemptor, mode, when to act), and
:meth:`restore_preemption` brings it back at recovery; claims are not journaled (after a restart
the plugin chooses again).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable, Iterator
from typing import Any

from crane_common.states import EC_TERMINATED, FINAL_STATES, JobState

from crane_kernel import messages as m
from crane_kernel.ctld.jobs import Job
from crane_kernel.ctld.lifecycle import LifecycleRefused
from crane_kernel.sched_types import (
    PREEMPT_CANCEL,
    PREEMPT_OFF,
    PREEMPT_REQUEUE,
    PREEMPT_SUSPEND,
    REASON_PREEMPTED,
    REASON_RESOURCE,
    REASON_WAITING_PREEMPTION,
    Plan,
    PreemptOrder,
    PreemptRules,
    SchedRunning,
    ineligible_reason,
    node_fits_after,
    preempt_mode,
)

log = logging.getLogger("cranectld")

__all__ = ["Claim", "PreemptMixin", "Preemption"]

_ACTIVE = (JobState.Running, JobState.Configuring)


class Preemption:
    """One victim's preemption: by whom, how, when its mode's action is (or was) carried out."""

    __slots__ = ("preemptor", "mode", "act_at", "acted", "epoch")

    def __init__(self, preemptor: int, mode: str, act_at: float, epoch: int, acted: bool = False) -> None:
        self.preemptor = preemptor
        self.mode = mode
        self.act_at = act_at
        self.epoch = epoch    # the victim's launch it preempts (a requeued victim's next run is free again)
        self.acted = acted

    def rt(self) -> list:
        """The journal form (in the victim's ``rt`` under ``"pre"``)."""
        return [self.preemptor, self.mode, self.act_at, self.acted, self.epoch]


class Claim:
    """The room a waiting preemptor was promised: its nodes and the victims still to leave them."""

    __slots__ = ("nodes", "victims")

    def __init__(self, nodes: list[int], victims: set[int]) -> None:
        self.nodes = nodes
        self.victims = victims


class PreemptMixin:
    """Preemption rules, order checks and their execution, for the controller."""

    def _init_preempt(self) -> None:
        self.preempted: dict[int, Preemption] = {}   # victim job id -> its preemption (kept while the job is)
        self.claims: dict[int, Claim] = {}           # waiting preemptor -> the room kept for it
        self.lent: dict[int, list[int]] = {}         # running preemptor -> the victims it suspended
        self.lent_view: dict[int, SchedRunning] = {}  # suspended victim -> its running entry, out of the view
        self.to_resume: list[int] = []               # suspended victims whose preemptor is gone
        self.relend: list[int] = []                  # recovered suspended victims, lent again at the first tick

    # ------------------------------------------------------------------
    # before the call: the rules, the timed actions
    # ------------------------------------------------------------------
    def preemption_modes(self) -> frozenset[str]:
        """The modes this controller can carry out (``REQUEUE``/``SUSPEND`` need the lifecycle mechanism)."""
        modes = {PREEMPT_CANCEL}
        if callable(getattr(self, "requeue_job", None)):
            modes.add(PREEMPT_REQUEUE)
        if callable(getattr(self, "suspend_job", None)) and callable(getattr(self, "resume_job", None)):
            modes.add(PREEMPT_SUSPEND)
        return frozenset(modes)

    def preemption_rules(self) -> PreemptRules | None:
        """``view.preemption`` for the next call, or None when no rule is configured (or no plugin decides)."""
        if not self.pm.implemented("crane_preempt"):
            return None
        qos = self.accounts.qos
        enforced = bool({"qos", "limits"} & set(self.accounts.enforce))  # else a user could name any QoS
        preempts = {name: frozenset(q.preempt) for name, q in qos.items() if q.preempt} if enforced else {}
        if not preempts and all(p.preempt_mode == PREEMPT_OFF for p in self.partitions.values()):
            return None
        victims = frozenset(v for v in self.preempted if self._being_preempted(v))
        in_progress = {pid: frozenset(c.victims) for pid, c in self.claims.items()}
        return PreemptRules(preempts, {name: q.preempt_mode for name, q in qos.items()}, in_progress=in_progress,
                            victims=victims, modes=self.preemption_modes())

    def _holds(self, job_id: int) -> bool:
        """Whether a preemptor still holds what its suspended victims lent it."""
        job = self.jobs.get(job_id)
        return job is not None and job.job_id in self.running_view

    def _being_preempted(self, job_id: int) -> bool:
        """Whether this launch of the job is a victim that still holds (or will free) resources."""
        rec, job = self.preempted.get(job_id), self.jobs.get(job_id)
        return rec is not None and job is not None and job.epoch == rec.epoch and job.state not in FINAL_STATES \
            and (job_id in self.running_view or job_id in self.lent_view)

    def preemption_tick(self, now: float, outbox: list) -> list:
        """Act on victims whose grace is over, drop claims that are done; return journal rows (lock held)."""
        rows: list = []
        if self.relend:
            self._relend_recovered()
        for holder in [p for p in self.lent if not self._holds(p)]:
            rows += self.give_back_lent(holder, now, outbox)  # it ended (or was requeued): its victims resume
        if self.to_resume:
            rows += self.resume_waiting(now, outbox)
        for vid, rec in list(self.preempted.items()):
            job = self.jobs.get(vid)
            if job is None:
                del self.preempted[vid]
            elif not rec.acted and now >= rec.act_at:
                rows += self._act(job, rec, now, outbox)
        for pid, claim in list(self.claims.items()):
            job = self.pending.get(pid)
            if job is None or job.held:
                del self.claims[pid]  # it was cancelled or held meanwhile: the room is free for anyone
                continue
            claim.victims = {v for v in claim.victims if v in self.running_view}  # freed once its processes are gone
        return rows

    # ------------------------------------------------------------------
    # the commit
    # ------------------------------------------------------------------
    def plan_starts(self, plan: Plan, now: float, outbox: list, updates: list) -> Iterator[tuple[int, list[int]]]:
        """The plan's starts for ``_commit``, with its preempt orders checked and carried out between them.

        Ordinary starts come first (one that would take a waiting preemptor's room is refused, reason
        ``Resource``), then the orders (journal rows go to ``updates``), then the starts of preemptors
        whose victims were all suspended; a preemptor that then does not start gets its victims back.
        """
        for pid in [p for p, c in self.claims.items() if not c.victims]:  # its victims are gone: it goes first
            claim = self.claims.pop(pid)
            yield pid, claim.nodes
            job = self.pending.get(pid)
            if job is not None:  # its room went away meanwhile (a node down, a drain): the plugin may choose again
                log.info("job %d: the room its preemption made is gone; it waits again", pid)
                job.reason = plan.reasons[pid] = REASON_RESOURCE
        for pid in self.claims:
            plan.reasons[pid] = REASON_WAITING_PREEMPTION  # still waiting for its victims, whatever the plan says
        late = plan.preempt_nodes
        for jid, idxs in plan.starts:
            if jid in late and plan.preempt:
                continue
            if self.claims and self._takes_claimed_room(jid, idxs):
                continue
            yield jid, idxs
            if jid in self.claims and jid not in self.pending:
                del self.claims[jid]  # it started: its claim is fulfilled
        if not plan.preempt:
            return
        accepted = self._checked_orders(plan)
        for pid in plan.preempt_nodes:
            if pid not in accepted and plan.reasons.get(pid) == REASON_WAITING_PREEMPTION:
                plan.reasons[pid] = REASON_RESOURCE
        for pid, victims in accepted.items():
            updates += self._preempt_for(pid, victims, plan.preempt_nodes[pid], now, outbox)
        for jid, idxs in plan.starts:
            if jid not in late or jid in self.claims:  # a claim: it waits for its victims to end
                continue
            yield jid, idxs  # its victims suspended (or its orders refused: it starts only if it fits)
            if jid in self.pending and jid in self.lent:  # it did not start after all: its victims resume
                updates += self.give_back_lent(jid, now, outbox)

    def _takes_claimed_room(self, jid: int, idxs: list[int]) -> bool:
        """Whether starting ``jid`` on ``idxs`` would leave a waiting preemptor without its room."""
        job = self.pending.get(jid)
        if job is None or jid in self.claims:
            return False
        want = (job.cpus_per_node, job.mem_per_node, job.gres_per_node)
        for pid, claim in self.claims.items():
            holder = self.pending.get(pid)
            if holder is None:
                continue
            for i in set(idxs).intersection(claim.nodes):
                leaving = [(self.running_view[v], self.preempted[v].mode) for v in claim.victims
                           if v in self.running_view and v in self.preempted and i in self.running_view[v].nodes]
                if not node_fits_after(holder, self.sched_nodes[i], leaving, want):
                    job.reason = REASON_RESOURCE
                    return True
        return False

    def _checked_orders(self, plan: Plan) -> dict[int, list[tuple[Job, SchedRunning, str]]]:
        """The orders of ``plan`` the rules allow and the preemptors need, per preemptor (the others are logged)."""
        view = self.keeper.view
        in_view = {j.job_id for j in view.pending}
        orders: dict[int, list[tuple[int, str]]] = {}
        for vid, order in plan.preempt.items():
            if not isinstance(vid, int) or not isinstance(order, PreemptOrder) or \
                    not isinstance(order.preemptor, int) or not isinstance(order.mode, str):
                log.warning("preempt plugin: a malformed order (%r: %r) is ignored", vid, order)
                continue
            orders.setdefault(order.preemptor, []).append((vid, order.mode))
        accepted: dict[int, list[tuple[Job, SchedRunning, str]]] = {}
        taken: dict[int, list] = {}
        used: set[int] = set()
        for pid, wanted in orders.items():
            nodes = plan.preempt_nodes.get(pid)
            try:
                victims = self._check_one(pid, wanted, nodes, view, in_view, taken, used)
            except _Refused as exc:
                log.warning("preempt plugin: the preemption for job %d is refused: %s", pid, exc)
                continue
            accepted[pid] = victims
            used.update(v.job_id for v, _, _ in victims)
            job = self.pending[pid]
            for i in nodes or ():
                t = taken.setdefault(i, [0.0, 0, {}])
                t[0] += job.cpus_per_node
                t[1] += job.mem_per_node
                for k, n in (job.gres_per_node or {}).items():
                    t[2][k] = t[2].get(k, 0) + n
        return accepted

    def _check_one(self, pid: int, wanted: list[tuple[int, str]], nodes: Any, view: Any, in_view: set[int],
                   taken: dict[int, list], used: set[int]) -> list[tuple[Job, SchedRunning, str]]:
        """One preemptor's orders, checked; raises :class:`_Refused` with the first rule broken."""
        job = self.pending.get(pid)
        if job is None or pid not in in_view or job.held or pid in self.claims:
            raise _Refused("the preemptor is not a pending job in the view, or already waits for a preemption")
        part = self.partitions.get(job.partition)
        if ineligible_reason(job, part, self.clock()) is not None or self.limits.blocked_reason(job) is not None:
            raise _Refused("the preemptor may not start now whatever the resources")
        if not isinstance(nodes, list) or len(nodes) != max(1, job.node_num) or len(set(nodes)) != len(nodes) or \
                not all(isinstance(i, int) and 0 <= i < len(self.sched_nodes) for i in nodes):
            raise _Refused(f"plan.preempt_nodes gives it {nodes!r}, not {job.node_num} distinct node indices")
        for i in nodes:
            s = self.sched_nodes[i]
            if not s.usable or job.partition not in s.partitions or (job.nodelist and s.name not in job.nodelist) \
                    or (job.exclude and s.name in job.exclude):
                raise _Refused(f"node {s.name} is not one it may run on now")
        victims: list[tuple[Job, SchedRunning, str]] = []
        for vid, mode in wanted:
            rv = self.running_view.get(vid)
            victim = self.jobs.get(vid)
            if rv is None or victim is None or victim.state not in _ACTIVE or vid in used or \
                    self._being_preempted(vid) or vid in self.recon.held:
                raise _Refused(f"job {vid} is not a running job free to preempt")
            if mode == PREEMPT_SUSPEND and victim.state != JobState.Running:
                raise _Refused(f"job {vid} is still starting: it cannot be suspended yet")
            rule = preempt_mode(job, rv, view)
            if rule is None or rule != mode:
                raise _Refused(f"the rules do not let it preempt job {vid} with {mode} ({rule or 'not at all'})")
            if not set(rv.nodes).intersection(nodes):
                raise _Refused(f"job {vid} runs on none of its nodes")
            victims.append((victim, rv, mode))
        on: dict[int, list[tuple[SchedRunning, str]]] = {i: [] for i in nodes}
        for _, rv, mode in victims:
            for i in rv.nodes:
                if i in on:
                    on[i].append((rv, mode))
        for i in nodes:
            t = taken.get(i)
            t = (0.0, 0, None) if t is None else (t[0], t[1], t[2] or None)
            if not node_fits_after(job, self.sched_nodes[i], on[i], t):
                raise _Refused(f"it does not fit on {self.sched_nodes[i].name} even with its victims gone")
        for _, rv, _mode in victims:
            needed = False
            for i in set(rv.nodes).intersection(nodes):
                t = taken.get(i)
                t = (0.0, 0, None) if t is None else (t[0], t[1], t[2] or None)
                if not node_fits_after(job, self.sched_nodes[i], [x for x in on[i] if x[0] is not rv], t):
                    needed = True
                    break
            if not needed:
                raise _Refused(f"it does not need job {rv.job_id} gone (it fits without)")
        return victims

    def _preempt_for(self, pid: int, victims: list[tuple[Job, SchedRunning, str]], nodes: list[int], now: float,
                     outbox: list) -> list:
        """Carry out one preemptor's checked orders; return journal rows."""
        grace = self.cfg.CraneCtld.PreemptGraceTime
        rows: list = []
        preemptor = self.pending[pid]
        waits = False
        for victim, _rv, mode in victims:
            if mode == PREEMPT_REQUEUE and victim.interactive:
                mode = PREEMPT_CANCEL  # an interactive job's client waits for it now, not for a rerun
            rec = Preemption(pid, mode, now if mode == PREEMPT_SUSPEND else now + grace, victim.epoch)
            self.preempted[victim.job_id] = rec
            log.info("job %d preempted by job %d (%s%s)", victim.job_id, pid, mode,
                     f", in {grace:g}s" if rec.act_at > now else "")
            self._emit_job(outbox, "job.preempted", victim, now,
                           changes={"preempted_by": pid, "mode": mode, "grace": rec.act_at - now})
            if mode == PREEMPT_SUSPEND:
                rows += self._act(victim, rec, now, outbox)
                continue
            waits = True
            if rec.act_at > now:
                if mode == PREEMPT_CANCEL:
                    victim.cancel_requested = True  # however it ends now, it ends Cancelled (reason Preempted)
                self._warn_victim(victim, outbox)
                rows.append((int(victim.state), self._rt_json(victim), victim.job_id))
            else:
                rows += self._act(victim, rec, now, outbox)
        if waits:
            self.claims[pid] = Claim(list(nodes), {v.job_id for v, _, _ in victims})
            preemptor.reason = REASON_WAITING_PREEMPTION
        return rows

    def _warn_victim(self, victim: Job, outbox: list) -> None:
        """Tell a victim in its grace time that it is about to end: SIGTERM to its processes on every node."""
        if victim.state != JobState.Running:
            return  # not started yet: nothing to tell, the grace's end ends it
        for name in self._job_nodes(victim):
            outbox.append((self.node_stream(name), m.SignalJob(job_id=victim.job_id, signum=signal.SIGTERM,
                                                               epoch=victim.epoch)))

    def _act(self, victim: Job, rec: Preemption, now: float, outbox: list) -> list:
        """The mode's action on ``victim`` now; return journal rows."""
        rec.acted = True
        if victim.state not in _ACTIVE and victim.state != JobState.Suspended or victim.epoch != rec.epoch:
            return [(int(victim.state), self._rt_json(victim), victim.job_id)]  # it ended or moved on meanwhile
        try:
            if rec.mode == PREEMPT_SUSPEND:
                rows = self.suspend_job(victim, now, outbox, REASON_PREEMPTED)
                self._lend(victim, rec.preemptor)
                return rows + [(int(victim.state), self._rt_json(victim), victim.job_id)]
            if rec.mode == PREEMPT_REQUEUE:
                rows = self.requeue_job(victim, now, outbox, f"preempted by job {rec.preemptor}")
                if victim.state == JobState.Pending and victim.reason:
                    victim.reason = REASON_PREEMPTED  # until its old processes are gone; then it queues again
                return rows + [(int(victim.state), self._rt_json(victim), victim.job_id)]
        except LifecycleRefused as exc:  # e.g. its processes are already being ended: it goes that way
            log.warning("job %d: cannot %s it for job %d (%s)", victim.job_id, rec.mode.lower(), rec.preemptor, exc)
            return [(int(victim.state), self._rt_json(victim), victim.job_id)]
        if victim.interactive:
            return self.end_interactive(victim, JobState.Cancelled, EC_TERMINATED, REASON_PREEMPTED, "preempted",
                                        now, outbox)
        head = self.nodes.get(victim.head_node)
        if head is None or not head.alive:
            return self._finish(victim, JobState.Cancelled, EC_TERMINATED, now, outbox, persist=False,
                                reason=REASON_PREEMPTED)
        victim.cancel_requested = True
        outbox.append((self.node_stream(victim.head_node),
                       m.TerminateStep(job_id=victim.job_id, reason="preempted", epoch=victim.epoch)))
        return [(int(victim.state), self._rt_json(victim), victim.job_id)]

    # ------------------------------------------------------------------
    # suspended victims: their CPUs lent to the preemptor
    # ------------------------------------------------------------------
    def _lend(self, victim: Job, preemptor: int) -> None:
        """A suspended victim's CPUs go to the scheduler's free pool; its memory and GRES stay with it."""
        rv = self.running_view.pop(victim.job_id, None)
        if rv is not None:
            for i in rv.nodes:
                self.sched_nodes[i].cpus_free += victim.cpus_per_node
            self.lent_view[victim.job_id] = rv
        self.lent.setdefault(preemptor, []).append(victim.job_id)

    def unlend(self, job: Job) -> None:
        """A suspended victim leaves (cancelled, requeued, ended) before it resumed: take its CPUs back first.

        Called by ``_release``, so that giving its resources back counts them once.
        """
        rv = self.lent_view.pop(job.job_id, None)
        if rv is None:
            return
        for i in rv.nodes:
            self.sched_nodes[i].cpus_free -= job.cpus_per_node
        self.running_view[job.job_id] = rv

    def _relend_recovered(self) -> None:
        """After a restart: recovered suspended victims lend their CPUs again (or wait to resume)."""
        for vid in self.relend:
            job, rec = self.jobs.get(vid), self.preempted.get(vid)
            if job is None or rec is None or job.state != JobState.Suspended:
                continue
            self._lend(job, rec.preemptor)
            holder = self.jobs.get(rec.preemptor)
            if holder is None or holder.state in FINAL_STATES or holder.state == JobState.Pending:
                self.lent.pop(rec.preemptor, None)
                self.to_resume.append(vid)  # its preemptor ended while the controller was down
        self.relend = []

    def suspend_jobs(self, job_ids: Iterable[int], identity: Any,
                     suspend: bool) -> tuple[list[int], list[tuple[int, str]]]:
        """``ccontrol resume`` of a job suspended for a preemption is refused while its CPUs are lent.

        It resumes by itself when its preemptor ends (:meth:`give_back_lent`); every other call is
        the lifecycle mechanism's ``suspend_jobs``.
        """
        ids = list(job_ids)
        refused: list[tuple[int, str]] = []
        if not suspend and self.lent_view:
            with self.lock:
                for jid in [j for j in ids if j in self.lent_view]:
                    holder = next((p for p, vs in self.lent.items() if jid in vs), 0)
                    refused.append((jid, f"Job was preempted: it resumes when job {holder} ends" if holder else
                                    "Job was preempted: it resumes when its CPUs are free again"))
                    ids.remove(jid)
        done, failed = super().suspend_jobs(ids, identity, suspend) if ids else ([], [])  # type: ignore[misc]
        return done, failed + refused

    def _on_control_result(self, msg: Any, now: float, outbox: list) -> list:
        """A node could not freeze a victim whose CPUs were lent: it runs again there, so it is cancelled now.

        The lifecycle mechanism resumes a job a node failed to suspend (its answer); for a preemption
        victim that would leave two jobs on the same CPUs, so the victim ends instead (``CANCEL``,
        reason ``Preempted``), its CPUs counted back until it has.
        """
        rows = super()._on_control_result(msg, now, outbox)  # type: ignore[misc]
        job = self.jobs.get(msg.job_id)
        rec = self.preempted.get(msg.job_id)
        if job is None or rec is None or job.job_id not in self.lent_view or job.state != JobState.Running:
            return rows
        log.warning("job %d could not be suspended for job %d: cancelled instead", job.job_id, rec.preemptor)
        self.unlend(job)
        for victims in self.lent.values():
            if job.job_id in victims:
                victims.remove(job.job_id)
        rec.mode = PREEMPT_CANCEL
        return rows + self._act(job, rec, now, outbox)

    def give_back_lent(self, preemptor: int, now: float, outbox: list) -> list:
        """The victims ``preemptor`` suspended resume (their CPUs taken back); return journal rows.

        Called when the preemptor has ended (the next scheduling cycle sees it) or did not start. A
        victim whose CPUs are not free again yet stays suspended and is tried again at every cycle
        (:meth:`resume_waiting`).
        """
        self.to_resume += self.lent.pop(preemptor, [])
        return self.resume_waiting(now, outbox)

    def resume_waiting(self, now: float, outbox: list) -> list:
        """Resume the suspended victims whose preemptor is gone, when their CPUs are free again."""
        rows: list = []
        waiting = []
        for vid in self.to_resume:
            job = self.jobs.get(vid)
            rv = self.lent_view.get(vid)
            if job is None or rv is None or job.state != JobState.Suspended:
                if job is not None:
                    self.unlend(job)
                continue
            nodes = [self.sched_nodes[i] for i in rv.nodes]
            if any(s.cpus_free + 1e-9 < job.cpus_per_node for s in nodes):
                waiting.append(vid)
                continue
            self.unlend(job)
            rows += self.resume_job(job, now, outbox)
            rows.append((int(job.state), self._rt_json(job), job.job_id))
        self.to_resume = waiting
        return rows

    # ------------------------------------------------------------------
    # what the rest of the controller asks
    # ------------------------------------------------------------------
    def preempted_reason(self, job: Job, reason: str) -> str:
        """The reason a job ends with: ``Preempted`` for a victim its preemption ended."""
        rec = self.preempted.get(job.job_id)
        if rec is not None and rec.mode == PREEMPT_CANCEL and rec.epoch == job.epoch and job.cancel_requested:
            return REASON_PREEMPTED
        return reason

    def victim_ended_in_grace(self, job: Job, now: float, outbox: list) -> list | None:
        """A ``REQUEUE`` victim whose processes ended during its grace (its SIGTERM): requeue it, not end it.

        Called by ``_finish``; returns the journal rows of the requeue, or None when the job ends as usual
        (not such a victim, or a cancel was asked for meanwhile).
        """
        rec = self.preempted.get(job.job_id)
        if rec is None or rec.mode != PREEMPT_REQUEUE or rec.acted or rec.epoch != job.epoch or \
                job.cancel_requested or job.state not in _ACTIVE or job.job_id in self.recon.held:
            return None
        rec.acted = True
        return self._requeue(job, now, outbox, f"preempted by job {rec.preemptor}", False, EC_TERMINATED,
                             REASON_PREEMPTED)

    def preempted_by(self, job_id: int) -> int:
        """The job whose start preempted ``job_id`` (0: never preempted, or no longer known)."""
        rec = self.preempted.get(job_id)
        return rec.preemptor if rec is not None else 0

    def preempt_rt(self, job_id: int) -> dict[str, Any]:
        """The victim's part of its journal ``rt`` (empty for a job never preempted)."""
        rec = self.preempted.get(job_id)
        return {"pre": rec.rt()} if rec is not None else {}

    def restore_preemption(self, job: Job, rt: dict[str, Any]) -> None:
        """Bring a victim's preemption back from its journal ``rt`` at recovery (a pending action is re-armed)."""
        pre = rt.get("pre")
        if not (isinstance(pre, list) and len(pre) == 5):
            return
        preemptor, mode, act_at, acted, epoch = pre
        self.preempted[job.job_id] = Preemption(int(preemptor), str(mode), float(act_at), int(epoch), bool(acted))
        if mode == PREEMPT_SUSPEND and job.state == JobState.Suspended:
            self.relend.append(job.job_id)  # its CPUs are lent again once every job is allocated


class _Refused(Exception):  # noqa: N818 - reads better at the raise sites
    """A preemptor's orders break a rule (the message says which)."""
