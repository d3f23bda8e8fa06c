"""crun: run a command as the tasks of a job step and stream its output (``crun [flags] command [args...]``).

Outside an allocation it creates a job (``StepStart.job``); with ``CRANE_JOB_ID`` set (in a
batch script, in calloc's shell) it starts a step of that job. Messages go to stderr
(``-Q`` hides the informational ones), task output to stdout/stderr as it arrives. Exit code:
the tasks' (``StepEnded.crun_exit``); 2 bad flags, 3 the controller unreachable or the stream
broken, 4 refused. See docs/interactive.md and docs/cli.md.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import NoReturn

from crane_cli import fastimport

fastimport.install(fastimport.PROTOBUF_BAGGAGE)  # before anything imports protobuf (the forwarded path has no grpc)

from crane_cli.cliparse import parse, run  # noqa: E402
from crane_cli.errors import EXIT_ARGS, EXIT_BACKEND, EXIT_GENERIC, CliError, arg_error  # noqa: E402

DOUBLE_INTERRUPT = 1.0  # a second SIGINT within this many seconds cancels the step


def prepare(argv: list[str], environ: dict[str, str] | None = None) -> tuple[object, dict[str, object]]:
    """Parse ``argv``; return (args, StepStart fields). No network, no terminal changes."""
    from crane_cli import crunio, stepspec

    args = parse(stepspec.crun_command(), argv)
    if args.x11:
        raise arg_error("crun: error: --x11 is not supported")
    if not args.command:
        raise arg_error("crun: error: a command to run is required")
    args.input = crunio.check_spec("-i/--input", args.input, "0")
    args.output = crunio.check_spec("-o/--output", args.output)
    args.error_given = args.error is not None
    args.error = crunio.check_spec("-e/--error", args.error)
    env = dict(os.environ if environ is None else environ)
    start = stepspec.start_fields(args, argv, env)
    target, _path = crunio.stdin_target(args.input)
    start["stdin_target"] = target
    if args.pty:
        start["pty"] = True
    return args, start


class Client:
    """One crun run: the stream, the output routing, the signal handling, the terminal."""

    def __init__(self, args: object, start: dict[str, object], conf: object, terminal: object | None) -> None:
        from crane_common.proto import crane_pb2 as pb

        from crane_cli import crunio
        from crane_cli.interactive import open_stream

        self.args = args
        self.new_job = "job" in start
        job = start.get("job") or {}
        name = str(job.get("name") if self.new_job else start.get("name") or "")
        if self.new_job:
            start["job"] = pb.JobSpec(**job)
        self.stream = open_stream(conf, pb.StepStart(**start))
        self.output = crunio.Output(args.output, args.error, bool(args.label) and not args.pty, _user(), name,
                                    err_given=args.error_given)
        self.terminal = terminal
        self.last_interrupt = 0.0
        self.cancelled = False
        self.job_id = int(start.get("job_id") or 0)
        self.step_id = 0

    # -- messages --------------------------------------------------------------------------------
    def info(self, text: str) -> None:
        """An informational line on stderr (not with ``-Q``)."""
        if not self.args.quiet:
            self.err(text)

    @staticmethod
    def err(text: str) -> None:
        """A line on stderr, ``\\r\\n``-safe in raw mode."""
        try:
            os.write(2, (text + "\n").encode())
        except OSError:
            pass

    # -- signals -----------------------------------------------------------------------------------
    def on_interrupt(self, _sig: int, _frame: object) -> None:
        """First SIGINT: forward it; a second within a second: cancel; after the cancel: leave."""
        now = time.monotonic()
        if self.cancelled:
            raise KeyboardInterrupt
        if self.terminal is not None and self.terminal.raw:
            self.stream.send(signal=int(signal.SIGINT))
            return
        if now - self.last_interrupt <= DOUBLE_INTERRUPT:
            self.cancel()
            return
        self.last_interrupt = now
        self.stream.send(signal=int(signal.SIGINT))
        self.err("crun: interrupt (one more within 1 sec to abort)")

    def cancel(self, *_ignored: object) -> None:
        """End the step now (the stream's ``cancel``)."""
        if not self.cancelled:
            self.cancelled = True
            self.stream.send(cancel=True)

    def on_winch(self, *_ignored: object) -> None:
        """The window changed: tell the remote terminal."""
        if self.terminal is not None:
            rows, cols = self.terminal.size()
            self.stream.send(winsize={"rows": rows, "cols": cols})

    def install_signals(self) -> None:
        """crun's handlers: SIGINT forwarded/cancel, SIGTERM/SIGHUP cancel, SIGWINCH (``--pty``)."""
        signal.signal(signal.SIGINT, self.on_interrupt)
        signal.signal(signal.SIGTERM, self.cancel)
        signal.signal(signal.SIGHUP, self.cancel)
        if self.terminal is not None:
            signal.signal(signal.SIGWINCH, self.on_winch)

    # -- the stream --------------------------------------------------------------------------------
    def start_stdin(self) -> None:
        """Start forwarding stdin (``-i none``: nothing; ``-i FILE``: the file)."""
        from crane_cli import crunio

        if self.args.input == "none":
            return
        _target, path = crunio.stdin_target(self.args.input)
        crunio.start_stdin(self.stream, crunio.open_input(path))

    def run(self) -> int:
        """Open the stream, relay until ``ended``/``error``; return the exit code."""
        self.install_signals()
        if not self.args.pty:
            self.start_stdin()
        self.stream.open()
        try:
            return self._relay()
        finally:
            if self.terminal is not None:
                self.terminal.restore()
            self.output.close()
            self.stream.close()

    def _relay(self) -> int:
        for reply in self.stream.replies():
            kind = reply.WhichOneof("msg")
            if kind == "output":
                self.output.write(reply.output.task, reply.output.fd, reply.output.data)
                if self.output.broken_pipe and not self.cancelled:
                    self.cancel()
            elif kind == "pending":
                self.on_pending(reply.pending)
            elif kind == "allocated":
                self.on_allocated(reply.allocated)
            elif kind == "ended":
                return self.on_ended(reply.ended)
            elif kind == "error":
                what = "job" if self.new_job else "step"
                from crane_cli.cbatch import refusal_text

                if self.terminal is not None:
                    self.terminal.restore()
                raise CliError(f"Failed to allocate {what} id: {refusal_text(reply.error)}", EXIT_BACKEND)
        raise AssertionError("unreachable")  # replies() ends with ended/error or raises

    def on_pending(self, msg: object) -> None:
        """The job or step exists and waits for resources."""
        self.job_id, self.step_id = msg.job_id, msg.step_id  # type: ignore[attr-defined]
        self.output.set_ids(self.job_id, self.step_id)
        if self.new_job:
            self.info(f"Job id allocated: {self.job_id}, waiting resources.")
        elif msg.reason:  # type: ignore[attr-defined]  # a step only says so when it really waits (batch output stays clean)
            self.info(f"Job {self.job_id} step {self.step_id} allocated, waiting resources.")

    def on_allocated(self, msg: object) -> None:
        """Resources allocated: say where; with ``--pty`` the terminal goes raw and stdin starts."""
        self.job_id = msg.job_id or self.job_id  # type: ignore[attr-defined]
        self.step_id = msg.step_id if msg.job_id else self.step_id  # type: ignore[attr-defined]
        self.output.set_ids(self.job_id, self.step_id)
        if self.new_job:  # a step in an allocation runs where its job does: nothing to tell
            self.info(f"Allocated craned nodes: {msg.craned_list}")  # type: ignore[attr-defined]
        if self.terminal is not None and not self.terminal.raw:
            self.terminal.make_raw()
            self.on_winch()
            self.start_stdin()

    def on_ended(self, msg: object) -> int:
        """The last message: the exit code (and why, when the step did not complete)."""
        from crane_cli.interactive import status_name

        if self.terminal is not None:
            self.terminal.restore()
        code = int(msg.crun_exit)  # type: ignore[attr-defined]
        completed = msg.status == 2  # type: ignore[attr-defined]
        if self.output.broken_pipe:
            return 128 + int(signal.SIGPIPE)
        if not completed:
            job = msg.job_id or self.job_id  # type: ignore[attr-defined]
            step = msg.step_id if msg.job_id else self.step_id  # type: ignore[attr-defined]
            if msg.reason:  # type: ignore[attr-defined]
                self.err(f"crun: error: step {job}.{step} {status_name(msg.status)}: {msg.reason}")  # type: ignore
            if code == 0:
                code = EXIT_GENERIC
        return code if code <= 255 else EXIT_GENERIC


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def command(argv: list[str]) -> int:
    """crun's body: returns the exit code, raises CliError on failure."""
    args, start = prepare(argv)
    terminal = None
    if args.pty:
        from crane_cli.ptyclient import open_terminal

        terminal = open_terminal(0)
        if terminal is None:
            raise CliError("crun: error: --pty needs a terminal on stdin", EXIT_ARGS)
        rows, cols = terminal.size()
        start.update(rows=rows, cols=cols, term=terminal.term())
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    client = Client(args, start, conf, terminal)
    try:
        return client.run()
    except KeyboardInterrupt:
        client.stream.cancel_call()
        return 130
    finally:
        if terminal is not None:
            terminal.restore()


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="crun")


if __name__ == "__main__":
    sys.exit(main())
