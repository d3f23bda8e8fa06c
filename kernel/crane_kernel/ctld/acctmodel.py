"""The records of the account database: QoS, accounts, users and their memberships.

Plain data, no behaviour beyond small lookups: :mod:`crane_kernel.ctld.accounts` keeps them
(validation, changes, the journal, the transaction log) and :mod:`crane_kernel.ctld.limits`
enforces the QoS limits with them. ``None`` means *unlimited* for every limit; the RPC layer
maps it to upstream's sentinels (see ``crane.proto``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

UNLIMITED_QOS = "UNLIMITED"
"""The built-in QoS every cluster has (CraneSched's): no limits, priority 0; it cannot be deleted."""

FLAG_DENY_ON_LIMIT = 1
"""QoS flag: a job over one of the QoS's per-job limits is refused at submission instead of pending."""


@dataclass
class Qos:
    """A quality of service: a priority and the limits its jobs share."""

    name: str
    description: str = ""
    priority: int = 0
    max_jobs_per_user: int | None = None          # running jobs of one user
    max_jobs_per_account: int | None = None       # running jobs of one account
    max_jobs: int | None = None                   # running jobs in the QoS
    max_submit_jobs_per_user: int | None = None   # pending + running jobs of one user
    max_submit_jobs_per_account: int | None = None
    max_submit_jobs: int | None = None
    max_cpus_per_user: float | None = None        # CPUs of one user's running jobs
    max_time_limit_per_job: int | None = None     # seconds
    max_wall: int | None = None                   # seconds, per job (Slurm's MaxWall)
    flags: int = 0                                # FLAG_DENY_ON_LIMIT
    preempt: list[str] = field(default_factory=list)
    preempt_mode: str = "OFF"                     # OFF | CANCEL | REQUEUE | SUSPEND

    @property
    def deny_on_limit(self) -> bool:
        """True when per-job limit violations are refused at submission (flag ``DenyOnLimit``)."""
        return bool(self.flags & FLAG_DENY_ON_LIMIT)

    @property
    def per_job_time_cap(self) -> int | None:
        """The tighter of ``max_time_limit_per_job`` and ``max_wall`` (seconds), or None."""
        caps = [c for c in (self.max_time_limit_per_job, self.max_wall) if c is not None]
        return min(caps) if caps else None


@dataclass
class Account:
    """A node of the account tree."""

    name: str
    description: str = ""
    parent: str = ""                                          # "" for a top-level account
    allowed_partitions: list[str] = field(default_factory=list)  # empty = every partition
    default_qos: str = ""
    allowed_qos: list[str] = field(default_factory=list)      # empty = only the default QoS (or none)
    coordinators: list[str] = field(default_factory=list)     # user names
    blocked: bool = False


@dataclass
class Member:
    """A user's membership of one account (CraneSched's per-account user entry)."""

    account: str
    blocked: bool = False
    allowed_partitions: list[str] = field(default_factory=list)  # empty = the account's partitions
    allowed_qos: list[str] = field(default_factory=list)         # empty = the account's QoS list
    default_qos: str = ""                                        # "" = the account's default QoS


@dataclass
class User:
    """A Unix user known to the account database."""

    name: str
    uid: int
    default_account: str = ""
    admin_level: str = "none"                                    # ADMIN_LEVELS
    members: dict[str, Member] = field(default_factory=dict)     # account name -> membership

    def coordinated(self, accounts: dict[str, Account]) -> list[str]:
        """The accounts this user coordinates (directly; sub-accounts are added by the account book)."""
        return [a.name for a in accounts.values() if self.name in a.coordinators]


def to_json(record: Qos | Account | User) -> dict[str, Any]:
    """The record as a JSON-able dict (the journal's form)."""
    return asdict(record)


def user_from_json(data: dict[str, Any]) -> User:
    """Rebuild a :class:`User` (with its memberships) from :func:`to_json`'s form."""
    members = {name: Member(**m) for name, m in data.get("members", {}).items()}
    return User(**{**data, "members": members})
