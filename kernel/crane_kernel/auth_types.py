"""Identity and call descriptions exchanged with the auth plugins."""

from __future__ import annotations

from dataclasses import dataclass, field

from crane_common.levels import ADMIN_LEVELS

__all__ = ["ADMIN_LEVELS", "CallInfo", "Identity"]


@dataclass(frozen=True)
class Identity:
    """Who is calling, as established by an auth plugin (never declared by the client)."""

    uid: int
    user: str
    admin_level: str = "none"   # one of ADMIN_LEVELS
    via: str = ""               # how it was established: "token", "root-key", ...

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
