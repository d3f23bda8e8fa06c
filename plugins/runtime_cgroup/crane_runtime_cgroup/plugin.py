"""``CgroupRuntime``: the ``crane.runtime`` plugin named ``cgroup`` (the step-supervisor hooks)."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from typing import Any

from crane_common.states import EC_CGROUP_ERR, EC_EXEC_ERR
from crane_kernel import hookimpl, iostream
from crane_kernel.errors import StepLaunchError
from crane_kernel.runtime import StepSpec, StepUsage

from crane_runtime_cgroup.backend import CgroupBackend
from crane_runtime_cgroup.config import RuntimeConfig, parse_config
from crane_runtime_cgroup.errors import CgroupError
from crane_runtime_cgroup.factory import make_backend
from crane_runtime_cgroup.handle import RUNTIME_NAME, CgroupStepHandle
from crane_runtime_cgroup.paths import job_cgroup_path, step_cgroup_path
from crane_runtime_cgroup.process import wait_exit
from crane_runtime_cgroup.spawn import forget, spawn_task
from crane_runtime_cgroup.tasks import reap_tasks, spawn_tasks
from crane_runtime_cgroup.uts import enter_uts_namespace

log = logging.getLogger("crane_runtime_cgroup")

REAP_TIMEOUT = 2.0      # seconds cleanup waits for a SIGKILLed main process to become reapable


class CgroupRuntime:
    """Runs each step's task in a per-job cgroup (v1 or v2) with its CPU, cpuset, memory, pids and device limits.

    Instantiated by stevedore without arguments; the kernel then hands it its
    settings through ``crane_plugin_configure`` (``Version``: auto|v1|v2,
    ``Root``: default ``/sys/fs/cgroup``, ``Prefix``: default ``crane``,
    ``PidsMax``: per-job process limit, default 4096, 0 = none, ``UtsNamespace``:
    the supervisor sets the host name to the node's in a new UTS namespace). A task
    step (``StepSpec.tasks``) runs in ``job_<id>/step_<s>`` below the job cgroup. Steps with a
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
        if self.config.uts_namespace:
            enter_uts_namespace(step.node)
        if step.tasks:
            return self._launch_tasks(step)
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

    def _launch_tasks(self, step: StepSpec) -> CgroupStepHandle:
        """A task step: the job cgroup (job limits, made if missing), its step cgroup below, one process per task."""
        try:
            backend = self.backend()
            job_rel = job_cgroup_path(self.config.prefix, step.node, step.job_id)
            rel = step_cgroup_path(self.config.prefix, step.node, step.job_id, step.step_id)
        except CgroupError as exc:
            raise StepLaunchError(f"cgroup runtime: {exc}", EC_CGROUP_ERR) from exc
        limits = dataclasses.replace(step, cpus=step.step_cpus or step.cpus,
                                     mem_bytes=step.step_mem_bytes or step.mem_bytes)
        for attempt in range(5):  # another step's cleanup may remove the (empty) job cgroup meanwhile
            try:
                if not backend.exists(job_rel):  # the batch step's or another task step's: its limits stand
                    backend.create(job_rel, step, self.config.pids_max)
                backend.create(rel, limits, self.config.pids_max)  # every hierarchy of the job's, pids too
                break
            except CgroupError as exc:
                if attempt == 4 or backend.exists(job_rel):
                    self._discard_step(backend, job_rel, rel)
                    raise StepLaunchError(f"cgroup runtime: {exc}", EC_CGROUP_ERR) from exc
                time.sleep(0.01)
        try:
            pids = spawn_tasks(step, backend.attach_files(rel), backend.home_files(rel))
        except StepLaunchError:
            self._discard_step(backend, job_rel, rel)
            raise
        first = pids[step.tasks[0].task_id]
        log.info("job %s step %s: %d task(s) started in %s cgroup %s", step.job_id, step.step_id, len(pids),
                 backend.version, rel)
        return CgroupStepHandle(runtime=RUNTIME_NAME, pid=first, spec=step, task_pids=pids, version=backend.version,
                                root=str(backend.root), cgroup=rel, job_cgroup=job_rel)

    @classmethod
    def _discard_step(cls, backend: CgroupBackend, job_rel: str, rel: str) -> None:
        """Remove a task step's cgroup, then the job's if nothing else is in it (never raises)."""
        cls._discard(backend, rel)
        cls._remove_if_idle(backend, job_rel)

    @staticmethod
    def _remove_if_idle(backend: CgroupBackend, job_rel: str) -> None:
        """Remove the job cgroup when it has no step cgroup and no process left; busy is fine (left)."""
        try:
            if backend.job_names(job_rel) or backend.pids(job_rel):
                return
            backend.remove(job_rel, timeout=0.0)
        except CgroupError:
            pass  # a step or a process arrived meanwhile: its cleanup removes it

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
        """Wait up to ``timeout`` for the main process; raw exit code once it ended (repeatable).

        A task step: every task's code goes to ``handle.task_exit`` as it ends; the worst once all did.
        """
        if handle.task_pids:
            if handle.exit_code is None and reap_tasks(handle.task_pids, handle.task_exit, timeout):
                handle.exit_code = iostream.worst_exit(list(handle.task_exit.values()))
            return handle.exit_code
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
        if handle.task_pids:
            self._signal_tasks(backend, handle, signum)
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

    @staticmethod
    def _signal_tasks(backend: CgroupBackend, handle: CgroupStepHandle, signum: int) -> None:
        """Signal the process group of every task (a reaped task's group: its survivors in the cgroup)."""
        gone = []
        for task_id, pid in handle.task_pids.items():
            if task_id in handle.task_exit:
                gone.append(pid)
                continue
            try:
                os.killpg(pid, signum)
            except ProcessLookupError:
                pass
        if gone:
            for pid in backend.pids(handle.cgroup):
                try:
                    if os.getpgid(pid) in gone:
                        os.kill(pid, signum)
                except ProcessLookupError:
                    continue

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
            if handle.task_pids:
                reap_tasks(handle.task_pids, handle.task_exit, REAP_TIMEOUT)
            else:
                self._reap_main(handle)
            backend.remove(handle.cgroup)
            if handle.job_cgroup:
                self._remove_if_idle(backend, handle.job_cgroup)
        except CgroupError as exc:
            log.error("cleanup of job %s cgroup %s failed: %s", handle.spec.job_id, handle.cgroup, exc)
            return False
        handle.cleaned = emptied
        return emptied

    @hookimpl
    def crane_step_reap(self, node: str, job_id: int, step_id: int) -> bool | None:
        """Kill what is left in the step's cgroup (its supervisor died) and remove it.

        Step 0: the whole job cgroup with its step cgroups; another step: ``job_<id>/step_<s>``
        (and then the job cgroup if it is left empty). ``None`` when there is no such cgroup here;
        True once it is empty and removed; False (after logging) when processes are still in it.
        """
        try:
            backend = self.backend()
            rel = job_cgroup_path(self.config.prefix, node, job_id)
            job_rel = rel
            if step_id:
                rel = step_cgroup_path(self.config.prefix, node, job_id, step_id)
            if not backend.exists(rel):
                return None
            if backend.is_frozen(rel):
                backend.thaw(rel)
            emptied = backend.kill_all(rel)
            if emptied:
                backend.remove(rel)
                if step_id:
                    self._remove_if_idle(backend, job_rel)
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
