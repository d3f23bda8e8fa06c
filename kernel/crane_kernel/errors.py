"""Exceptions shared by the kernel and plugins. Each carries a one-line, user-facing message."""

from __future__ import annotations


class CraneError(Exception):
    """Base class: a condition reported to the user as one line, never a traceback."""


class ConfigError(CraneError):
    """The configuration is missing or invalid; the message names file, key and reason."""


class PluginError(CraneError):
    """A configured plugin is missing or failed to load; the message lists what is installed."""


class JobRejected(CraneError):  # noqa: N818 - the name says what happened to the job
    """A job submission is refused (by validation or a job_submit filter)."""


class AccountRejected(JobRejected):
    """A request the account database refuses; ``code`` is CraneSched's ErrCode number (``crane.proto``)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class StepLaunchError(CraneError):
    """A runtime could not start a step; ``exit_code`` is the raw Crane exit code to report."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BusMessageError(CraneError):
    """A bus message could not be decoded or validated."""
