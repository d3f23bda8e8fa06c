"""cbatch: submit a batch job (``cbatch [flags] script`` or ``cbatch [flags] --wrap "cmd"``).

Script directives (``#CBATCH``, ``#SBATCH``, ``#BSUB``; see :mod:`crane_cli.directives`)
are read first and the command line overrides them. Success prints
``Job id allocated: <id>.`` (``--repeat N``: a comma-separated list); a not-ok
reply prints the reason and exits with code 4.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from crane_cli.cliparse import Parser, add_common, run
from crane_cli.errors import EXIT_BACKEND, EXIT_OK, EXIT_SYSTEM, CliError, arg_error

FLAG = {"action": "store_const", "const": True, "default": None}


def build_parser() -> Parser:
    """The cbatch argument parser (values are kept as strings; see :mod:`crane_cli.jobspec`)."""
    p = Parser(prog="cbatch", description="Submit a batch job to CraneSched.")
    p.add_argument("script", nargs="?", help="batch script to submit")
    p.add_argument("-N", "--nodes", help="number of nodes")
    p.add_argument("-c", "--cpus-per-task", help="CPUs per task (default 1)")
    p.add_argument("-n", "--ntasks", help="number of tasks")
    p.add_argument("--ntasks-per-node", help="tasks per node")
    p.add_argument("-t", "--time", help="time limit, [D-]HH:MM:SS")
    mem = p.add_mutually_exclusive_group()
    mem.add_argument("--mem", help="memory per node (default unit MB; K, M, G, B suffixes)")
    mem.add_argument("--mem-per-cpu", help="memory per CPU (default unit MB)")
    p.add_argument("--gres", help="generic resources per node, e.g. gpu:a100:2")
    p.add_argument("--gpus-per-node", help="GPUs per node, [type:]n[,type:n]")
    p.add_argument("-p", "--partition", help="partition")
    p.add_argument("-J", "--job-name", help="job name")
    p.add_argument("-A", "--account", help="account")
    p.add_argument("-q", "--qos", help="quality of service")
    p.add_argument("-D", "--chdir", help="working directory of the job")
    p.add_argument("-o", "--output", help="stdout file pattern (%%j job id)")
    p.add_argument("-e", "--error", help="stderr file pattern (%%j job id)")
    p.add_argument("-i", "--input", help="stdin file")
    p.add_argument("-w", "--nodelist", help="nodes to run on (host list)")
    p.add_argument("-x", "--exclude", help="nodes to avoid (host list)")
    p.add_argument("--exclusive", help="do not share nodes with other jobs", **FLAG)
    p.add_argument("--export", help="environment to propagate: ALL (default), NONE, NIL or ALL,A=a,B")
    p.add_argument("--get-user-env", help="load the user's login environment", **FLAG)
    p.add_argument("--wrap", help="submit this command string as the script")
    p.add_argument("--repeat", default="1", help="submit the job this many times (default 1)")
    p.add_argument("-H", "--hold", help="submit the job held", **FLAG)
    p.add_argument("--comment", help="comment")
    p.add_argument("--open-mode", help="append or truncate output files")
    p.add_argument("--interpreter", help="script interpreter (default: the shebang, else /bin/bash)")
    p.add_argument("-b", "--begin", help="defer the start until this time")
    p.add_argument("--extra-attr", help="extra attributes as JSON")
    p.add_argument("--mail-type", help="mail events: NONE,BEGIN,END,FAIL,TIMELIMIT,OOM,ALL")
    p.add_argument("--mail-user", help="mail recipient")
    rq = p.add_mutually_exclusive_group()
    rq.add_argument("--requeue", help="requeue the job when its node fails", **FLAG)
    rq.add_argument("--no-requeue", help="never requeue the job", **FLAG)
    add_common(p)
    return p


_NOT_OPTIONS = ("script", "wrap", "repeat", "config", "json")


def read_script(path: str) -> str:
    """Read and check a script file (missing, unreadable, empty or binary: exit code 2)."""
    from crane_cli.directives import check_script_bytes

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise arg_error(f"cannot read script {path}: is a directory") from None
    except OSError as exc:
        raise arg_error(f"cannot read script {path}: {exc.strerror or exc}") from None
    return check_script_bytes(data, path)


def prepare(argv: list[str], environ: dict[str, str] | None = None) -> tuple[object, dict[str, object], int]:
    """Parse ``argv`` and the script; return (args, JobSpec fields, repeat count). No network."""
    from crane_cli.jobspec import build_fields, merge_options

    args = build_parser().parse_args(argv)
    if args.wrap is not None and args.script is not None:
        raise arg_error("cbatch: a script file and --wrap are mutually exclusive")
    if args.wrap is None and args.script is None:
        raise arg_error("cbatch: a batch script or --wrap \"command\" is required")
    try:
        repeat = int(args.repeat)
    except ValueError:
        raise arg_error(f"invalid --repeat {args.repeat!r}: expected a positive integer") from None
    if repeat <= 0:
        raise arg_error(f"invalid --repeat {args.repeat!r}: must be greater than 0")
    directive_opts: dict[str, object] = {}
    interpreter = None
    if args.wrap is not None:
        if not args.wrap.strip():
            raise arg_error("cbatch: --wrap needs a command")
        script = f"#!/bin/bash\n{args.wrap}\n"
        default_name = "wrap"
    else:
        from crane_cli.directives import parse_script

        parsed = parse_script(read_script(args.script))
        for warning in parsed.warnings:
            sys.stderr.write(warning + "\n")
        directive_opts = parsed.options()
        script, interpreter = parsed.script, parsed.interpreter
        default_name = os.path.basename(args.script)
    cli_opts = {k: v for k, v in vars(args).items() if k not in _NOT_OPTIONS}
    opts = merge_options(directive_opts, cli_opts)
    try:
        cwd = os.getcwd()
    except OSError as exc:
        raise CliError(f"cbatch: cannot get the current directory: {exc.strerror or exc}", EXIT_SYSTEM) from None
    fields = build_fields(
        opts, script=script, default_name=default_name, interpreter=interpreter,
        environ=dict(os.environ if environ is None else environ), cwd=cwd, submit_host=os.uname().nodename,
        cmd_line=" ".join(["cbatch", *argv]),
    )
    return args, fields, repeat


def command(argv: list[str]) -> int:
    """cbatch's body: returns the exit code, raises CliError on failure."""
    args, fields, repeat = prepare(argv)
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    from crane_cli import rpc

    pb = rpc.pb
    job = pb.JobSpec(**fields)
    with rpc.Controller(conf) as ctld:
        if repeat > 1:
            reply = ctld.call("SubmitBatchJobs", pb.SubmitBatchJobsRequest(job=job, count=repeat))
            ids = list(reply.job_ids)
        else:
            reply = ctld.call("SubmitBatchJob", pb.SubmitBatchJobRequest(job=job))
            ids = [reply.job_id]
    if args.json:
        from crane_cli.protojson import to_json

        print(to_json(reply))
        return EXIT_OK if reply.ok else EXIT_BACKEND
    if not reply.ok:
        raise CliError(f"Job allocation failed: {reply.reason or 'unknown reason'}", EXIT_BACKEND)
    print(f"Job id allocated: {', '.join(str(i) for i in ids)}.")
    return EXIT_OK


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="cbatch")
