"""The FIFO pass's view of advance reservations (``ClusterView.reservations``; docs/reservations.md).

* A job without a reservation may not use a node of a reservation whose window meets
  ``[now, now + its time limit)``: those nodes are added to its ``-x`` set for the pass. If it
  would fit without them, its reason names the reservation (``Reservation``, or ``ReqNodeNotAvail,
  Reserved for maintenance`` for a ``MAINT`` one) and it blocks its partition like any job waiting
  for resources.
* A job with a reservation (``-r``) runs only while it is active and only on its nodes (those of
  its partition); it never blocks its partition, only the later jobs of the same reservation.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from crane_kernel.sched_types import (
    REASON_RESERVATION_DELETED,
    REASON_RESERVATION_WAIT,
    SchedReservation,
    job_end,
)

if TYPE_CHECKING:
    from crane_kernel.sched_types import ClusterView, SchedJob

    from crane_sched_fifo.state import PartIndex


class Reserved:
    """One pass's reservations: which nodes a job must keep off, and a reservation job's candidates."""

    def __init__(self, view: ClusterView, now: float) -> None:
        live = sorted((r for r in view.reservations if r.end_time > now), key=lambda r: r.start_time)
        self.live = live
        self.starts = [r.start_time for r in live]
        self.by_name = {r.name: r for r in view.reservations}
        self.job_resv = view.job_reservations
        self.blocked: set[str] = set()  # reservations whose first waiting job did not fit
        self._closed: dict[int, tuple[frozenset[int] | None, str]] = {}
        self._cand: dict[tuple[str, str], list[int]] = {}

    def own(self, job: SchedJob) -> str:
        """The reservation the job asked for (``""``: none)."""
        return self.job_resv.get(job.job_id, "") if self.job_resv else ""

    def closed(self, job: SchedJob, now: float, own: str = "") -> tuple[frozenset[int] | None, str]:
        """``(nodes the job must keep off, the reason to give if they are why it waits)``."""
        n = bisect_left(self.starts, job_end(job, now))  # the reservations starting before it would end
        if own:
            return _union([r for r in self.live[:n] if r.name != own])
        got = self._closed.get(n)
        if got is None:
            got = self._closed[n] = _union(self.live[:n])
        return got

    def candidates(self, resv: SchedReservation, ps: PartIndex) -> list[int]:
        """The reservation's nodes in the job's partition, by index."""
        key = (resv.name, ps.name)
        got = self._cand.get(key)
        if got is None:
            got = self._cand[key] = [i for i in resv.nodes if i in ps.member_set]
        return got

    def waiting_reason(self, own: str, now: float) -> str | None:
        """Why a job of reservation ``own`` cannot run now whatever the resources (None: it may)."""
        resv = self.by_name.get(own)
        if resv is None:
            return REASON_RESERVATION_DELETED
        if not resv.active(now):
            return REASON_RESERVATION_WAIT
        return None


def _union(resvs: list[SchedReservation]) -> tuple[frozenset[int] | None, str]:
    if not resvs:
        return None, ""
    nodes: set[int] = set()
    for r in resvs:
        nodes.update(r.nodes)
    maint = next((r for r in resvs if r.maint), None)
    return frozenset(nodes), (maint or resvs[0]).blocked_reason()
