"""End to end: ``ccon`` and ``cbatch --pod`` on a cluster whose nodes run containers (cri on a private containerd)."""

from __future__ import annotations

import json
import os
import tempfile

import pytest
from crane_e2e import cgroups_writable, running_cluster
from crane_tools import containerd as ctrd

OK, WHY = ctrd.available(), ctrd.unavailable_reason()
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not OK, reason=f"LOUD SKIP: no private containerd: {WHY}"),
              pytest.mark.skipif(not cgroups_writable(), reason="LOUD SKIP: root cannot write cgroup v1 here")]


@pytest.fixture(scope="module")
def cl():
    d = tempfile.mkdtemp(prefix="ccn", dir="/tmp")
    with ctrd.PrivateContainerd(d) as c:
        with running_cluster(nodes=1, Plugins={"Runtime": ["cri", "cgroup"], "Settings": {
                "cri": {"Endpoint": c.socket, "LogRoot": os.path.join(d, "logs"), "Prefix": f"crane_ccon_{os.getpid()}",
                        "StopTimeout": 1}}}) as cluster:
            yield cluster


def test_run_streams_output_and_exits_with_the_container_code(cl):
    r = cl.run("ccon", "run", "-e", "X=1", ctrd.IMAGE, "sh", "-c", "echo X=$X; echo two; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout == "X=1\ntwo\n"


def test_detach_ps_logs_stop_wait_inspect(cl):
    r = cl.run("ccon", "run", "-d", "--name", "sleeper", ctrd.IMAGE, "sh", "-c", "echo up; sleep 60")
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    cl.wait_running(int(job_id))
    ps = cl.run("ccon", "ps").stdout.splitlines()
    assert ps[0].split() == ["ID", "IMAGE", "COMMAND", "STATUS", "NODE", "NAME"]
    assert any(line.split()[0] == job_id and ctrd.IMAGE in line and "sleeper" in line for line in ps[1:])
    data = json.loads(cl.run("ccon", "inspect", job_id).stdout)
    assert data[0]["container"]["image"] == ctrd.IMAGE
    assert cl.run("ccon", "stop", job_id).stdout.strip() == job_id
    assert cl.run("ccon", "wait", job_id).stdout.strip() == "137"
    assert "up" in cl.run("ccon", "logs", job_id).stdout


def test_cbatch_pod_and_a_missing_image(cl):
    job_id = cl.cbatch("--pod", ctrd.IMAGE, "-o", "pod-%j.out", "--wrap", "echo hello from a container")
    assert cl.wait_done(job_id).status == 2  # Completed
    assert cl.output(f"pod-{job_id}.out") == "hello from a container\n"
    r = cl.run("ccon", "run", "localhost/nope:1", "true")
    assert r.returncode == 125 and "nope" in r.stderr
