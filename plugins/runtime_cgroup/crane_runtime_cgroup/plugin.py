"""``CgroupRuntime``: the ``crane.runtime`` plugin named ``cgroup`` (the step-supervisor hooks)."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from crane_common.states import EC_CGROUP_ERR, EC_EXEC_ERR
from crane_kernel import hookimpl
from crane_kernel.errors import StepLaunchError
from crane_kernel.runtime import StepSpec, StepUsage

from crane_runtime_cgroup.backend import CgroupBackend
from crane_runtime_cgroup.config import RuntimeConfig, parse_config
from crane_runtime_cgroup.errors import CgroupError
from crane_runtime_cgroup.factory import make_backend
from crane_runtime_cgroup.handle import RUNTIME_NAME, CgroupStepHandle
from crane_runtime_cgroup.paths import job_cgroup_path
from crane_runtime_cgroup.process import wait_exit
from crane_runtime_cgroup.spawn import forget, spawn_task

log = logging.getLogger("crane_runtime_cgroup")

REAP_TIMEOUT = 2.0      # seconds cleanup waits for a SIGKILLed main process to become reapable


class CgroupRuntime:
    """Runs each step's task in a per-job cgroup (v1 or v2) with its CPU, cpuset, memory, pids and device limits.

    Instantiated by stevedore without arguments; the kernel then hands it its
    settings through ``crane_plugin_configure`` (``Version``: auto|v1|v2,
    ``Root``: default ``/sys/fs/cgroup``, ``Prefix``: default ``crane``,
    ``PidsMax``: per-job process limit, default 4096, 0 = none). Steps with a
    ``container`` are left to a container runtime. The kernel calls the
    hooks that take a handle only for steps this plugin launched.
    """

    name = RUNTIME_NAME

    def __init__(self) -> None:
        """Start with the default configuration."""
        self.config = RuntimeConfig()
        self._backend: CgroupBackend | None = None

    @hookimpl
    def crane_plugin_configure(self, settings: dict[str, Any]) -> None:
        """Apply the plugin's settings (keys case-insensitive); raises ConfigError for invalid values."""
        self.config = parse_config(settings)
        self._backend = None
        # Detect the backend now, not at the first launch: the step supervisors are forked from
        # a process that configured this plugin once, and each would otherwise redo the work.
        try:
            backend = self.backend()
            getattr(backend, "hierarchies", lambda: None)()
        except CgroupError:
            self._backend = None  # reported, with its reason, when a step is launched

    # -- helpers -----------------------------------------------------------

    def backend(self) -> CgroupBackend:
        """The configured backend, detected on first use; raises CgroupError."""
        if self._backend is None:
            self._backend = make_backend(self.config.version, self.config.root)
        return self._backend

    def _backend_for(self, handle: CgroupStepHandle) -> CgroupBackend:
        """The backend that created ``handle``'s cgroup."""
        current = self._backend
        if current is not None and current.version == handle.version and str(current.root) == handle.root:
            return current
        return make_backend(handle.version, handle.root)

    # -- hooks -------------------------------------------------------------

    @hookimpl
    def crane_step_launch(self, step: StepSpec) -> CgroupStepHandle | None:
        """Create the job cgroup with the step's limits and start the task in it as the user.

        Raises StepLaunchError with EC_CGROUP_ERR, EC_PERMISSION_DENIED,
        EC_FILE_NOT_FOUND or EC_SPAWN_FAILED when the task cannot be started.
        """
        if step.container:
            return None
        try:
            backend = self.backend()
            rel = job_cgroup_path(self.config.prefix, step.node, step.job_id)
        except CgroupError as exc:
            raise StepLaunchError(f"cgroup runtime: {exc}", EC_CGROUP_ERR) from exc
        try:
            backend.create(rel, step, self.config.pids_max)
        except CgroupError as exc:
            self._discard(backend, rel)
            raise StepLaunchError(f"cgroup runtime: {exc}", EC_CGROUP_ERR) from exc
        try:
            pid = spawn_task(step, backend.attach_files(rel), backend.home_files(rel))
        except StepLaunchError:
            self._discard(backend, rel)
            raise
        log.info("job %s step %s started as pid %s in %s cgroup %s", step.job_id, step.step_id, pid,
                 backend.version, rel)
        return CgroupStepHandle(runtime=RUNTIME_NAME, pid=pid, spec=step, version=backend.version,
                                root=str(backend.root), cgroup=rel)

    @staticmethod
    def _discard(backend: CgroupBackend, rel: str) -> None:
        """Best-effort removal of a cgroup after a failed launch (never raises)."""
        try:
            if backend.pids(rel):
                return          # another step of the job is running in it: leave it
            backend.remove(rel, timeout=0.5)
        except CgroupError as exc:
            log.warning("cannot remove cgroup %s after a failed launch: %s", rel, exc)

    @hookimpl
    def crane_step_wait(self, handle: CgroupStepHandle, timeout: float | None) -> int | None:
        """Wait up to ``timeout`` for the main process; raw exit code once it ended (repeatable)."""
        if handle.exit_code is None:
            try:
                handle.exit_code = wait_exit(handle.pid, timeout)
                if handle.exit_code is not None:
                    forget(handle.pid, handle.exit_code)
            except ChildProcessError:
                log.error("pid %s of job %s was reaped by someone else; its exit status is lost",
                          handle.pid, handle.spec.job_id)
                handle.exit_code = EC_EXEC_ERR
        return handle.exit_code

    @hookimpl
    def crane_step_signal(self, handle: CgroupStepHandle, signum: int, all_processes: bool) -> bool | None:
        """Signal the task's process group, or every process of the job cgroup when ``all_processes``.

        SIGKILL to all repeats until the cgroup is empty (thawing a frozen step).
        """
        backend = self._backend_for(handle)
        if all_processes:
            if signum == signal.SIGKILL:
                return backend.kill_all(handle.cgroup)
            backend.signal_all(handle.cgroup, signum)
            return True
        if handle.exit_code is None:
            try:
                os.killpg(handle.pid, signum)   # the group cannot be reused while its leader is unreaped
            except ProcessLookupError:
                pass
            return True
        for pid in backend.pids(handle.cgroup):  # leader reaped: the group's survivors, found in the cgroup
            try:
                if os.getpgid(pid) == handle.pid:
                    os.kill(pid, signum)
            except ProcessLookupError:
                continue
        return True

    @hookimpl
    def crane_step_suspend(self, handle: CgroupStepHandle) -> bool | None:
        """Freeze the job cgroup (v1 freezer.state FROZEN, v2 cgroup.freeze 1); False if that failed."""
        try:
            self._backend_for(handle).freeze(handle.cgroup)
            return True
        except CgroupError as exc:
            log.error("cannot suspend job %s: %s", handle.spec.job_id, exc)
            return False

    @hookimpl
    def crane_step_resume(self, handle: CgroupStepHandle) -> bool | None:
        """Thaw the job cgroup (v1 freezer.state THAWED, v2 cgroup.freeze 0); False if that failed."""
        try:
            self._backend_for(handle).thaw(handle.cgroup)
            return True
        except CgroupError as exc:
            log.error("cannot resume job %s: %s", handle.spec.job_id, exc)
            return False

    @hookimpl
    def crane_step_usage(self, handle: CgroupStepHandle) -> StepUsage | None:
        """CPU time, peak memory and OOM-kill flag of the job cgroup (zeros once it is removed)."""
        try:
            return self._backend_for(handle).usage(handle.cgroup)
        except CgroupError as exc:
            log.warning("cannot read usage of job %s: %s", handle.spec.job_id, exc)
            return StepUsage()

    @hookimpl
    def crane_step_cleanup(self, handle: CgroupStepHandle) -> bool | None:
        """Kill what is left in the job cgroup, reap the main process and remove the cgroup; idempotent.

        Returns False (after logging) when the cgroup could not be emptied or removed.
        """
        if handle.cleaned:
            return True
        try:
            backend = self._backend_for(handle)
            if backend.exists(handle.cgroup) and backend.is_frozen(handle.cgroup):
                backend.thaw(handle.cgroup)
            emptied = backend.kill_all(handle.cgroup)
            self._reap_main(handle)
            backend.remove(handle.cgroup)
        except CgroupError as exc:
            log.error("cleanup of job %s cgroup %s failed: %s", handle.spec.job_id, handle.cgroup, exc)
            return False
        handle.cleaned = emptied
        return emptied

    @hookimpl
    def crane_step_reap(self, node: str, job_id: int) -> bool | None:
        """Kill what is left in the job's cgroup (its supervisor died) and remove it.

        ``None`` when the job has no cgroup here; True once it is empty and removed; False
        (after logging) when processes are still in it.
        """
        try:
            backend = self.backend()
            rel = job_cgroup_path(self.config.prefix, node, job_id)
            if not backend.exists(rel):
                return None
            if backend.is_frozen(rel):
                backend.thaw(rel)
            emptied = backend.kill_all(rel)
            if emptied:
                backend.remove(rel)
        except CgroupError as exc:
            log.error("reaping what job %s left in its cgroup failed: %s", job_id, exc)
            return False
        if emptied:
            log.info("job %s: killed what its dead supervisor left and removed its cgroup", job_id)
        return emptied

    @staticmethod
    def _reap_main(handle: CgroupStepHandle) -> None:
        """Reap the (already SIGKILLed) main process if nobody waited for it, so no zombie is left behind."""
        if handle.exit_code is not None:
            return
        try:
            handle.exit_code = wait_exit(handle.pid, REAP_TIMEOUT)
            if handle.exit_code is not None:
                forget(handle.pid, handle.exit_code)
        except ChildProcessError:
            pass
        if handle.exit_code is None:
            log.warning("main process %s of job %s did not end after SIGKILL", handle.pid, handle.spec.job_id)
