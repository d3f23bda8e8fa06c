"""The message bus: Redis streams with consumer groups, at-least-once delivery and a dead-letter stream.

Keys are namespaced by cluster::

    crane:{cluster}:ctld           craned/supervisors -> cranectld      (group "ctld")
    crane:{cluster}:node:{name}    cranectld -> one craned             (group "craned")
    crane:{cluster}:events         cranectld -> every event plugin     (one group each)
    {stream}:dead                  entries a consumer gave up on (dead letters)

Each stream entry has one field, ``m``: a message encoded by :func:`crane_kernel.messages.encode`.

Delivery is **at-least-once**: a :class:`Consumer` acknowledges entries only after its handler
returned, so a crash between the effect and the XACK delivers the same entries again (to the same
consumer on restart, or to another one through XAUTOCLAIM). Handlers must therefore be idempotent:
every message carries a unique ``id`` (and state transitions should be guarded), so a duplicate can
be recognised and ignored. Redis is never the source of truth: if it loses its data, consumers
recreate their groups and carry on, and the daemons re-register.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from crane_kernel.errors import BusMessageError
from crane_kernel.messages import BusMessage, decode, encode

__all__ = ["FIELD", "Bus", "Consumer", "Handler"]

logger = logging.getLogger(__name__)

FIELD = b"m"
"""The stream-entry field that holds the encoded message."""

DEAD_LETTER_MAXLEN = 100_000
"""Dead-letter streams are trimmed (approximately) to this many entries."""

_PIPELINE_CHUNK = 1000
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

Handler = Callable[[list[tuple[str, BusMessage]]], None]
"""A consumer's handler: receives a batch of ``(entry_id, message)`` and applies them all (or raises)."""


