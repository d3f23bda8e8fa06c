"""The account database of the controller: QoS, the account tree, users and their memberships.

The :class:`AccountBook` keeps the records of :mod:`crane_kernel.ctld.acctmodel` in memory and in
the journal (``acct_records``, one JSON row per record, and the ``acct_txn`` log; see
:class:`~crane_kernel.ctld.store.StateStore`). Every change is validated on copies first, then the
changed records and the change's log row are written in one store transaction, then the copies
replace the records in memory: a refused change changes nothing, and memory and journal never
disagree. Refusals are :class:`~crane_kernel.errors.AccountRejected` with CraneSched's ErrCode.

The controller calls :meth:`AccountBook.resolve` for every submitted job (``Accounting.Enforce``
decides what it checks), and the limits module reads :meth:`qos_of` and subscribes to
:attr:`listeners`. The caller holds the controller lock; the book has no lock of its own.
docs/accounts.md describes the model, the rules and the codes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import pwd
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

from crane_kernel.auth_types import Identity
from crane_kernel.config import ClusterConfig
from crane_kernel.ctld import acctedit as ed
from crane_kernel.ctld.acctcheck import Checker, E
from crane_kernel.ctld.acctmodel import UNLIMITED_QOS, Account, Member, Qos, User, to_json, user_from_json
from crane_kernel.ctld.acctmodify import ModifyMixin
from crane_kernel.ctld.store import StateStore
from crane_kernel.errors import AccountRejected

log = logging.getLogger("cranectld.accounts")

Record = Qos | Account | User


def _kind(record: Record) -> str:
    return "qos" if isinstance(record, Qos) else "account" if isinstance(record, Account) else "user"


class AccountBook(ModifyMixin):
    """QoS, accounts and users; every change validated, journaled with its log row, then applied."""

    def __init__(self, cfg: ClusterConfig, store: StateStore, clock: Callable[[], float] = time.time,
                 has_jobs: Callable[[str, str], bool] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.has_jobs: Callable[[str, str], bool] = has_jobs or (lambda _user, _account: False)
        self.enforce: frozenset[str] = frozenset(cfg.Accounting.Enforce)
        self._partitions = frozenset(p.name for p in cfg.Partitions)
        self.listeners: list[Callable[[str, str], None]] = []
        self.qos: dict[str, Qos] = {UNLIMITED_QOS: Qos(UNLIMITED_QOS, description="built-in: no limits")}
        self.accounts: dict[str, Account] = {}
        self.users: dict[str, User] = {}
        self._coordinated: dict[str, frozenset[str]] = {}
        self._children: dict[str, list[str]] = {}
        self._members: dict[str, list[str]] = {}
        self.load()

    # -- journal ---------------------------------------------------------------
    def load(self) -> None:
        """Read every record from the journal (at start)."""
        for kind, name, data in self.store.acct_records():
            if kind == "qos":
                self.qos[name] = Qos(**data)
            elif kind == "account":
                self.accounts[name] = Account(**data)
            elif kind == "user":
                self.users[name] = user_from_json(data)
        self._reindex()

    def _commit(self, actor: str, changes: list[tuple[str, str, str]], put: Iterable[Record] = (),
                drop: Iterable[tuple[str, str]] = ()) -> None:
        """Write records and log rows ``(action, target, info)`` in one transaction, then apply them."""
        put, drop = list(put), list(drop)
        now = self.clock()
        try:
            self.store.acct_write(
                [(_kind(r), r.name, json.dumps(to_json(r), separators=(",", ":"))) for r in put], drop,
                [(now, actor, action, target, info) for action, target, info in changes])
        except (OSError, sqlite3.Error) as exc:  # nothing was written (rolled back) and nothing is applied
            log.error("account database: cannot write the journal: %s", exc)
            raise AccountRejected(f"cannot write the journal: {exc}", E.UPDATE_DATABASE) from None
        tables: dict[str, dict[str, Any]] = {"qos": self.qos, "account": self.accounts, "user": self.users}
        for r in put:
            tables[_kind(r)][r.name] = r
        for kind, name in drop:
            tables[kind].pop(name, None)
        self._reindex()
        for kind, name in dict.fromkeys([(_kind(r), r.name) for r in put] + drop):
            for listener in list(self.listeners):
                try:
                    listener(kind, name)
                except Exception:  # a subscriber's bug must not undo a committed change
                    log.exception("account listener failed on %s %s", kind, name)

    def _reindex(self) -> None:
        """Children, members and coordinated accounts (with their sub-accounts), from the records."""
        children: dict[str, list[str]] = {}
        for a in self.accounts.values():
            if a.parent:
                children.setdefault(a.parent, []).append(a.name)
        members: dict[str, list[str]] = {}
        for u in self.users.values():
            for acct in u.members:
                members.setdefault(acct, []).append(u.name)
        coordinated: dict[str, set[str]] = {}
        for a in self.accounts.values():
            for user in a.coordinators:
                coordinated.setdefault(user, set()).update(self.subtree(a.name, children))
        self._children, self._members = children, members
        self._coordinated = {u: frozenset(s) for u, s in coordinated.items()}

    # -- lookups ---------------------------------------------------------------
    def qos_of(self, name: str) -> Qos | None:
        """The QoS called ``name``, or None."""
        return self.qos.get(name)

    def level_of(self, user: str) -> str | None:
        """The user's admin level in the database, or None when the user is not in it."""
        u = self.users.get(user)
        return u.admin_level if u is not None else None

    def coordinated(self, user: str) -> frozenset[str]:
        """The accounts ``user`` coordinates, with all their sub-accounts."""
        return self._coordinated.get(user, frozenset())

    def enrich(self, ident: Identity) -> Identity:
        """``ident`` with the database's admin level (when the user is in it) and coordinated accounts.

        A uid-0 root identity stays root. A database user whose uid is not the caller's grants
        nothing (no level, no coordination): names are matched only together with their uid.
        Two dict lookups: this runs on every RPC.
        """
        u = self.users.get(ident.user)
        if u is not None and u.uid != ident.uid:
            return dataclasses.replace(ident, admin_level="none", coordinated=frozenset()) \
                if ident.admin_level != "root" else ident
        coordinated = self._coordinated.get(ident.user, frozenset())
        level = ident.admin_level if u is None or (ident.uid == 0 and ident.admin_level == "root") \
            else u.admin_level
        if level == ident.admin_level and coordinated == ident.coordinated:
            return ident
        return dataclasses.replace(ident, admin_level=level, coordinated=coordinated)

    def children(self, account: str) -> list[str]:
        """The direct sub-accounts of ``account``."""
        return sorted(self._children.get(account, ()))

    def members(self, account: str) -> list[str]:
        """The users directly in ``account``."""
        return sorted(self._members.get(account, ()))

    def ancestors(self, account: str) -> list[str]:
        """The parent of ``account``, its parent, ... up to the top (cycles cannot exist)."""
        out: list[str] = []
        acc = self.accounts.get(account)
        while acc is not None and acc.parent and acc.parent not in out:
            out.append(acc.parent)
            acc = self.accounts.get(acc.parent)
        return out

    def subtree(self, account: str, children: dict[str, list[str]] | None = None) -> list[str]:
        """``account`` and every account below it."""
        children = self._children if children is None else children
        out, todo = [], [account]
        while todo:
            name = todo.pop()
            if name not in out:
                out.append(name)
                todo.extend(children.get(name, ()))
        return out

    def _checker(self, accounts: dict[str, Account] | None = None, users: dict[str, User] | None = None,
                 qos: dict[str, Qos] | None = None) -> Checker:
        return Checker(self.cfg, self.accounts if accounts is None else accounts,
                       self.users if users is None else users, self.qos if qos is None else qos, self._partitions)

    def txns(self, actor: str = "", target: str = "", action: str = "", start: float = 0, end: float = 0,
             limit: int = 0) -> list[tuple[float, str, str, str, str]]:
        """Transaction-log rows ``(time, actor, action, target, info)``, oldest first (see the store)."""
        return self.store.acct_txns(actor, target, action, start, end, limit)

    # -- submission ------------------------------------------------------------
    def resolve(self, user: str, uid: int, account: str, partition: str, qos: str) -> tuple[str, str]:
        """The ``(account, qos)`` a job of ``user`` gets; refuse it as ``Accounting.Enforce`` says."""
        enforce = self.enforce
        if not enforce:
            return account, qos
        u = self.users.get(user)
        check = self._checker()
        if "associations" in enforce:
            if u is None:
                raise AccountRejected(f"user '{user}' is not in the account database", E.INVALID_USER)
            account = account or u.default_account
            member = u.members.get(account)
            if member is None or account not in self.accounts:
                raise AccountRejected(f"user '{user}' is not in account '{account}'", E.USER_ACCOUNT_MISMATCH)
            for name in (account, *self.ancestors(account)):  # .get: submit reads without the controller lock
                if getattr(self.accounts.get(name), "blocked", False):
                    raise AccountRejected(f"account '{name}' is blocked", E.BLOCKED_ACCOUNT)
            if member.blocked:
                raise AccountRejected(f"user '{user}' is blocked in account '{account}'", E.BLOCKED_USER)
            parts = check.member_partitions(member)
            if parts is not None and partition not in parts:
                raise AccountRejected(f"partition '{partition}' is not allowed for user '{user}' in account "
                                      f"'{account}'", E.PARTITION_MISSING)
        if "qos" in enforce or "limits" in enforce:
            acc = self.accounts.get(account)
            member = u.members.get(account) if u is not None else None
            if not qos:
                qos = (member.default_qos if member else "") or (acc.default_qos if acc else "")
            if qos:
                if qos not in self.qos:
                    raise AccountRejected(f"QoS '{qos}' does not exist", E.INVALID_QOS)
                allowed = check.member_qos(member) if member else check.account_qos(acc) if acc else None
                if allowed is not None and qos not in allowed:
                    raise AccountRejected(f"QoS '{qos}' is not allowed for account '{account}'", E.INVALID_QOS)
        return account, qos

    # -- adding ----------------------------------------------------------------
    def add_qos(self, qos: Qos, actor: str) -> None:
        """Add a QoS (``ERR_QOS_ALREADY_EXISTS`` for a known name)."""
        self._checker().name(qos.name, "QoS")
        if qos.name in self.qos:
            raise AccountRejected(f"QoS '{qos.name}' already exists", E.QOS_ALREADY_EXISTS)
        qos = copy.deepcopy(qos)
        qos.preempt_mode = ed.parse_mode(qos.preempt_mode)
        self._checker(qos={**self.qos, qos.name: qos}).qos_record(qos)
        self._commit(actor, [("AddQos", qos.name, f"priority={qos.priority}")], put=[qos])

    def add_account(self, acc: Account, actor: str) -> None:
        """Add an account under its parent (or at the top)."""
        check = self._checker()
        check.name(acc.name, "account")
        if acc.name in self.accounts:
            raise AccountRejected(f"account '{acc.name}' already exists", E.ACCOUNT_ALREADY_EXISTS)
        acc = copy.deepcopy(acc)
        acc.blocked = False
        for user in acc.coordinators:
            if user not in self.users:
                raise AccountRejected(f"coordinator '{user}' is not in the account database", E.INVALID_USER)
        check = self._checker(accounts={**self.accounts, acc.name: acc})
        check.account(acc)
        info = f"parent={acc.parent or '-'} partitions={','.join(acc.allowed_partitions) or '*'}"
        self._commit(actor, [("AddAccount", acc.name, info + f" qos={','.join(acc.allowed_qos)}")], put=[acc])

    def add_user(self, name: str, account: str, actor: str, partitions: Iterable[str] = (),
                 level: str = "none", coordinator: bool = False) -> None:
        """Add a Unix user to an account (a second account adds a membership; the first is the default)."""
        self._checker().name(name, "user")
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            raise AccountRejected(f"'{name}' is not a Unix user on the controller host", E.INVALID_USERNAME) from None
        if not account:
            raise AccountRejected("an account is required to add a user", E.NO_ACCOUNT_SPECIFIED)
        acc = self.accounts.get(account)
        if acc is None:
            raise AccountRejected(f"account '{account}' does not exist", E.INVALID_ACCOUNT)
        level = ed.parse_level(level or "none")
        user = copy.deepcopy(self.users.get(name)) or User(name=name, uid=uid, admin_level=level)
        if account in user.members:
            raise AccountRejected(f"user '{name}' is already in account '{account}'", E.USER_ALREADY_EXISTS)
        if level != "none":
            user.admin_level = level
        member = Member(account=account, allowed_partitions=list(ed.split_values(list(partitions))))
        user.members[account] = member
        user.default_account = user.default_account or account
        put: list[Record] = [user]
        accounts = self.accounts
        if coordinator and name not in acc.coordinators:
            acc = copy.deepcopy(acc)
            acc.coordinators.append(name)
            accounts = {**accounts, account: acc}
            put.append(acc)
        self._checker(accounts=accounts, users={**self.users, name: user}).member(member)
        info = f"account={account} level={user.admin_level}" + (" coordinator" if coordinator else "")
        self._commit(actor, [("AddUser", name, info)], put=put)

    # -- deleting ----------------------------------------------------------------
    def delete_qos(self, name: str, actor: str) -> None:
        """Delete a QoS nothing refers to (UNLIMITED never)."""
        if name == UNLIMITED_QOS:
            raise AccountRejected(f"the built-in QoS {UNLIMITED_QOS} cannot be deleted", E.INVALID_QOS)
        if name not in self.qos:
            raise AccountRejected(f"QoS '{name}' does not exist", E.INVALID_QOS)
        refs = self._checker().qos_references(name)
        if refs:
            raise AccountRejected(f"QoS '{name}' is still used by {', '.join(refs[:5])}", E.QOS_REFERENCES_EXIST)
        self._commit(actor, [("DeleteQos", name, "")], drop=[("qos", name)])

    def delete_account(self, name: str, actor: str, force: bool = False) -> None:
        """Delete an account without sub-accounts; with users in it only when ``force`` (they leave it)."""
        acc = self.accounts.get(name)
        if acc is None:
            raise AccountRejected(f"account '{name}' does not exist", E.INVALID_ACCOUNT)
        if self._children.get(name):
            raise AccountRejected(f"account '{name}' has sub-accounts ({', '.join(self.children(name)[:5])})",
                                  E.ACCOUNT_HAS_CHILDREN)
        users = self.members(name)
        if users and not force:
            raise AccountRejected(f"account '{name}' still has users ({', '.join(users[:5])}); delete them "
                                  "first or force", E.ACCOUNT_HAS_CHILDREN)
        put, drop = self._leave(users, [name], force)
        put = [r for r in put if not (isinstance(r, Account) and r.name == name)]
        self._commit(actor, [("DeleteAccount", name, f"users={','.join(users)}" if users else "")],
                     put=put, drop=[*drop, ("account", name)])

    def delete_user(self, name: str, account: str, actor: str, force: bool = False) -> None:
        """Remove a user from one account, or from all (``account`` empty: the user leaves the database)."""
        user = self.users.get(name)
        if user is None:
            raise AccountRejected(f"user '{name}' is not in the account database", E.INVALID_USER)
        if account and account not in user.members:
            raise AccountRejected(f"user '{name}' is not in account '{account}'", E.USER_ACCOUNT_MISMATCH)
        put, drop = self._leave([name], sorted(user.members) if not account else [account], force)
        self._commit(actor, [("DeleteUser", name, f"account={account or '*'}")], put=put, drop=drop)

    def _leave(self, users: list[str], accounts: list[str], force: bool) -> tuple[list[Record], list[tuple[str, str]]]:
        """The records after ``users`` leave ``accounts`` (a user left with no account leaves the database).

        Refuses ``ERR_USER_HAS_JOB`` for a user with pending or running jobs in one of them unless ``force``.
        """
        put: dict[tuple[str, str], Record] = {}
        drop: list[tuple[str, str]] = []
        for name in users:
            u = copy.deepcopy(self.users[name])
            for acct in accounts:
                if not force and self.has_jobs(name, acct):
                    raise AccountRejected(f"user '{name}' has pending or running jobs in account '{acct}' "
                                          "(force to remove anyway)", E.USER_HAS_JOB)
                u.members.pop(acct, None)
            gone = set(accounts) if u.members else set(self.accounts)  # coordinator of what they leave
            for acct in sorted(gone):
                a = put.get(("account", acct)) or self.accounts.get(acct)
                if a is not None and name in a.coordinators:
                    a = copy.deepcopy(a)
                    a.coordinators.remove(name)
                    put[("account", acct)] = a
            if not u.members:
                drop.append(("user", name))
                continue
            if u.default_account not in u.members:
                u.default_account = sorted(u.members)[0]
            put[("user", name)] = u
        return list(put.values()), drop
