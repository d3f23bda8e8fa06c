"""Commands to a node are signed by the controller; a node accepts only fresh, correctly signed ones.

A command entry on ``crane:{c}:node:{name}`` carries, next to the message ``m``:

* ``q`` — its sequence, ``"{epoch}.{counter}"``: ``epoch`` is fixed per controller start (larger
  than every earlier one: kept in the controller's journal and at least the start time in ms),
  ``counter`` counts the commands of that start. Sequences of one node's stream only grow;
* ``s`` — ``HMAC-SHA256(command_key(node), stream "\\n" q "\\n" m)``, hex.

:class:`CommandSigner` (controller) adds them; :class:`CommandVerifier` (node) refuses an entry
that is unsigned, badly signed, signed for another stream, or not newer than the last command it
accepted — a replay. The last accepted sequence is kept in a root-only file across ``craned``
restarts (written after the batch was applied, so a crash re-applies at worst: handlers are
idempotent). :class:`ReportOrigin` (controller) accepts on ``crane:{c}:report:{name}`` only
messages about node ``name``.

A consumer calls a check's ``check(stream, fields, msg)`` for every decoded entry (a string
return is the reason to refuse it: logged and dead-lettered), ``commit()`` after the batch was
handled and acked, and ``abort()`` when the handler failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol

from crane_kernel.messages import BusMessage

__all__ = ["SEQ_FIELD", "SIG_FIELD", "CommandSigner", "CommandVerifier", "EntryCheck", "ReportOrigin", "sign"]

logger = logging.getLogger("crane_kernel.bus")

SIG_FIELD = b"s"
SEQ_FIELD = b"q"


class EntryCheck(Protocol):
    """What a :class:`~crane_kernel.bus.Consumer` asks about each entry before its handler sees it."""

    def check(self, stream: str, fields: dict[bytes, bytes], msg: BusMessage) -> str | None:
        """None to accept the entry, else the one-line reason it is refused."""

    def commit(self) -> None:
        """The entries accepted since the last commit/abort were handled and acked."""

    def abort(self) -> None:
        """The handler failed: the accepted entries will be read again."""


def sign(key: bytes, stream: str, seq: bytes, payload: bytes) -> bytes:
    """The hex HMAC-SHA256 of a command entry."""
    return hmac.new(key, stream.encode() + b"\n" + seq + b"\n" + payload, hashlib.sha256).hexdigest().encode()


def _parse_seq(raw: bytes) -> tuple[int, int]:
    """``b"epoch.counter"`` -> (epoch, counter); ValueError if malformed."""
    epoch, _, counter = raw.decode("ascii").partition(".")
    if not epoch.isdigit() or not counter.isdigit() or len(raw) > 40:
        raise ValueError("malformed sequence")
    return int(epoch), int(counter)


class CommandSigner:
    """Signs commands to node streams (``{prefix}:node:{name}``) with per-node keys; thread-safe.

    Args:
        prefix: ``crane:{cluster}``.
        key_for: node name -> its command key (e.g. :func:`crane_kernel.bus.credentials.command_key`).
        epoch: this controller start's epoch (see the module doc).

    :meth:`lock` must be held from :meth:`fields` until the entry is in Redis, so that entries
    reach each stream in sequence order.
    """

    def __init__(self, prefix: str, key_for: Callable[[str], bytes], epoch: int) -> None:
        self.node_prefix = f"{prefix}:node:"
        self.key_for = key_for
        self.epoch = int(epoch)
        self.counter = 0
        self.lock = threading.Lock()
        self._keys: dict[str, bytes] = {}

    def signs(self, stream: str) -> bool:
        """True for a node's command stream (its dead-letter stream excluded)."""
        return stream.startswith(self.node_prefix) and ":" not in stream[len(self.node_prefix):]

    def fields(self, stream: str, payload: bytes) -> dict[bytes, bytes]:
        """The entry fields for ``payload`` on ``stream``: ``m``, and ``q``/``s`` for a node's stream."""
        from crane_kernel.bus.client import FIELD

        if not self.signs(stream):
            return {FIELD: payload}
        node = stream[len(self.node_prefix):]
        key = self._keys.get(node)
        if key is None:
            key = self._keys[node] = self.key_for(node)
        self.counter += 1
        seq = b"%d.%d" % (self.epoch, self.counter)
        return {FIELD: payload, SEQ_FIELD: seq, SIG_FIELD: sign(key, stream, seq, payload)}


