"""Task steps (crun) in the cgroup runtime on real cgroup v1: step cgroups below the job's, tasks, reaping."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from crane_common.states import EC_FILE_NOT_FOUND
from crane_kernel.errors import ConfigError, StepLaunchError
from crane_kernel.runtime import StepSpec, TaskIo
from rtcg_support import CGROUP_ROOT, NODE, PREFIX, v1_settings

from crane_runtime_cgroup import CgroupRuntime
from crane_runtime_cgroup.config import parse_config


def _memdir(job_id: int, step: int | None = None) -> Path:
    path = Path(CGROUP_ROOT) / "memory" / PREFIX / NODE / f"job_{job_id}"
    return path if step is None else path / f"step_{step}"


def _task_step(make_step, argv: list[str], ntasks: int = 1, step_id: int = 1, job_id: int | None = None,
               **fields: object) -> tuple[StepSpec, list[int]]:
    """A StepSpec with ``ntasks`` tasks writing to pipes; returns it and the read ends (stdout per task)."""
    spec = make_step("true", **fields)
    if job_id is not None:
        spec.job_id = job_id
    spec.step_id, spec.argv, readers = step_id, argv, []
    for task_id in range(ntasks):
        r, w = os.pipe()
        readers.append(r)
        env = {**spec.env, "T": str(task_id)}
        spec.tasks.append(TaskIo(task_id, env, os.open(os.devnull, os.O_RDONLY), w, w))
    return spec, readers


def _close_task_fds(spec: StepSpec) -> None:
    for task in spec.tasks:
        for fd in {task.stdin_fd, task.stdout_fd}:
            os.close(fd)


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    return data


def test_tasks_run_in_a_step_cgroup_below_the_job_and_report_each_exit(runtime, make_step):
    spec, readers = _task_step(make_step, ["sh", "-c", "grep memory /proc/self/cgroup; exit $T"], ntasks=2,
                               mem_bytes=256 << 20, step_mem_bytes=128 << 20)
    handle = runtime.crane_step_launch(step=spec)
    _close_task_fds(spec)
    assert int((_memdir(spec.job_id) / "memory.limit_in_bytes").read_text()) == 256 << 20
    assert int((_memdir(spec.job_id, 1) / "memory.limit_in_bytes").read_text()) == 128 << 20
    assert runtime.crane_step_wait(handle=handle, timeout=10) == 1
    assert handle.task_exit == {0: 0, 1: 1} and set(handle.task_pids) == {0, 1}
    for fd in readers:
        assert f"/{PREFIX}/{NODE}/job_{spec.job_id}/step_1" in _read_all(fd).decode()
    assert runtime.crane_step_cleanup(handle=handle) is True
    assert not _memdir(spec.job_id).exists()


def test_two_steps_share_the_job_cgroup_and_cleanup_and_reap_remove_only_theirs(runtime, make_step):
    one, r1 = _task_step(make_step, ["sleep", "60"])
    two, r2 = _task_step(make_step, ["sleep", "60"], step_id=2, job_id=one.job_id)
    h1, h2 = runtime.crane_step_launch(step=one), runtime.crane_step_launch(step=two)
    _close_task_fds(one)
    _close_task_fds(two)
    runtime.crane_step_signal(handle=h1, signum=signal.SIGTERM, all_processes=False)
    assert runtime.crane_step_wait(handle=h1, timeout=10) == 256 + signal.SIGTERM
    assert runtime.crane_step_cleanup(handle=h1) is True
    assert not _memdir(one.job_id, 1).exists() and _memdir(one.job_id, 2).is_dir()  # the job's stays
    assert runtime.crane_step_reap(node=NODE, job_id=one.job_id, step_id=2) is True  # its supervisor "died"
    assert not _memdir(one.job_id).exists()
    assert runtime.crane_step_reap(node=NODE, job_id=one.job_id, step_id=2) is None
    runtime.crane_step_cleanup(handle=h2)
    three, _r3 = _task_step(make_step, ["sleep", "60"], step_id=3)
    runtime.crane_step_launch(step=three)
    _close_task_fds(three)
    assert runtime.crane_step_reap(node=NODE, job_id=three.job_id, step_id=0) is True  # the job with its steps
    assert not _memdir(three.job_id).exists()
    for fd in r1 + r2:
        os.close(fd)


def test_a_missing_command_fails_the_launch_and_leaves_nothing(runtime, make_step):
    spec, readers = _task_step(make_step, ["no-such-command-xyz"])
    with pytest.raises(StepLaunchError, match="cannot execute no-such-command-xyz: No such file or directory") as exc:
        runtime.crane_step_launch(step=spec)
    assert exc.value.exit_code == EC_FILE_NOT_FOUND
    assert not _memdir(spec.job_id).exists()
    _close_task_fds(spec)
    os.close(readers[0])


def test_tasks_run_as_the_user(runtime, make_step, test_user):
    spec, readers = _task_step(make_step, ["id", "-u"], user=test_user)
    handle = runtime.crane_step_launch(step=spec)
    _close_task_fds(spec)
    assert runtime.crane_step_wait(handle=handle, timeout=10) == 0
    assert _read_all(readers[0]).decode().strip() == str(test_user.pw_uid)
    runtime.crane_step_cleanup(handle=handle)


def test_uts_namespace_names_the_host_after_the_node(v1_root, make_step, workdir):
    """In a forked child (unshare changes the calling process): a batch step's ``hostname`` is the node's."""
    spec = make_step("hostname")
    pid = os.fork()
    if pid == 0:
        try:
            rt = CgroupRuntime()
            rt.crane_plugin_configure(settings=v1_settings(UtsNamespace=True))
            handle = rt.crane_step_launch(step=spec)
            rt.crane_step_wait(handle=handle, timeout=10)
            rt.crane_step_cleanup(handle=handle)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert Path(spec.stdout).read_text().strip() == NODE
    assert os.uname().nodename != NODE  # this process kept its host name


def test_uts_namespace_setting():
    assert parse_config({"UtsNamespace": True}).uts_namespace is True
    assert parse_config({"utsnamespace": "false"}).uts_namespace is False
    assert parse_config({}).uts_namespace is False
    with pytest.raises(ConfigError, match="UtsNamespace"):
        parse_config({"UtsNamespace": "maybe"})
