"""cacctmgr's grammar: the words after the global flags, turned into the calls to make.

``<verb> <entity> [name[,name...]] [Key=Val ...] [where Key=Val ...] [set Key=Val|Key+=Val|Key-=Val ...]``

* verbs ``add delete block unblock modify update show reset`` (``update`` is ``modify``), entities
  ``account user qos transaction event wckey resource`` (plurals accepted); verbs, entities,
  ``where``/``set`` and keys are case-insensitive, values are kept as written (surrounding
  quotes removed). ``Key = Val`` with the operator as a word of its own is accepted too.
* a value with commas is a list where the key takes one (``QosList=a,b``, ``Preempt=low,mid``).
* ``+=``/``-=`` (add to / remove from) only after ``set`` and only for list fields.

:func:`plan` returns the calls as :class:`Call` (method, request type and keyword arguments
for the protobuf constructor), so everything here runs before grpc and protobuf are
imported; every mistake is a :class:`~crane_cli.errors.CliError` with exit code 2.
"""

from __future__ import annotations

from crane_cli.errors import CliError, arg_error

PROG = "cacctmgr"

# unlimited as the protocol spells it (crane.proto, upstream's sentinels)
UNLIMITED_COUNT = 4294967295
UNLIMITED_WALL = 0
UNLIMITED_TIME = 315576000000
UNLIMITED_CPUS = float(1 << 45)  # ~3.5e13; anything >= 1e13 reads as unlimited

# enum numbers of crane.proto (tests check them against the generated module)
OVERWRITE, ADD, DELETE = 0, 1, 2
ADMIN_LEVELS = {"none": 0, "operator": 1, "admin": 2}
ENTITY_ACCOUNT, ENTITY_USER = 0, 1
PREEMPT_MODES = {"off": 0, "cancel": 1, "requeue": 2, "suspend": 3}
FLAG_DENY_ON_LIMIT = 1
TXN_ACTIONS = ("AddAccount", "ModifyAccount", "DeleteAccount", "AddUser", "ModifyUser", "DeleteUser", "AddQos",
               "ModifyQos", "DeleteQos", "BlockAccount", "BlockUser")

VERBS = {"add": "add", "delete": "delete", "remove": "delete", "block": "block", "unblock": "unblock",
         "modify": "modify", "update": "modify", "show": "show", "list": "show", "reset": "reset"}
ENTITIES = {"account": "account", "accounts": "account", "user": "user", "users": "user", "qos": "qos",
            "transaction": "transaction", "transactions": "transaction", "txn": "transaction",
            "event": "event", "events": "event", "wckey": "wckey", "wckeys": "wckey",
            "resource": "resource", "resources": "resource"}

# why some of upstream's forms are refused here (exit 2)
NOT_MODELLED = {
    "event": "node events are not supported by this cluster (there is no node event history to show)",
    "wckey": "wckeys are not supported by this cluster (jobs carry no workload characterization key)",
    "resource": "license resources are not supported by this cluster (licenses are not modelled)",
    "reset": "reset is not supported by this cluster (user certificates are not modelled; "
             "credentials are tokens, see 'crane token')",
}

ALLOWED = {  # verb -> entities
    "add": ("account", "user", "qos"), "delete": ("account", "user", "qos"), "block": ("account", "user"),
    "unblock": ("account", "user"), "modify": ("account", "user", "qos"),
    "show": ("account", "user", "qos", "transaction"),
}


class Pair:
    """One ``Key=Val`` (``op`` ``=``, ``+=`` or ``-=``); ``key`` as written, ``value`` without quotes."""

    __slots__ = ("key", "op", "value")

    def __init__(self, key: str, op: str, value: str) -> None:
        self.key, self.op, self.value = key, op, value

    @property
    def name(self) -> str:
        """The key, lower-cased."""
        return self.key.lower()

    def __repr__(self) -> str:
        return f"Pair({self.key}{self.op}{self.value!r})"


class Words:
    """The sentence split into its parts (no meaning checked yet): names, the pairs before ``set``, after it."""

    __slots__ = ("verb", "entity", "names", "pairs", "sets", "has_where", "has_set")

    def __init__(self, verb: str, entity: str) -> None:
        self.verb, self.entity = verb, entity
        self.names: list[str] = []
        self.pairs: list[Pair] = []  # before ``set`` (head and ``where``)
        self.sets: list[Pair] = []   # after ``set``
        self.has_where = self.has_set = False


