"""Token authentication and role-based authorization for cranectld.

Authentication: a request must carry ``authorization: Bearer <token>``, a
token signed with the cluster key (see :mod:`crane_common.tokens`). Root on
the controller host can read the key and so mints its own tokens; nobody else
can. Client-declared user ids are never looked at.

Authorization (first part; accounts, QoS and coordinators come later):
anyone authenticated may submit and query; a user may cancel or modify only
their own jobs; operators, admins and root (by token level, or by being
listed in ``Auth.Admins``) may act on any job and on nodes; pinning a job's
priority is for admins only.
"""

from __future__ import annotations

import logging
from typing import Any

from crane_common import tokens
from crane_kernel import hookimpl
from crane_kernel.auth_types import ADMIN_LEVELS, CallInfo, Identity

log = logging.getLogger(__name__)

_OWNER_ACTIONS = {"job.cancel", "job.modify"}
_ANYONE_ACTIONS = {"job.submit", "job.query", "node.query"}


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
        """Owner-or-admin rules for jobs, admin-only for nodes and priority."""
        if action in _ANYONE_ACTIONS:
            return True
        if identity.is_admin:
            return True
        if action == "job.priority" or action.startswith("node."):
            return False
        if action in _OWNER_ACTIONS:
            return getattr(target, "uid", None) == identity.uid
        return None
