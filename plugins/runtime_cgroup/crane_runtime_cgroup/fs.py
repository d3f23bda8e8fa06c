"""Small helpers to read and write cgroup control files and to create/remove cgroup directories.

They work on a real cgroupfs and on an ordinary directory standing in for one
(tests): writes create missing files, and removing a directory that holds
regular files (which cannot happen on cgroupfs) deletes them first.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from crane_runtime_cgroup.errors import CgroupError

_PERMISSION_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def describe(exc: OSError) -> str:
    """The strerror of ``exc`` (``"Permission denied"``), falling back to ``str(exc)``."""
    return exc.strerror or str(exc)


def read_text(path: Path, default: str | None = None) -> str:
    """Read a control file, stripped; ``default`` (when given) if it does not exist."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        if default is not None:
            return default
        raise CgroupError(f"cannot read {path}: no such file") from None
    except OSError as exc:
        raise CgroupError(f"cannot read {path}: {describe(exc)}") from exc


def read_int(path: Path, default: int = 0) -> int:
    """Read a control file holding one integer; ``default`` if missing or not a number (e.g. ``max``)."""
    try:
        return int(read_text(path, default=str(default)).split()[0])
    except (ValueError, IndexError):
        return default


def read_keyed(path: Path) -> dict[str, int]:
    """Parse a flat-keyed file (``key value`` per line, e.g. ``memory.events``); missing file -> ``{}``."""
    result: dict[str, int] = {}
    for line in read_text(path, default="").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                result[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return result


def write_text(path: Path, value: str, optional: bool = False) -> bool:
    """Write ``value`` to a control file (created if missing, for test trees).

    Returns False when ``optional`` and the write failed (e.g. ``memory.swap.max``
    without swap accounting); otherwise a failure raises :class:`CgroupError`.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
        return True
    except OSError as exc:
        if optional:
            return False
        raise CgroupError(f"cannot write {value!r} to {path}: {describe(exc)}") from exc


def make_dir(path: Path) -> bool:
    """Create one cgroup directory; True if it was created, False if it already existed.

    A permission error gets a message saying that cgroups are not writable here.
    """
    try:
        os.mkdir(path, 0o755)
        return True
    except FileExistsError:
        if not path.is_dir():
            raise CgroupError(f"cannot create cgroup {path}: a file is in the way") from None
        return False
    except OSError as exc:
        if exc.errno in _PERMISSION_ERRNOS:
            raise CgroupError(
                f"cannot create cgroup {path}: {describe(exc)} — cgroups are not writable by this process "
                f"(euid {os.geteuid()}); run craned as root with cgroups mounted read-write, "
                "or configure a runtime that does not need cgroups"
            ) from exc
        raise CgroupError(f"cannot create cgroup {path}: {describe(exc)}") from exc


def read_pids(path: Path) -> list[int]:
    """The pids listed in a ``cgroup.procs``/``tasks`` file; ``[]`` if the cgroup is gone."""
    try:
        text = path.read_text()
    except OSError:
        return []
    return [int(tok) for tok in text.split() if tok.isdigit()]


def remove_tree(path: Path, timeout: float = 2.0) -> None:
    """Remove a cgroup directory and its child cgroups, deepest first; missing is fine.

    ``EBUSY`` (processes still exiting) is retried for up to ``timeout`` seconds.
    """
    if not path.is_dir():
        return
    subdirs = sorted((Path(dirpath) for dirpath, _, _ in os.walk(path)), key=lambda p: len(p.parts), reverse=True)
    for directory in subdirs:
        _rmdir_retry(directory, timeout)


def _rmdir_retry(path: Path, timeout: float) -> None:
    """``rmdir`` one cgroup directory, retrying while busy; unlink plain files of a stand-in tree."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                # Only an ordinary directory can say ENOTEMPTY for files: a test tree. Empty it.
                files = [e for e in path.iterdir() if e.is_file() or e.is_symlink()]
                if not files:
                    raise CgroupError(f"cannot remove cgroup {path}: {describe(exc)}") from exc
                for entry in files:
                    entry.unlink(missing_ok=True)
                continue
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise CgroupError(f"cannot remove cgroup {path}: {describe(exc)}") from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
