"""The bus client: a Redis connection, the cluster's stream names, and publishing (see :mod:`crane_kernel.bus`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from crane_kernel.messages import BusMessage, encode

__all__ = ["CONNECTION_ERRORS", "DEAD_LETTER_MAXLEN", "FIELD", "Bus"]

logger = logging.getLogger("crane_kernel.bus")

FIELD = b"m"
"""The stream-entry field that holds the encoded message."""

DEAD_LETTER_MAXLEN = 100_000
"""Dead-letter streams are trimmed (approximately) to this many entries."""

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
"""What a lost or unreachable Redis raises."""

_PIPELINE_CHUNK = 1000


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
