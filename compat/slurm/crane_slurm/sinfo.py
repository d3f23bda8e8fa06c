"""sinfo: our partitions and nodes (``QueryPartitionInfo`` + ``QueryCranedInfo``) in Slurm's layout.

Default ``PARTITION AVAIL TIMELIMIT NODES STATE NODELIST`` (the default partition marked
``*``), one line per partition and node state. As in Slurm, the nodes of a partition are
grouped by the per-node fields the format shows (state, CPUs, memory, reason ...), so
``sinfo -h -o "%P %D"`` is one line per partition. ``-N`` is one line per node and partition,
``-s`` the summary (``NODES(A/I/O/T)``), ``-R`` the reasons of down and drained nodes,
``-l`` the long form; ``-o`` takes Slurm's letters (:data:`FIELDS`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from crane_cli.cliparse import split_list
from crane_cli.errors import EXIT_OK, CliError

from crane_slurm import slurmfmt as sf
from crane_slurm.slurmopts import (
    IGNORE,
    LOCAL,
    NONE,
    OPTIONAL,
    REFUSE,
    Opt,
    OptionTable,
    failure,
    iterate_seconds,
    translate,
    usage,
)

PROG = "sinfo"
DEFAULT_FORMAT = "%#P %.5a %.10l %.6D %.6t %N"
NODE_FORMAT = "%#N %.6D %.9P %6t"
LONG_FORMAT = "%#P %.5a %.10l %.10s %.4r %.8h %.10g %.6D %.11T %N"
NODE_LONG_FORMAT = "%#N %.6D %.9P %.11T %.4c %.8z %.6m %.8d %.6w %.8f %20E"
SUMMARY_FORMAT = "%#P %.5a %.10l %.16F %N"
REASONS_FORMAT = "%20E %9u %19H %N"

OPTIONS = (
    Opt("all", "a", NONE, LOCAL), Opt("dead", "d", NONE, LOCAL), Opt("noheader", "h", NONE, LOCAL),
    Opt("help", arg=NONE, action=LOCAL), Opt("usage", arg=NONE, action=LOCAL), Opt("iterate", "i", action=LOCAL),
    Opt("long", "l", NONE, LOCAL), Opt("nodes", "n", action=LOCAL), Opt("Node", "N", NONE, LOCAL),
    Opt("format", "o", action=LOCAL), Opt("partition", "p", action=LOCAL), Opt("responding", "r", NONE, LOCAL),
    Opt("list-reasons", "R", NONE, LOCAL), Opt("summarize", "s", NONE, LOCAL), Opt("states", "t", action=LOCAL),
    Opt("verbose", "v", NONE, LOCAL), Opt("version", "V", NONE, LOCAL),
    Opt("exact", "e", NONE, IGNORE), Opt("sort", "S", action=IGNORE), Opt("noconvert", arg=NONE, action=IGNORE),
    Opt("future", "F", NONE, IGNORE), Opt("hide", arg=NONE, action=IGNORE), Opt("local", arg=NONE, action=IGNORE),
    Opt("federation", arg=NONE, action=IGNORE),
    Opt("Format", "O", action=REFUSE, why="use -o"), Opt("clusters", "M", action=REFUSE, why="one cluster"),
    Opt("reservation", "T", NONE, REFUSE, why="use scontrol show reservation"),
    Opt("json", arg=OPTIONAL, action=REFUSE, why="use cinfo --json"), Opt("yaml", arg=OPTIONAL, action=REFUSE),
)
TABLE = OptionTable(PROG, OPTIONS)

# Slurm's node state names, compact and long, for our (resource state, drained?)
_COMPACT = {"idle": "idle", "mix": "mix", "alloc": "alloc", "down": "down"}
_LONG = {"idle": "IDLE", "mix": "MIXED", "alloc": "ALLOCATED", "down": "DOWN"}
STATE_WORDS = {"idle": {"idle"}, "mix": {"mix"}, "mixed": {"mix"}, "alloc": {"alloc"}, "allocated": {"alloc"},
               "down": {"down"}, "drain": {"drain", "drng"}, "drained": {"drain"}, "draining": {"drng"},
               "drng": {"drng"}, "unknown": {"unk"}, "unk": {"unk"}}


def node_state(node, long: bool = False) -> str:  # noqa: ANN001 - CranedInfo
    """Slurm's node state: ``idle mix alloc down drain drng`` (long: ``IDLE MIXED ... DRAINED DRAINING``)."""
    res = (node.resource_state or "").lower()
    drained = (node.control_state or "none").lower() == "drain"
    if res == "down":
        return "DOWN" if long else "down"
    if drained:
        if res == "idle":
            return "DRAINED" if long else "drain"
        return "DRAINING" if long else "drng"
    return (_LONG if long else _COMPACT).get(res, "UNKNOWN" if long else "unk")


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"


