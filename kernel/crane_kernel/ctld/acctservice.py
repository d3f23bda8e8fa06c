"""The account-database RPCs of cranectld (``cacctmgr``): authorization and protobuf conversion.

Mixed into :class:`~crane_kernel.ctld.service.CraneCtldService`. Every handler authenticates the
call (the identity enriched from the account database), builds the
:class:`~crane_kernel.auth_types.AcctTarget` the ``rbac`` rules need, asks ``crane_authorize``
and calls the :class:`~crane_kernel.ctld.accounts.AccountBook` under the controller lock. A
refusal is a reply with ``ok=false``, a CraneSched ErrCode and a one-line reason, never a
traceback; ``ERR_PERMISSION_DENIED`` (54), or ``ERR_USER_NO_PRIVILEGE`` (66) for a caller with no
privilege at all (a plain user who coordinates nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crane_common.proto import crane_pb2 as pb

from crane_kernel.auth_types import ADMIN_LEVELS, AcctTarget, Identity
from crane_kernel.ctld import acctedit as ed
from crane_kernel.ctld.acctcheck import E
from crane_kernel.ctld.acctmodel import Account, Qos
from crane_kernel.ctld.rpcguard import guarded
from crane_kernel.errors import AccountRejected

U32_UNLIMITED = 4294967295
TIME_UNLIMITED = 315576000000
CPUS_UNLIMITED = 1e13
_OPS = {0: ed.OVERWRITE, 1: ed.ADD, 2: ed.DELETE}
_COUNTS = ("max_jobs_per_user", "max_jobs_per_account", "max_jobs", "max_submit_jobs_per_user",
           "max_submit_jobs_per_account", "max_submit_jobs")


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:1000]


def qos_info(q: Qos) -> Any:
    """A QoS as ``QosInfo`` (None as upstream's sentinels)."""
    info = pb.QosInfo(name=q.name, description=q.description, priority=q.priority, flags=q.flags,
                      preempt=list(q.preempt), preempt_mode=getattr(pb, f"PREEMPT_MODE_{q.preempt_mode}"),
                      max_cpus_per_user=CPUS_UNLIMITED if q.max_cpus_per_user is None else q.max_cpus_per_user,
                      max_time_limit_per_job=TIME_UNLIMITED if q.max_time_limit_per_job is None
                      else q.max_time_limit_per_job, max_wall=q.max_wall or 0)
    for name in _COUNTS:
        value = getattr(q, name)
        setattr(info, name, U32_UNLIMITED if value is None else value)
    return info


def qos_from_info(info: Any) -> Qos:
    """A new QoS from ``QosInfo``: 0 or the sentinel is unlimited (an unset field), as for ``max_wall``."""
    q = Qos(name=info.name, description=info.description, priority=info.priority, flags=info.flags,
            preempt=list(info.preempt), max_wall=info.max_wall or None,
            preempt_mode=pb.PreemptMode.Name(info.preempt_mode).removeprefix("PREEMPT_MODE_"),
            max_time_limit_per_job=info.max_time_limit_per_job
            if 0 < info.max_time_limit_per_job < TIME_UNLIMITED else None,
            max_cpus_per_user=info.max_cpus_per_user if 0 < info.max_cpus_per_user < CPUS_UNLIMITED else None)
    for name in _COUNTS:
        value = getattr(info, name)
        setattr(q, name, value if 0 < value < U32_UNLIMITED else None)
    return q


def _items(items: Any) -> list[tuple[str, str, list[str]]]:
    return [(i.field, _OPS.get(i.operation, "?"), list(i.values)) for i in items]


class AccountServiceMixin:
    """The cacctmgr RPCs."""

    ctl: Any
    _identity: Callable[..., Identity]

    # -- helpers -----------------------------------------------------------------
    def _deny(self, ident: Identity, action: str, target: AcctTarget) -> tuple[int, str] | None:
        """None when ``ident`` may do ``action`` on ``target``, else ``(code, reason)``."""
        if self.ctl._authorized(ident, action, target):
            return None
        what = f"{target.kind} '{target.name}'" if target.name else target.kind
        if not ident.is_admin and not ident.coordinated:
            return E.USER_NO_PRIVILEGE, f"Permission denied: {ident.user} has no privilege for {action} on {what}"
        return E.PERMISSION_DENIED, f"Permission denied: {ident.user} may not {action} on {what}"

    def _user_target(self, name: str, accounts: tuple[str, ...], new_level: str = "") -> AcctTarget:
        u = self.ctl.accounts.users.get(name)
        return AcctTarget("user", name, account=accounts[0] if accounts else "", accounts=accounts,
                          level=u.admin_level if u else "none", new_level=new_level)

    def _account_target(self, name: str, new_parent: str | None = None, fields: tuple[str, ...] = (),
                        block: bool | None = None) -> AcctTarget:
        acc = self.ctl.accounts.accounts.get(name)
        return AcctTarget("account", name, account=name, parent=acc.parent if acc else "", new_parent=new_parent,
                          fields=fields, block=block)

    def _single(self, reply: type, context: Any, method: str, action: str, target: Callable[[], AcctTarget],
                change: Callable[[Identity], None]) -> Any:
        """An Add* call: authorize, change, reply ``(ok, code, reason)``."""
        ident = self._identity(context, method)
        with self.ctl.lock:
            try:
                denied = self._deny(ident, action, target())
                if denied:
                    return reply(ok=False, code=denied[0], reason=denied[1])
                change(ident)
            except AccountRejected as exc:
                return reply(ok=False, code=exc.code, reason=_line(exc))
        return reply(ok=True)

    def _each(self, reply: type, context: Any, method: str, names: list[str], action: str,
              target: Callable[[str], AcctTarget], change: Callable[[Identity, str], None]) -> Any:
        """A Delete* call: every name on its own (authorized, changed or refused); ``RichError`` per refusal."""
        ident = self._identity(context, method)
        if not names:
            return reply(ok=False, rich_error_list=[pb.RichError(code=E.INVALID_PARAM, description="no name given")])
        errors = []
        with self.ctl.lock:
            for name in dict.fromkeys(names):
                try:
                    denied = self._deny(ident, action, target(name))
                    if denied:
                        errors.append(pb.RichError(code=denied[0], description=denied[1]))
                        continue
                    change(ident, name)
                except AccountRejected as exc:
                    errors.append(pb.RichError(code=exc.code, description=_line(exc)))
        return reply(ok=not errors, rich_error_list=errors)

    def _all(self, reply: type, context: Any, method: str, names: list[str], action: str,
             target: Callable[[str], AcctTarget], change: Callable[[Identity], None]) -> Any:
        """A Modify*/Block call: every name authorized first, then one change for all, or none."""
        ident = self._identity(context, method)
        if not names:
            return reply(ok=False, rich_error_list=[pb.RichError(code=E.INVALID_PARAM, description="no name given")])
        with self.ctl.lock:
            try:
                errors = [pb.RichError(code=d[0], description=d[1])
                          for d in (self._deny(ident, action, target(n)) for n in dict.fromkeys(names)) if d]
                if errors:
                    return reply(ok=False, rich_error_list=errors)
                change(ident)
            except AccountRejected as exc:
                return reply(ok=False, rich_error_list=[pb.RichError(code=exc.code, description=_line(exc))])
        return reply(ok=True)

    # -- add ---------------------------------------------------------------------
    @guarded
    def AddAccount(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Add an account (admins; a coordinator of its parent)."""
        a = request.account
        acc = Account(name=a.name, description=a.description, parent=a.parent_account,
                      allowed_partitions=list(a.allowed_partitions), default_qos=a.default_qos,
                      allowed_qos=list(a.allowed_qos_list), coordinators=list(a.coordinators))
        return self._single(pb.AddAccountReply, context, "AddAccount", "account.add",
                            lambda: AcctTarget("account", a.name, account=a.name, parent=a.parent_account),
                            lambda ident: self.ctl.accounts.add_account(acc, ident.user))

    @guarded
    def AddUser(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Add a user to an account (admins, operators; a coordinator of the account)."""
        r = request
        level = ADMIN_LEVELS[r.admin_level] if 0 <= r.admin_level < len(ADMIN_LEVELS) else "none"
        return self._single(
            pb.AddUserReply, context, "AddUser", "user.add",
            lambda: self._user_target(r.name, (r.account,), "" if level == "none" else level),
            lambda ident: self.ctl.accounts.add_user(r.name, r.account, ident.user, list(r.partitions), level,
                                                     r.coordinator))

    @guarded
    def AddQos(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Add a QoS (admins)."""
        q = request.qos
        return self._single(pb.AddQosReply, context, "AddQos", "qos.add", lambda: AcctTarget("qos", q.name),
                            lambda ident: self.ctl.accounts.add_qos(qos_from_info(q), ident.user))

    # -- delete ------------------------------------------------------------------
    @guarded
    def DeleteAccount(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Delete accounts (admins; a coordinator of the parent)."""
        return self._each(pb.DeleteAccountReply, context, "DeleteAccount", list(request.names), "account.delete",
                          self._account_target,
                          lambda ident, n: self.ctl.accounts.delete_account(n, ident.user, request.force))

    @guarded
    def DeleteUser(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Remove users from an account or from all (admins, operators; a coordinator of the account(s))."""
        book = self.ctl.accounts

        def target(name: str) -> AcctTarget:
            u = book.users.get(name)
            accounts = (request.account,) if request.account else tuple(sorted(u.members) if u else ())
            return self._user_target(name, accounts)

        return self._each(pb.DeleteUserReply, context, "DeleteUser", list(request.names), "user.delete", target,
                          lambda ident, n: book.delete_user(n, request.account, ident.user, request.force))

    @guarded
    def DeleteQos(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Delete QoS (admins)."""
        return self._each(pb.DeleteQosReply, context, "DeleteQos", list(request.names), "qos.delete",
                          lambda n: AcctTarget("qos", n),
                          lambda ident, n: self.ctl.accounts.delete_qos(n, ident.user))

    # -- modify and block --------------------------------------------------------
    @guarded
    def ModifyAccount(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Modify accounts (admins; a coordinator of the account or an ancestor; re-parenting within their tree)."""
        items = _items(request.items)

        def target(name: str) -> AcctTarget:
            parents = [ed.one_value("Parent", vals) for f, _op, vals in items if ed.field_key(f) == "parent"]
            fields = tuple(dict.fromkeys(ed.lookup(ed.ACCOUNT_FIELDS, f, "account")[0] for f, _op, _v in items))
            return self._account_target(name, parents[-1] if parents else None, fields)

        return self._all(pb.ModifyAccountReply, context, "ModifyAccount", list(request.names), "account.modify",
                         target,
                         lambda ident: self.ctl.accounts.modify_accounts(list(request.names), items, ident.user))

    @guarded
    def ModifyUser(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Modify users (admins, operators; a coordinator of the account; no level at or above one's own)."""
        book = self.ctl.accounts
        items = _items(request.items)

        def target(name: str) -> AcctTarget:
            levels = [ed.parse_level(ed.one_value("AdminLevel", v)) for f, _o, v in items
                      if ed.field_key(f) == "adminlevel"]
            defaults = [ed.one_value("DefaultAccount", v) for f, _o, v in items if ed.field_key(f) == "defaultaccount"]
            u = book.users.get(name)
            acct = request.account or (u.default_account if u else "")
            return self._user_target(name, tuple(dict.fromkeys([acct, *defaults])), levels[-1] if levels else "")

        return self._all(pb.ModifyUserReply, context, "ModifyUser", list(request.names), "user.modify", target,
                         lambda ident: book.modify_users(list(request.names), request.account, items, ident.user))

    @guarded
    def ModifyQos(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Modify QoS (admins)."""
        items = _items(request.items)
        return self._all(pb.ModifyQosReply, context, "ModifyQos", list(request.names), "qos.modify",
                         lambda n: AcctTarget("qos", n),
                         lambda ident: self.ctl.accounts.modify_qos(list(request.names), items, ident.user))

    @guarded
    def BlockAccountOrUser(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Block or unblock accounts, or users in one account."""
        book = self.ctl.accounts
        names = list(request.entity_list)
        if request.entity_type == pb.Account:
            return self._all(pb.BlockAccountOrUserReply, context, "BlockAccountOrUser", names, "account.block",
                             lambda n: self._account_target(n, block=request.block),
                             lambda ident: book.block("account", names, request.block, ident.user))

        def target(name: str) -> AcctTarget:
            u = book.users.get(name)
            return self._user_target(name, (request.account or (u.default_account if u else ""),))

        return self._all(pb.BlockAccountOrUserReply, context, "BlockAccountOrUser", names, "user.block", target,
                         lambda ident: book.block("user", names, request.block, ident.user, request.account))

    # -- queries -----------------------------------------------------------------
    @guarded
    def QueryAccountInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Accounts (all, or the named ones); anyone authenticated."""
        ident = self._identity(context, "QueryAccountInfo")
        book = self.ctl.accounts
        denied = self._deny(ident, "account.query", AcctTarget("account"))
        if denied:
            return pb.QueryAccountInfoReply(ok=False, rich_error_list=[pb.RichError(code=denied[0],
                                                                                    description=denied[1])])
        out, errors = [], []
        with self.ctl.lock:
            names = list(dict.fromkeys(request.account_list)) or sorted(book.accounts)
            for name in names:
                a = book.accounts.get(name)
                if a is None:
                    errors.append(pb.RichError(code=E.INVALID_ACCOUNT, description=f"account '{name}' does not exist"))
                    continue
                out.append(pb.AccountInfo(
                    name=a.name, description=a.description, users=book.members(name),
                    child_accounts=book.children(name), parent_account=a.parent,
                    allowed_partitions=a.allowed_partitions, default_qos=a.default_qos,
                    allowed_qos_list=a.allowed_qos, coordinators=a.coordinators, blocked=a.blocked))
        return pb.QueryAccountInfoReply(ok=not errors, account_list=out, rich_error_list=errors)

    @guarded
    def QueryUserInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Users, one entry per membership (all, or the named users; optionally of one account)."""
        ident = self._identity(context, "QueryUserInfo")
        book = self.ctl.accounts
        denied = self._deny(ident, "user.query", AcctTarget("user"))
        if denied:
            return pb.QueryUserInfoReply(ok=False, rich_error_list=[pb.RichError(code=denied[0],
                                                                                 description=denied[1])])
        out, errors = [], []
        with self.ctl.lock:
            check = book._checker()
            everything = sorted(p.name for p in self.ctl.cfg.Partitions)
            names = list(dict.fromkeys(request.user_list)) or sorted(book.users)
            for name in names:
                u = book.users.get(name)
                if u is None:
                    errors.append(pb.RichError(code=E.INVALID_USER,
                                               description=f"user '{name}' is not in the account database"))
                    continue
                coordinates = sorted(a.name for a in book.accounts.values() if name in a.coordinators)
                for acct, m in sorted(u.members.items()):
                    if request.account and acct != request.account:
                        continue
                    parts = check.member_partitions(m)
                    acc = book.accounts.get(acct)
                    default = m.default_qos or (acc.default_qos if acc else "")
                    qos = check.member_qos(m)
                    out.append(pb.UserInfo(
                        uid=u.uid, name=u.name, account=acct, blocked=m.blocked,
                        allowed_partition_qos_list=[
                            pb.UserInfo.AllowedPartitionQos(partition_name=p, qos_list=qos, default_qos=default)
                            for p in (sorted(parts) if parts is not None else everything)],
                        coordinator_accounts=coordinates, admin_level=ADMIN_LEVELS.index(u.admin_level),
                        is_default_account=acct == u.default_account))
        return pb.QueryUserInfoReply(ok=not errors, user_list=out, rich_error_list=errors)

    @guarded
    def QueryQosInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        """QoS (all, or the named ones)."""
        ident = self._identity(context, "QueryQosInfo")
        book = self.ctl.accounts
        denied = self._deny(ident, "qos.query", AcctTarget("qos"))
        if denied:
            return pb.QueryQosInfoReply(ok=False, rich_error_list=[pb.RichError(code=denied[0],
                                                                                description=denied[1])])
        out, errors = [], []
        with self.ctl.lock:
            for name in list(dict.fromkeys(request.qos_list)) or sorted(book.qos):
                q = book.qos.get(name)
                if q is None:
                    errors.append(pb.RichError(code=E.INVALID_QOS, description=f"QoS '{name}' does not exist"))
                else:
                    out.append(qos_info(q))
        return pb.QueryQosInfoReply(ok=not errors, qos_list=out, rich_error_list=errors)

    @guarded
    def QueryTxnLog(self, request: Any, context: Any) -> Any:  # noqa: N802
        """The transaction log (operators and above), oldest first."""
        ident = self._identity(context, "QueryTxnLog")
        denied = self._deny(ident, "txn.query", AcctTarget("txn"))
        if denied:
            return pb.QueryTxnLogReply(ok=False, code=denied[0])
        r = request
        if r.action and r.action not in pb.TxnAction.keys():
            return pb.QueryTxnLogReply(ok=False, code=E.INVALID_PARAM)
        rows = self.ctl.accounts.txns(r.actor, r.target, r.action, r.start_time, r.end_time, r.max_lines)
        return pb.QueryTxnLogReply(ok=True, txn_log_list=[
            pb.Txn(actor=actor, target=target, action=pb.TxnAction.Value(action), info=info, creation_time=int(t))
            for t, actor, action, target, info in rows])
