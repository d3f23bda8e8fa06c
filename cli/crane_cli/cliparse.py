"""Argument parsing and the process wrapper shared by the commands.

:class:`Parser` is an :class:`argparse.ArgumentParser` whose errors are one line
on stderr with exit code 2. :func:`run` calls a command's ``main(argv)`` and turns
every outcome into an exit code: :class:`~crane_cli.errors.CliError` is printed as
one line, unexpected exceptions too (with the traceback only when
``$CRANE_DEBUG`` is set); never a raw traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from crane_cli import __version__
from crane_cli.errors import EXIT_ARGS, EXIT_GENERIC, CliError

_parsing = False


class Parser(argparse.ArgumentParser):
    """ArgumentParser with one-line errors (exit code 2) and no abbreviations of long options.

    While the parser is being built, ``add_argument`` asks for a help formatter to
    check each option; a default formatter imports :mod:`shutil` (and with it bz2
    and lzma, ~5 ms) to measure the terminal. Until parsing starts, formatters get
    a fixed width instead; help text is still laid out for the real terminal.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _get_formatter(self) -> argparse.HelpFormatter:
        if _parsing:
            return super()._get_formatter()
        return self.formatter_class(prog=self.prog, width=78)

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 - argparse's signature
        """Parse as usual (help output from here on uses the terminal width)."""
        global _parsing
        _parsing = True
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        """Raise a :class:`CliError` (exit code 2) instead of printing usage."""
        raise CliError(f"{self.prog}: {message}", EXIT_ARGS)


def add_common(parser: argparse.ArgumentParser, json_flag: bool = True) -> None:
    """Add ``-C/--config``, ``-v/--version`` and (optionally) ``--json``."""
    parser.add_argument("-C", "--config", metavar="PATH",
                        help="cluster config file (default: $CRANE_CONFIG or /etc/crane/config.yaml)")
    parser.add_argument("-v", "--version", action="version", version=f"%(prog)s (crane-cli) {__version__}")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print the controller's reply as JSON")


def split_list(values: list[str] | None) -> list[str]:
    """Flatten repeated comma-separated option values: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    out: list[str] = []
    for v in values or ():
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


_fast_exit = True


def disable_fast_exit() -> None:
    """Make :func:`run` end with a normal interpreter exit (atexit handlers, thread joins).

    For code run on behalf of other modules (``crane demo`` ...) that may rely on them.
    """
    global _fast_exit
    _fast_exit = False


def _finish(code: int) -> NoReturn:
    """Flush the standard streams and leave without the interpreter's (and grpc's) teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
    if not _fast_exit:
        sys.exit(code)
    os._exit(code)


def run(main: Callable[[list[str]], int], argv: list[str] | None = None, prog: str | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit with its code; see the module docs for error handling.

    The process ends with :func:`os._exit` after flushing stdout and stderr: a
    command has nothing left to clean up, and skipping the interpreter's teardown
    (module and grpc core shutdown) saves a few milliseconds per call (see
    :func:`disable_fast_exit`).
    """
    prog = prog or os.path.basename(sys.argv[0])
    args = sys.argv[1:] if argv is None else argv
    try:
        code = main(args)
    except CliError as exc:
        _print_err(exc.message)
        code = exc.code
    except SystemExit as exc:  # argparse --help/--version
        if isinstance(exc.code, str):
            _print_err(exc.code)
            code = EXIT_GENERIC
        else:
            code = exc.code or 0
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = EXIT_GENERIC
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if os.environ.get("CRANE_DEBUG"):
            import traceback

            traceback.print_exc()
        _print_err(f"{prog}: internal error: {type(exc).__name__}: {exc}")
        code = EXIT_GENERIC
    _finish(int(code or 0))


def _print_err(message: str) -> None:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError, OSError):
        pass
    try:
        sys.stderr.write(message.rstrip("\n") + "\n")
    except (BrokenPipeError, ValueError, OSError):
        pass