class Group:
    """The nodes of one output line: a partition and the nodes sharing the shown per-node fields."""

    def __init__(self, part, nodes: list, default: bool) -> None:  # noqa: ANN001 - PartitionInfo
        self.part = part
        self.nodes = nodes
        self.default = default

    def counts(self) -> tuple[int, int, int, int]:
        """Nodes (allocated or mixed, idle, other, total)."""
        a = sum(1 for n in self.nodes if node_state(n) in ("alloc", "mix", "drng"))
        i = sum(1 for n in self.nodes if node_state(n) == "idle")
        return a, i, len(self.nodes) - a - i, len(self.nodes)

    def cpus(self) -> tuple[float, float, float, float]:
        """CPUs (allocated, idle, other, total)."""
        up = [n for n in self.nodes if node_state(n) not in ("down", "drain", "unk")]
        alloc = sum(n.cpu_alloc for n in up)
        total = sum(n.cpu_total for n in self.nodes)
        idle = sum(n.cpu_total - n.cpu_alloc for n in up)
        return alloc, idle, total - alloc - idle, total


def _names(g: Group) -> str:
    from crane_common import hostlist

    return hostlist.compress([n.name for n in g.nodes])


Getter = Callable[[Group], str]

# letter -> (header, value, per-node: lines are split by it)
FIELDS: dict[str, tuple[str, Getter, bool]] = {
    "P": ("PARTITION", lambda g: g.part.name + ("*" if g.default else ""), False),
    "R": ("PARTITION", lambda g: g.part.name, False),
    "a": ("AVAIL", lambda g: (g.part.state or "unknown").lower(), False),
    "l": ("TIMELIMIT", lambda g: sf.sinfo_limit(g.part.max_time_limit), False),
    "s": ("JOB_SIZE", lambda g: "1-infinite", False),
    "r": ("ROOT", lambda g: "no", False),
    "h": ("OVERSUBS", lambda g: "NO", False),
    "g": ("GROUPS", lambda g: "all", False),
    "D": ("NODES", lambda g: str(len(g.nodes)), False),
    "N": ("NODELIST", _names, False),
    "n": ("HOSTNAMES", _names, False),
    "F": ("NODES(A/I/O/T)", lambda g: "/".join(map(str, g.counts())), False),
    "A": ("NODES(A/I)", lambda g: "/".join(map(str, g.counts()[:2])), False),
    "C": ("CPUS(A/I/O/T)", lambda g: "/".join(_num(x) for x in g.cpus()), False),
    "t": ("STATE", lambda g: node_state(g.nodes[0]) if g.nodes else "n/a", True),
    "T": ("STATE", lambda g: node_state(g.nodes[0], long=True) if g.nodes else "n/a", True),
    "c": ("CPUS", lambda g: _num(g.nodes[0].cpu_total) if g.nodes else "0", True),
    "m": ("MEMORY", lambda g: str(g.nodes[0].mem_total >> 20) if g.nodes else "0", True),
    "e": ("FREE_MEM", lambda g: str((g.nodes[0].mem_total - g.nodes[0].mem_alloc) >> 20) if g.nodes else "0",
          True),
    "G": ("GRES", lambda g: (g.nodes[0].gres_total or "(null)") if g.nodes else "(null)", True),
    "E": ("REASON", lambda g: (g.nodes[0].reason or "none") if g.nodes else "none", True),
    "u": ("USER", lambda g: "root", False),
    "H": ("TIMESTAMP", lambda g: "Unknown", False),
    "O": ("CPU_LOAD", lambda g: "N/A", True),
    "f": ("AVAIL_FEATURES", lambda g: "(null)", False),
    "w": ("WEIGHT", lambda g: "1", False),
    "z": ("S:C:T", lambda g: "*:*:*", False),
    "d": ("TMP_DISK", lambda g: "0", False),
}
HEADERS = {k: v[0] for k, v in FIELDS.items()}
PARTITION_LETTERS = frozenset("PRalsrhg")
"""Fields of the partition: without any of them in the format, the partitions' nodes are merged into one set."""


def _states_filter(values: list[str]) -> set[str]:
    out: set[str] = set()
    for item in (p.strip().lower() for v in values for p in v.split(",") if p.strip()):
        if item not in STATE_WORDS:
            raise usage(PROG, f"Invalid node state specified: {item}")
        out |= STATE_WORDS[item]
    return out


def keep(node, parsed, states: set[str]) -> bool:  # noqa: ANN001
    """Does the node pass ``-d``, ``-r``, ``-t`` (and ``-R``: down or drained)?"""
    state = node_state(node)
    if parsed.given("dead") and state != "down":
        return False
    if parsed.given("responding") and state == "down":
        return False
    if parsed.given("list-reasons") and state not in ("down", "drain", "drng"):
        return False
    return not states or state in states


