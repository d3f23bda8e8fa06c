"""scancel: ``CancelJob`` with Slurm's arguments, quiet on success as Slurm is.

``scancel [options] [job_id[_task][.step]...]``: ids and the filters ``-u -n -p -t -A -w``
(and ``--me``) go to the controller in one request; ``-s/--signal SIG`` signals the jobs
instead of ending them (``CancelJobRequest.signal``). A job the controller could not cancel is
``scancel: error: Kill job error on job id <id>: <reason>`` on stderr and exit 1.
"""

from __future__ import annotations

import sys

from crane_cli.errors import EXIT_OK, CliError

from crane_slurm import slurmfmt as sf
from crane_slurm.slurmopts import IGNORE, LOCAL, NONE, REFUSE, Opt, OptionTable, failure, translate, usage
from crane_slurm.support import task_refs

PROG = "scancel"

OPTIONS = (
    Opt("account", "A", action=LOCAL), Opt("name", "n", action=LOCAL), Opt("partition", "p", action=LOCAL),
    Opt("state", "t", action=LOCAL), Opt("user", "u", action=LOCAL), Opt("me", arg=NONE, action=LOCAL),
    Opt("nodelist", "w", action=LOCAL), Opt("signal", "s", action=LOCAL), Opt("quiet", "Q", NONE, LOCAL),
    Opt("verbose", "v", NONE, LOCAL), Opt("help", "h", NONE, LOCAL), Opt("usage", arg=NONE, action=LOCAL),
    Opt("version", "V", NONE, LOCAL),
    Opt("interactive", "i", NONE, REFUSE), Opt("batch", "b", NONE, REFUSE, why="signals go to every process"),
    Opt("full", "f", NONE, REFUSE), Opt("clusters", "M", action=REFUSE, why="one cluster"),
    Opt("qos", "q", action=REFUSE), Opt("reservation", "R", action=REFUSE), Opt("sibling", action=REFUSE),
    Opt("wckey", action=REFUSE), Opt("hurry", "H", NONE, IGNORE), Opt("ctld", arg=NONE, action=IGNORE),
)
TABLE = OptionTable(PROG, OPTIONS)


def parse_signal(text: str) -> int:
    """``-s KILL`` / ``SIGUSR1`` / ``9`` -> the signal number (the usage error if unknown)."""
    import signal

    name = text.strip().upper()
    if name.isdigit() and 0 < int(name) < 65:
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
    if number is None:
        raise usage(PROG, f"Invalid job signal: {text}")
    return int(number)


def parse_ids(words: list[str]) -> tuple[list[int], list[tuple[int, int]], list[tuple[int, int]]]:
    """Job ids, ``<job>.<step>`` pairs and ``<array>_<task>`` pairs (the usage error if one is bad)."""
    ids: list[int] = []
    steps: list[tuple[int, int]] = []
    tasks: list[tuple[int, int]] = []
    for word in words:
        for item in (p for p in word.replace(" ", ",").split(",") if p):
            job, dot, step = item.partition(".")
            head, us, task = job.partition("_")
            if (not head.isdigit() or not 0 < int(head) <= 0xFFFFFFFF or (us and not task.isdigit())
                    or (dot and not step.isdigit())):
                raise usage(PROG, f"Invalid job id {item}")
            if us:
                tasks.append((int(head), int(task)))
            elif dot:
                steps.append((int(head), int(step)))
            else:
                ids.append(int(head))
    return ids, steps, tasks


def build_request(parsed) -> dict:  # noqa: ANN001 - Parsed
    """The ``CancelJobRequest`` fields (raises the usage error for bad or missing arguments)."""
    translate(PROG, parsed)
    ids, steps, tasks = parse_ids(parsed.positional)
    from crane_slurm import support

    support.require_array_tasks(PROG, tasks)
    user = parsed.last("user")
    if parsed.given("me"):
        from crane_slurm.squeue import current_user

        user = current_user()
    elif user and user.isdigit():
        from crane_slurm.squeue import user_names

        user = user_names([user])[0]
    states = sf.parse_states(PROG, parsed.values("state")) if parsed.given("state") else []
    nodes: list[str] = []
    if parsed.given("nodelist"):
        from crane_common import hostlist

        try:
            nodes = hostlist.expand(parsed.values("nodelist"))
        except ValueError as exc:
            raise usage(PROG, f"Invalid node list: {exc}") from None
    filters = {"name": parsed.last("name") or "", "partition": parsed.last("partition") or "",
               "account": parsed.last("account") or "", "user": user or ""}
    if not (ids or steps or tasks) and not any(filters.values()) and not states and not nodes:
        raise usage(PROG, "No job identification provided")
    fields: dict = {"job_ids": ids, "steps": steps, "array_tasks": tasks, "states": states, "nodes": nodes,
                    **filters}
    if parsed.given("signal"):
        number = parse_signal(parsed.last("signal") or "")
        if not support.cancel_signal():  # a controller that ignores the field would end the jobs instead
            raise usage(PROG, "-s/--signal is not supported by this cluster yet")
        fields["signal"] = number
    return fields


def command(argv: list[str]) -> int:
    """scancel's body: the exit code (raises CliError on failure)."""
    parsed = TABLE.parse(argv, stop_at_positional=False)
    if parsed.given("help") or parsed.given("usage"):
        sys.stdout.write("Usage: scancel [-A account] [-n name] [-p partition] [-s signal] [-t state] [-u user] "
                         "[--me] [-w nodes] [job_id[_task][.step] ...]\n")
        return EXIT_OK
    fields = build_request(parsed)
    from crane_cli import clientconf

    try:
        conf = clientconf.load(None)
        from crane_cli import rpc

        pb = rpc.pb
        request = pb.CancelJobRequest(
            **{k: v for k, v in fields.items() if k not in ("steps", "array_tasks")},
            steps=[pb.StepRef(job_id=j, step_id=s) for j, s in fields["steps"]],
            array_tasks=task_refs(pb, fields["array_tasks"]))
        with rpc.Controller(conf) as ctld:
            reply = ctld.call("CancelJob", request)
    except CliError as exc:
        raise failure(PROG, exc.message) from None
    errors = []
    for i, job_id in enumerate(reply.not_cancelled):
        errors.append((str(job_id), reply.reasons[i] if i < len(reply.reasons) else ""))
    for i, ref in enumerate(reply.not_cancelled_steps):
        errors.append((f"{ref.job_id}.{ref.step_id}", reply.step_reasons[i] if i < len(reply.step_reasons) else ""))
    for i, ref in enumerate(reply.not_cancelled_tasks):
        errors.append((f"{ref.array_job_id}_{ref.task_id}",
                       reply.task_reasons[i] if i < len(reply.task_reasons) else ""))
    for what, why in errors:
        sys.stderr.write(f"scancel: error: Kill job error on job id {what}: {(why or 'refused').rstrip('.')}\n")
    return 1 if errors else EXIT_OK
