"""Job dependencies: ``--dependency afterok:1:2,afterany:3`` (AND) or ``afterok:1?afternotok:2`` (OR).

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin; called with its lock held). A job
whose dependency is not satisfied stays out of the scheduler's view with reason ``Dependency``
(the view keeper asks :meth:`DependsMixin.dependency_reason`); one that can never be satisfied
(an ``afterok`` parent failed, ...) gets ``DependencyNeverSatisfied`` and is cancelled, or kept
pending with that reason (``CraneCtld.DependencyNeverSatisfied: cancel|keep``). A dependency
is never silently dropped: an unknown kind, an unknown job or a malformed list refuses the
submission.

=============  =====================================================  ======================
kind           satisfied when the parent                              never satisfied when
=============  =====================================================  ======================
``after``      has started (or ended)                                 —
``afterany``   has ended, however                                     —
``afterok``    has ended ``Completed``                                it ended otherwise
``afternotok`` has ended other than ``Completed``                     it ended ``Completed``
``aftercorr``  (arrays) task *t* waits for task *t* of the parent array:  that task ended otherwise
               ``afterok`` on it, created when the child task is
``singleton``  no other job of the same user and name runs (and no     —
               earlier singleton one of them waits)
=============  =====================================================  ======================

``kind:id+N`` delays a condition by N minutes after it became true. An id may be ``A`` (a whole
array: it ends when its last task ends, ``Completed`` only if all did) or ``A_T`` (one task: it is
created at once if it had not been, so the dependency names a job).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from crane_common.states import FINAL_STATES, JobState

from crane_kernel.ctld.speccheck import split_all_or_any
from crane_kernel.errors import JobRejected

log = logging.getLogger("cranectld")

KINDS = ("after", "afterany", "afterok", "afternotok", "aftercorr", "singleton")
REASON_DEPENDENCY = "Dependency"
REASON_NEVER = "DependencyNeverSatisfied"
MAX_PARENTS = 1000
MAX_DELAY_MINUTES = 525_600  # a year
OK, WAIT, NEVER = "ok", "wait", "never"

Ref = int | tuple[int, int]
"""A parent as written: a job id, or ``(array job id, task index)`` for ``A_T``."""


@dataclass(frozen=True)
class Dependency:
    """A parsed dependency: ``(kind, parent, delay seconds)`` conditions, all of them (AND) or one (``any_of``).

    ``singleton`` has parent 0; ``aftercorr`` names an array (resolved per task, see
    :meth:`DependsMixin.task_dependency`).
    """

    conditions: tuple[tuple[str, Ref, int], ...]
    any_of: bool = False

    def parents(self) -> set[int]:
        """The jobs it waits for (resolved ids only)."""
        return {pid for kind, pid, _ in self.conditions if isinstance(pid, int) and kind != "singleton"}

    def has(self, kind: str) -> bool:
        """Whether a condition of this kind is part of it."""
        return any(k == kind for k, _, _ in self.conditions)

    def text(self) -> str:
        """The canonical text (what the journal keeps once ``A_T`` refs are resolved)."""
        parts = []
        for kind, pid, delay in self.conditions:
            if kind == "singleton":
                parts.append(kind)
                continue
            ref = f"{pid[0]}_{pid[1]}" if isinstance(pid, tuple) else str(pid)
            parts.append(f"{kind}:{ref}" + (f"+{delay // 60}" if delay else ""))
        return ("?" if self.any_of else ",").join(parts)


def _parse_ref(part: str, token: str) -> Ref:
    job, underscore, task = token.partition("_")
    if not job.isdigit() or not 0 < int(job) < 2**32 or (underscore and not task.isdigit()):
        raise JobRejected(f"dependency {part[:40]!r}: {token[:20]!r} is not a job id (<id> or <array id>_<task>)")
    return (int(job), int(task)) if underscore else int(job)


def parse_dependency(text: str) -> Dependency:
    """Parse ``kind:id[:id...][+min][,kind:id...]`` or the same joined by ``?``; raise JobRejected (one line)."""
    any_of, parts = split_all_or_any(text, "?", "dependency")
    conditions: list[tuple[str, Ref, int]] = []
    for raw in parts:
        part = raw.strip()
        kind, _, ids = part.partition(":")
        kind = kind.lower()
        if kind == "singleton" and not ids:
            conditions.append(("singleton", 0, 0))
            continue
        if kind not in KINDS or kind == "singleton" or not ids:
            raise JobRejected(f"dependency {part[:40]!r}: expected after|afterany|afterok|afternotok|aftercorr:<job id>"
                              " or singleton")
        ids, plus, minutes = ids.partition("+")
        delay = 0
        if plus:
            if not minutes.isdigit() or int(minutes) > MAX_DELAY_MINUTES:
                raise JobRejected(f"dependency {part[:40]!r}: +delay must be minutes (at most {MAX_DELAY_MINUTES})")
            delay = int(minutes) * 60
        for token in ids.split(":"):
            ref = _parse_ref(part, token)
            if kind == "aftercorr" and isinstance(ref, tuple):
                raise JobRejected(f"dependency {part[:40]!r}: aftercorr names a whole array, not one task")
            conditions.append((kind, ref, delay))
    if len(conditions) > MAX_PARENTS:
        raise JobRejected(f"a dependency may name at most {MAX_PARENTS} jobs")
    return Dependency(tuple(conditions), any_of)


def condition_state(kind: str, state: JobState, started: bool) -> str:
    """OK, WAIT or NEVER for one condition, given its parent's state (and whether it ever started)."""
    ended = state in FINAL_STATES
    if kind == "after":
        return OK if started or ended else WAIT
    if not ended:
        return WAIT
    if kind == "afterany":
        return OK
    completed = state == JobState.Completed
    if kind in ("afterok", "aftercorr"):
        return OK if completed else NEVER
    return NEVER if completed else OK  # afternotok


