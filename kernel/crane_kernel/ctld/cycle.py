"""The scheduling cycle: candidates, priorities, the scheduler plugin's plan, and committing it.

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin). ``schedule_cycle`` is called by
the controller daemon's scheduling loop; it takes the lock itself, and calls the priority and
scheduler plugins without it.
"""

from __future__ import annotations

import time
from typing import Any

from crane_common.states import JobState

from crane_kernel import messages as m
from crane_kernel.ctld.jobs import Job
from crane_kernel.sched_types import (
    REASON_BEGIN_TIME,
    REASON_HELD,
    REASON_RESOURCE,
    ClusterView,
    Plan,
)


class CycleMixin:
    """One scheduling pass of the controller."""

    def schedule_cycle(self) -> dict[str, Any]:
        """One scheduling pass: liveness, candidates, priorities, the plugin's plan, commit, dispatch."""
        t0 = time.perf_counter()
        now = self.clock()
        outbox: list = []
        with self.lock:
            self._check_liveness(now, outbox)
            self._retry_dispatch(now, outbox)
            self._expire_finished(now)
            pending = list(self.pending.values())
            running = list(self.running_view.values())
        # Outside the lock from here on: the API keeps answering while the plugins think.
        # (Setting a pending job's reason needs no lock: a stale reason is overwritten next cycle.)
        cands = []
        for job in pending:
            if job.held:
                job.reason = REASON_HELD
            elif job.begin_time > now:
                job.reason = REASON_BEGIN_TIME
            else:
                cands.append(job)
        view = ClusterView(self.sched_nodes, self.partitions, cands, running)
        self.publish(outbox)
        outbox = []
        if cands:
            self._prioritize(cands, view, now)
            plan = self.pm.hook.crane_schedule(view=view, now=now) or Plan()
        else:
            plan = Plan()
        started = self._commit(plan, now, outbox)
        self.publish(outbox)
        self.cycles += 1
        self.last_cycle_s = time.perf_counter() - t0
        self.max_cycle_s = max(self.max_cycle_s, self.last_cycle_s)
        self.last_considered = plan.considered or len(cands)
        return {"pending": len(cands), "started": started, "cycle_s": self.last_cycle_s}

    def _prioritize(self, cands: list[Job], view: ClusterView, now: float) -> None:
        prios = self.pm.hook.crane_job_priorities(jobs=cands, view=view, now=now)
        if prios is None:
            for job in cands:
                job.priority = job.pinned_priority if job.pinned_priority is not None else 0.0
            return
        for job, p in zip(cands, prios, strict=True):
            job.priority = job.pinned_priority if job.pinned_priority is not None else float(p)

    def _commit(self, plan: Plan, now: float, outbox: list) -> int:
        started: list[Job] = []
        with self.lock:
            updates = []
            for job_id, idxs in plan.starts:
                job = self.pending.get(job_id)
                if job is None or job.held or len(set(idxs)) != job.node_num:
                    continue
                nodes = [self.nodes[self.sched_nodes[i].name] for i in idxs]
                if not all(self._fits(job, n) for n in nodes):
                    job.reason = REASON_RESOURCE
                    continue
                if job.nodelist and not job.nodelist <= {n.name for n in nodes}:
                    continue
                job.devices = self._assign_devices(job, nodes)
                job.state = JobState.Configuring
                job.alloc_nodes = tuple(n.name for n in nodes)
                job.head_node = job.alloc_nodes[0]
                job.start_time = now
                job.dispatch_time = now
                job.epoch += 1
                job.reason = ""
                self._allocate(job, nodes)
                started.append(job)
                updates.append((int(job.state), self._rt_json(job), job.job_id))
            self.store.write(updates=updates)
        jobs = self.jobs
        for job_id, reason in plan.reasons.items():
            job = jobs.get(job_id)
            if job is not None and job.state == JobState.Pending:
                job.reason = reason
        for job_id, at in plan.reserved.items():
            job = jobs.get(job_id)
            if job is not None and job.state == JobState.Pending:
                job.planned_start = at
        if started:
            specs = self.store.specs([j.job_id for j in started])
            for job in started:
                outbox.append((self.node_stream(job.head_node), self._launch_message(job, specs[job.job_id])))
                outbox.append((self.events_stream(), m.JobEvent(kind="job.started", job_id=job.job_id,
                                                                data={"nodes": list(job.alloc_nodes)})))
        return len(started)
