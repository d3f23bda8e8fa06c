"""cacctmgr without a controller: the grammar, the requests it builds, the tables and the exit codes.

The calls go to :class:`StubController` (it replaces ``crane_cli.rpc.Controller``: it records the
real protobuf requests and answers with real protobuf replies); the console script itself is run
for the paths that end before any call (syntax errors, help) and for an unreachable controller.
"""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from cli_support import script_path, write_config
from crane_common.proto import crane_pb2 as pb

from crane_cli import cacctmgr, cacctmgr_parse, cacctmgr_plan, errcodes, rpc
from crane_cli.cacctmgr_parse import split_words
from crane_cli.cacctmgr_plan import plan
from crane_cli.cacctmgr_show import columns, render
from crane_cli.errors import CliError

U32 = 4294967295


class StubController:
    """Stands in for :class:`crane_cli.rpc.Controller`: records (method, request), returns queued replies."""

    calls: list[tuple[str, object]] = []
    replies: dict[str, list[object]] = {}

    def __init__(self, conf: object, *args: object, **kwargs: object) -> None:
        self.conf = conf

    def call(self, method: str, request: object) -> object:
        assert type(request).__name__ != "dict"
        StubController.calls.append((method, request))
        queue = StubController.replies.get(method)
        if queue:
            return queue.pop(0)
        return rpc.REPLIES[method](ok=True)

    def __enter__(self) -> StubController:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def acct(tmp_path, monkeypatch, capsys):
    """``acct("show", "qos", reply=...)`` runs cacctmgr in-process; returns (code, stdout, stderr, calls)."""
    conf = write_config(tmp_path, 1)
    monkeypatch.setattr(rpc, "Controller", StubController)
    monkeypatch.setenv("CRANE_NO_CONF_CACHE", "1")

    def run(*argv: str, replies: dict[str, list[object]] | None = None):
        StubController.calls = []
        StubController.replies = {k: list(v) for k, v in (replies or {}).items()}
        capsys.readouterr()
        try:
            code = cacctmgr.command(["-C", str(conf), *argv])
            err_line = ""
        except CliError as exc:
            code, err_line = exc.code, exc.message + "\n"
        out, err = capsys.readouterr()
        return code, out, err + err_line, list(StubController.calls)

    return run


def one_call(acct, *argv: str, **kw):
    code, out, err, calls = acct(*argv, **kw)
    assert code == 0, (out, err)
    assert len(calls) == 1, calls
    return calls[0]


def bad(argv: list[str], code: int = 2) -> str:
    with pytest.raises(CliError) as exc:
        if code == 5:
            w, _, keyed = plan(argv)
            columns(w.entity, cacctmgr_plan.format_columns(keyed))
        else:
            plan(argv)
    assert exc.value.code == code, exc.value.message
    assert "\n" not in exc.value.message and exc.value.message.startswith("cacctmgr: ")
    return exc.value.message


# -- the sentence ---------------------------------------------------------------------------------

def test_split_sections_and_operators():
    w = split_words(["MODIFY", "User", "where", "Name=alice", "ACCOUNT=phys", "SET", "AllowedQos+=high,low",
                     "AllowedPartition-=gpu", "DefaultQos=low"])
    assert (w.verb, w.entity, w.names) == ("modify", "user", [])
    assert [(p.name, p.op, p.value) for p in w.pairs] == [("name", "=", "alice"), ("account", "=", "phys")]
    assert [(p.key, p.op, p.value) for p in w.sets] == [("AllowedQos", "+=", "high,low"),
                                                          ("AllowedPartition", "-=", "gpu"), ("DefaultQos", "=", "low")]


def test_update_is_modify_and_plurals():
    assert split_words(["update", "accounts", "a", "set", "Description=x"]).verb == "modify"
    assert split_words(["show", "users"]).entity == "user"
    assert split_words(["show", "txn"]).entity == "transaction"


def test_operator_as_its_own_word_and_quotes():
    w = split_words(["modify", "qos", "where", "name", "=", "normal", "set", "Preempt", "+=", "low",
                     "Description", "=", '"two words"', "Priority", "=5"])
    assert [(p.name, p.op, p.value) for p in w.pairs] == [("name", "=", "normal")]
    assert [(p.name, p.op, p.value) for p in w.sets] == [("preempt", "+=", "low"), ("description", "=", "two words"),
                                                         ("priority", "=", "5")]
    w = split_words(["add", "account", "'phys'", "Description='Physics, dept.'"])
    assert w.names == ["phys"] and w.pairs[0].value == "Physics, dept."


