"""The rbac plugin's tokens: HS256 JWTs signed with a rotating keyring, and a revocation list.

Keyring (``Auth.KeyFile``, default ``<CraneBaseDir>/cluster.key``, mode 0600, owner root): JSON
``{"version": 1, "keys": [{"kid", "secret" (hex), "created", "verify_until"}, ...]}``. The last key
whose ``verify_until`` is null signs; every key verifies until its ``verify_until`` (the grace
window a rotation gives tokens signed with it). A file holding a bare secret (the format before
JWTs) is read as one key with kid ``legacy`` (its HMAC key the secret's SHA-256).

Tokens: header ``{"alg": "HS256", "kid"}``, claims ``sub`` (user name), ``uid``, ``lvl`` (admin
level), ``iat``, ``exp`` (absent only for a token issued with ``--ttl 0``), ``jti`` (random id),
``iss`` (``crane:<cluster>``) and ``aud`` (``cranectld:<cluster>``); all but ``exp`` are required.

Revocation list (``RevocationFile``, default ``revoked.json`` beside the keyring, mode 0600):
``{"jti": {id: exp or 0}, "users": {name: unix time}}``; a token is refused when its ``jti`` is
listed, or when it was issued to a listed user at or before that time. Entries of expired tokens
are pruned when the list is written. The plugin owns both files; nothing in the kernel reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

ALGORITHM = "HS256"
DEFAULT_TTL = 7 * 24 * 3600
LEGACY_KID = "legacy"
_LEEWAY = 5  # seconds of clock skew tolerated for exp/iat


class TokenError(Exception):
    """A token is malformed, badly signed, expired, revoked or not for this cluster."""


def issuer(cluster: str) -> str:
    """The ``iss`` claim of the tokens of ``cluster``."""
    return f"crane:{cluster}"


def audience(cluster: str) -> str:
    """The ``aud`` claim the controller of ``cluster`` requires."""
    return f"cranectld:{cluster}"


@dataclass
class Key:
    """One keyring entry."""

    kid: str
    secret: bytes
    created: float
    verify_until: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as stored in the keyring file."""
        return {"kid": self.kid, "secret": self.secret.hex(), "created": self.created,
                "verify_until": self.verify_until}


@dataclass
class Keyring:
    """The signing key and the keys still verifying."""

    keys: list[Key] = field(default_factory=list)

    @property
    def signing(self) -> Key:
        """The newest key not being retired (raises TokenError when there is none)."""
        for key in reversed(self.keys):
            if key.verify_until is None:
                return key
        raise TokenError("the keyring has no active signing key")

    def verifying(self, kid: str, now: float) -> bytes | None:
        """The secret of key ``kid`` if it still verifies at ``now``."""
        for key in self.keys:
            if key.kid == kid and (key.verify_until is None or now <= key.verify_until):
                return key.secret
        return None


