"""The account database (ctld/accounts.py): each rule and its code, atomic changes, the log, the journal, resolve()."""

from __future__ import annotations

import os
import pwd
import sqlite3
from typing import Any

import pytest
from crane_kernel.auth_types import Identity
from crane_kernel.config import parse_config
from crane_kernel.ctld.accounts import AccountBook
from crane_kernel.ctld.acctcheck import E
from crane_kernel.ctld.acctmodel import UNLIMITED_QOS, Account, Qos
from crane_kernel.ctld.store import StateStore
from crane_kernel.errors import AccountRejected

# real Unix users of every Debian system (add_user looks the uid up)
ALICE, BOB, CAROL = "daemon", "bin", "sys"


class Env:
    """A config, a store and a book; :meth:`reopen` starts a new book on a reopened journal."""

    def __init__(self, tmp_path: Any, enforce: list[str]) -> None:
        self.path = str(tmp_path / "state.db")
        self.cfg = parse_config({
            "ClusterName": "unit", "CraneBaseDir": str(tmp_path), "RedisUrl": "redis://127.0.0.1:1/0",
            "Nodes": [{"name": "cn[01-02]", "cpu": 4, "memory": "8G"}],
            "Partitions": [{"name": "debug", "nodes": "ALL"}, {"name": "gpu", "nodes": "cn01"}],
            "Accounting": {"Enforce": enforce}})
        self.jobs: set[tuple[str, str]] = set()
        self.store = StateStore(self.path)
        self.now = 1000.0
        self.book = self._book()

    def _book(self) -> AccountBook:
        return AccountBook(self.cfg, self.store, clock=lambda: self.now,
                           has_jobs=lambda user, account: (user, account) in self.jobs)

    def reopen(self) -> AccountBook:
        self.store.close()
        self.store = StateStore(self.path)
        self.book = self._book()
        return self.book


@pytest.fixture
def env(tmp_path: Any) -> Any:
    made: list[Env] = []

    def make(enforce: list[str] | None = None) -> Env:
        e = Env(tmp_path / f"e{len(made)}", enforce or [])
        made.append(e)
        return e

    yield make
    for e in made:
        e.store.close()


def tree(b: AccountBook) -> AccountBook:
    """QoS normal/high, accounts phys (normal, high; default normal) > hep (debug only), alice in hep."""
    b.add_qos(Qos("normal"), "root")
    b.add_qos(Qos("high", priority=100), "root")
    b.add_account(Account("phys", allowed_qos=["normal", "high"], default_qos="normal"), "root")
    b.add_account(Account("hep", parent="phys", allowed_partitions=["debug"], allowed_qos=["normal"],
                          default_qos="normal"), "root")
    b.add_user(ALICE, "hep", "root")
    return b


def code(call: Any, *args: Any, **kw: Any) -> int:
    with pytest.raises(AccountRejected) as err:
        call(*args, **kw)
    assert "\n" not in str(err.value) and str(err.value)
    return err.value.code


# -- adding -------------------------------------------------------------------------
def test_unlimited_is_built_in_and_cannot_be_deleted(env: Any) -> None:
    b = env().book
    assert b.qos_of(UNLIMITED_QOS) is not None and b.qos_of("nope") is None
    assert code(b.delete_qos, UNLIMITED_QOS, "root") == E.INVALID_QOS


def test_add_account_rules(env: Any) -> None:
    b = tree(env().book)
    assert code(b.add_account, Account("phys"), "root") == E.ACCOUNT_ALREADY_EXISTS
    assert code(b.add_account, Account("x", parent="nope"), "root") == E.INVALID_PARENT_ACCOUNT
    assert code(b.add_account, Account("x", allowed_partitions=["nope"]), "root") == E.INVALID_PARTITION
    assert code(b.add_account, Account("x", parent="hep", allowed_partitions=["gpu"]), "root") == \
        E.PARENT_ACCOUNT_PARTITION_MISSING
    assert code(b.add_account, Account("x", allowed_qos=["nope"]), "root") == E.INVALID_QOS
    assert code(b.add_account, Account("x", allowed_qos=["normal"], default_qos="high"), "root") == E.SET_DEFAULT_QOS
    assert code(b.add_account, Account("x", parent="hep", allowed_qos=["high"]), "root") == \
        E.PARENT_ACCOUNT_QOS_MISSING
    for bad in ("", "a\nb", "a,b", "x" * 300, " pad"):
        assert code(b.add_account, Account(bad), "root") == E.INVALID_PARAM
    assert "x" not in b.accounts
    b.add_account(Account("x", parent="hep"), "root")  # inherits hep's partitions
    assert b.children("hep") == ["x"] and b.ancestors("x") == ["hep", "phys"]


