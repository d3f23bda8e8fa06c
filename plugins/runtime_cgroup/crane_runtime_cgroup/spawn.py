"""Start the task of a step in its cgroup, as its user; map setup failures to Crane exit codes.

The supervisor (root) changes into the working directory and opens the standard
streams with the user's effective ids (fsuid and groups: the kernel applies her
permissions, so a symlink she planted at an output path, or ``--output
/etc/shadow``, gets what she herself would get: EACCES), joins the job cgroup for
the instant it takes ``subprocess`` to fork and exec ``interpreter +
[script_path]`` (in C: new session, the user's groups, gid and uid; the task
inherits the working directory entered as the user, so root never resolves a
path of hers), then moves back. A failure at any stage becomes a
:class:`StepLaunchError`. Output paths may be symlinks of the user's own
(``O_NOFOLLOW`` is not used: following them is exactly what she could do herself);
nothing is ever opened there with root's credentials.

Stage and errno map to the Crane exit code of the :class:`StepLaunchError`:

=========  ======================================  =====================
stage      errno                                   exit code
=========  ======================================  =====================
cgroup     any                                     EC_CGROUP_ERR
user       any                                     EC_PERMISSION_DENIED
cwd        EACCES, EPERM                           EC_PERMISSION_DENIED
cwd        anything else                           EC_FILE_NOT_FOUND
stdio      EACCES, EPERM, EROFS                    EC_PERMISSION_DENIED
stdio      ENOENT, ENOTDIR                         EC_FILE_NOT_FOUND
exec       EACCES, EPERM                           EC_PERMISSION_DENIED
other      anything else                           EC_SPAWN_FAILED
=========  ======================================  =====================
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import subprocess
from dataclasses import dataclass

from crane_common.states import (
    EC_CGROUP_ERR,
    EC_FILE_NOT_FOUND,
    EC_PERMISSION_DENIED,
    EC_SPAWN_FAILED,
)
from crane_kernel.errors import StepLaunchError
from crane_kernel.runtime import StepSpec

log = logging.getLogger("crane_runtime_cgroup")

_PERMISSION = (errno.EACCES, errno.EPERM, errno.EROFS)


@dataclass(frozen=True)
class ChildFailure:
    """What went wrong in the child before exec: the stage, the errno (0 if none) and a detail text."""

    stage: str
    errno: int
    detail: str

    def exit_code(self) -> int:
        """The Crane exit code for this failure (see the module table)."""
        if self.stage == "cgroup":
            return EC_CGROUP_ERR
        if self.stage == "user":
            return EC_PERMISSION_DENIED
        if self.stage in ("cwd", "stdio", "exec") and self.errno in _PERMISSION:
            return EC_PERMISSION_DENIED
        if self.stage == "cwd" or (self.stage == "stdio" and self.errno in (errno.ENOENT, errno.ENOTDIR)):
            return EC_FILE_NOT_FOUND
        return EC_SPAWN_FAILED

    def message(self, spec: StepSpec) -> str:
        """A one-line, user-facing description."""
        reason = os.strerror(self.errno) if self.errno else "failed"
        what = {
            "cgroup": "cannot join the job cgroup",
            "session": "cannot start a new session",
            "user": f"cannot switch to user {spec.user or spec.uid} (uid {spec.uid}, gid {spec.gid})",
            "cwd": f"cannot change to working directory {spec.cwd}",
            "stdio": f"cannot open {self.detail}",
            "exec": f"cannot execute {self.detail}",
        }.get(self.stage, f"task setup failed at {self.stage}")
        if self.stage in ("cgroup", "user") and self.detail:
            what += f" ({self.detail})"
        if self.stage not in ("stdio", "exec") or self.errno:
            return f"{what}: {reason}"
        return what


def supplementary_groups(spec: StepSpec) -> list[int]:
    """The user's groups (``getgrouplist``), computed before fork; ``[gid]`` for an unknown user."""
    user = spec.user
    if not user:
        try:
            user = pwd.getpwuid(spec.uid).pw_name
        except KeyError:
            return [spec.gid]
    try:
        return os.getgrouplist(user, spec.gid)
    except OSError:
        return [spec.gid]


