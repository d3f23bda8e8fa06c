"""``--json`` in upstream's shape: our replies translated by crane_cli/upjson.py.

The expected key lists, encodings and examples are upstream's, from
/work/shared/reference/cranesched-json.md (§1.2 encodings, §2 message shapes): a tool written
for upstream CraneSched must find its keys, in declaration order, with its value encodings.
"""

from __future__ import annotations

import json

import pytest
from crane_common.proto import crane_pb2 as pb

from crane_cli import ccontrol, protojson, upjson
from crane_cli.errors import CliError

# upstream's JobInfo fields in declaration order (§2.2)
JOB_INFO_KEYS = [
    "type", "job_id", "name", "partition", "uid", "gid", "time_limit", "start_time", "end_time", "submit_time",
    "account", "node_num", "cmd_line", "cwd", "username", "qos", "req_total_res_view", "licenses_count",
    "req_nodes", "exclude_nodes", "extra_attr", "reservation", "pod_meta", "step_info_list", "dependency_status",
    "held", "status", "exit_code", "priority", "pending_reason", "craned_list", "elapsed_time", "execution_node",
    "exclusive", "allocated_res_view", "wckey", "env", "submit_hostname", "ntasks", "deadline_time", "requeue_count",
    "requeue_if_failed", "array_spec", "array_task"]
STEP_INFO_KEYS = [
    "type", "step_type", "job_id", "step_id", "name", "uid", "gid", "time_limit", "start_time", "end_time",
    "submit_time", "node_num", "cmd_line", "cwd", "ntasks", "req_total_res_view", "req_nodes", "exclude_nodes",
    "extra_attr", "container_meta", "held", "status", "exit_code", "craned_list", "elapsed_time", "execution_node",
    "allocated_res_view", "deadline_time"]
CRANED_INFO_KEYS = [
    "hostname", "resource_state", "control_state", "power_state", "res_total", "res_avail", "res_alloc",
    "partition_names", "running_job_num", "craned_version", "system_desc", "craned_start_time", "system_boot_time",
    "last_busy_time", "node_topo_info"]
PARTITION_INFO_KEYS = [
    "hostlist", "state", "name", "total_nodes", "alive_nodes", "res_total", "res_avail", "res_alloc",
    "allowed_accounts", "denied_accounts", "default_mem_per_cpu", "max_mem_per_cpu", "default_mem_per_node",
    "max_mem_per_node"]
RESERVATION_INFO_KEYS = [
    "reservation_name", "start_time", "duration", "partition", "craned_regex", "res_total", "res_avail", "res_alloc",
    "allowed_accounts", "denied_accounts", "allowed_users", "denied_users"]
LICENSE_INFO_KEYS = ["name", "total", "used", "free", "reserved", "remote", "last_consumed", "last_deficit",
                     "last_update"]
RESOURCE_VIEW_KEYS = ["cpu_count", "memory_bytes", "memory_sw_bytes", "gres_map"]


def upstream_part(keys: list[str], upstream: list[str]) -> list[str]:
    """``keys`` must be upstream's (a subsequence, in order) followed by ours (names upstream does not use)."""
    ours = [k for k in keys if k not in upstream]
    head = keys[:len(keys) - len(ours)]
    assert keys[len(head):] == ours, f"our fields must follow upstream's: {keys}"
    assert head == [k for k in upstream if k in head], f"upstream's fields out of order: {head}"
    return head


def running_job(**kw) -> pb.JobInfo:
    fields = dict(job_id=17, name="sim", user="alice", uid=1000, gid=1000, account="phys", partition="CPU",
                  qos="normal", status=pb.Running, type=pb.Batch, time_limit=1800, submit_time=1704067100,
                  start_time=1704067200, node_num=2, req_cpus=4.0, cpus_per_task=2, ntasks_per_node=1,
                  req_mem_per_node=1 << 30, alloc_cpus=4.0, alloc_mem_per_node=1 << 30, craned_list="cn[01-02]",
                  priority=1234.9, exit_code=0, comment="hello", cmd_line="cbatch run.sh", cwd="/home/alice",
                  submit_host="login1", gres="gpu:a100:2,gpu:1", elapsed=60, req_nodes="cn01,cn02",
                  licenses={"matlab": 2, "abaqus": 1})
    fields.update(kw)
    return pb.JobInfo(**fields)


# -- §1.2 encodings -------------------------------------------------------------------------------

