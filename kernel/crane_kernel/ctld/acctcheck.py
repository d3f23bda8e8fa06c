"""The consistency rules of the account database, checked on a (proposed) set of records.

A :class:`Checker` works on dicts of records that may be the book's own or copies with a change
applied, so a change is checked before anything is written. What an account or a membership may
use is *effective*: an empty partition list means the parent's (at the top: every partition), an
empty QoS list means only the default QoS (or none); a membership's empty lists mean the account's.
"""

from __future__ import annotations

from crane_kernel.config import ClusterConfig
from crane_kernel.ctld.acctmodel import Account, Member, Qos, User
from crane_kernel.errors import AccountRejected


class E:
    """CraneSched's ErrCode numbers the account database uses (``crane.proto``)."""

    INVALID_USER = 3
    BLOCKED_USER = 5
    USER_ALREADY_EXISTS = 6
    INVALID_ADMIN_LEVEL = 8
    USER_ACCOUNT_MISMATCH = 9
    NO_ACCOUNT_SPECIFIED = 10
    INVALID_ACCOUNT = 11
    ACCOUNT_ALREADY_EXISTS = 12
    INVALID_PARENT_ACCOUNT = 13
    ACCOUNT_HAS_CHILDREN = 14
    BLOCKED_ACCOUNT = 15
    INVALID_PARTITION = 16
    PARTITION_MISSING = 17
    PARENT_ACCOUNT_PARTITION_MISSING = 19
    INVALID_QOS = 24
    QOS_REFERENCES_EXIST = 26
    CONVERT_TO_INTEGER = 27
    QOS_ALREADY_EXISTS = 30
    PARENT_ACCOUNT_QOS_MISSING = 31
    SET_DEFAULT_QOS = 37
    UPDATE_DATABASE = 39
    INVALID_PARAM = 52
    PERMISSION_DENIED = 54
    USER_NO_PRIVILEGE = 66
    INVALID_USERNAME = 77
    USER_HAS_JOB = 98


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


