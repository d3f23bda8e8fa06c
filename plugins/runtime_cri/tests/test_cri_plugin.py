"""The cri runtime plugin against a real private containerd (tools/crane_tools/containerd.py)."""

from __future__ import annotations

import os
import pwd
import signal
import tempfile
import time

import pytest
from crane_common.states import EC_CONTAINER_ERR
from crane_kernel.errors import StepLaunchError
from crane_kernel.runtime import StepSpec
from crane_tools import containerd as ctrd

from crane_runtime_cri import cgroups
from crane_runtime_cri.logs import LogPump
from crane_runtime_cri.plugin import LABEL_NODE, Cri, CriRuntime

OK, WHY = ctrd.available(), ctrd.unavailable_reason()
NODE = f"crit{os.getpid()}"


def test_log_pump_converts_full_and_partial_lines(tmp_path):
    src = tmp_path / "main.log"
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    err = os.open(tmp_path / "err", os.O_WRONLY | os.O_CREAT)
    pump = LogPump(str(src), out, err)
    assert pump.pump() == 0  # no file yet
    src.write_bytes(b"2026-11-29T01:30:05.267887373Z stdout F hello\n"
                    b"2026-11-29T01:30:05.267919561Z stderr F err-line\n"
                    b"2026-11-29T01:30:05.268918403Z stdout P no-new")
    pump.pump()
    with open(src, "ab") as f:
        f.write(b"line\n2026-11-29T01:30:05.268918403Z stdout F \n")
    pump.pump()
    os.close(out)
    os.close(err)
    assert (tmp_path / "out").read_bytes() == b"hello\nno-newline\n"
    assert (tmp_path / "err").read_bytes() == b"err-line\n"


@pytest.fixture(scope="module")
def containerd():
    if not OK:
        pytest.skip(f"no private containerd: {WHY}")
    d = tempfile.mkdtemp(prefix="crt", dir="/tmp")
    with ctrd.PrivateContainerd(d) as c:
        yield c
    rmdir_cgroups(f"crane/{NODE}")


def rmdir_cgroups(rel):
    """Remove the (empty) cgroup directory ``rel`` in every hierarchy: the node directory the tests made."""
    root = "/sys/fs/cgroup"
    for d in [root] if cgroups.is_v2(root) else [os.path.join(root, n) for n in os.listdir(root)]:
        try:
            os.rmdir(os.path.join(d, rel))
        except OSError:
            pass


@pytest.fixture
def runtime(containerd, tmp_path):
    rt = CriRuntime()
    rt.crane_plugin_configure({"Endpoint": containerd.socket, "LogRoot": str(tmp_path / "crilogs"),
                               "StopTimeout": 1})
    return rt


def step(tmp_path, script="echo hello; echo oops >&2", job_id=1, **extra):
    user = pwd.getpwuid(os.getuid())
    path = tmp_path / f"script{job_id}"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o700)
    container = {"image": ctrd.IMAGE, **extra.pop("container", {})}
    fields = dict(job_id=job_id, step_id=1, node=NODE, name="t", uid=user.pw_uid, gid=user.pw_gid, user=user.pw_name,
                  cwd=str(tmp_path), script_path=str(path), interpreter=["/bin/bash"],
                  env={"CRANE_JOB_ID": str(job_id), "PATH": "/usr/bin:/bin"},
                  stdout=str(tmp_path / f"out{job_id}"), stderr="", cpus=1.0, mem_bytes=256 << 20,
                  container=container)
    fields.update(extra)
    return StepSpec(**fields)


def run(rt, spec, timeout=30.0):
    h = rt.crane_step_launch(step=spec)
    assert h is not None
    rc = rt.crane_step_wait(handle=h, timeout=timeout)
    usage = rt.crane_step_usage(handle=h)
    assert rt.crane_step_cleanup(handle=h)
    return h, rc, usage


def leftovers(containerd, rt, job_id):
    cli = Cri(containerd.socket, 5)
    pb = cli.pb
    sel = {LABEL_NODE: NODE, "crane.job": str(job_id)}
    pods = cli.call(cli.rt, "ListPodSandbox", pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(label_selector=sel)))
    ctrs = cli.call(cli.rt, "ListContainers", pb.ListContainersRequest(filter=pb.ContainerFilter(label_selector=sel)))
    cli.close()
    rel = cgroups.parent_path(rt.config.prefix, NODE, job_id)
    logdir = os.path.join(rt.config.log_root, NODE, f"job_{job_id}")
    return list(pods.items) + list(ctrs.containers) + \
        ([rel] if cgroups.exists(rt.config.cgroup_root, rel) else []) + ([logdir] if os.path.exists(logdir) else [])


