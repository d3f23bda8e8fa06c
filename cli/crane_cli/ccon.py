"""ccon: a docker-like client for container jobs (``ccon [resource flags] COMMAND ...``).

A container job is a batch job whose ``JobSpec.container`` is set: the node's container
runtime plugin (``cri``) runs ``ContainerSpec.command`` in the image instead of the batch
script. Crane resource flags (``-p -A -q -c --mem -t -N -w -x -J``) go on the root command::

    ccon -p debug -c 2 --mem 1G run [-d] [--name N] [-e K=V] [--user UID[:GID]] [-p HOST:CONT] IMAGE [CMD...]
    ccon ps [-a] [-q]          container jobs: ID IMAGE COMMAND STATUS NODE NAME
    ccon logs [-f] JOB         the job's output file
    ccon stop JOB...           cancel (ccancel)
    ccon wait JOB...           wait until they end, print their exit codes
    ccon inspect JOB...        JSON of the jobs (JobInfo, container included); pods/inspectp: the same view

``run`` without ``-d`` waits for the job, streams its output file and exits with the
container's exit code (0-255; 128+N after signal N; 137 when stopped or out of memory; 124
over the time limit; 125 for a cluster-side failure). The output file is read where ccon
runs: on a one-host cluster it is in the submit directory; on several hosts that needs a
file system shared between the nodes and the login host. ``exec``, ``attach``, ``login``
and ``logout`` are not supported (exit code 2). Other exit codes as the other commands:
2 bad arguments, 3 network, 4 the controller refused.
"""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace
from typing import NoReturn

import click

from crane_cli.cliparse import Argument, Command, Group, Option, common_options, invoke, run
from crane_cli.errors import EXIT_ARGS, EXIT_BACKEND, EXIT_GENERIC, EXIT_OK, CliError, arg_error

# The server wants a batch script; the runtime runs ContainerSpec.command instead of it.
PLACEHOLDER_SCRIPT = "#!/bin/sh\n# ccon run: the container runtime runs ContainerSpec.command, not this script\n"
OUTPUT_PATTERN = "ccon-%j.out"
POLL_S = 0.1
PENDING, RUNNING = 0, 1
COMPLETED, FAILED, TIMEOUT, CANCELLED, OOM = 2, 3, 4, 5, 6
FINAL = frozenset({2, 3, 4, 5, 6, 11})
SIGNAL_BASE, CRANE_CODE_BASE = 256, 320

UNSUPPORTED = {
    "exec": "CRI's streaming Exec needs a node-side relay the cluster does not have yet",
    "attach": "CRI's streaming Attach needs a node-side relay the cluster does not have yet",
    "login": "nodes use images already in their image store; there is no registry login",
    "logout": "nodes use images already in their image store; there is no registry login",
}

# root option dest -> cbatch option name (crane_cli.jobspec.build_fields)
RESOURCE_KEYS = ("partition", "account", "qos", "cpus_per_task", "mem", "time", "nodes", "nodelist", "exclude",
                 "job_name")


class RunCommand(Command):
    """``run``: options stop at the image; what follows is the container's command, untouched."""

    def _check_values(self, ctx: click.Context, args: list[str]) -> None:
        takes_value = {n for p in self._options() if not p.is_flag for n in (*p.opts, *p.secondary_opts)}
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--" or not arg.startswith("-") or arg == "-":
                break
            i += 2 if arg in takes_value else 1
        super()._check_values(ctx, args[:i])


def _root() -> SimpleNamespace:
    return SimpleNamespace(**click.get_current_context().find_root().params)


def _body(fn):  # noqa: ANN001, ANN202
    def callback(**values: object) -> int:
        return fn(_root(), SimpleNamespace(**values))

    callback.__doc__ = fn.__doc__
    return callback


def _unsupported(name: str):  # noqa: ANN202
    def callback(argv: tuple[str, ...]) -> int:  # noqa: ARG001
        raise CliError(f"ccon {name}: not supported: {UNSUPPORTED[name]}", EXIT_ARGS)

    return callback


