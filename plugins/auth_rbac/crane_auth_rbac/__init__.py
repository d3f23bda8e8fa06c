"""Token authentication and role-based authorization for cranectld.

Authentication: a request must carry ``authorization: Bearer <token>``, a JWT
signed with the cluster keyring (see :mod:`crane_auth_rbac.jwt_tokens`: HS256,
expiry, issuer/audience, key rotation with a grace window, a revocation list).
The plugin owns its keys: it creates the keyring when missing, mints the
tokens (``crane token issue``, :mod:`crane_auth_rbac.cli`) and keeps a
short-lived token for the controller's own user (root) in a root-only file,
the *host token*, which is how root on the controller host is recognised.
Client-declared user ids are never looked at.

Authorization. Levels are the token's (or ``Auth.Admins``), replaced by the account database's
level when the user is in it (the controller enriches the identity; uid-0 root stays root).

Jobs and nodes: anyone authenticated may submit and call the query RPCs (``job.query``,
``node.query``, ``partition.query``, ``server.query``); a user may see the details of
(``job.view``), cancel, hold, release, requeue (``job.requeue``), signal (``job.signal``) and lower
the time limit of only her own jobs, and a
*coordinator* of an account (``Identity.coordinated``: the accounts she coordinates with their
sub-accounts) may do the same to every job of those accounts; raising a time limit
(``job.time_limit.raise``), releasing a hold an operator or admin placed
(``job.release_admin_hold``), pinning a priority (``job.priority``), suspending and resuming
(``job.suspend``) and every ``node.*`` action
are for operators, admins and root, who may also act on any job.

The account database (the target is a :class:`~crane_kernel.auth_types.AcctTarget`):

* ``account.query``, ``user.query``, ``qos.query``: anyone authenticated;
* ``txn.query`` (the transaction log): operators and above;
* ``qos.add``, ``qos.modify``, ``qos.delete``: admins and root;
* ``account.add``: admins and root, or a coordinator of the new account's parent;
  ``account.modify``, ``account.block``: admins and root, or a coordinator of the account (or of
  an ancestor: coordination covers sub-accounts); moving it to another parent needs coordination
  of both its parent and the new parent; ``account.delete``: admins and root, or a coordinator of
  the account's parent (so nobody deletes or re-parents the top account she coordinates). On that
  top account (its parent not coordinated by her) a coordinator changes only the description and
  the coordinators, and may block but not unblock it: the partitions, QoS and block an admin set
  there bound her whole tree;
* ``user.add``, ``user.modify``, ``user.delete``, ``user.block``: operators and above, or a
  coordinator of every account the change touches; but nobody except root sets an admin level at
  or above her own, or touches a user whose level is above her own (operators cannot touch admins).

Every other action is denied.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from crane_kernel import hookimpl
from crane_kernel.auth_types import ADMIN_LEVELS, AcctTarget, CallInfo, Identity

from crane_auth_rbac import jwt_tokens
from crane_auth_rbac.jwt_tokens import Keyring, Revocations, TokenError

log = logging.getLogger(__name__)

_OWNER_ACTIONS = frozenset({"job.cancel", "job.modify", "job.hold", "job.release", "job.time_limit.lower",
                            "job.view", "job.requeue", "job.signal"})
_ANYONE_ACTIONS = frozenset({"job.submit", "job.query", "node.query", "partition.query", "server.query"})
_OPERATOR_ACTIONS = frozenset({"job.cancel", "job.modify", "job.hold", "job.release", "job.time_limit.lower",
                               "job.view", "job.time_limit.raise", "job.release_admin_hold", "job.priority",
                               "node.modify", "node.drain", "node.resume", "node.down", "job.requeue",
                               "job.signal", "job.suspend"})

_COORDINATOR_ACTIONS = _OWNER_ACTIONS  # on jobs of the accounts she coordinates
_DB_ANYONE = frozenset({"account.query", "user.query", "qos.query"})
_DB_ACTIONS = frozenset({"txn.query", "qos.add", "qos.modify", "qos.delete", "account.add", "account.modify",
                         "account.delete", "account.block", "user.add", "user.modify", "user.delete", "user.block"})

_TOP_ACCOUNT_FIELDS = frozenset({"description", "coordinators"})  # what a coordinator may change on her top account

HOST_TOKEN_NAME = "root.token"
REVOCATION_NAME = "revoked.json"
DEFAULT_HOST_TOKEN_TTL = 24 * 3600


def auth_paths(settings: dict[str, Any]) -> tuple[str, str, str]:
    """``(keyring, revocation list, host token)`` paths from the plugin settings (defaults beside the keyring)."""
    key_file = settings.get("KeyFile", "")
    directory = os.path.dirname(os.path.abspath(key_file)) if key_file else ""
    revocations = settings.get("RevocationFile") or (os.path.join(directory, REVOCATION_NAME) if directory else "")
    host = settings.get("HostTokenFile") or (os.path.join(directory, HOST_TOKEN_NAME) if directory else "")
    return key_file, revocations, host


class RbacAuth:
    """The ``rbac`` auth plugin."""

    def __init__(self) -> None:
        self.ring: Keyring | None = None
        self.key_file = ""
        self.revocation_file = ""
        self.host_token_file = ""
        self.host_token_ttl = DEFAULT_HOST_TOKEN_TTL
        self.cluster = "crane"
        self.admins: set[str] = {"root"}
        self.revoked = Revocations()
        self._stamps: tuple[Any, Any] = (None, None)
        self._host_renew_at = 0.0

    @hookimpl
    def crane_plugin_configure(self, settings: dict[str, Any]) -> None:
        """Settings: ``KeyFile`` (the keyring; created when missing), ``Admins``, ``Cluster`` (the cluster name:
        issuer ``crane:<Cluster>``, audience ``cranectld:<Cluster>``), ``RevocationFile``, ``HostTokenFile``
        (both default beside the keyring), ``HostTokenTTL`` (seconds, default 86400).

        cranectld supplies ``KeyFile``, ``Admins`` and ``Cluster``; ``Plugins.Settings.rbac`` may override them.
        """
        self.key_file, self.revocation_file, self.host_token_file = auth_paths(settings)
        self.admins = set(settings.get("Admins", ["root"]))
        self.cluster = str(settings.get("Cluster") or "crane")
        self.host_token_ttl = int(settings.get("HostTokenTTL", DEFAULT_HOST_TOKEN_TTL))
        if not self.key_file:
            return
        try:
            self.ring = jwt_tokens.create_keyring(self.key_file)
            self.revoked = Revocations.read(self.revocation_file)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the cluster keyring {self.key_file}: {exc}") from None
        self._stamps = (jwt_tokens.file_stamp(self.key_file), jwt_tokens.file_stamp(self.revocation_file))
        self._renew_host_token()

    @hookimpl
    def crane_plugin_shutdown(self) -> None:
        """Forget the keyring: after shutdown no token verifies (a late RPC is unauthenticated)."""
        self.ring = None

    def _reload(self) -> None:
        """Re-read the keyring or the revocation list when ``crane token`` has rewritten it."""
        stamps = (jwt_tokens.file_stamp(self.key_file), jwt_tokens.file_stamp(self.revocation_file))
        if stamps == self._stamps:
            return
        try:
            if stamps[0] != self._stamps[0]:
                self.ring = jwt_tokens.read_keyring(self.key_file)
                self._host_renew_at = 0.0  # a rotation: the host token is re-signed with the new key
            if stamps[1] != self._stamps[1]:
                self.revoked = Revocations.read(self.revocation_file)
        except (OSError, ValueError) as exc:  # keep the last good copy; a half-edited file must not lock us out
            log.error("auth: cannot reload %s", exc)
            return
        self._stamps = stamps

    def _renew_host_token(self) -> None:
        """(Re)write the host token: the controller user's own token, in a file only that user can read."""
        if not self.host_token_file or self.ring is None:
            return
        import pwd

        uid = os.getuid()
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        try:
            token = jwt_tokens.mint(self.ring, self.cluster, uid, user, "root" if uid == 0 else "none",
                                    ttl=self.host_token_ttl)
            jwt_tokens.write_private(self.host_token_file, (token + "\n").encode())
        except (OSError, TokenError) as exc:
            log.error("auth: cannot write the host token %s: %s", self.host_token_file, exc)
        self._host_renew_at = time.time() + self.host_token_ttl / 2

    @hookimpl
    def crane_authenticate(self, call: CallInfo) -> Identity | None:
        """Verify the bearer token (signature, key, issuer, audience, expiry, revocation); its identity, or None."""
        if self.ring is None:
            return None
        header = call.metadata.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        self._reload()
        if time.time() >= self._host_renew_at:
            self._renew_host_token()
        try:
            payload = jwt_tokens.verify(self.ring, header[7:].strip(), self.cluster)
            self.revoked.check(payload)
        except TokenError as exc:
            log.info("rejected token on %s from %s: %s", call.method, call.peer, exc)
            return None
        level = payload.get("lvl", "none")
        if level not in ADMIN_LEVELS:
            level = "none"
        if payload["sub"] in self.admins and ADMIN_LEVELS.index(level) < ADMIN_LEVELS.index("admin"):
            level = "admin"
        return Identity(uid=payload["uid"], user=payload["sub"], admin_level=level, via="token")

    @hookimpl
    def crane_authorize(self, identity: Identity, action: str, target: Any) -> bool | None:
        """The rules of the module docstring: owner, coordinator or operator for jobs; the account database's."""
        if action in _ANYONE_ACTIONS or action in _DB_ANYONE:
            return True
        if action in _DB_ACTIONS:
            return isinstance(target, AcctTarget) and _db_allowed(identity, action, target)
        if identity.is_admin:
            return action in _OPERATOR_ACTIONS
        if action in _OWNER_ACTIONS:
            uid = getattr(target, "uid", None)
            if uid is not None and uid == identity.uid:
                return True
            account = getattr(target, "account", None)
            return action in _COORDINATOR_ACTIONS and bool(account) and account in identity.coordinated
        return False


