"""The fields ``cacctmgr modify`` may set, and how one :class:`ModifyItem` changes a record.

Field names are matched case-insensitively and without a trailing ``s``/``list`` the way
cacctmgr spells them (``AllowedPartition`` = ``AllowedPartitions``, ``AllowedQos`` =
``AllowedQosList``). ``=`` overwrites, ``+=`` adds to and ``-=`` removes from a list field; only
list fields accept ``+=``/``-=``. Counts and durations take ``-1``, ``unlimited`` or an empty value
for *unlimited* (``None``). Every refusal is an :class:`~crane_kernel.errors.AccountRejected` with
CraneSched's code: an unknown field or operation ``ERR_INVALID_PARAM``, a bad number
``ERR_CONVERT_TO_INTEGER``.
"""

from __future__ import annotations

import math
from typing import Any

from crane_common.levels import ADMIN_LEVELS
from crane_common.units import MAX_DURATION, DurationError, parse_duration

from crane_kernel.ctld.acctmodel import FLAG_DENY_ON_LIMIT
from crane_kernel.errors import AccountRejected

ERR_INVALID_ADMIN_LEVEL = 8
ERR_CONVERT_TO_INTEGER = 27
ERR_INVALID_PARAM = 52

OVERWRITE, ADD, DELETE = "=", "+=", "-="
PREEMPT_MODES = ("OFF", "CANCEL", "REQUEUE", "SUSPEND")
MAX_COUNT = 4294967294  # 4294967295 is upstream's "unlimited"
MAX_CPUS = 1e12         # 1e13 is upstream's "unlimited"
_UNLIMITED = {"", "-1", "unlimited", "infinite", "none"}

# field (normalised) -> (record attribute, type). Types: str, list, count, cpus, duration, flags, mode, level.
ACCOUNT_FIELDS = {
    "description": ("description", "str"), "allowedpartition": ("allowed_partitions", "list"),
    "allowedqos": ("allowed_qos", "list"), "defaultqos": ("default_qos", "str"),
    "parent": ("parent", "str"), "coordinator": ("coordinators", "list"),
}
USER_FIELDS = {  # "user." = the User record, "member." = the membership picked by `where Account=`
    "adminlevel": ("user.admin_level", "level"), "defaultaccount": ("user.default_account", "str"),
    "allowedpartition": ("member.allowed_partitions", "list"), "allowedqos": ("member.allowed_qos", "list"),
    "defaultqos": ("member.default_qos", "str"),
}
QOS_FIELDS = {
    "description": ("description", "str"), "priority": ("priority", "count"),
    "maxjobsperuser": ("max_jobs_per_user", "count"), "maxjobsperaccount": ("max_jobs_per_account", "count"),
    "maxjobs": ("max_jobs", "count"), "maxsubmitjobsperuser": ("max_submit_jobs_per_user", "count"),
    "maxsubmitjobsperaccount": ("max_submit_jobs_per_account", "count"),
    "maxsubmitjobs": ("max_submit_jobs", "count"), "maxcpusperuser": ("max_cpus_per_user", "cpus"),
    "maxtimelimitperjob": ("max_time_limit_per_job", "duration"), "maxwall": ("max_wall", "duration"),
    "flags": ("flags", "flags"), "preempt": ("preempt", "list"), "preemptmode": ("preempt_mode", "mode"),
}


def field_key(name: str) -> str:
    """The normalised form of a field name: lower case, without ``_`` or a ``list`` suffix."""
    key = name.strip().lower().replace("_", "")
    return key[:-4] if key.endswith("list") else key


def lookup(table: dict[str, tuple[str, str]], name: str, what: str) -> tuple[str, str]:
    """``(attribute, type)`` of field ``name`` (a plural ``s`` may be added) of a ``what`` record."""
    key = field_key(name)
    spec = table.get(key) or (table.get(key[:-1]) if key.endswith("s") else None)
    if spec is None:
        known = ", ".join(sorted(table))
        raise AccountRejected(f"unknown {what} field '{name[:64]}' (known: {known})", ERR_INVALID_PARAM)
    return spec


def split_values(values: list[str]) -> list[str]:
    """The items of a list value: every value split at commas, blanks dropped, order kept, no duplicates."""
    out: list[str] = []
    for v in values:
        for item in str(v).split(","):
            item = item.strip()
            if item and item not in out:
                out.append(item)
    return out


def one_value(field: str, values: list[str]) -> str:
    """The single value of a scalar field (none is ``""``; several are ``ERR_INVALID_PARAM``)."""
    if len(values) > 1:
        raise AccountRejected(f"{field} takes one value, not {len(values)}", ERR_INVALID_PARAM)
    return str(values[0]).strip() if values else ""


