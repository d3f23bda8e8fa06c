"""sbatch: submit a batch script through cbatch, answering as Slurm does.

``sbatch [options] [script [args...]]``: the options are translated to cbatch's
(:data:`OPTIONS`), then :func:`crane_cli.cbatch.prepare` reads the script (its ``#SBATCH``
lines too) and builds the job exactly as cbatch would. Without a script and without
``--wrap`` the script is read from standard input. Arguments after the script become its
``$1 ...`` (a ``set --`` line after the shebang; shell scripts only). The output file
defaults to Slurm's ``slurm-%j.out`` in the submission directory.

Prints ``Submitted batch job <id>`` (``--parsable``: ``<id>``; ``-Q``: nothing); a refused
submission is ``sbatch: error: Batch job submission failed: <reason>``, exit 1. ``-W/--wait``
waits for the job to end and exits with its exit code.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from crane_cli.errors import EXIT_OK, CliError

from crane_slurm.slurmopts import (
    IGNORE,
    LOCAL,
    NONE,
    OPTIONAL,
    REFUSE,
    Opt,
    OptionTable,
    Parsed,
    failure,
    node_count,
    reword,
    translate,
    usage,
)

PROG = "sbatch"
DEFAULT_OUTPUT = "slurm-%j.out"
ARRAY_OUTPUT = "slurm-%A_%a.out"
POSIX_SHELLS = frozenset({"sh", "bash", "dash", "ksh", "zsh", "ash", "mksh"})
_RESOURCES = "a resource request this cluster cannot place"

OPTIONS: tuple[Opt, ...] = (
    # passed to cbatch under the same name (values are checked by cbatch's own code)
    Opt("account", "A"), Opt("array", "a"), Opt("begin", "b"), Opt("chdir", "D"), Opt("comment"),
    Opt("cpus-per-task", "c"), Opt("deadline"), Opt("dependency", "d"), Opt("error", "e"), Opt("exclude", "x"),
    Opt("export"), Opt("get-user-env", arg=OPTIONAL, drop_value=True), Opt("gres"), Opt("gpus-per-node"),
    Opt("hold", "H", NONE), Opt("input", "i"), Opt("job-name", "J"), Opt("licenses", "L"), Opt("mail-type"),
    Opt("mail-user"), Opt("mem"), Opt("mem-per-cpu"), Opt("nodelist", "w"),
    Opt("nodes", "N", convert=node_count), Opt("ntasks", "n"),
    Opt("ntasks-per-node"), Opt("open-mode"), Opt("output", "o"), Opt("partition", "p"), Opt("qos", "q"),
    Opt("requeue", arg=NONE), Opt("no-requeue", arg=NONE), Opt("reservation"), Opt("signal"), Opt("time", "t"),
    Opt("wrap"), Opt("exclusive", arg=OPTIONAL, drop_value=True),
    # handled here
    Opt("parsable", arg=NONE, action=LOCAL), Opt("wait", "W", NONE, LOCAL), Opt("quiet", "Q", NONE, LOCAL),
    Opt("verbose", "v", NONE, LOCAL), Opt("help", "h", NONE, LOCAL), Opt("usage", arg=NONE, action=LOCAL),
    Opt("version", "V", NONE, LOCAL),
    # harmless here: one warning
    Opt("oversubscribe", "s", NONE, IGNORE, why="nodes are shared unless --exclusive"),
    Opt("no-kill", "k", OPTIONAL, IGNORE), Opt("propagate", arg=OPTIONAL, action=IGNORE),
    Opt("distribution", "m", action=IGNORE), Opt("hint", action=IGNORE), Opt("mem-bind", action=IGNORE),
    Opt("cpu-freq", action=IGNORE), Opt("threads-per-core", action=IGNORE), Opt("cores-per-socket", action=IGNORE),
    Opt("sockets-per-node", action=IGNORE), Opt("extra-node-info", "B", action=IGNORE),
    Opt("ntasks-per-core", action=IGNORE), Opt("ntasks-per-socket", action=IGNORE), Opt("profile", action=IGNORE),
    Opt("acctg-freq", action=IGNORE), Opt("ignore-pbs", arg=NONE, action=IGNORE),
    Opt("contiguous", arg=NONE, action=IGNORE), Opt("nice", arg=OPTIONAL, action=IGNORE),
    Opt("wait-all-nodes", action=IGNORE), Opt("spread-job", arg=NONE, action=IGNORE),
    Opt("use-min-nodes", arg=NONE, action=IGNORE), Opt("network", action=IGNORE), Opt("power", action=IGNORE),
    Opt("mcs-label", action=IGNORE), Opt("wckey", action=IGNORE), Opt("reboot", arg=NONE, action=IGNORE),
    Opt("switches", action=IGNORE), Opt("delay-boot", action=REFUSE), Opt("core-spec", "S", action=IGNORE),
    Opt("thread-spec", action=IGNORE), Opt("gpu-bind", action=IGNORE), Opt("gpu-freq", action=IGNORE),
    Opt("tmp", action=IGNORE, why="nodes report no temporary disk"), Opt("prefer", action=IGNORE),
    # cannot be honoured: an error naming it (exit 2)
    Opt("constraint", "C", action=REFUSE, why="nodes have no features"),
    Opt("cluster-constraint", action=REFUSE), Opt("clusters", "M", action=REFUSE, why="one cluster"),
    Opt("kill-on-invalid-dep", action=REFUSE), Opt("priority", action=REFUSE), Opt("uid", action=REFUSE),
    Opt("gid", action=REFUSE), Opt("mincpus", action=REFUSE, why=_RESOURCES),
    Opt("gpus", "G", action=REFUSE, why="use --gpus-per-node"), Opt("gpus-per-task", action=REFUSE, why=_RESOURCES),
    Opt("gpus-per-socket", action=REFUSE, why=_RESOURCES), Opt("cpus-per-gpu", action=REFUSE, why=_RESOURCES),
    Opt("mem-per-gpu", action=REFUSE, why=_RESOURCES), Opt("tres-per-task", action=REFUSE, why=_RESOURCES),
    Opt("time-min", action=REFUSE), Opt("test-only", arg=NONE, action=REFUSE),
    Opt("overcommit", "O", NONE, REFUSE), Opt("batch", action=REFUSE), Opt("bb", action=REFUSE),
    Opt("bbf", action=REFUSE), Opt("container", action=REFUSE, why="use --pod"), Opt("container-id", action=REFUSE),
    Opt("nodefile", "F", action=REFUSE), Opt("export-file", action=REFUSE), Opt("het-job", action=REFUSE),
)

TABLE = OptionTable(PROG, OPTIONS)

USAGE = """Usage: sbatch [OPTIONS(0)...] [ : [OPTIONS(N)...]] script(0) [args(0)...]
(cranesched's Slurm wrapper: options are translated to cbatch's; see docs/slurm-wrappers.md)
"""


# Slurm's input environment variables: defaults for these options (the command line overrides them,
# and they override #SBATCH lines, as in Slurm: they reach cbatch as command-line flags before the real ones)
ENV_OPTIONS = {
    "SBATCH_ACCOUNT": "account", "SBATCH_PARTITION": "partition", "SBATCH_QOS": "qos",
    "SBATCH_TIMELIMIT": "time", "SBATCH_JOB_NAME": "job-name", "SBATCH_EXPORT": "export", "SBATCH_GRES": "gres",
    "SBATCH_GPUS_PER_NODE": "gpus-per-node", "SBATCH_MEM_PER_NODE": "mem", "SBATCH_MEM_PER_CPU": "mem-per-cpu",
    "SBATCH_EXCLUSIVE": "exclusive", "SBATCH_REQUEUE": "requeue", "SBATCH_NO_REQUEUE": "no-requeue",
    "SBATCH_OPEN_MODE": "open-mode", "SBATCH_RESERVATION": "reservation", "SBATCH_SIGNAL": "signal",
    "SBATCH_DEBUG": "verbose",
}


def parse(argv: list[str], environ: dict[str, str] | None = None) -> Parsed:
    """Parse sbatch's command line (options stop at the script), after the ``SBATCH_*`` defaults."""
    parsed = TABLE.parse(argv, stop_at_positional=True)
    env = os.environ if environ is None else environ
    defaults = []
    for var, long in ENV_OPTIONS.items():
        value = env.get(var)
        if value is not None and value != "":
            opt = TABLE.by_long[long]
            defaults.append((opt, None if opt.arg == NONE else value))
    parsed.options[:0] = defaults
    return parsed


