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

from crane_cli.cliparse import Argument, Command, Option, common_options, parse, run
from crane_cli.errors import EXIT_BACKEND, EXIT_OK, EXIT_SYSTEM, CliError, arg_error

# Options upstream cbatch has that this cluster cannot honour: an error on the command line
# and in scripts alike (hidden from --help). (spellings, is a flag, #SBATCH spellings)
UNSUPPORTED = (
    (("-a", "--array"), False, ("-a", "--array")), (("-L", "--licenses"), False, ()),
    (("-r", "--reservation"), False, ("-r",)), (("--wckey",), False, ()),
)


def build_command() -> Command:
    """cbatch's flags: the command line and ``#CBATCH``/``#SBATCH`` directives (values are kept as strings).

    ``script=`` gives the spellings a ``#CBATCH`` line accepts (``-Q`` for the QoS, no ``-D``:
    upstream's), ``sbatch=`` those upstream whitelists after ``#SBATCH``; values are checked
    in :mod:`crane_cli.jobspec`.
    """
    return Command("cbatch", help="Submit a batch job to CraneSched.", params=[
        Argument("script", required=False, help="batch script to submit"),
        Option("-N", "--nodes", help="number of nodes", sbatch=("-N",)),
        Option("-c", "--cpus-per-task", help="CPUs per task (default 1)", sbatch=("-c",)),
        Option("-n", "--ntasks", help="number of tasks", sbatch=("-n",)),
        Option("--ntasks-per-node", help="tasks per node", sbatch=True),
        Option("-t", "--time", help="time limit, [D-]HH:MM:SS", sbatch=("-t",)),
        Option("--mem", group="mem", help="memory per node (default unit MB; K, M, G, B suffixes)", sbatch=True),
        Option("--mem-per-cpu", group="mem", help="memory per CPU (default unit MB)"),
        Option("--gres", help="generic resources per node, e.g. gpu:a100:2", sbatch=True),
        Option("--gpus-per-node", help="GPUs per node, [type:]n[,type:n]"),
        Option("-p", "--partition", help="partition", sbatch=("-p",)),
        Option("-J", "--job-name", help="job name", sbatch=("-J",)),
        Option("-A", "--account", help="account", sbatch=("-A",)),
        Option("-q", "--qos", help="quality of service", script=("-Q", "--qos"), sbatch=("--qos",)),
        Option("-D", "--chdir", help="working directory of the job", script=("--chdir",), sbatch=True),
        Option("-o", "--output", help="stdout file pattern (%j job id)", sbatch=("-o",)),
        Option("-e", "--error", help="stderr file pattern (%j job id)", sbatch=("-e",)),
        Option("-i", "--input", help="stdin file", sbatch=("-i",)),
        Option("-w", "--nodelist", help="nodes to run on (host list)", sbatch=True),
        Option("-x", "--exclude", help="nodes to avoid (host list)", sbatch=("--exclude",)),
        Option("--exclusive", flag=True, help="do not share nodes with other jobs", sbatch=True),
        Option("--export", help="environment to propagate: ALL (default), NONE, NIL or ALL,A=a,B", sbatch=True),
        Option("--get-user-env", flag=True, help="load the user's login environment", sbatch=True),
        Option("--wrap", help="submit this command string as the script", script=(), sbatch=("--wrap",)),
        Option("--repeat", default="1", help="submit the job this many times (default 1)", script=()),
        Option("--parsable", flag=True, help="print only the job id (several: comma-separated), as sbatch --parsable",
               script=()),
        Option("-H", "--hold", flag=True, help="submit the job held", script=()),
        Option("--comment", help="comment", sbatch=True),
        Option("--open-mode", help="append or truncate output files", sbatch=True),
        Option("--interpreter", help="script interpreter (default: the shebang, else /bin/bash)"),
        Option("-b", "--begin", help="defer the start until this time", sbatch=True),
        Option("-d", "--dependency", help="start after other jobs: afterok:ID[:ID],afterany:ID (all) or "
                                          "afterok:ID?afternotok:ID (any); also after, afternotok", sbatch=True),
        Option("--extra-attr", help="extra attributes as JSON"),
        Option("--mail-type", help="mail on: BEGIN,END,FAIL,REQUEUE,TIME_LIMIT,ALL,NONE", sbatch=True),
        Option("--mail-user", help="mail recipient (default: you)", sbatch=True),
        Option("--requeue", flag=True, group="requeue", help="requeue the job when its node fails"),
        Option("--no-requeue", flag=True, group="requeue", help="never requeue the job"),
        Option("-s", "--signal", metavar="[{R|B}:]SIG[@SECONDS]",
               help="send SIG this many seconds (default 60) before the time limit; B: to the batch shell only",
               sbatch=True),
        Option("--deadline", help="end the job (state Deadline) if it cannot finish by this time",
               script=(), sbatch=("--deadline",)),
        *pod_options(),
        *(Option(*names, flag=is_flag, unsupported=True, sbatch=sbatch) for names, is_flag, sbatch in UNSUPPORTED),
        *common_options(),
    ])


