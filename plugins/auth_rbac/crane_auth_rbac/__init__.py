"""Token authentication and role-based authorization for cranectld.

Authentication: a request must carry ``authorization: Bearer <token>``, a
token signed with the cluster key (see :mod:`crane_common.tokens`). Root on
the controller host can read the key and so mints its own tokens; nobody else
can. Client-declared user ids are never looked at.

Authorization (first part; accounts, QoS and coordinators come later):
anyone authenticated may submit and call the query RPCs (``job.query``,
``node.query``, ``partition.query``, ``server.query``); a user may see the
details of (``job.view``), cancel, hold, release and lower the time limit of
only her own jobs; raising a time limit (``job.time_limit.raise``), releasing
a hold an operator or admin placed (``job.release_admin_hold``), pinning a
priority (``job.priority``) and every ``node.*`` action are for operators,
admins and root (by token level, or by being listed in ``Auth.Admins``), who
may also act on any job. Every other action is denied.
"""

from __future__ import annotations

import logging
from typing import Any

from crane_common import tokens
from crane_kernel import hookimpl
from crane_kernel.auth_types import ADMIN_LEVELS, CallInfo, Identity

log = logging.getLogger(__name__)

_OWNER_ACTIONS = frozenset({"job.cancel", "job.modify", "job.hold", "job.release", "job.time_limit.lower",
                            "job.view"})
_ANYONE_ACTIONS = frozenset({"job.submit", "job.query", "node.query", "partition.query", "server.query"})
_OPERATOR_ACTIONS = frozenset({"job.cancel", "job.modify", "job.hold", "job.release", "job.time_limit.lower",
                               "job.view", "job.time_limit.raise", "job.release_admin_hold", "job.priority",
                               "node.modify", "node.drain", "node.resume", "node.down"})


class RbacAuth:
    """The ``rbac`` auth plugin."""

    def __init__(self) -> None:
        self.key: bytes | None = None
        self.key_file = ""
        self.admins: set[str] = {"root"}

    @hookimpl
    def crane_plugin_configure(self, settings: dict[str, Any]) -> None:
        """Settings: ``KeyFile`` (path of the cluster key), ``Admins`` (user names with admin rights).

        cranectld supplies both (``Auth.KeyFile``, ``Auth.Admins``); ``Plugins.Settings.rbac`` may override them.
        """
        self.key_file = settings.get("KeyFile", "")
        self.admins = set(settings.get("Admins", ["root"]))
        if self.key_file:
            try:
                self.key = tokens.read_key(self.key_file)
            except OSError as exc:
                raise ValueError(f"cannot read cluster key {self.key_file}: {exc}") from None

    @hookimpl
    def crane_plugin_shutdown(self) -> None:
        """Forget the cluster key: after shutdown no token verifies (a late RPC is unauthenticated)."""
        self.key = None

    @hookimpl
    def crane_authenticate(self, call: CallInfo) -> Identity | None:
        """Verify the bearer token; return the identity it names, or None."""
        if self.key is None:
            return None
        header = call.metadata.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        try:
            payload = tokens.verify(self.key, header[7:])
        except tokens.TokenError as exc:
            log.info("rejected token on %s from %s: %s", call.method, call.peer, exc)
            return None
        level = payload.get("lvl", "none")
        if level not in ADMIN_LEVELS:
            level = "none"
        if payload["user"] in self.admins and ADMIN_LEVELS.index(level) < ADMIN_LEVELS.index("admin"):
            level = "admin"
        return Identity(uid=payload["uid"], user=payload["user"], admin_level=level, via="token")

    @hookimpl
    def crane_authorize(self, identity: Identity, action: str, target: Any) -> bool | None:
        """Owner-or-operator rules for jobs, operator-only for nodes, limits raised and admin holds; deny the rest."""
        if action in _ANYONE_ACTIONS:
            return True
        if identity.is_admin:
            return action in _OPERATOR_ACTIONS
        if action in _OWNER_ACTIONS:
            uid = getattr(target, "uid", None)
            return uid is not None and uid == identity.uid
        return False