def groups(partitions: list, nodes: list, parsed, layout: list) -> list[Group]:  # noqa: ANN001
    """One :class:`Group` per output line (per node with ``-N``)."""
    by_name = {n.name: n for n in nodes}
    wanted = set()
    if parsed.given("nodes"):
        from crane_common import hostlist

        try:
            wanted = set(hostlist.expand(parsed.values("nodes")))
        except ValueError as exc:
            raise usage(PROG, f"Invalid node name specified: {exc}") from None
    states = _states_filter(parsed.values("states"))
    split_by = [x.letter for x in layout if isinstance(x, sf.Spec) and FIELDS[x.letter][2]]
    filtering = bool(wanted or states) or any(parsed.given(f) for f in ("dead", "responding", "list-reasons"))
    if partitions and not any(isinstance(x, sf.Spec) and x.letter in PARTITION_LETTERS for x in layout):
        # no partition field shown: Slurm merges the partitions (each node counted once)
        names = list(dict.fromkeys(n for p in partitions for n in p.nodes))
        partitions = [type(partitions[0])(name=partitions[0].name, state=partitions[0].state, nodes=names)]
    out: list[Group] = []
    for part in partitions:
        members = [by_name[n] for n in part.nodes if n in by_name and (not wanted or n in wanted)
                   and keep(by_name[n], parsed, states)]
        if parsed.given("Node"):
            out.extend(Group(part, [n], part.is_default) for n in members)
            continue
        if not members:
            if not filtering:
                out.append(Group(part, [], part.is_default))
            continue
        buckets: dict[tuple, list] = {}
        for n in members:
            key = tuple(FIELDS[letter][1](Group(part, [n], False)) for letter in split_by)
            buckets.setdefault(key, []).append(n)
        out.extend(Group(part, ns, part.is_default) for ns in buckets.values())
    if parsed.given("Node"):
        out.sort(key=lambda g: g.nodes[0].name)
    return out


def layout_for(parsed, partitions: list, nodes: list) -> list:  # noqa: ANN001
    """The layout (``-o``, ``-N``, ``-s``, ``-R``, ``-l`` or the default), ``%#X`` widths resolved."""
    import os

    fmt = parsed.last("format") or os.environ.get("SINFO_FORMAT") or None
    if fmt is None:
        if parsed.given("list-reasons"):
            fmt = REASONS_FORMAT
        elif parsed.given("summarize"):
            fmt = SUMMARY_FORMAT
        elif parsed.given("Node"):
            fmt = NODE_LONG_FORMAT if parsed.given("long") else NODE_FORMAT
        else:
            fmt = LONG_FORMAT if parsed.given("long") else DEFAULT_FORMAT
    part_width = max([9, *(len(p.name) + 1 for p in partitions)])
    node_width = max([8, *(len(n.name) for n in nodes)]) if parsed.given("Node") else 8
    fmt = fmt.replace("%#P", f"%{part_width}P").replace("%#N", f"%{node_width}N")
    try:
        return sf.parse_format(fmt, FIELDS)
    except ValueError as exc:
        raise usage(PROG, str(exc)) from None


def lines(partitions: list, nodes: list, parsed) -> list[str]:  # noqa: ANN001
    """The output lines (header first unless ``-h``)."""
    layout = layout_for(parsed, partitions, nodes)
    rows = groups(partitions, nodes, parsed, layout)
    headers = None if parsed.given("noheader") else HEADERS
    return sf.render(layout, headers, rows, lambda g, letter: FIELDS[letter][1](g))


def command(argv: list[str]) -> int:
    """sinfo's body: the exit code (raises CliError on failure)."""
    parsed = TABLE.parse(argv, stop_at_positional=False)
    if parsed.given("help") or parsed.given("usage"):
        sys.stdout.write("Usage: sinfo [-dhlNrRs] [-n nodes] [-o format] [-p partitions] [-t states] "
                         "[-i seconds]\n")
        return EXIT_OK
    if parsed.positional:
        raise usage(PROG, f"Unrecognized option: {parsed.positional[0]}")
    translate(PROG, parsed)
    _states_filter(parsed.values("states"))
    iterate = iterate_seconds(PROG, parsed)
    parts = split_list(parsed.values("partition"))
    from crane_cli import clientconf

    try:
        conf = clientconf.load(None)
        from crane_cli import rpc

        pb = rpc.pb
        calls = [("QueryPartitionInfo", pb.QueryPartitionInfoRequest(names=parts)),
                 ("QueryCranedInfo", pb.QueryCranedInfoRequest())]
        with rpc.Controller(conf) as ctld:
            def report() -> list[str]:
                part_reply, node_reply = ctld.call_many(calls)
                return lines(list(part_reply.partitions), list(node_reply.nodes), parsed)

            return sf.show_lines(report, iterate)
    except KeyboardInterrupt:
        return EXIT_OK
    except CliError as exc:
        if exc.message.startswith(f"{PROG}:"):
            raise
        raise failure(PROG, exc.message) from None
