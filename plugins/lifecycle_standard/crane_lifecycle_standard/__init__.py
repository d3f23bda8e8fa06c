"""The ``standard`` lifecycle plugin: whether a job that lost its node is requeued (CraneSched's rule).

A running job whose node went down, or re-registered without it, goes back to the queue when

* it was not submitted with ``--no-requeue`` and no cancel was requested, and
* requeueing is on: the ``JobRequeue`` setting, or the job's own ``--requeue``, and
* it has been launched at most ``MaxRequeueCount`` times (``job.epoch``).

Otherwise it ends ``Failed`` (exit code ``0:70``). Settings (the controller passes
``CraneCtld.JobRequeue`` and ``CraneCtld.MaxRequeueCount`` as their defaults;
``Plugins.Settings.standard`` overrides them): ``JobRequeue`` (bool, default false),
``MaxRequeueCount`` (int >= 0, default 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crane_kernel import hookimpl

__all__ = ["StandardLifecycle"]


class StandardLifecycle:
    """Entry point ``crane.lifecycle: standard``."""

    def __init__(self) -> None:
        self.job_requeue = False
        self.max_requeue = 5

    @hookimpl
    def crane_plugin_configure(self, settings: Mapping[str, Any]) -> None:
        """Take ``JobRequeue`` and ``MaxRequeueCount``; a bad key or value raises ``ValueError`` naming it."""
        unknown = sorted(set(settings) - {"JobRequeue", "MaxRequeueCount"})
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)} (known: JobRequeue, MaxRequeueCount)")
        requeue = settings.get("JobRequeue", False)
        if not isinstance(requeue, bool):
            raise ValueError(f"JobRequeue must be true or false, not {requeue!r}")
        count = settings.get("MaxRequeueCount", 5)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"MaxRequeueCount must be a whole number >= 0, not {count!r}")
        self.job_requeue, self.max_requeue = requeue, count

    @hookimpl
    def crane_job_requeue(self, job: Any, reason: str) -> bool:
        """Apply the rule of the module docstring."""
        if job.no_requeue or job.cancel_requested:
            return False
        if not (self.job_requeue or job.requeue):
            return False
        return job.epoch <= self.max_requeue