@pytest.mark.parametrize("argv, fragment", [
    ([], "missing command"),
    (["frobnicate", "account"], "unknown command 'frobnicate'"),
    (["add"], "add what?"),
    (["add", "cluster", "x"], "unknown entity 'cluster'"),
    (["add", "transaction"], "cannot add transaction"),
    (["block", "qos", "normal"], "cannot block qos"),
    (["show", "event"], "node events are not supported by this cluster"),
    (["add", "wckey", "k"], "wckeys are not supported by this cluster"),
    (["show", "resource"], "license resources are not supported by this cluster"),
    (["reset", "all"], "reset is not supported by this cluster"),
    (["add", "account"], "add account needs a name"),
    (["add", "account", "a", "b"], "unexpected word 'b'"),
    (["add", "account", "a", "where", "Name=b"], "'where' does not go with add"),
    (["add", "account", "a", "Colour=red"], "unknown key 'Colour' for add account"),
    (["add", "account", "a", "Description=x", "description=y"], "given twice"),
    (["add", "account", "a", "QosList+=x"], "only allowed after 'set'"),
    (["add", "user", "bob"], "add user needs Account=NAME"),
    (["add", "user", "bob", "Account=a", "Level=root"], "expected none, operator or admin"),
    (["add", "user", "bob", "Account=a", "Coordinator=maybe"], "expected yes or no"),
    (["add", "qos", "q", "MaxJobs=ten"], "invalid MaxJobs 'ten'"),
    (["add", "qos", "q", "MaxWall=1:99"], "below 60"),
    (["add", "qos", "q", "Flags=Sometimes"], "expected DenyOnLimit or None"),
    (["add", "qos", "q", "PreemptMode=pause"], "expected OFF, CANCEL"),
    (["add", "qos", "q", "MaxTresPerUser=cpu:4"], "not supported by this cluster"),
    (["add", "qos", "q", "Priority=-3"], "invalid Priority"),
    (["add", "qos", "q", "Priority=1", "=", "3"], "without a key"),
    (["add", "qos", "=3"], "invalid key"),
    (["delete", "qos"], "delete qos needs a name"),
    (["show", "account", "set", "Description=x"], "'set' belongs to modify"),
    (["modify", "account", "where", "Name=a"], "needs 'set'"),
    (["modify", "account", "where", "Name=a", "set"], "needs something to change"),
    (["modify", "account", "a", "Description=x"], "put it after 'set'"),
    (["modify", "account", "where", "Name=a", "stray", "set", "Description=x"], "unexpected word 'stray'"),
    (["modify", "account", "where", "Name=a", "set", "Description+=x"], "takes one value"),
    (["modify", "account", "where", "Name=a", "set", "AllowedQos+="], "needs a value"),
    (["modify", "account", "where", "Name=a", "where", "Name=b"], "'where' given twice"),
    (["modify", "qos", "where", "Name=a", "set", "MaxWall=forever"], "invalid duration"),
    (["modify", "account", "a", "where", "Name=b", "set", "Description=x"], "two different names"),
    (["show", "transaction", "alice"], "takes filters, not names"),
    (["show", "transaction", "where", "Action=Explode"], "expected one of AddAccount"),
    (["show", "transaction", "where", "StartTime=yesterday-ish"], "invalid time"),
])
def test_bad_sentences_exit_2(argv, fragment):
    assert fragment in bad(argv)


def test_unknown_format_column_exits_5():
    assert "unknown column 'Colour' for show account" in bad(["show", "account", "format=Name,Colour"], code=5)


# -- requests built -------------------------------------------------------------------------------

def test_add_account(acct):
    method, req = one_call(acct, "add", "account", "phys", "description=Physics dept", "PARENT=root",
                           "DefaultQos=normal", "Partition=cpu,gpu", "QosList=normal,high")
    assert method == "AddAccount" and isinstance(req, pb.AddAccountRequest)
    a = req.account
    assert (a.name, a.description, a.parent_account, a.default_qos) == ("phys", "Physics dept", "root", "normal")
    assert list(a.allowed_partitions) == ["cpu", "gpu"] and list(a.allowed_qos_list) == ["normal", "high"]


