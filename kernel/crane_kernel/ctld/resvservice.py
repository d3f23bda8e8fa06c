"""The reservation and license RPCs of cranectld, mixed into the gRPC service (ctld/service.py).

``CreateReservation``, ``UpdateReservation`` and ``DeleteReservation`` are operators' and admins'
(``reservation.modify``); ``QueryReservationInfo`` (``reservation.query``) and ``QueryLicensesInfo``
(``license.query``) anyone's. The controller side is :mod:`crane_kernel.ctld.reservations` and
:mod:`crane_kernel.ctld.licenses`.
"""

from __future__ import annotations

from typing import Any

import grpc
from crane_common.hostlist import compress
from crane_common.proto import crane_pb2 as pb
from google.protobuf import json_format

from crane_kernel.ctld.reservations import Reservation, ReservationError
from crane_kernel.ctld.rpcguard import guarded as _guarded
from crane_kernel.ctld.rpcguard import one_line as _one_line


def _info_dict(msg: Any) -> dict[str, Any]:
    """A ReservationInfo as a dict (proto field names; absent fields left out)."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


class ReservationServiceMixin:
    """The five RPCs; ``self.ctl`` is the controller, ``self._authorized`` the service's check."""

    ctl: Any

    def _reservation_info(self, resv: Reservation, now: float) -> Any:
        ctl = self.ctl
        cpu_total, cpu_alloc, mem_total, mem_alloc = ctl.reservation_usage(resv)
        return pb.ReservationInfo(
            reservation_name=resv.name, start_time=int(resv.start), duration=int(resv.duration),
            partition=resv.partition, craned_regex=compress(list(resv.nodes)), cpu_total=cpu_total,
            cpu_alloc=cpu_alloc, mem_total=mem_total, mem_alloc=mem_alloc,
            allowed_accounts=list(resv.allowed_accounts), denied_accounts=list(resv.denied_accounts),
            allowed_users=list(resv.allowed_users), denied_users=list(resv.denied_users), flags=list(resv.flags),
            node_count=len(resv.nodes), active=resv.active(now), creator=resv.creator)

    @_guarded
    def CreateReservation(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Create a reservation (operators and admins)."""
        ident = self._authorized(context, "CreateReservation", "reservation.modify")  # type: ignore[attr-defined]
        self._bounded(context, request.reservation.allowed_accounts, request.reservation.denied_accounts,  # type: ignore[attr-defined]
                      request.reservation.allowed_users, request.reservation.denied_users)
        try:
            self.ctl.create_reservation(_info_dict(request.reservation), request.node_count, ident.user)
        except (ReservationError, ValueError, OverflowError) as exc:
            return pb.CreateReservationReply(ok=False, reason=_one_line(exc))
        return pb.CreateReservationReply(ok=True)

    @_guarded
    def UpdateReservation(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Change fields of a reservation (operators and admins)."""
        self._authorized(context, "UpdateReservation", "reservation.modify")  # type: ignore[attr-defined]
        self._bounded(context, request.set_fields)  # type: ignore[attr-defined]
        try:
            self.ctl.update_reservation(request.reservation_name, _info_dict(request.changes),
                                        list(request.set_fields))
        except (ReservationError, ValueError, OverflowError) as exc:
            return pb.UpdateReservationReply(ok=False, reason=_one_line(exc))
        return pb.UpdateReservationReply(ok=True)

    @_guarded
    def DeleteReservation(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Delete a reservation (operators and admins); jobs running in it keep running."""
        self._authorized(context, "DeleteReservation", "reservation.modify")  # type: ignore[attr-defined]
        try:
            self.ctl.delete_reservation(request.reservation_name)
        except ReservationError as exc:
            return pb.DeleteReservationReply(ok=False, reason=_one_line(exc))
        return pb.DeleteReservationReply(ok=True)

    @_guarded
    def QueryReservationInfo(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The reservations (all, or the named ones), by start time."""
        self._authorized(context, "QueryReservationInfo", "reservation.query")  # type: ignore[attr-defined]
        self._bounded(context, request.names)  # type: ignore[attr-defined]
        ctl = self.ctl
        wanted = set(request.names)
        with ctl.lock:
            now = ctl.clock()
            found = [r for r in sorted(ctl.reservations.values(), key=lambda r: (r.start, r.name))
                     if (not wanted or r.name in wanted) and r.end > now]
            infos = [self._reservation_info(r, now) for r in found]
        missing = sorted(wanted - {r.name for r in found})
        if missing:
            return pb.QueryReservationInfoReply(ok=False, reason=f"Reservation {missing[0][:64]} not found",
                                                reservation_info_list=infos)
        return pb.QueryReservationInfoReply(ok=True, reservation_info_list=infos)

    @_guarded
    def QueryLicensesInfo(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The cluster's licenses (all, or the named ones): total, used, free."""
        self._authorized(context, "QueryLicensesInfo", "license.query")  # type: ignore[attr-defined]
        self._bounded(context, request.names)  # type: ignore[attr-defined]
        with self.ctl.lock:
            rows = self.ctl.licenses_info(list(request.names))
        return pb.QueryLicensesInfoReply(ok=True, license_info_list=[
            pb.LicenseInfo(name=n, total=t, used=u, free=max(0, t - u)) for n, t, u in rows])


def fill_job_extras(ctl: Any, info: Any, job_id: int) -> None:
    """``JobInfo.reservation`` and ``JobInfo.licenses`` of one job (call under the controller's lock)."""
    resv = ctl.resv_jobs.get(job_id)
    if resv:
        info.reservation = resv
    lic = ctl.job_licenses(job_id)
    if lic:
        info.licenses.update(lic)
