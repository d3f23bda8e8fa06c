"""ccancel: cancel jobs by id and/or by filters (``ccancel [flags] [ID[,ID...]]``).

Ids must match ``^[1-9]\\d*(_\\d+)?(\\.[1-9]\\d*)?(,...)*$``; array tasks and steps are
valid syntax but cannot be cancelled on this cluster (exit code 2). At least one id
or filter is required. Output: ``<ids> cancelled successfully.`` and one
``Failed to cancel job: <id>. Reason: <r>.`` line per failure on stderr (exit code 4).
"""

from __future__ import annotations

import sys
from typing import NoReturn

from crane_cli.cliparse import Argument, Command, Option, common_options, parse, run, split_list
from crane_cli.errors import EXIT_BACKEND, EXIT_OK, arg_error
from crane_cli.lazyre import LazyRegex

_ONE_ID = r"[1-9]\d*(?:_\d+)?(?:\.[1-9]\d*)?"
JOB_LIST = LazyRegex(rf"^{_ONE_ID}(?:,{_ONE_ID})*$")
STATE_FILTERS = {"pending": (0,), "p": (0,), "running": (1, 7, 8, 9), "r": (1, 7, 8, 9), "suspended": (10,),
                 "s": (10,), "all": ()}


def build_command() -> Command:
    """ccancel's flags."""
    return Command("ccancel", help="Cancel pending or running jobs.", params=[
        Argument("ids", nargs=-1, required=False, metavar="ID[,ID...]", help="job ids"),
        Option("-n", "--name", help="only jobs with this name"),
        Option("-p", "--partition", help="only jobs in this partition"),
        Option("-t", "--state", help="only jobs in this state: PENDING(P), RUNNING(R), SUSPENDED(S) or ALL"),
        Option("-A", "--account", help="only jobs of this account"),
        Option("-u", "--user", help="only jobs of this user"),
        Option("-w", "--nodes", multiple=True, help="only jobs running on these nodes (host list)"),
        *common_options(),
    ])


def parse_ids(values: list[str] | tuple[str, ...]) -> list[int]:
    """Check and convert the id arguments (raises CliError, exit 2)."""
    ids: list[int] = []
    for value in values:
        if not JOB_LIST.match(value):
            raise arg_error(f"Invalid job list specified: {value}.")
        for item in value.split(","):
            if "_" in item or "." in item:
                raise arg_error(f"ccancel: cancelling array tasks or steps ({item}) is not supported by this cluster")
            n = int(item)
            if n > 0xFFFFFFFF:
                raise arg_error(f"Invalid job list specified: {value}.")
            if n not in ids:
                ids.append(n)
    return ids


def parse_state(value: str | None) -> list[int]:
    """``-t`` -> JobStatus numbers (empty for ALL or no filter)."""
    if value is None:
        return []
    out: list[int] = []
    for item in split_list([value]):
        states = STATE_FILTERS.get(item.lower())
        if states is None:
            raise arg_error(f"ccancel: invalid state {item!r}: expected PENDING(P), RUNNING(R), SUSPENDED(S) or ALL")
        out.extend(s for s in states if s not in out)
    return out


def command(argv: list[str]) -> int:
    """ccancel's body: returns the exit code, raises CliError on failure."""
    args = parse(build_command(), argv)
    ids = parse_ids(args.ids)
    states = parse_state(args.state)
    nodes: list[str] = []
    if args.nodes:
        from crane_common import hostlist

        try:
            nodes = hostlist.expand(args.nodes)
        except ValueError as exc:
            raise arg_error(f"ccancel: -w/--nodes: {exc}") from None
    has_filter = any(v is not None for v in (args.name, args.partition, args.state, args.account, args.user)) or nodes
    if not ids and not has_filter:
        raise arg_error("ccancel: at least one job id or filter (-n, -p, -t, -A, -u, -w) is required")
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    from crane_cli import rpc

    request = rpc.pb.CancelJobRequest(job_ids=ids, name=args.name or "", partition=args.partition or "",
                                      account=args.account or "", user=args.user or "", states=states, nodes=nodes)
    with rpc.Controller(conf) as ctld:
        reply = ctld.call("CancelJob", request)
    failed = list(reply.not_cancelled)
    if args.json:
        from crane_cli.protojson import to_json

        print(to_json(reply))
        return EXIT_BACKEND if failed else EXIT_OK
    if reply.cancelled:
        print(f"{','.join(str(i) for i in reply.cancelled)} cancelled successfully.")
    reasons = list(reply.reasons)
    for i, job_id in enumerate(failed):
        reason = (reasons[i] if i < len(reasons) else "") or "unknown reason"
        sys.stderr.write(f"Failed to cancel job: {job_id}. Reason: {reason.rstrip('.')}.\n")
    return EXIT_BACKEND if failed else EXIT_OK


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="ccancel")
