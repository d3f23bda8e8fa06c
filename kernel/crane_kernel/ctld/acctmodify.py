"""``cacctmgr modify`` and ``block`` for the :class:`~crane_kernel.ctld.accounts.AccountBook`.

Every item of one request is applied to copies of the named records, the whole database is
checked again (:meth:`~crane_kernel.ctld.acctcheck.Checker.everything`: a change to a parent can
break a child or a member), and only then is the result journaled, with one log row per record:
all items for all names apply, or none.
"""

from __future__ import annotations

import copy
from typing import Any

from crane_kernel.ctld import acctedit as ed
from crane_kernel.ctld.acctcheck import E
from crane_kernel.errors import AccountRejected

ModifyItem = tuple[str, str, list[str]]  # (field, "=" | "+=" | "-=", values)
MAX_INFO = 500


def summary(items: list[ModifyItem], prefix: str = "") -> str:
    """A short ``Field=value`` summary of a change, for the transaction log."""
    text = " ".join(f"{f}{op}{','.join(str(v) for v in vals)}" for f, op, vals in items)
    text = (prefix + " " + text).strip()
    return text if len(text) <= MAX_INFO else text[:MAX_INFO - 3] + "..."


class ModifyMixin:
    """Modify accounts, users and QoS; block and unblock accounts and users."""

    accounts: dict[str, Any]
    users: dict[str, Any]
    qos: dict[str, Any]

    def modify_accounts(self, names: list[str], items: list[ModifyItem], actor: str) -> None:
        """Apply ``items`` to every named account, together or not at all."""
        self._modify_records("accounts", ed.ACCOUNT_FIELDS, "account", E.INVALID_ACCOUNT, "ModifyAccount",
                             names, items, actor)

    def _modify_records(self, table: str, fields: Any, label: str, missing: int, action: str,
                        names: list[str], items: list[ModifyItem], actor: str) -> None:
        """Modify accounts or QoS (``table``): every item on a copy of every record, checked, then committed."""
        if not items:
            raise AccountRejected("nothing to modify", E.INVALID_PARAM)
        records = dict(getattr(self, table))
        changes = []
        for name in names:
            if name not in records:
                raise AccountRejected(f"{label} '{name}' does not exist", missing)
            rec = copy.deepcopy(records[name])
            for field, op, values in items:
                attr, kind = ed.lookup(fields, field, label)
                ed.apply_item(rec, attr, kind, field, op, values)
            records[name] = rec
            changes.append((action, name, summary(items)))
        self._checker(**{table: records}).everything()
        self._commit(actor, changes, put=[records[n] for n in dict.fromkeys(names)])

    def modify_users(self, names: list[str], account: str, items: list[ModifyItem], actor: str) -> None:
        """Apply ``items`` to every named user (membership fields: in ``account``, "" = the default one)."""
        if not items:
            raise AccountRejected("nothing to modify", E.INVALID_PARAM)
        users = dict(self.users)
        changes = []
        for name in names:
            if name not in users:
                raise AccountRejected(f"user '{name}' is not in the account database", E.INVALID_USER)
            user = copy.deepcopy(users[name])
            acct = account or user.default_account
            for field, op, values in items:
                attr, kind = ed.lookup(ed.USER_FIELDS, field, "user")
                where, attr = attr.split(".", 1)
                if where == "member":
                    if acct not in user.members:
                        raise AccountRejected(f"user '{name}' is not in account '{acct}'", E.USER_ACCOUNT_MISMATCH)
                    ed.apply_item(user.members[acct], attr, kind, field, op, values)
                else:
                    ed.apply_item(user, attr, kind, field, op, values)
            users[name] = user
            changes.append(("ModifyUser", name, summary(items, f"account={acct}")))
        self._checker(users=users).everything()
        self._commit(actor, changes, put=[users[n] for n in dict.fromkeys(names)])

    def modify_qos(self, names: list[str], items: list[ModifyItem], actor: str) -> None:
        """Apply ``items`` to every named QoS, together or not at all."""
        self._modify_records("qos", ed.QOS_FIELDS, "QoS", E.INVALID_QOS, "ModifyQos", names, items, actor)

    def block(self, kind: str, names: list[str], block: bool, actor: str, account: str = "") -> None:
        """Block (or unblock) accounts, or users in one account ("" = each user's default account)."""
        put: dict[str, Any] = {}
        changes = []
        for name in names:
            if kind == "account":
                if name not in self.accounts:
                    raise AccountRejected(f"account '{name}' does not exist", E.INVALID_ACCOUNT)
                acc = put.get(name) or copy.deepcopy(self.accounts[name])
                acc.blocked = block
                put[name] = acc
                changes.append(("BlockAccount", name, f"blocked={str(block).lower()}"))
            else:
                if name not in self.users:
                    raise AccountRejected(f"user '{name}' is not in the account database", E.INVALID_USER)
                user = put.get(name) or copy.deepcopy(self.users[name])
                acct = account or user.default_account
                if acct not in user.members:
                    raise AccountRejected(f"user '{name}' is not in account '{acct}'", E.USER_ACCOUNT_MISMATCH)
                user.members[acct].blocked = block
                put[name] = user
                changes.append(("BlockUser", name, f"account={acct} blocked={str(block).lower()}"))
        self._commit(actor, changes, put=list(put.values()))

    # provided by AccountBook
    def _checker(self, **kw: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _commit(self, actor: str, changes: list, put: Any = (), drop: Any = ()) -> None:  # pragma: no cover
        raise NotImplementedError