def test_add_user_rules(env: Any) -> None:
    b = tree(env().book)
    assert code(b.add_user, "no-such-unix-user", "hep", "root") == E.INVALID_USERNAME
    assert code(b.add_user, BOB, "", "root") == E.NO_ACCOUNT_SPECIFIED
    assert code(b.add_user, BOB, "nope", "root") == E.INVALID_ACCOUNT
    assert code(b.add_user, ALICE, "hep", "root") == E.USER_ALREADY_EXISTS
    assert code(b.add_user, BOB, "hep", "root", partitions=["gpu"]) == E.PARENT_ACCOUNT_PARTITION_MISSING
    assert code(b.add_user, BOB, "hep", "root", level="emperor") == E.INVALID_ADMIN_LEVEL
    assert BOB not in b.users
    b.add_user(ALICE, "phys", "root", coordinator=True, level="operator")
    alice = b.users[ALICE]
    assert alice.default_account == "hep" and set(alice.members) == {"hep", "phys"}
    assert alice.uid == pwd.getpwnam(ALICE).pw_uid
    assert b.level_of(ALICE) == "operator" and b.level_of(BOB) is None
    assert b.coordinated(ALICE) == {"phys", "hep"} and b.coordinated(BOB) == frozenset()
    assert b.members("phys") == [ALICE] and b.accounts["phys"].coordinators == [ALICE]


def test_add_qos_rules(env: Any) -> None:
    b = tree(env().book)
    assert code(b.add_qos, Qos("normal"), "root") == E.QOS_ALREADY_EXISTS
    assert code(b.add_qos, Qos("p", preempt=["nope"]), "root") == E.INVALID_QOS
    assert code(b.add_qos, Qos("p", preempt_mode="sometimes"), "root") == E.INVALID_PARAM
    b.add_qos(Qos("p", preempt=["normal"], preempt_mode="requeue"), "root")
    assert b.qos["p"].preempt_mode == "REQUEUE"


# -- deleting -----------------------------------------------------------------------
def test_delete_account_rules(env: Any) -> None:
    b = tree(env().book)
    assert code(b.delete_account, "nope", "root") == E.INVALID_ACCOUNT
    assert code(b.delete_account, "phys", "root") == E.ACCOUNT_HAS_CHILDREN
    assert code(b.delete_account, "hep", "root") == E.ACCOUNT_HAS_CHILDREN  # alice is in it
    b.add_user(ALICE, "phys", "root")
    b.delete_account("hep", "root", force=True)
    assert "hep" not in b.accounts and set(b.users[ALICE].members) == {"phys"}
    assert b.users[ALICE].default_account == "phys"
    b.delete_account("phys", "root", force=True)
    assert ALICE not in b.users and not b.accounts  # no account left: she leaves the database


def test_delete_user_rules_and_jobs(env: Any) -> None:
    e = env()
    b = tree(e.book)
    b.add_user(ALICE, "phys", "root", coordinator=True)
    assert code(b.delete_user, BOB, "", "root") == E.INVALID_USER
    assert code(b.delete_user, ALICE, "nope", "root") == E.USER_ACCOUNT_MISMATCH
    e.jobs.add((ALICE, "hep"))
    assert code(b.delete_user, ALICE, "hep", "root") == E.USER_HAS_JOB
    assert code(b.delete_user, ALICE, "", "root") == E.USER_HAS_JOB
    b.delete_user(ALICE, "phys", "root")
    assert set(b.users[ALICE].members) == {"hep"} and b.accounts["phys"].coordinators == []
    assert b.coordinated(ALICE) == frozenset()
    b.delete_user(ALICE, "hep", "root", force=True)
    assert ALICE not in b.users


def test_delete_qos_references(env: Any) -> None:
    b = tree(env().book)
    assert code(b.delete_qos, "nope", "root") == E.INVALID_QOS
    assert code(b.delete_qos, "high", "root") == E.QOS_REFERENCES_EXIST  # phys allows it
    b.add_qos(Qos("low"), "root")
    b.add_qos(Qos("top", preempt=["low"]), "root")
    assert code(b.delete_qos, "low", "root") == E.QOS_REFERENCES_EXIST  # top preempts it
    b.delete_qos("top", "root")
    b.delete_qos("low", "root")
    assert "low" not in b.qos


