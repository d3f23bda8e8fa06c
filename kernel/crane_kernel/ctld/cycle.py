"""The scheduling cycle: candidates, priorities, the scheduler plugin's plan, and committing it.

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin). ``schedule_cycle`` is called by
the controller daemon's scheduling loop; it takes the lock itself, and calls the priority and
scheduler plugins without it, always with the same view (:mod:`crane_kernel.ctld.view`): jobs
the kernel's eligibility rule refuses are not in it, and its delta lists what changed since the
previous call.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

from crane_common.states import JobState

from crane_kernel.ctld.jobs import Job
from crane_kernel.sched_types import REASON_RESOURCE, ClusterView, Plan

CYCLE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the cycle-time histogram ``QueryServerInfo`` reports."""


class CycleMixin:
    """One scheduling pass of the controller."""

    def schedule_cycle(self) -> dict[str, Any]:
        """One scheduling pass: liveness, the view brought up to date, priorities, the plugin's plan, commit."""
        t0 = time.perf_counter()
        now = self.clock()
        outbox: list = []
        with self.lock:
            self._check_liveness(now, outbox)
            self._retry_dispatch(now, outbox)
            self.store.write(updates=self._check_steps(now, outbox))  # clients, interactive time limits (stepexec)
            if self.dep_doomed:
                self.store.write(updates=self._end_doomed(now, outbox))  # dependencies that can never hold
            self.store.write(updates=self._check_deadlines(now, outbox))  # --deadline (ctld/jobcontrol.py)
            self._expire_finished(now)
            self.limits.refresh()  # QoS changes the account book announced: recount, gate their jobs again
            self.limits.admit(now)  # the best blocked jobs of groups below their QoS limit come back
            self.refill_arrays(now, outbox)  # arrays' windows: their next tasks become pending jobs (ctld/arrays.py)
            self.dependency_timers(now)  # +delay dependencies whose time came are looked at again
            self.reservation_tick(now)  # reservations that started or ended (ctld/reservations.py)
            self.license_tick()
            self.store.write(updates=self.preemption_tick(now, outbox))  # graces over, claims done (ctld/preempt.py)
            self.keeper.sync(self.pending, self.running_view, now)  # ineligible jobs get their reason here
            self.keeper.view.preemption = self.preemption_rules()  # None: no preemption rule configured
        # Outside the lock from here on: the API keeps answering while the plugins think. Only this
        # thread touches the view; other threads write the tracked tables, applied at the next sync.
        view = self.keeper.view
        cands = view.pending
        self.publish(outbox)
        outbox = []
        if cands:
            self._prioritize(cands, view, now)
            view.begin_call()
            try:
                plan = self.pm.hook.crane_schedule(view=view, now=now) or Plan()
                if view.preemption is not None:  # the preempt plugin adds its orders to the plan
                    self.pm.hook.crane_preempt(view=view, plan=plan, now=now)
            except BaseException:
                view.end_call(failed=True)
                raise
            view.end_call()
        else:
            plan = Plan()
        considered = len(cands)
        started = self._commit(plan, now, outbox)
        self.publish(outbox)
        self.cycles += 1
        self.last_cycle_s = time.perf_counter() - t0
        self.max_cycle_s = max(self.max_cycle_s, self.last_cycle_s)
        self.cycle_counts[bisect_left(CYCLE_BUCKETS, self.last_cycle_s)] += 1
        self.cycle_seconds_sum += self.last_cycle_s
        self.last_considered = plan.considered or considered
        return {"pending": considered, "started": started, "cycle_s": self.last_cycle_s}

    def _prioritize(self, cands: list[Job], view: ClusterView, now: float) -> None:
        """Set every candidate's priority (pinned ones keep theirs); tell the view when a known job's changed.

        Jobs that entered the view since the previous call are in ``delta.pending_added`` already
        (a plugin reads their priority when it inserts them): only other jobs' changes count.
        """
        prios = self.pm.hook.crane_job_priorities(jobs=cands, view=view, now=now)
        if prios is None:
            prios = [0.0] * len(cands)
        delta = view.delta
        fresh = {j.job_id for j in delta.pending_added} if delta is not None else set()
        changed = False
        for job, p in zip(cands, prios, strict=True):
            p = job.pinned_priority if job.pinned_priority is not None else float(p)
            if p != job.priority:
                job.priority = p
                if not changed and job.job_id not in fresh:
                    changed = True
        if changed and delta is not None:
            delta.priorities = True

    def _commit(self, plan: Plan, now: float, outbox: list) -> int:
        started: list[Job] = []
        interactive: list[Job] = []
        limits = self.limits
        with self.lock:
            updates = []
            for job_id, idxs in self.plan_starts(plan, now, outbox, updates):  # preempt orders in between
                job = self.pending.get(job_id)
                if job is None or job.held or len(set(idxs)) != job.node_num:
                    continue
                limit = limits.blocked_reason(job)  # live counters: earlier starts of this plan count
                if limit is not None:
                    job.reason = limit
                    self.keeper.pending_changed.add(job_id)  # out of the view at the next sync
                    continue
                nodes = [self.nodes[self.sched_nodes[i].name] for i in idxs]
                if not all(self._fits(job, n) for n in nodes):
                    job.reason = REASON_RESOURCE
                    continue
                if job.nodelist and not job.nodelist <= {n.name for n in nodes}:
                    continue
                if job.job_id in self.deps and self.deps[job.job_id].has("singleton") and \
                        not self._singleton_free(job):
                    continue  # a job of the same name started earlier in this plan
                refused = self.reservation_refusal(job, idxs, now) or self.take_licenses(job)  # takes them last
                if refused is not None:
                    job.reason = refused
                    self.keeper.pending_changed.add(job_id)
                    continue
                job.devices = self._assign_devices(job, nodes)
                job.state = JobState.Running if job.interactive else JobState.Configuring
                job.alloc_nodes = tuple(n.name for n in nodes)
                job.head_node = job.alloc_nodes[0]
                job.start_time = now
                job.dispatch_time = now
                job.epoch += 1
                job.reason = ""
                self._allocate(job, nodes)
                self._emit_job(outbox, "job.started", job, now)
                if job.job_id in self.dep_children or self.dep_singletons:
                    self.dependency_moved(job)  # "after" children may start now, singletons of its name may not
                if job.array_job_id:
                    self.array_task_started(job, now)
                if job.interactive:  # nothing to launch for the job: its step 0 starts (ctld/stepexec.py)
                    interactive.append(job)
                    continue
                started.append(job)
                updates.append((int(job.state), self._rt_json(job), job.job_id))
            if interactive:
                specs = self.store.specs([j.job_id for j in interactive])
                for job in interactive:
                    self._start_interactive(job, specs[job.job_id], now, outbox)
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
        return len(started) + len(interactive)
