"""ccancel: cancel jobs or steps by id and/or jobs by filters (``ccancel [flags] [ID[,ID...]]``).

Ids must match ``^[1-9]\\d*(_\\d+)?(\\.\\d+)?(,...)*$``: ``<job>`` cancels the job, ``<job>.<step>``
only that step (step 0 is the job's primary step); array tasks are valid syntax but cannot be
cancelled on this cluster (exit code 2). At least one id or filter is required. Output:
``Job <ids> Step <job.step ids> cancelled successfully.`` and one ``Failed to cancel job: <id>.
Reason: <r>.`` / ``Failed to cancel step: <job>-<step>. Reason: <r>.`` line per failure on
stderr (exit code 4). ``--json`` prints upstream's ``{"cancelled_steps": ..., "not_cancelled_job_steps": ...}``.
``-s/--signal SIG`` sends SIG to the jobs' processes instead (they keep running; pending jobs are refused):
``Job <ids> signalled successfully.`` and ``Failed to signal job: <id>. Reason: <r>.`` (exit code 4).
"""

from __future__ import annotations

import sys
from typing import NoReturn

from crane_cli.cliparse import Argument, Command, Option, common_options, parse, run, split_list
from crane_cli.errors import EXIT_BACKEND, EXIT_OK, arg_error
from crane_cli.lazyre import LazyRegex

_ONE_ID = r"[1-9]\d*(?:_\d+)?(?:\.\d+)?"
JOB_LIST = LazyRegex(rf"^{_ONE_ID}(?:,{_ONE_ID})*$")
STATE_FILTERS = {"pending": (0,), "p": (0,), "running": (1, 7, 8, 9), "r": (1, 7, 8, 9), "suspended": (10,),
                 "s": (10,), "all": ()}


def build_command() -> Command:
    """ccancel's flags."""
    return Command("ccancel", help="Cancel pending or running jobs.", params=[
        Argument("ids", nargs=-1, required=False, metavar="ID[,ID...]", help="job ids, or <job>.<step> for one step"),
        Option("-n", "--name", help="only jobs with this name"),
        Option("-p", "--partition", help="only jobs in this partition"),
        Option("-t", "--state", help="only jobs in this state: PENDING(P), RUNNING(R), SUSPENDED(S) or ALL"),
        Option("-A", "--account", help="only jobs of this account"),
        Option("-u", "--user", help="only jobs of this user"),
        Option("-w", "--nodes", multiple=True, help="only jobs running on these nodes (host list)"),
        Option("-s", "--signal", metavar="SIG",
               help="send SIG (a name like USR1 or a number) to the jobs' processes instead of ending them"),
        *common_options(),
    ])


