"""cacctmgr's keys and the calls a sentence asks for (:func:`plan`).

Each ``(verb, entity)`` has a table of keys (canonical name, accepted spellings, kind of value),
``modify`` one more for what follows ``set``; :func:`plan` checks the sentence of
:func:`~crane_cli.cacctmgr_parse.split_words` against them and returns :class:`Call` objects
(method, request type and keyword arguments for the protobuf constructor), still without
importing grpc or protobuf. Every mistake is exit code 2 (an empty ``format=``: 5).
"""

from __future__ import annotations

from crane_cli.cacctmgr_parse import (
    ADD,
    ADMIN_LEVELS,
    DELETE,
    ENTITY_ACCOUNT,
    ENTITY_USER,
    FLAG_DENY_ON_LIMIT,
    OVERWRITE,
    PREEMPT_MODES,
    PROG,
    UNLIMITED_COUNT,
    UNLIMITED_CPUS,
    UNLIMITED_TIME,
    UNLIMITED_WALL,
    Call,
    Pair,
    Words,
    action_of,
    bool_of,
    count_of,
    cpus_of,
    duration_of,
    flags_of,
    level_of,
    preempt_mode_of,
    priority_of,
    split_words,
    timestamp_of,
    value_of,
    values_of,
)
from crane_cli.errors import CliError, arg_error

# -- keys ----------------------------------------------------------------------------------------

# canonical key -> (spellings, kind). Kinds: str, list, count, priority, cpus, wall, time, bool, level,
# flags, mode, stamp, action, format, lines.
_PARTITION = ("partition", "partitions", "allowedpartition", "allowedpartitions")
_QOS_LIST = ("qoslist", "qos", "allowedqos", "allowedqoslist")
QOS_LIMITS = {
    "Priority": (("priority",), "priority"),
    "MaxJobsPerUser": (("maxjobsperuser",), "count"),
    "MaxJobsPerAccount": (("maxjobsperaccount",), "count"),
    "MaxJobs": (("maxjobs",), "count"),
    "MaxSubmitJobsPerUser": (("maxsubmitjobsperuser",), "count"),
    "MaxSubmitJobsPerAccount": (("maxsubmitjobsperaccount",), "count"),
    "MaxSubmitJobs": (("maxsubmitjobs",), "count"),
    "MaxCpusPerUser": (("maxcpusperuser",), "cpus"),
    "MaxWall": (("maxwall",), "wall"),
    "MaxTimeLimitPerJob": (("maxtimelimitperjob",), "time"),
    "Flags": (("flags",), "flags"),
    "Preempt": (("preempt",), "list"),
    "PreemptMode": (("preemptmode",), "mode"),
}
KEYS: dict[tuple[str, str], dict[str, tuple[tuple[str, ...], str]]] = {
    ("add", "account"): {"Name": (("name",), "str"), "Description": (("description",), "str"),
                         "Parent": (("parent", "parentaccount"), "str"), "DefaultQos": (("defaultqos",), "str"),
                         "Partition": (_PARTITION, "list"), "QosList": (_QOS_LIST, "list")},
    ("add", "user"): {"Name": (("name",), "str"), "Account": (("account",), "str"),
                      "Coordinator": (("coordinator",), "bool"), "Level": (("level", "adminlevel"), "level"),
                      "Partition": (_PARTITION, "list")},
    ("add", "qos"): {"Name": (("name",), "str"), "Description": (("description",), "str"), **QOS_LIMITS},
    ("delete", "account"): {"Name": (("name",), "str")},
    ("delete", "qos"): {"Name": (("name",), "str")},
    ("delete", "user"): {"Name": (("name",), "str"), "Account": (("account",), "str")},
    ("block", "account"): {"Name": (("name",), "str")},
    ("block", "user"): {"Name": (("name",), "str"), "Account": (("account",), "str")},
    ("modify", "account"): {"Name": (("name",), "str")},
    ("modify", "qos"): {"Name": (("name",), "str")},
    ("modify", "user"): {"Name": (("name",), "str"), "Account": (("account",), "str"),
                         "Partition": (("partition",), "str")},
    ("show", "account"): {"Name": (("name",), "str"), "Format": (("format",), "format")},
    ("show", "qos"): {"Name": (("name",), "str"), "Format": (("format",), "format")},
    ("show", "user"): {"Name": (("name",), "str"), "Account": (("account",), "str"),
                       "Format": (("format",), "format")},
    ("show", "transaction"): {"Actor": (("actor", "user"), "str"), "Target": (("target",), "str"),
                              "Action": (("action",), "action"), "StartTime": (("starttime", "start"), "stamp"),
                              "EndTime": (("endtime", "end"), "stamp"), "MaxLines": (("maxlines",), "lines"),
                              "Format": (("format",), "format")},
}
KEYS[("unblock", "account")] = KEYS[("block", "account")]
KEYS[("unblock", "user")] = KEYS[("block", "user")]
SET_KEYS: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "account": {"Description": (("description",), "str"), "AllowedPartition": (_PARTITION, "list"),
                "AllowedQos": (_QOS_LIST, "list"), "DefaultQos": (("defaultqos",), "str"),
                "Parent": (("parent", "parentaccount"), "str"),
                "Coordinator": (("coordinator", "coordinators"), "list")},
    "user": {"AllowedPartition": (_PARTITION, "list"), "AllowedQos": (_QOS_LIST, "list"),
             "DefaultQos": (("defaultqos",), "str"), "AdminLevel": (("adminlevel", "level"), "level"),
             "DefaultAccount": (("defaultaccount",), "str")},
    "qos": {"Description": (("description",), "str"), **QOS_LIMITS},
}
_TRES = ("maxtres", "maxtresperuser", "maxtresperaccount", "maxtresperjob", "maxwallperjob")


