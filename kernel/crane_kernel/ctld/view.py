"""The controller's one scheduler view, kept in step with its job tables between scheduling calls.

The controller hands every ``crane_schedule`` call the same
:class:`~crane_kernel.sched_types.IncrementalView`, so a scheduler plugin can keep its sorted
structures across cycles and apply only the :class:`~crane_kernel.sched_types.ViewDelta`.

How the view follows the controller without the controller's code having to remember it: the
``pending`` and ``running_view`` tables are :class:`Tracked` dicts that note every job id set or
removed. Right before a call, under the controller's lock, :meth:`ViewKeeper.sync` looks only at
those ids (and at jobs waiting for their begin time) and adds or removes them in the view,
which records the delta. Pending jobs a QoS limit keeps out (the ``gate``, :mod:`crane_kernel.ctld.limits`)
wait beside the ineligible ones; the limits note the ids of those to look at again when a
counter changes. Changes the tables do not show are flagged by the controller itself:
:meth:`ViewKeeper.request_changed` (a pending job's time limit) and
:meth:`ViewKeeper.priorities_changed` (an admin pinned a priority); node usability (up, down,
drained) is compared at every sync. A running job whose expected end changes gets a new
``SchedRunning`` object (the view then shows the old one removed and the new one added).

Only the scheduling thread touches the view, between syncs; other threads only write the
tracked tables (under the lock), so a plugin never sees the view change during its call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from crane_kernel.sched_types import (
    REASON_BEGIN_TIME,
    IncrementalView,
    SchedJob,
    SchedNode,
    SchedPartition,
    SchedRunning,
    ineligible_reason,
)

__all__ = ["Tracked", "ViewKeeper"]


class Tracked(dict):
    """A dict that adds every key set or removed to the set ``changed``."""

    __slots__ = ("changed",)

    def __init__(self, changed: set) -> None:
        super().__init__()
        self.changed = changed

    def __setitem__(self, key: Any, value: Any) -> None:
        self.changed.add(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self.changed.add(key)
        dict.__delitem__(self, key)

    def pop(self, key: Any, *default: Any) -> Any:
        """Remove ``key`` (noted as changed) and return its value, like :meth:`dict.pop`."""
        self.changed.add(key)
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return the last item (noted as changed)."""
        key, value = dict.popitem(self)
        self.changed.add(key)
        return key, value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Like :meth:`dict.setdefault`; a new key is noted as changed."""
        if key not in self:
            self.changed.add(key)
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Like :meth:`dict.update`; every key is noted as changed."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        """Remove everything (every key noted as changed)."""
        self.changed.update(self.keys())
        dict.clear(self)


class ViewKeeper:
    """Owns the controller's :class:`IncrementalView` and brings it up to date before each call.

    ``pending_changed`` and ``running_changed`` are the sets the controller's tracked tables
    write to; ``waiting`` holds the pending jobs kept out of the view because
    :func:`~crane_kernel.sched_types.ineligible_reason` or the ``gate`` (the QoS limits,
    :meth:`~crane_kernel.ctld.limits.LimitBook.gate`) refuses them (their ``reason`` is set to
    that reason); ``begin`` those of them waiting for their begin time, the only ones looked at
    again at every sync.
    """

    def __init__(self, nodes: list[SchedNode], partitions: Mapping[str, SchedPartition]) -> None:
        self.view = IncrementalView(nodes, partitions, [], [])
        self.pending_changed: set[int] = set()
        self.running_changed: set[int] = set()
        self.waiting: dict[int, SchedJob] = {}
        self.begin: dict[int, SchedJob] = {}  # those of them waiting for their begin time (looked at every sync)
        self.gate: Callable[[SchedJob, bool, bool], str | None] | None = None  # the QoS limits (ctld/limits.py)
        self.dep_gate: Callable[[SchedJob], str | None] | None = None  # dependencies (ctld/deps.py)
        self.gates: list[Callable[[SchedJob, float], str | None]] = []  # reservations, licenses (their mixins)
        self._other = False
        self._priorities = False
        self._usable = [n.usable for n in nodes]

    def request_changed(self, job_id: int) -> None:
        """A pending job's request changed in place (e.g. its time limit): plugins must rebuild."""
        self.pending_changed.add(job_id)
        if self.view.pending_job(job_id) is not None:
            self._other = True

    def priorities_changed(self) -> None:
        """Priorities changed outside the priority pass (an admin pinned one)."""
        self._priorities = True

    def sync(self, pending: Mapping[int, SchedJob], running: Mapping[int, SchedRunning], now: float) -> None:
        """Apply every noted change to the view (and so to its delta); call under the controller's lock."""
        view = self.view
        changed = self.pending_changed
        if self.begin:  # a begin time that has come makes a job eligible without any table changing
            changed.update(jid for jid, job in self.begin.items() if job.begin_time <= now)
        if changed:
            self._sync_pending(pending, changed, now)
            changed.clear()
        if self.running_changed:
            self._sync_running(running, self.running_changed)
            self.running_changed.clear()
        usable = [n.usable for n in view.nodes]
        if usable != self._usable:
            self._usable = usable
            self._other = True
        if self._other:
            view.changed()
            self._other = False
        if self._priorities:
            view.delta.priorities = True  # type: ignore[union-attr]
            self._priorities = False

    def _sync_pending(self, pending: Mapping[int, SchedJob], ids: Iterable[int], now: float) -> None:
        view = self.view
        parts = view.partitions
        waiting = self.waiting
        begin = self.begin
        gate = self.gate
        dep_gate = self.dep_gate
        for jid in ids:
            job = pending.get(jid)
            have = view.pending_job(jid)
            why = None if job is None else ineligible_reason(job, parts.get(job.partition), now)
            if why is None and job is not None and dep_gate is not None:
                why = dep_gate(job)  # a dependency not satisfied (yet): out of the view, reason Dependency
            if why is None and job is not None:
                for extra in self.gates:  # -r not active (Reservation), -L not free (Licenses), ...
                    why = extra(job, now)
                    if why is not None:
                        break
            if gate is not None:  # the QoS limits: a job over one stays out, filed under what blocks it
                seen = job if job is not None else (have if have is not None else waiting.get(jid))
                if seen is not None:
                    limit = gate(seen, job is not None, why is None)
                    why = why or limit
            if have is not None and (have is not job or why is not None):
                view.remove_pending(have)
                have = None
            if job is None:
                waiting.pop(jid, None)
                begin.pop(jid, None)
            elif why is None:
                waiting.pop(jid, None)
                begin.pop(jid, None)
                if have is None:
                    view.add_pending(job)
            else:
                waiting[jid] = job
                if why == REASON_BEGIN_TIME:
                    begin[jid] = job
                else:
                    begin.pop(jid, None)
                job.reason = why  # type: ignore[attr-defined]

    def _sync_running(self, running: Mapping[int, SchedRunning], ids: Iterable[int]) -> None:
        view = self.view
        for jid in ids:
            want = running.get(jid)
            have = view.running_job(jid)
            if have is want:
                continue
            if have is not None:
                view.remove_running(have)
            if want is not None:
                view.add_running(want)

    def waiting_for_begin(self) -> int:
        """How many pending jobs wait for their begin time (for statistics)."""
        return len(self.begin)
