"""An incrementally maintained :class:`~crane_kernel.sched_types.ClusterView` with a change journal.

The simulator keeps ONE view for the whole run and mutates it between
scheduling passes (the same ``SchedNode``/``SchedJob``/``SchedRunning``
objects, never rebuilt). So that a scheduler plugin can keep sorted structures
across calls instead of rebuilding them, the view also carries, as an optional
extension of the protocol:

``version`` (int)
    Incremented by the caller right before every ``crane_schedule`` call.
``delta`` (:class:`ViewDelta`)
    Everything that changed since the call with ``version - 1``: pending jobs
    added/removed, running jobs added/removed (``SchedNode`` free resources
    already reflect them), and flags for anything else.

A plugin may trust its cache when it last saw *this* view object with
``version - 1``; otherwise (a fresh view from the controller, a skipped
version, ``delta.other`` set) it must rebuild from the view. Plugins read these
attributes with ``getattr(view, "delta", None)``, so plain ``ClusterView``
objects keep working. Nothing here is simulator-specific: a controller that
maintains its view incrementally can use the same class.
"""

from __future__ import annotations

from collections.abc import Mapping

from crane_kernel.sched_types import ClusterView, SchedJob, SchedNode, SchedPartition, SchedRunning

__all__ = ["IncrementalView", "ViewDelta"]


class ViewDelta:
    """Changes to a view since the previous scheduling call.

    * ``pending_added`` / ``pending_removed``: ``SchedJob`` objects that entered/left ``view.pending``.
    * ``running_added`` / ``running_removed``: ``SchedRunning`` objects that entered/left ``view.running``.
    * ``priorities``: pending jobs' ``priority`` values may have changed.
    * ``other``: anything else changed (nodes, partitions, a job's request); rebuild everything.

    Within one delta, additions are listed before removals of the same object
    may happen (a job can start and end between two calls): apply additions first.
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
    """A :class:`ClusterView` plus ``version`` and ``delta`` (see the module docstring)."""

    __slots__ = ("version", "delta")

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
