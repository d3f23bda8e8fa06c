"""``--json`` against a real cluster parses with upstream CraneSched's key names and encodings.

A tool written for upstream reads ``job_info_list[].username``, ``time_limit`` as ``"<n>s"``,
``start_time`` as RFC 3339, ``req_total_res_view.memory_bytes`` as a string, the
``pending_reason``/``craned_list`` oneof ... (/work/shared/reference/cranesched-json.md §1-2).
"""

from __future__ import annotations

import json
import re

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
DURATION = re.compile(r"^-?\d+(\.\d+)?s$")
UPSTREAM_JOB_KEYS = ("type", "job_id", "name", "partition", "uid", "gid", "time_limit", "start_time", "end_time",
                     "submit_time", "account", "node_num", "cmd_line", "cwd", "username", "qos", "req_total_res_view",
                     "licenses_count", "req_nodes", "exclude_nodes", "extra_attr", "reservation", "step_info_list",
                     "held", "status", "exit_code", "priority", "execution_node", "exclusive", "allocated_res_view",
                     "wckey", "env", "submit_hostname", "ntasks", "requeue_count", "requeue_if_failed")


def _json(cluster, *args: str):  # noqa: ANN001, ANN202
    proc = cluster.run(*args)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    assert len(proc.stdout.splitlines()) == 1, proc.stdout  # one compact line, as Go's protojson
    return json.loads(proc.stdout)


def _check_job(job: dict) -> None:
    keys = list(job)
    assert [k for k in keys if k in UPSTREAM_JOB_KEYS] == list(UPSTREAM_JOB_KEYS), keys  # all, in upstream's order
    assert isinstance(job["job_id"], int) and isinstance(job["username"], str) and job["username"]
    assert DURATION.match(job["time_limit"]) and RFC3339.match(job["submit_time"]) and RFC3339.match(job["end_time"])
    assert isinstance(job["req_total_res_view"]["memory_bytes"], str)  # uint64: a JSON string
    assert job["req_total_res_view"]["cpu_count"] >= 1 and "name_gres_map" in job["req_total_res_view"]["gres_map"]
    assert job["type"] == "Batch" and job["status"] in ("Pending", "Running", "Completed", "Failed", "Cancelled")
    assert ("pending_reason" in job) != ("craned_list" in job)  # the oneof: exactly one member


def test_cqueue_cacct_ccontrol_cinfo_cbatch_ccancel_json(cluster):
    submitted = _json(cluster, "cbatch", "--json", "-t", "10:00", "--wrap", "sleep 60")
    assert list(submitted) == ["ok", "job_id", "reason"] and submitted["ok"] is True
    running = submitted["job_id"]
    held = cluster.cbatch("-H", "--wrap", "true")
    done = cluster.cbatch("--wrap", "exit 3")
    cluster.wait_running(running)
    cluster.wait_done(done)

    q = _json(cluster, "cqueue", "--json")
    assert list(q)[:2] == ["ok", "job_info_list"] and q["ok"] is True
    jobs = {j["job_id"]: j for j in q["job_info_list"]}
    assert {running, held} <= set(jobs) and done not in jobs
    for job in jobs.values():
        _check_job(job)
    r, h = jobs[running], jobs[held]
    assert r["status"] == "Running" and r["time_limit"] == "600s" and r["craned_list"].startswith("cn")
    assert r["execution_node"] and r["start_time"] != "1970-01-01T00:00:00Z" and DURATION.match(r["elapsed_time"])
    assert h["status"] == "Pending" and h["pending_reason"] == "Held" and h["held"] is True
    assert h["time_limit"] == "315576000000s" or DURATION.match(h["time_limit"])

    a = _json(cluster, "cacct", "--json", "-j", str(done))
    assert list(a)[:2] == ["ok", "job_info_list"] and a["ok"] is True
    [job] = a["job_info_list"]
    _check_job(job)
    assert job["status"] == "Failed" and job["exit_code"] == 3 and "craned_list" in job
    assert job["step_info_list"] and all(RFC3339.match(s["start_time"]) and s["step_type"] in ("PRIMARY", "COMMON")
                                         for s in job["step_info_list"])

    shown = _json(cluster, "ccontrol", "show", "job", str(running), "--json")
    assert [j["job_id"] for j in shown["job_info_list"]] == [running]
    nodes = _json(cluster, "ccontrol", "show", "node", "--json")["craned_info_list"]
    assert {n["hostname"] for n in nodes} == {"cn01", "cn02", "cn03"}
    assert all(n["resource_state"].startswith("CRANE_") and isinstance(n["res_total"]["memory_bytes"], str)
               for n in nodes)
    parts = _json(cluster, "ccontrol", "show", "partition", "--json")["partition_info_list"]
    assert parts and parts[0]["state"] == "PARTITION_UP" and parts[0]["alive_nodes"] == parts[0]["total_nodes"]
    info = _json(cluster, "cinfo", "--json")
    assert info["ok"] is True and sum(g["count"] for p in info["partitions"] for g in p["craned_lists"]) >= 3

    cancel = cluster.run("ccancel", "--json", f"{running},{held}")
    assert cancel.returncode == 0, cancel.stderr
    assert json.loads(cancel.stdout) == {"cancelled_steps": {str(running): {"steps": []}, str(held): {"steps": []}},
                                         "not_cancelled_job_steps": {}}
