"""The I/O streams of a task step (crun): key names and the entries on them.

A task step's output travels from each node's step supervisor to the controller, and its
stdin, signals and window changes the other way, on two Redis streams per (node, step):

``crane:{cluster}:io:{node}:{job}.{step}`` (node -> controller)
    written by that node's supervisor of the step (the node's ACL user may write only keys
    under ``crane:{cluster}:io:{node}:``), read and trimmed by the controller's relay;
``crane:{cluster}:ioin:{node}:{job}.{step}`` (controller -> node)
    written by the controller's relay, read by the supervisor (the node may only read it).

User processes never see either: ``crun`` talks to the controller over its authenticated gRPC
stream (``CrunStream``), and the controller relays.

**Entries** are flat field maps (binary-safe: data is raw bytes, never JSON or base64); ``k``
names the kind. Node -> controller:

=====  ==========================================  ========================================
``k``  fields                                      meaning
=====  ==========================================  ========================================
``o``  ``t`` task id, ``f`` 1|2, ``d`` bytes        output of a task (``d`` at most
                                                   :data:`MAX_CHUNK` bytes)
``x``  ``t`` task id, ``c`` raw exit code           a task ended
``e``  ``c`` raw exit code, ``r`` reason            this node's part of the step ended: every
                                                   task's output is on the stream before it
=====  ==========================================  ========================================

Controller -> node:

=====  ==========================================  ========================================
``i``  ``t`` task id or ``*``, ``d`` bytes          stdin data for one task or all
``z``  ``t`` task id or ``*``                       stdin end of file
``s``  ``n`` signal number                          signal every task of the step here
``w``  ``r`` rows, ``c`` cols                       the client's window size (the pty task)
=====  ==========================================  ========================================

**Flow control.** A writer keeps the stream it writes at most :data:`WINDOW` entries long: the
supervisor checks ``XLEN`` before it adds output and waits while the stream is full, and the
relay deletes entries once it has handed them to the client (``XDEL``). A slow client therefore
slows the tasks (their pipe fills, their ``write`` blocks); nothing is dropped, and neither Redis
nor the controller holds more than ``WINDOW * MAX_CHUNK`` bytes per node and step.
The relay does the same for stdin: it stops reading the client while the ``ioin`` stream is full.

Every entry read is checked here (:func:`parse_out`, :func:`parse_in`): an entry of an unknown
kind or with fields out of range raises :class:`IoEntryError`; readers log and skip it.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_CHUNK = 64 * 1024
"""Largest data field of one entry (bytes)."""
WINDOW = 64
"""Most entries a writer lets an I/O stream hold before it waits for the reader."""
ALL_TASKS = -1
"""Target task id meaning every task of the step (``*`` on the stream)."""


class IoEntryError(ValueError):
    """An I/O stream entry that is malformed (unknown kind, missing or out-of-range field)."""


def out_key(cluster: str, node: str, job_id: int, step_id: int) -> str:
    """The stream a node's supervisor of ``job.step`` writes output, task exits and its end to."""
    return f"crane:{cluster}:io:{node}:{job_id}.{step_id}"


def in_key(cluster: str, node: str, job_id: int, step_id: int) -> str:
    """The stream the relay writes stdin, signals and window sizes of ``job.step`` on ``node`` to."""
    return f"crane:{cluster}:ioin:{node}:{job_id}.{step_id}"


def out_prefix(cluster: str, node: str) -> str:
    """Key prefix of every output stream of ``node`` (its ACL pattern is this plus ``*``)."""
    return f"crane:{cluster}:io:{node}:"


def in_prefix(cluster: str, node: str) -> str:
    """Key prefix of every input stream of ``node``."""
    return f"crane:{cluster}:ioin:{node}:"


# --- node -> controller -------------------------------------------------------------------


def output_entry(task: int, fd: int, data: bytes) -> dict[bytes, bytes]:
    """An output entry: ``data`` (at most MAX_CHUNK bytes) that task ``task`` wrote to ``fd`` (1 or 2)."""
    return {b"k": b"o", b"t": b"%d" % task, b"f": b"%d" % fd, b"d": data}


def exit_entry(task: int, code: int) -> dict[bytes, bytes]:
    """A task-exit entry: task ``task`` ended with raw exit code ``code``."""
    return {b"k": b"x", b"t": b"%d" % task, b"c": b"%d" % code}


def end_entry(code: int, reason: str = "") -> dict[bytes, bytes]:
    """The last entry a node's supervisor writes for a step: its part ended with raw ``code``."""
    return {b"k": b"e", b"c": b"%d" % code, b"r": reason.encode("utf-8", "replace")[:1000]}


