"""End to end: a site plugin installed beside the bundled ones overrides device choice and the requeue rule.

The plugin is a real distribution (a ``.dist-info`` with entry points on the daemons' PYTHONPATH),
selected by name in the config exactly as a site package would be:
``Plugins.Gres: [lastfree, devices]`` and ``Plugins.Lifecycle: [named, standard]``.
"""

from __future__ import annotations

import os
import stat

import pytest
from crane_common.states import EC_CRANED_DOWN, JobState
from crane_e2e import Cluster, cgroups_writable, make_cluster

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not cgroups_writable(), reason="LOUD SKIP: root cannot write cgroup v1 here")]

PLUGIN = '''
import os
from crane_kernel import hookimpl


class LastFree:
    """Device choice: the LAST free device files (the bundled plugin takes the first)."""

    @hookimpl
    def crane_gres_select(self, job, node, free_devices):
        want = sum((job.gres_per_node or {}).values())
        return list(free_devices)[-want:] if 0 < want <= len(free_devices) else None

    @hookimpl
    def crane_gres_environment(self, devices, node):
        return {"SITE_PICKED": ",".join(os.path.basename(d) for d in devices)}


class NamedRequeue:
    """Requeue decision by job name; no opinion otherwise (the standard rule answers)."""

    @hookimpl
    def crane_job_requeue(self, job, reason):
        if job.name.startswith("requeue-me"):
            return True
        if job.name == "never":
            return False
        return None
'''


@pytest.fixture(scope="module")
def site_cluster(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "crane_site_policy.py").write_text(PLUGIN)
    dist = site / "crane_site_policy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: crane-site-policy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[crane.gres]\nlastfree = crane_site_policy:LastFree\n\n"
                                           "[crane.lifecycle]\nnamed = crane_site_policy:NamedRequeue\n")
    devdir = tmp_path_factory.mktemp("fakedev")
    os.chmod(devdir, 0o755)
    devices = []
    for i in range(3):
        path = devdir / f"fakegpu{i}"
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(241, i))
        devices.append(str(path))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(site) + (os.pathsep + old if old else "")
    nodes = [{"name": "cn01", "cpu": 2, "memory": "1G"},
             {"name": "gpu1", "cpu": 2, "memory": "1G",
              "gres": [{"name": "gpu", "type": "a100", "DeviceFileList": devices}]}]
    lc = make_cluster(Nodes=nodes, Partitions=[{"name": "debug", "nodes": "ALL"}],
                      Plugins={"Gres": ["lastfree", "devices"], "Lifecycle": ["named", "standard"]})
    try:
        lc.start()
        yield Cluster(lc), devices
    finally:
        lc.stop()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_site_plugin_chooses_the_devices(site_cluster):
    c, devices = site_cluster
    jid = c.cbatch("-w", "gpu1", "--gres", "gpu:a100:2", "-o", "dev-%j.out",
                   "--wrap", "echo CUDA=$CUDA_VISIBLE_DEVICES SITE=$SITE_PICKED DEVS=$CRANE_JOB_GRES_DEVICES")
    info = c.wait_done(jid)
    assert info.status == JobState.Completed, info
    line = c.output(f"dev-{jid}.out").strip()
    # the last two of three devices; the bundled plugin still supplies the vendor variables
    assert line == f"CUDA=1,2 SITE=fakegpu1,fakegpu2 DEVS={devices[1]},{devices[2]}"


def test_site_plugin_decides_requeue_when_a_node_is_lost(site_cluster):
    c, _ = site_cluster
    keep = c.cbatch("-w", "cn01", "-J", "requeue-me", "-c", "1", "--wrap", "sleep 60")   # JobRequeue is off
    never = c.cbatch("-w", "cn01", "-J", "never", "-c", "1", "--requeue", "--wrap", "sleep 60")
    for jid in (keep, never):
        c.wait_running(jid)
    c.lc.kill_craned("cn01")
    c.wait_state(keep, lambda i: i.status == JobState.Pending, timeout=20)               # requeued by the site
    info = c.wait_done(never, timeout=20)                                                # --requeue overridden
    assert info.status == JobState.Failed and info.exit_code == EC_CRANED_DOWN, info
    plain = c.cbatch("-w", "gpu1", "--wrap", "true")                                      # the cluster still works
    assert c.wait_done(plain).status == JobState.Completed
    c.lc.start_craned("cn01")
    c.wait_running(keep, timeout=30)
    c.client.cancel([keep])
    assert c.wait_done(keep).status == JobState.Cancelled