def test_plain_steps_are_not_claimed(runtime, tmp_path):
    plain = step(tmp_path)
    plain.container = None
    assert runtime.crane_step_launch(step=plain) is None


def test_output_exit_code_env_user_and_cleanup(runtime, containerd, tmp_path):
    spec = step(tmp_path, 'echo "hello $CRANE_JOB_ID from $(pwd)"; id -u; id -g; printf part; echo err >&2; exit 3',
                job_id=11)
    h, rc, usage = run(runtime, spec)
    assert rc == 3 and not usage.oom_killed
    out = (tmp_path / "out11").read_text()
    assert "err\n" in out  # stderr into the same file; its order against stdout is the runtime's (two pipes)
    assert out.replace("err\n", "", 1) == f"hello 11 from {tmp_path}\n{os.getuid()}\n{os.getgid()}\npart"
    assert os.stat(tmp_path / "out11").st_uid == os.getuid()
    assert leftovers(containerd, runtime, 11) == []


def test_pod_user_and_command(runtime, containerd, tmp_path):
    spec = step(tmp_path, job_id=12, container={"user": "1234:4321", "command": ["/bin/sh", "-c", "id -u; id -g"]})
    _h, rc, _u = run(runtime, spec)
    assert rc == 0
    assert (tmp_path / "out12").read_text() == "1234\n4321\n"


def test_append_mode_and_separate_stderr(runtime, tmp_path):
    (tmp_path / "out13").write_text("before\n")
    spec = step(tmp_path, "echo a; echo b >&2", job_id=13, open_mode="append", stderr=str(tmp_path / "err13"))
    _h, rc, _u = run(runtime, spec)
    assert rc == 0
    assert (tmp_path / "out13").read_text() == "before\na\n"
    assert (tmp_path / "err13").read_text() == "b\n"


def test_oom_over_the_memory_limit(runtime, containerd, tmp_path):
    spec = step(tmp_path, "dd if=/dev/zero of=/dev/null bs=200M count=1; echo survived", job_id=14,
                mem_bytes=64 << 20)
    _h, _rc, usage = run(runtime, spec)
    assert usage.oom_killed
    assert leftovers(containerd, runtime, 14) == []


def test_stop_is_a_cancel_not_an_oom(runtime, containerd, tmp_path):
    spec = step(tmp_path, "sleep 30", job_id=15)
    h = runtime.crane_step_launch(step=spec)
    assert runtime.crane_step_wait(handle=h, timeout=0.3) is None
    t = time.monotonic()
    runtime.crane_step_signal(handle=h, signum=signal.SIGTERM, all_processes=False)
    rc = runtime.crane_step_wait(handle=h, timeout=10)
    assert rc == 137 and time.monotonic() - t < 5  # StopTimeout 1: SIGTERM ignored by PID 1, then SIGKILL
    assert not runtime.crane_step_usage(handle=h).oom_killed
    assert runtime.crane_step_cleanup(handle=h)
    assert leftovers(containerd, runtime, 15) == []


def test_sigkill_stops_at_once(runtime, containerd, tmp_path):
    h = runtime.crane_step_launch(step=step(tmp_path, "sleep 30", job_id=16))
    assert runtime.crane_step_wait(handle=h, timeout=0.2) is None
    t = time.monotonic()
    runtime.crane_step_signal(handle=h, signum=signal.SIGKILL, all_processes=True)
    assert runtime.crane_step_wait(handle=h, timeout=10) is not None and time.monotonic() - t < 2
    assert runtime.crane_step_cleanup(handle=h)
    assert leftovers(containerd, runtime, 16) == []


def test_missing_image_fails_to_launch_and_leaves_nothing(runtime, containerd, tmp_path):
    with pytest.raises(StepLaunchError) as ei:
        runtime.crane_step_launch(step=step(tmp_path, job_id=17, container={"image": "localhost/nope:1"}))
    assert ei.value.exit_code == EC_CONTAINER_ERR and "localhost/nope:1" in str(ei.value)
    assert "\n" not in str(ei.value)
    assert leftovers(containerd, runtime, 17) == []


def test_runtime_down_fails_to_launch(tmp_path):
    rt = CriRuntime()
    rt.crane_plugin_configure({"Endpoint": str(tmp_path / "none.sock"), "LogRoot": str(tmp_path / "l")})
    with pytest.raises(StepLaunchError) as ei:
        rt.crane_step_launch(step=step(tmp_path, job_id=18))
    assert ei.value.exit_code == EC_CONTAINER_ERR and "does not exist" in str(ei.value)
    assert not os.path.exists(tmp_path / "l" / NODE / "job_18")