def cbatch_argv(ours: list[str], script_path: str | None) -> list[str]:
    """cbatch's command line: our flags (:func:`~crane_slurm.slurmopts.translate`'s) and the script."""
    args = list(ours)
    if script_path is not None:
        args += ["--", script_path] if script_path.startswith("-") else [script_path]
    return args


def with_arguments(script: str, interpreter: str, arguments: list[str]) -> str:
    """``script`` with ``set -- args`` after its shebang: the script's ``$1 ...`` (POSIX shells only)."""
    if not arguments:
        return script
    if os.path.basename(interpreter.split()[0] if interpreter.split() else "") not in POSIX_SHELLS:
        raise usage(PROG, f"script arguments need a shell script (the interpreter here is {interpreter})")
    import shlex

    line = "set -- " + " ".join(shlex.quote(a) for a in arguments) + "\n"
    head, sep, rest = script.partition("\n")
    if head.startswith("#!"):
        return head + sep + line + rest
    return line + script


def job_fields(parsed: Parsed, argv: list[str], read_stdin: Callable[[], str | None] = lambda: None
               ) -> dict[str, object]:
    """The ``JobSpec`` fields for sbatch's command line, built by cbatch's code (no network).

    ``read_stdin()`` gives the script when none is named and there is no ``--wrap`` (None: no script).
    """
    from crane_cli import cbatch

    script_path = parsed.positional[0] if parsed.positional else None
    arguments = parsed.positional[1:]
    if script_path == ":":
        raise usage(PROG, "heterogeneous jobs (':') are not supported by this cluster")
    if parsed.given("wrap") and script_path is not None:
        raise usage(PROG, "script arguments not permitted with --wrap option")
    ours = translate(PROG, parsed)  # refusals before anything is read
    tmpdir = None
    if script_path is None and not parsed.given("wrap"):
        stdin_text = read_stdin()
        if stdin_text is None:
            raise usage(PROG, "no batch script given (name one, use --wrap, or pipe it on standard input)")
        if not stdin_text.strip():
            raise usage(PROG, "Batch script is empty!")
        import tempfile

        tmpdir = tempfile.mkdtemp(prefix="sbatch-")
        script_path = os.path.join(tmpdir, "sbatch")  # Slurm names a job read from stdin "sbatch"
        with open(script_path, "w") as fh:
            fh.write(stdin_text)
    try:
        _args, fields, _repeat = cbatch.prepare(cbatch_argv(ours, script_path))
    except CliError as exc:
        raise reword(PROG, exc, ("cbatch",)) from None
    finally:
        if tmpdir is not None:
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)
    fields["script"] = with_arguments(str(fields["script"]), str(fields["interpreter"]), arguments)
    fields["cmd_line"] = " ".join(["sbatch", *argv])
    if "output" not in fields:
        fields["output"] = ARRAY_OUTPUT if parsed.given("array") else DEFAULT_OUTPUT
    return fields