class Call:
    """One RPC to make: ``method`` with ``request_type(**kwargs)``; ``verb``/``entity``/``names`` for messages.

    (Plain classes rather than dataclasses: creating a dataclass costs ~0.5 ms at import.)
    """

    __slots__ = ("method", "request_type", "kwargs", "verb", "entity", "names")

    def __init__(self, method: str, request_type: str, kwargs: dict, verb: str, entity: str,
                 names: list[str]) -> None:
        self.method, self.request_type, self.kwargs = method, request_type, kwargs
        self.verb, self.entity, self.names = verb, entity, names


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _split_pair(word: str) -> Pair | None:
    """``Key=Val``/``Key+=Val``/``Key-=Val`` as a :class:`Pair`; None for a word without ``=``."""
    eq = word.find("=")
    if eq < 0:
        return None
    key, op = word[:eq], "="
    if key.endswith(("+", "-")):
        key, op = key[:-1], key[-1] + "="
    key = key.strip()
    if not key or not key.replace("_", "").isalnum():
        raise arg_error(f"{PROG}: invalid key in {word!r}: expected Key=Value")
    return Pair(key, op, _unquote(word[eq + 1:]))


def _join_operators(words: list[str]) -> list[str]:
    """``Key = Val``, ``Key =Val``, ``Key += Val``: an operator written as a word of its own joins its neighbours."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if out and "=" not in out[-1] and out[-1].lower() not in ("where", "set") and w.startswith(("=", "+=", "-=")):
            key = out.pop()
            if w in ("=", "+=", "-="):
                if i + 1 >= len(words):
                    raise arg_error(f"{PROG}: {key}{w} needs a value")
                out.append(key + w + words[i + 1])
                i += 2
                continue
            out.append(key + w)
        elif w in ("=", "+=", "-="):
            raise arg_error(f"{PROG}: {w!r} without a key")
        else:
            out.append(w)
        i += 1
    return out


def split_words(words: list[str]) -> Words:
    """Verb, entity, names, ``Key=Val`` pairs and the ``set`` pairs of the sentence."""
    if not words:
        raise arg_error(f"{PROG}: missing command: add, delete, block, unblock, modify, show (see --help)")
    verb = VERBS.get(words[0].lower())
    if verb is None:
        raise arg_error(f"{PROG}: unknown command {words[0]!r} (add, delete, block, unblock, modify, update, show)")
    if verb == "reset":
        raise arg_error(f"{PROG}: {NOT_MODELLED['reset']}")
    if len(words) < 2:
        raise arg_error(f"{PROG}: {verb} what? ({', '.join(ALLOWED[verb])})")
    entity = ENTITIES.get(words[1].lower())
    if entity is None:
        raise arg_error(f"{PROG}: unknown entity {words[1]!r} for {verb} ({', '.join(ALLOWED[verb])})")
    if entity in NOT_MODELLED:
        raise arg_error(f"{PROG}: {NOT_MODELLED[entity]}")
    if entity not in ALLOWED[verb]:
        raise arg_error(f"{PROG}: cannot {verb} {entity} ({verb} takes {', '.join(ALLOWED[verb])})")
    out = Words(verb, entity)
    section = "head"
    for word in _join_operators(list(words[2:])):
        low = word.lower()
        if low in ("where", "set"):
            if (low == "where" and out.has_where) or (low == "set" and out.has_set):
                raise arg_error(f"{PROG}: '{low}' given twice")
            if low == "set" and verb != "modify":
                raise arg_error(f"{PROG}: 'set' belongs to modify (cacctmgr modify {entity} where ... set ...)")
            if low == "where" and verb == "add":
                raise arg_error(f"{PROG}: 'where' does not go with add (cacctmgr add {entity} NAME Key=Value ...)")
            out.has_where |= low == "where"
            out.has_set |= low == "set"
            section = low
            continue
        pair = _split_pair(word)
        if pair is None:
            if section != "head":
                raise arg_error(f"{PROG}: unexpected word {word!r} after '{section}' (expected Key=Value)")
            if out.names:
                raise arg_error(f"{PROG}: unexpected word {word!r} (give several names as one list: a,b,c)")
            names = [n for n in (_unquote(x) for x in _unquote(word).split(",")) if n]
            if not names:
                raise arg_error(f"{PROG}: empty name {word!r}")
            out.names = names
            continue
        if pair.op != "=" and section != "set":
            raise arg_error(f"{PROG}: {pair.key}{pair.op} is only allowed after 'set'")
        target = out.sets if section == "set" else out.pairs
        if any(p.name == pair.name for p in target):
            raise arg_error(f"{PROG}: {pair.key} given twice")
        target.append(pair)
    return out


# -- values --------------------------------------------------------------------------------------

def _list(p: Pair) -> list[str]:
    return [v for v in (_unquote(x) for x in p.value.split(",")) if v]


def _one(p: Pair, what: str = "a value") -> str:
    if not p.value:
        raise arg_error(f"{PROG}: {p.key} needs {what}")
    return p.value


def _count(p: Pair) -> int:
    """A job count: a whole number, or unlimited/-1."""
    v = _one(p).lower()
    if v in ("unlimited", "infinite", "-1"):
        return UNLIMITED_COUNT
    if not v.isdigit() or int(v) >= UNLIMITED_COUNT:
        raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected a whole number or 'unlimited'")
    return int(v)


def _priority(p: Pair) -> int:
    v = _one(p)
    if not v.isdigit() or int(v) >= UNLIMITED_COUNT:
        raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected a whole number")
    return int(v)


def _cpus(p: Pair) -> float:
    v = _one(p).lower()
    if v in ("unlimited", "infinite", "-1"):
        return UNLIMITED_CPUS
    try:
        n = float(v)
    except ValueError:
        n = -1.0
    if not (0 <= n < 1e13):
        raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected a number of CPUs or 'unlimited'")
    return n


def _duration(p: Pair, unlimited: int) -> int:
    from crane_common.units import UNLIMITED, DurationError, parse_duration

    v = _one(p, "a duration")
    if v in ("-1",):
        return unlimited
    try:
        seconds = parse_duration(v)
    except DurationError as exc:
        raise arg_error(f"{PROG}: {p.key}: {exc}") from None
    return unlimited if seconds >= UNLIMITED else seconds


def _bool(p: Pair) -> bool:
    v = p.value.lower()
    if v in ("yes", "true", "y", "1", "on"):
        return True
    if v in ("no", "false", "n", "0", "off"):
        return False
    raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected yes or no")


def _level(p: Pair) -> str:
    v = p.value.lower()
    if v not in ADMIN_LEVELS:
        raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected none, operator or admin")
    return v


def _flags(p: Pair) -> str:
    v = p.value.lower()
    if v in ("denyonlimit",):
        return "DenyOnLimit"
    if v in ("none", ""):
        return "None"
    raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected DenyOnLimit or None")


def _preempt_mode(p: Pair) -> str:
    v = p.value.lower()
    if v not in PREEMPT_MODES:
        raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected OFF, CANCEL, REQUEUE or SUSPEND")
    return v.upper()


def _timestamp(p: Pair) -> int:
    v = _one(p, "a time")
    if v.isdigit() and len(v) >= 9:
        return int(v)
    from crane_cli.timefmt import TimeFormatError, parse_time_expr

    try:
        return parse_time_expr(v)
    except TimeFormatError as exc:
        raise arg_error(f"{PROG}: {p.key}: {exc}") from None


def _action(p: Pair) -> str:
    for name in TXN_ACTIONS:
        if name.lower() == p.value.lower():
            return name
    raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected one of {', '.join(TXN_ACTIONS)}")


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
                "AllowedQos": (_QOS_LIST, "list"), "DefaultQos": (("defaultqos",), "str")},
    "user": {"AllowedPartition": (_PARTITION, "list"), "AllowedQos": (_QOS_LIST, "list"),
             "DefaultQos": (("defaultqos",), "str"), "AdminLevel": (("adminlevel", "level"), "level"),
             "DefaultAccount": (("defaultaccount",), "str")},
    "qos": {"Description": (("description",), "str"), **QOS_LIMITS},
}
_TRES = ("maxtres", "maxtresperuser", "maxtresperaccount", "maxtresperjob", "maxwallperjob")


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
        named = _list(keyed["Name"])
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
    convert = {"count": _count, "priority": _priority, "cpus": _cpus,
               "wall": lambda p: _duration(p, UNLIMITED_WALL), "time": lambda p: _duration(p, UNLIMITED_TIME)}
    for canon, p in keyed.items():
        kind = QOS_LIMITS.get(canon, ((), ""))[1]
        snake = "".join("_" + c.lower() if c.isupper() else c for c in canon).lstrip("_")
        if kind in convert:
            q[snake] = convert[kind](p)
        elif kind == "flags":
            q["flags"] = FLAG_DENY_ON_LIMIT if _flags(p) == "DenyOnLimit" else 0
        elif kind == "list":
            q["preempt"] = _list(p)
        elif kind == "mode":
            q["preempt_mode"] = PREEMPT_MODES[_preempt_mode(p).lower()]
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
            values = _list(p)
            if p.op != "=" and not values:
                raise arg_error(f"{PROG}: {p.key}{p.op} needs a value")
        else:
            check = {"count": _count, "priority": _priority, "cpus": _cpus, "bool": _bool,
                     "wall": lambda q: _duration(q, UNLIMITED_WALL), "time": lambda q: _duration(q, UNLIMITED_TIME)}
            if kind in check:
                check[kind](p)  # validated here, sent as written (the controller parses the same forms) ...
                value = p.value
                if kind != "bool" and value.lower() in ("unlimited", "infinite", "-1"):
                    value = "unlimited"  # ... with one spelling of "no limit"
            elif kind == "level":
                value = _level(p)
            elif kind == "flags":
                value = _flags(p)
            elif kind == "mode":
                value = _preempt_mode(p)
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
        kwargs: dict = {"names": names}
        if w.entity == "user":
            kwargs["account"] = keyed["Account"].value if "Account" in keyed else ""
        method = {"account": "DeleteAccount", "user": "DeleteUser", "qos": "DeleteQos"}[w.entity]
        request = "DeleteUserRequest" if w.entity == "user" else "DeleteEntityRequest"
        calls.append(Call(method, request, kwargs, w.verb, w.entity, names))
    elif w.verb in ("block", "unblock"):
        kwargs = {"block": w.verb == "block", "entity_list": names,
                  "entity_type": ENTITY_USER if w.entity == "user" else ENTITY_ACCOUNT}
        if "Account" in keyed:
            kwargs["account"] = _one(keyed["Account"], "an account")
        calls.append(Call("BlockAccountOrUser", "BlockAccountOrUserRequest", kwargs, w.verb, w.entity, names))
    elif w.verb == "modify":
        kwargs = {"names": names, "items": _modify_items(w), "force": force}
        if w.entity == "user":
            for key, arg in (("Account", "account"), ("Partition", "partition")):
                if key in keyed:
                    kwargs[arg] = _one(keyed[key])
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
            account["allowed_partitions"] = _list(keyed["Partition"])
        if "QosList" in keyed:
            account["allowed_qos_list"] = _list(keyed["QosList"])
        return Call("AddAccount", "AddAccountRequest", {"account": account}, "add", "account", [name])
    if w.entity == "user":
        if "Account" not in keyed or not keyed["Account"].value:
            raise arg_error(f"{PROG}: add user needs Account=NAME (the account the user joins)")
        kwargs: dict = {"name": name, "account": keyed["Account"].value}
        if "Partition" in keyed:
            kwargs["partitions"] = _list(keyed["Partition"])
        if "Level" in keyed:
            kwargs["admin_level"] = ADMIN_LEVELS[_level(keyed["Level"])]
        if "Coordinator" in keyed:
            kwargs["coordinator"] = _bool(keyed["Coordinator"])
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
            kwargs["action"] = _action(keyed["Action"])
        if "StartTime" in keyed:
            kwargs["start_time"] = _timestamp(keyed["StartTime"])
        if "EndTime" in keyed:
            kwargs["end_time"] = _timestamp(keyed["EndTime"])
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
    cols = _list(p)
    if not cols:
        raise CliError(f"{PROG}: format= needs a list of columns", 5)
    return cols