NUMBERS = {  # kind -> checker returning the protocol's value
    "count": count_of, "priority": priority_of, "cpus": cpus_of,
    "wall": lambda p: duration_of(p, UNLIMITED_WALL), "time": lambda p: duration_of(p, UNLIMITED_TIME),
}


def _canonical(p: Pair, table: dict[str, tuple[tuple[str, ...], str]], where: str) -> tuple[str, str]:
    for canon, (spellings, kind) in table.items():
        if p.name in spellings:
            return canon, kind
    if p.name in _TRES:
        raise arg_error(f"{PROG}: {p.key} is not supported by this cluster (TRES and per-partition limits "
                        "are not modelled)")
    raise arg_error(f"{PROG}: unknown key {p.key!r} for {where} (known: {', '.join(table)})")


def _keyed(pairs: list[Pair], table: dict, where: str) -> dict[str, Pair]:
    out: dict[str, Pair] = {}
    for p in pairs:
        canon, _ = _canonical(p, table, where)
        if canon in out:
            raise arg_error(f"{PROG}: {p.key} given twice (as {out[canon].key})")
        out[canon] = p
    return out


def _names(w: Words, keyed: dict[str, Pair], required: bool = True) -> list[str]:
    if "Name" in keyed:
        named = values_of(keyed["Name"])
        if w.names and named != w.names:
            raise arg_error(f"{PROG}: two different names given ({','.join(w.names)} and Name={keyed['Name'].value})")
        w.names = named
    if required and not w.names:
        raise arg_error(f"{PROG}: {w.verb} {w.entity} needs a name (cacctmgr {w.verb} {w.entity} NAME ...)")
    return w.names


def _qos_kwargs(keyed: dict[str, Pair], with_defaults: bool) -> dict:
    q: dict = {}
    if with_defaults:
        q.update(max_jobs_per_user=UNLIMITED_COUNT, max_jobs_per_account=UNLIMITED_COUNT, max_jobs=UNLIMITED_COUNT,
                 max_submit_jobs_per_user=UNLIMITED_COUNT, max_submit_jobs_per_account=UNLIMITED_COUNT,
                 max_submit_jobs=UNLIMITED_COUNT, max_cpus_per_user=UNLIMITED_CPUS,
                 max_time_limit_per_job=UNLIMITED_TIME, max_wall=UNLIMITED_WALL)
    for canon, p in keyed.items():
        kind = QOS_LIMITS.get(canon, ((), ""))[1]
        snake = "".join("_" + c.lower() if c.isupper() else c for c in canon).lstrip("_")
        if kind in NUMBERS:
            q[snake] = NUMBERS[kind](p)
        elif kind == "flags":
            q["flags"] = FLAG_DENY_ON_LIMIT if flags_of(p) == "DenyOnLimit" else 0
        elif kind == "list":
            q["preempt"] = values_of(p)
        elif kind == "mode":
            q["preempt_mode"] = PREEMPT_MODES[preempt_mode_of(p).lower()]
        elif canon == "Description":
            q["description"] = p.value
    return q


