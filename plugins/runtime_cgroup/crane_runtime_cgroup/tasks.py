"""The tasks of a task step (crun): one process per :class:`~crane_kernel.runtime.TaskIo`, in the step cgroup.

The same mechanism as the batch task (:mod:`crane_runtime_cgroup.spawn`): the supervisor enters the
working directory with the user's effective ids, joins the step cgroup for the instant it takes
``subprocess`` to fork and exec, and moves back. Each task gets its ``TaskIo`` descriptors as 0, 1
and 2 and its own environment; ``argv[0]`` is looked up in the task's ``PATH`` (like ``execvp``).
A pty task starts in a new session with its terminal as controlling tty (the only case that uses a
``preexec_fn``: ``TIOCSCTTY`` has no ``subprocess`` equivalent).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import shutil
import subprocess
import termios
import time

from crane_common.states import EC_FILE_NOT_FOUND, EC_PERMISSION_DENIED, EC_SPAWN_FAILED
from crane_kernel.errors import StepLaunchError
from crane_kernel.runtime import StepSpec, TaskIo

from crane_runtime_cgroup.process import try_reap
from crane_runtime_cgroup.spawn import _move_self, _prepare_as_user, _restore_self, supplementary_groups

_KEEP: dict[int, subprocess.Popen] = {}
"""Popen objects of running tasks, so that subprocess never reaps them behind our back."""


def _controlling_tty() -> None:
    """In a pty task's child (after setsid): make its stdin, the pty slave, the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def resolve_command(argv0: str, env: dict[str, str]) -> str:
    """``argv0`` as ``execvp`` finds it in the task's PATH; raise StepLaunchError if it is not there."""
    if "/" in argv0:
        return argv0
    found = shutil.which(argv0, mode=os.F_OK, path=env.get("PATH", os.defpath))
    if found is None:
        raise StepLaunchError(f"cannot execute {argv0}: No such file or directory", EC_FILE_NOT_FOUND)
    return found


def _enter_cwd(spec: StepSpec, groups: list[int] | None) -> None:
    """``chdir`` into the working directory with the user's effective ids (her permissions, not root's)."""
    _prepare_as_user(spec, groups, stdio=False)


def spawn_tasks(spec: StepSpec, attach_files: list[str], home_files: list[str]) -> dict[int, int]:
    """Start every task of ``spec`` in the step cgroup as its user; return task id -> pid.

    On a failure the tasks already started are killed and reaped, and StepLaunchError is raised.
    """
    switch = spec.uid != os.geteuid()
    groups = supplementary_groups(spec) if switch else None
    executable = resolve_command(spec.argv[0], spec.tasks[0].env if spec.tasks else spec.env)
    back = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    started: dict[int, int] = {}
    try:
        _enter_cwd(spec, groups)
        _move_self(attach_files)
        try:
            for task in spec.tasks:
                started[task.task_id] = _spawn_one(spec, task, executable, switch, groups)
        finally:
            _restore_self(home_files)
    except BaseException:
        kill_started(started)
        raise
    finally:
        os.fchdir(back)
        os.close(back)
    return started


def _spawn_one(spec: StepSpec, task: TaskIo, executable: str, switch: bool, groups: list[int] | None) -> int:
    """Fork and exec one task (the supervisor is in the step cgroup and the working directory)."""
    try:
        proc = subprocess.Popen(
            spec.argv, executable=executable, env=task.env, cwd=None, stdin=task.stdin_fd,
            stdout=task.stdout_fd, stderr=task.stderr_fd, close_fds=True, start_new_session=True,
            restore_signals=True, user=spec.uid if switch else None, group=spec.gid if switch else None,
            extra_groups=groups if switch else None, preexec_fn=_controlling_tty if task.pty else None)
    except OSError as exc:
        code = EC_PERMISSION_DENIED if exc.errno in (errno.EACCES, errno.EPERM) else \
            EC_FILE_NOT_FOUND if exc.errno in (errno.ENOENT, errno.ENOTDIR) else EC_SPAWN_FAILED
        raise StepLaunchError(f"cannot execute {spec.argv[0]}: {os.strerror(exc.errno or 0)}", code) from None
    except Exception as exc:  # a user or group that vanished, a failing preexec_fn
        raise StepLaunchError(f"cannot start task {task.task_id}: {exc}", EC_SPAWN_FAILED) from None
    _KEEP[proc.pid] = proc
    return proc.pid


def kill_started(started: dict[int, int]) -> None:
    """SIGKILL and reap tasks started before a launch failed."""
    for pid in started.values():
        try:
            os.killpg(pid, 9)
        except OSError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        forget(pid)


def forget(pid: int, code: int = 0) -> None:
    """Tell subprocess that ``pid`` was reaped by us and drop our reference."""
    proc = _KEEP.pop(pid, None)
    if proc is not None:
        proc.returncode = code


def reap_tasks(task_pids: dict[int, int], task_exit: dict[int, int], timeout: float | None) -> bool:
    """Reap the tasks that ended (into ``task_exit``), waiting up to ``timeout`` for one; True when all ended."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for task_id, pid in task_pids.items():
            if task_id in task_exit:
                continue
            try:
                code = try_reap(pid)
            except ChildProcessError:
                code = 327  # EC_EXEC_ERR: someone else reaped it; its status is lost
            if code is not None:
                task_exit[task_id] = code
                forget(pid, code)
        if len(task_exit) >= len(task_pids):
            return True
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        _wait_any([p for t, p in task_pids.items() if t not in task_exit], remaining)


def _wait_any(pids: list[int], timeout: float | None) -> None:
    """Block until one of ``pids`` ended or ``timeout`` passed (pidfds and poll)."""
    poller = select.poll()
    fds = []
    try:
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                return  # gone already: reap it now
            fds.append(fd)
            poller.register(fd, select.POLLIN)
        poller.poll(None if timeout is None else int(timeout * 1000) + 1)
    finally:
        for fd in fds:
            os.close(fd)