# -- modify and block ------------------------------------------------------------------
def test_modify_qos_fields(env: Any) -> None:
    b = tree(env().book)
    b.modify_qos(["normal"], [("maxjobsperuser", "=", ["4"]), ("MaxWall", "=", ["1-00:00:00"]),
                              ("MaxTimeLimitPerJob", "=", ["90"]), ("MaxCpusPerUser", "=", ["2.5"]),
                              ("Flags", "=", ["DenyOnLimit"]), ("Priority", "=", ["7"]),
                              ("Preempt", "+=", ["high"]), ("PreemptMode", "=", ["cancel"]),
                              ("Description", "=", ["the usual"])], "root")
    q = b.qos_of("normal")
    assert (q.max_jobs_per_user, q.max_wall, q.max_time_limit_per_job, q.max_cpus_per_user) == (4, 86400, 5400, 2.5)
    assert q.deny_on_limit and q.priority == 7 and q.preempt == ["high"] and q.preempt_mode == "CANCEL"
    assert q.per_job_time_cap == 5400
    b.modify_qos(["normal"], [("MaxJobsPerUser", "=", ["-1"]), ("MaxWall", "=", ["unlimited"]),
                              ("Flags", "=", ["None"]), ("Preempt", "-=", ["high"])], "root")
    q = b.qos_of("normal")
    assert q.max_jobs_per_user is None and q.max_wall is None and not q.deny_on_limit and q.preempt == []
    assert code(b.modify_qos, ["normal"], [("MaxJobs", "=", ["many"])], "root") == E.CONVERT_TO_INTEGER
    assert code(b.modify_qos, ["normal"], [("MaxWall", "=", ["soon"])], "root") == E.CONVERT_TO_INTEGER
    assert code(b.modify_qos, ["normal"], [("Colour", "=", ["red"])], "root") == E.INVALID_PARAM
    assert code(b.modify_qos, ["normal"], [("MaxJobs", "+=", ["1"])], "root") == E.INVALID_PARAM
    assert code(b.modify_qos, ["nope"], [("MaxJobs", "=", ["1"])], "root") == E.INVALID_QOS


def test_modify_is_all_or_nothing(env: Any) -> None:
    e = env()
    b = tree(e.book)
    before = len(b.txns())
    seen: list = []
    b.listeners.append(lambda kind, name: seen.append((kind, name)))
    assert code(b.modify_qos, ["normal", "high"], [("MaxJobs", "=", ["3"]), ("MaxSubmitJobs", "=", ["x"])],
                "root") == E.CONVERT_TO_INTEGER
    assert b.qos["normal"].max_jobs is None and b.qos["high"].max_jobs is None
    assert code(b.modify_qos, ["normal", "nope"], [("MaxJobs", "=", ["3"])], "root") == E.INVALID_QOS
    assert b.qos["normal"].max_jobs is None and len(b.txns()) == before and seen == []
    b.modify_qos(["normal", "high"], [("MaxJobs", "=", ["3"]), ("MaxSubmitJobs", "=", ["9"])], "root")
    assert b.qos["high"].max_submit_jobs == 9 and seen == [("qos", "normal"), ("qos", "high")]
    assert e.reopen().qos["high"].max_submit_jobs == 9


def test_modify_account_fields_and_tree_rules(env: Any) -> None:
    b = tree(env().book)
    b.add_user(BOB, "phys", "root")
    b.modify_accounts(["phys"], [("Description", "=", ["physics"]), ("AllowedQosList", "-=", ["high"]),
                                 ("Coordinators", "+=", [BOB])], "root")
    phys = b.accounts["phys"]
    assert phys.description == "physics" and phys.allowed_qos == ["normal"] and phys.coordinators == [BOB]
    assert b.coordinated(BOB) == {"phys", "hep"}
    # a parent cannot drop what a child uses; a default QoS must stay allowed
    assert code(b.modify_accounts, ["phys"], [("AllowedPartitions", "=", ["gpu"])], "root") == \
        E.PARENT_ACCOUNT_PARTITION_MISSING
    assert code(b.modify_accounts, ["phys"], [("DefaultQos", "=", ["high"])], "root") == E.SET_DEFAULT_QOS
    assert code(b.modify_accounts, ["phys"], [("Parent", "=", ["hep"])], "root") == E.INVALID_PARENT_ACCOUNT
    assert code(b.modify_accounts, ["phys"], [("Coordinator", "+=", [CAROL])], "root") == E.INVALID_USER
    assert code(b.modify_accounts, ["phys"], [("Blocked", "=", ["yes"])], "root") == E.INVALID_PARAM
    assert code(b.modify_accounts, ["phys"], [], "root") == E.INVALID_PARAM
    b.add_account(Account("chem", allowed_qos=["normal"]), "root")
    b.modify_accounts(["hep"], [("parent", "=", ["chem"])], "root")
    assert b.ancestors("hep") == ["chem"] and b.children("phys") == []


