"""The pod's parent cgroup ``<prefix>/<node>/pod_<job_id>``: created with the job's limits, removed after.

CRI (containerd with cgroupfs) puts the sandbox and the container below ``cgroup_parent`` and
sets no limit on the parent itself; a limit set here is enforced hierarchically, on top of the
container's own LinuxContainerResources. cgroup v1: ``memory`` and ``cpu`` directories are made
by the plugin (runc makes the others, e.g. cpuset, which it must initialise itself); v2: one
directory with ``memory.max``/``cpu.max`` (as far as the parent's subtree_control allows).
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("crane_runtime_cri")

PERIOD_US = 100_000


def parent_path(prefix: str, node: str, job_id: int) -> str:
    """The pod's cgroup_parent relative to each hierarchy: ``<prefix>/<node>/pod_<id>``."""
    if not node or "/" in node or node in (".", ".."):
        raise ValueError(f"invalid node name for a cgroup path: {node!r}")
    return f"{prefix.strip('/')}/{node}/pod_{int(job_id)}"


def is_v2(root: str) -> bool:
    """True when ``root`` is a cgroup v2 (unified) mount."""
    return os.path.exists(os.path.join(root, "cgroup.controllers"))


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def create(root: str, rel: str, cpus: float, mem_bytes: int) -> None:
    """Make the parent cgroup with the job's memory and CPU limits; raises OSError."""
    quota = max(1000, int(cpus * PERIOD_US)) if cpus > 0 else -1
    if is_v2(root):
        path = os.path.join(root, rel)
        os.makedirs(path, exist_ok=True)
        for name, value in (("memory.max", str(mem_bytes) if mem_bytes else "max"),
                            ("cpu.max", f"{quota if quota > 0 else 'max'} {PERIOD_US}")):
            try:
                _write(os.path.join(path, name), value)
            except OSError as exc:  # the controller is not enabled below the root: the container's limits apply
                log.debug("cannot set %s on %s: %s", name, path, exc)
        return
    mem = os.path.join(root, "memory", rel)
    os.makedirs(mem, exist_ok=True)
    if mem_bytes:
        _write(os.path.join(mem, "memory.limit_in_bytes"), str(mem_bytes))
        swap = os.path.join(mem, "memory.memsw.limit_in_bytes")
        if os.path.exists(swap):
            _write(swap, str(mem_bytes))
    cpu = os.path.join(root, "cpu", rel)
    if os.path.isdir(os.path.join(root, "cpu")):
        os.makedirs(cpu, exist_ok=True)
        _write(os.path.join(cpu, "cpu.cfs_period_us"), str(PERIOD_US))
        _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(quota))


def _dirs(root: str, rel: str) -> list[str]:
    if is_v2(root):
        return [os.path.join(root, rel)]
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    return [os.path.join(root, n, rel) for n in names if not os.path.islink(os.path.join(root, n))]


def exists(root: str, rel: str) -> bool:
    """True if the parent cgroup exists in any hierarchy."""
    return any(os.path.isdir(d) for d in _dirs(root, rel))


def remove(root: str, rel: str, timeout: float = 2.0) -> bool:
    """Remove the parent cgroup (and empty children runc may have left) in every hierarchy; True if gone."""
    deadline = time.monotonic() + timeout
    left = [d for d in _dirs(root, rel) if os.path.isdir(d)]
    while left:
        still = []
        for d in left:
            for sub, _dirnames, _files in sorted(os.walk(d), key=lambda t: len(t[0]), reverse=True):
                try:
                    os.rmdir(sub)
                except FileNotFoundError:
                    pass
                except OSError:
                    still.append(d)
                    break
        left = [d for d in dict.fromkeys(still) if os.path.isdir(d)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if left:
        log.warning("cannot remove pod cgroup(s) %s", ", ".join(left))
    return not left


def usage(root: str, rel: str) -> tuple[int, int]:
    """(CPU time in ms, peak memory in bytes) of the parent cgroup, zeros when unknown."""
    cpu_ms = peak = 0
    try:
        if is_v2(root):
            with open(os.path.join(root, rel, "cpu.stat")) as f:
                for line in f:
                    if line.startswith("usage_usec"):
                        cpu_ms = int(line.split()[1]) // 1000
            peak_file = os.path.join(root, rel, "memory.peak")
            if os.path.exists(peak_file):
                with open(peak_file) as f:
                    peak = int(f.read().strip() or 0)
        else:
            acct = os.path.join(root, "cpuacct", rel, "cpuacct.usage")
            if os.path.exists(acct):
                with open(acct) as f:
                    cpu_ms = int(f.read().strip() or 0) // 1_000_000
            with open(os.path.join(root, "memory", rel, "memory.max_usage_in_bytes")) as f:
                peak = int(f.read().strip() or 0)
    except (OSError, ValueError):
        pass
    return cpu_ms, peak


def freeze(root: str, rel: str, frozen: bool) -> bool:
    """Freeze or thaw everything in the pod (v1 ``freezer.state``, v2 ``cgroup.freeze``); False if impossible."""
    try:
        if is_v2(root):
            _write(os.path.join(root, rel, "cgroup.freeze"), "1" if frozen else "0")
        else:
            _write(os.path.join(root, "freezer", rel, "freezer.state"), "FROZEN" if frozen else "THAWED")
        return True
    except OSError as exc:
        log.error("cannot %s the pod cgroup %s: %s", "freeze" if frozen else "thaw", rel, exc)
        return False


def is_frozen(root: str, rel: str) -> bool:
    """True if the pod's cgroup is frozen (False when it does not exist)."""
    try:
        if is_v2(root):
            with open(os.path.join(root, rel, "cgroup.freeze")) as f:
                return f.read().strip() == "1"
        with open(os.path.join(root, "freezer", rel, "freezer.state")) as f:
            return f.read().strip() != "THAWED"
    except OSError:
        return False
