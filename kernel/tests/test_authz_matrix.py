"""Role x action: exactly which calls each role may make, through the real gRPC service and rbac plugin.

A real :class:`~crane_kernel.ctld.core.Controller` (the ``ctld`` harness) is served by the real
:class:`~crane_kernel.ctld.service.CraneCtldService` on a local port; each role calls it with a
token signed by the cluster key, as the CLIs do. Every action runs on fresh jobs owned by
``alice``, so one role's action never changes another's. The expected table is the whole truth:
an allowed action that should be forbidden fails the test as much as the reverse.

The account database is part of the table: ``coordinator`` coordinates alice's account ``physics``
(so may act on its jobs and manage its sub-accounts and users), and every ``account_*``,
``user_*``, ``qos_*`` and ``txn_*`` row is one cacctmgr RPC, counted as allowed when the reply is
not a permission refusal (``ERR_PERMISSION_DENIED``/``ERR_USER_NO_PRIVILEGE``).

Token issuing is not an RPC (``crane token issue`` needs read access to the cluster key); the
end-to-end test ``tests/test_e2e_limits_security.py`` runs it as an unprivileged user.
"""

from __future__ import annotations

import itertools
import pwd
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import pytest
from crane_auth_rbac import jwt_tokens
from crane_common.proto import crane_pb2 as pb
from crane_common.proto import crane_pb2_grpc as pbg
from crane_common.states import FINAL_STATES, JobState
from crane_kernel import messages as m
from crane_kernel.auth_types import Identity
from crane_kernel.ctld.acctmodel import Account, Qos

# real accounts of every Debian system (the controller resolves a submitter's uid to its group)
ALICE, BOB, OPER, ADMIN, COORD, MAN = (pwd.getpwnam(n) for n in ("daemon", "bin", "sys", "sync", "games", "man"))
ROLES: dict[str, tuple[pwd.struct_passwd | None, str]] = {
    "owner": (ALICE, "none"), "other": (BOB, "none"), "coordinator": (COORD, "none"),
    "operator": (OPER, "operator"), "admin": (ADMIN, "admin"), "root": (None, "root"),
}
DENIED = (pb.ERR_PERMISSION_DENIED, pb.ERR_USER_NO_PRIVILEGE)
OVERRIDES = {"Partitions": [{"name": "debug", "nodes": "ALL", "MaxTimeLimit": "2:00:00",
                             "DefaultTimeLimit": "1:00:00"}],
             "Auth": {"Admins": ["root"]}}

ALL = {"submit", "cancel", "hold", "release", "release_admin_hold", "time_limit_lower", "time_limit_raise",
       "time_limit_over_partition", "priority", "drain", "resume", "down", "query_jobs", "query_nodes",
       "query_partitions", "server_info", "see_others_job", "see_others_details", "see_others_usage",
       "suspend", "resume_job", "requeue", "signal", "update_comment", "update_deadline"}
LIFECYCLE_OWNER = {"requeue", "signal", "update_comment", "update_deadline"}  # suspend/resume: operators and up
DB_ANYONE = {"account_query", "user_query", "qos_query"}
DB_USERS = {"user_add", "user_modify", "user_block", "user_delete"}
DB_COORDINATOR = {"account_add_sub", "account_modify", "account_block", "account_delete_sub", *DB_USERS}
DB_ALL = {*DB_ANYONE, *DB_COORDINATOR, "txn_query", "account_add_top", "account_delete_top", "account_reparent_top",
          "user_set_operator", "qos_add", "qos_modify", "qos_delete"}
ALL |= DB_ALL
OWNER = {"submit", "cancel", "hold", "release", "time_limit_lower", "query_jobs", "query_nodes",
         "query_partitions", "server_info", "see_others_job", "see_others_details", "see_others_usage"}
