"""srun and salloc: Slurm's flags translated to crun's and calloc's, then crun or calloc itself runs.

``srun [options] command [args...]`` runs :func:`crane_cli.crun.command` (a new job, or a step
when inside an allocation: ``CRANE_JOB_ID`` is set in our jobs and calloc's shell), ``salloc
[options] [command [args...]]`` runs :func:`crane_cli.calloc.command`. Options stop at the
command. srun is quiet unless ``-v`` (crun's informational lines on stderr are not Slurm's), salloc
shows calloc's. The exit code is crun's and calloc's: the command's, or theirs (2 bad usage, 3 the
controller unreachable, 4 refused).
"""

from __future__ import annotations

from crane_cli.errors import CliError

from crane_slurm.slurmopts import (
    IGNORE,
    LOCAL,
    NONE,
    OPTIONAL,
    REFUSE,
    Opt,
    OptionTable,
    node_count,
    reword,
    translate,
    usage,
)

_RESOURCES = "a resource request this cluster cannot place"

# the job and resource options both share with sbatch (cbatch's shared flags: crane_cli.cbatch.SHARED_JOB_FLAGS)
_SHARED = (
    Opt("account", "A"), Opt("chdir", "D"), Opt("comment"), Opt("cpus-per-task", "c"), Opt("exclude", "x"),
    Opt("export"), Opt("get-user-env", arg=OPTIONAL, drop_value=True), Opt("gres"), Opt("gpus-per-node"),
    Opt("hold", "H", NONE), Opt("job-name", "J"), Opt("mem"), Opt("mem-per-cpu"), Opt("nodelist", "w"),
    Opt("nodes", "N", convert=node_count), Opt("ntasks", "n"), Opt("ntasks-per-node"), Opt("partition", "p"),
    Opt("qos", "q"),
    Opt("time", "t"), Opt("exclusive", arg=OPTIONAL, drop_value=True), Opt("quiet", "Q", NONE),
    # harmless: one warning
    Opt("verbose", "v", NONE, LOCAL), Opt("distribution", "m", action=IGNORE), Opt("hint", action=IGNORE),
    Opt("mem-bind", action=IGNORE), Opt("cpu-bind", action=IGNORE), Opt("cpu-freq", action=IGNORE),
    Opt("threads-per-core", action=IGNORE), Opt("cores-per-socket", action=IGNORE),
    Opt("sockets-per-node", action=IGNORE), Opt("extra-node-info", "B", action=IGNORE),
    Opt("ntasks-per-core", action=IGNORE), Opt("ntasks-per-socket", action=IGNORE), Opt("profile", action=IGNORE),
    Opt("acctg-freq", action=IGNORE), Opt("contiguous", arg=NONE, action=IGNORE), Opt("nice", arg=OPTIONAL,
                                                                                     action=IGNORE),
    Opt("oversubscribe", "s", NONE, IGNORE, why="nodes are shared unless --exclusive"),
    Opt("no-kill", "k", OPTIONAL, IGNORE), Opt("network", action=IGNORE), Opt("wckey", action=IGNORE),
    Opt("mail-type", action=IGNORE), Opt("mail-user", action=IGNORE), Opt("gpu-bind", action=IGNORE),
    Opt("propagate", arg=OPTIONAL, action=IGNORE), Opt("mcs-label", action=IGNORE), Opt("reboot", arg=NONE,
                                                                                       action=IGNORE),
    Opt("tmp", action=IGNORE, why="nodes report no temporary disk"),
    # cannot be honoured
    Opt("constraint", "C", action=REFUSE, why="nodes have no features"), Opt("clusters", "M", action=REFUSE),
    Opt("begin", "b", action=REFUSE), Opt("dependency", "d", action=REFUSE), Opt("deadline", action=REFUSE),
    Opt("licenses", "L", action=REFUSE), Opt("reservation", action=REFUSE), Opt("signal", action=REFUSE),
    Opt("immediate", "I", OPTIONAL, REFUSE), Opt("mincpus", action=REFUSE, why=_RESOURCES),
    Opt("gpus", "G", action=REFUSE, why="use --gpus-per-node"), Opt("gpus-per-task", action=REFUSE, why=_RESOURCES),
    Opt("cpus-per-gpu", action=REFUSE, why=_RESOURCES), Opt("mem-per-gpu", action=REFUSE, why=_RESOURCES),
    Opt("overcommit", "O", NONE, REFUSE), Opt("priority", action=REFUSE), Opt("uid", action=REFUSE),
    Opt("gid", action=REFUSE), Opt("time-min", action=REFUSE), Opt("container", action=REFUSE),
    Opt("bb", action=REFUSE), Opt("bbf", action=REFUSE), Opt("x11", arg=OPTIONAL, action=REFUSE),
    Opt("jobid", action=REFUSE, why="inside an allocation srun uses it by itself"),
)

