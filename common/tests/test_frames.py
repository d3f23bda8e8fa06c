"""Length-prefixed frames (crane_common.frames) over a real socket pair."""

from __future__ import annotations

import socket
import struct

import pytest
from crane_common.frames import MAX_FRAME, FrameError, read_frame, write_frame


def test_frames_round_trip_in_order_and_end_cleanly():
    a, b = socket.socketpair()
    for data in (b"one", b"", b"x" * 200_000):
        write_frame(a, data)
    a.close()
    assert [read_frame(b), read_frame(b), read_frame(b), read_frame(b)] == [b"one", b"", b"x" * 200_000, None]


def test_an_oversized_or_cut_frame_is_refused():
    a, b = socket.socketpair()
    with pytest.raises(FrameError):
        write_frame(a, b"x" * (MAX_FRAME + 1))
    a.sendall(struct.pack(">I", MAX_FRAME + 1))
    with pytest.raises(FrameError):
        read_frame(b)
    c, d = socket.socketpair()
    c.sendall(struct.pack(">I", 10) + b"abc")
    c.close()
    with pytest.raises(FrameError):
        read_frame(d)
