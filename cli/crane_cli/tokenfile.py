"""Writing a token file without ever following someone else's symlink as root.

A token is written to a fresh temporary file in the target's directory (a random name,
``O_CREAT|O_EXCL|O_NOFOLLOW``: nothing planted there is opened) and renamed over the target
(``rename`` replaces a symlink at the target, it does not follow it); both go through one
descriptor of the directory, so swapping the directory's path half-way changes nothing.

When root writes a token for another user (``crane token issue --save-to PATH``), a forked child
takes the user's groups, gid and uid first and writes as her: the kernel then applies her
permissions to every component of ``PATH``, so whatever she planted (a symlink to a root-owned
file, a directory swapped for a link to ``/etc``) gets what she herself would get, and the file
is hers without any ``chown`` by root.
"""

from __future__ import annotations

import os
import pwd
import secrets

NOGROUP = 65534  # the gid for a uid without a passwd entry


def write_private(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically with the caller's credentials (parents made 0700).

    Raises OSError (a symlink or directory in the way surfaces as ``ELOOP``/``EISDIR``-like errors).
    """
    directory, name = os.path.split(os.path.abspath(path))
    if not name:
        raise IsADirectoryError(21, "Is a directory", path)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        dfd = os.open(directory, flags)
    except FileNotFoundError:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        dfd = os.open(directory, flags)
    try:
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=dfd)
            raise
        os.close(fd)
        try:
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            os.unlink(tmp, dir_fd=dfd)
            raise
    finally:
        os.close(dfd)


def credentials(uid: int) -> tuple[int, list[int]]:
    """The primary gid and supplementary groups of ``uid`` (``NOGROUP`` and none without a passwd entry)."""
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return NOGROUP, []
    try:
        return pw.pw_gid, os.getgrouplist(pw.pw_name, pw.pw_gid)
    except OSError:
        return pw.pw_gid, [pw.pw_gid]


def write_as_user(uid: int, path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` as user ``uid`` (root only): fork, drop to her ids, :func:`write_private`.

    Raises OSError with the child's errno and message when the write fails (e.g. ``EACCES`` where
    she may not write).
    """
    gid, groups = credentials(uid)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(rfd)
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            write_private(path, data, mode)
        except BaseException as exc:  # reported to the parent through the pipe
            code = 1
            err = getattr(exc, "errno", None) or 0
            text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            try:
                os.write(wfd, f"{err}:{text}".encode()[:1000])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(wfd)
    try:
        chunks = []
        while chunk := os.read(rfd, 4096):
            chunks.append(chunk)
    finally:
        os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        err, _, text = b"".join(chunks).decode(errors="replace").partition(":")
        raise OSError(int(err) if err.isdigit() else 0, text or f"the writer exited with status {status}", path)
