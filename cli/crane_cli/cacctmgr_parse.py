"""cacctmgr's grammar: the words after the global flags, turned into the calls to make.

``<verb> <entity> [name[,name...]] [Key=Val ...] [where Key=Val ...] [set Key=Val|Key+=Val|Key-=Val ...]``

* verbs ``add delete block unblock modify update show reset`` (``update`` is ``modify``), entities
  ``account user qos transaction event wckey resource`` (plurals accepted); verbs, entities,
  ``where``/``set`` and keys are case-insensitive, values are kept as written (surrounding
  quotes removed). ``Key = Val`` with the operator as a word of its own is accepted too.
* a value with commas is a list where the key takes one (``QosList=a,b``, ``Preempt=low,mid``).
* ``+=``/``-=`` (add to / remove from) only after ``set`` and only for list fields.

:func:`split_words` splits the sentence and the ``*_of`` functions check values;
:func:`crane_cli.cacctmgr_plan.plan` gives the words their meaning. Everything runs before grpc
and protobuf are imported; every mistake is a :class:`~crane_cli.errors.CliError` with exit code 2.
"""

from __future__ import annotations

from crane_cli.errors import arg_error

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

def values_of(p: Pair) -> list[str]:
    """The comma-separated items of the value (empty items dropped)."""
    return [v for v in (_unquote(x) for x in p.value.split(",")) if v]


def value_of(p: Pair, what: str = "a value") -> str:
    """The value, which must not be empty."""
    if not p.value:
        raise arg_error(f"{PROG}: {p.key} needs {what}")
    return p.value


def count_of(p: Pair) -> int:
    """A job count: a whole number, or unlimited/-1."""
    v = value_of(p).lower()
    if v in ("unlimited", "infinite", "-1"):
        return UNLIMITED_COUNT
    if not v.isdigit() or int(v) >= UNLIMITED_COUNT:
        raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected a whole number or 'unlimited'")
    return int(v)


def priority_of(p: Pair) -> int:
    """A QoS priority: a whole number."""
    v = value_of(p)
    if not v.isdigit() or int(v) >= UNLIMITED_COUNT:
        raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected a whole number")
    return int(v)


def cpus_of(p: Pair) -> float:
    """A CPU count limit: a number, or unlimited/-1."""
    v = value_of(p).lower()
    if v in ("unlimited", "infinite", "-1"):
        return UNLIMITED_CPUS
    try:
        n = float(v)
    except ValueError:
        n = -1.0
    if not (0 <= n < 1e13):
        raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected a number of CPUs or 'unlimited'")
    return n


def duration_of(p: Pair, unlimited: int) -> int:
    """A duration in seconds (``crane_common.units``); unlimited/-1 (or 100 years and more) give ``unlimited``."""
    from crane_common.units import UNLIMITED, DurationError, parse_duration

    v = value_of(p, "a duration")
    if v in ("-1",):
        return unlimited
    try:
        seconds = parse_duration(v)
    except DurationError as exc:
        raise arg_error(f"{PROG}: {p.key}: {exc}") from None
    return unlimited if seconds >= UNLIMITED else seconds


def bool_of(p: Pair) -> bool:
    """yes/true/1/on or no/false/0/off."""
    v = p.value.lower()
    if v in ("yes", "true", "y", "1", "on"):
        return True
    if v in ("no", "false", "n", "0", "off"):
        return False
    raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected yes or no")


def level_of(p: Pair) -> str:
    """An admin level: none, operator or admin (lower-cased)."""
    v = p.value.lower()
    if v not in ADMIN_LEVELS:
        raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected none, operator or admin")
    return v


def flags_of(p: Pair) -> str:
    """QoS flags: ``DenyOnLimit`` or ``None``."""
    v = p.value.lower()
    if v in ("denyonlimit",):
        return "DenyOnLimit"
    if v in ("none", ""):
        return "None"
    raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected DenyOnLimit or None")


def preempt_mode_of(p: Pair) -> str:
    """A preempt mode, upper-cased: OFF, CANCEL, REQUEUE or SUSPEND."""
    v = p.value.lower()
    if v not in PREEMPT_MODES:
        raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected OFF, CANCEL, REQUEUE or SUSPEND")
    return v.upper()


def timestamp_of(p: Pair) -> int:
    """A time (unix seconds, or what ``--begin`` accepts: ``2026-01-02T03:04``, ``now-1d``, ...)."""
    v = value_of(p, "a time")
    if v.isdigit() and len(v) >= 9:
        return int(v)
    from crane_cli.timefmt import TimeFormatError, parse_time_expr

    try:
        return parse_time_expr(v)
    except TimeFormatError as exc:
        raise arg_error(f"{PROG}: {p.key}: {exc}") from None


def action_of(p: Pair) -> str:
    """A transaction action name (``AddUser``, ...), in its proto spelling."""
    for name in TXN_ACTIONS:
        if name.lower() == p.value.lower():
            return name
    raise arg_error(f"{PROG}: invalid {p.key} {p.value!r}: expected one of {', '.join(TXN_ACTIONS)}")