def evaluate(dep: Dependency, lookup: Any, now: float = 0.0, singleton_free: bool = True) -> tuple[str, float]:
    """The dependency's state, and when a delayed condition becomes true (0 = not waiting for a time).

    ``lookup(job id)`` is ``(state, started, start time, end time)``, or None for a job nobody knows;
    ``singleton_free``: no other job of the user and name runs (computed by the caller when needed).
    """
    states = []
    ready_at = 0.0
    for kind, pid, delay in dep.conditions:
        if kind == "singleton":
            states.append(OK if singleton_free else WAIT)
            continue
        found = lookup(pid) if isinstance(pid, int) else None
        if found is None:
            states.append(NEVER)
            continue
        state, started, start, end = found
        cond = condition_state(kind, state, started)
        if cond == OK and delay:
            since = (start or end) if kind == "after" else end
            if now < since + delay:
                cond = WAIT
                ready_at = since + delay if not ready_at else min(ready_at, since + delay)
        states.append(cond)
    if dep.any_of:
        result = OK if OK in states else NEVER if all(s == NEVER for s in states) else WAIT
    else:
        result = NEVER if NEVER in states else OK if all(s == OK for s in states) else WAIT
    return result, (ready_at if result == WAIT else 0.0)


class DependsMixin:
    """The controller's dependencies: registration, the view's gate, parents' starts and ends."""

    def _init_deps(self) -> None:
        self.deps: dict[int, Dependency] = {}          # pending job -> its dependency
        self.dep_children: dict[int, set[int]] = {}     # parent -> jobs waiting for it
        self.dep_ended: dict[int, tuple[JobState, bool, float, float]] = {}  # parents no longer in memory
        self.dep_doomed: set[int] = set()               # never satisfied: cancelled at the next cycle
        self.dep_timers: dict[int, float] = {}          # job -> when a +delay condition becomes true
        self.dep_singletons: dict[tuple[str, str], set[int]] = {}  # (user, name) -> singleton jobs waiting

    def check_dependency(self, spec: dict[str, Any], now: float = 0.0, outbox: list | None = None,
                         identity: Any = None) -> Dependency | None:
        """Parse and check a submission's ``dependency`` (every parent must be a job this cluster has).

        ``A_T`` parents are resolved to the task's job id (creating the task now if it had not been),
        and the resolved text is kept in ``spec["dependency_ids"]`` for recovery. With
        ``PrivateData: [jobs]``, another user's job the submitter may not see counts as unknown
        (else its end would be learnt through the dependency).
        """
        text = spec.get("dependency") or ""
        if not text:
            return None
        dep = parse_dependency(str(text))
        resolved = []
        for kind, ref, delay in dep.conditions:
            if identity is not None and kind != "singleton":
                pid = ref[0] if isinstance(ref, tuple) else ref
                if not self._dep_visible(pid, identity):
                    raise JobRejected(f"dependency on job {pid}, which does not exist")
            if isinstance(ref, tuple):
                jid = self.resolve_task(ref[0], ref[1], True, now, outbox if outbox is not None else [])
                if jid is None:
                    raise JobRejected(f"dependency on array task {ref[0]}_{ref[1]}, which does not exist")
                ref = jid
            if kind == "aftercorr" and ref not in self.arrays:
                raise JobRejected(f"aftercorr:{ref}: job {ref} is not an array with tasks to come")
            if kind != "singleton" and self._dep_lookup(ref) is None:
                raise JobRejected(f"dependency on job {ref}, which does not exist")
            resolved.append((kind, ref, delay))
        dep = Dependency(tuple(resolved), dep.any_of)
        spec["dependency_ids"] = dep.text()
        return dep

    def _dep_visible(self, pid: int, identity: Any) -> bool:
        """Whether ``identity`` may name job ``pid`` as a parent (always, unless ``PrivateData`` hides jobs)."""
        if "jobs" not in self.cfg.CraneCtld.PrivateData:
            return True
        job = self.jobs.get(pid)
        if job is None:
            found = self.store.jobs_by_id([pid])
            if not found:
                return True  # unknown: refused as such by the caller
            spec = found[0][1]
            owner = SimpleNamespace(uid=spec.get("uid"), account=spec.get("account", ""), job_id=pid)
            return owner.uid == identity.uid or self._authorized(identity, "job.view", owner)
        return job.uid == identity.uid or self._authorized(identity, "job.view", job)

    def task_dependency(self, parent: Any, task: int, now: float, outbox: list) -> Dependency | None:
        """The dependency of task ``task`` of array ``parent``: the array's, ``aftercorr`` made per task."""
        spec = self.array_specs.get(parent.job_id) or {}
        text = spec.get("dependency_ids") or spec.get("dependency") or ""
        if not text:
            return None
        dep = parse_dependency(text)
        if not dep.has("aftercorr"):
            return dep
        conditions = []
        for kind, ref, delay in dep.conditions:
            if kind == "aftercorr":
                other = self.arrays.get(ref)  # type: ignore[arg-type]
                jid = self.resolve_task(ref, task, True, now, outbox) if other is not None else None  # type: ignore
                if jid is None:
                    continue  # the other array has no task of this index: nothing to wait for
                kind, ref = "afterok", jid
            conditions.append((kind, ref, delay))
        return Dependency(tuple(conditions), dep.any_of) if conditions else None

    def register_dependency(self, job_id: int, dep: Dependency | None) -> None:
        """Remember a pending job's dependency (at submission and at recovery)."""
        if dep is None or not dep.conditions:
            return
        self.deps[job_id] = dep
        for pid in dep.parents():
            self.dep_children.setdefault(pid, set()).add(job_id)
        if dep.has("singleton"):
            job = self.jobs.get(job_id)
            if job is not None:
                self.dep_singletons.setdefault((job.user, job.name), set()).add(job_id)

    def _dep_lookup(self, pid: int) -> tuple[JobState, bool, float, float] | None:
        job = self.jobs.get(pid)
        if job is not None:
            return job.state, bool(job.start_time), job.start_time, job.end_time
        ended = self.dep_ended.get(pid)
        if ended is not None:
            return ended
        for _jid, _spec, rt in self.store.jobs_by_id([pid]):
            found = (JobState(rt.get("state", 0)), bool(rt.get("start")), rt.get("start") or 0.0, rt.get("end") or 0.0)
            self.dep_ended[pid] = found
            return found
        return None

    def _singleton_free(self, job: Any) -> bool:
        """No other job of the user and name runs, and no earlier singleton one of them waits."""
        for other in self.running.values():
            if other.name == job.name and other.user == job.user and other.job_id != job.job_id:
                return False
        waiting = self.dep_singletons.get((job.user, job.name), ())
        return not any(jid < job.job_id and jid in self.pending for jid in waiting)

    def dependency_reason(self, job: Any) -> str | None:
        """The view keeper's gate: None when the job may run, else ``Dependency``/``DependencyNeverSatisfied``."""
        dep = self.deps.get(job.job_id)
        if dep is None:
            return None
        free = self._singleton_free(job) if dep.has("singleton") else True
        state, ready_at = evaluate(dep, self._dep_lookup, self.clock(), free)
        if ready_at:
            self.dep_timers[job.job_id] = ready_at
        if state == OK:
            return None
        if state == NEVER:
            if self.cfg.CraneCtld.DependencyNeverSatisfied == "cancel":
                self.dep_doomed.add(job.job_id)
            return REASON_NEVER
        return REASON_DEPENDENCY

    def dependency_timers(self, now: float) -> None:
        """Jobs whose ``+delay`` has passed are looked at again (called before each view sync)."""
        if not self.dep_timers:
            return
        due = [jid for jid, at in self.dep_timers.items() if at <= now]
        for jid in due:
            del self.dep_timers[jid]
            if jid in self.pending:
                self.keeper.pending_changed.add(jid)

    def dependency_moved(self, job: Any) -> None:
        """``job`` started or ended: the jobs waiting for it are looked at again (and it is forgotten as a child)."""
        if job.state in FINAL_STATES:
            dep = self.deps.pop(job.job_id, None)
            self.dep_doomed.discard(job.job_id)
            self.dep_timers.pop(job.job_id, None)
            if dep is not None and dep.has("singleton"):
                waiting = self.dep_singletons.get((job.user, job.name))
                if waiting is not None:
                    waiting.discard(job.job_id)
                    if not waiting:
                        del self.dep_singletons[(job.user, job.name)]
        if self.dep_singletons:
            waiting = self.dep_singletons.get((job.user, job.name))
            if waiting:
                self.keeper.pending_changed.update(j for j in waiting if j in self.pending)
        children = self.dep_children.get(job.job_id)
        if not children:
            return
        if job.state in FINAL_STATES:
            self.dep_ended[job.job_id] = (job.state, bool(job.start_time), job.start_time, job.end_time)
        live = {c for c in children if c in self.pending}
        self.keeper.pending_changed.update(live)
        if job.state in FINAL_STATES and not live:
            self.dep_children.pop(job.job_id, None)

    def _end_doomed(self, now: float, outbox: list) -> list:
        """Cancel the jobs whose dependency can never be satisfied (``DependencyNeverSatisfied: cancel``)."""
        rows: list = []
        for jid in sorted(self.dep_doomed):
            job = self.pending.get(jid)
            if job is not None:
                log.info("job %d: its dependency can never be satisfied: cancelled", jid)
                rows += self._finish(job, JobState.Cancelled, 0, now, outbox, persist=False, reason=REASON_NEVER)
        self.dep_doomed.clear()
        return rows
