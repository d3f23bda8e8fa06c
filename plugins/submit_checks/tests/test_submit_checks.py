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


def test_counting_by_node_shape_decides_as_looking_at_every_node():
    """The shape index (one entry per node type) accepts and refuses exactly what a per-node scan does."""
    import random

    from crane_kernel import gres as gres_rules

    cfg = parse_config({
        "Nodes": [{"name": "a[01-40]", "cpu": 8, "memory": "16G"}, {"name": "b[01-20]", "cpu": 32, "memory": "64G"},
                  {"name": "g[01-05]", "cpu": 16, "memory": "64G", "gres": [{"name": "gpu", "count": 2}]}],
        "Partitions": [{"name": "all", "nodes": "ALL"}]})
    info = build_cluster_info(cfg)
    names = list(info.nodes)
    rng = random.Random(7)

    def by_scan(j):
        def fits(n):
            node = info.nodes[n]
            return (node.cpus + 1e-9 >= j["cpus_per_node"] and node.memory >= j["mem_per_node"]
                    and (not j["gres"] or gres_rules.fits(node.gres, j["gres"])))
        cands = [n for n in names if n not in j["exclude"] and fits(n)]
        return len(cands) >= j["node_num"] and all(n in cands for n in j["nodelist"])

    for _ in range(400):
        j = job(partition="all", node_num=rng.choice([1, 2, 5, 20, 25, 60, 70]),
                cpus_per_node=float(rng.choice([1, 8, 9, 16, 32, 33])), mem_per_node=rng.choice([1, 16, 40, 64]) << 30,
                gres=rng.choice([{}, {"gpu": 1}, {"gpu": 3}]), exclude=rng.sample(names, rng.choice([0, 0, 3, 30])),
                nodelist=rng.sample(names, rng.choice([0, 0, 1, 2])))
        try:
            check(j, info)
            ok = True
        except JobRejected:
            ok = False
        assert ok == by_scan(j), j