class Checker:
    """The rules, over one set of records."""

    def __init__(self, cfg: ClusterConfig, accounts: dict[str, Account], users: dict[str, User],
                 qos: dict[str, Qos], partitions: frozenset[str] | None = None) -> None:
        self.cfg = cfg
        self.accounts = accounts
        self.users = users
        self.qos = qos
        self.partitions = partitions if partitions is not None else frozenset(p.name for p in cfg.Partitions)

    # -- names -------------------------------------------------------------------
    def name(self, name: str, what: str) -> None:
        """A name as job names are (no control characters, at most ``MaxNameBytes``), not empty, no comma."""
        limit = self.cfg.CraneCtld.MaxNameBytes
        if not isinstance(name, str) or not name.strip():
            raise AccountRejected(f"a {what} name is required", E.INVALID_PARAM)
        if len(name.encode("utf-8", "surrogatepass")) > limit:
            raise AccountRejected(f"{what} name is longer than {limit} bytes", E.INVALID_PARAM)
        if _has_control(name) or "," in name or name != name.strip():
            raise AccountRejected(f"{what} name {name[:64]!r} contains a control character, a comma or "
                                  "surrounding blanks", E.INVALID_PARAM)

    # -- what an account or membership may use ------------------------------------
    def account_partitions(self, acc: Account | None) -> set[str] | None:
        """The partitions an account may use (None: every partition)."""
        seen: set[str] = set()
        while acc is not None and acc.name not in seen:
            if acc.allowed_partitions:
                return set(acc.allowed_partitions)
            seen.add(acc.name)
            acc = self.accounts.get(acc.parent) if acc.parent else None
        return None

    def account_qos(self, acc: Account | None) -> list[str]:
        """The QoS an account allows (its list, else just its default QoS)."""
        if acc is None:
            return []
        return list(acc.allowed_qos) or ([acc.default_qos] if acc.default_qos else [])

    def member_partitions(self, m: Member) -> set[str] | None:
        """The partitions a membership may use (None: every partition)."""
        return set(m.allowed_partitions) if m.allowed_partitions else self.account_partitions(
            self.accounts.get(m.account))

    def member_qos(self, m: Member) -> list[str]:
        """The QoS a membership may use."""
        if m.allowed_qos:
            return list(m.allowed_qos)
        return self.account_qos(self.accounts.get(m.account))

    # -- rules ---------------------------------------------------------------------
    def _partitions_exist(self, names: list[str], who: str) -> None:
        for p in names:
            if p not in self.partitions:
                raise AccountRejected(f"{who}: partition '{p}' does not exist", E.INVALID_PARTITION)

    def _qos_exist(self, names: list[str], who: str) -> None:
        for q in names:
            if q and q not in self.qos:
                raise AccountRejected(f"{who}: QoS '{q}' does not exist", E.INVALID_QOS)

    def account(self, acc: Account) -> None:
        """An account's own rules and those against its parent."""
        who = f"account '{acc.name}'"
        parent = None
        if acc.parent:
            parent = self.accounts.get(acc.parent)
            if parent is None:
                raise AccountRejected(f"{who}: parent account '{acc.parent}' does not exist",
                                      E.INVALID_PARENT_ACCOUNT)
            seen, up = {acc.name}, parent
            while up is not None:
                if up.name in seen:
                    raise AccountRejected(f"{who}: parent '{acc.parent}' is inside its own tree",
                                          E.INVALID_PARENT_ACCOUNT)
                seen.add(up.name)
                up = self.accounts.get(up.parent) if up.parent else None
        self._partitions_exist(acc.allowed_partitions, who)
        self._qos_exist([*acc.allowed_qos, acc.default_qos], who)
        if acc.default_qos and acc.allowed_qos and acc.default_qos not in acc.allowed_qos:
            raise AccountRejected(f"{who}: default QoS '{acc.default_qos}' is not in its allowed QoS list",
                                  E.SET_DEFAULT_QOS)
        if parent is not None:
            pparts = self.account_partitions(parent)
            missing = [p for p in acc.allowed_partitions if pparts is not None and p not in pparts]
            if missing:
                raise AccountRejected(f"{who}: parent '{parent.name}' does not allow partition(s) "
                                      f"{', '.join(missing)}", E.PARENT_ACCOUNT_PARTITION_MISSING)
            pqos = self.account_qos(parent)
            missing = [q for q in self.account_qos(acc) if q not in pqos]
            if missing:
                raise AccountRejected(f"{who}: parent '{parent.name}' does not allow QoS {', '.join(missing)}",
                                      E.PARENT_ACCOUNT_QOS_MISSING)
        for user in acc.coordinators:
            if user not in self.users:
                raise AccountRejected(f"{who}: coordinator '{user}' is not in the account database", E.INVALID_USER)

    def member(self, m: Member, user: str = "") -> None:
        """A membership's rules against its account."""
        acc = self.accounts.get(m.account)
        who = f"user '{user}' in account '{m.account}'" if user else f"account '{m.account}' membership"
        if acc is None:
            raise AccountRejected(f"{who}: account does not exist", E.INVALID_ACCOUNT)
        self._partitions_exist(m.allowed_partitions, who)
        aparts = self.account_partitions(acc)
        missing = [p for p in m.allowed_partitions if aparts is not None and p not in aparts]
        if missing:
            raise AccountRejected(f"{who}: the account does not allow partition(s) {', '.join(missing)}",
                                  E.PARENT_ACCOUNT_PARTITION_MISSING)
        self._qos_exist([*m.allowed_qos, m.default_qos], who)
        aqos = self.account_qos(acc)
        missing = [q for q in m.allowed_qos if q not in aqos]
        if missing:
            raise AccountRejected(f"{who}: the account does not allow QoS {', '.join(missing)}",
                                  E.PARENT_ACCOUNT_QOS_MISSING)
        if m.default_qos and m.default_qos not in self.member_qos(m):
            raise AccountRejected(f"{who}: default QoS '{m.default_qos}' is not allowed", E.SET_DEFAULT_QOS)

    def user(self, u: User) -> None:
        """A user's memberships and default account."""
        for m in u.members.values():
            self.member(m, u.name)
        if u.members and u.default_account not in u.members:
            raise AccountRejected(f"user '{u.name}': default account '{u.default_account}' is not one of "
                                  "their accounts", E.USER_ACCOUNT_MISMATCH)

    def qos_record(self, q: Qos) -> None:
        """A QoS's own rules (the QoS it may preempt exist)."""
        self._qos_exist(list(q.preempt), f"QoS '{q.name}'")
        if q.name in q.preempt:
            raise AccountRejected(f"QoS '{q.name}' cannot preempt itself", E.INVALID_PARAM)

    def everything(self) -> None:
        """Every account (parents first is not needed: each is checked against its parent), user and QoS."""
        for acc in self.accounts.values():
            self.account(acc)
        for u in self.users.values():
            self.user(u)
        for q in self.qos.values():
            self.qos_record(q)

    def qos_references(self, name: str) -> list[str]:
        """What refers to QoS ``name``: accounts, memberships and other QoS (``kind 'x'`` strings)."""
        refs = [f"account '{a.name}'" for a in self.accounts.values()
                if name in a.allowed_qos or a.default_qos == name]
        refs += [f"user '{u.name}'" for u in self.users.values()
                 if any(name in m.allowed_qos or m.default_qos == name for m in u.members.values())]
        refs += [f"QoS '{q.name}'" for q in self.qos.values() if name in q.preempt]
        return refs
