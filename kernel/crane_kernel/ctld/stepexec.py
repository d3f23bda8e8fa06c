"""The steps' state machine: interactive jobs, steps in allocations, their starts, ends and cancels.

Part of :class:`~crane_kernel.ctld.core.Controller` (a mixin); every method that changes state
is called with the controller's lock held and returns journal rows (``(state, rt_json, id)`` of
the job the step belongs to: a job's steps are journaled in its ``rt``), with messages for the
nodes and events in ``outbox``. Where the tasks go is :mod:`crane_kernel.ctld.steps`; the
client side (crun/calloc streams) is :mod:`crane_kernel.ctld.iorelay`. docs/interactive.md
describes the behaviour.

* An **interactive job** (``spec["interactive"]`` ``crun``/``calloc``) goes from Pending
  straight to Running when the scheduler starts it: nothing is launched for the job itself.
  crun's job gets step 0 running its command on every node of the allocation; calloc's gets a
  step 0 without node processes (the shell runs on the client's host). It ends when step 0 ends
  (crun), when the client says the shell ended (calloc), or when it is cancelled, runs out of
  time or loses its client; it ends once no step of it still runs on a node.
* A **step in an allocation** (crun with ``CRANE_JOB_ID``) is placed inside the job's nodes and
  CPUs; it waits (Pending, reason ``Resources``) while other steps hold the CPUs it needs.
* A node's part of a step is started with ``StartStep``, reported by ``StepStatus`` (its
  ``step_id``), ended with ``TerminateStep(step_id=...)`` and forgotten with ``FreeJob(step_id=...)``.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from crane_common.hostlist import compress
from crane_common.states import (
    EC_CRANED_DOWN,
    EC_EXCEED_TIME_LIMIT,
    EC_TERMINATED,
    FINAL_STATES,
    JobState,
    state_from_exit,
)

from crane_kernel import messages as m
from crane_kernel.auth_types import Identity
from crane_kernel.ctld.speccheck import _check_env
from crane_kernel.ctld.steps import (
    ERR_NON_EXISTENT,
    ERR_PERMISSION_DENIED,
    ERR_STEP_RES_BEYOND,
    MAX_ENDED_STEPS,
    Step,
    StepRefused,
    cpus_in_use,
    place_step,
    spread_tasks,
    stdin_target,
)
from crane_kernel.errors import JobRejected
from crane_kernel.iostream import in_key, out_key, worst_exit

log = logging.getLogger("cranectld")

REASON_CLIENT_GONE = "the client (crun/calloc) is gone"
REASON_CLIENT_SILENT = "the client (crun/calloc) stopped responding"
REASON_JOB_ENDED = "the job ended"
REASON_STEP_RESOURCES = "Resources"

_END_STATE = {"cancel": JobState.Cancelled, "client": JobState.Cancelled, "job": JobState.Cancelled,
              "timeout": JobState.ExceedTimeLimit}


class StepsMixin:
    """Steps of jobs and the interactive jobs they belong to."""

    # --- bookkeeping ------------------------------------------------------------------------
    def _init_steps(self) -> None:
        """Called from the controller's ``__init__``."""
        self.steps: dict[int, dict[int, Step]] = {}      # job id -> step id -> step
        self.step_counter: dict[int, int] = {}           # job id -> next step id
        self.client_seen: dict[tuple[int, int], float] = {}  # (job, step) bound to a client -> last ping
        self.job_end_request: dict[int, tuple[JobState, int, str]] = {}  # interactive job -> how it ends
        self.io_garbage: list[tuple[float, list[str]]] = []  # (when ended, I/O stream keys) for the janitor
        self._start_waiters: dict[int, threading.Event] = {}  # interactive job -> set when it starts or ends

    def start_waiter(self, job_id: int) -> threading.Event:
        """An event set when interactive job ``job_id`` starts (its step 0 exists) or ends."""
        with self.lock:
            event = self._start_waiters.setdefault(job_id, threading.Event())
            job = self.jobs.get(job_id)
            if job is None or job.state != JobState.Pending:
                event.set()
            return event

    def _wake_start_waiter(self, job_id: int) -> None:
        event = self._start_waiters.pop(job_id, None)
        if event is not None:
            event.set()

    def steps_rt(self, job_id: int) -> dict[str, Any]:
        """The job's steps for its journal record (``rt["steps"]``), or {} when it has none."""
        steps = self.steps.get(job_id)
        if not steps:
            return {}
        return {"steps": [s.to_rt() for s in steps.values()], "nstep": self.step_counter.get(job_id, 1)}

    def restore_steps(self, job: Any, rt: dict[str, Any], now: float) -> None:
        """At recovery: the job's steps from its journal record; clients get InteractiveTimeout to come back."""
        records = rt.get("steps") or []
        if not records:
            return
        steps = self.steps[job.job_id] = {}
        for d in records:
            try:
                step = Step.from_rt(job.job_id, d)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("job %d: a step record in the journal is unreadable (%s); dropped", job.job_id, exc)
                continue
            steps[step.step_id] = step
            if step.live:
                self.client_seen[(job.job_id, step.step_id)] = now
        self.step_counter[job.job_id] = int(rt.get("nstep") or (max(steps, default=0) + 1))
        if job.interactive and (job.job_id, 0) not in self.client_seen and job.state not in FINAL_STATES:
            self.client_seen[(job.job_id, 0)] = now

    def _job_row(self, job: Any) -> tuple[int, str, int]:
        return (int(job.state), self._rt_json(job), job.job_id)

    def job_steps(self, job_id: int) -> list[Step]:
        """The job's steps in id order (a copy of the list; the records are live)."""
        return [s for _, s in sorted(self.steps.get(job_id, {}).items())]

    def touch_client(self, job_id: int, step_id: int) -> None:
        """A client bound to ``job.step`` is alive (any message on its stream)."""
        key = (job_id, step_id)
        if key in self.client_seen:
            self.client_seen[key] = self.clock()

    # --- interactive jobs --------------------------------------------------------------------
    def submit_interactive(self, spec: dict[str, Any], start: dict[str, Any], identity: Identity) -> int:
        """Submit crun's or calloc's job (``start["allocate_only"]``: calloc); return its id.

        The step-0 request (command, pty, stdin target, window) travels in the job's spec, so a
        crun job keeps it across a controller restart.
        """
        spec = dict(spec)
        argv = [str(a) for a in start.get("argv") or []]
        if start.get("allocate_only"):
            spec["interactive"] = "calloc"
        else:
            self._check_command(argv)
            spec["interactive"] = "crun"
            stdin_target(str(start.get("stdin_target") or "0"), 1 << 20)  # its form; the task id is checked at start
            spec["crun"] = {"argv": argv, "pty": bool(start.get("pty")),
                            "stdin": str(start.get("stdin_target") or "0"), "rows": int(start.get("rows") or 24),
                            "cols": int(start.get("cols") or 80)}
            spec.setdefault("cmd_line", " ".join(argv)[:4096])
            if not spec.get("name"):
                spec["name"] = os.path.basename(argv[0])[:255] or "Interactive"
        if not spec.get("name"):
            spec["name"] = "Interactive"
        ids = self.submit([spec], identity)
        with self.lock:
            self.client_seen[(ids[0], 0)] = self.clock()
        self.urgent.set()  # its user waits at a terminal: the next cycle need not wait for others to gather
        return ids[0]

    def _start_interactive(self, job: Any, spec: dict[str, Any], now: float, outbox: list) -> None:
        """The scheduler started an interactive job: it runs at once, with its step 0."""
        job.state = JobState.Running
        job.start_time = now
        rv = self.running_view.get(job.job_id)
        if rv is not None and job.time_limit:
            self.running_view[job.job_id] = rv.with_end(now + job.time_limit)
        steps = self.steps.setdefault(job.job_id, {})
        self.step_counter.setdefault(job.job_id, 1)
        nodes = list(job.alloc_nodes)
        if job.interactive == "calloc":
            step = Step(job_id=job.job_id, step_id=0, name="interactive", uid=job.uid, user=job.user,
                        cwd=job.cwd, submit_time=job.submit_time, state=JobState.Running, start_time=now,
                        cpus=dict.fromkeys(nodes, job.cpus_per_node), mem_per_node=job.mem_per_node,
                        ntasks=int(spec.get("ntasks") or job.node_num * job.ntasks_per_node))
            steps[0] = step
            self._emit_task_step(outbox, "step.started", job, step, now)
            step.changed()
            self._wake_start_waiter(job.job_id)
            return
        crun = spec.get("crun") or {}
        ntasks = int(spec.get("ntasks") or job.node_num * job.ntasks_per_node)
        step = Step(job_id=job.job_id, step_id=0, name=job.name, uid=job.uid, user=job.user,
                    argv=list(crun.get("argv") or ["true"]), cwd=job.cwd or "/", env=dict(spec.get("env") or {}),
                    tasks=spread_tasks(nodes, ntasks, job.ntasks_per_node), mem_per_node=job.mem_per_node,
                    ntasks=ntasks, pty=bool(crun.get("pty")), rows=int(crun.get("rows") or 24),
                    cols=int(crun.get("cols") or 80), submit_time=job.submit_time)
        try:
            step.stdin_task = stdin_target(crun.get("stdin", "0"), ntasks)
        except StepRefused:
            step.stdin_task = 0
        step.cpus = {n: len(t) * job.cpus_per_task for n, t in step.tasks.items()}
        steps[0] = step
        self._launch_task_step(job, step, now, outbox)
        self._wake_start_waiter(job.job_id)

    # --- steps inside an allocation ----------------------------------------------------------
    def create_step(self, start: dict[str, Any], identity: Identity) -> Step:
        """A crun inside allocation ``start["job_id"]``: the new step (Pending or starting); raises StepRefused."""
        job_id = int(start.get("job_id") or 0)
        argv = [str(a) for a in start.get("argv") or []]
        self._check_command(argv, str(start.get("name") or ""), str(start.get("cwd") or ""))
        outbox: list = []
        now = self.clock()
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.state in FINAL_STATES:
                raise StepRefused(f"job {job_id} does not exist or has ended", ERR_NON_EXISTENT)
            if identity.uid != job.uid and identity.uid != 0:
                raise StepRefused(f"job {job_id} is not yours: steps run as the job's owner", ERR_PERMISSION_DENIED)
            if job.state != JobState.Running:
                raise StepRefused(f"job {job_id} is not running (it is {job.state.name})")
            if job.job_id in self.job_end_request:
                raise StepRefused(f"job {job_id} is ending")
            counter = self.step_counter.get(job_id, 1)
            if counter > self.cfg.CraneCtld.MaxStepsPerJob:
                raise StepRefused(f"job {job_id} has run its maximum of {self.cfg.CraneCtld.MaxStepsPerJob} steps",
                                  ERR_STEP_RES_BEYOND)
            request = {k: start.get(k) for k in ("node_num", "ntasks", "ntasks_per_node", "cpus_per_task",
                                                 "mem_per_node", "nodelist", "exclude")}
            ntasks_job = job.node_num * job.ntasks_per_node
            tasks, cpt, mem = place_step(request, list(job.alloc_nodes), job.cpus_per_node, job.mem_per_node,
                                         job.cpus_per_task, ntasks_job, self.cfg.CraneCtld.MaxTasksPerJob)
            ntasks = sum(len(t) for t in tasks.values())
            tl = int(start.get("time_limit") or 0)
            if tl < 0 or tl > self.cfg.CraneCtld.MaxTimeLimit:
                raise StepRefused("time limit out of range")
            step = Step(job_id=job_id, step_id=counter, name=(str(start.get("name") or "")
                                                              or os.path.basename(argv[0]))[:255],
                        uid=job.uid, user=job.user, argv=argv, cwd=str(start.get("cwd") or job.cwd or "/"),
                        env={str(k): str(v) for k, v in (start.get("env") or {}).items()}, tasks=tasks,
                        cpus={n: len(t) * cpt for n, t in tasks.items()}, mem_per_node=mem, time_limit=tl,
                        ntasks=ntasks, pty=bool(start.get("pty")), stdin_task=stdin_target(
                            str(start.get("stdin_target") or "0"), ntasks),
                        rows=int(start.get("rows") or 24), cols=int(start.get("cols") or 80), submit_time=now)
            self._check_env_bounds(step.env)
            self.step_counter[job_id] = counter + 1
            steps = self.steps.setdefault(job_id, {})
            steps[step.step_id] = step
            self.client_seen[(job_id, step.step_id)] = now
            if self._step_fits(steps, step):
                self._launch_task_step(job, step, now, outbox)
            else:
                step.reason = REASON_STEP_RESOURCES
            self._trim_ended_steps(job_id)
            self.store.write(updates=[self._job_row(job)])
        self.publish(outbox)
        return step

    def _check_command(self, argv: list[str], name: str = "", cwd: str = "") -> None:
        """A step's command, name and directory within bounds: at most 4096 arguments of
        ``CraneCtld.MaxScriptBytes`` in all, no NUL; a name without control characters."""
        if not argv:
            raise StepRefused("crun needs a command")
        if len(argv) > 4096 or sum(len(a.encode("utf-8", "surrogatepass")) for a in argv) > \
                self.cfg.CraneCtld.MaxScriptBytes:
            raise StepRefused(f"the command is longer than {self.cfg.CraneCtld.MaxScriptBytes} bytes or 4096 arguments")
        if any("\x00" in a for a in argv) or "\x00" in cwd or len(cwd) > 4096:
            raise StepRefused("the command or its directory is not text")
        if len(name) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise StepRefused("the step name must be at most 255 characters, without control characters")

    def _check_env_bounds(self, env: dict[str, str]) -> None:
        """The step's environment within the submission bounds (CraneCtld.MaxEnvVars/MaxEnvBytes)."""
        try:
            _check_env(env, self.cfg)
        except JobRejected as exc:
            raise StepRefused(str(exc)) from None

    def _step_fits(self, steps: dict[int, Step], step: Step) -> bool:
        """The step's CPUs are free on each of its nodes now (other steps of the job may hold them)."""
        per_node = self.jobs[step.job_id].cpus_per_node
        return all(cpus_in_use(steps, n) + c <= per_node + 1e-9 for n, c in step.cpus.items())

    def _trim_ended_steps(self, job_id: int) -> None:
        steps = self.steps.get(job_id) or {}
        ended = [sid for sid, s in steps.items() if s.ended and sid != 0]
        for sid in ended[:max(0, len(ended) - MAX_ENDED_STEPS)]:
            del steps[sid]

    # --- launch ---------------------------------------------------------------------------------
    def _launch_task_step(self, job: Any, step: Step, now: float, outbox: list) -> None:
        """Send each node of the step its ``StartStep``; the step is Configuring until a node reports it running."""
        step.state = JobState.Configuring
        step.reason = ""
        step.dispatch_time = now
        for node in step.nodes:
            if node not in step.done_on:
                outbox.append((self.node_stream(node), self._start_message(job, step, node, now)))
        step.changed()

    def _start_message(self, job: Any, step: Step, node: str, now: float) -> m.StartStep:
        """The ``StartStep`` of ``step`` for ``node``: its tasks there, the job's and the step's limits."""
        nodes = step.nodes
        env = self._job_env(job, {"env": step.env, "cwd": step.cwd, "ntasks": step.ntasks})
        env.update({
            "CRANE_STEP_ID": str(step.step_id), "CRANE_STEP_NODELIST": compress(nodes),
            "CRANE_STEP_NUM_NODES": str(len(nodes)), "CRANE_STEP_NUM_TASKS": str(step.ntasks),
            "CRANE_NTASKS": str(step.ntasks), "CRANE_JOB_NODENAME": node,
        })
        state = self.nodes[node]
        devices = (job.devices or {}).get(node, [])
        all_devices = state.gres.all_devices()
        if devices:
            env.update(self._gres_environment(job, devices, state))
        # the step's own limit (crun -t inside an allocation); the job's is the controller's to enforce
        # (_check_steps; a batch job's end ends its steps), so `ccontrol update timelimit` holds for steps too
        limit = step.time_limit
        spec = m.TaskLaunch(
            name=step.name, uid=job.uid, gid=job.gid, user=job.user, cwd=step.cwd or "/", argv=step.argv, env=env,
            task_ids=step.tasks[node], ntasks=step.ntasks, node_index=nodes.index(node), nodes=nodes,
            cpus=job.cpus_per_node, cpu_ids=state.cpu_ids, mem_bytes=job.mem_per_node,
            step_cpus=step.cpus.get(node, 0.0), step_mem_bytes=step.mem_per_node, devices_allow=devices,
            devices_deny=[d for d in all_devices if d not in devices], time_limit=limit,
            pty=step.pty and 0 in step.tasks[node], stdin_task=step.stdin_task, rows=step.rows, cols=step.cols)
        return m.StartStep(job_id=job.job_id, step_id=step.step_id, spec=spec, epoch=job.epoch)

    def _try_pending_steps(self, job: Any, now: float, outbox: list) -> None:
        """Start the job's waiting steps that fit now (in id order)."""
        steps = self.steps.get(job.job_id) or {}
        for sid in sorted(steps):
            step = steps[sid]
            if step.state == JobState.Pending and self._step_fits(steps, step):
                self._launch_task_step(job, step, now, outbox)

    # --- reports from nodes ------------------------------------------------------------------
    def is_task_step(self, job_id: int, step_id: int) -> bool:
        """Whether a status about ``job.step`` is a task step's (else the batch step's, step 0 of a batch job)."""
        if step_id != 0:
            return True
        job = self.jobs.get(job_id)
        return job is not None and bool(job.interactive)

    def _on_task_status(self, msg: Any, now: float, outbox: list) -> list:
        """A node's part of a task step started, ended, or could not start."""
        job = self.jobs.get(msg.job_id)
        step = (self.steps.get(msg.job_id) or {}).get(msg.step_id)
        if step is None or job is None or (msg.epoch and msg.epoch != job.epoch):
            if msg.state != "running":
                outbox.append((self.node_stream(msg.node), m.FreeJob(job_id=msg.job_id, step_id=msg.step_id)))
            return []
        if msg.node not in step.tasks:
            log.warning("node %s sent a status for step %d.%d, which does not run there: dropped", msg.node,
                        msg.job_id, msg.step_id)
            return []
        if step.ended or msg.node in step.done_on:
            if msg.state != "running":
                outbox.append((self.node_stream(msg.node), m.FreeJob(job_id=msg.job_id, step_id=msg.step_id)))
            return []
        if msg.state == "running":
            step.started_on.add(msg.node)
            if step.ending:  # it was ended before this node had started it (the start overtook the end)
                outbox.append((self.node_stream(msg.node), m.TerminateStep(
                    job_id=msg.job_id, step_id=msg.step_id, reason="cancel", epoch=job.epoch)))
            if step.state == JobState.Configuring:
                step.state = JobState.Running
                step.start_time = msg.time or now
                self._emit_task_step(outbox, "step.started", job, step, now)
                step.changed()
                return [self._job_row(job)]
            return []
        step.done_on[msg.node] = msg.exit_code
        if msg.reason:
            step.reasons[msg.node] = msg.reason
        step.failed_start |= msg.state == "failed_to_start"
        step.oom |= bool(msg.oom)
        step.usage_cpu_ms += msg.cpu_time_ms
        step.mem_peak = max(step.mem_peak, msg.mem_peak)
        outbox.append((self.node_stream(msg.node), m.FreeJob(job_id=msg.job_id, step_id=msg.step_id)))
        step.changed()
        if all(n in step.done_on for n in step.tasks):
            return self._end_step(job, step, now, outbox)
        return [self._job_row(job)]

    def _node_part_lost(self, job: Any, step: Step, node: str, now: float, outbox: list, why: str) -> list:
        """``node``'s part of ``step`` is gone without a final status (node down, supervisor died)."""
        if step.ended or node in step.done_on:
            return []
        log.warning("step %d.%d: %s", job.job_id, step.step_id, why)
        step.done_on[node] = EC_CRANED_DOWN
        step.reasons[node] = why
        step.failed_start = step.failed_start or node not in step.started_on
        step.changed()
        if all(n in step.done_on for n in step.tasks):
            return self._end_step(job, step, now, outbox)
        return [self._job_row(job)]

    # --- ending ----------------------------------------------------------------------------------
    def _end_step(self, job: Any, step: Step, now: float, outbox: list, state: JobState | None = None,
                  reason: str = "") -> list:
        """Record the step's end (state from its nodes' codes unless given) and what follows from it."""
        codes = list(step.done_on.values())
        code = worst_exit(codes) if codes else 0
        if not step.tasks and job.job_id in self.job_end_request:  # calloc's shell: the code its client sent
            code = self.job_end_request[job.job_id][1]
        why = reason or next((r for r in step.reasons.values() if r), "")
        if state is None:
            if step.ending in _END_STATE:
                state = _END_STATE[step.ending]
                why = why if step.ending == "timeout" else (reason or step.reason or why)
            elif code == EC_CRANED_DOWN:
                state = JobState.Failed
            elif step.failed_start:
                state = JobState.Failed
            else:
                state = state_from_exit(code, step.oom)
        if state == JobState.ExceedTimeLimit and not why:
            why = "time limit exceeded"
        elif state == JobState.Failed and not why:
            why = _describe_exit(code)
        step.state = state
        step.exit_code = code
        step.reason = why
        step.end_time = now
        if not step.start_time and step.dispatch_time:
            step.start_time = now
        self.client_seen.pop((job.job_id, step.step_id), None)
        if step.tasks:
            keys = [k for n in step.tasks for k in (out_key(self.cluster, n, job.job_id, step.step_id),
                                                     in_key(self.cluster, n, job.job_id, step.step_id))]
            self.io_garbage.append((now, keys))
        self._emit_task_step(outbox, "step.ended", job, step, now)
        step.changed()
        rows: list = []
        if job.state not in FINAL_STATES:
            if job.interactive == "crun" and step.step_id == 0 and job.job_id not in self.job_end_request:
                job.usage_cpu_ms, job.usage_mem_peak = step.usage_cpu_ms, step.mem_peak
                return self._finish(job, state, code, now, outbox, persist=False, reason=why)
            if job.job_id in self.job_end_request and not self._has_node_steps(job.job_id):
                end_state, end_code, end_reason = self.job_end_request.pop(job.job_id)
                return self._finish(job, end_state, end_code, now, outbox, persist=False, reason=end_reason)
            self._try_pending_steps(job, now, outbox)
            self._trim_ended_steps(job.job_id)
        rows.append(self._job_row(job))
        return rows

    def _has_node_steps(self, job_id: int) -> bool:
        """Whether a step of the job may still have processes on a node (started, not ended)."""
        return any(s.tasks and s.state in (JobState.Configuring, JobState.Running)
                   for s in (self.steps.get(job_id) or {}).values())

    def _stop_step(self, job: Any, step: Step, why: str, now: float, outbox: list, reason: str = "",
                   state: JobState | None = None) -> list:
        """End a step for ``why`` (cancel, timeout, client, job): a waiting one at once, a running one on its nodes.

        ``state``: what a step without node processes (calloc's step 0) ends as (default: per ``why``).
        """
        if step.ended:
            return []
        step.ending = step.ending or why
        if reason:
            step.reason = reason
        if step.state == JobState.Pending or not step.tasks:
            return self._end_step(job, step, now, outbox, state=state or _END_STATE.get(why, JobState.Cancelled),
                                  reason=reason)
        rows: list = []
        for node in step.nodes:
            if node in step.done_on:
                continue
            if self.nodes[node].alive:
                outbox.append((self.node_stream(node), m.TerminateStep(
                    job_id=job.job_id, step_id=step.step_id, reason="timeout" if why == "timeout" else "cancel",
                    epoch=job.epoch)))
            else:
                rows += self._node_part_lost(job, step, node, now, outbox, f"node {node} down")
        step.changed()
        return rows or [self._job_row(job)]

    def end_interactive(self, job: Any, state: JobState, code: int, reason: str, why: str, now: float,
                        outbox: list) -> list:
        """End an interactive job: its steps are stopped, and it ends once none runs on a node any more."""
        if job.state in FINAL_STATES:
            return []
        if job.state == JobState.Pending:
            self.client_seen.pop((job.job_id, 0), None)
            return self._finish(job, JobState.Cancelled if state != JobState.Completed else state, code, now,
                                outbox, persist=False, reason=reason)
        self.job_end_request.setdefault(job.job_id, (state, code, reason))
        rows: list = []
        for step in self.job_steps(job.job_id):
            if step.live:
                rows += self._stop_step(job, step, why, now, outbox, reason,
                                        state=state if step.step_id == 0 and not step.tasks else None)
        if job.state not in FINAL_STATES and not self._has_node_steps(job.job_id):
            end_state, end_code, end_reason = self.job_end_request.pop(job.job_id)
            rows += self._finish(job, end_state, end_code, now, outbox, persist=False, reason=end_reason)
        return rows

    def _steps_at_job_end(self, job: Any, now: float, outbox: list) -> None:
        """The job ended (``_finish``): every step still alive ends with it, its processes are killed."""
        self.job_end_request.pop(job.job_id, None)
        self.client_seen.pop((job.job_id, 0), None)
        self._wake_start_waiter(job.job_id)
        for step in self.job_steps(job.job_id):
            if not step.live:
                continue
            step.ending = step.ending or "job"
            for node in step.nodes:
                if node not in step.done_on and self.nodes.get(node) is not None and self.nodes[node].alive:
                    outbox.append((self.node_stream(node), m.TerminateStep(
                        job_id=job.job_id, step_id=step.step_id, reason="cancel", epoch=job.epoch)))
            final = job.state if step.step_id == 0 and job.interactive else None
            self._end_step(job, step, now, outbox, state=final or _END_STATE[step.ending],
                           reason=job.reason if final else (step.reason or REASON_JOB_ENDED))

    # --- cancel ----------------------------------------------------------------------------------
    def cancel_steps(self, refs: list[tuple[int, int]], identity: Identity) -> tuple[list, list]:
        """``ccancel <job>.<step>``: ``(cancelled refs, [(ref, reason)])``."""
        done: list = []
        failed: list = []
        outbox: list = []
        now = self.clock()
        with self.lock:
            updates: list = []
            for ref in refs:
                job = self.jobs.get(ref[0])
                step = (self.steps.get(ref[0]) or {}).get(ref[1])
                if job is None or step is None or not step.live:
                    failed.append((ref, "Step not found or already finished"))
                    continue
                if not self._authorized(identity, "job.cancel", job):
                    failed.append((ref, "Permission denied: not your job"))
                    continue
                if step.step_id == 0 and job.interactive:
                    updates += self.end_interactive(job, JobState.Cancelled, EC_TERMINATED, "cancelled", "cancel",
                                                    now, outbox)
                else:
                    updates += self._stop_step(job, step, "cancel", now, outbox, "cancelled")
                done.append(ref)
            self.store.write(updates=updates)
        self.publish(outbox)
        self.wake.set()
        return done, failed

    def client_request_end(self, job_id: int, step_id: int, why: str, code: int = 0) -> None:
        """The client of ``job.step`` ended it: ``cancel`` (crun's second Ctrl-C), ``complete`` (calloc's shell
        ended with raw ``code``), or ``client`` (its stream broke)."""
        outbox: list = []
        now = self.clock()
        with self.lock:
            job = self.jobs.get(job_id)
            step = (self.steps.get(job_id) or {}).get(step_id)
            if job is None or job.state in FINAL_STATES:
                return
            reason = {"cancel": "cancelled by the client", "client": REASON_CLIENT_GONE}.get(why, "")
            if step_id == 0 and job.interactive:
                if why == "complete":
                    rows = self.end_interactive(job, JobState.Completed, code, "", "job", now, outbox)
                else:
                    rows = self.end_interactive(job, JobState.Cancelled, EC_TERMINATED if job.start_time else 0,
                                                reason, "cancel" if why == "cancel" else "client", now, outbox)
            elif step is not None and step.live:
                rows = self._stop_step(job, step, "cancel" if why == "cancel" else "client", now, outbox, reason)
            else:
                return
            self.store.write(updates=rows)
        self.publish(outbox)
        self.wake.set()

    # --- the periodic pass ---------------------------------------------------------------------
    def _check_steps(self, now: float, outbox: list) -> list:
        """Silent clients, interactive jobs out of time, unconfirmed starts, steps on nodes that went down."""
        rows: list = []
        timeout = self.cfg.CraneCtld.InteractiveTimeout
        for (job_id, step_id), seen in list(self.client_seen.items()):
            if now - seen <= timeout:
                continue
            job = self.jobs.get(job_id)
            self.client_seen.pop((job_id, step_id), None)
            if job is None or job.state in FINAL_STATES:
                continue
            log.warning("job %d step %d: no word from its client for %.0f s: ending it", job_id, step_id, now - seen)
            if step_id == 0 and job.interactive:
                rows += self.end_interactive(job, JobState.Cancelled, EC_TERMINATED if job.start_time else 0,
                                             REASON_CLIENT_SILENT, "client", now, outbox)
            else:
                step = (self.steps.get(job_id) or {}).get(step_id)
                if step is not None:
                    rows += self._stop_step(job, step, "client", now, outbox, REASON_CLIENT_SILENT)
        retry = self.cfg.CraneCtld.DispatchRetry
        for job_id, steps in list(self.steps.items()):
            job = self.jobs.get(job_id)
            if job is None or job.state in FINAL_STATES:
                continue
            if job.interactive and job.state == JobState.Running and job.time_limit and \
                    now >= self.expected_end(job, now) and job_id not in self.job_end_request:  # not suspended time
                rows += self.end_interactive(job, JobState.ExceedTimeLimit, EC_EXCEED_TIME_LIMIT,
                                             "time limit exceeded", "timeout", now, outbox)
                continue
            for step in list(steps.values()):
                if step.state not in (JobState.Configuring, JobState.Running):
                    continue
                for node in step.nodes:
                    if node in step.done_on:
                        continue
                    if not self.nodes[node].alive:
                        rows += self._node_part_lost(job, step, node, now, outbox, f"node {node} down")
                    elif node not in step.started_on and now - step.dispatch_time > retry and not step.ending:
                        log.info("re-sending the start of step %d.%d to %s", job_id, step.step_id, node)
                        outbox.append((self.node_stream(node), self._start_message(job, step, node, now)))
                if step.state == JobState.Configuring and now - step.dispatch_time > retry:
                    step.dispatch_time = now
        return rows

    def _reconcile_task_steps(self, node: str, live: list, ended: list, now: float, outbox: list) -> list:
        """A node's ``task_steps``/``task_ended``: kill orphans, forget ended ones, end parts whose supervisor died."""
        rows: list = []
        stream = self.node_stream(node)
        live_refs = set()
        for ref in live:
            try:
                job_id, step_id, epoch = int(ref[0]), int(ref[1]), int(ref[2])
            except (TypeError, ValueError, IndexError):
                continue
            live_refs.add((job_id, step_id))
            job = self.jobs.get(job_id)
            step = (self.steps.get(job_id) or {}).get(step_id)
            if job is None or step is None or step.ended or node in step.done_on or node not in step.tasks or \
                    job.state in FINAL_STATES or (epoch and epoch != job.epoch):
                outbox.append((stream, m.TerminateStep(job_id=job_id, step_id=step_id, reason="orphan", epoch=epoch)))
        for ref in ended:
            try:
                job_id, step_id = int(ref[0]), int(ref[1])
            except (TypeError, ValueError, IndexError):
                continue
            if (job_id, step_id) in live_refs:
                continue
            job = self.jobs.get(job_id)
            step = (self.steps.get(job_id) or {}).get(step_id)
            if job is not None and step is not None and step.live and node in step.tasks and \
                    node not in step.done_on:
                # its directory is there, its supervisor gone, and no final status came before this report
                rows += self._node_part_lost(job, step, node, now, outbox,
                                             "step supervisor died without a final status")
            outbox.append((stream, m.FreeJob(job_id=job_id, step_id=step_id)))
        # a part the node had started that it now reports neither running nor ended: gone with the node's state
        reported = live_refs | {(int(r[0]), int(r[1])) for r in ended if len(r) >= 2}
        for job_id, steps in list(self.steps.items()):
            job = self.jobs.get(job_id)
            if job is None or job.state in FINAL_STATES:
                continue
            for step in list(steps.values()):
                if step.live and node in step.started_on and node not in step.done_on and \
                        (job_id, step.step_id) not in reported:
                    rows += self._node_part_lost(job, step, node, now, outbox, f"node {node} lost the step")
        return rows

    def _task_steps_on_down_node(self, node: str, now: float, outbox: list) -> list:
        """``node`` went down: its parts of every live step end as lost (exit code 326)."""
        rows: list = []
        for job_id, steps in list(self.steps.items()):
            job = self.jobs.get(job_id)
            if job is None or job.state in FINAL_STATES:
                continue
            for step in list(steps.values()):
                if step.live and node in step.tasks:
                    rows += self._node_part_lost(job, step, node, now, outbox, f"node {node} down")
        return rows

    # --- events ------------------------------------------------------------------------------------
    def _emit_task_step(self, outbox: list, kind: str, job: Any, step: Step, now: float) -> None:
        """A ``step.started``/``step.ended`` event for a task step (or calloc's step 0)."""
        ended = kind == "step.ended"
        self._emit(outbox, self._step_event_class(), {
            "kind": kind, "job_id": job.job_id, "step_id": step.step_id, "name": step.name,
            "state": step.state.name if ended else "Running", "exit_code": int(step.exit_code) if ended else 0,
            "nodes": step.nodes or list(job.alloc_nodes), "start_time": float(step.start_time or now),
            "end_time": float(now) if ended else 0.0, "cpu_time_ms": int(step.usage_cpu_ms) if ended else 0,
            "mem_peak_bytes": int(step.mem_peak) if ended else 0, "time": float(now)})

    @staticmethod
    def _step_event_class() -> Any:
        from crane_kernel.events import StepEvent

        return StepEvent


def _describe_exit(code: int) -> str:
    """A failed step's reason from its worst raw exit code: ``a task exited with code 3`` / ``... signal 9``."""
    if 256 <= code < 320:
        import signal as _signal

        try:
            name = _signal.Signals(code - 256).name
        except ValueError:
            name = f"signal {code - 256}"
        return f"a task was killed by {name} (signal {code - 256})"
    return f"a task exited with code {code}"
