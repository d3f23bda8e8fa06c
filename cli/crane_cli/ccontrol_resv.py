"""ccontrol's reservations and licenses (docs/reservations.md).

* ``ccontrol create reservation <name> startTime=<time|now> duration=<[D-]HH:MM:SS> [partition=<p>]
  nodes=<hostlist> | nodeCnt=<n> account=<a,b> user=<u,v> [flags=MAINT,IGNORE_JOBS]`` — a list
  starting with ``-`` denies (``user=-bob``: everyone the other lists allow but bob);
* ``ccontrol update reservation <name> key=value...`` (the same keys; ``nodes=`` replaces the nodes);
* ``ccontrol delete reservation <name>``;
* ``ccontrol show reservation [name]`` and ``ccontrol show lic [name,...]``: ``Key=Value`` blocks like
  the other ``show`` blocks, ``--json`` the reply;
* ``ccontrol update jobid=<ids> reservation=<name|"">`` / ``licenses=<lic:n,...|"">`` (pending jobs):
  :func:`job_update_request`, called from ccontrol's ``update jobid=`` branch.

Upstream's lines: ``Reservation <name> created successfully.`` / ``Failed to create reservation:
<reason>.`` (exit 1), the same for update and delete.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from crane_cli.errors import EXIT_BACKEND, EXIT_GENERIC, EXIT_OK, arg_error

KEYS = ("starttime", "duration", "partition", "nodes", "nodecnt", "account", "accounts", "user", "users", "flags")
_FIELD_OF = {"starttime": "start_time", "duration": "duration", "partition": "partition", "nodes": "craned_regex",
             "flags": "flags"}


def _pairs(words: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        key = key.lower()
        if not sep or not key:
            raise arg_error(f"ccontrol: expected KEY=VALUE, got {word!r}")
        if key not in KEYS:
            raise arg_error(f"ccontrol: unknown reservation key {key!r} (startTime, duration, partition, nodes, "
                            "nodeCnt, account, user, flags)")
        out[key] = value
    return out


def _split(value: str) -> tuple[list[str], bool]:
    """``a,b`` (allowed) or ``-a,b`` (denied): the names and whether they are denied."""
    deny = value.startswith("-")
    names = [x.strip() for x in value.lstrip("-").split(",") if x.strip()]
    return names, deny


def _fill(info: Any, kv: dict[str, str]) -> list[str]:
    """Put the ``key=value`` pairs into a ReservationInfo; return the fields set."""
    from crane_cli.timefmt import parse_duration, parse_time_expr

    fields: list[str] = []
    if "starttime" in kv:
        try:
            info.start_time = int(time.time()) if kv["starttime"].lower() == "now" else parse_time_expr(kv["starttime"])
        except ValueError as exc:
            raise arg_error(f"ccontrol: invalid startTime {kv['starttime']!r}: {exc}") from None
        fields.append("start_time")
    if "duration" in kv:
        try:
            info.duration = parse_duration(kv["duration"])
        except ValueError as exc:
            raise arg_error(f"ccontrol: invalid duration {kv['duration']!r}: {exc}") from None
        if info.duration <= 0:
            raise arg_error("ccontrol: the duration must be positive")
        fields.append("duration")
    if "partition" in kv:
        info.partition = kv["partition"]
        fields.append("partition")
    if "nodes" in kv:
        info.craned_regex = kv["nodes"]
        fields.append("craned_regex")
    if "flags" in kv:
        info.flags.extend(f.strip().upper() for f in kv["flags"].split(",") if f.strip())
        fields.append("flags")
    for key, what in (("account", "accounts"), ("accounts", "accounts"), ("user", "users"), ("users", "users")):
        if key in kv:
            names, deny = _split(kv[key])
            field = f"{'denied' if deny else 'allowed'}_{what}"
            getattr(info, field).extend(names)
            fields.append(field)
    return fields


def _outcome(reply: Any, verb: str, name: str, as_json: bool) -> int:
    if as_json:
        from crane_cli.protojson import to_json

        print(to_json(reply))
        return EXIT_OK if reply.ok else EXIT_GENERIC
    if reply.ok:
        print(f"Reservation {name} {verb}d successfully.")
        return EXIT_OK
    sys.stderr.write(f"Failed to {verb} reservation: {reply.reason.rstrip('.')}.\n")
    return EXIT_GENERIC


def _name(words: list[str], action: str) -> str:
    if len(words) < 2 or words[0].lower() not in ("reservation", "reservations", "resv"):
        raise arg_error(f"ccontrol: usage: ccontrol {action} reservation <name> [key=value...]")
    if "=" in words[1]:
        raise arg_error(f"ccontrol: {action} reservation needs the reservation's name first")
    return words[1]


def create(ctld: Any, pb: Any, words: list[str], as_json: bool) -> int:
    """``ccontrol create reservation <name> key=value...``."""
    name = _name(words, "create")
    kv = _pairs(words[2:])
    info = pb.ReservationInfo(reservation_name=name)
    _fill(info, kv)
    if "duration" not in kv:
        raise arg_error("ccontrol: create reservation needs duration=")
    count = 0
    if "nodecnt" in kv:
        if not kv["nodecnt"].isdigit() or int(kv["nodecnt"]) <= 0:
            raise arg_error(f"ccontrol: invalid nodeCnt {kv['nodecnt']!r}")
        count = int(kv["nodecnt"])
    reply = ctld.call("CreateReservation", pb.CreateReservationRequest(reservation=info, node_count=count))
    return _outcome(reply, "create", name, as_json)


def update(ctld: Any, pb: Any, words: list[str], as_json: bool) -> int:
    """``ccontrol update reservation <name> key=value...`` (or ``update reservationName=<name> ...``)."""
    if words and words[0].lower().startswith("reservationname="):
        words = ["reservation", words[0].split("=", 1)[1], *words[1:]]
    name = _name(words, "update")
    kv = _pairs(words[2:])
    if "nodecnt" in kv:
        raise arg_error("ccontrol: nodeCnt= cannot be changed (give nodes=)")
    changes = pb.ReservationInfo()
    fields = _fill(changes, kv)
    if not fields:
        raise arg_error("ccontrol: update reservation needs something to change (key=value)")
    reply = ctld.call("UpdateReservation", pb.UpdateReservationRequest(reservation_name=name, changes=changes,
                                                                        set_fields=fields))
    return _outcome(reply, "update", name, as_json)


def delete(ctld: Any, pb: Any, words: list[str], as_json: bool) -> int:
    """``ccontrol delete reservation <name>``."""
    name = _name(words, "delete")
    if len(words) > 2:
        raise arg_error("ccontrol: usage: ccontrol delete reservation <name>")
    reply = ctld.call("DeleteReservation", pb.DeleteReservationRequest(reservation_name=name))
    return _outcome(reply, "delete", name, as_json)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) if ts > 0 else "unknown"


def reservation_block(r: Any) -> str:
    """One reservation (``ReservationInfo``): a first line, TAB-indented continuation lines."""
    from crane_cli.showblocks import _duration, _mem

    def names(allowed: Any, denied: Any) -> str:
        return ",".join([*allowed, *(f"-{x}" for x in denied)]) or "(null)"

    return "".join(line + "\n" for line in [
        f"ReservationName={r.reservation_name} StartTime={_when(r.start_time)} "
        f"EndTime={_when(r.start_time + r.duration)} Duration={_duration(r.duration)}",
        f"\tNodes={r.craned_regex or '(null)'} NodeCnt={r.node_count} Partition={r.partition or '(null)'} "
        f"Flags={','.join(r.flags) or '(null)'} State={'ACTIVE' if r.active else 'INACTIVE'}",
        f"\tTotalCPU={r.cpu_total:.2f} AllocCPU={r.cpu_alloc:.2f} TotalMem={_mem(r.mem_total)} "
        f"AllocMem={_mem(r.mem_alloc)}",
        f"\tUsers={names(r.allowed_users, r.denied_users)} Accounts={names(r.allowed_accounts, r.denied_accounts)} "
        f"Creator={r.creator or 'unknown'}",
    ])


def license_block(lic: Any) -> str:
    """One license (``LicenseInfo``)."""
    return (f"LicenseName={lic.name}\n\tTotal={lic.total} Used={lic.used} Free={lic.free} "
            f"Reserved={lic.reserved} Remote={'yes' if lic.remote else 'no'}\n")


def show(ctld: Any, pb: Any, entity: str, name: str | None, as_json: bool) -> int:
    """``ccontrol show reservation [name]`` / ``show lic [name,...]``."""
    if entity.startswith("lic"):
        names = [x for x in (name or "").split(",") if x]
        reply = ctld.call("QueryLicensesInfo", pb.QueryLicensesInfoRequest(names=names))
        items = list(reply.license_info_list)
        blocks = [license_block(x) for x in items]
        absent = sorted(set(names) - {x.name for x in items})
        missing = (f"show licenses failed: License {absent[0]} not found." if absent else
                   "No license is configured.")
    else:
        reply = ctld.call("QueryReservationInfo", pb.QueryReservationInfoRequest(names=[name] if name else []))
        blocks = [reservation_block(r) for r in reply.reservation_info_list]
        absent = [name] if name and not blocks else []
        missing = f"show reservations failed: Reservation {name} not found." if absent else \
            "No reservation is available."
    if as_json:
        from crane_cli.protojson import to_json

        print(to_json(reply))
        return EXIT_OK
    sys.stdout.write("".join(blocks))
    if absent:
        sys.stderr.write(missing + "\n")
        return EXIT_BACKEND
    if not blocks:
        print(missing)
    return EXIT_OK


def job_update_request(pb: Any, ids: list[int], kv: dict[str, str]) -> Any:
    """``update jobid=<ids> reservation=...`` or ``licenses=...``: the ModifyJobRequest, or None if neither."""
    if "reservation" in kv:
        return pb.ModifyJobRequest(job_ids=ids, reservation=kv["reservation"])
    if "licenses" in kv:
        return pb.ModifyJobRequest(job_ids=ids, licenses=kv["licenses"])
    return None


SHOW_ENTITIES = ("reservation", "reservations", "resv", "lic", "license", "licenses")
