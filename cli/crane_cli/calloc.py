"""calloc: allocate resources and run a shell with them (``calloc [job flags] [command...]``).

Sends ``StepStart(job=..., allocate_only=True)``; once allocated it runs ``$SHELL -i`` (or the
given command) on this host with the allocation's ``CRANE_*`` variables, so ``crun`` inside it
starts steps of the job. calloc ignores SIGINT/SIGQUIT while the shell runs (the shell gets
them), keeps the stream alive, and when the shell exits sends ``complete`` with its raw status
and exits with the shell's status. If the job ends first (cancelled, time limit) it prints
``calloc: error: job <id> <Status>: <reason>``, hangs up the shell and exits 1.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from typing import NoReturn

from crane_cli import fastimport

fastimport.install(fastimport.PROTOBUF_BAGGAGE)  # before anything imports protobuf (the forwarded path has no grpc)

from crane_cli.cliparse import parse, run  # noqa: E402
from crane_cli.errors import EXIT_BACKEND, EXIT_GENERIC, EXIT_NETWORK, CliError  # noqa: E402

END_WAIT = 30.0  # seconds to wait for ``ended`` after ``complete``


def prepare(argv: list[str], environ: dict[str, str] | None = None) -> tuple[object, dict[str, object]]:
    """Parse ``argv``; return (args, StepStart fields). No network."""
    from crane_cli import stepspec

    args = parse(stepspec.calloc_command(), argv)
    env = dict(os.environ if environ is None else environ)
    job = stepspec.job_fields(args, argv, "calloc", env, name=stepspec.DEFAULT_NAME)
    return args, {"job": job, "allocate_only": True, "argv": list(args.command)}


def _info(args: object, text: str) -> None:
    if not args.quiet:  # type: ignore[attr-defined]
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def shell_argv(args: object, environ: dict[str, str]) -> list[str]:
    """The command to run: the arguments, else ``$SHELL -i`` (``/bin/sh -i`` without ``$SHELL``)."""
    if args.command:  # type: ignore[attr-defined]
        return list(args.command)  # type: ignore[attr-defined]
    return [environ.get("SHELL") or "/bin/sh", "-i"]


def _describe_end(reply: object, job_id: int) -> str:
    kind = reply.WhichOneof("msg")  # type: ignore[attr-defined]
    if kind == "ended":
        from crane_cli.interactive import status_name

        e = reply.ended  # type: ignore[attr-defined]
        return f"calloc: error: job {e.job_id or job_id} {status_name(e.status)}: {e.reason or 'ended'}"
    from crane_cli.cbatch import refusal_text

    return f"calloc: error: job {job_id}: {refusal_text(reply.error)}"  # type: ignore[attr-defined]


def command(argv: list[str]) -> int:
    """calloc's body: returns the exit code, raises CliError on failure."""
    args, start = prepare(argv)
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    from crane_common.proto import crane_pb2 as pb

    from crane_cli.interactive import open_stream

    start["job"] = pb.JobSpec(**start["job"])  # type: ignore[arg-type]
    stream = open_stream(conf, pb.StepStart(**start))
    cancel = lambda *_a: stream.send(cancel=True)  # noqa: E731 - a signal handler
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, cancel)
    stream.open()
    replies = stream.replies()
    job_id = 0
    allocated = None
    for reply in replies:
        kind = reply.WhichOneof("msg")
        if kind == "pending":
            job_id = reply.pending.job_id
            _info(args, f"Job id allocated: {job_id}, waiting resources.")
        elif kind == "allocated":
            allocated = reply.allocated
            job_id = allocated.job_id or job_id
            _info(args, f"Allocated craned nodes: {allocated.craned_list}.")
            break
        elif kind == "error":
            from crane_cli.cbatch import refusal_text

            raise CliError(f"Failed to allocate job id: {refusal_text(reply.error)}", EXIT_BACKEND)
        elif kind == "ended":
            sys.stderr.write(_describe_end(reply, job_id) + "\n")
            return EXIT_GENERIC
    if allocated is None:
        return EXIT_GENERIC
    return _run_shell(args, stream, replies, allocated, job_id)


def _run_shell(args: object, stream: object, replies: object, allocated: object, job_id: int) -> int:
    import subprocess

    from crane_cli.interactive import exit_status

    env = dict(os.environ)
    env.update(dict(allocated.env))  # type: ignore[attr-defined]
    env.setdefault("CRANE_JOB_ID", str(job_id))
    events: queue.Queue = queue.Queue()

    def read_stream() -> None:
        try:
            for reply in replies:  # type: ignore[attr-defined]
                if reply.WhichOneof("msg") in ("ended", "error"):
                    events.put(("stream", reply))
                    return
        except CliError as exc:
            events.put(("broken", exc))

    # handlers (not SIG_IGN) so that the shell starts with the default dispositions
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, lambda *_a: None)
    try:
        proc = subprocess.Popen(shell_argv(args, env), env=env)
    except OSError as exc:
        stream.send(complete=127)  # type: ignore[attr-defined]
        stream.close()  # type: ignore[attr-defined]
        raise CliError(f"calloc: error: cannot run {shell_argv(args, env)[0]}: {exc.strerror or exc}",
                       EXIT_GENERIC) from None
    hangup = lambda *_a: proc.send_signal(signal.SIGHUP)  # noqa: E731 - a signal handler
    signal.signal(signal.SIGTERM, hangup)
    signal.signal(signal.SIGHUP, hangup)
    threading.Thread(target=read_stream, name="calloc-stream", daemon=True).start()
    threading.Thread(target=lambda: events.put(("shell", proc.wait())), name="calloc-shell", daemon=True).start()
    kind, value = events.get()
    if kind != "shell":
        sys.stderr.write((_describe_end(value, job_id) if kind == "stream" else str(value)) + "\n")
        try:
            proc.send_signal(signal.SIGHUP)
        except OSError:
            pass
        stream.close()  # type: ignore[attr-defined]
        return EXIT_GENERIC
    raw, status = exit_status(int(value))
    stream.send(complete=raw)  # type: ignore[attr-defined]
    try:
        kind, value = events.get(timeout=END_WAIT)
    except queue.Empty:
        kind = "timeout"
    stream.close()  # type: ignore[attr-defined]
    if kind == "broken":
        sys.stderr.write(f"{value}\n")
        return EXIT_NETWORK if status == 0 else status
    return status


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="calloc")
