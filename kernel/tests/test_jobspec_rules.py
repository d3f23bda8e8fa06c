"""How the controller folds a submission into its per-node shape, and what it refuses at submit time.

Refusals come from the kernel (``normalize_spec``) and from the default job filter
(``submit_checks``: accounts, feasibility), loaded by name as cranectld loads it.
"""

from __future__ import annotations

import os
import pwd

import pytest
from crane_kernel import plugins
from crane_kernel.auth_types import Identity
from crane_kernel.clusterinfo import build_cluster_info
from crane_kernel.config import parse_config
from crane_kernel.ctld.jobs import normalize_spec
from crane_kernel.errors import JobRejected

CFG = parse_config({
    "DefaultMemPerCpu": "100M",
    "Nodes": [{"name": "cn[01-04]", "cpu": 8, "memory": "16G"},
              {"name": "gpu1", "cpu": 8, "memory": "16G", "gres": [{"name": "gpu", "type": "a100", "count": 2}]}],
    "Partitions": [{"name": "cpu", "nodes": "cn[01-04]", "DefaultMemPerCpu": "1G", "MaxTimeLimit": "1:00:00"},
                   {"name": "gpu", "nodes": "gpu1", "AllowedAccounts": ["ml"]},
                   {"name": "all", "nodes": "ALL", "DeniedAccounts": "guest"}],
})
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
