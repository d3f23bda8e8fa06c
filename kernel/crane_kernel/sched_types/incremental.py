"""The view a caller keeps across scheduling calls: :class:`IncrementalView` and its :class:`ViewDelta`.

Part of the scheduler protocol (:mod:`crane_kernel.sched_types`, which re-exports both names and
documents ``version`` and ``delta``). The controller keeps one for its whole life, and so does
the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crane_kernel.sched_types import ClusterView, SchedJob, SchedNode, SchedPartition, SchedRunning

__all__ = ["IncrementalView", "ViewDelta"]


class ViewDelta:
    """What changed in an :class:`IncrementalView` since the previous scheduling call.

    * ``pending_added`` / ``pending_removed``: ``SchedJob`` objects that entered/left ``view.pending``.
    * ``running_added`` / ``running_removed``: ``SchedRunning`` objects that entered/left ``view.running``
      (a running job whose expected end changes is a new object: the old one removed, the new added).
    * ``priorities``: pending jobs' ``priority`` values may have changed.
    * ``other``: anything else changed (nodes, partitions, a pending job's request): rebuild everything.

    An object is never both added and removed in one delta when the view is changed through the
    :class:`IncrementalView` methods (a job that came and went between two calls is in neither).
    Callers that edit the lists themselves (the simulator does, for speed) must keep that rule or,
    where they cannot, list the addition first.
    """

    __slots__ = ("pending_added", "pending_removed", "running_added", "running_removed", "priorities", "other")

    def __init__(self) -> None:
        self.pending_added: list[SchedJob] = []
        self.pending_removed: list[SchedJob] = []
        self.running_added: list[SchedRunning] = []
        self.running_removed: list[SchedRunning] = []
        self.priorities = False
        self.other = False

    def clear(self) -> None:
        """Forget every recorded change (called right after a scheduling call)."""
        self.pending_added.clear()
        self.pending_removed.clear()
        self.running_added.clear()
        self.running_removed.clear()
        self.priorities = False
        self.other = False

    def empty(self) -> bool:
        """True when nothing has changed."""
        return not (self.pending_added or self.pending_removed or self.running_added or self.running_removed
                    or self.priorities or self.other)


class IncrementalView(ClusterView):
    """A :class:`ClusterView` kept across scheduling calls, with ``version`` and a :class:`ViewDelta`.

    Change it through :meth:`add_pending`, :meth:`remove_pending`, :meth:`add_running`,
    :meth:`remove_running` and :meth:`changed` (O(1) each; they keep the delta), and bracket every
    scheduling call with :meth:`begin_call` and :meth:`end_call`. Lists are unordered (removal
    moves the last element into the hole). Objects are keyed by ``job_id``.
    """

    __slots__ = ("_pending_pos", "_running_pos", "_pending_new", "_running_new")

    def __init__(
        self,
        nodes: list[SchedNode],
        partitions: Mapping[str, SchedPartition],
        pending: list[SchedJob],
        running: list[SchedRunning] | None = None,
        *,
        config: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(nodes, partitions, pending, running, config=config)
        self.version = 0
        self.delta = ViewDelta()
        self._pending_pos = {j.job_id: i for i, j in enumerate(self.pending)}
        self._running_pos = {r.job_id: i for i, r in enumerate(self.running)}
        self._pending_new: set[int] = set()
        self._running_new: set[int] = set()

    # -- pending ---------------------------------------------------------------------------
    def pending_job(self, job_id: int) -> SchedJob | None:
        """The pending job with this id in the view, or ``None``."""
        pos = self._pending_pos.get(job_id)
        return None if pos is None else self.pending[pos]

    def add_pending(self, job: SchedJob) -> None:
        """Put ``job`` into ``pending`` (it must not be there yet)."""
        self._pending_pos[job.job_id] = len(self.pending)
        self.pending.append(job)
        self._pending_new.add(job.job_id)
        self.delta.pending_added.append(job)  # type: ignore[union-attr]

    def remove_pending(self, job: SchedJob) -> None:
        """Take ``job`` out of ``pending`` (it must be there)."""
        _take(self.pending, self._pending_pos, job)
        if job.job_id in self._pending_new:  # came and went between two calls: in neither list
            self._pending_new.discard(job.job_id)
            _drop(self.delta.pending_added, job)  # type: ignore[union-attr]
        else:
            self.delta.pending_removed.append(job)  # type: ignore[union-attr]

    # -- running ---------------------------------------------------------------------------
    def running_job(self, job_id: int) -> SchedRunning | None:
        """The running entry with this id in the view, or ``None``."""
        pos = self._running_pos.get(job_id)
        return None if pos is None else self.running[pos]

    def add_running(self, r: SchedRunning) -> None:
        """Put ``r`` into ``running`` (no entry for its job may be there)."""
        self._running_pos[r.job_id] = len(self.running)
        self.running.append(r)
        self._running_new.add(r.job_id)
        self.delta.running_added.append(r)  # type: ignore[union-attr]

    def remove_running(self, r: SchedRunning) -> None:
        """Take ``r`` out of ``running`` (it must be there)."""
        _take(self.running, self._running_pos, r)
        if r.job_id in self._running_new:
            self._running_new.discard(r.job_id)
            _drop(self.delta.running_added, r)  # type: ignore[union-attr]
        else:
            self.delta.running_removed.append(r)  # type: ignore[union-attr]

    # -- the rest ----------------------------------------------------------------------------
    def changed(self) -> None:
        """Record a change the lists do not show (nodes, partitions, a pending job's request)."""
        self.delta.other = True  # type: ignore[union-attr]

    def begin_call(self) -> int:
        """Right before ``crane_schedule``: the next version (returned)."""
        self.version += 1  # type: ignore[operator]
        return self.version  # type: ignore[return-value]

    def end_call(self, failed: bool = False) -> None:
        """Right after ``crane_schedule``: start a new delta (``failed``: the call raised; the next call rebuilds)."""
        self.delta.clear()  # type: ignore[union-attr]
        self._pending_new.clear()
        self._running_new.clear()
        if failed:
            self.delta.other = True  # type: ignore[union-attr]


def _take(items: list[Any], pos: dict[int, int], obj: Any) -> None:
    """Remove ``obj`` from ``items`` in O(1): the last element moves into its place."""
    i = pos.pop(obj.job_id)
    last = items.pop()
    if last is not obj:
        items[i] = last
        pos[last.job_id] = i


def _drop(items: list[Any], obj: Any) -> None:
    """Remove ``obj`` (by identity) from a short list of this window's additions."""
    for i in range(len(items) - 1, -1, -1):
        if items[i] is obj:
            del items[i]
            return
