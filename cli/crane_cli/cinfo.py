"""cinfo: partitions and nodes, one row per (partition, node state).

Asks the controller for ``QueryPartitionInfo`` and ``QueryCranedInfo`` (both in
flight at once) and shows ``PARTITION AVAIL NODES STATE NODELIST`` (plus
``REASON`` with ``-R``). ``AVAIL`` is the partition state in lower case, ``STATE``
is ``<resource>[(<control>)]`` (``idle``, ``mix``, ``alloc``, ``down``, with
``(drain)`` when drained); a partition without nodes shows ``0`` nodes in state
``n/a``.
"""

from __future__ import annotations

import sys
import time
from typing import NoReturn

from crane_cli.cliparse import Command, Option, common_options, parse, run, split_list
from crane_cli.errors import EXIT_FORMAT, EXIT_OK, CliError, arg_error

RESOURCE_STATES = frozenset({"idle", "mix", "alloc", "down"})
CONTROL_STATES = frozenset({"none", "drain"})
POWER_STATES = frozenset({"active", "power-idle", "sleeping", "poweredoff", "off", "to-sleep", "waking", "oning",
                          "offing"})
# Nodes report no power state to this controller; every node counts as "active".
NODE_POWER_STATE = "active"

FORMAT_FIELDS = {
    "p": ("PARTITION", 0), "partition": ("PARTITION", 0),
    "a": ("AVAIL", 1), "avail": ("AVAIL", 1),
    "n": ("NODES", 2), "nodes": ("NODES", 2),
    "s": ("STATE", 3), "state": ("STATE", 3),
    "l": ("NODELIST", 4), "nodelist": ("NODELIST", 4),
    "r": ("REASON", 5), "reason": ("REASON", 5),
}


def build_command() -> Command:
    """cinfo's flags."""
    return Command("cinfo", help="Display partitions and nodes.", params=[
        Option("-p", "--partition", multiple=True, help="partitions (comma-separated)"),
        Option("-n", "--nodes", multiple=True, help="nodes (host list, e.g. cn[01-04])"),
        Option("-t", "--states", multiple=True, group="which",
               help="node states: idle,mix,alloc,down; none,drain; power states"),
        Option("-d", "--dead", flag=True, default=False, group="which",
               help="only nodes that do not respond (down)"),
        Option("-r", "--responding", flag=True, default=False, group="which", help="only nodes that respond"),
        Option("-R", "--list-reasons", flag=True, default=False, help="add the REASON column"),
        Option("-i", "--iterate", metavar="SECONDS", help="repeat every SECONDS seconds"),
        Option("-N", "--noheader", flag=True, default=False, help="do not print the header line"),
        Option("-o", "--format", help="output format: %[.][width]spec with p, a, n, s, l (and r)"),
        *common_options(),
    ])


def parse_state_filter(values: list[str] | None) -> tuple[set[str], set[str], set[str]]:
    """``-t`` values -> (resource states, control states, power states) to keep."""
    res: set[str] = set()
    ctl: set[str] = set()
    pwr: set[str] = set()
    for item in split_list(values):
        s = item.lower()
        if s in RESOURCE_STATES:
            res.add(s)
        elif s in CONTROL_STATES:
            ctl.add(s)
        elif s in POWER_STATES:
            pwr.add("poweredoff" if s == "off" else s)
        else:
            raise arg_error(f"cinfo: invalid state {item!r}: expected idle, mix, alloc, down, none, drain "
                            f"or a power state")
    return res, ctl, pwr


def node_state(node) -> str:  # noqa: ANN001 - CranedInfo
    """``<resource>[(<control>)]`` of a node."""
    state = (node.resource_state or "unknown").lower()
    control = (node.control_state or "none").lower()
    return state if control == "none" else f"{state}({control})"


def keep_node(node, args, filters: tuple[set[str], set[str], set[str]]) -> bool:  # noqa: ANN001
    """Does ``node`` pass the ``-t``/``-d``/``-r`` filters? (``-t`` states are alternatives.)"""
    down = (node.resource_state or "").lower() == "down"
    if args.dead:
        return down
    if args.responding:
        return not down
    res, ctl, pwr = filters
    if not (res or ctl or pwr):
        return True
    # a node is shown when it is in any of the requested states
    return ((node.resource_state or "").lower() in res or (node.control_state or "none").lower() in ctl
            or NODE_POWER_STATE in pwr)


