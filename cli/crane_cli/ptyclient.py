"""crun ``--pty``: the local terminal (size, ``TERM``, raw mode for the step's duration).

:class:`Terminal` saves the terminal's mode and restores it on :meth:`restore`, which crun
calls on every way out (normal end, error, signal); restoring twice is harmless.
"""

from __future__ import annotations

import os


class Terminal:
    """The terminal on ``fd`` (crun's stdin)."""

    def __init__(self, fd: int = 0) -> None:
        import termios

        self.fd = fd
        self._termios = termios
        self.saved = termios.tcgetattr(fd)
        self.raw = False

    def size(self) -> tuple[int, int]:
        """(rows, cols); (0, 0) when unknown."""
        try:
            cols, rows = os.get_terminal_size(self.fd)
        except OSError:
            return 0, 0
        return rows, cols

    @staticmethod
    def term() -> str:
        """``$TERM`` of the client (``xterm`` when unset)."""
        return os.environ.get("TERM") or "xterm"

    def make_raw(self) -> None:
        """Raw mode: every byte (Ctrl-C, Ctrl-D...) goes to the remote terminal as it is typed."""
        import tty

        tty.setraw(self.fd, self._termios.TCSANOW)
        self.raw = True

    def restore(self) -> None:
        """Put the saved mode back (after pending output has been written)."""
        if not self.raw:
            return
        try:
            self._termios.tcsetattr(self.fd, self._termios.TCSADRAIN, self.saved)
        except (OSError, self._termios.error):
            pass
        self.raw = False


def open_terminal(fd: int = 0) -> Terminal | None:
    """The terminal on ``fd``, or None when ``fd`` is not one."""
    if not os.isatty(fd):
        return None
    try:
        return Terminal(fd)
    except Exception:  # noqa: BLE001 - termios.error: not a usable terminal
        return None
