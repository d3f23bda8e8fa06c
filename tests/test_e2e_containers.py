"""End to end: container jobs through the cri runtime on a private containerd, beside plain jobs.

A LocalCluster with ``Plugins.Runtime: [cri, cgroup]`` and the cri plugin pointed at a private
containerd (tools/crane_tools/containerd.py) holding the offline busybox image.
"""

from __future__ import annotations

import os
import tempfile
import time

import pytest
from crane_common.proto import crane_pb2 as pb
from crane_common.states import EC_CONTAINER_ERR, JobState
from crane_e2e import cgroups_writable, running_cluster
from crane_tools import containerd as ctrd

OK, WHY = ctrd.available(), ctrd.unavailable_reason()
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not OK, reason=f"LOUD SKIP: no private containerd: {WHY}"),
              pytest.mark.skipif(not cgroups_writable(), reason="LOUD SKIP: root cannot write cgroup v1 here")]


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="cre", dir="/tmp")
    with ctrd.PrivateContainerd(d) as c:
        logs = os.path.join(d, "crilogs")
        prefix = f"crane_cri_{os.getpid()}"
        with running_cluster(nodes=2, Plugins={"Runtime": ["cri", "cgroup"], "Settings": {
                "cri": {"Endpoint": c.socket, "LogRoot": logs, "Prefix": prefix, "StopTimeout": 1}}}) as cl:
            yield cl, c, logs, prefix
    for hier in os.listdir("/sys/fs/cgroup"):  # the plugin leaves <prefix>/<node> like the cgroup runtime
        base = os.path.join("/sys/fs/cgroup", hier, prefix)
        if os.path.isdir(base) and not os.path.islink(os.path.join("/sys/fs/cgroup", hier)):
            for node in os.listdir(base):
                if os.path.isdir(os.path.join(base, node)):
                    try:
                        os.rmdir(os.path.join(base, node))
                    except OSError:
                        pass
            try:
                os.rmdir(base)
            except OSError:
                pass


def submit(cl, script, image=ctrd.IMAGE, **fields):
    container = fields.pop("container", {})
    spec = cl.client.spec(f"#!/bin/sh\n{script}\n", cwd=cl.workdir,
                          container=pb.ContainerSpec(image=image, **container),
                          **fields)
    return cl.client.submit(spec)[0]


def no_leftovers(c, logs, prefix):
    pods = c.ctr("c", "ls", "-q").split()
    assert pods == [], pods
    assert not os.listdir(logs) or all(not os.listdir(os.path.join(logs, n)) for n in os.listdir(logs))
    for hier in ("memory", "cpu", "cpuacct", "pids"):
        base = f"/sys/fs/cgroup/{hier}/{prefix}"
        if os.path.isdir(base):
            for node in os.listdir(base):
                if os.path.isdir(os.path.join(base, node)):
                    assert not [x for x in os.listdir(os.path.join(base, node)) if x.startswith("pod_")]


def wait_clean(c, logs, prefix, timeout=10):
    deadline = time.time() + timeout
    while True:
        try:
            no_leftovers(c, logs, prefix)
            return
        except AssertionError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def test_output_and_exit_code(env):
    cl, c, logs, prefix = env
    jid = submit(cl, 'echo "in $(pwd) as $(id -u)"; echo job=$CRANE_JOB_ID; exit 4', output="ctr-%j.out")
    info = cl.wait_done(jid)
    assert info.status == JobState.Failed and info.exit_code == 4, info
    assert info.container.image == ctrd.IMAGE and info.type == 2  # JobType Container (cqueue's TYPE column)
    assert cl.output(f"ctr-{jid}.out") == f"in {cl.workdir} as {os.getuid()}\njob={jid}\n"
    ok = submit(cl, "echo fine", output="ctr-%j.out")
    assert cl.wait_done(ok).status == JobState.Completed
    wait_clean(c, logs, prefix)


def test_oom_job_ends_out_of_memory(env):
    cl, c, logs, prefix = env
    jid = submit(cl, "dd if=/dev/zero of=/dev/null bs=200M count=1", mem_per_node=64 << 20, output="oom-%j.out")
    info = cl.wait_done(jid)
    assert info.status == JobState.OutOfMemory, info
    wait_clean(c, logs, prefix)


def test_time_limit_and_cancel(env):
    cl, c, logs, prefix = env
    tl = submit(cl, "sleep 60", time_limit=1, output="tl-%j.out")
    cancel = submit(cl, "sleep 60", output="cc-%j.out")
    cl.wait_running(cancel)
    time.sleep(0.5)
    cl.client.cancel([cancel])
    assert cl.wait_done(cancel, timeout=20).status == JobState.Cancelled
    assert cl.wait_done(tl, timeout=90).status == JobState.ExceedTimeLimit
    wait_clean(c, logs, prefix)


def test_missing_image_fails_with_the_reason_and_the_node_stays_up(env):
    cl, c, logs, prefix = env
    jid = submit(cl, "echo never", image="localhost/nope:1")
    info = cl.wait_done(jid)
    assert info.status == JobState.Failed, info
    assert "localhost/nope:1" in info.pending_reason
    assert info.exit_code == EC_CONTAINER_ERR, info
    after = submit(cl, "echo ok")
    assert cl.wait_done(after).status == JobState.Completed
    wait_clean(c, logs, prefix)


def test_mixed_queue_of_container_and_plain_jobs(env):
    cl, c, logs, prefix = env
    ids = []
    for i in range(4):
        ids.append(submit(cl, f"echo c{i}", output="mix-%j.out"))
        ids += cl.client.submit(cl.client.spec(wrap=f"echo p{i}", cwd=cl.workdir, output="mix-%j.out"))
    for jid in ids:
        assert cl.wait_done(jid, timeout=60).status == JobState.Completed
    outs = sorted(cl.output(f"mix-{j}.out").strip() for j in ids)
    assert outs == sorted([f"c{i}" for i in range(4)] + [f"p{i}" for i in range(4)])
    wait_clean(c, logs, prefix)
