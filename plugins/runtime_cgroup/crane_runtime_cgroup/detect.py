"""Detect whether a cgroup root is a cgroup v1 layout or a usable cgroup v2 (unified) hierarchy."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from crane_runtime_cgroup.errors import CgroupError

V1_PROBE_CONTROLLERS = ("memory", "cpu", "freezer", "cpuset", "pids")
MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/self/mountinfo``: where, which filesystem type and its super options."""

    mountpoint: str
    fstype: str
    options: frozenset[str]


def read_mounts(mountinfo: str = MOUNTINFO) -> dict[str, Mount]:
    """Mounts by mount point (the last mount of a point wins, as the kernel shows it)."""
    mounts: dict[str, Mount] = {}
    try:
        with open(mountinfo) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return mounts
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        rest = right.split()
        if not sep or len(fields) < 5 or len(rest) < 3:
            continue
        point = _unescape(fields[4])
        mounts[point] = Mount(point, rest[0], frozenset(rest[2].split(",")))
    return mounts


def _unescape(text: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def v2_controllers(root: Path) -> list[str]:
    """The controllers a cgroup v2 root offers (its ``cgroup.controllers``); ``[]`` if unreadable."""
    try:
        return (root / "cgroup.controllers").read_text().split()
    except OSError:
        return []


def detect_version(root: str | Path, mountinfo: str = MOUNTINFO) -> str:
    """Return ``"v1"`` or ``"v2"`` for the cgroup root, or raise :class:`CgroupError` saying why neither works.

    v2 when ``root`` itself is a cgroup2 mount with controllers; v1 when one of
    ``root/{memory,cpu,freezer,cpuset,pids}`` is a cgroup v1 mount of that controller.
    """
    root = Path(root)
    mounts = read_mounts(mountinfo)
    real_root = os.path.realpath(root)
    root_mount = mounts.get(real_root)
    if root_mount is not None and root_mount.fstype == "cgroup2" and v2_controllers(root):
        return "v2"
    for controller in V1_PROBE_CONTROLLERS:
        mount = mounts.get(os.path.realpath(root / controller))
        if mount is not None and mount.fstype == "cgroup" and controller in mount.options:
            return "v1"
    if root_mount is not None and root_mount.fstype == "cgroup2":
        raise CgroupError(f"cgroup v2 at {root} has no controllers enabled (cgroup.controllers is empty)")
    raise CgroupError(f"no usable cgroup hierarchy under {root}: neither cgroup v1 controllers nor a cgroup v2 mount")
