"""The backfill scheduler plugins: ``easy``, ``conservative`` and ``backfill`` (configured mode).

Policy (per partition, jobs in queue order: priority descending, then submit
time, then job id):

* **EASY** — the first job that cannot start gets a reservation at the earliest
  time enough resources free up, judged by running jobs' expected ends
  (start + time limit). A later job starts now only if it cannot delay that
  reservation: it ends by the reserved start (the *shadow time*), or it only
  uses resources that are spare at the shadow time (node level: on nodes the
  reservation does not need, or leaving enough on them).
* **conservative** — every job, up to ``depth`` per partition, gets a
  reservation in an availability profile (per node and time); a job starts now
  only if it does not delay any earlier reservation.

Jobs that are not eligible (held, begin time, account, partition limits, a
request that can never fit) keep their specific reason and never block anyone.
``Plan.reserved`` carries each reservation's planned start; reasons are
``Resource`` for reserved jobs, ``ResourceReserved`` for a job that would fit
the free resources but would delay a reservation, ``Priority`` otherwise.

Advance reservations (``view.reservations``, docs/reservations.md) are honoured by the general
and the vector paths (see their modules); the count-based path is not used while there are any.

Three implementations: the count-based fast path (:mod:`crane_sched_toolkit.pool`)
for one partition of identical whole-node jobs (e.g. ``crane sim``'s default
model), kept incrementally across calls; the general node-level path on time
profiles (:mod:`crane_sched_backfill.general`); and, for EASY on clusters of at
least ``vector_nodes`` nodes, the NumPy engine (:mod:`crane_sched_backfill.vector`),
which keeps per-node shadow times and slack instead of full profiles.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crane_kernel import hookimpl
from crane_sched_toolkit.pool import Pool, refresh

from crane_sched_backfill.general import plan_general
from crane_sched_backfill.settings import Settings, parse_settings
from crane_sched_backfill.vector import plan_easy_vector

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, Plan

__all__ = ["BackfillScheduler", "EasyScheduler", "ConservativeScheduler"]


class BackfillScheduler:
    """Backfilling scheduler; the mode comes from the ``mode`` setting (default ``easy``).

    Instantiated by stevedore with no arguments; :meth:`crane_plugin_configure` takes the
    settings documented in :mod:`crane_sched_backfill.settings`.
    ``last_path`` tells which implementation answered the last call
    (``"pool"``, ``"vector"`` or ``"general"``).
    """

    default_mode = "easy"

    def __init__(self) -> None:
        self.settings: Settings = parse_settings({}, self.default_mode)
        self._pool: Pool | None = None
        self._placements: dict[int, tuple[float, list[int]]] = {}
        self.last_path = ""

    @hookimpl
    def crane_plugin_configure(self, settings: Mapping[str, Any]) -> None:
        """Validate and apply settings; a bad key or value raises ``ValueError`` naming it."""
        self.settings = parse_settings(settings, self.default_mode)
        self._pool = None
        self._placements = {}

    @hookimpl
    def crane_plugin_shutdown(self) -> None:
        """Drop the state kept between passes (the incremental pool holds the last view and its jobs)."""
        self._pool = None
        self._placements = {}

    @hookimpl
    def crane_schedule(self, view: "ClusterView", now: float) -> "Plan":
        """Hook entry point: one backfill pass over ``view`` (see :meth:`schedule`)."""
        return self.schedule(view, now)

    def schedule(self, view: "ClusterView", now: float) -> "Plan":
        """Run one scheduling pass and return the plan; ``view`` is not modified.

        The garbage collector is paused during the pass: a pass allocates many short-lived
        objects and no cycles, and a full collection in the middle can cost a third of its time.
        """
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            return self._schedule(view, now)
        finally:
            if paused:
                gc.enable()

    def _schedule(self, view: "ClusterView", now: float) -> "Plan":
        settings = self.settings
        if settings.fast_path and not view.reservations:  # the count-based pool knows no reservations
            plan = self._fast(view, now)
            if plan is not None:
                self.last_path = "pool"
                return plan
        self._pool = None
        if settings.vector_nodes and len(view.nodes) >= settings.vector_nodes:
            plan = plan_easy_vector(view, now, settings)
            if plan is not None:
                self.last_path = "vector"
                return plan
        self.last_path = "general"
        plan, self._placements = plan_general(view, now, settings, self._placements)
        return plan

    def _fast(self, view: "ClusterView", now: float) -> "Plan | None":
        pool = self._pool = refresh(self._pool, view, now)
        if pool is None:
            return None
        ps = self.settings.for_partition(pool.pname)
        if ps.mode == "easy":
            return pool.easy(now, ps, self.settings.max_jobs)
        return pool.conservative(now, ps, self.settings.max_jobs)


class EasyScheduler(BackfillScheduler):
    """Entry point ``crane.scheduler: easy`` — EASY backfilling unless configured otherwise."""

    default_mode = "easy"


class ConservativeScheduler(BackfillScheduler):
    """Entry point ``crane.scheduler: conservative`` — conservative backfilling unless configured otherwise."""

    default_mode = "conservative"
