"""Plugin selection by name: installed plugins load; a missing one is a one-line error listing what exists."""

from __future__ import annotations

import subprocess
import sys

import pytest
from crane_kernel import plugins
from crane_kernel.errors import PluginError


def test_bundled_plugins_are_installed_as_entry_points():
    assert "fifo" in plugins.installed("scheduler")
    assert "cgroup" in plugins.installed("runtime")
    assert "rbac" in plugins.installed("auth")


def test_unknown_plugin_names_the_installed_ones():
    with pytest.raises(PluginError) as err:
        plugins.load_one("scheduler", "nosuch")
    msg = str(err.value)
    assert "nosuch" in msg and "fifo" in msg and "\n" not in msg


def test_registered_plugin_answers_hooks():
    pm = plugins.new_manager()
    plugins.register(pm, "scheduler", ["fifo"])
    from crane_kernel.sched_types import ClusterView, SchedJob, SchedNode, SchedPartition

    nodes = [SchedNode("n1", 0, 4, 1 << 30, partitions=("p",))]
    view = ClusterView(nodes, {"p": SchedPartition("p", (0,))}, [SchedJob(1, "p", 1, 2, 1 << 20)])
    plan = pm.hook.crane_schedule(view=view, now=0.0)
    assert plan.starts == [(1, [0])]


def test_daemon_with_unknown_plugin_fails_with_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"CraneBaseDir: {tmp_path}\nRedisUrl: redis://127.0.0.1:1/0\n"
                   "Nodes: [{name: a, cpu: 1, memory: 1G}]\nPartitions: [{name: p, nodes: a}]\n"
                   "Plugins: {Scheduler: nosuch}\n")
    proc = subprocess.run([sys.executable, "-m", "crane_kernel.ctld.main", "-C", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no scheduler plugin named 'nosuch'" in proc.stderr and "fifo" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_broken_plugin_is_a_clear_error(tmp_path, monkeypatch):
    # a distribution whose entry point cannot import
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[crane.scheduler]\nbroken = no_such_module_xyz:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.invalidate_caches()
    from stevedore import ExtensionManager

    ExtensionManager.ENTRY_POINT_CACHE.clear()  # stevedore caches scans per namespace in-process
    assert "broken" in plugins.installed("scheduler")
    with pytest.raises(PluginError, match="failed to load"):
        plugins.load_one("scheduler", "broken")