def test_add_account_by_name_key_and_success_line(acct):
    code, out, err, calls = acct("add", "account", "Name=chem")
    assert (code, out, err) == (0, "Added account chem.\n", "")
    assert calls[0][1].account.name == "chem"


def test_add_user(acct):
    method, req = one_call(acct, "add", "user", "alice", "Account=phys", "coordinator=YES", "level=Operator",
                           "partition=cpu")
    assert method == "AddUser"
    assert (req.name, req.account, req.coordinator, req.admin_level) == ("alice", "phys", True,
                                                                         pb.UserInfo.Operator)
    assert list(req.partitions) == ["cpu"]


def test_add_several_users_one_call_each(acct):
    code, out, _, calls = acct("add", "user", "alice,bob", "Account=phys")
    assert code == 0 and [c[1].name for c in calls] == ["alice", "bob"]
    assert out == "Added user alice to account phys.\nAdded user bob to account phys.\n"


def test_add_qos_limits_and_unlimited_defaults(acct):
    _, req = one_call(acct, "add", "qos", "normal", "Priority=100", "MaxJobsPerUser=10", "MaxSubmitJobs=unlimited",
                      "MaxCpusPerUser=64", "MaxWall=1-00:00:00", "MaxTimeLimitPerJob=2:00:00", "Flags=denyonlimit",
                      "Preempt=low,scavenger", "PreemptMode=cancel", "Description=default QoS")
    q = req.qos
    assert (q.name, q.priority, q.max_jobs_per_user, q.max_submit_jobs) == ("normal", 100, 10, U32)
    assert (q.max_cpus_per_user, q.max_wall, q.max_time_limit_per_job) == (64.0, 86400, 7200)
    assert (q.flags, list(q.preempt), q.preempt_mode) == (1, ["low", "scavenger"], pb.PREEMPT_MODE_CANCEL)
    assert q.description == "default QoS"
    # what was not given is unlimited, in the protocol's sentinels
    assert q.max_jobs == q.max_jobs_per_account == q.max_submit_jobs_per_user == q.max_submit_jobs_per_account == U32
    _, req = one_call(acct, "add", "qos", "free")
    q = req.qos
    assert q.max_wall == 0 and q.max_time_limit_per_job >= 315576000000 and q.max_cpus_per_user >= 1e13
    _, req = one_call(acct, "add", "qos", "m", "MaxTimeLimitPerJob=30", "MaxWall=unlimited")
    assert (req.qos.max_time_limit_per_job, req.qos.max_wall) == (1800, 0)  # a bare number is minutes


def test_delete(acct):
    method, req = one_call(acct, "delete", "account", "a,b")
    assert method == "DeleteAccount" and isinstance(req, pb.DeleteEntityRequest) and list(req.names) == ["a", "b"]
    method, req = one_call(acct, "delete", "qos", "Name=low")
    assert method == "DeleteQos" and list(req.names) == ["low"]
    code, out, _, calls = acct("remove", "user", "alice", "account=phys")
    assert (code, out) == (0, "Deleted user alice from account phys.\n")
    method, req = calls[0]
    assert method == "DeleteUser" and (list(req.names), req.account) == (["alice"], "phys")
    _, req = one_call(acct, "delete", "user", "alice")
    assert req.account == ""


def test_delete_force_where_the_request_has_it(acct):
    _, req = one_call(acct, "delete", "account", "phys", "-f")
    if "force" in req.DESCRIPTOR.fields_by_name:  # newer protocol: force on deletes
        assert req.force
    _, req = one_call(acct, "--force", "delete", "user", "alice")
    assert list(req.names) == ["alice"]


def test_modify_account_parent_and_coordinators(acct):
    _, req = one_call(acct, "modify", "account", "where", "name=phys", "set", "parent=science",
                      "coordinators+=alice,bob")
    assert [(i.field, i.operation, list(i.values)) for i in req.items] == [
        ("Parent", pb.ModifyItem.Overwrite, ["science"]), ("Coordinator", pb.ModifyItem.Add, ["alice", "bob"])]


def test_block_unblock(acct):
    method, req = one_call(acct, "block", "account", "phys")
    assert method == "BlockAccountOrUser"
    assert (req.block, req.entity_type, list(req.entity_list)) == (True, pb.Account, ["phys"])
    code, out, _, calls = acct("unblock", "user", "alice", "Account=phys")
    req = calls[0][1]
    assert (req.block, req.entity_type, list(req.entity_list), req.account) == (False, pb.User, ["alice"], "phys")
    assert out == "Unblocked user alice in account phys.\n"


