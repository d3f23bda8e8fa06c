"""Array jobs: one record until tasks start, tasks created a few at a time (docs/arrays.md).

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin; called with its lock held).

An array ``A`` (``cbatch --array 1-10000%10``) is one :class:`ArrayJob` record, journaled once.
It is not in the scheduler's queue. Its tasks not yet created are a
:class:`~crane_kernel.ctld.arrayspec.TaskSet` of ranges in that record. Before each cycle,
:meth:`ArraysMixin.refill_arrays` turns a few of them into real jobs (``A_5``: its own job id,
its ``array_job_id`` and ``array_task_id``), each journaled with the array's spec, so everything
else (scheduling, launch, cancel, hold, dependencies, history) treats a task as a job.

* With ``%max`` the array never has more than ``max`` created tasks that have not ended. So the
  scheduler can never run more than ``max`` at once.
* Without it, at most ``CraneCtld.ArrayPendingWindow`` created tasks wait at a time.
* The array record ends when its last task ends: ``Completed`` if every task completed, else the
  worst end state (so ``afterok:A`` waits for the whole array and fails if one task failed).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from crane_common.states import FINAL_STATES, JobState

from crane_kernel.ctld.arrayspec import expand_array_pattern, parse_array
from crane_kernel.ctld.jobs import MAX_ARRAY_TASKS_EVER, ArrayJob, Job, job_from_spec
from crane_kernel.errors import JobRejected

log = logging.getLogger("cranectld")

_SEVERITY = {JobState.Completed: 0, JobState.Cancelled: 1}
"""Which end state an array takes from its tasks: the most severe (unlisted states: 2, failures)."""


class ArraysMixin:
    """Array records, the creation of their tasks, and the bookkeeping when tasks start and end."""

    def _init_arrays(self) -> None:
        self.arrays: dict[int, ArrayJob] = {}     # array job id -> record (also in self.jobs)
        self.array_dirty: set[int] = set()        # arrays whose window may have room
        self.array_specs: dict[int, dict] = {}    # array job id -> its spec (read once from the store)
        self.array_info: dict[int, dict[str, str]] = {}  # array job id -> its tasks' CRANE_ARRAY_TASK_COUNT...

    # ------------------------------------------------------------------ submission / recovery
    def add_array(self, job: ArrayJob, spec: dict) -> None:
        """A new (or recovered) array record: remembered, its first tasks created at the next cycle."""
        self.arrays[job.job_id] = job
        self.array_specs[job.job_id] = spec
        idx = parse_array(spec["array"], MAX_ARRAY_TASKS_EVER).indices
        steps = {b - a for a, b in zip(idx, idx[1:], strict=False)}
        self.array_info[job.job_id] = {
            "CRANE_ARRAY_TASK_COUNT": str(len(idx)), "CRANE_ARRAY_TASK_MIN": str(idx[0]),
            "CRANE_ARRAY_TASK_MAX": str(idx[-1]), "CRANE_ARRAY_TASK_STEP": str(steps.pop() if len(steps) == 1 else 1)}
        if len(job.array_tasks):
            self.array_dirty.add(job.job_id)

    def recover_array_task(self, job: Job) -> None:
        """A recovered task: its array counts it as created and alive."""
        parent = self.arrays.get(job.array_job_id)
        if parent is not None:
            parent.array_children[job.array_task_id] = job.job_id
            parent.array_live += 1

    def finish_array_recovery(self) -> None:
        """After recovery: an array whose tasks all ended while the controller was down ends now."""
        now = self.clock()
        rows: list = []
        for parent in list(self.arrays.values()):
            if not len(parent.array_tasks) and not parent.array_live and parent.state not in FINAL_STATES:
                rows += self._end_array(parent, now)
        self.store.write(updates=rows)

    # ------------------------------------------------------------------ creating tasks
    def refill_arrays(self, now: float, outbox: list) -> None:
        """Create the tasks the arrays' windows have room for (each a journaled pending job)."""
        if not self.array_dirty:
            return
        window = self.cfg.CraneCtld.ArrayPendingWindow
        inserts, updates = [], []
        first_id = self.next_job_id
        for aid in sorted(self.array_dirty):
            parent = self.arrays.get(aid)
            if parent is None or parent.state in FINAL_STATES or parent.held:
                continue
            waiting = sum(1 for cid in parent.array_children.values() if cid in self.pending)
            room = (parent.array_max - parent.array_live) if parent.array_max else (window - waiting)
            made = 0
            while room > 0 and len(parent.array_tasks):
                task = parent.array_tasks.pop_first()
                self._create_task(parent, task, now, inserts, outbox)  # type: ignore[arg-type]
                room -= 1
                made += 1
            if made:
                updates.append((int(parent.state), self._rt_json(parent), parent.job_id))
        self.array_dirty.clear()
        if inserts:
            self.store.write(inserts=inserts, updates=updates, meta={"next_job_id": self.next_job_id})
            log.debug("created array tasks %d..%d", first_id, self.next_job_id - 1)
        elif updates:
            self.store.write(updates=updates)

    def create_task_now(self, parent: ArrayJob, task: int, now: float, outbox: list) -> int | None:
        """Create task ``task`` of ``parent`` at once (``A_T`` named before it started); its job id.

        None when the array has no such task left to create (it never had it, or it was cancelled).
        """
        if task in parent.array_children:
            return parent.array_children[task]
        if not parent.array_tasks.discard(task):
            return None
        inserts: list = []
        jid = self._create_task(parent, task, now, inserts, outbox)
        self.store.write(inserts=inserts, updates=[(int(parent.state), self._rt_json(parent), parent.job_id)],
                         meta={"next_job_id": self.next_job_id})
        return jid

    def _create_task(self, parent: ArrayJob, task: int, now: float, inserts: list, outbox: list) -> int:
        spec = dict(self.array_specs[parent.job_id])
        spec.pop("array", None)
        spec["array_job_id"], spec["array_task_id"] = parent.job_id, task
        for key in ("output", "error", "input"):
            if spec.get(key):
                spec[key] = expand_array_pattern(spec[key], parent.job_id, task)
        dep = self.task_dependency(parent, task, now, outbox)
        spec.pop("dependency_ids", None)
        if dep is None:
            spec.pop("dependency", None)
        else:
            spec["dependency_ids"] = dep.text()
        jid = self.next_job_id
        self.next_job_id += 1
        job = job_from_spec(jid, spec)
        job.held = parent.held
        job.pinned_priority = parent.pinned_priority
        job.time_limit = parent.time_limit  # ccontrol update of the array applies to its tasks to come
        inserts.append((jid, 0, json.dumps(spec, separators=(",", ":")), json.dumps(job.rt())))
        self.jobs[jid] = job
        parent.array_children[task] = jid
        parent.array_live += 1
        job.reason = self.limits.accepted(job)
        self.register_dependency(jid, dep)
        self.life_from_spec(job, spec)  # the array's --deadline and --signal, per task (ctld/lifecycle.py)
        self.register_reservation(jid, spec)  # -r and -L of the array, per task (ctld/reservations.py, licenses.py)
        try:
            self.register_licenses(jid, self.check_licenses(spec))
        except JobRejected as exc:  # the licenses were removed from the config since the array was accepted
            job.held, job.reason = True, f"licenses: {exc}"
        self.pending[jid] = job
        self._emit_job(outbox, "job.submitted", job, now)
        return jid

    # ------------------------------------------------------------------ tasks moving
    def array_task_started(self, job: Job, now: float) -> None:
        """A task took its resources: the array has started (``after:A``), its window may have room."""
        parent = self.arrays.get(job.array_job_id)
        if parent is None:
            return
        if not parent.start_time:
            parent.start_time = now
            self.dependency_moved(parent)
        self.array_dirty.add(parent.job_id)

    def array_task_ended(self, job: Job, now: float) -> list:
        """A task reached a final state: count it; the array ends with its last task. Journal rows."""
        parent = self.arrays.get(job.array_job_id)
        if parent is None:
            return []
        parent.array_live = max(0, parent.array_live - 1)
        if _SEVERITY.get(job.state, 2) > _SEVERITY.get(parent.array_worst, 2) or (
                job.state not in _SEVERITY and parent.array_worst in _SEVERITY):
            parent.array_worst = job.state
        parent.array_exit = max(parent.array_exit, job.exit_code)
        if not len(parent.array_tasks) and not parent.array_live:
            return self._end_array(parent, now)
        self.array_dirty.add(parent.job_id)
        self.wake.set()
        return [(int(parent.state), self._rt_json(parent), parent.job_id)]

    def _end_array(self, parent: ArrayJob, now: float) -> list:
        parent.state = parent.array_worst if parent.array_worst in FINAL_STATES else JobState.Completed
        parent.exit_code = parent.array_exit
        parent.end_time = now
        parent.reason = ""
        self.finished.append((now, parent.job_id))
        self.array_specs.pop(parent.job_id, None)
        self.array_info.pop(parent.job_id, None)
        self.dependency_moved(parent)
        return [(int(parent.state), self._rt_json(parent), parent.job_id)]

    # ------------------------------------------------------------------ user actions on a whole array
    def cancel_array(self, parent: ArrayJob, now: float, outbox: list) -> tuple[list[int], list]:
        """Cancel an array: its tasks not yet created never run; the created ones are returned to cancel."""
        parent.array_tasks.clear()
        if not parent.array_live:
            parent.array_worst = JobState.Cancelled if parent.array_worst == JobState.Completed else \
                parent.array_worst
            return [], self._end_array(parent, now)
        if parent.array_worst == JobState.Completed:
            parent.array_worst = JobState.Cancelled
        live = [cid for cid in parent.array_children.values()
                if cid in self.jobs and self.jobs[cid].state not in FINAL_STATES]
        return live, [(int(parent.state), self._rt_json(parent), parent.job_id)]

    def cancel_array_task(self, parent: ArrayJob, task: int) -> bool:
        """Cancel task ``task`` before it was created (True when it was still to come)."""
        if not parent.array_tasks.discard(task):
            return False
        if parent.array_worst == JobState.Completed:
            parent.array_worst = JobState.Cancelled
        return True

    def cancel_tasks(self, refs: list[tuple[int, int]], identity: Any) -> tuple[list, list]:
        """``ccancel A_T``: ``((A, T), job id)`` for the tasks cancelled (0: never created, so never run; a
        created one is left to :meth:`cancel` by its job id), and ``((A, T), why)`` for the others."""
        done: list = []
        failed: list = []
        now = self.clock()
        outbox: list = []
        with self.lock:
            rows: list = []
            for ref in refs:
                parent = self.arrays.get(ref[0])
                jid = self.resolve_task(ref[0], ref[1], False, now, outbox)
                owner = parent if parent is not None else self.jobs.get(jid or 0)
                if owner is None or (jid is None and parent is None):
                    failed.append((ref, "Job not found or already finished"))
                elif not self._authorized(identity, "job.cancel", owner):
                    failed.append((ref, "Permission denied: not your job"))
                elif jid is not None:
                    done.append((ref, jid))
                elif parent is not None and self.cancel_array_task(parent, ref[1]):
                    done.append((ref, 0))
                    rows += self._array_changed(parent, now)
                else:
                    failed.append((ref, "Job not found or already finished"))
            self.store.write(updates=rows)
        self.publish(outbox)
        return done, failed

    def _array_changed(self, parent: ArrayJob, now: float) -> list:
        """Journal rows after tasks to come were removed: the array ends when nothing is left of it."""
        if not len(parent.array_tasks) and not parent.array_live and parent.state not in FINAL_STATES:
            return self._end_array(parent, now)
        return [(int(parent.state), self._rt_json(parent), parent.job_id)]

    def replace_array_record(self, old: ArrayJob, spec: dict) -> ArrayJob:
        """``ccontrol update`` of a pending field of an array: a new record from ``spec``, its tasks' state kept."""
        new = job_from_spec(old.job_id, spec)
        assert isinstance(new, ArrayJob)
        new.apply_rt(old.rt())
        new.array_live, new.array_children = old.array_live, old.array_children
        new.priority, new.reason = old.priority, old.reason
        self.jobs[old.job_id] = new
        self.arrays[old.job_id] = new
        self.array_specs[old.job_id] = spec
        return new

    def set_array_throttle(self, ids: list[int], identity: Any, limit: int) -> tuple[list[int], list]:
        """``ccontrol update jobid=A arraytaskthrottle=N``: at most N tasks of array A at once (0: no limit).

        Tasks already running keep running; new ones are created only while fewer than N are alive.
        """
        done: list[int] = []
        failed: list = []
        with self.lock:
            rows = []
            for jid in ids:
                parent = self.arrays.get(jid)
                if parent is None or parent.state in FINAL_STATES:
                    failed.append((jid, "not an array with tasks to come"))
                elif not self._authorized(identity, "job.modify", parent):
                    failed.append((jid, "Permission denied"))
                else:
                    parent.array_max = max(0, int(limit))
                    rows.append((int(parent.state), self._rt_json(parent), jid))
                    self.array_dirty.add(jid)
                    done.append(jid)
            self.store.write(updates=rows)
        return done, failed

    def arrays_touched(self, ids: list[int]) -> None:
        """Arrays among ``ids`` were changed (released...): their windows are looked at again."""
        for jid in ids:
            if jid in self.arrays:
                self.array_dirty.add(jid)
        self.wake.set()

    def resolve_targets(self, ids: list[int], refs: Any, identity: Any = None, action: str = "") -> list[int]:
        """The job ids a request names: ``ids`` (an array's id: the array and its created tasks) and ``refs``
        (``ArrayTaskRef``: that task; 0 for one that does not exist).

        A task still to come is created for the request when ``identity`` may do ``action`` on its
        array (the change then applies to it like to any job); otherwise it counts as not existing.
        """
        now = self.clock()
        outbox: list = []
        with self.lock:
            out = self.array_members(list(ids))
            for ref in refs:
                parent = self.jobs.get(ref.array_job_id)
                create = bool(action) and parent is not None and self._authorized(identity, action, parent)
                jid = self.resolve_task(ref.array_job_id, ref.task_id, create, now, outbox)
                out.append(jid or 0)
        self.publish(outbox)
        return out

    def array_members(self, ids: list[int]) -> list[int]:
        """``ids`` with every array named among them replaced by the array and its created tasks."""
        out: list[int] = []
        for jid in ids:
            out.append(jid)
            parent = self.arrays.get(jid)
            if parent is not None:
                out.extend(sorted(parent.array_children.values()))
        return out

    def resolve_task(self, array_job_id: int, task: int, create: bool, now: float, outbox: list) -> int | None:
        """The job id of ``A_T`` (created now when ``create`` and it is still to come), or None."""
        parent = self.arrays.get(array_job_id)
        if parent is None:
            job = self.jobs.get(array_job_id)  # a task's own id given as A (A_T where T is that task)
            return array_job_id if job is not None and getattr(job, "array_task_id", None) == task else None
        if task in parent.array_children:
            return parent.array_children[task]
        if create:
            return self.create_task_now(parent, task, now, outbox)
        return None
