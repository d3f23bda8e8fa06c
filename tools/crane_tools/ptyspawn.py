"""Run a command on a fresh pty for a test, without forking the test process.

``pexpect.spawn`` forks the calling process; when that process runs gRPC (a test's client or
scripted server), gRPC's fork handlers run in the child and can break it before it execs (seen
as "epoll_wait error: Bad file descriptor" and an empty EOF). :func:`spawn_on_pty` starts the
command with :mod:`subprocess` instead (no Python-level fork of the test), on the slave side of
a new pty that ``setsid --ctty`` makes its controlling terminal — so it is a terminal session like
any other (job control, SIGWINCH) — and returns a pexpect object on the master side.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
from typing import Any


class PtyChild:
    """The pexpect side of a command on a pty: ``expect``/``send`` as usual, plus the process."""

    def __init__(self, proc: subprocess.Popen, master: int, timeout: float, encoding: str | None) -> None:
        from pexpect import fdpexpect

        self.proc = proc
        self.master = master
        self.exp = fdpexpect.fdspawn(master, timeout=timeout, encoding=encoding)
        self.child_fd = master

    def __getattr__(self, name: str) -> Any:
        return getattr(self.exp, name)

    def sendcontrol(self, char: str) -> int:
        """Type Ctrl-``char`` (``sendcontrol("c")`` is Ctrl-C)."""
        return self.exp.send(chr(ord(char.lower()) & 0x1F))

    def setwinsize(self, rows: int, cols: int) -> None:
        """Resize the terminal (the kernel sends SIGWINCH to its foreground process group)."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    @property
    def exitstatus(self) -> int | None:
        """The command's exit status once it ended (waits up to 10 s)."""
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Kill the command if it still runs and close the terminal."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        try:
            os.close(self.master)
        except OSError:
            pass


def spawn_on_pty(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
                 dimensions: tuple[int, int] = (24, 80), timeout: float = 20,
                 encoding: str | None = None) -> PtyChild:
    """Start ``argv`` on a new pty of ``dimensions`` (rows, cols); return its :class:`PtyChild`."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", dimensions[0], dimensions[1], 0, 0))
    try:
        proc = subprocess.Popen(["setsid", "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave, env=env,
                                cwd=cwd, close_fds=True)
    finally:
        os.close(slave)
    return PtyChild(proc, master, timeout, encoding)