def test_modify_account_items(acct):
    method, req = one_call(acct, "modify", "account", "where", "name=phys", "set", "description=New text",
                           "allowedqos+=high,low", "Partition-=gpu", "DefaultQos=low")
    assert method == "ModifyAccount" and isinstance(req, pb.ModifyEntityRequest)
    assert list(req.names) == ["phys"] and not req.force
    got = [(i.field, i.operation, list(i.values)) for i in req.items]
    assert got == [("Description", pb.ModifyItem.Overwrite, ["New text"]),
                   ("AllowedQos", pb.ModifyItem.Add, ["high", "low"]),
                   ("AllowedPartition", pb.ModifyItem.Delete, ["gpu"]),
                   ("DefaultQos", pb.ModifyItem.Overwrite, ["low"])]


def test_modify_user_where_and_force(acct):
    method, req = one_call(acct, "-f", "update", "user", "alice", "where", "Account=phys", "Partition=cpu", "set",
                           "AllowedQos=normal", "level=ADMIN")
    assert method == "ModifyUser" and isinstance(req, pb.ModifyUserRequest)
    assert (list(req.names), req.account, req.partition, req.force) == (["alice"], "phys", "cpu", True)
    assert [(i.field, i.operation, list(i.values)) for i in req.items] == [
        ("AllowedQos", pb.ModifyItem.Overwrite, ["normal"]), ("AdminLevel", pb.ModifyItem.Overwrite, ["admin"])]


def test_modify_qos_values_sent_as_written(acct):
    method, req = one_call(acct, "modify", "qos", "where", "Name=normal", "set", "MaxWall=2:00:00",
                           "maxjobs=-1", "flags=None", "preemptmode=requeue", "Preempt+=low")
    assert method == "ModifyQos"
    assert [(i.field, list(i.values)) for i in req.items] == [
        ("MaxWall", ["2:00:00"]), ("MaxJobs", ["unlimited"]), ("Flags", ["None"]), ("PreemptMode", ["REQUEUE"]),
        ("Preempt", ["low"])]


def test_show_requests(acct):
    def sent(*argv: str):
        calls = acct(*argv)[3]  # the stub's empty replies leave the names asked for "not found" (exit 4)
        assert len(calls) == 1
        return calls[0]

    assert one_call(acct, "show", "account")[1] == pb.QueryAccountInfoRequest()
    assert list(sent("show", "account", "a,b")[1].account_list) == ["a", "b"]
    assert list(sent("show", "qos", "where", "name=normal")[1].qos_list) == ["normal"]
    method, req = sent("show", "user", "alice", "where", "account=phys")
    assert method == "QueryUserInfo" and (list(req.user_list), req.account) == (["alice"], "phys")
    method, req = one_call(acct, "show", "transaction", "where", "actor=root", "Target=phys", "action=addaccount",
                           "StartTime=2026-01-02T03:04:05", "EndTime=1767225600", "MaxLines=20")
    assert method == "QueryTxnLog"
    assert (req.actor, req.target, req.action, req.end_time, req.max_lines) == ("root", "phys", "AddAccount",
                                                                                 1767225600, 20)
    assert req.start_time > 1700000000


def test_enum_numbers_match_the_proto():
    assert cacctmgr_parse.OVERWRITE == pb.ModifyItem.Overwrite and cacctmgr_parse.DELETE == pb.ModifyItem.Delete
    assert cacctmgr_parse.ADMIN_LEVELS == {"none": getattr(pb.UserInfo, "None"), "operator": pb.UserInfo.Operator,
                                           "admin": pb.UserInfo.Admin}
    assert (cacctmgr_parse.ENTITY_ACCOUNT, cacctmgr_parse.ENTITY_USER) == (pb.Account, pb.User)
    assert cacctmgr_parse.PREEMPT_MODES["suspend"] == pb.PREEMPT_MODE_SUSPEND
    assert list(cacctmgr_parse.TXN_ACTIONS) == [pb.TxnAction.Name(i) for i in range(len(pb.TxnAction.keys()))]
    for method in ("AddAccount", "DeleteUser", "ModifyQos", "BlockAccountOrUser", "QueryTxnLog"):
        assert method in rpc.REPLIES


