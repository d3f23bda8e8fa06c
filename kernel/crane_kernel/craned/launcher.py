"""The launcher: a small, warm process that forks step supervisors for ``craned``.

``craned`` itself is a fairly large Python process (pydantic, redis-py, the
bus); forking it per job copies its page tables and, as the child touches
objects, its pages — about 3 ms of CPU per fork and exit at 42 MB. The
launcher is started once by ``craned`` as a fresh interpreter that imports only
what a supervisor needs (the runtime plugins, loaded by name through the
kernel's plugin loader, the supervisor and the message models it validates and
builds, exercised once so that pydantic has built everything lazy), freezes its
heap for the garbage collector, and then forks one supervisor per launch request. Supervisors call
``setsid()`` and outlive both the launcher and ``craned``.

Protocol, on stdin: one JSON object per line. The first is the set-up
(``node``, ``redis_url``, ``stream``, ``cluster``, ``kill_wait``, ``plugins``: the runtime
part of the ``Plugins:`` section, ``{"Runtime": [names], "Settings": {name:
dict}}``, loaded with :func:`crane_kernel.plugins.load_slots`); each further
line is a launch (``job_dir``, the job's root-only state directory, and
``script_path``, where the supervisor writes the script, plus the ``launch_step`` message fields
``job_id``, ``step_id``, ``epoch``, ``spec``, ``spec_error``). A launch with ``task_step`` true is a
:class:`~crane_kernel.messages.StartStep`'s (its ``job_dir`` is the step directory ``jobs/<job>.<step>/``)
and gets the task-step supervisor (:mod:`crane_kernel.craned.stepsup`) instead. EOF (``craned`` gone) ends the
launcher, which then shuts its plugins down (``crane_plugin_shutdown``); the
supervisors, forked children that end with ``os._exit``, never do.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crane_kernel.plugins import Plugins

log = logging.getLogger("craned.launcher")


def serve(stream_in: object) -> None:
    """Read the set-up line, load the runtime plugins, then fork a supervisor per launch line."""
    from crane_kernel import plugins

    setup = json.loads(stream_in.readline())  # type: ignore[attr-defined]
    pm = plugins.load_slots(setup["plugins"], slots=("runtime",))
    try:
        _fork_supervisors(stream_in, setup, pm)
    finally:
        pm.shutdown()


def _fork_supervisors(stream_in: object, setup: dict, pm: "Plugins") -> None:
    """Fork one supervisor per launch line until EOF (the children never return here)."""
    from crane_kernel.craned.stepsup import TaskStepSupervisor
    from crane_kernel.craned.supervisor import Supervisor

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    import encodings.idna  # noqa: F401 - socket.create_connection imports it (and unicodedata) on first use

    _warm_models()
    gc.collect()
    gc.freeze()
    for line in stream_in:  # type: ignore[attr-defined]
        try:
            launch = json.loads(line)
        except ValueError:
            log.error("launcher: ignoring a malformed request")
            continue
        pid = os.fork()
        if pid == 0:
            try:
                gc.disable()  # a short-lived process: collecting would only copy pages
                os.setsid()
                if launch.get("task_step"):
                    TaskStepSupervisor(setup["node"], launch["job_dir"], launch, pm, setup["redis_url"],
                                       setup["stream"], float(setup["kill_wait"]), setup.get("cluster", "")).run()
                Supervisor(setup["node"], launch["job_dir"], launch, pm, setup["redis_url"], setup["stream"],
                           float(setup["kill_wait"])).run()
            except BaseException:
                log.exception("supervisor of job %s crashed", launch.get("job_id"))
            finally:
                os._exit(1)


def _warm_models() -> None:
    """Validate and encode one launch and one status, so that pydantic's lazily built parts exist before the fork.

    Supervisors validate their launch into :class:`~crane_kernel.messages.LaunchStep` and build
    :class:`~crane_kernel.messages.StepStatus` messages; done once here, a fork pays nothing for it.
    """
    from crane_kernel import messages as m

    launch = m.LaunchStep.model_validate({"job_id": 1, "epoch": 1, "spec": {"uid": 0, "gid": 0, "script": "true"}})
    m.LaunchStep.model_validate({"job_id": 1, "spec": {"uid": -1}})  # the error path too
    m.encode(m.StepStatus(node="n", job_id=launch.job_id, state="running"))
    launch.spec.model_dump()  # type: ignore[union-attr]
    m.StartStep.model_validate({"job_id": 1, "step_id": 1, "spec": {"uid": 0, "gid": 0, "argv": ["true"],
                                                                   "task_ids": [0]}})
    m.StartStep.model_validate({"job_id": 1, "step_id": 1, "spec": {"uid": -1}})


def main() -> int:
    """Entry point (``python -m crane_kernel.craned.launcher``), logging to inherited stderr."""
    logging.basicConfig(level=os.environ.get("CRANE_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(sys.stdin)
    except Exception as exc:  # a broken set-up: craned sees the launcher exit and reports it
        log.error("launcher failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
