"""Real enforcement on this machine's cgroup v1 hierarchies (as root); skipped loudly where impossible."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from crane_common.states import EC_FILE_NOT_FOUND, EC_PERMISSION_DENIED, EC_SPAWN_FAILED, SIGNAL_BASE
from crane_kernel.errors import StepLaunchError
from rtcg_support import NODE, PREFIX, StepFactory, v1_settings

from crane_runtime_cgroup import CgroupRuntime, CgroupStepHandle, cleanup_stale
from crane_runtime_cgroup.v1 import CgroupV1Backend


def cg(root: str, controller: str, handle: CgroupStepHandle) -> Path:
    """The job cgroup directory of ``handle`` in ``controller``."""
    return Path(root) / controller / handle.cgroup


def read(path: Path) -> str:
    """A control file's content, stripped."""
    return path.read_text().strip()


def wait_for(check, timeout: float = 5.0) -> None:
    """Poll ``check`` until true, failing the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture
def launched(runtime: CgroupRuntime) -> Iterator[list[CgroupStepHandle]]:
    """Collects launched handles and cleans them up after the test even if it failed."""
    handles: list[CgroupStepHandle] = []
    yield handles
    for handle in handles:
        runtime.crane_step_cleanup(handle=handle)


def launch(runtime: CgroupRuntime, launched: list[CgroupStepHandle], step) -> CgroupStepHandle:
    """Launch ``step`` and remember its handle for cleanup."""
    handle = runtime.crane_step_launch(step=step)
    assert isinstance(handle, CgroupStepHandle) and handle.runtime == "cgroup"
    launched.append(handle)
    return handle


def test_limits_are_written_and_task_is_inside(runtime, launched, make_step: StepFactory, v1_root: str) -> None:
    cpu = 1 if os.cpu_count() and os.cpu_count() > 1 else 0
    runtime.crane_plugin_configure(settings=v1_settings(PidsMax=20))    # the pids limit is the plugin's setting
    step = make_step("exec sleep 30\n", cpus=1.5, cpu_ids=[cpu], mem_bytes=64 << 20)
    handle = launch(runtime, launched, step)
    assert handle.cgroup == f"{PREFIX}/{NODE}/job_{step.job_id}"
    period = int(read(cg(v1_root, "cpu", handle) / "cpu.cfs_period_us"))
    assert int(read(cg(v1_root, "cpu", handle) / "cpu.cfs_quota_us")) == round(1.5 * period)
    assert read(cg(v1_root, "cpuset", handle) / "cpuset.cpus") == str(cpu)
    assert read(cg(v1_root, "cpuset", handle) / "cpuset.mems") == read(Path(v1_root) / "cpuset" / "cpuset.mems")
    assert int(read(cg(v1_root, "memory", handle) / "memory.limit_in_bytes")) == 64 << 20
    memsw = cg(v1_root, "memory", handle) / "memory.memsw.limit_in_bytes"
    if memsw.exists():
        assert int(read(memsw)) == 64 << 20
    assert read(cg(v1_root, "pids", handle) / "pids.max") == "20"
    for controller in ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer"):
        assert str(handle.pid) in read(cg(v1_root, controller, handle) / "cgroup.procs").split(), controller
    # only the hierarchies a step needs are created (no device rules here: no devices cgroup)
    assert not cg(v1_root, "devices", handle).exists()
    # the supervisor that started it is back where it was
    assert str(os.getpid()) not in read(cg(v1_root, "memory", handle) / "cgroup.procs").split()
    status = Path(f"/proc/{handle.pid}/status").read_text()
    assert f"Cpus_allowed_list:\t{cpu}\n" in status
    assert os.getsid(handle.pid) == handle.pid          # the task leads its own session
    assert runtime.crane_step_wait(handle=handle, timeout=0) is None


def test_memory_limit_oom_kills_and_usage_reports_it(runtime, launched, make_step: StepFactory) -> None:
    step = make_step("b = bytearray(200 * 1024 * 1024)\nprint('survived')\n", interpreter=["/usr/bin/python3"],
                     mem_bytes=50 << 20)
    handle = launch(runtime, launched, step)
    code = runtime.crane_step_wait(handle=handle, timeout=20)
    assert code == SIGNAL_BASE + signal.SIGKILL
    usage = runtime.crane_step_usage(handle=handle)
    assert usage.oom_killed is True
    assert 0 < usage.mem_peak_bytes <= (50 << 20)
    assert "survived" not in Path(step.stdout).read_text()


def test_usage_without_oom(runtime, launched, make_step: StepFactory) -> None:
    step = make_step("import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n",
                     interpreter=["/usr/bin/python3"], mem_bytes=100 << 20)
    handle = launch(runtime, launched, step)
    assert runtime.crane_step_wait(handle=handle, timeout=10) == 0
    usage = runtime.crane_step_usage(handle=handle)
    assert usage.oom_killed is False
    assert usage.cpu_time_ms >= 250
    assert usage.mem_peak_bytes > 0


def test_pids_limit_stops_forking(runtime, launched, make_step: StepFactory) -> None:
    script = (
        "import os, signal\n"
        "children = []\n"
        "for _ in range(30):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except BlockingIOError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        signal.pause()\n"
        "    children.append(pid)\n"
        "print(len(children), flush=True)\n"
        "for pid in children:\n"
        "    os.kill(pid, signal.SIGKILL)\n"
        "    os.waitpid(pid, 0)\n"
    )
    step = make_step(script, interpreter=["/usr/bin/python3"])
    # launched from a fresh single-threaded process, as the real step supervisor is: the supervisor
    # joins the job's cgroup for a moment, and the pids limit counts its threads (pytest's process
    # may hold any number of leftover threads, which would make the join itself fail with EAGAIN)
    driver = (
        "import json, sys\n"
        "from crane_kernel.runtime import StepSpec\n"
        "from crane_runtime_cgroup import CgroupRuntime\n"
        "rt = CgroupRuntime()\n"
        f"rt.crane_plugin_configure(settings={v1_settings(PidsMax=5)!r})\n"
        "h = rt.crane_step_launch(step=StepSpec(**json.loads(sys.argv[1])))\n"
        "code = rt.crane_step_wait(handle=h, timeout=10)\n"
        "rt.crane_step_cleanup(handle=h)\n"
        "print(code)\n"
    )
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", driver, json.dumps(step.to_dict())], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["0"], (out.stdout, out.stderr)
    assert Path(step.stdout).read_text().split() == ["4"]     # 5 pids: the parent and 4 children


def test_suspend_stops_progress_and_resume_continues(runtime, launched, make_step: StepFactory,
                                                      v1_root: str, workdir: Path) -> None:
    ticks = workdir / "ticks"
    script = f"import time\nwhile True:\n    open({str(ticks)!r}, 'a').write('x')\n    time.sleep(0.005)\n"
    handle = launch(runtime, launched, make_step(script, interpreter=["/usr/bin/python3"]))
    wait_for(lambda: ticks.exists() and ticks.stat().st_size > 3)
    assert runtime.crane_step_suspend(handle=handle) is True
    assert read(cg(v1_root, "freezer", handle) / "freezer.state") == "FROZEN"
    frozen_size = ticks.stat().st_size
    time.sleep(0.3)
    assert ticks.stat().st_size == frozen_size
    assert runtime.crane_step_resume(handle=handle) is True
    wait_for(lambda: ticks.stat().st_size > frozen_size + 3, timeout=3)
    assert runtime.crane_step_wait(handle=handle, timeout=0) is None


def test_signal_process_group_versus_all_processes(runtime, launched, make_step: StepFactory) -> None:
    script = "setsid sleep 300 &\nsleep 300 &\nwait\n"
    handle = launch(runtime, launched, make_step(script))
    backend = CgroupV1Backend("/sys/fs/cgroup")

    def escaped() -> list[int]:
        """Processes of the cgroup that lead a session of their own (the setsid'd sleep, once it ran setsid)."""
        found = []
        for pid in backend.pids(handle.cgroup):
            try:
                if pid != handle.pid and os.getsid(pid) == pid:
                    found.append(pid)
            except ProcessLookupError:
                continue
        return found

    wait_for(lambda: len(backend.pids(handle.cgroup)) == 3 and len(escaped()) == 1)
    # The process group: bash and its plain child die, the setsid'd sleep survives.
    assert runtime.crane_step_signal(handle=handle, signum=signal.SIGTERM, all_processes=False) is True
    assert runtime.crane_step_wait(handle=handle, timeout=5) == SIGNAL_BASE + signal.SIGTERM
    wait_for(lambda: len(backend.pids(handle.cgroup)) == 1)
    assert backend.pids(handle.cgroup) == escaped()
    # All processes: the escaped one is found through the cgroup.
    assert runtime.crane_step_signal(handle=handle, signum=signal.SIGKILL, all_processes=True) is True
    assert backend.pids(handle.cgroup) == []
    assert runtime.crane_step_wait(handle=handle, timeout=0) == SIGNAL_BASE + signal.SIGTERM  # cached


def test_signal_all_kills_frozen_children(runtime, launched, make_step: StepFactory) -> None:
    handle = launch(runtime, launched, make_step("sleep 300 &\nsleep 300 &\nwait\n"))
    backend = CgroupV1Backend("/sys/fs/cgroup")
    wait_for(lambda: len(backend.pids(handle.cgroup)) == 3)
    assert runtime.crane_step_suspend(handle=handle) is True
    assert runtime.crane_step_signal(handle=handle, signum=signal.SIGKILL, all_processes=True) is True
    assert backend.pids(handle.cgroup) == []
    assert runtime.crane_step_wait(handle=handle, timeout=5) == SIGNAL_BASE + signal.SIGKILL


def test_cleanup_kills_reaps_and_removes_every_hierarchy(runtime, make_step: StepFactory, v1_root: str) -> None:
    runtime.crane_plugin_configure(settings=v1_settings(PidsMax=50))
    handle = runtime.crane_step_launch(step=make_step("sleep 300 &\nexec sleep 300\n", cpu_ids=[0]))
    dirs = [cg(v1_root, c, handle) for c in ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer")]
    assert all(d.is_dir() for d in dirs)
    assert runtime.crane_step_suspend(handle=handle) is True       # cleanup must thaw first
    assert runtime.crane_step_cleanup(handle=handle) is True
    assert not any(d.exists() for d in dirs)
    assert (Path(v1_root) / "memory" / PREFIX / NODE).is_dir()        # parents are left in place
    assert handle.exit_code == SIGNAL_BASE + signal.SIGKILL           # the main process was reaped
    with pytest.raises(ChildProcessError):
        os.waitpid(handle.pid, os.WNOHANG)
    assert runtime.crane_step_cleanup(handle=handle) is True        # idempotent
    assert runtime.crane_step_usage(handle=handle).oom_killed is False


def test_wait_with_timeout_survives_signal_handlers(runtime, launched, make_step: StepFactory) -> None:
    handle = launch(runtime, launched, make_step("sleep 0.6\nexit 7\n"))
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        start = time.monotonic()
        assert runtime.crane_step_wait(handle=handle, timeout=0.3) is None
        assert time.monotonic() - start >= 0.29
        assert runtime.crane_step_wait(handle=handle, timeout=None) == 7
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fired
    assert runtime.crane_step_wait(handle=handle, timeout=None) == 7


def test_runs_as_user_with_groups_cwd_and_output_files(runtime, launched, make_step: StepFactory,
                                                      test_user, workdir: Path) -> None:
    err = workdir / "err.txt"
    step = make_step("id -u; id -g; id -G; pwd; echo oops >&2\n", user=test_user, stderr=str(err))
    handle = launch(runtime, launched, step)
    assert runtime.crane_step_wait(handle=handle, timeout=10) == 0
    uid, gid, groups, cwd = Path(step.stdout).read_text().splitlines()
    assert (int(uid), int(gid)) == (test_user.pw_uid, test_user.pw_gid)
    assert sorted(int(g) for g in groups.split()) == sorted(set(os.getgrouplist(test_user.pw_name, test_user.pw_gid)))
    assert 0 not in [int(g) for g in groups.split()]
    assert len(groups.split()) >= 2                      # the supplementary group crane_rt_grp
    assert cwd == str(workdir)
    assert err.read_text() == "oops\n"
    assert Path(step.stdout).stat().st_uid == test_user.pw_uid   # created by the user


def test_stderr_defaults_to_stdout_and_append_mode(runtime, launched, make_step: StepFactory,
                                                   workdir: Path) -> None:
    out = workdir / "both.txt"
    out.write_text("before\n")
    step = make_step("echo out; echo err >&2\n", stdout=str(out), stderr="", open_mode="append")
    handle = launch(runtime, launched, step)
    assert runtime.crane_step_wait(handle=handle, timeout=10) == 0
    assert out.read_text() == "before\nout\nerr\n"


def test_devices_deny_blocks_the_device(runtime, launched, make_step: StepFactory, v1_root: str) -> None:
    step = make_step("head -c 1 /dev/zero > /dev/null && echo opened || echo denied\n", devices_deny=["/dev/zero"])
    handle = launch(runtime, launched, step)
    assert runtime.crane_step_wait(handle=handle, timeout=10) == 0
    output = Path(step.stdout).read_text()
    assert output.endswith("denied\n") and "Operation not permitted" in output
    rule = f"c {os.major(os.stat('/dev/zero').st_rdev)}:{os.minor(os.stat('/dev/zero').st_rdev)} rwm"
    assert rule not in read(cg(v1_root, "devices", handle) / "devices.list")


def test_bad_cwd_fails_with_file_not_found(runtime, make_step: StepFactory, v1_root: str) -> None:
    step = make_step("echo hi\n", cwd="/nonexistent/crane/dir")
    with pytest.raises(StepLaunchError) as info:
        runtime.crane_step_launch(step=step)
    assert info.value.exit_code == EC_FILE_NOT_FOUND
    assert "/nonexistent/crane/dir" in str(info.value)
    assert not (Path(v1_root) / "memory" / PREFIX / NODE / f"job_{step.job_id}").exists()


def test_bad_interpreter_fails_with_spawn_failed(runtime, make_step: StepFactory, v1_root: str) -> None:
    step = make_step("echo hi\n", interpreter=["/no/such/interpreter"])
    with pytest.raises(StepLaunchError) as info:
        runtime.crane_step_launch(step=step)
    assert info.value.exit_code == EC_SPAWN_FAILED
    assert "/no/such/interpreter" in str(info.value) and "No such file" in str(info.value)
    assert not (Path(v1_root) / "memory" / PREFIX / NODE / f"job_{step.job_id}").exists()


def test_unwritable_output_fails_with_permission_denied(runtime, make_step: StepFactory, test_user) -> None:
    step = make_step("echo hi\n", user=test_user, stdout="/root/crane_rt_forbidden.out")
    with pytest.raises(StepLaunchError) as info:
        runtime.crane_step_launch(step=step)
    assert info.value.exit_code == EC_PERMISSION_DENIED
    assert "/root/crane_rt_forbidden.out" in str(info.value)
    assert not Path("/root/crane_rt_forbidden.out").exists()


def test_cleanup_stale_removes_only_empty_job_cgroups(runtime, launched, make_step: StepFactory,
                                                      v1_root: str) -> None:
    stale = f"{PREFIX}/{NODE}/job_99999"
    for controller in ("cpu", "memory", "freezer"):
        (Path(v1_root) / controller / stale).mkdir(parents=True, exist_ok=True)
    (Path(v1_root) / "freezer" / stale / "freezer.state").write_text("FROZEN")
    handle = launch(runtime, launched, make_step("exec sleep 30\n"))
    removed = cleanup_stale(PREFIX, NODE)
    assert "job_99999" in removed
    assert f"job_{handle.spec.job_id}" not in removed
    assert not any((Path(v1_root) / c / stale).exists() for c in ("cpu", "memory", "freezer"))
    assert (Path(v1_root) / "memory" / handle.cgroup).is_dir()


def test_recreating_a_job_cgroup_can_raise_the_memory_limit(runtime, make_step: StepFactory, v1_root: str) -> None:
    """memsw must stay >= limit at every write, whichever way the limit moves."""
    backend = CgroupV1Backend(v1_root)
    step = make_step("true\n", mem_bytes=32 << 20)
    rel = f"{PREFIX}/{NODE}/job_{step.job_id}"
    try:
        backend.create(rel, step)
        for size in (128 << 20, 16 << 20):
            step.mem_bytes = size
            backend.create(rel, step)
            memory = Path(v1_root) / "memory" / rel
            assert int(read(memory / "memory.limit_in_bytes")) == size
            if (memory / "memory.memsw.limit_in_bytes").exists():
                assert int(read(memory / "memory.memsw.limit_in_bytes")) == size
    finally:
        backend.remove(rel)