def spawn_task(spec: StepSpec, attach_files: list[str], home_files: list[str]) -> int:
    """Start the step's task in its cgroup, as its user; return its pid, or raise StepLaunchError.

    Speed matters here (one launch per job): instead of forking this Python
    process and running Python code in the child (which copies pages of the
    supervisor on every touch), the supervisor briefly joins the job cgroup
    itself, starts the task with ``subprocess`` (fork+exec done in C, so the
    child inherits the cgroup before it runs any instruction of the task), and
    moves itself back. The standard streams are opened, and the working
    directory entered, with the user's effective ids, so the kernel applies
    the user's permissions, not root's; the task inherits that working directory
    and the supervisor returns to its own afterwards.
    """
    argv = [*spec.interpreter, spec.script_path]
    switch = spec.uid != os.geteuid()
    groups = supplementary_groups(spec) if switch else None
    back = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the supervisor's own directory
    try:
        fds = _prepare_as_user(spec, groups if switch else None)
    except BaseException:
        os.fchdir(back)
        os.close(back)
        raise
    stage = "cgroup"
    proc = None
    try:
        _move_self(attach_files)
        stage = "exec"
        proc = subprocess.Popen(
            argv, executable=None, env=spec.env, cwd=None, stdin=fds[0], stdout=fds[1], stderr=fds[2],
            close_fds=True, start_new_session=True, restore_signals=True,
            user=spec.uid if switch else None, group=spec.gid if switch else None,
            extra_groups=groups if switch else None)
    except OSError as exc:
        detail = str(exc.filename) if stage == "exec" and exc.filename else (attach_files[0] if attach_files else "")
        failure = ChildFailure(stage, exc.errno or 0, detail)
        raise StepLaunchError(failure.message(spec), failure.exit_code()) from None
    except Exception as exc:  # e.g. a user or group that vanished
        raise StepLaunchError(f"cannot start the task: {exc}", EC_SPAWN_FAILED) from None
    finally:
        for fd in set(fds):
            os.close(fd)
        os.fchdir(back)
        os.close(back)
        _restore_self(home_files)
    _KEEP[proc.pid] = proc
    return proc.pid


_KEEP: dict[int, subprocess.Popen] = {}
"""Popen objects of running tasks: kept so that subprocess never reaps them behind our back."""


def forget(pid: int, code: int) -> None:
    """Tell subprocess that ``pid`` was reaped by us (exit ``code``) and drop our reference."""
    proc = _KEEP.pop(pid, None)
    if proc is not None:
        proc.returncode = code


def _prepare_as_user(spec: StepSpec, groups: list[int] | None, stdio: bool = True) -> tuple[int, int, int]:
    """Enter the working directory and open stdin/stdout/stderr with the user's effective ids.

    Entered with ``chdir`` (search permission, as for her own ``cd``), not re-resolved later by
    root: the task starts in the directory the user's credentials reached. ``stdio=False`` (a
    task step, whose streams the supervisor made): only the directory; returns ``(-1, -1, -1)``.
    """
    uid0, gid0 = os.geteuid(), os.getegid()
    old_groups = os.getgroups() if groups is not None else None
    stage, detail = "user", ""
    try:
        if groups is not None:
            os.setgroups(groups)
            os.setegid(spec.gid)
            os.seteuid(spec.uid)
        stage, detail = "cwd", spec.cwd
        os.chdir(spec.cwd)
        if not stdio:
            return -1, -1, -1
        stage = "stdio"
        mode = os.O_APPEND if spec.open_mode == "append" else os.O_TRUNC
        out_flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY | mode
        opened: list[int] = []
        try:
            detail = spec.stdin or os.devnull
            opened.append(os.open(os.path.join(spec.cwd, detail), os.O_RDONLY | os.O_CLOEXEC))
            detail = spec.stdout or os.devnull
            opened.append(os.open(os.path.join(spec.cwd, detail), out_flags, 0o644))
            if not spec.stderr or spec.stderr == spec.stdout:
                opened.append(opened[1])
            else:
                detail = spec.stderr
                opened.append(os.open(os.path.join(spec.cwd, detail), out_flags, 0o644))
        except OSError:
            for fd in set(opened):
                os.close(fd)
            raise
        return opened[0], opened[1], opened[2]
    except OSError as exc:
        failure = ChildFailure(stage, exc.errno or 0, detail)
        raise StepLaunchError(failure.message(spec), failure.exit_code()) from None
    finally:
        if groups is not None:
            os.seteuid(uid0)
            os.setegid(gid0)
            os.setgroups(old_groups or [])


def _move_self(files: list[str]) -> None:
    pid = str(os.getpid()).encode()
    for path in files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)


def _restore_self(homes: list[str]) -> None:
    pid = str(os.getpid()).encode()
    for path in homes:
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot move the supervisor back to %s: %s", path, exc)
