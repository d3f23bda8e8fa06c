"""A third-party site policy package, installed with pip into the venv, used by a real cluster, removed again.

``examples/site_policy`` (distribution ``crane-site-policy``) is not part of the workspace: this
test installs it as a site would (a regular, non-editable ``pip install`` of a copy of its
sources, so the work tree stays clean), starts a LocalCluster whose config selects it by name
(``Plugins.JobFilters: [site, submit_checks]``), shows its effect on real ``cbatch``
submissions (default account and QoS by Unix group, the QoS raising the priority the bundled
``multifactor`` plugin computes, a job over the site's time ceiling refused with one line and exit
code 4), uninstalls it (always, in a ``finally``: the venv is left as it was) and shows the
controller's one-line refusal to start while the config still names it.
"""

from __future__ import annotations

import grp
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from crane_e2e import Cluster, make_cluster

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
DIST = "crane-site-policy"
GROUP = grp.getgrgid(os.getgid()).gr_name  # the submitter's (root's) primary group


def installed() -> bool:
    try:
        importlib.metadata.distribution(DIST)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def site_config() -> dict:
    return {
        "Plugins": {
            "JobFilters": ["site", "submit_checks"],
            "Priority": "multifactor",
            "Settings": {
                "site": {"DefaultAccount": {GROUP: "physics", "*": "general"},
                         "MaxTimeLimit": {"debug": "0:10:00"},
                         "Qos": {GROUP: "high"}},
                "multifactor": {"WeightAge": 0, "WeightFairShare": 0, "WeightJobSize": 0, "WeightPartition": 0,
                                "WeightQoS": 1000, "QoSPriority": {"high": 10, "normal": 0}},
            },
        },
    }


def test_site_policy_package(tmp_path):
    if installed():
        pytest.skip(f"LOUD SKIP: {DIST} is already installed in this venv; the test would not leave it as found")
    src = tmp_path / "site_policy"
    shutil.copytree(ROOT / "examples" / "site_policy", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    lc = make_cluster(base_dir=str(tmp_path / "cluster"), **site_config())  # kept after stop()
    try:
        proc = subprocess.run([*PIP, "install", "--no-deps", "--no-build-isolation", str(src)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert installed()
        lc.start()
        cluster = Cluster(lc)
        run_submissions(cluster)
    finally:
        lc.stop()
        if installed():
            proc = subprocess.run([*PIP, "uninstall", "-y", DIST], capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
    assert not installed()

    # the config still names the plugin: cranectld refuses to start, with one line saying what is there
    proc = subprocess.run([sys.executable, "-m", "crane_kernel.ctld.main", "-C", lc.config_path],
                          capture_output=True, text=True, timeout=60, env=lc.env())
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cranectld:")]
    assert len(lines) == 1, proc.stderr
    assert "no job_filter plugin named 'site' is installed (installed: " in lines[0]
    assert "submit_checks" in lines[0]


def run_submissions(cluster: Cluster) -> None:
    # no -A / -q / -t: the site's account and QoS for the group, the partition's site ceiling
    jid = cluster.cbatch("--wrap", "true")
    info = cluster.wait_done(jid)
    assert (info.account, info.qos, info.time_limit) == ("physics", "high", 600)

    # what the user asks for explicitly is kept
    jid = cluster.cbatch("-A", "chem", "-q", "normal", "-t", "0:05:00", "--wrap", "true")
    info = cluster.wait_done(jid)
    assert (info.account, info.qos, info.time_limit) == ("chem", "normal", 300)

    # over the site's ceiling: one line naming the limit, cbatch's documented exit code 4
    proc = cluster.run("cbatch", "-t", "0:20:00", "--wrap", "true")
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.strip() == ("Job allocation failed: time limit 00:20:00 exceeds the site maximum of "
                                   "00:10:00 for partition 'debug'.")  # upstream's line ends with a period

    # the priority tweak: the group's QoS (from the filter) outranks an explicit lower QoS in multifactor
    filler = cluster.cbatch("-N", "3", "-c", "2", "--wrap", "sleep 60")
    cluster.wait_running(filler)
    low = cluster.cbatch("-q", "normal", "--wrap", "true")
    high = cluster.cbatch("--wrap", "true")
    deadline = time.time() + 20
    while time.time() < deadline:
        lo, hi = cluster.job(low), cluster.job(high)
        if hi.priority > 0:
            break
        time.sleep(0.1)
    assert hi.qos == "high" and lo.qos == "normal"
    assert hi.priority > lo.priority, (hi.priority, lo.priority)
    cluster.client.cancel([filler, low, high])
    for j in (filler, low, high):
        cluster.wait_done(j)


def _module():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "site_policy_under_test", ROOT / "examples" / "site_policy" / "crane_site_policy" / "__init__.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(("settings", "message"), [
    ({"Bogus": 1}, "unknown setting 'Bogus'"),
    ({"MaxTimeLimit": {"debug": "soon"}}, "MaxTimeLimit of partition 'debug': invalid duration"),
    ({"MaxTimeLimit": {"debug": 0}}, "must be positive"),
    ({"DefaultAccount": {"g": ""}}, "DefaultAccount must map names"),
    ({"ExemptGroups": "ops"}, "ExemptGroups must be a list"),
])
def test_site_policy_rejects_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        _module().SitePolicy().crane_plugin_configure(settings)


def test_site_policy_filter_in_process():
    mod = _module()
    policy = mod.SitePolicy()
    policy.crane_plugin_configure({"DefaultAccount": {"*": "general"}, "MaxTimeLimit": {"debug": 3600},
                                   "ExemptGroups": [GROUP]})
    job = {"gid": os.getgid(), "partition": "debug", "account": "", "qos": "", "time_limit": 7200}
    policy.crane_job_submit(job=job)  # exempt group: no ceiling
    assert job["account"] == "general" and job["time_limit"] == 7200
    policy.crane_plugin_configure({"MaxTimeLimit": {"debug": 3600}})
    with pytest.raises(mod.JobRejected, match=r"^time limit 02:00:00 exceeds the site maximum of 01:00:00 "
                                              r"for partition 'debug'$"):
        policy.crane_job_submit(job=dict(job))