def test_timestamps_durations_and_numbers():
    assert upjson.timestamp(0) == "1970-01-01T00:00:00Z"
    assert upjson.timestamp(1704067200) == "2024-01-01T00:00:00Z"
    assert upjson.timestamp(1704067200.5) == "2024-01-01T00:00:00.500Z"
    assert upjson.timestamp(upjson.MAX_TIMESTAMP) == "9999-12-31T23:59:59Z"
    with pytest.raises(CliError) as err:  # upstream: marshalling fails, exit 5
        upjson.timestamp(upjson.MAX_TIMESTAMP + 1)
    assert err.value.code == 5
    assert upjson.duration(1801) == "1801s" and upjson.duration(1.5) == "1.500s" and upjson.duration(-5) == "-5s"
    assert upjson.duration(0.25) == "0.250s" and upjson.duration(-0.5) == "-0.500s" and upjson.duration(1.0000001) == \
        "1.000000100s"
    assert upjson.timestamp(1704067199.9999999999) == "2024-01-01T00:00:00Z"
    assert upjson.time_limit(0) == upjson.time_limit(10**15) == "315576000000s"  # upstream's "unlimited"
    assert upjson.u64(1073741824) == "1073741824"
    assert [upjson.dumps(x) for x in (2.0, 0.5, 1e-7, 1e21, 123456789.0, -0.25)] == \
        ["2", "0.5", "1e-7", "1e+21", "123456789", "-0.25"]
    assert upjson.dumps(float("nan")) == '"NaN"' and upjson.dumps(float("-inf")) == '"-Infinity"'


def test_strings_are_escaped_as_protojson_does():
    text = upjson.dumps({"s": 'a"\\\n\t\x01<>&é'})
    assert text == '{"s":"a\\"\\\\\\n\\t\\u0001<>&é"}'  # no HTML escaping, raw UTF-8, lowercase \u00xx
    assert json.loads(text)["s"] == 'a"\\\n\t\x01<>&é'


# -- §2.2 jobs ---------------------------------------------------------------------------------------

def test_job_info_keys_order_and_encodings():
    info = upjson.job_info(running_job(), now=1704067260)
    head = upstream_part(list(info), JOB_INFO_KEYS)
    assert "pending_reason" not in head and "craned_list" in head  # the oneof: a running job has its nodes
    for absent in ("pod_meta", "dependency_status", "deadline_time", "array_spec", "array_task"):
        assert absent not in info  # message fields not set here are absent, never null
    assert info["type"] == "Batch" and info["status"] == "Running" and info["username"] == "alice"
    assert info["time_limit"] == "1800s" and info["elapsed_time"] == "60s"
    assert info["start_time"] == "2024-01-01T00:00:00Z" and info["submit_time"] == "2023-12-31T23:58:20Z"
    assert info["end_time"] == "2024-01-01T00:30:00Z"  # a running job: the expected end
    assert info["priority"] == 1234  # uint32, truncated
    assert info["req_total_res_view"] == {
        "cpu_count": 4.0, "memory_bytes": str(2 << 30), "memory_sw_bytes": str(2 << 30),
        "gres_map": {"name_gres_map": {"gpu": {"total": "6", "specified": {"a100": "4"}}}}}
    assert list(info["allocated_res_view"]) == RESOURCE_VIEW_KEYS
    assert list(info["licenses_count"]) == ["abaqus", "matlab"] and info["licenses_count"]["matlab"] == 2
    assert info["req_nodes"] == ["cn01", "cn02"] and info["exclude_nodes"] == []
    assert info["execution_node"] == ["cn01", "cn02"] and info["ntasks"] == 2
    assert json.loads(info["extra_attr"]) == {"comment": "hello"}
    assert info["wckey"] == "" and info["env"] == {} and info["requeue_count"] == 0
    assert info["submit_hostname"] == "login1"
    assert info["comment"] == "hello" and info["usage_cpu_ms"] == "0"  # ours, after upstream's


def test_pending_job_the_oneof_and_unlimited():
    info = upjson.job_info(pb.JobInfo(job_id=3, status=pb.Pending, pending_reason="Priority", submit_time=5))
    assert info["pending_reason"] == "Priority" and "craned_list" not in info
    assert info["time_limit"] == "315576000000s" and info["start_time"] == "1970-01-01T00:00:00Z"
    assert info["elapsed_time"] == "0s" and info["execution_node"] == []
    assert upjson.job_info(pb.JobInfo(job_id=3, status=pb.Pending))["pending_reason"] == ""  # set, even when empty