@dataclass(frozen=True)
class OutEntry:
    """A parsed node -> controller entry: ``kind`` ``o``/``x``/``e`` and the fields that apply."""

    kind: str
    task: int = 0
    fd: int = 1
    data: bytes = b""
    code: int = 0
    reason: str = ""


def _int(fields: dict, key: bytes, lo: int, hi: int) -> int:
    raw = fields.get(key)
    if raw is None:
        raise IoEntryError(f"missing field {key.decode()}")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise IoEntryError(f"field {key.decode()} is not a number") from None
    if not lo <= value <= hi:
        raise IoEntryError(f"field {key.decode()}={value} out of range")
    return value


def parse_out(fields: dict[bytes, bytes]) -> OutEntry:
    """Check and parse an entry of an ``io`` stream; raise IoEntryError when it is malformed."""
    kind = fields.get(b"k")
    if kind == b"o":
        data = fields.get(b"d", b"")
        if len(data) > MAX_CHUNK:
            raise IoEntryError(f"output chunk of {len(data)} bytes exceeds {MAX_CHUNK}")
        return OutEntry("o", task=_int(fields, b"t", 0, 1 << 20), fd=_int(fields, b"f", 1, 2), data=data)
    if kind == b"x":
        return OutEntry("x", task=_int(fields, b"t", 0, 1 << 20), code=_int(fields, b"c", 0, 1023))
    if kind == b"e":
        reason = fields.get(b"r", b"")[:1000].decode("utf-8", "replace")
        return OutEntry("e", code=_int(fields, b"c", 0, 1023), reason=reason)
    raise IoEntryError(f"unknown output entry kind {kind!r}")


# --- controller -> node -------------------------------------------------------------------


def _target(task: int) -> bytes:
    return b"*" if task == ALL_TASKS else b"%d" % task


def stdin_entry(task: int, data: bytes) -> dict[bytes, bytes]:
    """Stdin ``data`` for task ``task`` (or ALL_TASKS)."""
    return {b"k": b"i", b"t": _target(task), b"d": data}


def eof_entry(task: int) -> dict[bytes, bytes]:
    """Stdin end of file for task ``task`` (or ALL_TASKS)."""
    return {b"k": b"z", b"t": _target(task)}


def signal_entry(signum: int) -> dict[bytes, bytes]:
    """Deliver ``signum`` to every task of the step on the node."""
    return {b"k": b"s", b"n": b"%d" % signum}


def winsize_entry(rows: int, cols: int) -> dict[bytes, bytes]:
    """The client's terminal is now ``rows`` x ``cols``."""
    return {b"k": b"w", b"r": b"%d" % rows, b"c": b"%d" % cols}


@dataclass(frozen=True)
class InEntry:
    """A parsed controller -> node entry: ``kind`` ``i``/``z``/``s``/``w`` and the fields that apply."""

    kind: str
    task: int = 0          # ALL_TASKS for ``*``
    data: bytes = b""
    signum: int = 0
    rows: int = 0
    cols: int = 0


def _task_of(fields: dict[bytes, bytes]) -> int:
    if fields.get(b"t") == b"*":
        return ALL_TASKS
    return _int(fields, b"t", 0, 1 << 20)


def parse_in(fields: dict[bytes, bytes]) -> InEntry:
    """Check and parse an entry of an ``ioin`` stream; raise IoEntryError when it is malformed."""
    kind = fields.get(b"k")
    if kind == b"i":
        data = fields.get(b"d", b"")
        if len(data) > MAX_CHUNK:
            raise IoEntryError(f"stdin chunk of {len(data)} bytes exceeds {MAX_CHUNK}")
        return InEntry("i", task=_task_of(fields), data=data)
    if kind == b"z":
        return InEntry("z", task=_task_of(fields))
    if kind == b"s":
        return InEntry("s", signum=_int(fields, b"n", 1, 64))
    if kind == b"w":
        return InEntry("w", rows=_int(fields, b"r", 0, 10000), cols=_int(fields, b"c", 0, 10000))
    raise IoEntryError(f"unknown input entry kind {kind!r}")


def crun_exit_code(raw: int) -> int:
    """What crun exits with for a task's raw exit code: its status, 128+N when killed by signal N."""
    if raw < 256:
        return raw
    if raw < 320:
        return 128 + (raw - 256)
    return 1  # a Crane code (the step could not run as asked): crun says why and exits 1


def worst_exit(codes: list[int]) -> int:
    """The raw exit code that stands for several tasks': the one whose crun exit code is largest (0 if none)."""
    best, best_rank = 0, -1
    for code in codes:
        rank = crun_exit_code(code)
        if code >= 320:
            rank = 1 << 16  # a Crane code (the step failed) outranks any task status
        if rank > best_rank:
            best, best_rank = code, rank
    return best