def test_containerd_down_fails_to_launch(tmp_path):
    if not OK:
        pytest.skip(f"no private containerd: {WHY}")
    with ctrd.PrivateContainerd(tempfile.mkdtemp(prefix="crd", dir="/tmp"), image=False) as c:
        c.kill()  # the socket file stays, nobody answers
        rt = CriRuntime()
        rt.crane_plugin_configure({"Endpoint": c.socket, "LogRoot": str(tmp_path / "l"), "Timeout": 2})
        with pytest.raises(StepLaunchError) as ei:
            rt.crane_step_launch(step=step(tmp_path, job_id=19))
        assert ei.value.exit_code == EC_CONTAINER_ERR


def test_reap_removes_a_dead_supervisors_pod(runtime, containerd, tmp_path):
    h = runtime.crane_step_launch(step=step(tmp_path, "sleep 30", job_id=20))
    assert runtime.crane_step_wait(handle=h, timeout=0.2) is None
    h.client.close()  # the supervisor is gone: only the labels find the pod
    assert leftovers(containerd, runtime, 20) != []
    assert runtime.crane_step_reap(node=NODE, job_id=20, step_id=1) is True
    assert leftovers(containerd, runtime, 20) == []
    assert runtime.crane_step_reap(node=NODE, job_id=20, step_id=1) is None


def test_reconcile_at_start_removes_pods_of_forgotten_jobs(runtime, containerd, tmp_path):
    """A node that lost its job directories: at craned's start its pods of unknown jobs go, known ones stay."""
    gone = runtime.crane_step_launch(step=step(tmp_path, "sleep 30", job_id=31))
    kept = runtime.crane_step_launch(step=step(tmp_path, "sleep 30", job_id=32))
    for h in (gone, kept):
        h.client.close()
    runtime.crane_node_reconcile(node=NODE, known_jobs=frozenset({32}))
    assert leftovers(containerd, runtime, 31) == [] and leftovers(containerd, runtime, 32) != []
    runtime.crane_node_reconcile(node="another-node", known_jobs=frozenset())  # other nodes' pods are not its
    assert leftovers(containerd, runtime, 32) != []
    assert runtime.crane_step_reap(node=NODE, job_id=32, step_id=1) is True


def test_gres_devices_and_limits_reach_the_container(runtime, containerd, tmp_path):
    import stat

    dev = tmp_path / "fakegpu0"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(241, 0))
    spec = step(tmp_path, f"ls {dev} && echo present; cat /proc/self/cgroup | grep memory", job_id=21,
                devices_allow=[str(dev)], cpus=0.5, mem_bytes=96 << 20)
    h = runtime.crane_step_launch(step=spec)
    rel = cgroups.parent_path(runtime.config.prefix, NODE, 21)
    root = runtime.config.cgroup_root
    if not cgroups.is_v2(root):  # the parent cgroup carries the job's limits too
        assert (open(f"{root}/memory/{rel}/memory.limit_in_bytes").read().strip()) == str(96 << 20)
        assert (open(f"{root}/cpu/{rel}/cpu.cfs_quota_us").read().strip()) == "50000"
    assert runtime.crane_step_wait(handle=h, timeout=20) == 0
    assert runtime.crane_step_cleanup(handle=h)
    out = (tmp_path / "out21").read_text()
    assert "present" in out and f"/{rel}/" in out, out
    assert leftovers(containerd, runtime, 21) == []


def test_a_relaunch_removes_the_pod_an_earlier_run_left(runtime, containerd, tmp_path):
    h = runtime.crane_step_launch(step=step(tmp_path, "sleep 30", job_id=22))
    h.client.close()  # that supervisor crashed
    h2 = runtime.crane_step_launch(step=step(tmp_path, "echo again", job_id=22))
    assert runtime.crane_step_wait(handle=h2, timeout=20) == 0
    assert runtime.crane_step_cleanup(handle=h2)
    assert (tmp_path / "out22").read_text() == "again\n"
    assert leftovers(containerd, runtime, 22) == []


