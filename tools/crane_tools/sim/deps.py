"""Dependencies in a replay: ``crane sim --depend-every N`` (docs/simulation.md "Dependencies").

SWF traces carry no dependencies (field 17, "preceding job", is 0 in every trace here), so the
model makes them. Every N-th job of the trace depends ``afterany`` on the same user's previous
job. Until that job has ended, the dependent job stays out of the scheduler's view, as the
controller keeps a job with reason ``Dependency`` out of it. A parent that ended before its
child arrived holds nothing up.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DependencyModel"]


class DependencyModel:
    """Which trace jobs wait for which (indices into the job list), and the ones waiting now."""

    def __init__(self, jobs: list, every: int) -> None:
        if every < 1:
            raise ValueError("--depend-every must be at least 1")
        self.every = every
        self.parent: dict[int, int] = {}  # child index -> parent index
        last: dict[int, int] = {}  # user -> index of their latest job so far
        for i, job in enumerate(jobs):
            prev = last.get(job.user)
            if prev is not None and (i + 1) % every == 0:
                self.parent[i] = prev
            last[job.user] = i
        self.ended: set[int] = set()
        self.waiting: dict[int, list[Any]] = {}  # parent index -> the children's SchedJobs parked behind it
        self.held = 0  # children that had to wait (their parent had not ended when they arrived)

    def park(self, index: int, job: Any) -> bool:
        """A job arrives: True when it must wait for its parent (it is parked, not queued)."""
        parent = self.parent.get(index)
        if parent is None or parent in self.ended:
            return False
        self.waiting.setdefault(parent, []).append(job)
        self.held += 1
        return True

    def finished(self, index: int) -> list[Any]:
        """Job ``index`` ended: the children it held, now free to queue."""
        self.ended.add(index)
        return self.waiting.pop(index, [])

    def report(self) -> dict[str, int]:
        """What the model did: dependent jobs, and how many had to wait."""
        return {"every": self.every, "dependent_jobs": len(self.parent), "held": self.held}