def test_array_dependency_deadline_and_lifecycle_fields():
    task = upjson.job_info(running_job(array_job_id=12, array_task_id=5))
    assert task["array_task"] == {"array_job_id": 12, "task_id": 5}
    parent = upjson.job_info(pb.JobInfo(job_id=12, status=pb.Pending, array_spec="1-100:2%10",
                                        array_pending="5-100:2%10"))
    assert parent["array_spec"] == {"start": 1, "end": 100, "stride": 2, "max_concurrent": 10}
    assert parent["array_pending"] == "5-100:2%10" and "array_task" not in parent
    assert upjson.array_spec("1,5,9") == {"start": 1, "end": 9}  # no stride for a list
    dep = upjson.job_info(pb.JobInfo(job_id=4, status=pb.Pending, dependency="afterok:1:2+10,afterany:3",
                                     pending_reason="Dependency", deadline=1704067200, requeue_count=2,
                                     reservation="maint"))
    assert dep["dependency_status"] == {
        "pending": [{"job_id": 1, "type": "AFTER_OK", "delay_seconds": "0"},
                    {"job_id": 2, "type": "AFTER_OK", "delay_seconds": "600"},
                    {"job_id": 3, "type": "AFTER_ANY", "delay_seconds": "0"}],
        "is_or": False, "infinite_past": True}
    assert dep["deadline_time"] == "2024-01-01T00:00:00Z" and dep["requeue_count"] == 2
    assert dep["reservation"] == "maint" and dep["dependency"] == "afterok:1:2+10,afterany:3"
    assert [upjson._delay_seconds(x) for x in ("10", "30s", "2h", "1d", "x", "")] == [600, 30, 7200, 86400, 0, 0]
    never = upjson.job_info(pb.JobInfo(job_id=4, dependency="afternotok:1?after:2",
                                       pending_reason="DependencyNeverSatisfied"))["dependency_status"]
    assert never["is_or"] is True and never["infinite_future"] is True and "infinite_past" not in never
    upstream_part(list(dep), JOB_INFO_KEYS)


def test_container_job_has_pod_meta():
    job = running_job(type=pb.Container, container=pb.ContainerSpec(image="img:1", pod_name="web", ports=["8080:80"],
                                                                    user="1000:100", host_network=True))
    meta = upjson.job_info(job)["pod_meta"]
    assert meta["name"] == "web" and meta["run_as_user"] == 1000 and meta["run_as_group"] == 100
    assert meta["namespace"]["network"] == "NODE"
    assert meta["ports"] == [{"protocol": "TCP", "container_port": 80, "host_port": 8080, "host_ip": ""}]


def test_step_info():
    job = running_job(step_info_list=[pb.StepInfo(job_id=17, step_id=0, name="batch", status=pb.Running,
                                                  start_time=1704067200, craned_list="cn01", node_num=1,
                                                  alloc_cpus=2, ntasks=1),
                                      pb.StepInfo(job_id=17, step_id=3, status=pb.Completed, exit_code=256 + 9)])
    steps = upjson.job_info(job, now=1704067230)["step_info_list"]
    upstream_part(list(steps[0]), STEP_INFO_KEYS)
    assert steps[0]["step_type"] == "PRIMARY" and steps[1]["step_type"] == "COMMON"
    assert steps[0]["gid"] == [1000] and steps[0]["time_limit"] == "1800s"  # a step without its own: the job's
    assert steps[0]["elapsed_time"] == "30s" and "elapsed_time" not in steps[1]
    assert steps[1]["status"] == "Completed" and steps[1]["exit_code"] == 265


def test_query_jobs_info_reply_is_one_compact_line():
    reply = pb.QueryJobsInfoReply(ok=True, jobs=[running_job(), pb.JobInfo(job_id=3)])
    text = protojson.to_json(reply)
    assert "\n" not in text and '": ' not in text and '", "' not in text
    data = json.loads(text)
    assert list(data) == ["ok", "job_info_list", "reason"] and data["ok"] is True
    assert [j["job_id"] for j in data["job_info_list"]] == [17, 3]
    only = upjson.query_jobs_info_reply(reply, [reply.jobs[1]])
    assert [j["job_id"] for j in only["job_info_list"]] == [3]


# -- §2.1 cbatch -------------------------------------------------------------------------------------