# -- output ---------------------------------------------------------------------------------------

def qos_reply() -> pb.QueryQosInfoReply:
    return pb.QueryQosInfoReply(ok=True, qos_list=[
        pb.QosInfo(name="normal", description="default", priority=10, max_jobs_per_user=5, max_cpus_per_user=64,
                   max_time_limit_per_job=7200, max_jobs_per_account=U32, max_submit_jobs_per_user=U32,
                   max_submit_jobs_per_account=U32, max_jobs=U32, max_submit_jobs=100, max_wall=90000, flags=1,
                   preempt=["low"], preempt_mode=pb.PREEMPT_MODE_CANCEL),
        pb.QosInfo(name="UNLIMITED", max_jobs_per_user=U32, max_cpus_per_user=3.5e13,
                   max_time_limit_per_job=315576000000, max_jobs_per_account=U32, max_submit_jobs_per_user=U32,
                   max_submit_jobs_per_account=U32, max_jobs=U32, max_submit_jobs=U32, max_wall=0)])


def test_show_qos_table_and_unlimited(acct):
    code, out, err, _ = acct("show", "qos", replies={"QueryQosInfo": [qos_reply()]})
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "PRIORITY", "MAXJOBSPERUSER", "MAXCPUSPERUSER",
                                "MAXJOBSPERACCOUNT", "MAXSUBMITJOBSPERUSER", "MAXSUBMITJOBSPERACCOUNT",
                                "MAXTRESPERUSER", "MAXTRESPERACCOUNT", "MAXTRES", "MAXJOBS", "MAXSUBMITJOBS",
                                "MAXWALL", "MAXTIMELIMITPERJOB", "FLAGS", "PREEMPT", "PREEMPTMODE"]
    assert lines[1].split() == ["normal", "default", "10", "5", "64", "unlimited", "unlimited", "unlimited",
                                "unlimited", "unlimited", "unlimited", "unlimited", "100", "1-01:00:00", "02:00:00",
                                "DenyOnLimit", "low", "CANCEL"]
    assert lines[2].split() == ["UNLIMITED", "0", *["unlimited"] * 12, "None", "OFF"]


def test_format_picks_and_orders_columns(acct):
    code, out, _, _ = acct("show", "qos", "FORMAT=maxwall,NAME", replies={"QueryQosInfo": [qos_reply()]})
    assert code == 0
    assert out.splitlines() == ["MAXWALL    NAME", "1-01:00:00 normal", "unlimited  UNLIMITED"]
    code, out, err, calls = acct("show", "qos", "format=Name,Nope")
    assert code == 5 and "unknown column 'Nope'" in err and calls == []  # nothing sent


def test_show_account_table():
    reply = pb.QueryAccountInfoReply(ok=True, account_list=[
        pb.AccountInfo(name="phys", description="Physics", users=["alice", "bob"], allowed_partitions=["cpu", "gpu"],
                       default_qos="normal", allowed_qos_list=["normal", "high"], coordinators=["alice"],
                       blocked=True, parent_account="root")])
    text = render("account", list(reply.account_list), columns("account", None))
    assert text.splitlines() == [
        "NAME DESCRIPTION ALLOWEDPARTITION USERS     DEFAULTQOS ALLOWEDQOSLIST COORDINATORS BLOCKED",
        "phys Physics     cpu,gpu          alice,bob normal     normal,high    alice        true"]
    assert render("account", list(reply.account_list), columns("account", ["parentaccount"])) == \
        "PARENTACCOUNT\nroot"


def test_show_user_table(acct):
    reply = pb.QueryUserInfoReply(ok=True, user_list=[
        pb.UserInfo(uid=1000, name="alice", account="phys", admin_level=pb.UserInfo.Admin,
                    coordinator_accounts=["phys"],
                    allowed_partition_qos_list=[
                        pb.UserInfo.AllowedPartitionQos(partition_name="cpu", qos_list=["normal", "high"],
                                                        default_qos="normal"),
                        pb.UserInfo.AllowedPartitionQos(partition_name="gpu", qos_list=["normal"],
                                                        default_qos="normal")])])
    code, out, _, _ = acct("show", "user", replies={"QueryUserInfo": [reply]})
    assert code == 0
    assert out.splitlines() == [
        "ACCOUNT USERNAME UID  ALLOWEDPARTITION ALLOWEDQOSLIST DEFAULTQOS COORDINATED ADMINLEVEL BLOCKED",
        "phys    alice    1000 cpu,gpu          normal,high    normal     phys        Admin      false"]