def submit(fields: dict[str, object]) -> int:
    """Submit the job; its id (a refusal or a broken connection: exit 1)."""
    from crane_cli import clientconf
    from crane_cli.cbatch import refusal_text

    try:
        conf = clientconf.load(None)
        from crane_cli import rpc

        with rpc.Controller(conf) as ctld:
            reply = ctld.call("SubmitBatchJob", rpc.pb.SubmitBatchJobRequest(job=rpc.pb.JobSpec(**fields)))
    except CliError as exc:
        raise failure(PROG, f"Batch job submission failed: {exc.message}") from None
    if not reply.ok:
        raise failure(PROG, f"Batch job submission failed: {refusal_text(reply)}")
    return int(reply.job_id)


def wait_for(job_id: int, poll: float = 0.2, max_poll: float = 2.0) -> int:
    """``--wait``: poll until the job has ended; the exit status its script ended with."""
    from crane_cli import clientconf, rpc

    from crane_slurm.slurmfmt import shell_exit

    final = {2, 3, 4, 5, 6, 11}
    conf = clientconf.load(None)
    with rpc.Controller(conf) as ctld:
        while True:
            try:
                reply = ctld.call("QueryJobsInfo", rpc.pb.QueryJobsInfoRequest(
                    job_ids=[job_id], include_finished=True, include_history=True))
            except CliError as exc:
                raise failure(PROG, exc.message) from None
            job = next((j for j in reply.jobs if j.job_id == job_id), None)
            if job is not None and int(job.status) in final:
                return shell_exit(int(job.exit_code))
            time.sleep(poll)
            poll = min(max_poll, poll * 1.5)


def read_stdin() -> str | None:
    """The script piped on standard input; None when it is a terminal (or closed)."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    try:
        return sys.stdin.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise usage(PROG, f"cannot read the script from standard input: {exc}") from None


def command(argv: list[str]) -> int:
    """sbatch's body: the exit code (raises CliError on failure)."""
    parsed = parse(argv)
    if parsed.given("help") or parsed.given("usage"):
        sys.stdout.write(USAGE)
        return EXIT_OK
    if parsed.given("version"):
        from crane_slurm import __version__

        print(f"slurm-wrapper {__version__} (cranesched)")
        return EXIT_OK
    fields = job_fields(parsed, argv, read_stdin)
    job_id = submit(fields)
    if not parsed.given("quiet"):
        print(str(job_id) if parsed.given("parsable") else f"Submitted batch job {job_id}", flush=True)
    if parsed.given("wait"):
        return wait_for(job_id)
    return EXIT_OK