def test_submit_replies_match_upstreams_examples():
    assert upjson.dumps(upjson.submit_batch_job_reply(pb.SubmitBatchJobReply(ok=True, job_id=17))) == \
        '{"ok":true,"job_id":17,"reason":""}'
    refused = pb.SubmitBatchJobReply(ok=False, code=pb.ERR_INVALID_PARTITION)
    assert upjson.dumps(upjson.submit_batch_job_reply(refused)) == \
        '{"ok":false,"code":"ERR_INVALID_PARTITION","reason":""}'
    no_code = upjson.submit_batch_job_reply(pb.SubmitBatchJobReply(ok=False, reason="bad script"))
    assert no_code == {"ok": False, "code": "ERR_GENERIC_FAILURE", "reason": "bad script"}
    many = upjson.submit_batch_jobs_reply(pb.SubmitBatchJobsReply(ok=True, job_ids=[5, 6]), 2)
    assert list(many)[:2] == ["job_id_list", "code_list"] and many["job_id_list"] == [5, 6] and many["code_list"] == []
    bad = upjson.submit_batch_jobs_reply(pb.SubmitBatchJobsReply(ok=False, code=pb.ERR_INVALID_QOS), 3)
    assert bad["job_id_list"] == [] and bad["code_list"] == ["ERR_INVALID_QOS"] * 3


# -- §2.4-2.6 nodes and partitions -------------------------------------------------------------------

NODES = [pb.CranedInfo(name="cn01", cpu_total=8, cpu_alloc=2, mem_total=16 << 30, mem_alloc=4 << 30,
                       resource_state="mix", control_state="none", partitions=["CPU"], running_jobs=1,
                       gres_total="gpu:a100:2", gres_alloc="gpu:a100:1", last_seen=1704067200),
         pb.CranedInfo(name="cn02", cpu_total=8, mem_total=16 << 30, resource_state="idle", control_state="drain",
                       partitions=["CPU"], reason="disk"),
         pb.CranedInfo(name="cn03", cpu_total=8, mem_total=16 << 30, resource_state="down", control_state="none",
                       partitions=["CPU"])]
PART = pb.PartitionInfo(name="CPU", state="up", nodes=["cn01", "cn02", "cn03"], cpu_total=24, cpu_alloc=2,
                        mem_total=48 << 30, mem_alloc=4 << 30, default_mem_per_cpu=1 << 30, priority=5)


def test_craned_info():
    data = json.loads(protojson.to_json(pb.QueryCranedInfoReply(nodes=NODES)))
    assert list(data) == ["craned_info_list"]
    node = data["craned_info_list"][0]
    upstream_part(list(node), CRANED_INFO_KEYS)
    assert (node["hostname"], node["resource_state"], node["control_state"], node["power_state"]) == \
        ("cn01", "CRANE_MIX", "CRANE_NONE", "CRANE_POWER_ACTIVE")
    assert node["res_total"]["gres"] == {"name_type_map": {"gpu": {"type_slots_map": {"a100": {"slots": ["0", "1"]}}}}}
    assert node["res_avail"]["cpu_count"] == 6 and node["res_avail"]["memory_bytes"] == str(12 << 30)
    assert len(node["res_alloc"]["gres"]["name_type_map"]["gpu"]["type_slots_map"]["a100"]["slots"]) == 1
    assert node["partition_names"] == ["CPU"] and node["running_job_num"] == 1
    assert data["craned_info_list"][1]["control_state"] == "CRANE_DRAIN"
    assert data["craned_info_list"][1]["reason"] == "disk"  # ours
    assert protojson.to_json(pb.QueryCranedInfoReply()) == '{"craned_info_list":[]}'


def test_partition_info():
    data = upjson.query_partition_info_reply(pb.QueryPartitionInfoReply(partitions=[PART]), NODES)
    part = data["partition_info_list"][0]
    upstream_part(list(part), PARTITION_INFO_KEYS)
    assert part["hostlist"] == "cn[01-03]" and part["state"] == "PARTITION_UP"
    assert (part["total_nodes"], part["alive_nodes"]) == (3, 2)
    assert part["res_total"]["gres_map"]["name_gres_map"]["gpu"]["total"] == "2"
    assert part["res_avail"]["cpu_count"] == 22 and part["default_mem_per_cpu"] == str(1 << 30)
    assert part["allowed_accounts"] == [] and part["max_mem_per_node"] == "0"


