"""What a cgroup backend (v1 or v2) does for the runtime, and the parts both share."""

from __future__ import annotations

import logging
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from crane_kernel.runtime import StepSpec, StepUsage

from crane_runtime_cgroup.fs import read_pids, remove_tree

log = logging.getLogger("crane_runtime_cgroup")


class CgroupBackend(ABC):
    """Operations on one job cgroup, addressed by its path relative to the hierarchy root(s).

    ``root`` is injectable so a backend can run against a temporary directory
    laid out like cgroupfs.
    """

    version: str = ""

    def __init__(self, root: str | Path) -> None:
        """Use the cgroup file system mounted at ``root`` (normally ``/sys/fs/cgroup``)."""
        self.root = Path(root)

    @abstractmethod
    def dirs(self, rel: str) -> list[Path]:
        """The directories of cgroup ``rel`` in every hierarchy this backend uses."""

    @abstractmethod
    def create(self, rel: str, spec: StepSpec, pids_max: int = 0) -> None:
        """Create cgroup ``rel`` (and its parents) with the limits of ``spec`` and ``pids_max`` (0 = none).

        ``pids_max`` comes from the plugin's settings (``PidsMax``), not from the
        step. Raises CgroupError.
        """

    @abstractmethod
    def attach_files(self, rel: str) -> list[str]:
        """The files a process writes its pid into to join cgroup ``rel`` in every hierarchy."""

    @abstractmethod
    def home_files(self, rel: str) -> list[str]:
        """For each of :meth:`attach_files`, the file of the cgroup the calling process is in now."""

    @abstractmethod
    def freeze(self, rel: str) -> None:
        """Freeze every process of cgroup ``rel`` and wait (briefly) until the kernel reports it frozen."""

    @abstractmethod
    def thaw(self, rel: str) -> None:
        """Thaw cgroup ``rel``."""

    @abstractmethod
    def is_frozen(self, rel: str) -> bool:
        """Whether cgroup ``rel`` is frozen or freezing."""

    @abstractmethod
    def usage(self, rel: str) -> StepUsage:
        """CPU time, peak memory and whether the OOM killer fired in cgroup ``rel`` (zeros if gone)."""

    @abstractmethod
    def procs_files(self, rel: str) -> list[Path]:
        """The ``cgroup.procs`` files listing the processes of cgroup ``rel`` and its children."""

    @staticmethod
    def own_cgroups() -> dict[str, str]:
        """This process's cgroup path per controller name (``""`` for the v2 unified hierarchy)."""
        mine: dict[str, str] = {}
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for name in controllers.split(",") if controllers else [""]:
                    mine[name] = path
        return mine

    def exists(self, rel: str) -> bool:
        """Whether cgroup ``rel`` exists in at least one hierarchy."""
        return any(d.is_dir() for d in self.dirs(rel))

    def pids(self, rel: str) -> list[int]:
        """Every process in cgroup ``rel`` (and child cgroups), in any hierarchy, without duplicates."""
        found: set[int] = set()
        for procs in self.procs_files(rel):
            found.update(read_pids(procs))
        return sorted(found)

    def signal_all(self, rel: str, signum: int) -> int:
        """Send ``signum`` to every process of cgroup ``rel``; return how many were signalled."""
        count = 0
        for pid in self.pids(rel):
            try:
                os.kill(pid, signum)
                count += 1
            except ProcessLookupError:
                continue
        return count

    def kill_all(self, rel: str, timeout: float = 5.0) -> bool:
        """SIGKILL cgroup ``rel`` until it holds no process (thawing it if frozen); True once empty."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        thawed = False
        while True:
            if not self.signal_all(rel, signal.SIGKILL) and not self.pids(rel):
                return True
            if not thawed and self.exists(rel) and self.is_frozen(rel):
                self.thaw(rel)          # frozen (v1) tasks only act on SIGKILL once thawed
                thawed = True
            if time.monotonic() >= deadline:
                log.warning("cgroup %s still has processes %s after SIGKILL", rel, self.pids(rel))
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def remove(self, rel: str, timeout: float = 2.0) -> None:
        """Remove cgroup ``rel`` from every hierarchy (missing is fine; raise CgroupError if it stays busy)."""
        for directory in self.dirs(rel):
            remove_tree(directory, timeout)

    def job_names(self, parent_rel: str) -> list[str]:
        """Names of the child cgroups of ``parent_rel`` found in any hierarchy."""
        names: set[str] = set()
        for directory in self.dirs(parent_rel):
            try:
                names.update(e.name for e in directory.iterdir() if e.is_dir())
            except OSError:
                continue
        return sorted(names)

    def wait_until(self, check: Callable[[], bool], timeout: float = 2.0) -> bool:
        """Poll ``check`` until it returns True or ``timeout`` seconds pass; return its last answer."""
        deadline = time.monotonic() + timeout
        delay = 0.002
        while not check():
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True