def _new_key(now: float) -> Key:
    return Key(kid=time.strftime("k%Y%m%d%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(3),
               secret=secrets.token_bytes(32), created=now)


def parse_keyring(data: bytes, path: str = "<keyring>") -> Keyring:
    """Parse keyring file contents (JSON, or a bare legacy secret); raise ValueError when unusable."""
    text = data.strip()
    if not text:
        raise ValueError(f"{path}: empty keyring")
    if not text.startswith(b"{"):
        return Keyring([Key(LEGACY_KID, hashlib.sha256(text).digest(), 0.0)])  # 32 bytes whatever its length
    try:
        doc = json.loads(text)
        keys = [Key(str(k["kid"]), bytes.fromhex(k["secret"]), float(k.get("created", 0)),
                    None if k.get("verify_until") is None else float(k["verify_until"])) for k in doc["keys"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: malformed keyring ({exc})") from None
    if not keys:
        raise ValueError(f"{path}: the keyring has no keys")
    return Keyring(keys)


def read_keyring(path: str) -> Keyring:
    """Read the keyring at ``path`` (OSError when missing or unreadable, ValueError when malformed)."""
    with open(path, "rb") as fh:
        return parse_keyring(fh.read(), path)


def write_private(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600, never following a symlink at ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # rename replaces a symlink itself, never its target


def write_keyring(path: str, ring: Keyring) -> None:
    """Store ``ring`` at ``path`` (0600, atomic)."""
    write_private(path, (json.dumps({"version": 1, "keys": [k.to_json() for k in ring.keys]}, indent=1)
                         + "\n").encode())


def create_keyring(path: str, now: float | None = None) -> Keyring:
    """Create a keyring with one fresh key at ``path`` unless one exists; return the keyring."""
    if os.path.exists(path):
        return read_keyring(path)
    ring = Keyring([_new_key(now if now is not None else time.time())])
    write_keyring(path, ring)
    return ring


def rotate(path: str, grace: float, now: float | None = None) -> Key:
    """Add a new signing key to the keyring at ``path``; older keys verify for ``grace`` more seconds at most.

    A shorter grace also shortens the grace earlier rotations gave (``grace=0``: after a leak,
    only the new key verifies). Keys whose grace has ended are dropped. Returns the new key.
    """
    now = now if now is not None else time.time()
    ring = read_keyring(path) if os.path.exists(path) else Keyring()
    kept = []
    for key in ring.keys:
        key.verify_until = now + grace if key.verify_until is None else min(key.verify_until, now + grace)
        if key.verify_until > now:
            kept.append(key)
    new = _new_key(now)
    write_keyring(path, Keyring([*kept, new]))
    return new


def mint(ring: Keyring, cluster: str, uid: int, user: str, level: str = "none", ttl: int = DEFAULT_TTL,
         now: float | None = None) -> str:
    """Sign a token for ``user``/``uid`` at admin ``level`` valid ``ttl`` seconds (0: no expiry)."""
    now = int(now if now is not None else time.time())
    key = ring.signing
    claims: dict[str, Any] = {"sub": user, "uid": int(uid), "lvl": level, "iat": now, "jti": secrets.token_hex(16),
                              "iss": issuer(cluster), "aud": audience(cluster)}
    if ttl:
        claims["exp"] = now + int(ttl)
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def verify(ring: Keyring, token: str, cluster: str, now: float | None = None) -> dict[str, Any]:
    """Check signature, key, issuer, audience and expiry; return the claims or raise TokenError.

    Revocation is checked separately (:meth:`Revocations.check`).
    """
    now = now if now is not None else time.time()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("malformed token") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"unsupported token algorithm {header.get('alg')!r}")
    secret = ring.verifying(str(header.get("kid", "")), now)
    if secret is None:
        raise TokenError("token signed with an unknown or retired key")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=audience(cluster),
                            issuer=issuer(cluster), leeway=_LEEWAY,
                            options={"require": ["sub", "iat", "jti", "iss", "aud"], "verify_iat": False,
                                     "verify_exp": False})  # checked below against ``now``
    except jwt.InvalidAudienceError:
        raise TokenError("token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise TokenError("token from another issuer") from None
    except jwt.InvalidSignatureError:
        raise TokenError("bad token signature") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token: {exc}") from None
    exp = claims.get("exp")
    if exp is not None and (not isinstance(exp, (int, float)) or now > exp + _LEEWAY):
        raise TokenError("token expired")
    if not isinstance(claims.get("uid"), int) or isinstance(claims.get("uid"), bool) or claims["uid"] < 0 \
            or not isinstance(claims.get("sub"), str):
        raise TokenError("malformed token claims")
    return claims


def decode_unverified(token: str) -> dict[str, Any]:
    """The claims and ``kid`` of a token without checking anything (for ``crane token show``)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        return {**claims, "kid": jwt.get_unverified_header(token).get("kid")}
    except jwt.PyJWTError as exc:
        raise TokenError(f"not a JWT: {exc}") from None


@dataclass
class Revocations:
    """The revocation list: revoked token ids, and users whose tokens up to a time are revoked."""

    jti: dict[str, float] = field(default_factory=dict)
    users: dict[str, float] = field(default_factory=dict)

    def check(self, claims: dict[str, Any]) -> None:
        """Raise TokenError when the token of ``claims`` is revoked."""
        if claims.get("jti") in self.jti:
            raise TokenError("token revoked")
        cut = self.users.get(claims.get("sub", ""))
        if cut is not None and claims.get("iat", 0) <= cut:
            raise TokenError("token revoked (all of the user's tokens)")

    @classmethod
    def read(cls, path: str) -> Revocations:
        """Load the list at ``path`` (empty when the file does not exist; ValueError when malformed)."""
        try:
            with open(path, "rb") as fh:
                doc = json.loads(fh.read() or b"{}")
        except FileNotFoundError:
            return cls()
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: malformed revocation list ({exc})") from None
        return cls({str(k): float(v) for k, v in (doc.get("jti") or {}).items()},
                   {str(k): float(v) for k, v in (doc.get("users") or {}).items()})

    def write(self, path: str, now: float | None = None) -> None:
        """Store the list at ``path`` (0600, atomic), dropping token ids that have expired anyway."""
        now = now if now is not None else time.time()
        self.jti = {k: v for k, v in self.jti.items() if not v or v + _LEEWAY >= now}
        write_private(path, (json.dumps({"jti": self.jti, "users": self.users}, indent=1) + "\n").encode())


def file_stamp(path: str) -> tuple[int, int, int] | None:
    """``(mtime_ns, size, inode)`` of ``path``, None when it does not exist (to notice a rewrite)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