def test_cluster_info_groups_nodes_by_state():
    data = upjson.query_cluster_info_reply([PART], NODES, keep=lambda n: n.name != "cn03")
    assert list(data) == ["ok", "partitions"]
    part = data["partitions"][0]
    assert list(part) == ["name", "state", "craned_lists"]
    assert part["craned_lists"] == [
        {"resource_state": "CRANE_MIX", "control_state": "CRANE_NONE", "power_state": "CRANE_POWER_ACTIVE",
         "count": 1, "craned_list_regex": "cn01", "reason": ""},
        {"resource_state": "CRANE_IDLE", "control_state": "CRANE_DRAIN", "power_state": "CRANE_POWER_ACTIVE",
         "count": 1, "craned_list_regex": "cn02", "reason": "disk"}]


# -- §2.7-2.9 changes, reservations, licenses, ccancel -------------------------------------------------

def test_modification_replies():
    assert protojson.to_json(pb.ModifyJobReply(modified=[1], not_modified=[2], reasons=["Permission denied"])) == \
        '{"modified_jobs":[1],"not_modified_jobs":[2],"not_modified_reasons":["Permission denied"]}'
    assert json.loads(protojson.to_json(pb.ModifyNodeReply(modified=["cn01"]))) == \
        {"modified_nodes": ["cn01"], "not_modified_nodes": [], "not_modified_reasons": []}
    requeue = pb.RequeueJobReply(requeued_jobs=[3], not_requeued_jobs={10: "finished", 2: "not found"})
    assert protojson.to_json(requeue) == '{"requeued_jobs":[3],"not_requeued_jobs":{"2":"not found","10":"finished"}}'
    assert protojson.to_json(pb.CreateReservationReply(ok=True)) == '{"ok":true,"reason":""}'


def test_reservations_and_licenses():
    res = pb.ReservationInfo(reservation_name="maint", start_time=1704067200, duration=3600, craned_regex="cn[01-02]",
                             cpu_total=16, cpu_alloc=4, mem_total=32 << 30, allowed_users=["alice"], flags=["MAINT"])
    data = json.loads(protojson.to_json(pb.QueryReservationInfoReply(ok=True, reservation_info_list=[res])))
    assert list(data) == ["ok", "reason", "reservation_info_list"]
    info = data["reservation_info_list"][0]
    upstream_part(list(info), RESERVATION_INFO_KEYS)
    assert info["start_time"] == "2024-01-01T00:00:00Z" and info["duration"] == "3600s"
    assert info["res_avail"]["cpu_count"] == 12 and info["allowed_users"] == ["alice"] and info["flags"] == ["MAINT"]
    lic = json.loads(protojson.to_json(pb.QueryLicensesInfoReply(
        ok=True, license_info_list=[pb.LicenseInfo(name="matlab", total=10, used=3, free=7)])))
    assert list(lic) == ["ok", "license_info_list"]
    assert list(lic["license_info_list"][0]) == LICENSE_INFO_KEYS
    assert lic["license_info_list"][0]["last_update"] == "0" and lic["license_info_list"][0]["free"] == 7


def test_ccancel_object():
    from crane_cli.ccancel import reply_json

    assert reply_json(pb.CancelJobReply(cancelled=[15])) == \
        '{"cancelled_steps":{"15":{"steps":[]}},"not_cancelled_job_steps":{}}'
    reply = pb.CancelJobReply(cancelled_tasks=[pb.ArrayTaskRef(array_job_id=12, task_id=3)],
                              not_cancelled_tasks=[pb.ArrayTaskRef(array_job_id=12, task_id=4)],
                              task_reasons=["a <b> & c"])
    text = reply_json(reply)
    assert json.loads(text) == {"cancelled_steps": {"12_3": {"steps": []}},
                                "not_cancelled_job_steps": {"12_4": {"reason": "a <b> & c", "step_ids": [],
                                                                     "step_reasons": []}}}
    assert "\\u003cb\\u003e \\u0026" in text  # Go's encoding/json escapes HTML characters


