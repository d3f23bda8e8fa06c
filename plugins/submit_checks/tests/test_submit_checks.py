"""The ``submit_checks`` job filter: partition accounts, -w membership and 'can this ever fit'."""

from __future__ import annotations

import pytest
from crane_kernel import plugins
from crane_kernel.auth_types import Identity
from crane_kernel.clusterinfo import build_cluster_info
from crane_kernel.config import parse_config
from crane_kernel.errors import JobRejected
from crane_submit_checks import SubmitChecks, check

CFG = parse_config({
    "Nodes": [{"name": "cn[01-02]", "cpu": 8, "memory": "16G"},
              {"name": "big", "cpu": 64, "memory": "256G", "gres": [{"name": "gpu", "type": "a100", "count": 4}]}],
    "Partitions": [{"name": "cpu", "nodes": "cn[01-02]", "DeniedAccounts": ["guest"]},
                   {"name": "gpu", "nodes": "big", "AllowedAccounts": ["ml", "ai"]}],
})
INFO = build_cluster_info(CFG)


def job(**kw):
    base = {"partition": "cpu", "account": "", "node_num": 1, "cpus_per_node": 1.0, "mem_per_node": 1 << 30,
            "gres": {}, "nodelist": [], "exclude": []}
    base.update(kw)
    return base


def test_cluster_info_describes_the_config():
    assert INFO.partitions["gpu"].nodes == ("big",) and INFO.partitions["gpu"].allowed_accounts == {"ml", "ai"}
    assert INFO.nodes["big"].gres == {"gpu:a100": 4} and INFO.nodes["cn01"].partitions == ("cpu",)
    with pytest.raises(TypeError):
        INFO.nodes["x"] = None  # read-only


def test_accounts():
    check(job(account="phys"), INFO)
    check(job(partition="gpu", account="ml"), INFO)
    with pytest.raises(JobRejected, match=r"^Account 'phys' is not allowed in partition 'gpu'$"):
        check(job(partition="gpu", account="phys"), INFO)
    with pytest.raises(JobRejected, match=r"^Account 'guest' is denied in partition 'cpu'$"):
        check(job(account="guest"), INFO)


def test_feasibility():
    check(job(node_num=2, cpus_per_node=8.0), INFO)
    with pytest.raises(JobRejected, match=r"\(3 node\(s\) x 1 CPU, 1024 MB\) exceed what partition 'cpu'"):
        check(job(node_num=3), INFO)
    with pytest.raises(JobRejected, match="gpu:a100:5"):
        check(job(partition="gpu", account="ml", gres={"gpu:a100": 5}), INFO)
    check(job(partition="gpu", account="ml", gres={"gpu": 4}), INFO)
    with pytest.raises(JobRejected, match="exceed"):
        check(job(exclude=["cn01"], node_num=2), INFO)
    with pytest.raises(JobRejected, match=r"^node\(s\) big, nosuch not in partition 'cpu'$"):
        check(job(nodelist=["big", "nosuch"]), INFO)
    with pytest.raises(JobRejected, match="requested node list cannot hold this job"):
        check(job(nodelist=["cn01"], exclude=["cn01"], node_num=1), INFO)


def test_loaded_by_name_as_the_default_filter():
    assert CFG.Plugins.JobFilters == ["submit_checks"]
    pm = plugins.load_slots({"JobFilters": CFG.Plugins.JobFilters})
    me = Identity(0, "root")
    pm.hook.crane_job_submit(job=job(), identity=me, cluster=INFO)
    with pytest.raises(JobRejected, match="denied"):
        pm.hook.crane_job_submit(job=job(account="guest"), identity=me, cluster=INFO)
    with pytest.raises(plugins.PluginError, match="submit_checks"):
        plugins.from_objects({"job_filter": {"submit_checks": SubmitChecks()}},
                             settings={"submit_checks": {"Strict": True}})