def test_modify_user_fields(env: Any) -> None:
    b = tree(env().book)
    b.add_user(ALICE, "phys", "root")
    b.modify_users([ALICE], "phys", [("AllowedQos", "=", ["high"]), ("DefaultQos", "=", ["high"]),
                                     ("AllowedPartition", "=", ["gpu"]), ("AdminLevel", "=", ["Operator"])], "root")
    m = b.users[ALICE].members["phys"]
    assert m.allowed_qos == ["high"] and m.default_qos == "high" and m.allowed_partitions == ["gpu"]
    assert b.level_of(ALICE) == "operator"
    b.modify_users([ALICE], "", [("DefaultAccount", "=", ["phys"])], "root")
    assert b.users[ALICE].default_account == "phys"
    assert code(b.modify_users, [ALICE], "", [("DefaultAccount", "=", ["nope"])], "root") == E.USER_ACCOUNT_MISMATCH
    assert code(b.modify_users, [ALICE], "hep", [("AllowedQos", "=", ["high"])], "root") == \
        E.PARENT_ACCOUNT_QOS_MISSING
    assert code(b.modify_users, [ALICE], "hep", [("DefaultQos", "=", ["high"])], "root") == E.SET_DEFAULT_QOS
    assert code(b.modify_users, [ALICE], "chem", [("DefaultQos", "=", ["high"])], "root") == E.USER_ACCOUNT_MISMATCH
    assert code(b.modify_users, [BOB], "", [("AdminLevel", "=", ["admin"])], "root") == E.INVALID_USER
    assert code(b.modify_users, [ALICE], "", [("AdminLevel", "=", ["god"])], "root") == E.INVALID_ADMIN_LEVEL


def test_block_and_unblock(env: Any) -> None:
    b = tree(env().book)
    b.block("account", ["phys"], True, "root")
    assert b.accounts["phys"].blocked
    b.block("user", [ALICE], True, "root")  # in her default account
    assert b.users[ALICE].members["hep"].blocked
    assert code(b.block, "user", [ALICE], True, "root", account="phys") == E.USER_ACCOUNT_MISMATCH
    assert code(b.block, "account", ["nope"], True, "root") == E.INVALID_ACCOUNT
    assert code(b.block, "user", [BOB], True, "root") == E.INVALID_USER
    b.block("account", ["phys"], False, "root")
    assert not b.accounts["phys"].blocked


# -- the log and the journal --------------------------------------------------------------
def test_txn_log(env: Any) -> None:
    e = env()
    b = tree(e.book)
    e.now = 2000.0
    b.modify_qos(["normal"], [("MaxJobs", "=", ["2"])], "carol")
    rows = b.txns()
    assert [r[2] for r in rows] == ["AddQos", "AddQos", "AddAccount", "AddAccount", "AddUser", "ModifyQos"]
    assert rows[-1] == (2000.0, "carol", "ModifyQos", "normal", "MaxJobs=2")
    assert [r[3] for r in b.txns(actor="carol")] == ["normal"]
    assert [r[2] for r in b.txns(target="hep")] == ["AddAccount"]
    assert len(b.txns(action="AddQos")) == 2 and len(b.txns(start=1500)) == 1 and len(b.txns(end=1500)) == 5
    assert [r[2] for r in b.txns(limit=2)] == ["AddUser", "ModifyQos"]
    assert "account=hep" in b.txns(action="AddUser")[0][4]


def test_everything_survives_a_reopen(env: Any) -> None:
    e = env()
    b = tree(e.book)
    b.add_user(BOB, "phys", "root", coordinator=True, level="operator")
    b.block("user", [ALICE], True, "root")
    b.modify_qos(["high"], [("MaxWall", "=", ["2:00:00"])], "root")
    logged = b.txns()
    again = e.reopen()
    assert again.qos == b.qos and again.accounts == b.accounts and again.users == b.users
    assert again.coordinated(BOB) == {"phys", "hep"} and again.level_of(BOB) == "operator"
    assert again.txns() == logged


def test_a_failed_write_changes_nothing(env: Any) -> None:
    e = env()
    b = tree(e.book)

    def broken(*_a: Any) -> None:
        raise OSError("disk full")

    e.store.acct_write = broken
    assert code(b.modify_qos, ["normal"], [("MaxJobs", "=", ["1"])], "root") == E.UPDATE_DATABASE
    assert b.qos["normal"].max_jobs is None