def pod_options() -> list[Option]:
    """``--pod IMAGE`` and the ``--pod-*`` flags (command line, ``#CBATCH`` and ``#SBATCH``): ``JobSpec.container``."""
    return [
        Option("--pod", metavar="IMAGE", help="run the job in a container of this image", sbatch=True),
        Option("--pod-name", help="container (pod) name (default job-<id>); needs --pod", sbatch=True),
        Option("--pod-port", help="published ports, HOST:CONTAINER or PORT, comma-separated; needs --pod",
               sbatch=True),
        Option("--pod-user", metavar="UID[:GID]", help="user inside the container (default: yours); needs --pod",
               sbatch=True),
        Option("--pod-userns", flag=True, help="run in a user namespace; needs --pod", sbatch=True),
        Option("--pod-host-network", flag=True, help="use the node's network; needs --pod", sbatch=True),
        Option("--pod-dns", help="DNS servers, comma-separated IP addresses; needs --pod", sbatch=True),
    ]


# The job and resource flags crun and calloc take from cbatch (parameter names; see shared_options).
SHARED_JOB_FLAGS = ("nodes", "cpus_per_task", "ntasks", "ntasks_per_node", "time", "mem", "mem_per_cpu", "gres",
                    "gpus_per_node", "partition", "job_name", "account", "qos", "chdir", "nodelist", "exclude",
                    "exclusive", "export", "get_user_env", "hold", "comment")


def shared_options() -> list[Option]:
    """cbatch's job and resource flags that crun and calloc accept too (the same objects, the same checks)."""
    return [p for p in build_command().params if isinstance(p, Option) and p.name in SHARED_JOB_FLAGS]


_NOT_OPTIONS = ("script", "wrap", "repeat", "config", "json", "parsable")


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

    args = parse(build_command(), argv)
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


ERR_GENERIC_FAILURE = 40


def refusal_text(reply: object) -> str:
    """Why a submission was refused: the reply's ``ErrCode`` message (when it has a ``code``) and its reason."""
    code = int(getattr(reply, "code", 0) or 0)  # the field is newer than some controllers
    reason = getattr(reply, "reason", "") or ""
    if code and code != ERR_GENERIC_FAILURE:  # the generic code adds nothing to the reason
        from crane_cli.errcodes import with_reason

        return with_reason(code, reason)
    return reason or "unknown reason"


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
        from crane_cli.protojson import dumps, to_dict

        data = to_dict(reply)
        # upstream's reply holds the job id and the error code in one oneof: only one of them is printed
        for key in (("code",) if reply.ok else ("job_id", "job_ids")):
            data.pop(key, None)
        print(dumps(data))
        return EXIT_OK if reply.ok else EXIT_BACKEND
    if not reply.ok:
        raise CliError(f"Job allocation failed: {refusal_text(reply)}", EXIT_BACKEND)
    if args.parsable:
        print(",".join(str(i) for i in ids))
        return EXIT_OK
    print(f"Job id allocated: {', '.join(str(i) for i in ids)}.")
    return EXIT_OK


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="cbatch")
