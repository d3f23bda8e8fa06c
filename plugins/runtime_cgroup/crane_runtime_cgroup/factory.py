"""Choosing and building the cgroup backend for a root and a configured version."""

from __future__ import annotations

from pathlib import Path

from crane_runtime_cgroup.backend import CgroupBackend
from crane_runtime_cgroup.detect import detect_version
from crane_runtime_cgroup.errors import CgroupError
from crane_runtime_cgroup.v1 import CgroupV1Backend
from crane_runtime_cgroup.v2 import CgroupV2Backend

BACKENDS: dict[str, type[CgroupBackend]] = {"v1": CgroupV1Backend, "v2": CgroupV2Backend}


def make_backend(version: str, root: str | Path) -> CgroupBackend:
    """A backend for ``root``; ``version`` is ``v1``, ``v2`` or ``auto`` (detected from the mounts)."""
    if version == "auto":
        version = detect_version(root)
    try:
        return BACKENDS[version](root)
    except KeyError:
        raise CgroupError(f"unknown cgroup version {version!r} (expected auto, v1 or v2)") from None
