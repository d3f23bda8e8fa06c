"""Exit codes of the CLI commands and the exception that carries one.

The codes follow upstream CraneSched's front end: 0 success, 1 generic error,
2 bad arguments or configuration, 3 gRPC/network failure, 4 the controller
replied not-ok, 5 invalid ``--format`` (or JSON output failure), 6 OS errors.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GENERIC = 1
EXIT_ARGS = 2
EXIT_NETWORK = 3
EXIT_BACKEND = 4
EXIT_FORMAT = 5
EXIT_SYSTEM = 6


class CliError(Exception):
    """A failure to report as one line on stderr, ending the command with ``code``."""

    def __init__(self, message: str, code: int = EXIT_GENERIC) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


def arg_error(message: str) -> CliError:
    """A bad flag or argument (exit code 2)."""
    return CliError(message, EXIT_ARGS)
