"""The cacctmgr RPCs through the real gRPC service over TLS, with real tokens and the rbac plugin.

A real :class:`~crane_kernel.ctld.core.Controller` (the ``ctld`` harness) is served by
:class:`~crane_kernel.ctld.service.CraneCtldService` behind the server credentials cranectld builds
from ``CraneCtld.Tls`` (certificates from ``crane certs``); each caller presents a token signed
by the cluster key, as the CLIs do.
"""

from __future__ import annotations

import pwd
from typing import Any

import grpc
import pytest
from crane_common.proto import crane_pb2 as pb
from crane_kernel.auth_types import Identity
from tlsapi import TlsApi

ALICE, BOB, CAROL, DAVE = (pwd.getpwnam(n) for n in ("daemon", "bin", "sys", "sync"))
BASE = {"Partitions": [{"name": "debug", "nodes": "ALL"}, {"name": "gpu", "nodes": "cn01"}],
        "Auth": {"Admins": ["root"]}, "CraneCtld": {"Tls": {"Cert": "tls/cranectld.crt", "Key": "tls/cranectld.key"}}}
OK = pb.SUCCESS


class Api(TlsApi):
    """The service on a local TLS port; :meth:`md` gives a caller's metadata."""


@pytest.fixture
def make_api(ctld: Any) -> Any:
    made: list[Api] = []

    def make(extra: dict[str, Any] | None = None) -> Api:
        h = ctld({**BASE, **(extra or {})})
        h.register_all()
        api = Api(h)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


ROOT = None


def item(field: str, *values: str, op: int = 0) -> Any:
    return pb.ModifyItem(field=field, operation=op, values=list(values))


def setup_db(api: Api) -> None:
    """QoS normal, accounts phys > hep, alice in hep, carol coordinator of phys (as root, through the RPCs)."""
    s, md = api.stub, api.md(ROOT)
    assert s.AddQos(pb.AddQosRequest(qos=pb.QosInfo(name="normal", priority=10)), metadata=md).ok
    assert s.AddAccount(pb.AddAccountRequest(account=pb.AccountInfo(
        name="phys", allowed_qos_list=["normal"], default_qos="normal")), metadata=md).ok
    assert s.AddAccount(pb.AddAccountRequest(account=pb.AccountInfo(
        name="hep", parent_account="phys", allowed_partitions=["debug"], default_qos="normal")), metadata=md).ok
    assert s.AddUser(pb.AddUserRequest(name=ALICE.pw_name, account="hep"), metadata=md).ok
    assert s.AddUser(pb.AddUserRequest(name=CAROL.pw_name, account="phys", coordinator=True), metadata=md).ok


def test_add_query_modify_and_the_txn_log(make_api: Any) -> None:
    api = make_api()
    setup_db(api)
    s, md = api.stub, api.md(ROOT)
    accts = {a.name: a for a in s.QueryAccountInfo(pb.QueryAccountInfoRequest(), metadata=md).account_list}
    assert accts["phys"].child_accounts == ["hep"] and accts["phys"].coordinators == [CAROL.pw_name]
    assert accts["hep"].parent_account == "phys" and accts["hep"].users == [ALICE.pw_name]
    assert list(accts["hep"].allowed_partitions) == ["debug"]
    (alice,) = s.QueryUserInfo(pb.QueryUserInfoRequest(user_list=[ALICE.pw_name]), metadata=md).user_list
    assert (alice.uid, alice.account, alice.is_default_account, alice.admin_level) == \
        (ALICE.pw_uid, "hep", True, pb.UserInfo.AdminLevel.Value("None"))
    assert [(p.partition_name, p.default_qos) for p in alice.allowed_partition_qos_list] == [("debug", "normal")]
    (carol,) = s.QueryUserInfo(pb.QueryUserInfoRequest(user_list=[CAROL.pw_name]), metadata=md).user_list
    assert list(carol.coordinator_accounts) == ["phys"]
    assert [p.partition_name for p in carol.allowed_partition_qos_list] == ["debug", "gpu"]
    qos = {q.name: q for q in s.QueryQosInfo(pb.QueryQosInfoRequest(), metadata=md).qos_list}
    n = qos["normal"]
    assert (n.priority, n.max_jobs_per_user, n.max_wall, n.max_time_limit_per_job, n.max_cpus_per_user) == \
        (10, 4294967295, 0, 315576000000, 1e13)
    assert "UNLIMITED" in qos
    r = s.ModifyQos(pb.ModifyEntityRequest(names=["normal"], items=[item("MaxJobsPerUser", "3"),
                                                                      item("MaxWall", "2:00:00")]), metadata=md)
    assert r.ok, r
    (n,) = s.QueryQosInfo(pb.QueryQosInfoRequest(qos_list=["normal"]), metadata=md).qos_list
    assert (n.max_jobs_per_user, n.max_wall) == (3, 7200)
    log = s.QueryTxnLog(pb.QueryTxnLogRequest(), metadata=md)
    assert log.ok and [t.action for t in log.txn_log_list] == [
        pb.AddQos, pb.AddAccount, pb.AddAccount, pb.AddUser, pb.AddUser, pb.ModifyQos]
    assert {t.actor for t in log.txn_log_list} == {"root"}
    last = s.QueryTxnLog(pb.QueryTxnLogRequest(action="ModifyQos"), metadata=md).txn_log_list
    assert [(t.target, t.info) for t in last] == [("normal", "MaxJobsPerUser=3 MaxWall=2:00:00")]
    assert s.QueryTxnLog(pb.QueryTxnLogRequest(action="Nope"), metadata=md).code == pb.ERR_INVALID_PARAM