def _modify_items(w: Words) -> list[dict]:
    table = SET_KEYS[w.entity]
    items = []
    seen: set[str] = set()
    for p in w.sets:
        canon, kind = _canonical(p, table, f"modify {w.entity} ... set")
        if (canon, p.op) in seen:
            raise arg_error(f"{PROG}: {p.key}{p.op} given twice")
        seen.add((canon, p.op))
        if p.op != "=" and kind != "list":
            raise arg_error(f"{PROG}: {canon} takes one value: use {p.key}=..., not {p.key}{p.op}")
        if kind == "list":
            values = values_of(p)
            if p.op != "=" and not values:
                raise arg_error(f"{PROG}: {p.key}{p.op} needs a value")
        else:
            if kind in NUMBERS:
                NUMBERS[kind](p)  # validated here, sent as written (the controller parses the same forms) ...
                value = p.value
                if value.lower() in ("unlimited", "infinite", "-1"):
                    value = "unlimited"  # ... with one spelling of "no limit"
            elif kind == "level":
                value = level_of(p)
            elif kind == "flags":
                value = flags_of(p)
            elif kind == "mode":
                value = preempt_mode_of(p)
            else:
                value = p.value
            values = [value]
        items.append({"field": canon, "operation": {"=": OVERWRITE, "+=": ADD, "-=": DELETE}[p.op],
                      "values": values})
    if not items:
        raise arg_error(f"{PROG}: modify {w.entity} needs something to change (... set Key=Value)")
    return items


def plan(words: list[str], force: bool = False) -> tuple[Words, list[Call], dict[str, Pair]]:
    """The calls ``words`` ask for, with the parsed sentence and its keyed pairs (``Format=`` for show)."""
    w = split_words(words)
    where = f"{w.verb} {w.entity}"
    if w.verb == "modify":
        for p in w.pairs:
            if p.name not in ("name", "account", "partition") and any(
                    p.name in spellings for spellings, _ in SET_KEYS[w.entity].values()):
                raise arg_error(f"{PROG}: {p.key} is a change: put it after 'set' (cacctmgr modify {w.entity} "
                                f"where Name=... set {p.key}=...)")
    keyed = _keyed(w.pairs, KEYS[(w.verb, w.entity)], where)
    if w.verb == "modify" and not w.has_set:
        raise arg_error(f"{PROG}: modify {w.entity} needs 'set' (cacctmgr modify {w.entity} where Name=... set "
                        "Key=Value)")
    if w.verb == "show":
        return w, [_show_call(w, keyed)], keyed
    names = _names(w, keyed)
    calls: list[Call] = []
    if w.verb == "add":
        for name in names:
            calls.append(_add_call(w, name, keyed))
    elif w.verb == "delete":
        kwargs: dict = {"names": names, "force": force}  # (force: dropped for a controller without the field)
        if w.entity == "user":
            kwargs["account"] = keyed["Account"].value if "Account" in keyed else ""
        method = {"account": "DeleteAccount", "user": "DeleteUser", "qos": "DeleteQos"}[w.entity]
        request = "DeleteUserRequest" if w.entity == "user" else "DeleteEntityRequest"
        calls.append(Call(method, request, kwargs, w.verb, w.entity, names))
    elif w.verb in ("block", "unblock"):
        kwargs = {"block": w.verb == "block", "entity_list": names,
                  "entity_type": ENTITY_USER if w.entity == "user" else ENTITY_ACCOUNT}
        if "Account" in keyed:
            kwargs["account"] = value_of(keyed["Account"], "an account")
        calls.append(Call("BlockAccountOrUser", "BlockAccountOrUserRequest", kwargs, w.verb, w.entity, names))
    elif w.verb == "modify":
        kwargs = {"names": names, "items": _modify_items(w), "force": force}
        if w.entity == "user":
            for key, arg in (("Account", "account"), ("Partition", "partition")):
                if key in keyed:
                    kwargs[arg] = value_of(keyed[key])
            calls.append(Call("ModifyUser", "ModifyUserRequest", kwargs, w.verb, w.entity, names))
        else:
            method = "ModifyAccount" if w.entity == "account" else "ModifyQos"
            calls.append(Call(method, "ModifyEntityRequest", kwargs, w.verb, w.entity, names))
    return w, calls, keyed


