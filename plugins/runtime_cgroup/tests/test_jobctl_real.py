"""craned's job control (crane_kernel/craned/jobctl.py) on real steps of this runtime: freeze, thaw, signal.

The requests are real root-only files in a real job directory, carried out by the supervisor's
:class:`~crane_kernel.craned.jobctl.StepControl` on a step launched in the real v1 freezer; the
answers it would send to the controller are collected.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from crane_kernel import messages as m
from crane_kernel.craned import jobctl
from crane_kernel.craned.jobfiles import write_json
from rtcg_support import StepFactory

from crane_runtime_cgroup import CgroupRuntime


class _Sup:
    """What StepControl uses of a step supervisor: its identity, job directory, runtime hooks and reports."""

    def __init__(self, runtime: CgroupRuntime, job_dir: str, job_id: int) -> None:
        self.node, self.job_id, self.step_id, self.epoch, self.job_dir = "node1", job_id, 0, 1, job_dir
        self.pm = SimpleNamespace(steps=SimpleNamespace(crane_step_suspend=runtime.crane_step_suspend,
                                                        crane_step_resume=runtime.crane_step_resume,
                                                        crane_step_signal=runtime.crane_step_signal))
        self.reports: list[m.JobControlResult] = []

    def _report(self, msg: Any) -> None:
        self.reports.append(msg)


def _ask(job_dir: str, n: int, **request: Any) -> None:
    write_json(os.path.join(job_dir, f"{jobctl.CONTROL_PREFIX}{n:020d}.json"), request)


def _wait_for(check: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


def test_requests_freeze_thaw_and_signal_a_real_step(runtime, make_step: StepFactory, v1_root: str,
                                                     workdir: Path, tmp_path: Path) -> None:
    ticks, got = workdir / "ticks", workdir / "got"
    script = (f"trap 'echo usr1 >> {got}' USR1\n"
              f"while true; do echo x >> {ticks}; sleep 0.02; done\n")
    step = make_step(script)
    handle = runtime.crane_step_launch(step=step)
    try:
        job_dir = str(tmp_path / "job")
        os.mkdir(job_dir, 0o700)
        sup, control = _Sup(runtime, job_dir, step.job_id), jobctl.StepControl()
        _wait_for(lambda: ticks.exists() and ticks.stat().st_size > 4)
        _ask(job_dir, 1, action="suspend")
        control.pending = True
        assert control.apply(sup, handle) == 0.0
        state = Path(v1_root) / "freezer" / handle.cgroup / "freezer.state"
        assert state.read_text().strip() == "FROZEN" and control.suspended_at
        size = ticks.stat().st_size
        time.sleep(0.4)
        assert ticks.stat().st_size == size                           # frozen: no progress
        _ask(job_dir, 2, action="resume")
        _ask(job_dir, 3, action="signal", signum=10, batch_only=True)
        control.pending = True
        frozen_for = control.apply(sup, handle)
        assert frozen_for >= 0.4 and not control.suspended_at        # the supervisor moves its limit by this
        assert state.read_text().strip() == "THAWED"
        _wait_for(lambda: got.exists() and "usr1" in got.read_text())  # the batch shell's trap ran
        _wait_for(lambda: ticks.stat().st_size > size + 4)
        assert [(r.action, r.ok) for r in sup.reports] == [("suspend", True), ("resume", True), ("signal", True)]
        assert not [n for n in os.listdir(job_dir) if n.startswith(jobctl.CONTROL_PREFIX)]  # all taken
    finally:
        runtime.crane_step_cleanup(handle=handle)


def test_a_request_file_root_did_not_write_is_ignored(tmp_path: Path) -> None:
    job_dir = str(tmp_path / "job")
    os.mkdir(job_dir, 0o700)
    _ask(job_dir, 1, action="suspend")
    planted = os.path.join(job_dir, f"{jobctl.CONTROL_PREFIX}{2:020d}.json")
    with open(planted, "w") as fh:
        fh.write('{"action": "signal", "signum": 9}')
    os.chown(planted, 65534, 65534)                                   # nobody's
    os.symlink("/etc/passwd", os.path.join(job_dir, f"{jobctl.CONTROL_PREFIX}{3:020d}.json"))
    _ask(job_dir, 4, action="reboot")                                 # not an action
    assert jobctl.take_requests(job_dir) == [{"action": "suspend"}]
    assert os.listdir(job_dir) == []


def test_craned_forwards_nothing_without_a_live_supervisor(tmp_path: Path) -> None:
    job_dir = str(tmp_path / "7")
    os.mkdir(job_dir, 0o700)
    assert jobctl.forward(job_dir, {}, m.SuspendJob(job_id=7, epoch=1)) == 0
    assert jobctl.forward(job_dir, {}, m.SignalJob(job_id=7, signum=10, epoch=1)) == 0
    assert os.listdir(job_dir) == []                                  # no request is left for nobody
