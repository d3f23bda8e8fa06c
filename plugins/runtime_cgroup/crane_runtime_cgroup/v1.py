"""cgroup v1 backend: one directory per controller hierarchy under ``<root>/<controller>``."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from crane_kernel.runtime import StepSpec, StepUsage

from crane_runtime_cgroup.backend import CgroupBackend
from crane_runtime_cgroup.errors import CgroupError
from crane_runtime_cgroup.fs import make_dir, read_int, read_keyed, read_text, write_text
from crane_runtime_cgroup.paths import format_cpu_list

log = logging.getLogger("crane_runtime_cgroup")

CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices")
DEFAULT_CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000


def device_rule(path: str) -> str:
    """The ``devices.allow``/``devices.deny`` rule for a device file, e.g. ``"c 195:0 rwm"``."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise CgroupError(f"cannot stat device {path}: {exc.strerror}") from exc
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise CgroupError(f"{path} is not a device file")
    return f"{kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} rwm"


class CgroupV1Backend(CgroupBackend):
    """cgroup v1: cpu, cpuacct, cpuset, memory, pids, freezer and devices hierarchies.

    Co-mounted controllers (``cpu,cpuacct`` with ``cpu`` and ``cpuacct`` as
    symlinks) are recognised by their real path and handled once.
    """

    version = "v1"

    def hierarchies(self) -> dict[str, Path]:
        """Mounted controllers -> hierarchy directory (real path; shared by co-mounted controllers).

        Mounts do not change under a running node, so this is computed once per backend.
        """
        cached = getattr(self, "_hierarchies", None)
        if cached is not None:
            return cached
        found: dict[str, Path] = {}
        for controller in CONTROLLERS:
            path = self.root / controller
            if path.is_dir():
                found[controller] = Path(os.path.realpath(path))
        self._hierarchies = found
        return found

    def _unique_dirs(self) -> list[Path]:
        """Each hierarchy directory once, in controller order."""
        seen: list[Path] = []
        for path in self.hierarchies().values():
            if path not in seen:
                seen.append(path)
        return seen

    def controller_dir(self, controller: str, rel: str) -> Path | None:
        """Directory of cgroup ``rel`` in ``controller``'s hierarchy, or None if that controller is not mounted."""
        base = self.hierarchies().get(controller)
        return None if base is None else base / rel

    def dirs(self, rel: str) -> list[Path]:
        """The directory of cgroup ``rel`` in each mounted hierarchy."""
        return [base / rel for base in self._unique_dirs()]

    def procs_files(self, rel: str) -> list[Path]:
        """``cgroup.procs`` of ``rel`` and of every child cgroup, in every hierarchy."""
        files: list[Path] = []
        for directory in self.dirs(rel):
            for dirpath, _, _ in os.walk(directory):
                files.append(Path(dirpath) / "cgroup.procs")
        return files

    def attach_files(self, rel: str) -> list[str]:
        """``cgroup.procs`` of ``rel`` in each hierarchy where it was created."""
        return [str(d / "cgroup.procs") for d in self.dirs(rel) if d.is_dir()]

    def home_files(self, rel: str) -> list[str]:
        """The ``cgroup.procs`` this process is in now, per hierarchy of :meth:`attach_files`."""
        mine = self.own_cgroups()
        homes = []
        for base in self._unique_dirs():
            if not (base / rel).is_dir():
                continue
            names = base.name.split(",")
            path = next((mine[n] for n in names if n in mine), "/")
            homes.append(str(base / path.lstrip("/") / "cgroup.procs"))
        return homes

    # -- creation ----------------------------------------------------------

    def create(self, rel: str, spec: StepSpec, pids_max: int = 0) -> None:
        """Create ``rel`` in every hierarchy and write the CPU, cpuset, memory, pids and device limits."""
        hier = self.hierarchies()
        if not hier:
            raise CgroupError(f"no cgroup v1 controller is mounted under {self.root}")
        self._require(hier, spec, pids_max)
        cpuset_base = hier.get("cpuset")
        # Every cgroup costs a mkdir now and an rmdir later, on every launch: make only the ones
        # this step needs (cpu/cpuacct for quota and usage, memory for the limit and OOM, freezer
        # for suspend; cpuset, pids and devices only when the step sets them).
        wanted = {"cpu", "cpuacct", "memory", "freezer"}
        if spec.cpu_ids:
            wanted.add("cpuset")
        if pids_max > 0:
            wanted.add("pids")
        if spec.devices_deny:
            wanted.add("devices")
        bases = []
        for controller, base in hier.items():
            if controller in wanted and base not in bases:
                bases.append(base)
        for base in bases:
            self._make_path(base, rel, init_cpuset=base == cpuset_base)
        if "cpu" in hier:
            self._set_cpu(hier["cpu"] / rel, spec.cpus)
        if cpuset_base is not None and spec.cpu_ids:
            write_text(cpuset_base / rel / "cpuset.cpus", format_cpu_list(spec.cpu_ids))
        if spec.mem_bytes > 0:
            self._set_memory(hier["memory"] / rel, spec.mem_bytes)
        if pids_max > 0:
            write_text(hier["pids"] / rel / "pids.max", str(int(pids_max)))
        if spec.devices_deny:
            for device in spec.devices_deny:
                write_text(hier["devices"] / rel / "devices.deny", device_rule(device))

    def _require(self, hier: dict[str, Path], spec: StepSpec, pids_max: int) -> None:
        """Fail when a limit the step asks for needs a controller that is not mounted; warn for the rest."""
        needed = {"cpu": spec.cpus > 0, "memory": spec.mem_bytes > 0, "pids": pids_max > 0,
                  "cpuset": bool(spec.cpu_ids), "devices": bool(spec.devices_deny)}
        missing = [c for c, wanted in needed.items() if wanted and c not in hier]
        if missing:
            raise CgroupError(f"cgroup v1 controller(s) {', '.join(missing)} not mounted under {self.root}")
        for controller in CONTROLLERS:
            if controller not in hier:
                log.warning("cgroup v1 controller %s is not mounted under %s; skipped", controller, self.root)

    def _make_path(self, base: Path, rel: str, init_cpuset: bool) -> None:
        """mkdir each level of ``rel`` under ``base``; in cpuset, fill empty cpus/mems from the parent."""
        current = base
        for part in rel.split("/"):
            parent, current = current, current / part
            make_dir(current)
            if init_cpuset:
                for name in ("cpuset.cpus", "cpuset.mems"):
                    if not read_text(current / name, default=""):
                        write_text(current / name, read_text(parent / name, default=""))

    def _set_cpu(self, directory: Path, cpus: float) -> None:
        """CFS quota = cpus x period (unlimited when cpus <= 0)."""
        if cpus <= 0:
            write_text(directory / "cpu.cfs_quota_us", "-1")
            return
        period = read_int(directory / "cpu.cfs_period_us", DEFAULT_CFS_PERIOD_US) or DEFAULT_CFS_PERIOD_US
        quota = max(MIN_CFS_QUOTA_US, round(cpus * period))
        write_text(directory / "cpu.cfs_quota_us", str(quota))

    def _set_memory(self, directory: Path, mem_bytes: int) -> None:
        """memory.limit_in_bytes and, when present, memory.memsw.limit_in_bytes (no swap beyond the limit).

        The kernel requires memsw >= limit at every moment, so memsw goes first when it must grow.
        """
        limit = directory / "memory.limit_in_bytes"
        memsw = directory / "memory.memsw.limit_in_bytes"
        files = [limit]
        if memsw.exists():
            files = [memsw, limit] if read_int(memsw) < mem_bytes else [limit, memsw]
        for path in files:
            write_text(path, str(int(mem_bytes)))

    # -- control -----------------------------------------------------------

    def _freezer_state(self, rel: str) -> Path:
        """The ``freezer.state`` file of ``rel``; CgroupError without a freezer hierarchy."""
        directory = self.controller_dir("freezer", rel)
        if directory is None:
            raise CgroupError(f"cgroup v1 freezer is not mounted under {self.root}")
        return directory / "freezer.state"

    def freeze(self, rel: str) -> None:
        """Write FROZEN to freezer.state and wait until it reads FROZEN; CgroupError (and thawed again) if not."""
        state = self._freezer_state(rel)
        write_text(state, "FROZEN")
        if not self.wait_until(lambda: read_text(state, default="FROZEN") == "FROZEN"):
            seen = read_text(state, default="?")
            write_text(state, "THAWED")  # never leave a step half frozen
            raise CgroupError(f"cgroup {rel} is still {seen} after freezing")

    def thaw(self, rel: str) -> None:
        """Write THAWED to freezer.state."""
        write_text(self._freezer_state(rel), "THAWED")

    def is_frozen(self, rel: str) -> bool:
        """freezer.state is FROZEN or FREEZING."""
        directory = self.controller_dir("freezer", rel)
        if directory is None:
            return False
        return read_text(directory / "freezer.state", default="THAWED") != "THAWED"

    def usage(self, rel: str) -> StepUsage:
        """cpuacct.usage (ns -> ms), memory.max_usage_in_bytes, and ``oom_kill`` from memory.oom_control."""
        usage = StepUsage()
        cpuacct = self.controller_dir("cpuacct", rel)
        if cpuacct is not None:
            usage.cpu_time_ms = read_int(cpuacct / "cpuacct.usage") // 1_000_000
        memory = self.controller_dir("memory", rel)
        if memory is not None:
            usage.mem_peak_bytes = read_int(memory / "memory.max_usage_in_bytes")
            usage.oom_killed = read_keyed(memory / "memory.oom_control").get("oom_kill", 0) > 0
        return usage