class CommandVerifier:
    """A node's check of the commands on its stream: signature, stream, and sequence (no replays).

    Args:
        stream: the node's command stream.
        key: the node's command key.
        state_file: where the last accepted sequence survives restarts (root-only, 0600).
    """

    def __init__(self, stream: str, key: bytes, state_file: str) -> None:
        self.stream = stream
        self.key = key
        self.state_file = state_file
        self.committed = self._load()
        self.high = self.committed
        self.refused = 0
        """Entries refused so far."""

    def _load(self) -> tuple[int, int]:
        try:
            with open(self.state_file) as fh:
                data = json.load(fh)
            return int(data["epoch"]), int(data["counter"])
        except FileNotFoundError:
            return (0, 0)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error("bus: command sequence file %s unreadable (%s); starting from 0", self.state_file, exc)
            return (0, 0)

    def check(self, stream: str, fields: dict[bytes, bytes], msg: BusMessage) -> str | None:
        """None for a correctly signed command newer than every accepted one, else why it is refused."""
        reason = self._why_refused(stream, fields)
        if reason is not None:
            self.refused += 1
            logger.warning("bus: refused command %s %s on %s: %s", msg.kind, msg.id, stream, reason)
        return reason

    def _why_refused(self, stream: str, fields: dict[bytes, bytes]) -> str | None:
        from crane_kernel.bus.client import FIELD

        sig, raw_seq = fields.get(SIG_FIELD), fields.get(SEQ_FIELD)
        if stream != self.stream:
            return "not this node's stream"
        if sig is None or raw_seq is None:
            return "unsigned command"
        expected = sign(self.key, stream, raw_seq, fields.get(FIELD, b""))
        if not hmac.compare_digest(expected, sig):
            return "bad signature"
        try:
            seq = _parse_seq(raw_seq)
        except (ValueError, UnicodeDecodeError):
            return "malformed sequence"
        if seq <= self.high:
            return f"replayed or stale command (sequence {seq[0]}.{seq[1]}, last {self.high[0]}.{self.high[1]})"
        self.high = seq
        return None

    def commit(self) -> None:
        """Record the newest accepted sequence (atomically, 0600)."""
        if self.high == self.committed:
            return
        tmp = f"{self.state_file}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, json.dumps({"epoch": self.high[0], "counter": self.high[1]}).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.state_file)
        self.committed = self.high

    def abort(self) -> None:
        """Forget what was accepted since the last commit (it will be read again)."""
        self.high = self.committed


class ReportOrigin:
    """The controller's check of its report streams: ``{prefix}:report:{node}`` carries only ``node``'s messages."""

    def __init__(self, prefix: str) -> None:
        self.report_prefix = f"{prefix}:report:"
        self.refused = 0

    def check(self, stream: str, fields: dict[bytes, bytes], msg: BusMessage) -> str | None:
        """None when ``msg`` names the node whose stream it came on."""
        if not stream.startswith(self.report_prefix):
            return None  # not a report stream (the shared one of older nodes is not read)
        node = stream[len(self.report_prefix):]
        claimed: Any = getattr(msg, "node", None)
        if claimed != node:
            self.refused += 1
            logger.warning("bus: %s %s on %s claims node %r: refused", msg.kind, msg.id, stream, claimed)
            return f"message for node {claimed!r} on the report stream of {node}"
        return None

    def commit(self) -> None:
        """Nothing to record."""

    def abort(self) -> None:
        """Nothing to forget."""