def test_suspend_and_resume_freeze_the_pod(runtime, containerd, tmp_path):
    spec = step(tmp_path, "i=0; while [ $i -lt 40 ]; do echo $i; i=$((i+1)); sleep 0.05; done", job_id=23)
    h = runtime.crane_step_launch(step=spec)
    assert runtime.crane_step_wait(handle=h, timeout=0.4) is None
    assert runtime.crane_step_suspend(handle=h)
    time.sleep(0.2)
    n = len((tmp_path / "out23").read_text().split())
    assert runtime.crane_step_wait(handle=h, timeout=0.6) is None
    assert len((tmp_path / "out23").read_text().split()) == n  # no progress while frozen
    assert runtime.crane_step_resume(handle=h)
    assert runtime.crane_step_wait(handle=h, timeout=20) == 0
    assert runtime.crane_step_cleanup(handle=h)
    assert (tmp_path / "out23").read_text().split() == [str(i) for i in range(40)]
    assert leftovers(containerd, runtime, 23) == []


def test_cleanup_of_a_frozen_pod(runtime, containerd, tmp_path):
    h = runtime.crane_step_launch(step=step(tmp_path, "sleep 30", job_id=24))
    assert runtime.crane_step_wait(handle=h, timeout=0.2) is None
    assert runtime.crane_step_suspend(handle=h)
    runtime.crane_step_signal(handle=h, signum=signal.SIGKILL, all_processes=True)  # the failure path
    assert runtime.crane_step_cleanup(handle=h)
    assert leftovers(containerd, runtime, 24) == []


def test_ports_dns_and_pod_name_are_accepted(runtime, containerd, tmp_path):
    spec = step(tmp_path, "cat /etc/resolv.conf; hostname", job_id=25,
                container={"ports": ["18080:80", "9090"], "dns": ["10.9.8.7"], "pod_name": "web-1",
                           "host_network": True})
    _h, rc, _u = run(runtime, spec)
    out = (tmp_path / "out25").read_text()
    assert rc == 0, out
    assert "nameserver 10.9.8.7" in out  # containerd writes the pod's resolv.conf even with the host network
    assert leftovers(containerd, runtime, 25) == []


def test_pod_user_root_only_for_root_and_another_uid_gets_no_mount(runtime, containerd, tmp_path):
    from crane_common.states import EC_PERMISSION_DENIED

    nobody = pwd.getpwnam("nobody")
    base = step(tmp_path, job_id=26)
    base.uid, base.gid, base.user = nobody.pw_uid, nobody.pw_gid, "nobody"
    base.stdout = ""
    base.container = {"image": ctrd.IMAGE, "user": "0:0"}
    with pytest.raises(StepLaunchError) as ei:
        runtime.crane_step_launch(step=base)
    assert ei.value.exit_code == EC_PERMISSION_DENIED
    plugin = runtime
    pb = Cri(containerd.socket, 5).pb
    base.container = {"image": ctrd.IMAGE, "user": "4242"}
    cfg = plugin._container_config(pb, base, pb.NamespaceOption(), "/x")
    assert cfg.working_dir == "/" and [m.container_path for m in cfg.mounts] == ["/.crane/script"]
    assert cfg.linux.security_context.run_as_user.value == 4242


def test_a_non_root_job_runs_as_its_user_and_owns_its_output(runtime, containerd, tmp_path):
    import pathlib
    import shutil

    nobody = pwd.getpwnam("nobody")
    work = pathlib.Path(tempfile.mkdtemp(prefix="crw", dir="/tmp"))  # pytest's tmp_path is root-only
    work.chmod(0o777)
    request_cleanup = shutil.rmtree
    spec = step(work, "id -u; id -g; echo x > own.txt; ls -n own.txt", job_id=27)
    spec.uid, spec.gid, spec.user = nobody.pw_uid, nobody.pw_gid, "nobody"
    os.chown(spec.script_path, nobody.pw_uid, nobody.pw_gid)
    _h, rc, _u = run(runtime, spec)
    out = (work / "out27").read_text()
    assert rc == 0, out
    assert out.splitlines()[:2] == [str(nobody.pw_uid), str(nobody.pw_gid)]
    assert os.stat(work / "out27").st_uid == nobody.pw_uid and os.stat(work / "own.txt").st_uid == nobody.pw_uid
    (work / "out27").unlink()
    os.mkdir(work / "locked", 0o700)
    spec.stdout = str(work / "locked" / "o")
    from crane_common.states import EC_PERMISSION_DENIED

    with pytest.raises(StepLaunchError) as ei:
        runtime.crane_step_launch(step=spec)
    assert ei.value.exit_code == EC_PERMISSION_DENIED
    assert leftovers(containerd, runtime, 27) == []
    request_cleanup(work)
