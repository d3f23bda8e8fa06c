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
=============  =====================================================  ======================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from crane_common.states import FINAL_STATES, JobState

from crane_kernel.errors import JobRejected

log = logging.getLogger("cranectld")

KINDS = ("after", "afterany", "afterok", "afternotok")
REASON_DEPENDENCY = "Dependency"
REASON_NEVER = "DependencyNeverSatisfied"
MAX_PARENTS = 1000
OK, WAIT, NEVER = "ok", "wait", "never"


@dataclass(frozen=True)
class Dependency:
    """A parsed dependency: ``(kind, parent id)`` conditions, all of them (AND) or one (``any_of``: OR)."""

    conditions: tuple[tuple[str, int], ...]
    any_of: bool = False

    def parents(self) -> set[int]:
        """The jobs it waits for."""
        return {pid for _, pid in self.conditions}


def parse_dependency(text: str) -> Dependency:
    """Parse ``kind:id[:id...][,kind:id...]`` or the same joined by ``?``; raise JobRejected (one line)."""
    text = (text or "").strip()
    if not text:
        raise JobRejected("the dependency is empty")
    if "," in text and "?" in text:
        raise JobRejected("a dependency joins its parts with ',' (all) or '?' (any), not both")
    any_of = "?" in text
    conditions: list[tuple[str, int]] = []
    for part in text.split("?" if any_of else ","):
        kind, _, ids = part.strip().partition(":")
        kind = kind.lower()
        if kind in ("singleton", "aftercorr") or "+" in ids:
            raise JobRejected(f"dependency {part.strip()[:40]!r}: singleton, aftercorr and +delay are not "
                              "supported yet")
        if kind not in KINDS or not ids:
            raise JobRejected(f"dependency {part.strip()[:40]!r}: expected after|afterany|afterok|afternotok:<job id>")
        for jid in ids.split(":"):
            if not jid.isdigit() or not 0 < int(jid) < 2**53:
                raise JobRejected(f"dependency {part.strip()[:40]!r}: {jid[:20]!r} is not a job id")
            conditions.append((kind, int(jid)))
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
    if kind == "afterok":
        return OK if completed else NEVER
    return NEVER if completed else OK  # afternotok


def evaluate(dep: Dependency, lookup: Any) -> str:
    """The dependency's state; ``lookup(job id)`` is ``(state, started)``, or None for a job nobody knows."""
    states = []
    for kind, pid in dep.conditions:
        found = lookup(pid)
        states.append(NEVER if found is None else condition_state(kind, *found))
    if dep.any_of:
        return OK if OK in states else NEVER if all(s == NEVER for s in states) else WAIT
    return NEVER if NEVER in states else OK if all(s == OK for s in states) else WAIT


class DependsMixin:
    """The controller's dependencies: registration, the view's gate, parents' starts and ends."""

    def _init_deps(self) -> None:
        self.deps: dict[int, Dependency] = {}          # pending job -> its dependency
        self.dep_children: dict[int, set[int]] = {}     # parent -> jobs waiting for it
        self.dep_ended: dict[int, tuple[JobState, bool]] = {}  # parents no longer in memory -> (state, started)
        self.dep_doomed: set[int] = set()               # never satisfied: cancelled at the next cycle

    def check_dependency(self, spec: dict[str, Any]) -> Dependency | None:
        """Parse and check a submission's ``dependency`` (every parent must be a job this cluster has)."""
        text = spec.get("dependency") or ""
        if not text:
            return None
        dep = parse_dependency(str(text))
        for pid in dep.parents():
            if self._dep_lookup(pid) is None:
                raise JobRejected(f"dependency on job {pid}, which does not exist")
        return dep

    def register_dependency(self, job_id: int, dep: Dependency | None) -> None:
        """Remember a pending job's dependency (at submission and at recovery)."""
        if dep is None:
            return
        self.deps[job_id] = dep
        for pid in dep.parents():
            self.dep_children.setdefault(pid, set()).add(job_id)

    def _dep_lookup(self, pid: int) -> tuple[JobState, bool] | None:
        job = self.jobs.get(pid)
        if job is not None:
            return job.state, bool(job.start_time)
        ended = self.dep_ended.get(pid)
        if ended is not None:
            return ended
        for _jid, _spec, rt in self.store.jobs_by_id([pid]):
            found = (JobState(rt.get("state", 0)), bool(rt.get("start")))
            self.dep_ended[pid] = found
            return found
        return None

    def dependency_reason(self, job: Any) -> str | None:
        """The view keeper's gate: None when the job may run, else ``Dependency``/``DependencyNeverSatisfied``."""
        dep = self.deps.get(job.job_id)
        if dep is None:
            return None
        state = evaluate(dep, self._dep_lookup)
        if state == OK:
            return None
        if state == NEVER:
            if self.cfg.CraneCtld.DependencyNeverSatisfied == "cancel":
                self.dep_doomed.add(job.job_id)
            return REASON_NEVER
        return REASON_DEPENDENCY

    def dependency_moved(self, job: Any) -> None:
        """``job`` started or ended: the jobs waiting for it are looked at again (and it is forgotten as a child)."""
        if job.state in FINAL_STATES:
            self.deps.pop(job.job_id, None)
            self.dep_doomed.discard(job.job_id)
        children = self.dep_children.get(job.job_id)
        if not children:
            return
        if job.state in FINAL_STATES:
            self.dep_ended[job.job_id] = (job.state, bool(job.start_time))
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