def build_command() -> Group:
    """ccon's root options and subcommands."""
    group = Group("ccon", help="Run and manage container jobs (docker-like).", params=[
        Option("-p", "--partition", help="partition"),
        Option("-A", "--account", help="account"),
        Option("-q", "--qos", help="quality of service"),
        Option("-c", "--cpus-per-task", help="CPUs (default 1)"),
        Option("--mem", help="memory per node (default unit MB)"),
        Option("-t", "--time", help="time limit, [D-]HH:MM:SS"),
        Option("-N", "--nodes", help="number of nodes"),
        Option("-w", "--nodelist", help="nodes to run on (host list)"),
        Option("-x", "--exclude", help="nodes to avoid (host list)"),
        Option("-J", "--job-name", help="job name (default: --name, else the image)"),
        *common_options(json_flag=False),
    ])
    group.add_command(RunCommand("run", short_help="run a command in a new container job",
                                 help="Run IMAGE [CMD...] as a container job; wait for it unless -d.", params=[
        Option("--name", help="container name (ContainerSpec.pod_name)"),
        Option("-d", "--detach", flag=True, default=False, help="print the job id and return"),
        Option("-e", "--env", multiple=True, metavar="K=V", help="set an environment variable (K alone: copy it)"),
        Option("--user", metavar="UID[:GID]", help="user inside the container"),
        Option("-p", "--publish", multiple=True, metavar="HOST:CONT", help="publish a port"),
        Argument("image", metavar="IMAGE", help="image reference, e.g. localhost/crane-busybox:1"),
        Argument("cmd", nargs=-1, required=False, type=click.UNPROCESSED, metavar="CMD",
                 help="command and arguments (default: the image's)"),
    ], context_settings={"allow_interspersed_args": False}, callback=_body(cmd_run)))
    ps_params = [
        Option("-a", "--all", flag=True, default=False, help="also ended jobs the controller still holds"),
        Option("-q", "--quiet", flag=True, default=False, help="only the job ids"),
        Option("--json", flag=True, default=False, help="print the controller's reply as JSON"),
    ]
    group.add_command(Command("ps", short_help="list container jobs", params=ps_params, callback=_body(cmd_ps)))
    group.add_command(Command("pods", short_help="list pods (the same view as ps)", params=list(ps_params),
                              callback=_body(cmd_ps)))
    for name in ("inspect", "inspectp"):
        group.add_command(Command(name, short_help="JSON of container jobs", params=[
            Argument("jobs", nargs=-1, required=True, metavar="JOB...", help="job ids")], callback=_body(cmd_inspect)))
    group.add_command(Command("logs", short_help="print a container job's output", params=[
        Option("-f", "--follow", flag=True, default=False, help="keep printing until the job ends"),
        Argument("job", metavar="JOB", help="job id")], callback=_body(cmd_logs)))
    group.add_command(Command("stop", short_help="stop (cancel) container jobs", params=[
        Argument("jobs", nargs=-1, required=True, metavar="JOB...", help="job ids")], callback=_body(cmd_stop)))
    group.add_command(Command("wait", short_help="wait for container jobs, print their exit codes", params=[
        Argument("jobs", nargs=-1, required=True, metavar="JOB...", help="job ids")], callback=_body(cmd_wait)))
    for name in UNSUPPORTED:
        group.add_command(click.Command(name, short_help="not supported", callback=_unsupported(name),
                                        params=[click.Argument(["argv"], nargs=-1, type=click.UNPROCESSED)],
                                        context_settings={"ignore_unknown_options": True,
                                                          "allow_interspersed_args": False,
                                                          "help_option_names": []}))
    return group


# -- helpers ------------------------------------------------------------------------------

