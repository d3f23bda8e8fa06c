"""cacctmgr's output: the ``show`` tables and the lines for the other verbs' replies.

Columns are chosen by name (``format=Name,Blocked``, case-insensitive; an unknown one is exit
code 5) before anything is asked of the controller, so this module needs no protobuf import:
the cells are read from the reply messages by attribute. Unlimited limits (upstream's
sentinels, see ``crane.proto``) show as ``unlimited``, durations as ``[D-]HH:MM:SS``,
times as local ``YYYY-MM-DD HH:MM:SS``, lists comma-separated, booleans ``true``/``false``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from crane_cli.cacctmgr_parse import PROG, TXN_ACTIONS, UNLIMITED_COUNT, Call
from crane_cli.errors import EXIT_BACKEND, EXIT_FORMAT, EXIT_OK, CliError

UNLIMITED_TIME = 315576000000
UNLIMITED_CPUS = 1e13
ADMIN_LEVEL_NAMES = ("None", "Operator", "Admin", "Root")
PREEMPT_MODE_NAMES = ("OFF", "CANCEL", "REQUEUE", "SUSPEND")


def _join(values: object) -> str:
    return ",".join(str(v) for v in values)  # type: ignore[attr-defined]


def _bool(value: object) -> str:
    return "true" if value else "false"


def count(n: int) -> str:
    """A job count limit: ``unlimited`` at the sentinel."""
    return "unlimited" if n >= UNLIMITED_COUNT else str(n)


def cpus(n: float) -> str:
    """A CPU limit: ``unlimited`` at or above 1e13."""
    return "unlimited" if n >= UNLIMITED_CPUS else f"{n:g}"


def duration(seconds: int, zero_is_unlimited: bool) -> str:
    """A time limit: ``unlimited`` for the sentinels (and 100 years or more), else ``[D-]HH:MM:SS``."""
    from crane_common.units import MAX_DURATION, format_duration

    if (zero_is_unlimited and seconds == 0) or seconds >= min(UNLIMITED_TIME, MAX_DURATION):
        return "unlimited"
    return format_duration(seconds)


def _name(names: tuple[str, ...], value: int) -> str:
    return names[value] if 0 <= value < len(names) else str(value)


def _uniq(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _user_qos(u: object) -> str:
    return _join(_uniq([q for p in u.allowed_partition_qos_list for q in p.qos_list]))  # type: ignore[attr-defined]


def _user_default_qos(u: object) -> str:
    parts = list(u.allowed_partition_qos_list)  # type: ignore[attr-defined]
    defaults = _uniq([p.default_qos for p in parts])
    if len(defaults) <= 1:
        return defaults[0] if defaults else ""
    return _join(f"{p.partition_name}:{p.default_qos}" for p in parts if p.default_qos)


def _qos_flags(flags: int) -> str:
    return "DenyOnLimit" if flags & 1 else "None"


Getter = Callable[[object], str]

COLUMNS: dict[str, dict[str, Getter]] = {
    "account": {
        "Name": lambda a: a.name,
        "Description": lambda a: a.description,
        "AllowedPartition": lambda a: _join(a.allowed_partitions),
        "Users": lambda a: _join(a.users),
        "DefaultQos": lambda a: a.default_qos,
        "AllowedQosList": lambda a: _join(a.allowed_qos_list),
        "Coordinators": lambda a: _join(a.coordinators),
        "Blocked": lambda a: _bool(a.blocked),
        "ParentAccount": lambda a: a.parent_account,
        "ChildAccounts": lambda a: _join(a.child_accounts),
    },
    "user": {
        "Account": lambda u: u.account,
        "UserName": lambda u: u.name,
        "Uid": lambda u: str(u.uid),
        "AllowedPartition": lambda u: _join(_uniq([p.partition_name for p in u.allowed_partition_qos_list])),
        "AllowedQosList": _user_qos,
        "DefaultQos": _user_default_qos,
        "Coordinated": lambda u: _join(u.coordinator_accounts),
        "AdminLevel": lambda u: _name(ADMIN_LEVEL_NAMES, u.admin_level),
        "Blocked": lambda u: _bool(u.blocked),
        "DefaultAccount": lambda u: _bool(getattr(u, "is_default_account", False)),
    },
    "qos": {
        "Name": lambda q: q.name,
        "Description": lambda q: q.description,
        "Priority": lambda q: str(q.priority),
        "MaxJobsPerUser": lambda q: count(q.max_jobs_per_user),
        "MaxCpusPerUser": lambda q: cpus(q.max_cpus_per_user),
        "MaxJobsPerAccount": lambda q: count(q.max_jobs_per_account),
        "MaxSubmitJobsPerUser": lambda q: count(q.max_submit_jobs_per_user),
        "MaxSubmitJobsPerAccount": lambda q: count(q.max_submit_jobs_per_account),
        "MaxTresPerUser": lambda q: "unlimited",  # TRES limits are not modelled
        "MaxTresPerAccount": lambda q: "unlimited",
        "MaxTres": lambda q: "unlimited",
        "MaxJobs": lambda q: count(q.max_jobs),
        "MaxSubmitJobs": lambda q: count(q.max_submit_jobs),
        "MaxWall": lambda q: duration(q.max_wall, zero_is_unlimited=True),
        "MaxTimeLimitPerJob": lambda q: duration(q.max_time_limit_per_job, zero_is_unlimited=False),
        "Flags": lambda q: _qos_flags(q.flags),
        "Preempt": lambda q: _join(q.preempt),
        "PreemptMode": lambda q: _name(PREEMPT_MODE_NAMES, q.preempt_mode),
    },
    "transaction": {
        "CreationTime": lambda t: _timestamp(t.creation_time),
        "Actor": lambda t: t.actor,
        "Action": lambda t: _name(TXN_ACTIONS, t.action),
        "Target": lambda t: t.target,
        "Info": lambda t: t.info,
    },
}

DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "account": ("Name", "Description", "AllowedPartition", "Users", "DefaultQos", "AllowedQosList", "Coordinators",
                "Blocked"),
    "user": ("Account", "UserName", "Uid", "AllowedPartition", "AllowedQosList", "DefaultQos", "Coordinated",
             "AdminLevel", "Blocked"),
    "qos": tuple(COLUMNS["qos"]),
    "transaction": tuple(COLUMNS["transaction"]),
}

ITEMS = {"account": "account_list", "user": "user_list", "qos": "qos_list", "transaction": "txn_log_list"}


def _timestamp(ts: int) -> str:
    from crane_cli.timefmt import format_timestamp

    return format_timestamp(ts)


def columns(entity: str, wanted: list[str] | None) -> list[str]:
    """The column names to show: the defaults, or ``wanted`` (case-insensitive) in its order; else exit 5."""
    if wanted is None:
        return list(DEFAULT_COLUMNS[entity])
    known = {name.lower(): name for name in COLUMNS[entity]}
    out = []
    for col in wanted:
        name = known.get(col.lower())
        if name is None:
            raise CliError(f"{PROG}: unknown column {col!r} for show {entity} (columns: {', '.join(COLUMNS[entity])})",
                           EXIT_FORMAT)
        out.append(name)
    return out


def render(entity: str, items: list, cols: list[str]) -> str:
    """The table of ``items`` (reply messages) with ``cols``: upper-case headers, one row per item."""
    from crane_cli.table import render_table

    getters = [COLUMNS[entity][c] for c in cols]
    rows = [[g(item) for g in getters] for item in items]
    return render_table([c.upper() for c in cols], rows, full=True)


# -- replies ---------------------------------------------------------------------------------------

def rich_errors(reply: object) -> list[str]:
    """One line per ``RichError`` of the reply.

    Upstream's description is the entity's name (``phys: <message>``); this controller's is a whole
    sentence naming the entity and the cause, printed alone. Without one, the code's message.
    """
    from crane_cli.errcodes import message

    lines = []
    for err in getattr(reply, "rich_error_list", ()):
        text = message(err.code)
        desc = err.description
        lines.append((desc if " " in desc else f"{desc}: {text}") if desc else text)
    return lines


_PAST = {"add": "Added", "delete": "Deleted", "block": "Blocked", "unblock": "Unblocked", "modify": "Modified"}
_LABEL = {"account": "account", "user": "user", "qos": "QoS"}


def success_line(call: Call) -> str:
    """What a successful add/delete/block/unblock/modify prints."""
    names = ",".join(call.names)
    where = ""
    account = call.kwargs.get("account")
    if call.entity == "user" and isinstance(account, str) and account:
        where = f" {({'add': 'to', 'delete': 'from'}).get(call.verb, 'in')} account {account}"
    label = _LABEL[call.entity] + ("s" if len(call.names) > 1 and call.entity != "qos" else "")
    return f"{_PAST[call.verb]} {label} {names}{where}."


def report(call: Call, reply: object) -> int:
    """Print the outcome of one add/delete/block/unblock/modify reply; its exit code."""
    if reply.ok:  # type: ignore[attr-defined]
        print(success_line(call))
        for line in rich_errors(reply):  # partial failures a controller may still report
            sys.stderr.write(line + "\n")
        return EXIT_OK
    lines = rich_errors(reply)
    if not lines and hasattr(reply, "code"):
        from crane_cli.errcodes import with_reason

        reason = " ".join((getattr(reply, "reason", "") or "").split())  # a sentence naming the entity
        lines = [reason or f"{','.join(call.names)}: {with_reason(reply.code)}"]  # type: ignore[attr-defined]
    if not lines:
        lines = [f"Failed to {call.verb} {_LABEL[call.entity]} {','.join(call.names)}."]
    for line in lines:
        sys.stderr.write(line + "\n")
    return EXIT_BACKEND


def show(call: Call, reply: object, cols: list[str]) -> int:
    """Print a query reply as a table (errors on stderr); its exit code."""
    items = list(getattr(reply, ITEMS[call.entity]))
    if reply.ok or items:  # type: ignore[attr-defined]
        print(render(call.entity, items, cols))
    lines = rich_errors(reply)
    if not reply.ok and not lines:  # type: ignore[attr-defined]
        from crane_cli.errcodes import with_reason

        code = getattr(reply, "code", 0)
        lines = [with_reason(code, "") if code else f"Failed to show {call.entity}."]
    missing = _missing(call, items, reply)
    for line in lines + missing:
        sys.stderr.write(line + "\n")
    return EXIT_OK if reply.ok and not missing else EXIT_BACKEND  # type: ignore[attr-defined]


_NOT_FOUND = {"account": 11, "user": 3, "qos": 24}  # ERR_INVALID_ACCOUNT, ERR_INVALID_USER, ERR_INVALID_QOS


def _missing(call: Call, items: list, reply: object) -> list[str]:
    """Lines for the names asked for that the reply neither lists nor reports an error about."""
    if not call.names or call.entity not in _NOT_FOUND or list(getattr(reply, "rich_error_list", ())):
        return []  # a controller that reports what it did not find has said so already
    from crane_cli.errcodes import message

    found = {item.name for item in items}
    code = 9 if call.entity == "user" and call.kwargs.get("account") else _NOT_FOUND[call.entity]
    return [f"{name}: {message(code)}" for name in call.names if name not in found]