class Bus:
    """A Redis client plus the cluster's stream names; publishes messages.

    Args:
        url: a redis-py URL (``redis://host:port/db``, ``unix:///path?db=0``).
        cluster: cluster name, used in every key (``crane:{cluster}:...``).
        socket_timeout: seconds before a Redis call is abandoned; must exceed any consumer's ``block_ms``.
        client: use this redis-py client instead of creating one (must have ``decode_responses=False``).

    Connection errors from :meth:`publish` propagate to the caller. redis-py retries a failed call a
    few times (up to ~0.5 s) first; a retried pipeline may add its entries twice (at-least-once).
    """

    def __init__(
        self,
        url: str,
        cluster: str,
        *,
        socket_timeout: float | None = 30.0,
        client: redis.Redis | None = None,
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.prefix = f"crane:{cluster}"
        self.socket_timeout = socket_timeout
        self.redis: redis.Redis = client or redis.Redis.from_url(
            url,
            decode_responses=False,
            socket_timeout=socket_timeout,
            socket_connect_timeout=5.0,
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.25), 3),
        )

    # --- key names ------------------------------------------------------------------------

    def ctld_stream(self) -> str:
        """The controller's inbox: ``crane:{cluster}:ctld``."""
        return f"{self.prefix}:ctld"

    def node_stream(self, name: str) -> str:
        """One node's inbox: ``crane:{cluster}:node:{name}``."""
        return f"{self.prefix}:node:{name}"

    def events_stream(self) -> str:
        """The cluster's event stream, read by event plugins: ``crane:{cluster}:events``."""
        return f"{self.prefix}:events"

    def dead_letter_stream(self, stream: str) -> str:
        """Where consumers of ``stream`` put entries they gave up on: ``{stream}:dead``."""
        return f"{stream}:dead"

    # --- producing ------------------------------------------------------------------------

    def publish(self, stream: str, msgs: BusMessage | Iterable[BusMessage], maxlen: int | None = None) -> list[str]:
        """Append one or many messages to ``stream`` in one round trip; return their entry ids.

        ``maxlen`` trims the stream approximately (``MAXLEN ~``) — only where losing old entries is safe.
        """
        if isinstance(msgs, BusMessage):
            return [self.redis.xadd(stream, {FIELD: encode(msgs)}, maxlen=maxlen).decode()]
        return self.publish_many([(stream, m) for m in msgs], maxlen=maxlen)

    def publish_many(self, items: Iterable[tuple[str, BusMessage]], maxlen: int | None = None) -> list[str]:
        """Append ``(stream, message)`` pairs, possibly to many streams, in one pipelined round trip; return ids."""
        ids: list[str] = []
        pending = list(items)
        for start in range(0, len(pending), _PIPELINE_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for stream, msg in pending[start : start + _PIPELINE_CHUNK]:
                pipe.xadd(stream, {FIELD: encode(msg)}, maxlen=maxlen)
            ids.extend(entry_id.decode() for entry_id in pipe.execute())
        return ids

    def publish_fresh(self, stream: str, msg: BusMessage, timeout: float = 5.0) -> str:
        """XADD one message over a new, short-lived raw connection (:mod:`crane_kernel.resp`); return its id.

        For freshly forked processes, where redis-py's pool reset costs ~4 ms. Raises
        ``ConnectionError`` on any failure (callers may fall back to :meth:`publish`).
        """
        from crane_kernel.resp import xadd_once

        return xadd_once(self.url, stream, {FIELD: encode(msg)}, timeout)

    def ping(self) -> bool:
        """True if Redis answers."""
        return bool(self.redis.ping())

    def close(self) -> None:
        """Close the client's connections."""
        self.redis.close()

    def __repr__(self) -> str:
        """Cluster and URL."""
        return f"<Bus {self.prefix} {self.url}>"


class Consumer:
    """Reads one stream as a member of a consumer group and feeds batches to a handler.

    Args:
        bus: the :class:`Bus`.
        stream: the stream key (e.g. ``bus.ctld_stream()``).
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

    Semantics: entries are XACKed (in one call) after the handler returned — at-least-once.
    Undecodable entries are logged, copied to the dead-letter stream and acked; the consumer goes
    on. If the handler raises, nothing is acked: the next poll re-reads this consumer's pending
    entries first (one at a time after a second failure, so that one bad entry does not take its
    whole batch to the dead-letter stream). A consumer is not thread-safe: use it from one thread.
    """

    def __init__(
        self,
        bus: Bus,
        stream: str,
        group: str,
        consumer_name: str,
        handler: Handler,
        *,
        batch: int = 500,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        janitor_interval: float = 5.0,
    ) -> None:
        if bus.socket_timeout is not None and block_ms >= bus.socket_timeout * 1000:
            raise ValueError(f"block_ms={block_ms} must be below the bus socket timeout ({bus.socket_timeout}s)")
        self.bus = bus
        self.stream = stream
        self.group = group
        self.name = consumer_name
        self.handler = handler
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.janitor_interval = janitor_interval
        self.dead_letter = bus.dead_letter_stream(stream)
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
        self._last_error: dict[str, str] = {}
        try:
            self.ensure_group()
        except _CONNECTION_ERRORS as exc:
            logger.warning("bus: cannot create group %s on %s yet (%s); will retry", group, stream, exc)

    def ensure_group(self) -> None:
        """Create the consumer group at id 0 (with MKSTREAM); an existing group is fine."""
        try:
            self._r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
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

    def _read(self, from_id: str, count: int, block: int | None) -> list[tuple[Any, dict[bytes, bytes]]]:
        """XREADGROUP one stream; return its entries (maybe empty)."""
        resp = self._r.xreadgroup(self.group, self.name, {self.stream: from_id}, count=count, block=block)
        if not resp:
            return []
        if isinstance(resp, dict):  # RESP3 clients
            return [entry for part in resp.values() for entry in part[0]]
        return resp[0][1]

    def _process(self, entries: Sequence[tuple[Any, Any]], redelivered: bool) -> int:
        """Decode, dead-letter what cannot be used, call the handler once, ack; return the number acked."""
        counts = self._delivery_counts([e[0] for e in entries if e[0] is not None]) if redelivered else {}
        good: list[tuple[str, BusMessage]] = []
        dead: list[tuple[str, dict[bytes, bytes], str]] = []
        gone: list[str] = []
        for raw_id, fields in entries:
            if raw_id is None:
                continue
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if not fields:  # trimmed or deleted while pending
                gone.append(entry_id)
                continue
            deliveries = counts.get(entry_id, 1)
            if deliveries > self.max_deliveries:
                why = self._last_error.pop(entry_id, "")
                reason = f"delivered {deliveries} times (max {self.max_deliveries})" + (
                    f"; last error: {why}" if why else ""
                )
                dead.append((entry_id, fields, reason))
                continue
            raw = fields.get(FIELD)
            if raw is None:
                dead.append((entry_id, fields, f"entry has no {FIELD.decode()!r} field"))
                continue
            try:
                good.append((entry_id, decode(raw)))
            except BusMessageError as exc:
                dead.append((entry_id, fields, str(exc)))
        settled = 0
        if dead or gone:
            settled += self._move_to_dead_letter(dead, gone)
        if not good:
            return settled
        try:
            self.handler(good)
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the daemon
            self._handler_failed(good, exc, redelivered)
            return settled
        self._r.xack(self.stream, self.group, *[entry_id for entry_id, _ in good])
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
            self.stream,
            len(good),
            "y" if len(good) == 1 else "ies",
            good[0][0],
            good[-1][0],
            text,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )

    def _delivery_counts(self, raw_ids: list[Any]) -> dict[str, int]:
        """Delivery count of each pending entry (extended XPENDING), in one pipelined round trip."""
        if not raw_ids:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for raw_id in raw_ids:
            pipe.xpending_range(self.stream, self.group, min=raw_id, max=raw_id, count=1)
        counts: dict[str, int] = {}
        for rows in pipe.execute():
            for row in rows:
                mid = row["message_id"]
                counts[mid.decode() if isinstance(mid, bytes) else str(mid)] = int(row["times_delivered"])
        return counts

    def _move_to_dead_letter(self, dead: list[tuple[str, dict[bytes, bytes], str]], gone: list[str]) -> int:
        """Copy ``dead`` entries (with the reason) to the dead-letter stream and ack them with ``gone``, atomically."""
        pipe = self._r.pipeline(transaction=True)
        now = f"{time.time():.3f}".encode()
        for entry_id, fields, reason in dead:
            logger.warning("bus: dead-lettered entry %s of %s: %s", entry_id, self.stream, reason)
            record = dict(fields)
            record.update(
                {
                    b"dlq_reason": reason.encode(),
                    b"dlq_stream": self.stream.encode(),
                    b"dlq_entry": entry_id.encode(),
                    b"dlq_group": self.group.encode(),
                    b"dlq_consumer": self.name.encode(),
                    b"dlq_time": now,
                }
            )
            pipe.xadd(self.dead_letter, record, maxlen=DEAD_LETTER_MAXLEN)
        for entry_id in gone:
            logger.info("bus: entry %s of %s vanished while pending (trimmed?); acking it", entry_id, self.stream)
        pipe.xack(self.stream, self.group, *[d[0] for d in dead], *gone)
        pipe.execute()
        self.dead_lettered += len(dead)
        return len(dead) + len(gone)

    # --- recovery -------------------------------------------------------------------------

    def janitor(self, max_rounds: int = 10) -> int:
        """Claim entries idle longer than ``claim_idle_ms`` in any consumer (XAUTOCLAIM) and process them.

        Entries past ``max_deliveries`` go to the dead-letter stream. Returns the number settled.
        """
        settled = 0
        try:
            for _ in range(max_rounds):
                resp = self._r.xautoclaim(
                    self.stream,
                    self.group,
                    self.name,
                    min_idle_time=self.claim_idle_ms,
                    start_id=self._claim_cursor,
                    count=self.batch,
                )
                cursor, entries = resp[0], resp[1]
                self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
                if entries:
                    logger.info("bus: claimed %d stale entries of %s for %s", len(entries), self.stream, self.name)
                    settled += self._process(entries, redelivered=True)
                if self._claim_cursor == "0-0":
                    break
            self.trim_acked()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._recover_group(exc)
        return settled

    def trim_acked(self) -> int:
        """Delete entries every group of the stream has settled (XTRIM MINID); return how many went.

        Safe trimming: the cut is the oldest entry still pending in any group, or else the oldest
        group's last-delivered id, so nothing a consumer may still need is removed.
        """
        try:
            groups = self._r.xinfo_groups(self.stream)
        except ResponseError:
            return 0
        if not groups:
            return 0
        cut: tuple[int, int] | None = None
        for g in groups:
            name = g[b"name"] if b"name" in g else g.get("name")
            last = g[b"last-delivered-id"] if b"last-delivered-id" in g else g.get("last-delivered-id")
            candidates = [(last, 1)]  # everything up to and including the last delivered entry ...
            summary = self._r.xpending(self.stream, name)
            if summary and summary.get("pending"):
                candidates.append((summary["min"], 0))  # ... unless still pending
            for c, after in candidates:
                text = c.decode() if isinstance(c, bytes) else str(c)
                ms, _, seq = text.partition("-")
                key = (int(ms), int(seq or 0) + after)
                cut = key if cut is None or key < cut else cut
        if cut is None or cut == (0, 0):
            return 0
        return int(self._r.xtrim(self.stream, minid=f"{cut[0]}-{cut[1]}", approximate=False) or 0)

    def _recover_group(self, exc: Exception) -> None:
        """The group (or the whole stream) vanished — Redis lost its data: recreate it and start over."""
        logger.warning("bus: group %s on %s is gone (%s); recreating it", self.group, self.stream, exc)
        self._group_ready = False
        self._read_pending = True
        self._one_at_a_time = False
        self._claim_cursor = "0-0"
        self.ensure_group()

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
        return f"<Consumer {self.stream} group={self.group} name={self.name}>"
