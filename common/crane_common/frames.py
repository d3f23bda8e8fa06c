"""Length-prefixed frames on a stream socket: how crun and calloc talk to ``cfored`` (docs/interactive.md).

A frame is a 4-byte big-endian length and that many bytes (a serialized ``CrunRequest`` from
the client, a ``CrunReply`` from the forwarder). A frame longer than :data:`MAX_FRAME`, or a
connection that ends inside a frame, is a :class:`FrameError`. Standard library only: the
client's fast path imports nothing else.
"""

from __future__ import annotations

import socket
import struct

MAX_FRAME = 1 << 20
"""The longest frame either side accepts (a CrunRequest carries at most 64 KiB of stdin; a StepStart is bounded)."""

_HEADER = struct.Struct(">I")


class FrameError(ValueError):
    """A malformed frame (too long, or cut short)."""


def write_frame(sock: socket.socket, data: bytes) -> None:
    """Send one frame (raises OSError when the peer is gone)."""
    if len(data) > MAX_FRAME:
        raise FrameError(f"frame of {len(data)} bytes exceeds {MAX_FRAME}")
    sock.sendall(_HEADER.pack(len(data)) + data)


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 16))
        if not chunk:
            if got == 0:
                return None
            raise FrameError("the connection ended inside a frame")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> bytes | None:
    """The next frame's bytes, or None at a clean end of the connection; raises FrameError."""
    head = _read_exact(sock, _HEADER.size)
    if head is None:
        return None
    (size,) = _HEADER.unpack(head)
    if size > MAX_FRAME:
        raise FrameError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    if size == 0:
        return b""
    body = _read_exact(sock, size)
    if body is None:
        raise FrameError("the connection ended inside a frame")
    return body
