"""ccontrol: show and change jobs, nodes and partitions (``ccontrol <action> <entity> [id] [key=value...]``).

Supported: ``show node|partition|job [name/id]``, ``show step [<job>[.<step>],...]``;
``update nodeName=<n> state=drain|resume|down [reason=...]`` (``down``: the node is powered off, nothing of
its jobs runs there any more, so the resources held for them are released; admins only);
``update jobid=<id> key=value...``, ``hold|release|suspend|resume <ids>``, ``requeue [hold] <ids>``
(the job actions: crane_cli/ccontrol_jobs.py). Keys are case-insensitive. ``show`` prints upstream's
``Key=Value`` blocks (crane_cli/showblocks.py); ``--json`` prints the raw reply.
A node change the controller refuses prints its reason and exits 4; job changes exit as upstream's.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from crane_cli.cliparse import Argument, Command, common_options, parse, run
from crane_cli.errors import EXIT_BACKEND, EXIT_OK, arg_error


def build_command() -> Command:
    """ccontrol's flags: the words of the action, ``-C``, ``-v``, ``--json``."""
    return Command("ccontrol", help="Show and change jobs, nodes and partitions.", params=[
        Argument("words", nargs=-1, required=True, metavar="ACTION ENTITY [ID] [KEY=VALUE...]"),
        *common_options(),
    ])


def _pairs(words: list[str]) -> dict[str, str]:
    out = {}
    for word in words:
        if "=" not in word:
            raise arg_error(f"ccontrol: expected KEY=VALUE, got {word!r}")
        key, value = word.split("=", 1)
        out[key.lower()] = value
    return out


def _ids(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",") if x]
    except ValueError:
        raise arg_error(f"ccontrol: invalid job id list {text!r}") from None
    if not ids or any(i <= 0 for i in ids):
        raise arg_error(f"ccontrol: invalid job id list {text!r}")
    return ids


def _report(reply: object, ok_field: str, bad_field: str, what: str, as_json: bool) -> int:
    if as_json:
        from crane_cli.protojson import to_json

        print(to_json(reply))
    bad = list(getattr(reply, bad_field))
    reasons = list(reply.reasons)  # type: ignore[attr-defined]
    for i, item in enumerate(bad):
        sys.stderr.write(f"Failed to modify {what} {item}: {reasons[i] if i < len(reasons) else 'refused'}.\n")
    if not as_json and getattr(reply, ok_field):
        print(f"{what.capitalize()} {','.join(str(x) for x in getattr(reply, ok_field))} modified successfully.")
    return EXIT_BACKEND if bad else EXIT_OK


def _show(ctld: object, rpc: object, entity: str, name: str | None, as_json: bool) -> int:
    """``ccontrol show node|partition|job|step [name]``: upstream's blocks (crane_cli/showblocks.py)."""
    from crane_cli import showblocks

    pb = rpc.pb  # type: ignore[attr-defined]
    if entity in ("step", "steps"):
        return _show_steps(ctld, pb, [name] if name else [], as_json)
    if entity in ("node", "nodes"):
        reply = ctld.call("QueryCranedInfo", pb.QueryCranedInfoRequest(names=[name] if name else []))
        blocks = [showblocks.node_block(n) for n in reply.nodes]
        missing = f"show nodes failed: Node {name} not found." if name else "No node is available."
    elif entity in ("partition", "partitions"):
        reply = ctld.call("QueryPartitionInfo", pb.QueryPartitionInfoRequest(names=[name] if name else []))
        nodes = {} if as_json else {n.name: n for n in ctld.call("QueryCranedInfo", pb.QueryCranedInfoRequest()).nodes}
        blocks = [showblocks.partition_block(p, sum(1 for n in p.nodes if n in nodes and
                                                    nodes[n].resource_state != "down")) for p in reply.partitions]
        missing = f"show partitions failed: Partition {name} not found." if name else "No partition is available."
    elif entity in ("job", "jobs"):
        ids = _ids(name) if name else []
        reply = ctld.call("QueryJobsInfo", pb.QueryJobsInfoRequest(job_ids=ids, include_finished=bool(ids)))
        blocks = [showblocks.job_block(j) for j in reply.jobs]
        if not as_json:
            sys.stdout.write("".join(blocks))
            absent = [str(i) for i in ids if i not in {j.job_id for j in reply.jobs}]
            if absent:
                print(f"Job {', '.join(absent)} is not running.")
            elif not blocks:
                print("No job is running.")
            return EXIT_OK
        missing = ""
    else:
        raise arg_error(f"ccontrol: cannot show {entity!r} (node, partition, job or step)")
    if as_json:
        from crane_cli.protojson import to_json

        print(to_json(reply))
        return EXIT_OK
    if not blocks:
        (sys.stderr if name else sys.stdout).write(missing + "\n")
        return EXIT_BACKEND if name else EXIT_OK
    sys.stdout.write("".join(blocks))
    return EXIT_OK