def test_show_transaction_table(acct):
    import time

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1767225600))
    reply = pb.QueryTxnLogReply(ok=True, txn_log_list=[
        pb.Txn(actor="root", target="phys", action=pb.AddAccount, info="description=Physics",
               creation_time=1767225600)])
    code, out, _, _ = acct("show", "transaction", replies={"QueryTxnLog": [reply]})
    assert code == 0
    assert out.splitlines() == ["CREATIONTIME        ACTOR ACTION     TARGET INFO",
                                f"{when} root  AddAccount phys   description=Physics"]


def test_show_refused(acct):
    reply = pb.QueryAccountInfoReply(ok=False, rich_error_list=[
        pb.RichError(code=pb.ERR_INVALID_ACCOUNT, description="nope")])
    code, out, err, _ = acct("show", "account", "nope", replies={"QueryAccountInfo": [reply]})
    assert (code, out, err) == (4, "", "nope: No such account\n")


def test_show_names_not_in_the_reply(acct):
    reply = pb.QueryQosInfoReply(ok=True, qos_list=[pb.QosInfo(name="normal", max_jobs=U32)])
    code, out, err, _ = acct("show", "qos", "normal,gold", "format=name", replies={"QueryQosInfo": [reply]})
    assert (code, out, err) == (4, "NAME\nnormal\n", "gold: No such QoS\n")
    reply = pb.QueryUserInfoReply(ok=True)
    code, out, err, _ = acct("show", "user", "bob", "where", "Account=phys", replies={"QueryUserInfo": [reply]})
    assert (code, err) == (4, "bob: The user does not belong to this account\n")


def test_show_transaction_refused_with_code(acct):
    reply = pb.QueryTxnLogReply(ok=False, code=pb.ERR_PERMISSION_USER)
    code, out, err, _ = acct("show", "transaction", replies={"QueryTxnLog": [reply]})
    assert (code, out, err) == (4, "", "You are not allowed to do this\n")
    code, out, err, _ = acct("show", "-J", "transaction", replies={"QueryTxnLog": [reply]})
    assert (code, err) == (4, "") and json.loads(out) == {"ok": False, "code": "ERR_PERMISSION_USER",
                                                           "txn_log_list": []}


def test_rich_errors_exit_4(acct):
    reply = pb.DeleteAccountReply(ok=False, rich_error_list=[
        pb.RichError(code=pb.ERR_ACCOUNT_HAS_CHILDREN, description="a"),
        pb.RichError(code=pb.ERR_INVALID_ACCOUNT, description="b"), pb.RichError(code=pb.ERR_PERMISSION_USER)])
    code, out, err, _ = acct("delete", "account", "a,b", replies={"DeleteAccount": [reply]})
    assert code == 4 and out == ""
    assert err.splitlines() == ["a: The account still has sub-accounts; delete them first", "b: No such account",
                                "You are not allowed to do this"]


def test_add_refused_with_code_exit_4(acct):
    reply = pb.AddAccountReply(ok=False, code=pb.ERR_ACCOUNT_ALREADY_EXISTS)
    code, out, err, _ = acct("add", "account", "phys", replies={"AddAccount": [reply]})
    assert (code, out, err) == (4, "", "phys: The account already exists\n")
    reply = pb.AddUserReply(ok=False, code=pb.ERR_INVALID_USER, reason="no Unix user 'zed'")
    code, _, err, _ = acct("add", "user", "zed", "account=phys", replies={"AddUser": [reply]})
    assert (code, err) == (4, "no Unix user 'zed'\n")  # the controller's reason names the entity


def test_json_output(acct):
    code, out, err, _ = acct("show", "qos", "-J", replies={"QueryQosInfo": [qos_reply()]})
    assert code == 0 and err == ""
    data = json.loads(out)
    assert list(data) == ["ok", "qos_list", "rich_error_list"]
    assert data["qos_list"][0]["max_wall"] == "90000" and data["qos_list"][1]["max_jobs"] == U32
    assert data["qos_list"][0]["preempt_mode"] == "PREEMPT_MODE_CANCEL"
    reply = pb.ModifyAccountReply(ok=False, rich_error_list=[pb.RichError(code=pb.ERR_INVALID_QOS, description="x")])
    code, out, err, _ = acct("--json", "modify", "account", "where", "name=a", "set", "defaultqos=x",
                             replies={"ModifyAccount": [reply]})
    assert code == 4 and err == ""
    assert json.loads(out) == {"ok": False, "rich_error_list": [{"code": "ERR_INVALID_QOS", "description": "x"}]}
    code, out, _, _ = acct("add", "account", "a", "--json")
    assert code == 0 and json.loads(out) == {"ok": True, "code": "SUCCESS", "reason": ""}


