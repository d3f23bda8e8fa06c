"""Waiting for the task's main process and turning its wait status into a raw Crane exit code."""

from __future__ import annotations

import os
import select
import time

from crane_common.states import SIGNAL_BASE


def raw_exit_code(status: int) -> int:
    """Wait status -> raw exit code: 0-255 exit status, 256+N when killed by signal N."""
    if os.WIFSIGNALED(status):
        return SIGNAL_BASE + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return SIGNAL_BASE + os.WSTOPSIG(status) if os.WIFSTOPPED(status) else 255


def try_reap(pid: int) -> int | None:
    """Reap ``pid`` if it has ended (non-blocking); its raw exit code or None while it runs.

    Raises ChildProcessError when ``pid`` is not (or no longer) our child.
    """
    got, status = os.waitpid(pid, os.WNOHANG)
    return None if got == 0 else raw_exit_code(status)


def wait_exit(pid: int, timeout: float | None) -> int | None:
    """Wait up to ``timeout`` seconds (None = forever, 0 = just check) for child ``pid`` and reap it.

    Uses a pidfd and poll(2) (interrupted calls are resumed by Python with the
    remaining timeout, PEP 475), falling back to polling waitpid on kernels
    without pidfd_open. Returns the raw exit code, or None if it is still running.
    Raises ChildProcessError when ``pid`` is not our child (someone else reaped it).
    """
    code = try_reap(pid)
    if code is not None or timeout == 0:
        return code
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return try_reap(pid)
    except (AttributeError, OSError):
        return _poll_waitpid(pid, timeout)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if poller.poll(None if remaining is None else int(remaining * 1000) + 1):
                break
            if deadline is not None and time.monotonic() >= deadline:
                return try_reap(pid)
    finally:
        os.close(pidfd)
    return _reap_blocking(pid)


def _reap_blocking(pid: int) -> int:
    """Reap a child known to have ended."""
    _, status = os.waitpid(pid, 0)
    return raw_exit_code(status)


def _poll_waitpid(pid: int, timeout: float | None) -> int | None:
    """Fallback without pidfd: check with WNOHANG every few milliseconds until ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while True:
        code = try_reap(pid)
        if code is not None:
            return code
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.1)