def test_refusals_carry_their_codes(make_api: Any) -> None:
    api = make_api()
    setup_db(api)
    s, md = api.stub, api.md(ROOT)
    r = s.AddAccount(pb.AddAccountRequest(account=pb.AccountInfo(name="phys")), metadata=md)
    assert (r.ok, r.code) == (False, pb.ERR_ACCOUNT_ALREADY_EXISTS) and "already exists" in r.reason
    r = s.AddUser(pb.AddUserRequest(name="no-such-user-here", account="hep"), metadata=md)
    assert r.code == pb.ERR_INVALID_USERNAME
    r = s.DeleteAccount(pb.DeleteEntityRequest(names=["phys", "nope"]), metadata=md)
    assert not r.ok and [e.code for e in r.rich_error_list] == [pb.ERR_ACCOUNT_HAS_CHILDREN, pb.ERR_INVALID_ACCOUNT]
    r = s.ModifyAccount(pb.ModifyEntityRequest(names=["hep"], items=[item("Colour", "red")]), metadata=md)
    (e,) = r.rich_error_list
    assert not r.ok and e.code == pb.ERR_INVALID_PARAM and "Colour" in e.description
    r = s.ModifyQos(pb.ModifyEntityRequest(names=["normal"], items=[item("MaxJobs", "lots")]), metadata=md)
    assert r.rich_error_list[0].code == pb.ERR_CONVERT_TO_INTEGER
    r = s.DeleteQos(pb.DeleteEntityRequest(names=["normal", "UNLIMITED"]), metadata=md)
    assert [e.code for e in r.rich_error_list] == [pb.ERR_QOS_REFERENCES_EXIST, pb.ERR_INVALID_QOS]
    with pytest.raises(grpc.RpcError) as err:  # a malformed enum: one line, never a traceback
        s.AddQos(pb.AddQosRequest(qos=pb.QosInfo(name="x", preempt_mode=99)), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_denials_say_why(make_api: Any) -> None:
    api = make_api()
    setup_db(api)
    s = api.stub
    r = s.AddQos(pb.AddQosRequest(qos=pb.QosInfo(name="x")), metadata=api.md(BOB))
    assert (r.ok, r.code) == (False, pb.ERR_USER_NO_PRIVILEGE) and "Permission denied" in r.reason
    r = s.AddQos(pb.AddQosRequest(qos=pb.QosInfo(name="x")), metadata=api.md(DAVE, "operator"))
    assert (r.ok, r.code) == (False, pb.ERR_PERMISSION_DENIED)
    r = s.DeleteAccount(pb.DeleteEntityRequest(names=["hep"]), metadata=api.md(BOB))
    assert r.rich_error_list[0].code == pb.ERR_USER_NO_PRIVILEGE
    assert s.QueryTxnLog(pb.QueryTxnLogRequest(), metadata=api.md(BOB)).code == pb.ERR_USER_NO_PRIVILEGE
    assert s.QueryAccountInfo(pb.QueryAccountInfoRequest(), metadata=api.md(BOB)).ok


def test_the_database_level_replaces_the_tokens(make_api: Any) -> None:
    api = make_api()
    setup_db(api)
    s = api.stub
    assert s.QueryTxnLog(pb.QueryTxnLogRequest(), metadata=api.md(ALICE)).code == pb.ERR_USER_NO_PRIVILEGE
    r = s.ModifyUser(pb.ModifyUserRequest(names=[ALICE.pw_name], items=[item("AdminLevel", "operator")]),
                     metadata=api.md(DAVE, "admin"))
    assert r.ok, r
    assert s.QueryTxnLog(pb.QueryTxnLogRequest(), metadata=api.md(ALICE)).ok  # promoted, same token
    # an admin token of a user the database knows as "none" is demoted
    assert s.AddQos(pb.AddQosRequest(qos=pb.QosInfo(name="x")), metadata=api.md(CAROL, "admin")).code == \
        pb.ERR_PERMISSION_DENIED  # still a coordinator, so "denied" rather than "no privilege"
    assert s.AddQos(pb.AddQosRequest(qos=pb.QosInfo(name="x")), metadata=api.md(ROOT)).ok  # root stays root


def test_admin_levels_cannot_be_raised_to_ones_own(make_api: Any) -> None:
    api = make_api()
    setup_db(api)
    s = api.stub

    def set_level(caller: Any, level: str, target: str = ALICE.pw_name) -> bool:
        r = s.ModifyUser(pb.ModifyUserRequest(names=[target], items=[item("AdminLevel", level)]), metadata=caller)
        assert r.ok or r.rich_error_list[0].code in (pb.ERR_PERMISSION_DENIED, pb.ERR_USER_NO_PRIVILEGE), r
        return r.ok

    operator, admin = api.md(DAVE, "operator"), api.md(DAVE, "admin")
    assert not set_level(operator, "operator") and not set_level(admin, "admin")
    assert set_level(admin, "operator")
    assert set_level(operator, "none")  # users up to her own level
    assert set_level(api.md(ROOT), "admin")
    assert not set_level(operator, "none")  # operators cannot touch admins
    assert set_level(admin, "none")
    assert not set_level(api.md(CAROL), "operator")  # coordinators set no levels


def test_coordinators(make_api: Any) -> None:
    api = make_api()
    setup_db(api)
    s, carol = api.stub, api.md(CAROL)
    add = s.AddAccount(pb.AddAccountRequest(account=pb.AccountInfo(name="hep2", parent_account="hep")), metadata=carol)
    assert add.ok, add
    assert s.AddAccount(pb.AddAccountRequest(account=pb.AccountInfo(name="top2")), metadata=carol).code == \
        pb.ERR_PERMISSION_DENIED
    assert s.AddUser(pb.AddUserRequest(name=BOB.pw_name, account="hep2"), metadata=carol).ok
    assert s.BlockAccountOrUser(pb.BlockAccountOrUserRequest(block=True, entity_type=pb.User,
                                                             entity_list=[BOB.pw_name]), metadata=carol).ok
    assert s.ModifyAccount(pb.ModifyEntityRequest(names=["phys"], items=[item("Description", "ours")]),
                           metadata=carol).ok
    # her top account: an admin's bounds stay
    for field in ("AllowedQos", "AllowedPartitions", "DefaultQos"):
        r = s.ModifyAccount(pb.ModifyEntityRequest(names=["phys"], items=[item(field, "normal", op=1)]),
                            metadata=carol)
        assert r.rich_error_list[0].code == pb.ERR_PERMISSION_DENIED, field
    assert s.ModifyAccount(pb.ModifyEntityRequest(names=["hep"], items=[item("AllowedQos", "normal")]),
                           metadata=carol).ok  # below it, the parent bounds the change
    block = pb.BlockAccountOrUserRequest(block=True, entity_type=pb.Account, entity_list=["phys"])
    assert s.BlockAccountOrUser(block, metadata=carol).ok
    block.block = False
    assert not s.BlockAccountOrUser(block, metadata=carol).ok
    assert s.BlockAccountOrUser(block, metadata=api.md(ROOT)).ok
    assert not s.DeleteAccount(pb.DeleteEntityRequest(names=["phys"]), metadata=carol).ok  # her top account
    assert not s.ModifyAccount(pb.ModifyEntityRequest(names=["phys"], items=[item("Parent", "hep2")]),
                               metadata=carol).ok
    assert s.DeleteUser(pb.DeleteUserRequest(names=[BOB.pw_name], account="hep2"), metadata=carol).ok
    assert s.DeleteAccount(pb.DeleteEntityRequest(names=["hep2"]), metadata=carol).ok
    assert not s.AddQos(pb.AddQosRequest(qos=pb.QosInfo(name="mine")), metadata=carol).ok
    # jobs of her accounts: cancel yes, raise a limit or pin a priority no
    ctl = api.h.ctl
    alice = Identity(ALICE.pw_uid, ALICE.pw_name)
    jobs = ctl.submit([{"script": "#!/bin/bash\ntrue\n", "cwd": "/tmp", "account": "hep"}] * 3, alice)
    assert s.ModifyJob(pb.ModifyJobRequest(job_ids=[jobs[0]], priority=5.0), metadata=carol).not_modified
    assert s.ModifyJob(pb.ModifyJobRequest(job_ids=[jobs[0]], hold=True), metadata=carol).modified
    assert s.CancelJob(pb.CancelJobRequest(job_ids=[jobs[1]]), metadata=carol).cancelled == [jobs[1]]
    other = ctl.submit([{"script": "#!/bin/bash\ntrue\n", "cwd": "/tmp", "account": "chem"}], alice)
    assert s.CancelJob(pb.CancelJobRequest(job_ids=other), metadata=carol).not_cancelled == other


def test_submission_is_resolved_and_refused_with_a_code(make_api: Any) -> None:
    api = make_api({"Accounting": {"Enforce": ["associations", "qos"]}})
    setup_db(api)
    s = api.stub
    spec = pb.JobSpec(script="#!/bin/bash\ntrue\n", cwd="/tmp")
    r = s.SubmitBatchJob(pb.SubmitBatchJobRequest(job=spec), metadata=api.md(ALICE))
    assert r.ok, r
    job = api.h.ctl.jobs[r.job_id]
    assert (job.account, job.qos) == ("hep", "normal")
    r = s.SubmitBatchJob(pb.SubmitBatchJobRequest(job=pb.JobSpec(script="true\n", cwd="/tmp", account="phys")),
                         metadata=api.md(ALICE))
    assert (r.ok, r.code) == (False, pb.ERR_USER_ACCOUNT_MISMATCH) and "not in account 'phys'" in r.reason
    r = s.SubmitBatchJobs(pb.SubmitBatchJobsRequest(job=spec, count=2), metadata=api.md(BOB))
    assert (r.ok, r.code) == (False, pb.ERR_INVALID_USER)
    r = s.SubmitBatchJob(pb.SubmitBatchJobRequest(job=pb.JobSpec(script="true\n", cwd="/tmp", partition="gpu")),
                         metadata=api.md(ALICE))
    assert r.code == pb.ERR_PARTITION_MISSING
    r = s.SubmitBatchJob(pb.SubmitBatchJobRequest(job=pb.JobSpec(script="", cwd="/tmp")), metadata=api.md(ALICE))
    assert not r.ok and r.code == pb.ERR_GENERIC_FAILURE  # other refusals: the generic code
    # she cannot delete herself out of her account while her job is pending, unless forced
    d = s.DeleteUser(pb.DeleteUserRequest(names=[ALICE.pw_name], account="hep"), metadata=api.md(ROOT))
    assert d.rich_error_list[0].code == pb.ERR_USER_HAS_JOB
    assert s.DeleteUser(pb.DeleteUserRequest(names=[ALICE.pw_name], account="hep", force=True),
                        metadata=api.md(ROOT)).ok


def test_a_restart_keeps_the_database(make_api: Any) -> None:
    api = make_api()
    setup_db(api)
    from crane_kernel.ctld.core import Controller
    from crane_kernel.ctld.store import StateStore

    h = api.h
    h.store.close()
    h.store = StateStore(h.store.path)
    again = Controller(h.cfg, h.store, h.pm, h.outbox.extend, clock=lambda: h.now)
    again.recover()
    book = again.accounts
    assert set(book.accounts) == {"phys", "hep"} and book.coordinated(CAROL.pw_name) == {"phys", "hep"}
    assert book.users[ALICE.pw_name].default_account == "hep" and "normal" in book.qos
    assert len(book.txns()) == 5