def parse_count(field: str, text: str, maximum: int = MAX_COUNT) -> int | None:
    """A whole number in ``[0, maximum]``, or None for unlimited."""
    if text.lower() in _UNLIMITED:
        return None
    try:
        n = int(text)
    except ValueError:
        raise AccountRejected(f"{field}: '{text[:64]}' is not a whole number", ERR_CONVERT_TO_INTEGER) from None
    if not 0 <= n <= maximum:
        raise AccountRejected(f"{field}: {n} is out of range (0 to {maximum}, -1 = unlimited)",
                              ERR_CONVERT_TO_INTEGER)
    return n


def parse_cpus(field: str, text: str) -> float | None:
    """A CPU count (fractions allowed), or None for unlimited."""
    if text.lower() in _UNLIMITED:
        return None
    try:
        x = float(text)
    except ValueError:
        raise AccountRejected(f"{field}: '{text[:64]}' is not a number", ERR_CONVERT_TO_INTEGER) from None
    if not math.isfinite(x) or not 0 <= x <= MAX_CPUS:
        raise AccountRejected(f"{field}: {text[:64]} is out of range", ERR_CONVERT_TO_INTEGER)
    return x


def parse_seconds(field: str, text: str) -> int | None:
    """A duration as :func:`crane_common.units.parse_duration` reads it (a bare number: minutes), or None."""
    if text.lower() in _UNLIMITED:
        return None
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        raise AccountRejected(f"{field}: {exc}", ERR_CONVERT_TO_INTEGER) from None
    return None if seconds >= MAX_DURATION else seconds


def parse_flags(field: str, values: list[str]) -> int:
    """``DenyOnLimit`` or ``None`` (a list of them)."""
    flags = 0
    for item in split_values(values):
        if item.lower() == "denyonlimit":
            flags |= FLAG_DENY_ON_LIMIT
        elif item.lower() != "none":
            raise AccountRejected(f"{field}: unknown flag '{item[:64]}' (DenyOnLimit or None)", ERR_INVALID_PARAM)
    return flags


def parse_level(text: str) -> str:
    """An admin level name (``none``, ``operator``, ``admin``, ``root``; any case)."""
    level = text.strip().lower()
    if level not in ADMIN_LEVELS:
        raise AccountRejected(f"unknown admin level '{text[:64]}' ({', '.join(ADMIN_LEVELS)})",
                              ERR_INVALID_ADMIN_LEVEL)
    return level


def parse_mode(text: str) -> str:
    """A preempt mode (``OFF``, ``CANCEL``, ``REQUEUE``, ``SUSPEND``; any case)."""
    mode = text.strip().upper() or "OFF"
    if mode not in PREEMPT_MODES:
        raise AccountRejected(f"unknown preempt mode '{text[:64]}' ({', '.join(PREEMPT_MODES)})", ERR_INVALID_PARAM)
    return mode


def apply_item(record: Any, attr: str, kind: str, field: str, op: str, values: list[str]) -> None:
    """Change ``record.attr`` by one item (``op`` is ``=``, ``+=`` or ``-=``)."""
    if op not in (OVERWRITE, ADD, DELETE):
        raise AccountRejected(f"{field}: unknown operation {op!r}", ERR_INVALID_PARAM)
    if kind == "list":
        items = split_values(values)
        current = list(getattr(record, attr))
        if op == OVERWRITE:
            new = items
        elif op == ADD:
            new = current + [i for i in items if i not in current]
        else:
            missing = [i for i in items if i not in current]
            if missing:
                raise AccountRejected(f"{field}: {', '.join(missing)} is not in the list", ERR_INVALID_PARAM)
            new = [i for i in current if i not in items]
        setattr(record, attr, new)
        return
    if op != OVERWRITE:
        raise AccountRejected(f"{field} is not a list: only '=' applies", ERR_INVALID_PARAM)
    if kind == "flags":
        setattr(record, attr, parse_flags(field, values))
        return
    text = one_value(field, values)
    if kind == "str":
        value: Any = text
    elif kind == "count":
        value = parse_count(field, text)
        if attr == "priority":
            value = value or 0
    elif kind == "cpus":
        value = parse_cpus(field, text)
    elif kind == "duration":
        value = parse_seconds(field, text)
    elif kind == "level":
        value = parse_level(text)
    else:  # mode
        value = parse_mode(text)
    setattr(record, attr, value)
