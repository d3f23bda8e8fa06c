"""Where ``craned`` keeps its state on a node, and the checks that keep it root's.

``<CraneBaseDir>/craned/<node>/`` (0755) holds two directories, both owned by ``craned``'s user
(root on a real node):

* ``jobs/`` (0700), ``jobs/<job id>/`` and ``jobs/<job id>.<step id>/`` (a task step's, 0700): the
  supervisor state ``craned`` reads back (pid file, unsent or sent result, the ``cancelled`` marker).
  No job's user can reach it.
* ``scripts/`` (0711): one file per job, ``<job id>``, the script the runtime executes, owned by the
  job's user and mode 0500. She can read and execute it by its path (the directory can be searched)
  but cannot list the directory or rename, replace or remove anything in it; others cannot read it.

Root must not depend on anything a user can change, so every component of the real path of
these directories must be owned by root (or ``craned``'s uid) and not writable by group or others;
a sticky directory such as ``/tmp`` is accepted on the way (others cannot rename what is in it), as
long as the next component is root's. :func:`prepare` refuses to start otherwise.
"""

from __future__ import annotations

import os
import stat

from crane_kernel.errors import CraneError

JOBS_MODE = 0o700
SCRIPTS_MODE = 0o711


def unsafe_component(path: str) -> str:
    """Why ``path`` (a real, absolute path) has a component someone else could change; "" if it has none."""
    owners = {0, os.geteuid()}
    parts = [p for p in path.split("/") if p]
    prefixes = ["/"] + ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]
    for i, prefix in enumerate(prefixes):
        st = os.lstat(prefix)
        if stat.S_ISLNK(st.st_mode):
            return f"{prefix} is a symlink"
        if st.st_uid not in owners:
            return f"{prefix} is owned by uid {st.st_uid}"
        writable = st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid != 0)
        if writable and not (st.st_mode & stat.S_ISVTX and i < len(prefixes) - 1):
            return f"{prefix} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    return ""


def _own_dir(path: str, mode: int) -> None:
    """Create ``path`` if needed; it must be a directory of this uid; set its mode to ``mode``."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise CraneError(f"craned: {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise CraneError(f"craned: {path} is owned by uid {st.st_uid}, not by craned's uid {os.geteuid()}")
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def prepare(base_dir: str, node: str) -> tuple[str, str]:
    """Create and check the node's state directories; return (jobs dir, scripts dir) as real paths.

    Raises :class:`CraneError` (one line) when a component of their path could be changed by
    another user.
    """
    node_dir = os.path.join(os.path.abspath(base_dir), "craned", node)
    os.makedirs(node_dir, mode=0o755, exist_ok=True)
    node_dir = os.path.realpath(node_dir)
    _own_dir(node_dir, 0o755)
    jobs, scripts = os.path.join(node_dir, "jobs"), os.path.join(node_dir, "scripts")
    _own_dir(jobs, JOBS_MODE)
    _own_dir(scripts, SCRIPTS_MODE)
    for path in (jobs, scripts):
        why = unsafe_component(path)
        if why:
            raise CraneError(f"craned: the node state directory {path} is not safe: {why}")
    return jobs, scripts


def job_dir_trusted(path: str) -> bool:
    """True when the job directory ``path`` is a real directory of this uid that only it can write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022
