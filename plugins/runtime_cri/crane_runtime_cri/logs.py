"""CRI container log files (``<RFC3339Nano> <stdout|stderr> <F|P> <msg>``) to the job's output files.

:class:`LogPump` reads what was appended since the last call and writes each record's message to
the job's stdout or stderr file; ``F`` ends a line (a newline is added), ``P`` is a partial line
(output without a trailing newline, or a long line split by the runtime) and gets none.
"""

from __future__ import annotations

import os


class LogPump:
    """Follows one CRI log file; ``out``/``err`` are file descriptors (-1 = discard; ``err`` may equal ``out``)."""

    def __init__(self, path: str, out: int, err: int) -> None:
        self.path = path
        self.out = out
        self.err = err
        self.offset = 0
        self.rest = b""

    def pump(self) -> int:
        """Convert the complete records appended since the last call; the number of bytes read."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            os.lseek(fd, self.offset, os.SEEK_SET)
            chunks = []
            while True:
                data = os.read(fd, 1 << 20)
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        if not data:
            return 0
        self.offset += len(data)
        buf = self.rest + data
        lines = buf.split(b"\n")
        self.rest = lines.pop()  # an incomplete record (the runtime is still writing it)
        runs: list[tuple[int, list[bytes]]] = []  # consecutive records to the same file, in order
        for line in lines:
            parts = line.split(b" ", 3)
            if len(parts) < 3:
                continue
            msg = parts[3] if len(parts) == 4 else b""
            if parts[2] == b"F":
                msg += b"\n"
            fd = self.err if parts[1] == b"stderr" else self.out
            if runs and runs[-1][0] == fd:
                runs[-1][1].append(msg)
            else:
                runs.append((fd, [msg]))
        for fd, pieces in runs:
            self._write(fd, pieces)
        return len(data)

    @staticmethod
    def _write(fd: int, pieces: list[bytes]) -> None:
        if fd < 0 or not pieces:
            return
        data = memoryview(b"".join(pieces))
        while data:
            try:
                n = os.write(fd, data)
            except OSError:
                return  # a full disk or a closed file must not stop the job's supervision
            data = data[n:]
