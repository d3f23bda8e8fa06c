"""Reading Standard Workload Format (SWF) traces, plain or gzip-compressed.

SWF (Parallel Workloads Archive, cs.huji.ac.il/labs/parallel/workload/swf.html)
has one job per line, 18 whitespace-separated fields, ``-1`` for unknown, and
header lines starting with ``;`` (``; MaxProcs: 100``). Only the fields the
simulator uses are converted; they are kept as integers (a field written as a
decimal, e.g. ``552.21``, is truncated).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["SwfRecord", "SwfTrace", "read_swf", "parse_swf"]


class SwfRecord(NamedTuple):
    """The SWF fields the simulator uses (1-based SWF field number in brackets)."""

    job: int  # [1] job number
    submit: int  # [2] submit time, seconds
    wait: int  # [3] wait time in the recorded schedule
    run: int  # [4] run time
    alloc: int  # [5] allocated processors
    req_procs: int  # [8] requested processors
    req_time: int  # [9] requested time (the user's estimate)
    user: int  # [12] user id
    group: int  # [13] group id


class SwfTrace(NamedTuple):
    """A parsed trace: header fields (``{"MaxProcs": "100", ...}``) and job records in file order."""

    header: dict[str, str]
    records: list[SwfRecord]

    @property
    def max_procs(self) -> int | None:
        """``MaxProcs`` from the header (falling back to ``MaxNodes``), or ``None`` when absent."""
        for key in ("MaxProcs", "MaxNodes"):
            value = self.header.get(key, "").split()
            if value:
                try:
                    n = int(value[0])
                except ValueError:
                    continue
                if n > 0:
                    return n
        return None


_COMMENT = (b";", ";")


def _num(text: bytes | str) -> int:
    try:
        return int(text)
    except ValueError:
        return int(float(text))


def parse_swf(lines: Iterable[bytes | str]) -> SwfTrace:
    """Parse SWF lines (``bytes`` or ``str``): header comments and job records; blank and short lines are ignored."""
    header: dict[str, str] = {}
    records: list[SwfRecord] = []
    append = records.append
    new = tuple.__new__
    rec = SwfRecord
    for line in lines:
        f = line.split()
        if not f:
            continue
        if f[0][:1] in _COMMENT:
            body = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            key, sep, value = body.lstrip()[1:].partition(":")
            key = key.strip()
            if sep and key and " " not in key:
                header.setdefault(key, value.strip())
            continue
        if len(f) < 13:
            if len(f) < 9:
                continue
            f = f + ["-1"] * (13 - len(f))
        try:
            append(new(rec, (int(f[0]), int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[7]), int(f[8]),
                             int(f[11]), int(f[12]))))
        except ValueError:
            append(new(rec, (_num(f[0]), _num(f[1]), _num(f[2]), _num(f[3]), _num(f[4]), _num(f[7]), _num(f[8]),
                             _num(f[11]), _num(f[12]))))
    return SwfTrace(header, records)


def read_swf(path: str, max_jobs: int | None = None) -> SwfTrace:
    """Read an SWF file; gzip-compressed files (recognised by their magic bytes) are decompressed.

    ``max_jobs`` keeps only the first that many job records (in file order).
    """
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        data = zlib.decompress(data, 47)  # 32 + 15: gzip or zlib header, auto-detected
    lines: list[bytes] = data.split(b"\n")
    if max_jobs is not None and max_jobs >= 0:
        count = 0
        for k, line in enumerate(lines):
            f = line.split(None, 9)
            if len(f) >= 9 and f[0][:1] != b";":
                if count >= max_jobs:
                    lines = lines[:k]
                    break
                count += 1
    return parse_swf(lines)
