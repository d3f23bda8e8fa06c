"""How the controller folds a submission into its per-node shape, and what it refuses at submit time.

Refusals come from the kernel (``normalize_spec``) and from the default job filter
(``submit_checks``: accounts, feasibility), loaded by name as cranectld loads it.
"""

from __future__ import annotations

import os
import pwd

import pytest
from crane_common import hostlist
from crane_kernel import plugins
from crane_kernel.auth_types import Identity
from crane_kernel.clusterinfo import build_cluster_info
from crane_kernel.config import parse_config
from crane_kernel.ctld.jobs import normalize_spec, recheck_spec
from crane_kernel.errors import ConfigError, JobRejected

RAW = {
    "DefaultMemPerCpu": "100M",
    "Nodes": [{"name": "cn[01-04]", "cpu": 8, "memory": "16G"},
              {"name": "gpu1", "cpu": 8, "memory": "16G", "gres": [{"name": "gpu", "type": "a100", "count": 2}]}],
    "Partitions": [{"name": "cpu", "nodes": "cn[01-04]", "DefaultMemPerCpu": "1G", "MaxTimeLimit": "1:00:00"},
                   {"name": "gpu", "nodes": "gpu1", "AllowedAccounts": ["ml"]},
                   {"name": "all", "nodes": "ALL", "DeniedAccounts": "guest"}],
}
CFG = parse_config(RAW)
INFO = build_cluster_info(CFG)
ME = pwd.getpwuid(os.getuid())
PM = plugins.load_slots({"JobFilters": CFG.Plugins.JobFilters})


def norm(**spec):
    """What Controller.submit does to one spec: normalise, then the configured job filters."""
    spec.setdefault("script", "#!/bin/bash\ntrue\n")
    out = normalize_spec(spec, CFG, ME.pw_uid, ME.pw_name, 1000.0)
    PM.hook.crane_job_submit(job=out, identity=Identity(ME.pw_uid, ME.pw_name), cluster=INFO)
    return out


def test_tasks_fold_into_nodes_and_cpus_per_node():
    s = norm(ntasks=6, ntasks_per_node=2, cpus_per_task=1.5)
    assert (s["node_num"], s["ntasks_per_node"], s["cpus_per_node"], s["ntasks"]) == (3, 2, 3.0, 6)
    s = norm(node_num=2, ntasks=5)
    assert (s["node_num"], s["ntasks_per_node"], s["cpus_per_node"]) == (2, 3, 3.0)
    s = norm(cpus_per_task=0.5)                          # fractional CPUs
    assert s["cpus_per_node"] == 0.5 and s["node_num"] == 1


def test_memory_per_node_per_cpu_and_defaults():
    assert norm(mem_per_node=512 << 20)["mem_per_node"] == 512 << 20
    assert norm(cpus_per_task=2, mem_per_cpu=300 << 20)["mem_per_node"] == 600 << 20
    assert norm(cpus_per_task=2)["mem_per_node"] == 2 << 30            # partition cpu: 1G per CPU
    assert norm(partition="all", cpus_per_task=2)["mem_per_node"] == 200 << 20   # cluster default


def test_partition_defaults_and_limits():
    assert norm()["partition"] == "cpu" and norm()["time_limit"] == 3600
    with pytest.raises(JobRejected, match="time limit exceeds"):
        norm(time_limit=7200)
    with pytest.raises(JobRejected, match="does not exist"):
        norm(partition="nosuch")


def test_accounts_allowed_and_denied():
    assert norm(partition="gpu", account="ml")["account"] == "ml"
    with pytest.raises(JobRejected, match="not allowed"):
        norm(partition="gpu", account="physics")
    with pytest.raises(JobRejected, match="denied"):
        norm(partition="all", account="guest")


def test_impossible_requests_are_refused():
    with pytest.raises(JobRejected, match="exceed"):
        norm(cpus_per_task=9)
    with pytest.raises(JobRejected, match="exceed"):
        norm(node_num=5)
    with pytest.raises(JobRejected, match="exceed"):
        norm(partition="gpu", account="ml", gres={"gpu:a100": 3})
    assert norm(partition="gpu", account="ml", gres={"gpu": 2})["gres"] == {"gpu": 2}
    with pytest.raises(JobRejected, match="not in partition"):
        norm(nodelist=["gpu1"])
    with pytest.raises(JobRejected, match="tasks do not fit"):
        norm(node_num=1, ntasks=4, ntasks_per_node=2)
    with pytest.raises(JobRejected, match="empty"):
        norm(script="  \n")


# --- bounds at the edge (issue 11) -------------------------------------------------------------

