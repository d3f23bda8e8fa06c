"""A runtime plugin test double whose ``crane_step_wait`` raises: a real fault inside a step supervisor.

It claims only steps whose job name starts with :data:`MARKER` (other steps go to the next
runtime, e.g. ``cgroup``), starts them as a plain process group, and raises from
``crane_step_wait``, as a buggy runtime would. Steps named :data:`NO_FREEZER`... it runs
normally: it is a runtime without a freezer (no ``crane_step_suspend``), which cannot suspend
them. :func:`install` registers it under the entry point ``crane.runtime: faulty`` by writing a
``.dist-info`` next to a copy of this module, so daemons started with that directory on
``PYTHONPATH`` load it exactly like an installed plugin.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any

from crane_kernel import hookimpl
from crane_kernel.runtime import StepHandle, StepSpec, StepUsage

MARKER = "raise-in-wait"
NO_FREEZER = "no-freezer"
NAME = "faulty"


@dataclass
class FaultyHandle(StepHandle):
    """A step started by :class:`FaultyRuntime`."""

    proc: Any = field(default=None, repr=False)


class FaultyRuntime:
    """Starts marked steps as a process group and fails while waiting for them."""

    name = NAME

    def configure(self, config: dict[str, Any]) -> None:
        """Accept (and ignore) any settings."""

    @staticmethod
    def _mine(handle: StepHandle) -> FaultyHandle | None:
        return handle if isinstance(handle, FaultyHandle) and handle.runtime == NAME else None

    @hookimpl
    def crane_step_launch(self, step: StepSpec) -> FaultyHandle | None:
        """Start a marked step (as root's child, in its own session); leave the others to the next runtime."""
        if not step.name.startswith((MARKER, NO_FREEZER)):
            return None
        out = open(step.stdout or os.devnull, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen([*step.interpreter, step.script_path], cwd=step.cwd, env=step.env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            out.close()
        return FaultyHandle(runtime=NAME, pid=proc.pid, spec=step, proc=proc)

    @hookimpl
    def crane_step_wait(self, handle: StepHandle, timeout: float | None) -> int | None:
        """Raise for marked steps: the fault under test (a ``NO_FREEZER`` step is waited for normally)."""
        mine = self._mine(handle)
        if mine is None:
            return None
        if mine.spec.name.startswith(NO_FREEZER):
            try:
                return mine.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        raise RuntimeError("faulty runtime: lost track of the step")

    @hookimpl
    def crane_step_signal(self, handle: StepHandle, signum: int, all_processes: bool) -> bool | None:
        """Signal the step's process group."""
        mine = self._mine(handle)
        if mine is None:
            return None
        try:
            os.killpg(mine.pid, signum)
        except ProcessLookupError:
            pass
        return True

    @hookimpl
    def crane_step_usage(self, handle: StepHandle) -> StepUsage | None:
        """No usage accounting."""
        return StepUsage() if self._mine(handle) is not None else None

    @hookimpl
    def crane_step_cleanup(self, handle: StepHandle) -> bool | None:
        """Kill the process group and reap the main process."""
        mine = self._mine(handle)
        if mine is None:
            return None
        try:
            os.killpg(mine.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        mine.proc.wait()
        return True


def install(directory: str) -> str:
    """Make ``directory`` an import path holding this plugin and its entry point; return ``directory``."""
    os.makedirs(directory, exist_ok=True)
    shutil.copy(__file__, os.path.join(directory, "crane_test_faulty_runtime.py"))
    info = os.path.join(directory, "crane_test_faulty_runtime-0.1.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as fh:
        fh.write("Metadata-Version: 2.1\nName: crane-test-faulty-runtime\nVersion: 0.1\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as fh:
        fh.write(f"[crane.runtime]\n{NAME} = crane_test_faulty_runtime:FaultyRuntime\n")
    return directory