def _add_call(w: Words, name: str, keyed: dict[str, Pair]) -> Call:
    if w.entity == "account":
        account: dict = {"name": name}
        for canon, arg in (("Description", "description"), ("Parent", "parent_account"),
                           ("DefaultQos", "default_qos")):
            if canon in keyed:
                account[arg] = keyed[canon].value
        if "Partition" in keyed:
            account["allowed_partitions"] = values_of(keyed["Partition"])
        if "QosList" in keyed:
            account["allowed_qos_list"] = values_of(keyed["QosList"])
        return Call("AddAccount", "AddAccountRequest", {"account": account}, "add", "account", [name])
    if w.entity == "user":
        if "Account" not in keyed or not keyed["Account"].value:
            raise arg_error(f"{PROG}: add user needs Account=NAME (the account the user joins)")
        kwargs: dict = {"name": name, "account": keyed["Account"].value}
        if "Partition" in keyed:
            kwargs["partitions"] = values_of(keyed["Partition"])
        if "Level" in keyed:
            kwargs["admin_level"] = ADMIN_LEVELS[level_of(keyed["Level"])]
        if "Coordinator" in keyed:
            kwargs["coordinator"] = bool_of(keyed["Coordinator"])
        return Call("AddUser", "AddUserRequest", kwargs, "add", "user", [name])
    qos = {"name": name, **_qos_kwargs({k: v for k, v in keyed.items() if k != "Name"}, with_defaults=True)}
    return Call("AddQos", "AddQosRequest", {"qos": qos}, "add", "qos", [name])


def _show_call(w: Words, keyed: dict[str, Pair]) -> Call:
    if w.entity == "transaction":
        if w.names:
            raise arg_error(f"{PROG}: show transaction takes filters, not names (where Actor= Target= Action= "
                            "StartTime= EndTime=)")
        kwargs: dict = {}
        for canon, arg in (("Actor", "actor"), ("Target", "target")):
            if canon in keyed:
                kwargs[arg] = keyed[canon].value
        if "Action" in keyed:
            kwargs["action"] = action_of(keyed["Action"])
        if "StartTime" in keyed:
            kwargs["start_time"] = timestamp_of(keyed["StartTime"])
        if "EndTime" in keyed:
            kwargs["end_time"] = timestamp_of(keyed["EndTime"])
        if "MaxLines" in keyed:
            v = keyed["MaxLines"].value
            if not v.isdigit() or int(v) >= UNLIMITED_COUNT:
                raise arg_error(f"{PROG}: invalid MaxLines {v!r}: expected a whole number")
            kwargs["max_lines"] = int(v)
        return Call("QueryTxnLog", "QueryTxnLogRequest", kwargs, "show", "transaction", [])
    names = _names(w, keyed, required=False)
    if w.entity == "account":
        return Call("QueryAccountInfo", "QueryAccountInfoRequest", {"account_list": names}, "show", "account", names)
    if w.entity == "qos":
        return Call("QueryQosInfo", "QueryQosInfoRequest", {"qos_list": names}, "show", "qos", names)
    kwargs = {"user_list": names}
    if "Account" in keyed:
        kwargs["account"] = keyed["Account"].value
    return Call("QueryUserInfo", "QueryUserInfoRequest", kwargs, "show", "user", names)


def format_columns(keyed: dict[str, Pair]) -> list[str] | None:
    """The columns ``format=a,b`` asks for (as written), or None."""
    p = keyed.get("Format")
    if p is None:
        return None
    cols = values_of(p)
    if not cols:
        raise CliError(f"{PROG}: format= needs a list of columns", 5)
    return cols
