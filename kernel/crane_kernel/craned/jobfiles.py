"""The files a step's supervisor and craned share in the job's root-only state directory.

The supervisor's pid file (``sup.json``), an unsent or sent final status, a changed time limit, the
``cancelled`` marker and the job script: how each is written (fresh ``O_EXCL|O_NOFOLLOW`` files,
atomic renames, root-only modes), how it is read back (only if root wrote it) and how the
supervisor it names is verified before it is signalled. Used by ``craned`` (``craned/main.py``)
and the supervisors (``craned/supervisor.py``; ``craned/stepsup.py`` in a task step's directory).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat

log = logging.getLogger("craned.supervisor")


SUP_FILE = "sup.json"
RESULT_FILE = "result.json"        # a final status the supervisor could not send
SENT_FILE = "result.sent"          # ... which craned has sent since
LIMIT_FILE = "time_limit"          # a changed time limit (seconds), written by root's craned
POLL_S = 0.5


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def proc_start_time(pid: int) -> int:
    """The kernel's start time of ``pid`` (jiffies since boot), to tell a live process from a reused pid."""
    fields = _proc_stat(pid)
    if not fields or fields[0] == "Z":
        return -1
    return int(fields[19])


def _real_uid(pid: int) -> int:
    """The real uid of ``pid`` (-1 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def is_supervisor(info: dict) -> bool:
    """True when ``info`` (a pid file's content) names a live step supervisor of this craned's user.

    The process must have the recorded start time (not a reused pid), lead its own session (a
    supervisor calls ``setsid()``), and run with this process's effective uid as its real uid (root's:
    a job's user can neither start such a process nor make root's process hers).
    """
    try:
        pid, start = int(info["pid"]), int(info["start"])
    except (KeyError, TypeError, ValueError):
        return False
    if pid <= 1:
        return False
    fields = _proc_stat(pid)
    if not fields or fields[0] == "Z" or int(fields[19]) != start or int(fields[3]) != pid:
        return False
    return _real_uid(pid) == os.geteuid()


def read_state(path: str) -> dict | None:
    """Read a JSON state file that this process (root) wrote; None if absent, unreadable or not trusted.

    The file is opened without following a symlink and must be a regular file owned by this
    process's effective uid and writable by nobody else: a file a job's user could have written or
    planted is never believed, even if the state directory were somehow reachable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022 \
                or st.st_size > 1 << 20:
            log.warning("untrusted state file %s ignored (owner %d, mode %o)", path, st.st_uid, st.st_mode)
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = json.loads(fh.read())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def supervisor_alive(job_dir: str) -> bool:
    """True when the supervisor recorded in ``job_dir`` is still running (see :func:`is_supervisor`)."""
    info = read_state(os.path.join(job_dir, SUP_FILE))
    return info is not None and is_supervisor(info)


def signal_supervisor(job_dir: str, signum: int, epoch: int = 0) -> bool:
    """Send ``signum`` to the supervisor recorded in ``job_dir``; False if there is none (or another epoch's).

    The pid is verified (:func:`is_supervisor`) through a pidfd opened first, and the signal goes
    through that pidfd: it cannot reach a process that reused the pid after the check.
    """
    info = read_state(os.path.join(job_dir, SUP_FILE))
    if info is None or (epoch and int(info.get("epoch", 0)) != epoch):
        return False
    try:
        pidfd = os.pidfd_open(int(info["pid"]))
    except (OSError, KeyError, TypeError, ValueError):
        return False
    try:
        if not is_supervisor(info):
            return False
        signal.pidfd_send_signal(pidfd, signum)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)


def read_time_limit(job_dir: str) -> int | None:
    """The changed time limit craned left in ``job_dir``, or None.

    Only a regular file owned by this (root) process's user and writable by nobody else counts,
    opened without following a symlink: a job's user cannot plant or swap it to lift her limit.
    """
    try:
        fd = os.open(os.path.join(job_dir, LIMIT_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            log.warning("ignoring %s in %s: not a root-only regular file", LIMIT_FILE, job_dir)
            return None
        value = int(os.read(fd, 32).decode("ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)
    return value if value > 0 else None


def request_time_limit(job_dir: str, time_limit: int, epoch: int) -> bool:
    """craned's half of :class:`~crane_kernel.messages.UpdateStep`: record the limit, wake the supervisor.

    The value goes to a root-owned 0600 file (atomic rename; never through a symlink) that the
    supervisor re-reads on SIGUSR1. Returns True when a live supervisor of ``epoch`` was told.
    """
    if not os.path.isdir(job_dir):
        return False
    tmp = os.path.join(job_dir, f".{LIMIT_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, f"{int(time_limit)}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(job_dir, LIMIT_FILE))
    return signal_supervisor(job_dir, signal.SIGUSR1, epoch)  # the pid verified, signalled through a pidfd


def write_json(path: str, data: dict) -> None:
    """Write JSON atomically (a fresh temporary file, never through a symlink, mode 0600, then rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def touch_marker(path: str) -> None:
    """Create an empty marker file (never through a symlink; an existing one is kept)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass


def write_script(path: str, text: str, uid: int, gid: int) -> None:
    """Write the job script for its user: a new file (``O_EXCL``, no symlink followed), owned by them, 0500.

    ``path`` lies in craned's script directory, root's and 0711: the user can read and execute her
    script there, but not list the directory, nor rename, replace or remove the file, and other users
    cannot read it. Ownership is set on the open file, never by path.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o500)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o500)
    finally:
        os.close(fd)
