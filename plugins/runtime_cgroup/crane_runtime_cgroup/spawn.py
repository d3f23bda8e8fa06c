"""Fork the task of a step into its cgroup, as its user, and exec it; report pre-exec failures.

The child joins the cgroup, starts a new session, drops to the user, changes
to the working directory, opens its standard streams (as the user) and execs
``interpreter + [script_path]``. Any failure before exec is written as JSON
(stage, errno, detail) into a close-on-exec pipe; the parent reads the pipe to
EOF, so an empty read means the exec succeeded.

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
import fcntl
import json
import os
import pwd
import signal
from dataclasses import dataclass
from typing import NoReturn

from crane_kernel.errors import StepLaunchError
from crane_kernel.runtime import StepSpec
from crane_kernel.states import (
    EC_CGROUP_ERR,
    EC_FILE_NOT_FOUND,
    EC_PERMISSION_DENIED,
    EC_SPAWN_FAILED,
)

CHILD_FAILURE_STATUS = 127
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


def spawn_task(spec: StepSpec, attach_files: list[str]) -> int:
    """Fork and exec the step's task; return its pid, or raise StepLaunchError for a failure before exec.

    The child has already left the process (and been reaped) when this raises.
    """
    argv = [*spec.interpreter, spec.script_path]
    groups = supplementary_groups(spec) if spec.uid != os.geteuid() else None
    rfd, wfd = (_above_stdio(fd) for fd in os.pipe())
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(rfd)
        os.close(wfd)
        raise StepLaunchError(f"cannot fork the task: {exc.strerror}", EC_SPAWN_FAILED) from exc
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        os.close(rfd)
        _child(spec, argv, attach_files, groups, wfd)
    os.close(wfd)
    data = _read_all(rfd)
    if not data:
        return pid
    _reap(pid)
    failure = _decode(data)
    raise StepLaunchError(failure.message(spec), failure.exit_code())


def _above_stdio(fd: int) -> int:
    """Move a (close-on-exec) descriptor to 3 or above so dup2 onto 0-2 cannot clobber it."""
    if fd > 2:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return new


def _read_all(fd: int) -> bytes:
    """Read a pipe to EOF (EINTR is retried by Python), then close it."""
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _reap(pid: int) -> None:
    """Wait for the failed child so it does not stay a zombie."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _decode(data: bytes) -> ChildFailure:
    """Parse the child's report; garbage becomes a generic spawn failure."""
    try:
        obj = json.loads(data.decode())
        return ChildFailure(str(obj["stage"]), int(obj["errno"]), str(obj["detail"]))
    except (ValueError, KeyError, TypeError):
        return ChildFailure("spawn", 0, data[:200].decode(errors="replace"))


# --------------------------------------------------------------------------
# in the child
# --------------------------------------------------------------------------

def _child(spec: StepSpec, argv: list[str], attach_files: list[str], groups: list[int] | None,
           wfd: int) -> NoReturn:  # pragma: no cover - runs in the child
    """Set the child up and exec; on any failure report it through ``wfd`` and ``_exit(127)``."""
    stage, detail = "cgroup", ""
    try:
        pid = str(os.getpid()).encode()
        for path in attach_files:
            detail = path
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        stage, detail = "session", ""
        os.setsid()
        _reset_signals()
        stage = "user"
        if groups is not None:
            os.setgroups(groups)
            os.setgid(spec.gid)
            os.setuid(spec.uid)
        stage = "cwd"
        os.chdir(spec.cwd)
        stage = "stdio"
        _open_stdio(spec)
        stage, detail = "exec", argv[0]
        os.closerange(3, wfd)
        os.closerange(wfd + 1, _max_fd())
        os.execvpe(argv[0], argv, spec.env)   # PATH search (in the task's env) only for a bare name
    except OSError as exc:
        detail = str(exc.filename) if stage in ("stdio", "exec") and exc.filename else detail
        _report(wfd, stage, exc.errno or 0, detail)
    except BaseException as exc:  # noqa: B036 - anything must end in _exit, never return into the supervisor
        _report(wfd, stage, 0, f"{type(exc).__name__}: {exc}")
    os._exit(CHILD_FAILURE_STATUS)


def _reset_signals() -> None:  # pragma: no cover - runs in the child
    """Default dispositions and an empty mask: ignored signals (Python ignores SIGPIPE) survive exec otherwise."""
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            continue
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _open_stdio(spec: StepSpec) -> None:  # pragma: no cover - runs in the child
    """Open stdin/stdout/stderr as the user (after setuid) and put them on fds 0, 1, 2."""
    out_flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if spec.open_mode == "append" else os.O_TRUNC)
    stdin = _above_stdio(os.open(spec.stdin or os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    stdout = _above_stdio(os.open(spec.stdout or os.devnull, out_flags | os.O_CLOEXEC, 0o644))
    if not spec.stderr or spec.stderr == spec.stdout:
        stderr = stdout
    else:
        stderr = _above_stdio(os.open(spec.stderr, out_flags | os.O_CLOEXEC, 0o644))
    for source, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(source, target)          # dup2 clears close-on-exec on the target
    for fd in {stdin, stdout, stderr}:
        os.close(fd)


def _max_fd() -> int:  # pragma: no cover - runs in the child
    """Upper bound for closerange."""
    try:
        return max(os.sysconf("SC_OPEN_MAX"), 256)
    except (OSError, ValueError):
        return 65536


def _report(wfd: int, stage: str, err: int, detail: str) -> None:  # pragma: no cover - runs in the child
    """Write the failure to the parent in one write (well under PIPE_BUF)."""
    payload = json.dumps({"stage": stage, "errno": err, "detail": detail[:1000]}).encode()
    try:
        os.write(wfd, payload[:3500])
    except OSError:
        pass