def test_listener_errors_do_not_undo_a_change(env: Any) -> None:
    b = tree(env().book)
    b.listeners.append(lambda kind, name: 1 / 0)
    b.add_qos(Qos("extra"), "root")
    assert "extra" in b.qos


# -- resolve ------------------------------------------------------------------------------
def test_resolve_not_enforced_changes_nothing(env: Any) -> None:
    b = env([]).book
    assert b.resolve("ghost", 9999, "any", "debug", "whatever") == ("any", "whatever")
    assert b.enforce == frozenset()


def test_resolve_associations(env: Any) -> None:
    b = tree(env(["associations"]).book)
    b.add_user(ALICE, "phys", "root")
    r = b.resolve
    assert r(ALICE, 1, "", "debug", "") == ("hep", "")  # default account; QoS not enforced
    assert r(ALICE, 1, "phys", "gpu", "anything") == ("phys", "anything")
    assert code(r, BOB, 2, "", "debug", "") == E.INVALID_USER
    assert code(r, ALICE, 1, "chem", "debug", "") == E.USER_ACCOUNT_MISMATCH
    assert code(r, ALICE, 1, "hep", "gpu", "") == E.PARTITION_MISSING
    b.block("account", ["phys"], True, "root")
    assert code(r, ALICE, 1, "hep", "debug", "") == E.BLOCKED_ACCOUNT  # a blocked ancestor
    b.block("account", ["phys"], False, "root")
    b.block("user", [ALICE], True, "root", account="hep")
    assert code(r, ALICE, 1, "hep", "debug", "") == E.BLOCKED_USER
    assert r(ALICE, 1, "phys", "debug", "") == ("phys", "")


@pytest.mark.parametrize("mode", ["qos", "limits"])
def test_resolve_qos(env: Any, mode: str) -> None:
    b = tree(env([mode]).book)
    b.add_user(ALICE, "phys", "root")
    r = b.resolve
    assert r(ALICE, 1, "hep", "debug", "") == ("hep", "normal")  # the account's default
    assert r(ALICE, 1, "phys", "debug", "high") == ("phys", "high")
    assert code(r, ALICE, 1, "hep", "debug", "high") == E.INVALID_QOS  # not allowed in hep
    assert code(r, ALICE, 1, "hep", "debug", "nope") == E.INVALID_QOS  # unknown
    assert code(r, ALICE, 1, "hep", "debug", UNLIMITED_QOS) == E.INVALID_QOS  # only when listed
    b.modify_users([ALICE], "phys", [("DefaultQos", "=", ["high"])], "root")
    assert r(ALICE, 1, "phys", "debug", "") == ("phys", "high")  # the membership's default
    assert r("ghost", 5, "", "debug", "") == ("", "")  # associations not enforced: not in the DB is fine
    assert r("ghost", 5, "", "debug", UNLIMITED_QOS) == ("", UNLIMITED_QOS)


def test_resolve_everything(env: Any) -> None:
    b = tree(env(["associations", "qos", "limits"]).book)
    assert b.resolve(ALICE, 1, "", "debug", "") == ("hep", "normal")
    assert code(b.resolve, ALICE, 1, "", "gpu", "") == E.PARTITION_MISSING


def test_enrich_identity(env: Any) -> None:
    b = tree(env().book)
    b.add_user(BOB, "phys", "root", coordinator=True)
    alice = Identity(1, ALICE, "admin")
    assert b.enrich(alice).admin_level == "none"  # the database's level wins over the token's
    b.modify_users([ALICE], "", [("AdminLevel", "=", ["operator"])], "root")
    assert b.enrich(Identity(1, ALICE)).admin_level == "operator"
    bob = b.enrich(Identity(2, BOB))
    assert bob.coordinated == {"phys", "hep"} and bob.admin_level == "none"
    impostor = b.enrich(Identity(4242, BOB, "operator"))  # bob's name with another uid: grants nothing
    assert impostor.coordinated == frozenset() and impostor.admin_level == "none"
    assert b.enrich(Identity(4242, ALICE)).admin_level == "none"
    stranger = Identity(3, CAROL, "operator")
    assert b.enrich(stranger) is stranger
    b.add_user("root", "phys", "root")
    assert b.enrich(Identity(0, "root", "root")).admin_level == "root"


def test_records_and_log_rows_commit_together(env: Any) -> None:
    e = env()
    with pytest.raises(sqlite3.IntegrityError):  # a log row that cannot be written takes its record with it
        e.store.acct_write([("qos", "x", "{}")], [], [(None, "root", "AddQos", "x", "")])
    assert e.store.acct_records() == [] and e.store.acct_txns() == []
    assert oct(os.stat(e.path).st_mode & 0o777) == "0o600"