SRUN_OPTIONS = (
    *_SHARED,
    Opt("input", "i"), Opt("output", "o"), Opt("error", "e"), Opt("pty", arg=NONE), Opt("label", "l", NONE),
    Opt("unbuffered", "u", NONE, IGNORE, why="output is always relayed as it arrives"),
    Opt("kill-on-bad-exit", "K", OPTIONAL, IGNORE), Opt("mpi", action=IGNORE), Opt("overlap", arg=NONE,
                                                                                   action=IGNORE),
    Opt("wait", "W", action=IGNORE), Opt("exact", arg=NONE, action=IGNORE), Opt("whole", arg=NONE, action=IGNORE),
    Opt("task-prolog", action=REFUSE), Opt("task-epilog", action=REFUSE),
    Opt("prolog", action=REFUSE), Opt("epilog", action=REFUSE), Opt("multi-prog", arg=NONE, action=REFUSE),
    Opt("relative", "r", action=REFUSE), Opt("open-mode", action=IGNORE), Opt("export-file", action=REFUSE),
    Opt("disable-status", "X", NONE, IGNORE),
)

SALLOC_OPTIONS = (
    *_SHARED,
    Opt("no-shell", arg=NONE, action=REFUSE, why="calloc always runs a shell or the command"),
    Opt("bell", arg=NONE, action=IGNORE), Opt("no-bell", arg=NONE, action=IGNORE),
    Opt("wait-all-nodes", action=IGNORE),
)

TABLES = {"srun": OptionTable("srun", SRUN_OPTIONS), "salloc": OptionTable("salloc", SALLOC_OPTIONS)}
OURS = {"srun": "crun", "salloc": "calloc"}


def translated(prog: str, argv: list[str]) -> list[str]:
    """crun's (srun) or calloc's (salloc) command line for Slurm's (refuses or warns about the rest)."""
    parsed = TABLES[prog].parse(argv, stop_at_positional=True)
    out = translate(prog, parsed)
    if prog == "srun" and not parsed.positional:
        raise usage(prog, "No command given to execute.")
    if prog == "srun" and not parsed.given("verbose") and "--quiet" not in out:
        out.append("--quiet")  # Slurm's srun prints only the tasks' output (crun's notes with -v)
    return [*out, *(["--"] if parsed.positional else []), *parsed.positional]


def command(prog: str, argv: list[str]) -> int:
    """Run srun or salloc: crun's or calloc's own code does the work."""
    ours = translated(prog, argv)
    if prog == "srun":
        from crane_cli import crun as impl
    else:
        from crane_cli import calloc as impl
    try:
        return impl.command(ours)
    except CliError as exc:
        raise _reworded(prog, exc) from None


def _reworded(prog: str, exc: CliError) -> CliError:
    """crun's and calloc's own exit codes are kept: scripts see the command's or theirs."""
    out = reword(prog, exc, (OURS[prog],))
    out.code = exc.code
    return out