def _db_allowed(identity: Identity, action: str, target: AcctTarget) -> bool:
    """The account-database rules (see the module docstring)."""
    rank = ADMIN_LEVELS.index(identity.admin_level)
    coordinated = identity.coordinated
    if action == "txn.query":
        return rank >= 1
    if action.startswith("qos."):
        return rank >= 2
    if action.startswith("account."):
        if rank >= 2:
            return True
        if action in ("account.add", "account.delete"):
            return bool(target.parent) and target.parent in coordinated
        if target.account not in coordinated:
            return False
        if target.new_parent is not None and target.new_parent != target.parent:
            return bool(target.parent) and target.parent in coordinated and target.new_parent in coordinated
        if target.parent in coordinated:  # inside her tree: the parent bounds what the account may use
            return True
        # her top account: an admin's bounds stay (no widening of partitions or QoS, no unblocking)
        if action == "account.block":
            return target.block is not False
        return set(target.fields) <= _TOP_ACCOUNT_FIELDS
    # user.*
    if identity.admin_level != "root":
        if target.new_level and target.new_level in ADMIN_LEVELS and ADMIN_LEVELS.index(target.new_level) >= rank:
            return False
        if target.level in ADMIN_LEVELS and ADMIN_LEVELS.index(target.level) > rank:
            return False
    if rank >= 1:
        return True
    return bool(target.accounts) and all(a and a in coordinated for a in target.accounts)