def test_replies_already_in_upstreams_shape_are_printed_as_they_are():
    reply = pb.QueryAccountInfoReply(ok=True, account_list=[pb.AccountInfo(name="phys", blocked=False)])
    text = protojson.to_json(reply)
    data = json.loads(text)
    assert list(data) == ["ok", "account_list", "rich_error_list"] and "\n" not in text
    account = data["account_list"][0]
    assert list(account) == ["name", "description", "users", "child_accounts", "parent_account", "allowed_partitions",
                             "default_qos", "allowed_qos_list", "coordinators", "blocked", "partition_resource_limit"]
    assert account["partition_resource_limit"] == {}  # upstream's map, always present (limits not modelled here)
    users = json.loads(protojson.to_json(pb.QueryUserInfoReply(ok=True, user_list=[pb.UserInfo(name="alice")])))
    assert list(users["user_list"][0]) == ["uid", "name", "account", "blocked", "allowed_partition_qos_list",
                                           "coordinator_accounts", "admin_level", "account_to_partition_limit",
                                           "is_default_account"]
    qos = json.loads(protojson.to_json(pb.QueryQosInfoReply(ok=True, qos_list=[pb.QosInfo(name="normal")])))
    assert qos["qos_list"][0]["max_time_limit_per_job"] == "0" and qos["qos_list"][0]["preempt_mode"] == \
        "PREEMPT_MODE_OFF"


# -- ccontrol's lines (§4.4) -------------------------------------------------------------------------

def test_ccontrol_report_lines_and_exit_codes(capsys):
    reply = pb.ModifyJobReply(modified=[1, 2], not_modified=[3], reasons=["Permission denied."])
    assert ccontrol._report(reply, "modified", "not_modified", "job", False, "hold jobs") == 4
    out, err = capsys.readouterr()
    assert out == "Jobs 1, 2 modified successfully.\n"
    assert err == "hold jobs failed: Failed to modify job: 3. Reason: Permission denied.\n"
    assert ccontrol._report(reply, "modified", "not_modified", "job", True, "hold jobs") == 1  # upstream's status
    out, err = capsys.readouterr()
    assert json.loads(out)["not_modified_jobs"] == [3] and err == "hold jobs failed: \n"
    assert ccontrol._report(reply, "modified", "not_modified", "job", True, "suspend jobs") == 4
    assert capsys.readouterr().err == ""
    nodes = pb.ModifyNodeReply(modified=["cn01", "cn02"])
    assert ccontrol._report(nodes, "modified", "not_modified", "node", False, "change node state") == 0
    assert capsys.readouterr().out == ("Nodes cn01, cn02 modified successfully, please wait for a few minutes for "
                                       "the node state to fully update.\n")
    refused = pb.ModifyNodeReply(not_modified=["cn01"], reasons=["x"])
    assert ccontrol._report(refused, "modified", "not_modified", "node", True, "change node state") == 2


def test_ccontrol_commands_print_upstreams_replies(cli):
    data = json.loads(cli("ccontrol", "show", "node", "--json").out)
    assert list(data) == ["craned_info_list"] and data["craned_info_list"][0]["hostname"] == "cn01"
    data = json.loads(cli("ccontrol", "show", "partition", "--json").out)
    part = data["partition_info_list"][0]
    assert part["name"] == "CPU" and part["alive_nodes"] <= part["total_nodes"]
    data = json.loads(cli("ccontrol", "show", "job", "2", "--json").out)
    assert [j["job_id"] for j in data["job_info_list"]] == [2] and data["job_info_list"][0]["username"]
    r = cli("ccontrol", "hold", "1,2", "--json")
    assert (r.code, r.out) == (0, '{"modified_jobs":[1,2],"not_modified_jobs":[],"not_modified_reasons":[]}\n')
    assert cli("ccontrol", "release", "1,2").out == "Jobs 1, 2 modified successfully.\n"
    r = cli("ccontrol", "update", "nodeName=cn[01-02]", "state=drain", "reason=disk")
    assert r.out == ("Nodes cn01, cn02 modified successfully, please wait for a few minutes for the node state to "
                     "fully update.\n")


def test_ceff_json_names_array_tasks():
    from crane_cli.ceff import efficiency

    plain = efficiency(pb.JobInfo(job_id=20, status=pb.Pending, node_num=1), 0)
    assert list(plain)[:2] == ["job_id", "qos"]  # display_job_id and the array ids: omitted
    task = efficiency(pb.JobInfo(job_id=20, array_job_id=12, array_task_id=3, status=pb.Pending, node_num=1), 0)
    assert list(task)[:5] == ["job_id", "display_job_id", "array_job_id", "array_task_id", "qos"]
    assert (task["display_job_id"], task["array_job_id"], task["array_task_id"]) == ("12_3", 12, 3)


def test_cqueue_json_of_a_refused_query(cli):
    r = cli("cqueue", "--json", "-p", "NOPE")
    assert r.code == 4 and r.err.strip() == "JSON output failed"  # upstream's line and exit status
    assert json.loads(r.out)["ok"] is False and json.loads(r.out)["job_info_list"] == []