def job_ids(values: tuple[str, ...] | list[str]) -> list[int]:
    """Job id arguments (positive integers) or exit code 2."""
    out = []
    for v in values:
        if not v.isdigit() or not 0 < int(v) <= 0xFFFFFFFF:
            raise arg_error(f"ccon: invalid job id {v!r}")
        out.append(int(v))
    return out


def exit_status(job) -> int:  # noqa: ANN001 - JobInfo
    """The process exit code ``ccon run``/``wait`` report for an ended job (see the module docs)."""
    raw = int(job.exit_code)
    if job.status in (CANCELLED, OOM):
        return 137
    if job.status == TIMEOUT:
        return 124
    if raw < SIGNAL_BASE:
        return raw
    if raw < CRANE_CODE_BASE:
        return 128 + raw - SIGNAL_BASE
    return 125


def expand_output(job) -> str:  # noqa: ANN001 - JobInfo
    """The job's stdout file as the node writes it (``%j %x %u %%`` expanded against its working directory)."""
    pattern = job.stdout_path or "Crane-%j.out"
    subst = {"j": str(job.job_id), "x": job.name or "job", "u": job.user, "%": "%", "J": f"{job.job_id}.1"}
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "%" and i + 1 < len(pattern):
            out.append(subst.get(pattern[i + 1], pattern[i:i + 2]))
            i += 2
            continue
        out.append(pattern[i])
        i += 1
    path = "".join(out)
    return path if os.path.isabs(path) else os.path.join(job.cwd or os.getcwd(), path)


class Client:
    """The controller calls ccon makes."""

    def __init__(self, config: str | None) -> None:
        from crane_cli import clientconf

        conf = clientconf.load(config)
        from crane_cli import rpc

        self.pb = rpc.pb
        self.ctld = rpc.Controller(conf)

    def jobs(self, ids: list[int] | None = None, finished: bool = True) -> list:
        pb = self.pb
        states = [] if not finished else list(range(0, 12))
        reply = self.ctld.call("QueryJobsInfo", pb.QueryJobsInfoRequest(
            job_ids=ids or [], include_finished=finished, states=states))
        if not reply.ok:
            raise CliError(f"ccon: {reply.reason or 'the controller refused the query'}", EXIT_BACKEND)
        return sorted(reply.jobs, key=lambda j: j.job_id)

    def job(self, job_id: int):  # noqa: ANN201
        found = [j for j in self.jobs([job_id]) if j.job_id == job_id]
        if not found:
            raise CliError(f"ccon: no such job: {job_id}", EXIT_BACKEND)
        return found[0]

    def close(self) -> None:
        self.ctld.close()


class Tail:
    """Read a growing file from where the last read stopped."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0

    def pump(self, out) -> bool:  # noqa: ANN001 - a binary stream
        """Copy what is new to ``out``; whether there was anything."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return False
        if data:
            self.offset += len(data)
            out.write(data)
            out.flush()
        return bool(data)


def _drain(tail: Tail, out) -> None:  # noqa: ANN001
    """After the job ended: read until the file stops growing (the node may still be flushing)."""
    quiet = 0
    while quiet < 2:
        quiet = 0 if tail.pump(out) else quiet + 1
        time.sleep(0.05)


def follow(client: Client, job_id: int, path: str | None, out) -> object:  # noqa: ANN001
    """Stream ``path`` (the job's output file) until the job ends; return its final JobInfo."""
    tail = Tail(path) if path else None
    while True:
        job = client.job(job_id)
        if tail is None and job.status != PENDING:
            tail = Tail(expand_output(job))
        if tail is not None:
            tail.pump(out)
        if job.status in FINAL:
            if tail is not None:
                _drain(tail, out)
            return job
        time.sleep(POLL_S)


# -- subcommands ------------------------------------------------------------------------------

