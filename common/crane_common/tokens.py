"""Signed identity tokens: minted by an administrator, verified by the controller.

Format: ``v1.<payload>.<signature>`` where ``payload`` is base64url JSON
``{"uid": int, "user": str, "lvl": admin level, "iat": unix, "exp": unix or 0}``
and ``signature`` is base64url HMAC-SHA256 of ``"v1." + payload`` under the
cluster key. Stdlib only, so the CLI can use it without heavy imports.

The cluster key is a file readable only by root (``Auth.KeyFile``, default
``<CraneBaseDir>/cluster.key``). Whoever can read it can mint tokens, which is
how root on the controller host is recognised without a token of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time

TOKEN_ENV = "CRANE_TOKEN"
TOKEN_FILE_NAME = "token"


class TokenError(Exception):
    """A token is malformed, badly signed or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def create_key_file(path: str) -> bytes:
    """Create a new random cluster key at ``path`` (mode 0600) unless one exists; return the key."""
    if os.path.exists(path):
        return read_key(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def read_key(path: str) -> bytes:
    """Read the cluster key (raises OSError when missing or unreadable)."""
    with open(path, "rb") as fh:
        key = fh.read().strip()
    if not key:
        raise OSError(f"{path}: empty cluster key")
    return key


def mint(key: bytes, uid: int, user: str, level: str = "none", ttl: int = 0, now: float | None = None) -> str:
    """Sign a token for ``user``/``uid`` at admin ``level``, valid ``ttl`` seconds (0 = no expiry)."""
    now = int(now if now is not None else time.time())
    payload = {"uid": int(uid), "user": user, "lvl": level, "iat": now, "exp": now + ttl if ttl else 0}
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    sig = hmac.new(key, ("v1." + body).encode(), hashlib.sha256).digest()
    return f"v1.{body}.{_b64(sig)}"


def verify(key: bytes, token: str, now: float | None = None) -> dict:
    """Check a token's signature and expiry; return its payload or raise :class:`TokenError`."""
    try:
        version, body, sig = token.strip().split(".")
    except ValueError:
        raise TokenError("malformed token") from None
    if version != "v1":
        raise TokenError(f"unsupported token version {version!r}")
    expected = hmac.new(key, ("v1." + body).encode(), hashlib.sha256).digest()
    try:
        given = _unb64(sig)
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        raise TokenError("malformed token") from None
    if not hmac.compare_digest(expected, given):
        raise TokenError("bad token signature")
    if not isinstance(payload, dict) or not isinstance(payload.get("uid"), int) \
            or not isinstance(payload.get("user"), str):
        raise TokenError("malformed token payload")
    exp = payload.get("exp") or 0
    if exp and (now if now is not None else time.time()) > exp:
        raise TokenError("token expired")
    return payload


def default_token_path() -> str:
    """Where a user's token is kept: ``$XDG_CONFIG_HOME/crane/token`` (default ``~/.config/crane/token``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "crane", TOKEN_FILE_NAME)


def find_client_token(key_file: str | None) -> str | None:
    """The token a CLI call should present.

    Order: ``$CRANE_TOKEN``; the user's token file; else, when the caller can
    read the cluster key (root on the controller host), a short-lived token
    minted on the spot for the caller's real uid. ``None`` when none applies.
    """
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token.strip()
    try:
        with open(default_token_path()) as fh:
            token = fh.read().strip()
        if token:
            return token
    except OSError:
        pass
    if key_file:
        try:
            key = read_key(key_file)
        except OSError:
            return None
        import pwd

        uid = os.getuid()
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        return mint(key, uid, user, "root" if uid == 0 else "none", ttl=300)
    return None