def _show_steps(ctld: object, pb: object, items: list[str], as_json: bool) -> int:
    """``ccontrol show step [<job>[.<step>],...]``: upstream's blocks, ``No step is running.`` when none."""
    from crane_cli import steps
    from crane_cli.cliparse import split_list

    ids, wanted = steps.parse_selection(split_list(items), "ccontrol")
    request = pb.QueryJobsInfoRequest(job_ids=ids, include_steps=True, include_finished=bool(ids))  # type: ignore
    reply = ctld.call("QueryJobsInfo", request)  # type: ignore[attr-defined]
    if as_json:
        from crane_cli.protojson import to_json

        print(to_json(reply))
        return EXIT_OK
    found = steps.select_steps(list(reply.jobs), wanted, steps.ACTIVE_STEP_STATES)
    if not found:
        if items:
            sys.stderr.write(f"Step {','.join(split_list(items))} is not running.\n")
            return EXIT_BACKEND
        print("No step is running.")
        return EXIT_OK
    sys.stdout.write("".join(steps.step_block(job, step) + "\n" for job, step in found))
    return EXIT_OK


def command(argv: list[str]) -> int:
    """ccontrol's body: returns the exit code, raises CliError on failure."""
    args = parse(build_command(), argv)
    words = args.words
    action = words[0].lower()
    from crane_cli import clientconf, rpc

    conf = clientconf.load(args.config)
    pb = rpc.pb
    with rpc.Controller(conf) as ctld:
        if action == "show":
            if len(words) < 2:
                raise arg_error("ccontrol: show what? (node, partition, job or step)")
            if words[1].lower() in ("step", "steps"):
                return _show_steps(ctld, pb, list(words[2:]), args.json)
            return _show(ctld, rpc, words[1].lower(), words[2] if len(words) > 2 else None, args.json)
        if action in ("hold", "release", "suspend", "resume"):  # job actions: crane_cli/ccontrol_jobs.py
            from crane_cli import ccontrol_jobs

            return ccontrol_jobs.simple(ctld, pb, action, list(words[1:]), args.json)
        if action in ("requeue", "requeuehold"):
            from crane_cli import ccontrol_jobs

            return ccontrol_jobs.requeue(ctld, pb, list(words[1:]), args.json, hold=action == "requeuehold")
        if action == "update":
            kv = _pairs(words[1:])
            if "nodename" in kv:
                state = kv.get("state", "").lower()
                if state not in ("drain", "resume", "down"):
                    raise arg_error("ccontrol: update nodeName=... needs state=drain, state=resume or state=down")
                if state in ("drain", "down") and not kv.get("reason"):
                    raise arg_error(f"ccontrol: a reason is required to set a node {state} (reason=...)")
                from crane_common import hostlist

                request = pb.ModifyNodeRequest(names=hostlist.expand(kv["nodename"]), state=state,
                                               reason=kv.get("reason", ""))
                return _report(ctld.call("ModifyNode", request), "modified", "not_modified", "node", args.json)
            if "jobid" in kv:
                from crane_cli import ccontrol_jobs

                return ccontrol_jobs.update(ctld, pb, kv, args.json)
            raise arg_error("ccontrol: update needs nodeName=... or jobid=...")
    raise arg_error(f"ccontrol: unknown action {action!r} (show, update, hold, release, suspend, resume, requeue)")


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="ccontrol")