# -- error codes ------------------------------------------------------------------------------------

def test_errcode_messages_cover_the_accounting_codes():
    wanted = [*range(2, 25), 26, *range(28, 41), 42, 52, 54, *range(65, 69), 77, *range(97, 106)]
    for code in wanted:
        assert errcodes.MESSAGES[code] and "\n" not in errcodes.MESSAGES[code], code
    assert set(errcodes.MESSAGES) <= set(pb.ErrCode.values())
    assert errcodes.message(0) == "Success"
    assert errcodes.message(999) == "Unknown error occurred (code 999)"
    assert errcodes.with_reason(24, "qos 'x'") == "No such QoS: qos 'x'"
    assert errcodes.with_reason(0, "") == "refused"


def test_cbatch_refusal_text():
    from crane_cli.cbatch import refusal_text

    assert refusal_text(pb.SubmitBatchJobReply(ok=False, reason="Partition NOPE not found")) == \
        "Partition NOPE not found"

    class WithCode:  # a reply from a controller whose submit replies carry an ErrCode (field 4)
        ok, code, reason = False, 65, "3 jobs running"

    assert refusal_text(WithCode()) == "The user has reached the QoS's maximum number of jobs: 3 jobs running"
    assert refusal_text(pb.SubmitBatchJobReply(ok=False)) == "unknown reason"


# -- the console script -----------------------------------------------------------------------------

def script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([script_path("cacctmgr"), *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("args, code, fragment", [
    ((), 2, "missing command"),
    (("show", "wckey"), 2, "wckeys are not supported"),
    (("-P", "show", "account"), 2, "-P/--partition-limit is not supported"),
    (("show", "account", "--bogus"), 2, "unrecognized arguments: --bogus"),
    (("add", "qos", "q", "MaxJobs=lots"), 2, "invalid MaxJobs"),
    (("show", "qos", "format=Name,Colour"), 5, "unknown column 'Colour'"),
])
def test_console_script_errors(args, code, fragment):
    r = script(*args)
    assert r.returncode == code, r
    assert r.stdout == "" and fragment in r.stderr and len(r.stderr.splitlines()) == 1, r
    assert "Traceback" not in r.stderr


def test_console_script_help_and_version():
    r = script("-h")
    assert r.returncode == 0 and r.stdout.startswith("usage: cacctmgr") and "modify account where Name=A" in r.stdout
    r = script("show", "-v")
    assert (r.returncode, r.stdout) == (0, "cacctmgr (crane-cli) 0.1.0\n")


def test_unreachable_controller_exits_3(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = write_config(tmp_path, port)
    env = {"PATH": "/usr/bin:/bin", "CRANE_TOKEN": "t", "CRANE_NO_CONF_CACHE": "1", "HOME": str(tmp_path)}
    r = script("-C", str(conf), "show", "account", env=env)
    assert r.returncode == 3, r
    assert r.stdout == "" and r.stderr.strip() == "Connection to CraneCtld is broken."


def test_start_up_imports(tmp_path):
    """A show imports grpc and the messages but none of the heavy modules the other commands avoid."""
    import sys

    from test_import_hygiene import HEAVY

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = write_config(tmp_path, port)
    env = {"PATH": "/usr/bin:/bin", "CRANE_TOKEN": "t", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    for _ in range(2):  # the second run has the config cache
        r = subprocess.run([sys.executable, "-X", "importtime", script_path("cacctmgr"), "-C", str(conf), "show",
                            "qos", "format=name"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    names = {line.split("|")[2].strip() for line in r.stderr.splitlines()
             if line.startswith("import time:") and "self [us]" not in line}
    assert "grpc" in names and "crane_cli.cacctmgr_show" in names
    assert not names & (set(HEAVY) | {"dataclasses", "crane_cli.protojson", "crane_cli.errcodes"}), \
        sorted(names & set(HEAVY))
