"""cgroup v2 backend: one unified hierarchy at ``<root>``.

Works on a real cgroup2 mount and on a temporary directory laid out like one
(missing control files are created on write, missing ``cgroup.controllers``
means "everything requested is available").
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from crane_kernel.runtime import StepSpec, StepUsage

from crane_runtime_cgroup.backend import CgroupBackend
from crane_runtime_cgroup.errors import CgroupError
from crane_runtime_cgroup.fs import make_dir, read_keyed, read_text, write_text
from crane_runtime_cgroup.paths import format_cpu_list

log = logging.getLogger("crane_runtime_cgroup")

WANTED_CONTROLLERS = ("cpu", "memory", "pids", "cpuset")
DEFAULT_CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000


def parse_controllers(text: str) -> list[str]:
    """Controller names from ``cgroup.controllers``/``cgroup.subtree_control`` text (``+`` signs dropped)."""
    return [tok.lstrip("+") for tok in text.split() if not tok.startswith("-")]


class CgroupV2Backend(CgroupBackend):
    """cgroup v2: enable +cpu +memory +pids +cpuset down the path, write cpu.max/memory.max/pids.max/cpuset.cpus.

    Device control on v2 needs an eBPF program and is not done (a warning is logged).
    """

    version = "v2"

    def dirs(self, rel: str) -> list[Path]:
        """The single directory of cgroup ``rel``."""
        return [self.root / rel]

    def procs_files(self, rel: str) -> list[Path]:
        """``cgroup.procs`` of ``rel`` and of every child cgroup."""
        return [Path(dirpath) / "cgroup.procs" for dirpath, _, _ in os.walk(self.root / rel)]

    def attach_files(self, rel: str) -> list[str]:
        """``<root>/<rel>/cgroup.procs``."""
        return [str(self.root / rel / "cgroup.procs")]

    # -- creation ----------------------------------------------------------


    def home_files(self, rel: str) -> list[str]:
        """The unified-hierarchy ``cgroup.procs`` this process is in now."""
        path = self.own_cgroups().get("", "/")
        return [str(self.root / path.lstrip("/") / "cgroup.procs")]
    def create(self, rel: str, spec: StepSpec, pids_max: int = 0) -> None:
        """Create ``rel``, delegating controllers level by level, then write the limits."""
        current = self.root
        enabled = self._enable_controllers(current)
        parts = rel.split("/")
        for index, part in enumerate(parts):
            current = current / part
            make_dir(current)
            if index < len(parts) - 1:
                enabled = self._enable_controllers(current, available=enabled)
        self._require(enabled, spec, pids_max)
        if "cpu" in enabled:
            write_text(current / "cpu.max", self._cpu_max(current, spec.cpus))
        if spec.cpu_ids:
            write_text(current / "cpuset.cpus", format_cpu_list(spec.cpu_ids))
        if spec.mem_bytes > 0:
            write_text(current / "memory.max", str(int(spec.mem_bytes)))
            if not write_text(current / "memory.swap.max", "0", optional=True):
                log.warning("cannot set memory.swap.max=0 in %s (no swap accounting?)", current)
        if pids_max > 0:
            write_text(current / "pids.max", str(int(pids_max)))
        if spec.devices_deny or spec.devices_allow:
            log.warning("cgroup v2 device control needs eBPF, which this runtime does not implement; "
                        "devices of job %s are not restricted", spec.job_id)

    def _enable_controllers(self, directory: Path, available: list[str] | None = None) -> list[str]:
        """Write the wanted controllers that ``directory`` offers into its ``cgroup.subtree_control``.

        Returns the controllers now enabled for its children. ``available`` is
        used when ``cgroup.controllers`` is missing (a stand-in tree).
        """
        controllers_file = directory / "cgroup.controllers"
        if controllers_file.exists():
            offered = parse_controllers(read_text(controllers_file))
        else:
            offered = list(WANTED_CONTROLLERS) if available is None else available
        already = parse_controllers(read_text(directory / "cgroup.subtree_control", default=""))
        to_enable = [c for c in WANTED_CONTROLLERS if c in offered and c not in already]
        if to_enable:
            write_text(directory / "cgroup.subtree_control", " ".join(f"+{c}" for c in to_enable))
        return [c for c in WANTED_CONTROLLERS if c in already or c in to_enable]

    def _require(self, enabled: list[str], spec: StepSpec, pids_max: int) -> None:
        """Fail when a requested limit needs a controller that cannot be enabled here."""
        needed = {"memory": spec.mem_bytes > 0, "pids": pids_max > 0, "cpuset": bool(spec.cpu_ids),
                  "cpu": spec.cpus > 0}
        missing = [c for c, wanted in needed.items() if wanted and c not in enabled]
        if missing:
            raise CgroupError(f"cgroup v2 controller(s) {', '.join(missing)} not available under {self.root}")

    @staticmethod
    def _cpu_max(directory: Path, cpus: float) -> str:
        """``cpu.max`` content: ``"<quota> <period>"`` or ``"max <period>"``, keeping an existing period."""
        fields = read_text(directory / "cpu.max", default="").split()
        period = int(fields[1]) if len(fields) == 2 and fields[1].isdigit() else DEFAULT_CPU_PERIOD_US
        if cpus <= 0:
            return f"max {period}"
        return f"{max(MIN_CPU_QUOTA_US, round(cpus * period))} {period}"

    # -- control -----------------------------------------------------------

    def freeze(self, rel: str) -> None:
        """Write 1 to cgroup.freeze and wait for ``frozen 1`` in cgroup.events (when the kernel provides it)."""
        directory = self.root / rel
        write_text(directory / "cgroup.freeze", "1")
        events = directory / "cgroup.events"
        if events.exists() and not self.wait_until(lambda: read_keyed(events).get("frozen") == 1):
            write_text(directory / "cgroup.freeze", "0")  # never leave a step half frozen
            raise CgroupError(f"cgroup {rel} did not report frozen")

    def thaw(self, rel: str) -> None:
        """Write 0 to cgroup.freeze."""
        write_text(self.root / rel / "cgroup.freeze", "0")

    def is_frozen(self, rel: str) -> bool:
        """cgroup.freeze reads 1."""
        return read_text(self.root / rel / "cgroup.freeze", default="0") == "1"

    def signal_all(self, rel: str, signum: int) -> int:
        """Like the base class, but SIGKILL also goes through ``cgroup.kill`` when the kernel has it."""
        kill_file = self.root / rel / "cgroup.kill"
        if signum == signal.SIGKILL and kill_file.exists() and self.pids(rel):
            try:
                write_text(kill_file, "1")
            except CgroupError as exc:
                log.debug("cgroup.kill failed, signalling pids one by one: %s", exc)
        return super().signal_all(rel, signum)

    def usage(self, rel: str) -> StepUsage:
        """cpu.stat ``usage_usec`` (-> ms), memory.peak, and ``oom_kill`` from memory.events."""
        directory = self.root / rel
        usage = StepUsage()
        usage.cpu_time_ms = read_keyed(directory / "cpu.stat").get("usage_usec", 0) // 1000
        peak = read_text(directory / "memory.peak", default="0")
        usage.mem_peak_bytes = int(peak) if peak.isdigit() else 0
        usage.oom_killed = read_keyed(directory / "memory.events").get("oom_kill", 0) > 0
        return usage

