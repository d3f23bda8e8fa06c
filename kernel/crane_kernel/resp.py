"""A minimal Redis client for one command over a fresh connection (stdlib only).

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
    commands: list[list[bytes]] = []
    password = password or unquote(parsed.password or "")
    username = username or unquote(parsed.username or "")
    if password:
        user = [username.encode()] if username else []
        commands.append([b"AUTH", *user, password.encode()])
    if db != "0":
        commands.append([b"SELECT", db.encode()])
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