def build_rows(partitions: list, nodes: list, args, node_names: list[str]) -> list[list[str]]:  # noqa: ANN001
    """Rows ``[partition, avail, count, state, nodelist, reason]``, one per (partition, state[, reason])."""
    from crane_common import hostlist

    by_name = {n.name: n for n in nodes}
    wanted = set(node_names)
    filters = parse_state_filter(args.states)
    filtering = bool(wanted) or args.dead or args.responding or any(filters)
    rows: list[list[str]] = []
    for part in partitions:
        avail = (part.state or "unknown").lower()
        groups: dict[tuple[str, str], list[str]] = {}
        for name in part.nodes:
            if wanted and name not in wanted:
                continue
            node = by_name.get(name)
            if node is None:
                if filtering:
                    continue
                key = ("unknown", "")
            else:
                if not keep_node(node, args, filters):
                    continue
                key = (node_state(node), node.reason if args.list_reasons else "")
            groups.setdefault(key, []).append(name)
        if not groups:
            if not part.nodes and not filtering:
                rows.append([part.name, avail, "0", "n/a", "", ""])
            continue
        for (state, reason), names in groups.items():
            rows.append([part.name, avail, str(len(names)), state, hostlist.compress(names), reason or "-"])
    return rows


def render(rows: list[list[str]], args, layout) -> str:  # noqa: ANN001
    """The table text for ``rows``."""
    from crane_cli import table

    if layout is not None:
        items = [x for x in layout if not isinstance(x, str)]
        headers = None if args.noheader else [x.field[0] for x in items]
        return table.render_format(layout, headers, [[r[x.field[1]] for x in items] for r in rows], full=True)
    headers = ["PARTITION", "AVAIL", "NODES", "STATE", "NODELIST"]
    width = 5
    if args.list_reasons:
        headers.append("REASON")
        width = 6
    return table.render_table(None if args.noheader else headers, [r[:width] for r in rows], full=True)


def command(argv: list[str]) -> int:
    """cinfo's body: returns the exit code, raises CliError on failure."""
    from crane_common import hostlist

    args = parse(build_command(), argv)
    parse_state_filter(args.states)  # validate before connecting
    try:
        node_names = hostlist.expand(args.nodes or [])
    except ValueError as exc:
        raise arg_error(f"cinfo: -n/--nodes: {exc}") from None
    iterate = None
    if args.iterate is not None:
        try:
            iterate = int(args.iterate)
            if iterate <= 0:
                raise ValueError
        except ValueError:
            raise arg_error(f"cinfo: invalid -i/--iterate {args.iterate!r}: expected a positive integer") from None
    layout = None
    if args.format is not None:
        from crane_cli.fmtspec import FormatSpecError, parse_format

        try:
            layout = parse_format(args.format, FORMAT_FIELDS.get)
        except FormatSpecError as exc:
            raise CliError(f"cinfo: {exc}", EXIT_FORMAT) from None
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    from crane_cli import rpc

    pb = rpc.pb
    calls = [("QueryPartitionInfo", pb.QueryPartitionInfoRequest(names=split_list(args.partition))),
             ("QueryCranedInfo", pb.QueryCranedInfoRequest(names=node_names))]
    filters = parse_state_filter(args.states)

    def wanted(node) -> bool:  # noqa: ANN001 - CranedInfo: does it pass -n and -t/-d/-r?
        return (not node_names or node.name in node_names) and keep_node(node, args, filters)

    with rpc.Controller(conf) as ctld:
        try:
            while True:
                part_reply, node_reply = ctld.call_many(calls)
                if args.json:  # upstream's QueryClusterInfoReply, the -t/-d/-r/-n filters applied
                    from crane_cli import upjson

                    if iterate is not None:
                        print(time.strftime("%Y-%m-%d %H:%M:%S"))
                    reply = upjson.query_cluster_info_reply(part_reply.partitions, node_reply.nodes, wanted)
                    print(upjson.dumps(reply))
                else:
                    rows = build_rows(list(part_reply.partitions), list(node_reply.nodes), args, node_names)
                    text = render(rows, args, layout)
                    if iterate is not None:
                        text = time.strftime("%a %b %d %H:%M:%S %Y") + ("\n" + text if text else "")
                    if text:
                        sys.stdout.write(text + "\n")
                if iterate is None:
                    return EXIT_OK
                sys.stdout.write("\n")
                sys.stdout.flush()
                time.sleep(iterate)
        except KeyboardInterrupt:
            if iterate is None:
                raise
            return EXIT_OK


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="cinfo")