def parse_ids(values: list[str] | tuple[str, ...]) -> tuple[list[int], list[tuple[int, int]]]:
    """Check and convert the id arguments: (job ids, (job, step) pairs) (raises CliError, exit 2)."""
    ids: list[int] = []
    steps: list[tuple[int, int]] = []
    for value in values:
        if not JOB_LIST.match(value):
            raise arg_error(f"Invalid job list specified: {value}.")
        for item in value.split(","):
            if "_" in item:
                raise arg_error(f"ccancel: cancelling array tasks ({item}) is not supported by this cluster")
            job, _dot, step = item.partition(".")
            n = int(job)
            if n > 0xFFFFFFFF or (step and int(step) > 0xFFFFFFFF):
                raise arg_error(f"Invalid job list specified: {value}.")
            if step:
                if (n, int(step)) not in steps:
                    steps.append((n, int(step)))
            elif n not in ids:
                ids.append(n)
    return ids, steps


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
    ids, step_ids = parse_ids(args.ids)
    states = parse_state(args.state)
    nodes: list[str] = []
    if args.nodes:
        from crane_common import hostlist

        try:
            nodes = hostlist.expand(args.nodes)
        except ValueError as exc:
            raise arg_error(f"ccancel: -w/--nodes: {exc}") from None
    has_filter = any(v is not None for v in (args.name, args.partition, args.state, args.account, args.user)) or nodes
    if not ids and not step_ids and not has_filter:
        raise arg_error("ccancel: at least one job id or filter (-n, -p, -t, -A, -u, -w) is required")
    if step_ids and has_filter:
        raise arg_error("ccancel: step ids cannot be combined with filters")
    signum = 0
    if args.signal is not None:
        from crane_common.signals import SignalSpecError, signal_number

        try:
            signum = signal_number(str(args.signal))
        except SignalSpecError as exc:
            raise arg_error(f"ccancel: -s/--signal: {exc}") from None
        if step_ids:
            raise arg_error("ccancel: -s/--signal is sent to whole jobs, not to steps")
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    from crane_cli import rpc

    request = rpc.pb.CancelJobRequest(job_ids=ids, name=args.name or "", partition=args.partition or "",
                                      account=args.account or "", user=args.user or "", states=states, nodes=nodes,
                                      steps=[rpc.pb.StepRef(job_id=j, step_id=s) for j, s in step_ids],
                                      signal=signum)
    with rpc.Controller(conf) as ctld:
        reply = ctld.call("CancelJob", request)
    failed = bool(reply.not_cancelled) or bool(reply.not_cancelled_steps)
    if args.json:
        print(reply_json(reply))
        return EXIT_BACKEND if failed else EXIT_OK
    if signum:
        return _signal_report(reply)
    done = []
    if reply.cancelled:
        done.append(f"Job {','.join(str(i) for i in reply.cancelled)}")
    if reply.cancelled_steps:
        done.append(f"Step {','.join(f'{s.job_id}.{s.step_id}' for s in reply.cancelled_steps)}")
    if done:
        print(f"{' '.join(done)} cancelled successfully.")
    reasons = list(reply.reasons)
    for i, job_id in enumerate(reply.not_cancelled):
        reason = (reasons[i] if i < len(reasons) else "") or "unknown reason"
        sys.stderr.write(f"Failed to cancel job: {job_id}. Reason: {reason.rstrip('.')}.\n")
    step_reasons = list(reply.step_reasons)
    for i, ref in enumerate(reply.not_cancelled_steps):
        reason = (step_reasons[i] if i < len(step_reasons) else "") or "unknown reason"
        sys.stderr.write(f"Failed to cancel step: {ref.job_id}-{ref.step_id}. Reason: {reason.rstrip('.')}.\n")
    return EXIT_BACKEND if failed else EXIT_OK


def _signal_report(reply: object) -> int:
    """``ccancel -s``: ``Job <ids> signalled successfully.``, one ``Failed to signal job`` line per refusal (exit 4)."""
    if reply.cancelled:  # type: ignore[attr-defined]
        print(f"Job {','.join(str(i) for i in reply.cancelled)} signalled successfully.")  # type: ignore[attr-defined]
    reasons = list(reply.reasons)  # type: ignore[attr-defined]
    for i, job_id in enumerate(reply.not_cancelled):  # type: ignore[attr-defined]
        reason = (reasons[i] if i < len(reasons) else "") or "unknown reason"
        sys.stderr.write(f"Failed to signal job: {job_id}. Reason: {reason.rstrip('.')}.\n")
    return EXIT_BACKEND if reply.not_cancelled else EXIT_OK  # type: ignore[attr-defined]


def reply_json(reply: object) -> str:
    """Upstream's ccancel JSON: ``cancelled_steps`` and ``not_cancelled_job_steps`` keyed by job id.

    Compact, keys sorted as strings, ``<``, ``>``, ``&`` escaped (Go's encoding/json).
    """
    import json

    done: dict[str, dict] = {}
    for job_id in reply.cancelled:  # type: ignore[attr-defined]
        done.setdefault(str(job_id), {"steps": []})
    for ref in reply.cancelled_steps:  # type: ignore[attr-defined]
        done.setdefault(str(ref.job_id), {"steps": []})["steps"].append(ref.step_id)
    bad: dict[str, dict] = {}
    reasons = list(reply.reasons)  # type: ignore[attr-defined]
    for i, job_id in enumerate(reply.not_cancelled):  # type: ignore[attr-defined]
        entry = bad.setdefault(str(job_id), {"reason": "", "step_ids": [], "step_reasons": []})
        entry["reason"] = reasons[i] if i < len(reasons) else ""
    step_reasons = list(reply.step_reasons)  # type: ignore[attr-defined]
    for i, ref in enumerate(reply.not_cancelled_steps):  # type: ignore[attr-defined]
        entry = bad.setdefault(str(ref.job_id), {"reason": "", "step_ids": [], "step_reasons": []})
        entry["step_ids"].append(ref.step_id)
        entry["step_reasons"].append(step_reasons[i] if i < len(step_reasons) else "")
    text = json.dumps({"cancelled_steps": done, "not_cancelled_job_steps": bad}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="ccancel")