def build_run_fields(root: SimpleNamespace, args: SimpleNamespace, cwd: str,
                     environ: dict[str, str] | None = None) -> dict[str, object]:
    """The ``JobSpec`` fields of ``ccon run`` (validates everything; no network)."""
    from crane_cli.jobspec import build_fields

    environ = dict(os.environ if environ is None else environ)
    opts: dict[str, object] = {k: getattr(root, k) for k in RESOURCE_KEYS if getattr(root, k, None) is not None}
    opts["pod"] = args.image
    if args.name is not None:
        opts["pod_name"] = args.name
    if args.user is not None:
        opts["pod_user"] = args.user
    if args.publish:
        opts["pod_port"] = ",".join(args.publish)
    opts["export"] = "NIL"  # a container gets only what -e gives it, as with docker
    opts["output"] = OUTPUT_PATTERN
    default_name = args.name or args.image.rsplit("/", 1)[-1].split(":")[0] or "ccon"
    fields = build_fields(opts, script=PLACEHOLDER_SCRIPT, default_name=default_name, interpreter="/bin/sh",
                          environ=environ, cwd=cwd, submit_host=os.uname().nodename,
                          cmd_line=" ".join(["ccon", *sys.argv[1:]]))
    env: dict[str, str] = {}
    for item in args.env or ():
        key, sep, value = item.partition("=")
        if not key or any(c.isspace() for c in key):
            raise arg_error(f"ccon run: invalid -e {item!r}: expected K=V or K")
        if sep:
            env[key] = value
        elif key in environ:
            env[key] = environ[key]
    fields["env"] = env
    fields["container"]["command"] = list(args.cmd)  # type: ignore[index]
    return fields


def cmd_run(root: SimpleNamespace, args: SimpleNamespace) -> int:
    """Submit a container job; unless detached, stream its output and exit with its exit code."""
    try:
        cwd = os.getcwd()
    except OSError as exc:
        raise CliError(f"ccon: cannot get the current directory: {exc.strerror or exc}", 6) from None
    fields = build_run_fields(root, args, cwd)
    client = Client(root.config)
    try:
        pb = client.pb
        reply = client.ctld.call("SubmitBatchJob", pb.SubmitBatchJobRequest(job=pb.JobSpec(**fields)))
        if not reply.ok:
            from crane_cli.cbatch import refusal_text

            raise CliError(f"ccon run: {refusal_text(reply)}", EXIT_BACKEND)
        if args.detach:
            print(reply.job_id)
            return EXIT_OK
        path = expand_output(pb.JobInfo(job_id=reply.job_id, name=str(fields["name"]), cwd=cwd,
                                        stdout_path=OUTPUT_PATTERN))
        try:
            job = follow(client, reply.job_id, path, sys.stdout.buffer)
        except KeyboardInterrupt:
            client.ctld.call("CancelJob", pb.CancelJobRequest(job_ids=[reply.job_id]))
            sys.stderr.write(f"ccon: job {reply.job_id} stopped\n")
            return 130
        code = exit_status(job)
        if code == 125:
            from crane_common.states import CRANE_CODE_NAMES

            why = CRANE_CODE_NAMES.get(job.exit_code, f"code {job.exit_code}")
            sys.stderr.write(f"ccon: job {job.job_id} failed on the cluster side: {why}"
                             f"{' (' + job.pending_reason + ')' if job.pending_reason else ''}\n")
        return code
    finally:
        client.close()


def _status(job, now: float) -> str:  # noqa: ANN001
    from crane_cli.jobfields import state_name
    from crane_cli.timefmt import format_duration

    name = state_name(job.status)
    if job.status == PENDING:
        return f"{name} ({job.pending_reason})" if job.pending_reason else name
    if job.status == RUNNING:
        seconds = job.elapsed or (now - job.start_time if job.start_time > 0 else 0)
        return f"{name} {format_duration(seconds)}"
    if job.status in FINAL:
        return f"{name} ({exit_status(job)})"
    return name


def _command(job) -> str:  # noqa: ANN001
    import shlex

    argv = list(job.container.command)  # the controller may report the image only: then "-"
    return shlex.join(argv) if argv else "-"


