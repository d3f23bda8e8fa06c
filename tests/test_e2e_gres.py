"""End to end: typed GRES over FAKE GPU device files (no GPUs exist on these machines).

The fake devices are character device nodes with an unassigned major number (241): opening one
that the job is allowed fails with ENXIO ("No such device or address", no driver behind it),
opening one the devices cgroup denies fails with EPERM ("Operation not permitted"). That tells
the two apart without any GPU.
"""

from __future__ import annotations

import os
import stat

import pytest
from crane_common.states import JobState
from crane_e2e import Cluster, cgroups_writable, make_cluster

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not cgroups_writable(), reason="LOUD SKIP: root cannot write cgroup v1 here")]

FAKE_MAJOR = 241


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory):
    devdir = tmp_path_factory.mktemp("fakedev")
    os.chmod(devdir, 0o755)
    devices = []
    for i in range(4):
        path = devdir / f"fakegpu{i}"
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(FAKE_MAJOR, i))
        devices.append(str(path))
    nodes = [
        {"name": "cn01", "cpu": 2, "memory": "1G"},
        {"name": "gpu1", "cpu": 4, "memory": "2G",
         "gres": [{"name": "gpu", "type": "a100", "DeviceFileList": devices[:2]},
                  {"name": "gpu", "type": "h100", "DeviceFileList": devices[2:]}]},
    ]
    lc = make_cluster(Nodes=nodes, Partitions=[{"name": "debug", "nodes": "ALL"},
                                              {"name": "gpu", "nodes": "gpu1", "priority": 5}])
    lc.start()
    try:
        yield Cluster(lc), devices
    finally:
        lc.stop()


def _probe(devices):
    return "; ".join(f"(exec 3<{d}) 2>&1 | grep -o 'No such device or address\\|Operation not permitted' "
                     f"| sed 's|^|{os.path.basename(d)}: |'" for d in devices)


def test_typed_gres_gets_devices_env_and_cgroup(gpu_cluster):
    c, devices = gpu_cluster
    jid = c.cbatch("-p", "gpu", "--gres", "gpu:a100:2", "-o", "gpu-%j.out",
                   "--wrap", "echo CUDA=$CUDA_VISIBLE_DEVICES NV=$NVIDIA_VISIBLE_DEVICES; " + _probe(devices))
    info = c.wait_done(jid)
    assert info.status == JobState.Completed, info
    assert info.craned_list == "gpu1" and "gpu:a100:2" in info.gres
    lines = c.output(f"gpu-{jid}.out").splitlines()
    assert lines[0] == "CUDA=0,1 NV=0,1"
    assert "fakegpu0: No such device or address" in lines      # allowed
    assert "fakegpu1: No such device or address" in lines      # allowed
    assert "fakegpu2: Operation not permitted" in lines        # denied by the devices cgroup
    assert "fakegpu3: Operation not permitted" in lines


def test_untyped_gres_and_waiting_for_gpus(gpu_cluster):
    c, _ = gpu_cluster
    first = c.cbatch("-p", "gpu", "--gres", "gpu:3", "-o", "g3-%j.out", "--wrap", "echo $CUDA_VISIBLE_DEVICES; sleep 2")
    c.wait_running(first)
    second = c.cbatch("-p", "gpu", "--gres", "gpu:2", "--wrap", "true")
    c.wait_state(second, lambda i: i.status == JobState.Pending and i.pending_reason == "Resource")
    assert c.wait_done(first).status == JobState.Completed
    assert c.output(f"g3-{first}.out").strip() == "0,1,2"
    assert c.wait_done(second).status == JobState.Completed


def test_gres_beyond_any_node_is_rejected(gpu_cluster):
    c, _ = gpu_cluster
    proc = c.run("cbatch", "-p", "gpu", "--gres", "gpu:a100:3", "--wrap", "true")
    assert proc.returncode == 4 and "exceed" in (proc.stdout + proc.stderr)
    proc = c.run("cbatch", "-p", "debug", "-w", "cn01", "--gres", "gpu:1", "--wrap", "true")
    assert proc.returncode == 4


def test_cinfo_shows_node_states(gpu_cluster):
    c, _ = gpu_cluster
    jid = c.cbatch("-p", "gpu", "-c", "1", "--wrap", "sleep 3")
    c.wait_running(jid)
    out = c.run("cinfo").stdout
    assert "mix" in out and "idle" in out
    reply = c.client.drain(["cn01"], "maintenance")
    assert list(reply.modified) == ["cn01"]
    out = c.run("cinfo").stdout
    assert "drain" in out
    held = c.cbatch("-p", "debug", "-w", "cn01", "--wrap", "true")
    c.wait_state(held, lambda i: i.status == JobState.Pending)
    c.client.resume(["cn01"])
    assert c.wait_done(held).status == JobState.Completed
    c.wait_done(jid)


def test_cpuset_and_pids_limit_from_the_config():
    """A node slice pinned to core 0 (cpu_ids) and a per-job process limit (Cgroup.PidsMax)."""
    lc = make_cluster(nodes=1, Nodes=[{"name": "cn01", "cpu": 2, "memory": "1G", "cpu_ids": [0]}],
                      Cgroup={"PidsMax": 12})
    lc.start()
    try:
        c = Cluster(lc)
        script = c.lc.base_dir + "/forks.py"
        with open(script, "w") as fh:
            fh.write("import os, time\nn = 0\nfor _ in range(40):\n    try:\n        pid = os.fork()\n"
                     "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(2)\n"
                     "        os._exit(0)\n    n += 1\nprint('forked', n)\n")
        jid = c.cbatch("-o", "lim-%j.out", "--wrap", f"grep Cpus_allowed_list /proc/self/status; python3 {script}")
        info = c.wait_done(jid, timeout=30)
        out = c.output(f"lim-{jid}.out").splitlines()
        assert info.status == JobState.Completed, info
        assert out[0].split()[-1] == "0"                  # pinned to core 0
        forked = int(out[1].split()[1])
        assert 0 < forked <= 10                            # bash + python + children <= 12
    finally:
        lc.stop()
