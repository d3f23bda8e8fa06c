"""A minimal Redis client (stdlib only): one command over a fresh connection, or a small persistent one.

Step supervisors are forked per job; in a fresh fork redis-py resets its
connection pool and handshakes anew (about 4 ms of CPU and ~900 page faults),
and importing it costs memory in the small launcher process. Speaking RESP
directly for the one XADD a supervisor needs costs about 0.6 ms.
"""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, unquote, urlparse


def _frame(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _tls_wrap(sock: socket.socket, host: str, ca_file: str, cert_file: str, key_file: str) -> socket.socket:
    """Wrap ``sock`` in TLS, verifying the server against ``ca_file`` (or the system CAs) and its name."""
    import ssl

    ctx = ssl.create_default_context(cafile=ca_file or None)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file or None)
    return ctx.wrap_socket(sock, server_hostname=host)


def _connect(url: str, timeout: float | None, ca_file: str = "", cert_file: str = "",
             key_file: str = "") -> tuple[socket.socket, str]:
    """Open a socket to ``url`` (TLS for ``rediss``); return it and the database number."""
    parsed = urlparse(url)
    try:
        if parsed.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parsed.path)
            db = (parse_qs(parsed.query).get("db") or ["0"])[0]
        elif parsed.scheme in ("redis", "rediss", ""):
            host = parsed.hostname or "127.0.0.1"
            sock = socket.create_connection((host, parsed.port or 6379), timeout=timeout)
            if parsed.scheme == "rediss":
                query = parse_qs(parsed.query)
                sock = _tls_wrap(sock, host, ca_file or (query.get("ssl_ca_certs") or [""])[0],
                                 cert_file or (query.get("ssl_certfile") or [""])[0],
                                 key_file or (query.get("ssl_keyfile") or [""])[0])
            db = parsed.path.lstrip("/") or "0"
        else:
            raise ConnectionError(f"unsupported redis URL scheme {parsed.scheme!r}")
    except OSError as exc:  # ssl.SSLError is an OSError
        raise ConnectionError(f"cannot connect to redis: {exc}") from None
    return sock, db


def _hello(url: str, db: str, username: str = "", password: str = "") -> list[list[bytes]]:
    """The AUTH and SELECT commands a new connection to ``url`` sends first."""
    parsed = urlparse(url)
    commands: list[list[bytes]] = []
    password = password or unquote(parsed.password or "")
    username = username or unquote(parsed.username or "")
    if password:
        user = [username.encode()] if username else []
        commands.append([b"AUTH", *user, password.encode()])
    if db != "0":
        commands.append([b"SELECT", db.encode()])
    return commands


def xadd_once(url: str, stream: str, fields: dict[bytes, bytes], timeout: float = 5.0, *, username: str = "",
              password: str = "", ca_file: str = "", cert_file: str = "", key_file: str = "") -> str:
    """``XADD stream * field value ...`` on a new connection to ``url``; return the entry id.

    Supports ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS: the server is verified
    against ``ca_file``, or the system CAs; ``cert_file``/``key_file`` give a client certificate) and
    ``unix:///path?db=N``; the TLS files may also be the URL's ``ssl_ca_certs``, ``ssl_certfile`` and
    ``ssl_keyfile`` query arguments. ``username``/``password`` (an ACL user) override the URL's. Raises
    ``ConnectionError`` with a one-line reason on any failure (refused, reset, or a Redis error such
    as ``WRONGPASS``/``NOPERM``).
    """
    sock, db = _connect(url, timeout, ca_file, cert_file, key_file)
    commands = _hello(url, db, username, password)
    xadd = [b"XADD", stream.encode(), b"*"]
    for key, value in fields.items():
        xadd += [key, value]
    commands.append(xadd)
    try:
        sock.sendall(b"".join(_frame(c) for c in commands))
        reader = sock.makefile("rb")
        reply = b""
        for _ in commands:
            reply = reader.readline()
            if reply.startswith(b"$"):
                reply = reader.readline()
            elif reply.startswith(b"-") or not reply:
                raise ConnectionError(f"redis refused the command: {reply.decode(errors='replace').strip()}")
        reader.close()
    except OSError as exc:
        raise ConnectionError(f"cannot publish to redis: {exc}") from None
    finally:
        sock.close()
    return reply.decode().strip()


class RedisError(ConnectionError):
    """Redis answered a command with an error reply (``-ERR``, ``-NOPERM`` ...)."""


class Connection:
    """A small persistent RESP connection: commands, pipelines, replies parsed (nested arrays, nil, integers).

    Used by the task-step supervisor for its I/O streams (XADD+XLEN in one round trip, XREAD
    BLOCK, XDEL). Not thread-safe: one connection per thread. Raises ``ConnectionError`` when the
    connection fails and :class:`RedisError` for an error reply (the connection stays usable).
    """

    def __init__(self, url: str, timeout: float | None = 10.0) -> None:
        """Connect to ``url`` (as :func:`xadd_once` understands it) and authenticate."""
        self.sock, db = _connect(url, timeout)
        self.reader = self.sock.makefile("rb")
        hello = _hello(url, db)
        if hello:
            self.pipeline(hello)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass

    def _reply(self) -> object:
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.reader.read(size + 2)
            if len(data) != size + 2:
                raise ConnectionError("redis closed the connection")
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise ConnectionError(f"unexpected redis reply {line[:40]!r}")

    def pipeline(self, commands: list[list[bytes]]) -> list[object]:
        """Send ``commands`` at once and return their replies in order; raise RedisError for the first error."""
        try:
            self.sock.sendall(b"".join(_frame(c) for c in commands))
            replies = [self._reply() for _ in commands]
        except OSError as exc:
            raise ConnectionError(f"redis connection failed: {exc}") from None
        for reply in replies:
            if isinstance(reply, RedisError):
                raise reply
        return replies

    def call(self, *args: bytes | str | int) -> object:
        """One command; its reply."""
        return self.pipeline([[a if isinstance(a, bytes) else str(a).encode() for a in args]])[0]
