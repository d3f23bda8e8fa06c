"""crun's and calloc's flags, and the ``StepStart`` they send (pure: no grpc, no network).

The job and resource flags are cbatch's own (:func:`crane_cli.cbatch.shared_options`) and are
checked by :func:`crane_cli.jobspec.build_fields`, so ``crun -N 0`` fails as ``cbatch -N 0``
does. :func:`start_fields` returns the ``StepStart`` fields as a plain dict: ``job`` (JobSpec
fields) for a new job, or ``job_id`` and the step's own size inside an allocation
(``CRANE_JOB_ID`` set).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from crane_cli.cliparse import Argument, Command, Option, common_options
from crane_cli.errors import EXIT_SYSTEM, CliError, arg_error

DEFAULT_NAME = "Interactive"
# JobSpec fields a step of an allocation takes over (StepStart has a field of the same name)
STEP_FIELDS = ("node_num", "ntasks", "ntasks_per_node", "cpus_per_task", "mem_per_node", "nodelist", "exclude",
               "gres", "time_limit", "name", "env", "cwd")
# flags that mean nothing for a step of an existing job (its job has them): warned about, ignored
STEP_IGNORED = (("partition", "-p/--partition"), ("account", "-A/--account"), ("qos", "-q/--qos"),
                ("mem_per_cpu", "--mem-per-cpu"), ("exclusive", "--exclusive"), ("hold", "-H/--hold"),
                ("comment", "--comment"), ("get_user_env", "--get-user-env"))
_LOCAL = ("command", "input", "output", "error", "pty", "x11", "label", "quiet", "config", "json")


def _command(name: str, help_text: str, extra: list[Option], metavar: str) -> Command:
    from crane_cli.cbatch import shared_options

    return Command(name, help=help_text, context_settings={"allow_interspersed_args": False}, params=[
        Argument("command", nargs=-1, required=False, metavar=metavar, help="the command and its arguments"),
        *shared_options(), *extra,
        Option("-Q", "--quiet", flag=True, default=False, help="do not print informational messages"),
        *common_options(json_flag=False),
    ])


def crun_command() -> Command:
    """crun's flags (flags before the command; everything after it is the command's)."""
    return _command("crun", "Run a command as the tasks of a job step and stream its output.", [
        Option("-i", "--input", help="stdin to: 0 (default, task 0), all, none, a task id, or a local file"),
        Option("-o", "--output", help="stdout: all (default), none, a task id, or a local file pattern "
                                      "(%j %s %J %u %x %t %%)"),
        Option("-e", "--error", help="stderr: all (default), none, a task id, or a local file pattern"),
        Option("--pty", flag=True, default=False, help="give task 0 a terminal (needs one on stdin)"),
        Option("--x11", flag=True, default=False, help="X11 forwarding (not supported)"),
        Option("-l", "--label", flag=True, default=False, help="prefix every output line with its task id"),
    ], "COMMAND [ARGS...]")


def calloc_command() -> Command:
    """calloc's flags (an optional local command instead of ``$SHELL -i``)."""
    return _command("calloc", "Allocate resources and run a shell (or a command) with them.", [],
                    "[COMMAND [ARGS...]]")


def default_name(argv: list[str] | tuple[str, ...]) -> str:
    """The base name of the first non-empty argument, else ``Interactive``."""
    for arg in argv:
        if arg:
            return os.path.basename(arg.rstrip("/")) or DEFAULT_NAME
    return DEFAULT_NAME


def job_fields(args: object, argv: list[str], prog: str, environ: Mapping[str, str],
               name: str | None = None) -> dict[str, object]:
    """JobSpec fields from the parsed job flags (as cbatch builds them; exit 2 if a value is bad)."""
    from crane_cli.jobspec import build_fields

    opts = {k: v for k, v in vars(args).items() if k not in _LOCAL}
    try:
        cwd = os.getcwd()
    except OSError as exc:
        raise CliError(f"{prog}: cannot get the current directory: {exc.strerror or exc}", EXIT_SYSTEM) from None
    fields = build_fields(opts, script="", default_name=name or default_name(args.command), interpreter=None,
                          environ=environ, cwd=cwd, submit_host=os.uname().nodename,
                          cmd_line=" ".join([prog, *argv]))
    fields.pop("script", None)
    fields.pop("interpreter", None)
    return fields


def parse_job_id(text: str) -> int:
    """``$CRANE_JOB_ID`` as a job id (exit 2 if it is not one)."""
    if not text.strip().isdigit() or not 0 < int(text) <= 0xFFFFFFFF:
        raise arg_error(f"crun: invalid CRANE_JOB_ID {text!r}")
    return int(text)


def start_fields(args: object, argv: list[str], environ: Mapping[str, str]) -> dict[str, object]:
    """crun's ``StepStart`` fields (without the terminal ones) for parsed ``args``."""
    command = list(args.command)
    fields = job_fields(args, argv, "crun", environ)
    start: dict[str, object] = {"argv": command}
    job_id = environ.get("CRANE_JOB_ID", "").strip()
    if not job_id:
        start["job"] = fields
        return start
    start["job_id"] = parse_job_id(job_id)
    ignored = [flag for key, flag in STEP_IGNORED if getattr(args, key, None) not in (None, False)]
    if ignored:
        sys.stderr.write(f"crun: warning: {', '.join(ignored)} ignored for a step of job {job_id}\n")
    start.update({k: fields[k] for k in STEP_FIELDS if k in fields})
    return start
