"""Job control on the node: suspend, resume and signals, from craned to the step supervisors.

The controller sends :class:`~crane_kernel.messages.SuspendJob`, :class:`~crane_kernel.messages.ResumeJob`
and :class:`~crane_kernel.messages.SignalJob` to every node of a job. ``craned`` (:func:`forward`)
leaves a request file ``control.<n>.json`` in the job directory of each step supervisor concerned
(root's, 0600, written through a fresh ``O_EXCL|O_NOFOLLOW`` file like every state file,
:func:`~crane_kernel.craned.jobfiles.write_json`) and wakes it with SIGUSR2 (through a verified pidfd,
:func:`~crane_kernel.craned.jobfiles.signal_supervisor`). The supervisor (:class:`StepControl`)
takes the requests in order, asks its runtime (``crane_step_suspend``/``crane_step_resume``/
``crane_step_signal``) and answers :class:`~crane_kernel.messages.JobControlResult` on the
controller stream.

Who gets what: suspend and resume go to every supervisor of the job here (each stops or restarts
its own time-limit clock); a signal goes to the batch step's supervisor, which signals every
process of the job's cgroup (task steps included) — or only the batch shell with ``batch_only`` —
and to the task steps' supervisors only when the node runs no batch step of the job (crun's jobs,
the other nodes of an allocation), so no process gets it twice.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from crane_kernel import messages as m
from crane_kernel.craned.jobfiles import read_state, signal_supervisor, supervisor_alive, write_json

log = logging.getLogger("craned")

CONTROL_PREFIX = "control."
MAX_PENDING = 64  # requests waiting in one directory (more are refused: the supervisor is stuck)


def _request(job_dir: str, request: dict[str, Any], epoch: int) -> bool:
    """Leave one request in ``job_dir`` and wake its supervisor; False if there is no live one (of ``epoch``)."""
    if not supervisor_alive(job_dir):
        return False
    waiting = [n for n in os.listdir(job_dir) if n.startswith(CONTROL_PREFIX) and n.endswith(".json")]
    if len(waiting) >= MAX_PENDING:
        log.warning("%s: %d control requests wait already; %s refused", job_dir, len(waiting), request["action"])
        return False
    write_json(os.path.join(job_dir, f"{CONTROL_PREFIX}{time.time_ns():020d}.json"), request)
    return signal_supervisor(job_dir, signal.SIGUSR2, epoch)


def forward(job_dir: str, task_dirs: dict[int, str], msg: Any) -> int:
    """craned's half: hand a SuspendJob/ResumeJob/SignalJob to the supervisors concerned; how many were told."""
    if isinstance(msg, m.SignalJob):
        request = {"action": "signal", "signum": msg.signum, "batch_only": msg.batch_only}
        if _request(job_dir, request, msg.epoch):
            return 1
        if msg.batch_only:
            return 0
        targets = list(task_dirs.values())
    else:
        request = {"action": "suspend" if isinstance(msg, m.SuspendJob) else "resume"}
        targets = [job_dir, *task_dirs.values()]
    return sum(1 for d in targets if _request(d, request, msg.epoch))


def take_requests(job_dir: str) -> list[dict[str, Any]]:
    """The supervisor's half: the waiting requests, oldest first (each removed once read; untrusted ones dropped)."""
    try:
        names = sorted(n for n in os.listdir(job_dir) if n.startswith(CONTROL_PREFIX) and n.endswith(".json"))
    except OSError:
        return []
    out = []
    for name in names:
        path = os.path.join(job_dir, name)
        data = read_state(path)
        try:
            os.unlink(path)
        except OSError:
            pass
        if data is not None and data.get("action") in ("suspend", "resume", "signal"):
            out.append(data)
    return out


class StepControl:
    """A supervisor's suspended state and the control requests it carries out on its step.

    ``suspended_at`` is when the step was frozen (0: running); :meth:`thawed_for` tells the
    supervisor how long its step was frozen, so its time limit moves by as much.
    """

    def __init__(self) -> None:
        self.pending = False      # SIGUSR2 came: requests wait
        self.suspended_at = 0.0

    def on_signal(self, _signum: int, _frame: Any) -> None:
        """SIGUSR2 handler: requests wait in the job directory."""
        self.pending = True

    def apply(self, sup: Any, handle: Any) -> float:
        """Carry out the waiting requests; return the seconds the step was frozen if it was just resumed."""
        if not self.pending:
            return 0.0
        self.pending = False
        frozen_for = 0.0
        for req in take_requests(sup.job_dir):
            action = req["action"]
            try:
                ok, why, thawed = self._one(sup.pm.steps, handle, req)
                frozen_for += thawed
            except Exception as exc:  # a runtime must not take the supervisor down
                log.exception("job %d step %d: %s failed", sup.job_id, sup.step_id, action)
                ok, why = False, f"{type(exc).__name__}: {exc}"
            sup._report(m.JobControlResult(node=sup.node, job_id=sup.job_id, step_id=sup.step_id, epoch=sup.epoch,
                                           action=action, ok=ok, reason=why))
        return frozen_for

    def _one(self, hook: Any, handle: Any, req: dict[str, Any]) -> tuple[bool, str, float]:
        action = req["action"]
        if action == "suspend":
            if self.suspended_at:
                return True, "", 0.0
            done = hook.crane_step_suspend(handle=handle)
            if not done:
                return False, ("the runtime cannot suspend this step" if done is None else
                               "the runtime could not freeze the step"), 0.0
            self.suspended_at = time.time()
            return True, "", 0.0
        if action == "resume":
            if not self.suspended_at:
                return True, "", 0.0
            done = hook.crane_step_resume(handle=handle)
            if not done:
                return False, "the runtime could not thaw the step", 0.0
            frozen = max(0.0, time.time() - self.suspended_at)
            self.suspended_at = 0.0
            return True, "", frozen
        signum = req.get("signum")
        if not isinstance(signum, int) or not 1 <= signum <= 64:
            return False, f"bad signal {signum!r}", 0.0
        done = hook.crane_step_signal(handle=handle, signum=signum, all_processes=not req.get("batch_only"))
        return bool(done), "" if done else "the runtime could not signal the step", 0.0