OWNER |= DB_ANYONE | LIFECYCLE_OWNER
EXPECTED = {
    "owner": OWNER,  # "others" here is her own job: she sees everything of it
    "other": {"submit", "query_jobs", "query_nodes", "query_partitions", "server_info", "see_others_job",
              "see_others_usage", *DB_ANYONE},
    "coordinator": {"submit", "cancel", "hold", "release", "time_limit_lower", "query_jobs", "query_nodes",
                    "query_partitions", "server_info", "see_others_job", "see_others_details", "see_others_usage",
                    *DB_ANYONE, *DB_COORDINATOR, *LIFECYCLE_OWNER},  # her account's jobs; no raised limits,
    # pinned priorities or suspensions
    "operator": (ALL - DB_ALL) | DB_ANYONE | DB_USERS | {"txn_query"},
    "admin": ALL, "root": ALL,
}
EXPECTED_PRIVATE = {  # CraneCtld.PrivateData: [jobs, usage]
    **EXPECTED, "other": {"submit", "query_jobs", "query_nodes", "query_partitions", "server_info", *DB_ANYONE},
}


class Api:
    """The service on a local port, and a stub per role."""

    def __init__(self, harness: Any) -> None:
        from crane_kernel.ctld.service import CraneCtldService

        self.h = harness
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pbg.add_CraneCtldServicer_to_server(CraneCtldService(harness.ctl, "fifo"), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pbg.CraneCtldStub(self.channel)
        self.key = jwt_tokens.read_keyring(harness.cfg.key_file)
        self.cluster = harness.cfg.ClusterName
        book = harness.ctl.accounts  # alice's account physics, coordinated by COORD
        book.add_qos(Qos("normal"), "root")
        book.add_account(Account("physics", allowed_qos=["normal"]), "root")
        book.add_user(ALICE.pw_name, "physics", "root")
        book.add_user(COORD.pw_name, "physics", "root", coordinator=True)

    def md(self, role: str) -> tuple:
        """The call metadata of ``role`` (a token as ``crane token issue`` mints it)."""
        pw, level = ROLES[role]
        uid, user = (pw.pw_uid, pw.pw_name) if pw else (0, "root")
        return (("authorization", f"Bearer {jwt_tokens.mint(self.key, self.cluster, uid, user, level)}"),)

    def job(self, **extra: Any) -> int:
        """A fresh pending job of alice's."""
        spec = {"script": "#!/bin/bash\nsecret-command\n", "cwd": "/srv/alice", "cmd_line": "cbatch secret.sh",
                "comment": "alice's secret", "env": {"API_KEY": "s3cr3t"}, "account": "physics", **extra}
        return self.h.ctl.submit([spec], Identity(ALICE.pw_uid, ALICE.pw_name))[0]

    def close(self) -> None:
        """Stop the server."""
        self.channel.close()
        self.server.stop(None)


def _modified(reply: Any, jid: int) -> bool:
    return jid in reply.modified


def _actions(api: Api) -> dict[str, Callable[[str], bool]]:
    """action -> f(role): perform it as ``role`` and say whether it was allowed."""
    stub, ctl = api.stub, api.h.ctl
    alice = Identity(ALICE.pw_uid, ALICE.pw_name)
    admin = Identity(ADMIN.pw_uid, ADMIN.pw_name, "admin")

    def submit(role: str) -> bool:
        spec = pb.JobSpec(script="#!/bin/bash\ntrue\n", cwd="/tmp")
        return stub.SubmitBatchJob(pb.SubmitBatchJobRequest(job=spec), metadata=api.md(role)).ok

    def cancel(role: str) -> bool:
        jid = api.job()
        return jid in stub.CancelJob(pb.CancelJobRequest(job_ids=[jid]), metadata=api.md(role)).cancelled

    def modify(role: str, held_by: Identity | None = None, **change: Any) -> bool:
        jid = api.job()
        if held_by is not None:
            assert ctl.modify([jid], held_by, hold=True)[0] == [jid]
        reply = stub.ModifyJob(pb.ModifyJobRequest(job_ids=[jid], **change), metadata=api.md(role))
        return _modified(reply, jid)

    def running(role: str, act: Callable[[int, Any], bool]) -> bool:
        """``act(job id, role's metadata)`` on a fresh running job of alice's; the job is ended after."""
        ctl.cancel(list(ctl.pending), admin)  # only this job starts
        jid = api.job()
        ctl.schedule_cycle()
        job = ctl.jobs[jid]
        assert job.state == JobState.Configuring, job.state
        head, epoch = job.head_node, job.epoch
        api.h.feed(m.StepStatus(node=head, job_id=jid, state="running", epoch=epoch))
        ok = act(jid, api.md(role))
        api.h.feed(m.StepStatus(node=head, job_id=jid, state="finished", exit_code=0, epoch=epoch))
        if ctl.jobs[jid].state not in FINAL_STATES:
            ctl.cancel([jid], admin)
        return ok

    def suspended(jid: int, md: Any) -> bool:
        assert ctl.suspend_jobs([jid], admin, True)[0] == [jid]
        return jid in stub.ModifyJob(pb.ModifyJobRequest(job_ids=[jid], suspend=False), metadata=md).modified

    def node(role: str, state: str) -> bool:
        reply = stub.ModifyNode(pb.ModifyNodeRequest(names=["cn02"], state=state, reason="matrix"),
                                metadata=api.md(role))
        ok = "cn02" in reply.modified
        if ok:  # put it back for the next role
            ctl.set_drain(["cn02"], False, "", admin)
        return ok

    def rpc_ok(call: Callable[[], Any]) -> bool:
        try:
            call()
            return True
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.PERMISSION_DENIED, exc
            return False

    def others_job(role: str) -> Any:
        jid = api.job()
        ctl.jobs[jid].usage_cpu_ms = 1234
        jobs = stub.QueryJobsInfo(pb.QueryJobsInfoRequest(job_ids=[jid]), metadata=api.md(role)).jobs
        return jobs[0] if jobs else None

    def details(role: str) -> bool:
        info = others_job(role)
        shown = bool(info and (info.cmd_line or info.comment or info.cwd))
        if info and not shown:  # hidden means all of it hidden
            assert not (info.cmd_line or info.comment or info.cwd or info.stdout_path or info.submit_host)
        return shown

    return {
        **_db_actions(api),
        "submit": submit,
        "cancel": cancel,
        "hold": lambda r: modify(r, hold=True),
        "release": lambda r: modify(r, held_by=alice, hold=False),
        "release_admin_hold": lambda r: modify(r, held_by=admin, hold=False),
        "time_limit_lower": lambda r: modify(r, time_limit=1800),
        "time_limit_raise": lambda r: modify(r, time_limit=5400),
        "time_limit_over_partition": lambda r: modify(r, time_limit=100 * 86400),
        "priority": lambda r: modify(r, priority=100.0),
        "suspend": lambda r: running(r, lambda j, md: j in stub.ModifyJob(
            pb.ModifyJobRequest(job_ids=[j], suspend=True), metadata=md).modified),
        "resume_job": lambda r: running(r, suspended),
        "requeue": lambda r: running(r, lambda j, md: j in stub.RequeueJob(
            pb.RequeueJobRequest(job_ids=[j]), metadata=md).requeued_jobs),
        "signal": lambda r: running(r, lambda j, md: j in stub.CancelJob(
            pb.CancelJobRequest(job_ids=[j], signal=10), metadata=md).cancelled),
        "update_comment": lambda r: modify(r, comment="changed"),
        "update_deadline": lambda r: modify(r, deadline=int(ctl.clock()) + 86400),
        "drain": lambda r: node(r, "drain"),
        "resume": lambda r: node(r, "resume"),
        "down": lambda r: node(r, "down"),
        "query_jobs": lambda r: rpc_ok(lambda: stub.QueryJobsInfo(pb.QueryJobsInfoRequest(), metadata=api.md(r))),
        "query_nodes": lambda r: rpc_ok(lambda: stub.QueryCranedInfo(pb.QueryCranedInfoRequest(),
                                                                     metadata=api.md(r))),
        "query_partitions": lambda r: rpc_ok(lambda: stub.QueryPartitionInfo(pb.QueryPartitionInfoRequest(),
                                                                             metadata=api.md(r))),
        "server_info": lambda r: rpc_ok(lambda: stub.QueryServerInfo(pb.ServerInfoRequest(), metadata=api.md(r))),
        "see_others_job": lambda r: others_job(r) is not None,
        "see_others_details": details,
        "see_others_usage": lambda r: bool((info := others_job(r)) and info.usage_cpu_ms == 1234),
    }


def _db_actions(api: Api) -> dict[str, Callable[[str], bool]]:
    """The account-database rows: action -> f(role), True when the call was not refused for permission."""
    stub, book = api.stub, api.h.ctl.accounts
    fresh = (f"a{i}" for i in itertools.count())

    def allowed(reply: Any, must_succeed: bool = True) -> bool:
        errors = list(getattr(reply, "rich_error_list", ()))
        codes = [e.code for e in errors] or ([reply.code] if hasattr(reply, "code") and not reply.ok else [])
        if any(c in DENIED for c in codes):
            return False
        assert reply.ok or not must_succeed, reply
        return True

    def sub(name: str | None = None, user: str = "") -> str:
        """A fresh sub-account of physics (with ``user`` in it)."""
        name = name or next(fresh)
        book.add_account(Account(name, parent="physics"), "root")
        if user:
            book.add_user(user, name, "root")
        return name

    def account(role: str, name: str, parent: str = "") -> bool:
        info = pb.AccountInfo(name=name, parent_account=parent)
        return allowed(stub.AddAccount(pb.AddAccountRequest(account=info), metadata=api.md(role)))

    def modify_account(role: str, name: str, *items: Any, must_succeed: bool = True) -> bool:
        req = pb.ModifyEntityRequest(names=[name], items=list(items))
        return allowed(stub.ModifyAccount(req, metadata=api.md(role)), must_succeed)

    def reparent_top(role: str) -> bool:
        top = next(fresh)
        book.add_account(Account(top, allowed_qos=["normal"]), "root")
        ok = modify_account(role, "physics", pb.ModifyItem(field="Parent", values=[top]))
        if ok:
            book.modify_accounts(["physics"], [("Parent", "=", [""])], "root")
        return ok

    def modify_user(role: str, *items: Any) -> bool:
        name = sub(user=BOB.pw_name)
        req = pb.ModifyUserRequest(names=[BOB.pw_name], account=name, items=list(items))
        return allowed(stub.ModifyUser(req, metadata=api.md(role)))

    def set_operator(role: str) -> bool:
        name = sub(user=MAN.pw_name)
        req = pb.ModifyUserRequest(names=[MAN.pw_name], account=name,
                                   items=[pb.ModifyItem(field="AdminLevel", values=["operator"])])
        ok = allowed(stub.ModifyUser(req, metadata=api.md(role)))
        book.delete_user(MAN.pw_name, "", "root")
        return ok

    def block_user(role: str) -> bool:
        name = sub(user=BOB.pw_name)
        req = pb.BlockAccountOrUserRequest(block=True, entity_type=pb.User, entity_list=[BOB.pw_name], account=name)
        return allowed(stub.BlockAccountOrUser(req, metadata=api.md(role)))

    def qos(role: str, what: str) -> bool:
        name = next(fresh)
        if what != "add":
            book.add_qos(Qos(name), "root")
        if what == "add":
            reply = stub.AddQos(pb.AddQosRequest(qos=pb.QosInfo(name=name)), metadata=api.md(role))
        elif what == "modify":
            reply = stub.ModifyQos(pb.ModifyEntityRequest(names=[name], items=[pb.ModifyItem(
                field="MaxJobs", values=["3"])]), metadata=api.md(role))
        else:
            reply = stub.DeleteQos(pb.DeleteEntityRequest(names=[name]), metadata=api.md(role))
        return allowed(reply)

    return {
        "account_query": lambda r: allowed(stub.QueryAccountInfo(pb.QueryAccountInfoRequest(), metadata=api.md(r))),
        "user_query": lambda r: allowed(stub.QueryUserInfo(pb.QueryUserInfoRequest(), metadata=api.md(r))),
        "qos_query": lambda r: allowed(stub.QueryQosInfo(pb.QueryQosInfoRequest(), metadata=api.md(r))),
        "txn_query": lambda r: allowed(stub.QueryTxnLog(pb.QueryTxnLogRequest(), metadata=api.md(r))),
        "account_add_sub": lambda r: account(r, next(fresh), "physics"),
        "account_add_top": lambda r: account(r, next(fresh)),
        "account_modify": lambda r: modify_account(r, sub(), pb.ModifyItem(field="Description", values=["x"])),
        "account_block": lambda r: allowed(stub.BlockAccountOrUser(pb.BlockAccountOrUserRequest(
            block=True, entity_type=pb.Account, entity_list=[sub()]), metadata=api.md(r))),
        "account_delete_sub": lambda r: allowed(stub.DeleteAccount(pb.DeleteEntityRequest(names=[sub()]),
                                                                   metadata=api.md(r))),
        "account_delete_top": lambda r: allowed(stub.DeleteAccount(pb.DeleteEntityRequest(names=["physics"]),
                                                                   metadata=api.md(r)), must_succeed=False),
        "account_reparent_top": reparent_top,
        "user_add": lambda r: allowed(stub.AddUser(pb.AddUserRequest(name=BOB.pw_name, account=sub()),
                                                   metadata=api.md(r))),
        "user_modify": lambda r: modify_user(r, pb.ModifyItem(field="AllowedPartition", values=["debug"])),
        "user_block": block_user,
        "user_delete": lambda r: allowed(stub.DeleteUser(pb.DeleteUserRequest(
            names=[BOB.pw_name], account=sub(user=BOB.pw_name)), metadata=api.md(r))),
        "user_set_operator": set_operator,
        "qos_add": lambda r: qos(r, "add"),
        "qos_modify": lambda r: qos(r, "modify"),
        "qos_delete": lambda r: qos(r, "delete"),
    }


@pytest.fixture
def api(ctld: Any) -> Any:
    """The service of a fresh controller (PrivateData off)."""
    h = ctld(OVERRIDES)
    h.register_all()
    a = Api(h)
    yield a
    a.close()


@pytest.fixture
def private_api(ctld: Any) -> Any:
    """The service of a fresh controller with ``CraneCtld.PrivateData: [jobs, usage]``."""
    h = ctld({**OVERRIDES, "CraneCtld": {"PrivateData": ["jobs", "usage"]}})
    h.register_all()
    a = Api(h)
    yield a
    a.close()


def _allowed(api: Api, role: str) -> set[str]:
    actions = _actions(api)
    assert set(actions) == ALL
    return {name for name, act in actions.items() if act(role)}


@pytest.mark.parametrize("role", list(ROLES))
def test_role_matrix(api: Api, role: str) -> None:
    allowed = _allowed(api, role)
    assert allowed - EXPECTED[role] == set(), f"{role} may do forbidden actions"
    assert allowed == EXPECTED[role]


@pytest.mark.parametrize("role", ["owner", "other", "coordinator", "operator"])
def test_role_matrix_private_data(private_api: Api, role: str) -> None:
    assert _allowed(private_api, role) == EXPECTED_PRIVATE[role]


def test_unauthenticated_calls_are_refused(api: Api) -> None:
    for call, req in ((api.stub.QueryJobsInfo, pb.QueryJobsInfoRequest()),
                      (api.stub.QueryCranedInfo, pb.QueryCranedInfoRequest()),
                      (api.stub.SubmitBatchJob, pb.SubmitBatchJobRequest(job=pb.JobSpec(script="true")))):
        with pytest.raises(grpc.RpcError) as err:
            call(req, metadata=(("authorization", "Bearer v1.forged.sig"),))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_admin_hold_survives_a_restart_and_stays_admin_only(ctld: Any) -> None:
    h = ctld(OVERRIDES)
    api = Api(h)
    try:
        jid = api.job()
        h.ctl.modify([jid], Identity(ADMIN.pw_uid, ADMIN.pw_name, "admin"), hold=True)
        from crane_kernel.ctld.core import Controller

        again = Controller(h.cfg, h.store, h.pm, h.outbox.extend, clock=lambda: h.now)
        again.recover()
        assert again.jobs[jid].hold_admin and again.jobs[jid].state == JobState.Pending
        assert again.modify([jid], Identity(ALICE.pw_uid, ALICE.pw_name), hold=False)[0] == []
    finally:
        api.close()


def test_lists_in_requests_are_bounded(ctld: Any) -> None:
    h = ctld({**OVERRIDES, "CraneCtld": {"MaxHostlistExpand": 10}})
    api = Api(h)
    try:
        with pytest.raises(grpc.RpcError) as err:
            api.stub.QueryCranedInfo(pb.QueryCranedInfoRequest(names=[f"n{i}" for i in range(11)]),
                                     metadata=api.md("other"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 10" in err.value.details()
        assert len(api.stub.QueryCranedInfo(pb.QueryCranedInfoRequest(names=["cn01"]),
                                            metadata=api.md("other")).nodes) == 1
    finally:
        api.close()