@pytest.mark.parametrize("spec, match", [
    ({"cpus_per_task": 1e-300}, "below the minimum"),      # used to round memory to 0: no limit at all
    ({"cpus_per_task": 0.001}, "below the minimum"),
    ({"cpus_per_task": 1e308}, "exceed the maximum"),     # used to reach the client as a server exception
    ({"cpus_per_task": float("nan")}, "positive finite"),
    ({"cpus_per_task": float("inf")}, "positive finite"),
    ({"cpus_per_task": -2}, "positive finite"),
    ({"mem_per_node": 1}, "below the minimum"),           # a 1-byte limit: the OOM killer took the supervisor
    ({"mem_per_node": 1 << 62}, "exceeds the maximum"),
    ({"mem_per_cpu": float("nan")}, "whole number"),
    ({"node_num": 10**9}, "exceeds the maximum"),
    ({"ntasks": -1}, "must not be negative"),
    ({"time_limit": 10**12}, "exceeds"),
    ({"begin_time": 1e308}, "begin time"),
    ({"gres": {"gpu": 10**12}}, "exceeds the maximum"),
    ({"name": "a\nb"}, "control character"),              # forged cqueue rows
    ({"name": "a\x00b"}, "control character"),
    ({"comment": "x\x1b[2J"}, "control character"),
    ({"account": "acct\r"}, "control character"),
    ({"partition": "cpu\n"}, "control character"),
    ({"name": "n" * 300}, "longer than"),
    ({"comment": "c" * 5000}, "longer than"),
    ({"cwd": "/" + "d" * 5000}, "longer than"),
    ({"open_mode": "sideways"}, "open mode"),
    ({"script": "#!/bin/bash\n" + "x" * (1 << 20)}, "MaxScriptBytes"),   # a 50 MB script went into the journal
    ({"env": {f"V{i}": "x" for i in range(5000)}}, "MaxEnvVars"),       # 10^6 variables were accepted
    ({"env": {"BIG": "x" * (1 << 20)}}, "MaxEnvBytes"),
    ({"env": {"A=B": "x"}}, "invalid name"),
    ({"env": {"A": "x\x00y"}}, "invalid name"),
])
def test_out_of_range_requests_are_refused(spec, match):
    with pytest.raises(JobRejected, match=match):
        norm(**spec)


def test_bounds_are_configurable_and_memory_has_a_floor():
    s = norm(cpus_per_task=0.01)                           # the smallest share: memory raised to the floor
    assert s["cpus_per_node"] == 0.01 and s["mem_per_node"] == CFG.CraneCtld.MinMemPerNode == 16 << 20
    cfg = parse_config({**RAW, "CraneCtld": {"MaxScriptBytes": 64, "MaxEnvVars": 1, "MinCpusPerTask": 0.5,
                                             "MinMemPerNode": "64M", "MaxNameBytes": 8}})
    with pytest.raises(JobRejected, match="MaxScriptBytes"):
        normalize_spec({"script": "#!/bin/bash\n" + "x" * 64}, cfg, ME.pw_uid, ME.pw_name, 1000.0)
    with pytest.raises(JobRejected, match="MaxEnvVars"):
        normalize_spec({"script": "true", "env": {"A": "1", "B": "2"}}, cfg, ME.pw_uid, ME.pw_name, 1000.0)
    with pytest.raises(JobRejected, match="below the minimum"):
        normalize_spec({"script": "true", "cpus_per_task": 0.25}, cfg, ME.pw_uid, ME.pw_name, 1000.0)
    with pytest.raises(JobRejected, match="below the minimum"):
        normalize_spec({"script": "true", "mem_per_node": 32 << 20}, cfg, ME.pw_uid, ME.pw_name, 1000.0)
    with pytest.raises(JobRejected, match="longer than 8"):
        normalize_spec({"script": "true", "name": "ninechars"}, cfg, ME.pw_uid, ME.pw_name, 1000.0)
    with pytest.raises(ConfigError, match="PrivateData"):
        parse_config({**RAW, "CraneCtld": {"PrivateData": ["jobs", "secrets"]}})


def test_what_filters_return_is_validated_again():
    spec = norm()
    recheck_spec(dict(spec), CFG, ME.pw_uid, ME.pw_name, spec["gid"])
    for change, match in (({"cpus_per_node": 1e308}, "CPUs out of range"),
                          ({"cpus_per_task": float("nan")}, "positive finite"),
                          ({"uid": ME.pw_uid + 4242, "user": "mallory"}, "owner"),
                          ({"gid": ME.pw_gid + 4242}, "owner"),
                          ({"mem_per_node": 0}, "memory below"),
                          ({"time_limit": 10**9}, "exceeds|out of range"),
                          ({"partition": "nosuch"}, "does not exist"),
                          ({"name": "x\ny"}, "control character")):
        with pytest.raises(JobRejected, match=match):
            recheck_spec({**spec, **change}, CFG, ME.pw_uid, ME.pw_name, spec["gid"])


def test_hostlist_expansion_is_bounded():
    assert hostlist.count("cn[01-9999999999]") == 9999999999
    with pytest.raises(hostlist.HostlistTooLargeError, match="more than the limit"):
        hostlist.expand("cn[01-9999999999]")               # at once: nothing is expanded first
    with pytest.raises(hostlist.HostlistTooLargeError):
        hostlist.expand("a[1-1000]b[1-1000]", limit=10_000)
    assert len(hostlist.expand("cn[1-100]", limit=100)) == 100
