"""Identity and call descriptions exchanged with the auth plugins."""

from __future__ import annotations

from dataclasses import dataclass, field

from crane_common.levels import ADMIN_LEVELS

__all__ = ["ADMIN_LEVELS", "AcctTarget", "CallInfo", "Identity"]


@dataclass(frozen=True)
class Identity:
    """Who is calling, as established by an auth plugin (never declared by the client)."""

    uid: int
    user: str
    admin_level: str = "none"   # one of ADMIN_LEVELS
    via: str = ""               # how it was established: "token", "root-key", ...
    coordinated: frozenset[str] = frozenset()  # accounts (with sub-accounts) the user coordinates (account DB)

    @property
    def is_admin(self) -> bool:
        """True for operator, admin and root."""
        return ADMIN_LEVELS.index(self.admin_level) >= 1


@dataclass
class CallInfo:
    """What the controller knows about an incoming RPC before authenticating it."""

    method: str                                   # e.g. "SubmitBatchJob"
    metadata: dict[str, str] = field(default_factory=dict)
    peer: str = ""                                # gRPC peer string, e.g. "ipv4:127.0.0.1:5555"


@dataclass(frozen=True)
class AcctTarget:
    """What an account-database action (``account.*``, ``user.*``, ``qos.*``, ``txn.query``) is about.

    Built by the controller from its account database, so an auth plugin needs nothing else.
    """

    kind: str                        # "account", "user", "qos" or "txn"
    name: str = ""                   # the account, user or QoS acted on
    account: str = ""                # account actions: that account; user actions: the membership's account
    parent: str = ""                 # account actions: the account's parent (for add: the new one); "" = top
    new_parent: str | None = None    # account.modify: the parent it moves to (None: it does not move)
    fields: tuple[str, ...] = ()     # account.modify: the record attributes it changes (e.g. "allowed_qos")
    block: bool | None = None        # account.block / user.block: True to block, False to unblock
    accounts: tuple[str, ...] = ()   # user actions: every account the change touches
    level: str = "none"              # user actions: the user's current admin level
    new_level: str = ""              # user actions: the admin level being set ("" = none is set)