def cmd_ps(root: SimpleNamespace, args: SimpleNamespace) -> int:
    """List container jobs (pending and running; ``-a``: also recently ended)."""
    client = Client(root.config)
    try:
        if args.all:
            jobs = client.jobs(finished=True)
        else:
            jobs = client.jobs(finished=False)
    finally:
        client.close()
    jobs = [j for j in jobs if j.HasField("container")]
    if args.json:
        from crane_cli.protojson import to_json

        print(to_json(client.pb.QueryJobsInfoReply(ok=True, jobs=jobs)))
        return EXIT_OK
    if args.quiet:
        for j in jobs:
            print(j.job_id)
        return EXIT_OK
    from crane_cli.table import render_table

    now = time.time()
    rows = [[str(j.job_id), j.container.image, _command(j), _status(j, now),
             j.craned_list or "-", j.container.pod_name or j.name] for j in jobs]
    print(render_table(["ID", "IMAGE", "COMMAND", "STATUS", "NODE", "NAME"], rows))
    return EXIT_OK


def cmd_inspect(root: SimpleNamespace, args: SimpleNamespace) -> int:
    """JSON of the jobs (a list, as docker inspect prints it)."""
    ids = job_ids(args.jobs)
    client = Client(root.config)
    try:
        found = {j.job_id: j for j in client.jobs(ids)}
    finally:
        client.close()
    from crane_cli.protojson import dumps, to_dict

    print(dumps([to_dict(found[i]) for i in ids if i in found]))
    missing = [i for i in ids if i not in found]
    for i in missing:
        sys.stderr.write(f"ccon: no such job: {i}\n")
    return EXIT_BACKEND if missing else EXIT_OK


def cmd_logs(root: SimpleNamespace, args: SimpleNamespace) -> int:
    """Print the job's output file (``-f``: until the job ends)."""
    job_id = job_ids([args.job])[0]
    client = Client(root.config)
    try:
        job = client.job(job_id)
        path = expand_output(job)
        if args.follow:
            follow(client, job_id, path, sys.stdout.buffer)
            return EXIT_OK
    finally:
        client.close()
    if not Tail(path).pump(sys.stdout.buffer):
        if not os.path.exists(path):
            if job.status == PENDING:
                return EXIT_OK  # not started: no output yet
            raise CliError(f"ccon logs: no output file {path} here (on several hosts it needs a shared file "
                           "system)", EXIT_GENERIC)
    return EXIT_OK


def cmd_stop(root: SimpleNamespace, args: SimpleNamespace) -> int:
    """Cancel the jobs (ccancel); print each one stopped."""
    ids = job_ids(args.jobs)
    client = Client(root.config)
    try:
        reply = client.ctld.call("CancelJob", client.pb.CancelJobRequest(job_ids=ids))
    finally:
        client.close()
    for i in reply.cancelled:
        print(i)
    reasons = list(reply.reasons)
    for n, i in enumerate(reply.not_cancelled):
        reason = (reasons[n] if n < len(reasons) else "") or "unknown reason"
        sys.stderr.write(f"ccon stop: job {i}: {reason.rstrip('.')}\n")
    return EXIT_BACKEND if reply.not_cancelled else EXIT_OK


def cmd_wait(root: SimpleNamespace, args: SimpleNamespace) -> int:
    """Wait until each job has ended; print its exit code (one line per job)."""
    ids = job_ids(args.jobs)
    client = Client(root.config)
    try:
        for i in ids:
            while True:
                job = client.job(i)
                if job.status in FINAL:
                    break
                time.sleep(POLL_S * 2)
            print(exit_status(job), flush=True)
    finally:
        client.close()
    return EXIT_OK


def command(argv: list[str]) -> int:
    """ccon's body: parse and run the subcommand; its exit code."""
    return invoke(build_command(), argv, "ccon")


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="ccon")
