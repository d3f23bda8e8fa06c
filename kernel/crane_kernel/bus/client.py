"""The bus client: a Redis connection, the cluster's stream names, and publishing (see :mod:`crane_kernel.bus`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from crane_kernel.messages import BusMessage, encode

if TYPE_CHECKING:
    from crane_kernel.bus.credentials import BusCredentials
    from crane_kernel.bus.signing import CommandSigner
    from crane_kernel.config import ClusterConfig

__all__ = ["CONNECTION_ERRORS", "DEAD_LETTER_MAXLEN", "FIELD", "Bus", "TlsSettings"]

logger = logging.getLogger("crane_kernel.bus")

FIELD = b"m"
"""The stream-entry field that holds the encoded message."""

DEAD_LETTER_MAXLEN = 100_000
"""Dead-letter streams are trimmed (approximately) to this many entries."""

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
"""What a lost or unreachable Redis raises."""

_PIPELINE_CHUNK = 1000


@dataclass(frozen=True)
class TlsSettings:
    """Client-side TLS for a ``rediss://`` URL: the CA that signed the server, and an optional client certificate."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def redis_kwargs(self) -> dict[str, Any]:
        """The matching redis-py connection arguments (the server's certificate is always verified)."""
        out: dict[str, Any] = {"ssl_cert_reqs": "required"}
        if self.ca_file:
            out["ssl_ca_certs"] = self.ca_file
        if self.cert_file:
            out["ssl_certfile"] = self.cert_file
        if self.key_file:
            out["ssl_keyfile"] = self.key_file
        return out


class Bus:
    """A Redis client plus the cluster's stream names; publishes messages.

    Args:
        url: a redis-py URL (``redis://host:port/db``, ``unix:///path?db=0``).
        cluster: cluster name, used in every key (``crane:{cluster}:...``).
        socket_timeout: seconds before a Redis call is abandoned; must exceed any consumer's ``block_ms``.
        client: use this redis-py client instead of creating one (must have ``decode_responses=False``).
        credentials: the ACL user and password to authenticate with (None: the URL's, if any).
        tls: CA and client certificate for a ``rediss://`` URL.
        signer: signs what is published to node command streams (the controller's bus).

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
        credentials: BusCredentials | None = None,
        tls: TlsSettings | None = None,
        signer: CommandSigner | None = None,
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.prefix = f"crane:{cluster}"
        self.socket_timeout = socket_timeout
        self.credentials = credentials
        self.tls = tls
        self.signer = signer
        extra: dict[str, Any] = {}
        if credentials is not None:
            extra.update(username=credentials.user, password=credentials.password)
        if url.startswith("rediss://"):
            extra.update((tls or TlsSettings()).redis_kwargs())
        self.redis: redis.Redis = client or redis.Redis.from_url(
            url,
            decode_responses=False,
            socket_timeout=socket_timeout,
            socket_connect_timeout=5.0,
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.25), 3),
            **extra,
        )

    @classmethod
    def from_config(cls, cfg: ClusterConfig, role: str, *, signer: CommandSigner | None = None,
                    **kwargs: Any) -> "Bus":
        """The bus of ``role`` (``controller``, ``node-{name}``, ``cplugind``, ``admin``) as configured.

        With ``Bus.Auth`` on (the default) the role's credentials are read from ``Bus.CredentialsDir``
        (raises :class:`~crane_kernel.bus.credentials.CredentialsError`); TLS settings come from ``Bus``.
        """
        from crane_kernel.bus.credentials import load_role

        creds = load_role(cfg.bus_dir, role) if cfg.Bus.Auth else None
        tls = TlsSettings(cfg.Bus.TlsCaFile, cfg.Bus.TlsCertFile, cfg.Bus.TlsKeyFile)
        return cls(cfg.RedisUrl, cfg.ClusterName, credentials=creds, tls=tls, signer=signer, **kwargs)

    # --- key names ------------------------------------------------------------------------

    def ctld_stream(self) -> str:
        """The controller's inbox: ``crane:{cluster}:ctld``."""
        return f"{self.prefix}:ctld"

    def report_stream(self, name: str) -> str:
        """One node's reports to the controller (only that node may add to it): ``crane:{cluster}:report:{name}``."""
        return f"{self.prefix}:report:{name}"

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
            return self.publish_many([(stream, msgs)], maxlen=maxlen)
        return self.publish_many([(stream, m) for m in msgs], maxlen=maxlen)

    def _fields(self, stream: str, msg: BusMessage) -> dict[bytes, bytes]:
        """The entry for ``msg`` on ``stream`` (signed when it commands a node and this bus signs)."""
        payload = encode(msg)
        return self.signer.fields(stream, payload) if self.signer is not None else {FIELD: payload}

    def publish_many(self, items: Iterable[tuple[str, BusMessage]], maxlen: int | None = None) -> list[str]:
        """Append ``(stream, message)`` pairs, possibly to many streams, in one pipelined round trip; return ids."""
        ids: list[str] = []
        pending = list(items)
        for start in range(0, len(pending), _PIPELINE_CHUNK):
            # signed entries must reach each stream in sequence order: sign and send under one lock
            with self.signer.lock if self.signer is not None else nullcontext():
                pipe = self.redis.pipeline(transaction=False)
                for stream, msg in pending[start : start + _PIPELINE_CHUNK]:
                    pipe.xadd(stream, self._fields(stream, msg), maxlen=maxlen)
                ids.extend(entry_id.decode() for entry_id in pipe.execute())
        return ids

    def publish_fresh(self, stream: str, msg: BusMessage, timeout: float = 5.0) -> str:
        """XADD one message over a new, short-lived raw connection (:mod:`crane_kernel.resp`); return its id.

        For freshly forked processes, where redis-py's pool reset costs ~4 ms. Raises
        ``ConnectionError`` on any failure (callers may fall back to :meth:`publish`).
        """
        from crane_kernel.resp import xadd_once

        return xadd_once(self.url, stream, {FIELD: encode(msg)}, timeout, **self.resp_auth())

    def resp_auth(self) -> dict[str, Any]:
        """The credential and TLS arguments of :func:`crane_kernel.resp.xadd_once` for this bus."""
        out: dict[str, Any] = {}
        if self.credentials is not None:
            out.update(username=self.credentials.user, password=self.credentials.password)
        if self.tls is not None:
            out.update(ca_file=self.tls.ca_file, cert_file=self.tls.cert_file, key_file=self.tls.key_file)
        return out

    def ping(self) -> bool:
        """True if Redis answers."""
        return bool(self.redis.ping())

    def close(self) -> None:
        """Close the client's connections."""
        self.redis.close()

    def __repr__(self) -> str:
        """Cluster and URL."""
        return f"<Bus {self.prefix} {self.url}>"
