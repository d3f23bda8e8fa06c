"""Reading one stream as a member of a consumer group (see :mod:`crane_kernel.bus`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ResponseError

from crane_kernel.bus.client import CONNECTION_ERRORS, FIELD, Bus
from crane_kernel.bus.recovery import RecoveryMixin
from crane_kernel.bus.signing import EntryCheck
from crane_kernel.errors import BusMessageError
from crane_kernel.messages import BusMessage, decode

__all__ = ["Consumer", "Handler"]

logger = logging.getLogger("crane_kernel.bus")

_CONNECTION_ERRORS = CONNECTION_ERRORS

Handler = Callable[[list[tuple[str, BusMessage]]], None]
"""A consumer's handler: receives a batch of ``(entry_id, message)`` and applies them all (or raises)."""

Entry = tuple[str, Any, Any]
"""``(stream, raw entry id, fields)`` as read."""


class Consumer(RecoveryMixin):
    """Reads one or many streams as a member of a consumer group and feeds batches to a handler.

    Args:
        bus: the :class:`Bus`.
        stream: the stream key (e.g. ``bus.node_stream(name)``), or a list of them, read together
            (one XREADGROUP; the controller reads every node's report stream); each has its own
            group, acks and dead-letter stream.
        group: consumer group name; created at id 0 with MKSTREAM when missing.
        consumer_name: this consumer's name inside the group. Keep it stable across restarts
            (e.g. the node name): on start the consumer first re-reads its own pending entries.
        handler: called ONCE per batch with ``[(entry_id, message), ...]``; it should apply them
            all (e.g. in one DB transaction) and raise if it could not. Must be idempotent.
        batch: max entries per read.
        block_ms: how long a read waits for new entries (0: do not wait).
        claim_idle_ms: entries pending longer than this in any consumer are claimed by
            :meth:`janitor`; must exceed the slowest handler call, or work runs twice.
        max_deliveries: an entry delivered more often than this is moved to the dead-letter stream.
        janitor_interval: seconds between :meth:`janitor` passes in :meth:`run`.
        check: asked about every decoded entry before the handler sees it
            (:class:`~crane_kernel.bus.signing.EntryCheck`: a node verifies its commands' signatures
            and sequence, the controller the origin of reports); a refused entry is logged,
            dead-lettered with the reason and acked.

    Semantics: entries are XACKed (in one call) after the handler returned — at-least-once.
    Undecodable entries are logged, copied to the dead-letter stream and acked; the consumer goes
    on. If the handler raises, nothing is acked: the next poll re-reads this consumer's pending
    entries first (one at a time after a second failure, so that one bad entry does not take its
    whole batch to the dead-letter stream). A consumer is not thread-safe: use it from one thread.
    """

    def __init__(
        self,
        bus: Bus,
        stream: str | list[str],
        group: str,
        consumer_name: str,
        handler: Handler,
        *,
        batch: int = 500,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        janitor_interval: float = 5.0,
        check: EntryCheck | None = None,
    ) -> None:
        if bus.socket_timeout is not None and block_ms >= bus.socket_timeout * 1000:
            raise ValueError(f"block_ms={block_ms} must be below the bus socket timeout ({bus.socket_timeout}s)")
        self.bus = bus
        self.streams: list[str] = [stream] if isinstance(stream, str) else list(stream)
        if not self.streams:
            raise ValueError("a consumer needs at least one stream")
        self.stream = self.streams[0]
        self.check = check
        self.group = group
        self.name = consumer_name
        self.handler = handler
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.janitor_interval = janitor_interval
        self.dead_letter = bus.dead_letter_stream(self.stream)
        self.dead_letters = {s: bus.dead_letter_stream(s) for s in self.streams}
        self.handled = 0
        """Entries handled and acked so far."""
        self.dead_lettered = 0
        """Entries moved to the dead-letter stream so far."""
        self.handler_failures = 0
        """Handler calls that raised."""
        self.last_poll_failed = False
        """True when the handler raised during the latest poll or janitor pass."""
        self._r = bus.redis
        self._group_ready = False
        self._read_pending = True  # start by re-reading our own pending entries (id 0)
        self._one_at_a_time = False
        self._claim_cursor = "0-0"
        self._claim_cursors = {s: "0-0" for s in self.streams}
        self._last_error: dict[str, str] = {}
        try:
            self.ensure_group()
        except _CONNECTION_ERRORS as exc:
            logger.warning("bus: cannot create group %s on %s yet (%s); will retry", group, stream, exc)

    def ensure_group(self) -> None:
        """Create the consumer group of every stream at id 0 (with MKSTREAM); an existing group is fine."""
        for stream in self.streams:
            try:
                self._r.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group_ready = True

    # --- reading --------------------------------------------------------------------------

    def poll_once(self, block_ms: int | None = None) -> int:
        """Read up to ``batch`` entries, hand them to the handler, ack; return how many entries were settled.

        Settled means acked: handled, dead-lettered, or found deleted. ``block_ms`` overrides the
        consumer's wait for new entries. Handler errors are logged, never raised; Redis connection
        errors are raised (``run`` retries them); a vanished group is recreated.
        """
        try:
            return self._poll(self.block_ms if block_ms is None else block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._recover_group(exc)
            return 0

    def _poll(self, block_ms: int) -> int:
        """poll_once without the NOGROUP handling."""
        self.last_poll_failed = False
        if not self._group_ready:
            self.ensure_group()
        if self._read_pending:
            count = 1 if self._one_at_a_time else self.batch
            entries = self._read("0", count, None)
            if entries:
                return self._process(entries, redelivered=True)
            self._read_pending = False
            self._one_at_a_time = False
        entries = self._read(">", self.batch, block_ms or None)
        return self._process(entries, redelivered=False) if entries else 0

    def _read(self, from_id: str, count: int, block: int | None) -> list[Entry]:
        """XREADGROUP every stream; return their entries as ``(stream, id, fields)`` (maybe none)."""
        resp = self._r.xreadgroup(self.group, self.name, {s: from_id for s in self.streams}, count=count, block=block)
        if not resp:
            return []
        parts = resp.items() if isinstance(resp, dict) else resp  # RESP3 clients answer a dict
        out: list[Entry] = []
        for key, value in parts:
            stream = key.decode() if isinstance(key, bytes) else str(key)
            entries = value[0] if isinstance(resp, dict) else value
            out.extend((stream, raw_id, fields) for raw_id, fields in entries)
        return out

    def _process(self, entries: Sequence[Entry], redelivered: bool) -> int:
        """Decode, dead-letter what cannot be used, call the handler once, ack; return the number acked."""
        counts = self._delivery_counts([(e[0], e[1]) for e in entries if e[1] is not None]) if redelivered else {}
        good: list[tuple[str, BusMessage]] = []
        good_streams: list[str] = []
        dead: list[tuple[str, str, dict[bytes, bytes], str]] = []
        gone: list[tuple[str, str]] = []
        for stream, raw_id, fields in entries:
            if raw_id is None:
                continue
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if not fields:  # trimmed or deleted while pending
                gone.append((stream, entry_id))
                continue
            deliveries = counts.get((stream, entry_id), 1)
            if deliveries > self.max_deliveries:
                why = self._last_error.pop(entry_id, "")
                reason = f"delivered {deliveries} times (max {self.max_deliveries})" + (
                    f"; last error: {why}" if why else ""
                )
                dead.append((stream, entry_id, fields, reason))
                continue
            raw = fields.get(FIELD)
            if raw is None:
                dead.append((stream, entry_id, fields, f"entry has no {FIELD.decode()!r} field"))
                continue
            try:
                msg = decode(raw)
            except BusMessageError as exc:
                dead.append((stream, entry_id, fields, str(exc)))
                continue
            refused = self.check.check(stream, fields, msg) if self.check is not None else None
            if refused is not None:
                dead.append((stream, entry_id, fields, f"refused: {refused}"))
                continue
            good.append((entry_id, msg))
            good_streams.append(stream)
        settled = 0
        if dead or gone:
            settled += self._move_to_dead_letter(dead, gone)
        if not good:
            return settled
        try:
            self.handler(good)
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the daemon
            if self.check is not None:
                self.check.abort()
            self._handler_failed(good, exc, redelivered)
            return settled
        by_stream: dict[str, list[str]] = {}
        for stream, (entry_id, _) in zip(good_streams, good, strict=True):
            by_stream.setdefault(stream, []).append(entry_id)
        if len(by_stream) == 1:
            self._r.xack(good_streams[0], self.group, *by_stream[good_streams[0]])
        else:
            pipe = self._r.pipeline(transaction=False)
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            pipe.execute()
        if self.check is not None:
            self.check.commit()
        self.handled += len(good)
        if self._last_error:
            for entry_id, _ in good:
                self._last_error.pop(entry_id, None)
        return settled + len(good)

    def _handler_failed(self, good: list[tuple[str, BusMessage]], exc: Exception, redelivered: bool) -> None:
        """Record a handler failure: nothing is acked; pending entries are re-read next time."""
        self.handler_failures += 1
        self.last_poll_failed = True
        self._read_pending = True
        if redelivered and len(good) > 1:
            self._one_at_a_time = True  # second failure of a batch: find the culprit entry by entry
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200] if str(exc) else type(exc).__name__
        if len(self._last_error) > 10_000:
            self._last_error.clear()
        for entry_id, _ in good:
            self._last_error[entry_id] = text
        logger.error(
            "bus: handler for %s failed on %d entr%s (%s..%s), will retry: %s",
            self.stream if len(self.streams) == 1 else f"{len(self.streams)} streams",
            len(good),
            "y" if len(good) == 1 else "ies",
            good[0][0],
            good[-1][0],
            text,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )

    def run(self, stop_event: threading.Event) -> None:
        """Poll until ``stop_event`` is set, with a janitor pass every ``janitor_interval`` s; never raises.

        A handler failure waits 0.1 s, doubling up to 2 s, before the retry; a lost Redis connection
        waits 0.1 s, doubling up to 5 s, between attempts, and is logged once per outage.
        """
        next_janitor = 0.0
        retry_delay = 0.1
        redis_delay = 0.1
        outage = False
        while not stop_event.is_set():
            try:
                if time.monotonic() >= next_janitor:
                    self.janitor()
                    next_janitor = time.monotonic() + self.janitor_interval
                self.poll_once()
                if outage:
                    logger.info("bus: Redis reachable again for %s on %s", self.name, self.stream)
                    outage, redis_delay = False, 0.1
                if self.last_poll_failed:
                    stop_event.wait(retry_delay)
                    retry_delay = min(retry_delay * 2, 2.0)
                else:
                    retry_delay = 0.1
            except _CONNECTION_ERRORS as exc:
                if not outage:
                    logger.warning("bus: Redis unreachable for %s on %s (%s); retrying", self.name, self.stream, exc)
                    outage = True
                self._read_pending = True  # a read may have been delivered but its reply lost
                stop_event.wait(redis_delay)
                redis_delay = min(redis_delay * 2, 5.0)
            except Exception:  # keep the daemon alive, but say what happened
                logger.exception("bus: unexpected error in consumer %s on %s; continuing", self.name, self.stream)
                stop_event.wait(1.0)

    def __repr__(self) -> str:
        """Stream, group and consumer name."""
        where = self.stream if len(self.streams) == 1 else f"{self.stream} (+{len(self.streams) - 1})"
        return f"<Consumer {where} group={self.group} name={self.name}>"
