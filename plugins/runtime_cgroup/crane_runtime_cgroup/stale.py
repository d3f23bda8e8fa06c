"""Removing job cgroups left behind on a node (called by craned when it starts)."""

from __future__ import annotations

import logging
from pathlib import Path

from crane_runtime_cgroup.config import DEFAULT_ROOT
from crane_runtime_cgroup.errors import CgroupError
from crane_runtime_cgroup.factory import make_backend
from crane_runtime_cgroup.paths import JOB_DIR_PREFIX, node_cgroup_path

log = logging.getLogger("crane_runtime_cgroup")


def cleanup_stale(prefix: str, node: str, root: str | Path = DEFAULT_ROOT, version: str = "auto") -> list[str]:
    """Remove the ``job_*`` cgroups under ``<prefix>/<node>`` that hold no process any more.

    Job cgroups that still have processes (steps whose supervisor survived a
    craned restart) are left alone. Returns the names of the removed cgroups;
    failures are logged, never raised.
    """
    try:
        backend = make_backend(version, root)
        parent = node_cgroup_path(prefix, node)
    except CgroupError as exc:
        log.warning("stale cgroup cleanup skipped: %s", exc)
        return []
    removed: list[str] = []
    for name in backend.job_names(parent):
        if not name.startswith(JOB_DIR_PREFIX):
            continue
        rel = f"{parent}/{name}"
        if backend.pids(rel):
            continue
        try:
            if backend.is_frozen(rel):
                backend.thaw(rel)
            backend.remove(rel)
            removed.append(name)
        except CgroupError as exc:
            log.warning("cannot remove stale cgroup %s: %s", rel, exc)
    return removed
