"""The controller's authoritative state machine.

All state changes happen here, under one lock, and are journaled to the
:class:`~crane_kernel.ctld.store.StateStore` before they are acknowledged.
Messages to nodes and events are collected in an outbox while the lock is
held and published after the journal write, so a crash can lose a message but
never an acknowledged state change (lost launches are re-sent, see
``_retry_dispatch``).

Threads calling in: the gRPC handlers (submit, query, cancel, modify), the
bus consumer (node registration, heartbeats, step status) and the scheduling
loop. The scheduler plugin itself runs *without* the lock, so a cycle over
100k jobs never stalls the API; its plan is re-checked against live state
when committed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from crane_common.hostlist import compress
from crane_common.states import (
    EC_CRANED_DOWN,
    EC_TERMINATED,
    FINAL_STATES,
    JobState,
    state_from_exit,
)

from crane_kernel import gres as gres_rules
from crane_kernel import messages as m
from crane_kernel.auth_types import Identity
from crane_kernel.config import ClusterConfig
from crane_kernel.ctld import reconcile as rc
from crane_kernel.ctld.jobs import Job, job_from_spec, normalize_spec
from crane_kernel.ctld.nodes import NodeState, build_nodes
from crane_kernel.ctld.store import StateStore
from crane_kernel.sched_types import (
    REASON_BEGIN_TIME,
    REASON_HELD,
    REASON_RESOURCE,
    ClusterView,
    Plan,
    SchedRunning,
)

log = logging.getLogger("cranectld")

EPS = 1e-9
HISTORY_REPLAY = 100_000  # ended jobs replayed to crane_job_finished at start-up (usage history)


_INJECTOR_VARS = {
    "nvidia": ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"),
    "hip": ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"),
    "ascend": ("ASCEND_RT_VISIBLE_DEVICES",),
}


def device_environment(devices: list[str], device_env: dict[str, tuple[str, int]]) -> dict[str, str]:
    """The ``*_VISIBLE_DEVICES`` variables for the devices a job got (indices among the node's devices of a kind)."""
    by_injector: dict[str, list[int]] = {}
    for dev in devices:
        injector, index = device_env.get(dev, ("", -1))
        if injector in _INJECTOR_VARS:
            by_injector.setdefault(injector, []).append(index)
    env: dict[str, str] = {}
    for injector, indices in by_injector.items():
        for var in _INJECTOR_VARS[injector]:
            env[var] = ",".join(str(i) for i in sorted(indices))
    if devices:
        env["CRANE_JOB_GRES_DEVICES"] = ",".join(devices)
    return env


class Denied(Exception):  # noqa: N818 - reads better at the raise sites
    """The caller may not do this (becomes PERMISSION_DENIED / a per-job reason)."""


class Controller:
    """Jobs, nodes and partitions of one cluster, and every transition between their states."""

    def __init__(self, cfg: ClusterConfig, store: StateStore, pm: Any, publish: Callable[[list], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.pm = pm
        self.publish = publish
        self.clock = clock
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.jobs: dict[int, Job] = {}
        self.pending: dict[int, Job] = {}
        self.running: dict[int, Job] = {}
        self.running_view: dict[int, SchedRunning] = {}
        self.gres_taken: dict[int, list[dict[str, int]]] = {}  # job id -> gres taken on each of its nodes
        self.finished: deque[tuple[float, int]] = deque()
        self.nodes, self.sched_nodes, self.partitions = build_nodes(cfg)
        self.node_caps = {n.name: (n.sched.cpus_total, n.sched.mem_total, n.sched.gres_total)
                          for n in self.nodes.values()}
        self.next_job_id = 1
        self.started_at = clock()
        self.cycles = 0
        self.last_cycle_s = 0.0
        self.max_cycle_s = 0.0
        self.last_considered = 0
        self.cluster = cfg.ClusterName
        self._has_priority = False
        self.recon = rc.Reconciler()  # held allocations and what nodes report they run (ctld/reconcile.py)

    # ------------------------------------------------------------------
    # start-up
    # ------------------------------------------------------------------
    def recover(self) -> None:
        """Rebuild pending and running jobs and node drain state from the store."""
        now = self.clock()
        self.next_job_id = int(self.store.get_meta("next_job_id", 1))
        active = [JobState.Pending, JobState.Configuring, JobState.Running, JobState.Starting,
                  JobState.Completing, JobState.Suspended]
        n_pending = n_running = 0
        for jid, _state, spec, rt in self.store.iter_jobs(active):
            job = job_from_spec(jid, spec)
            job.apply_rt(rt)
            self.jobs[jid] = job
            if job.state == JobState.Pending:
                self.pending[jid] = job
                n_pending += 1
            else:
                if any(n not in self.nodes for n in job.alloc_nodes):
                    self._finish(job, JobState.Failed, EC_CRANED_DOWN, now, [], reason="node removed")
                    continue
                self._allocate(job, [self.nodes[n] for n in job.alloc_nodes], record=False)
                n_running += 1
            self.next_job_id = max(self.next_job_id, jid + 1)
        n_history = 0
        for _jid, spec, rt in self.store.recent_finished(HISTORY_REPLAY):
            if rt.get("start") and rt.get("end"):
                job = job_from_spec(_jid, spec)
                job.apply_rt(rt)
                self.pm.hook.crane_job_finished(job=job, start_time=job.start_time, end_time=job.end_time)
                n_history += 1
        for name, (drain, reason) in self.store.nodes().items():
            if name in self.nodes:
                self.nodes[name].drain, self.nodes[name].drain_reason = drain, reason
        for n in self.nodes.values():
            n.last_seen = now  # a grace period: nodes have CranedTimeout to check in
            n.refresh_usable()
        rc.restore_held(self)
        log.info("recovered %d pending and %d running jobs (%d ended jobs replayed for usage history); next job id %d",
                 n_pending, n_running, n_history, self.next_job_id)

    # ------------------------------------------------------------------
    # submission
    # ------------------------------------------------------------------
    def submit(self, specs: list[dict], identity: Identity) -> list[int]:
        """Validate, filter, journal and queue jobs; return their ids (all or none are accepted)."""
        now = self.clock()
        normalized = []
        for raw in specs:
            spec = normalize_spec(raw, self.cfg, identity.uid, identity.user, now, self.node_caps)
            self.pm.hook.crane_job_submit(job=spec, identity=identity)
            normalized.append(spec)
        if not self._authorized(identity, "job.submit", None):
            raise Denied("you may not submit jobs")
        with self.lock:
            first = self.next_job_id
            ids = list(range(first, first + len(normalized)))
            rows = []
            jobs = []
            for jid, spec in zip(ids, normalized, strict=True):
                job = job_from_spec(jid, spec)
                jobs.append(job)
                rows.append((jid, 0, json.dumps(spec, separators=(",", ":")), json.dumps(job.rt())))
            self.store.write(inserts=rows, meta={"next_job_id": first + len(ids)})
            self.next_job_id = first + len(ids)
            for job in jobs:
                self.jobs[job.job_id] = job
                self.pending[job.job_id] = job
        self.wake.set()
        return ids

    # ------------------------------------------------------------------
    # authorization helper
    # ------------------------------------------------------------------
    def _authorized(self, identity: Identity, action: str, target: Any) -> bool:
        return bool(self.pm.hook.crane_authorize(identity=identity, action=action, target=target))

    # ------------------------------------------------------------------
    # cancel / modify
    # ------------------------------------------------------------------
    def cancel(self, job_ids: Iterable[int], identity: Identity) -> tuple[list[int], list[tuple[int, str]]]:
        """Cancel jobs: pending ones end at once, running ones are terminated on their node."""
        done: list[int] = []
        failed: list[tuple[int, str]] = []
        outbox: list = []
        now = self.clock()
        with self.lock:
            updates = []
            for jid in job_ids:
                job = self.jobs.get(jid)
                if job is None or job.state in FINAL_STATES:
                    failed.append((jid, "Job not found or already finished"))
                    continue
                if not self._authorized(identity, "job.cancel", job):
                    failed.append((jid, "Permission denied: not your job"))
                    continue
                if job.state == JobState.Pending:
                    updates += self._finish(job, JobState.Cancelled, 0, now, outbox, persist=False)
                else:
                    head = self.nodes.get(job.head_node)
                    if head is None or not head.alive:
                        updates += self._finish(job, JobState.Cancelled, EC_TERMINATED, now, outbox, persist=False)
                    else:
                        job.cancel_requested = True
                        updates.append((int(job.state), self._rt_json(job), job.job_id))
                        outbox.append((self.node_stream(job.head_node),
                                       m.TerminateStep(job_id=jid, reason="cancel", epoch=job.epoch)))
                done.append(jid)
            self.store.write(updates=updates)
        self.publish(outbox)
        if done:
            self.wake.set()
        return done, failed

    def modify(self, job_ids: Iterable[int], identity: Identity, *, priority: float | None = None,
               hold: bool | None = None, time_limit: int | None = None) -> tuple[list[int], list[tuple[int, str]]]:
        """Pin priority (admin), hold/release or change the time limit of pending jobs."""
        done: list[int] = []
        failed: list[tuple[int, str]] = []
        with self.lock:
            updates = []
            for jid in job_ids:
                job = self.jobs.get(jid)
                if job is None or job.state in FINAL_STATES:
                    failed.append((jid, "Job not found or already finished"))
                    continue
                action = "job.priority" if priority is not None else "job.modify"
                if not self._authorized(identity, action, job):
                    failed.append((jid, "Permission denied"))
                    continue
                if priority is not None:
                    job.pinned_priority = float(priority)
                    job.priority = float(priority)
                elif hold is not None:
                    if job.state != JobState.Pending:
                        failed.append((jid, "Job is not pending"))
                        continue
                    job.held = hold
                    job.reason = REASON_HELD if hold else ""
                elif time_limit is not None:
                    job.time_limit = int(time_limit)
                    if jid in self.running_view:
                        self.running_view[jid].end_time = job.start_time + (job.time_limit or 10**9)
                updates.append((int(job.state), self._rt_json(job), jid))
                done.append(jid)
            self.store.write(updates=updates)
        self.wake.set()
        return done, failed

    def set_drain(self, names: list[str], drain: bool, reason: str, identity: Identity) -> tuple[list, list]:
        """Drain or resume nodes (admins only)."""
        ok, bad = [], []
        with self.lock:
            for name in names:
                node = self.nodes.get(name)
                if node is None:
                    bad.append((name, "no such node"))
                    continue
                if not self._authorized(identity, "node.modify", name):
                    bad.append((name, "Permission denied"))
                    continue
                node.drain, node.drain_reason = drain, reason if drain else ""
                node.refresh_usable()
                self.store.set_node(name, drain, node.drain_reason)
                ok.append(name)
        self.wake.set()
        return ok, bad

    # ------------------------------------------------------------------
    # resources
    # ------------------------------------------------------------------
    def _allocate(self, job: Job, nodes: list[NodeState], record: bool = True) -> None:
        """Take the job's resources on its nodes and list it as running."""
        gres = job.gres_per_node or {}
        taken: list[dict[str, int]] = []  # per node, the concrete gres keys taken (given back on release)
        for node in nodes:
            s = node.sched
            if job.exclusive:  # the whole node, whatever the job asked for
                node.exclusive_job = job.job_id
                s.cpus_free, s.mem_free = 0.0, 0
                s.gres_free = {k: 0 for k in s.gres_total}
            else:
                s.cpus_free -= job.cpus_per_node
                s.mem_free -= job.mem_per_node
                if gres:
                    taken.append(gres_rules.take(s.gres_free, gres))
            s.njobs += 1
        if taken:
            self.gres_taken[job.job_id] = taken
        self.pending.pop(job.job_id, None)
        self.running[job.job_id] = job
        end = job.start_time + job.time_limit if job.time_limit else float("inf")
        self.running_view[job.job_id] = SchedRunning(
            job.job_id, tuple(n.sched.index for n in nodes), job.cpus_per_node, job.mem_per_node,
            max(end, self.clock() + 1), partition=job.partition, gres_per_node=gres or None,
            exclusive=job.exclusive)

    def _release(self, job: Job) -> None:
        """Give a job's resources back to its nodes — unless its processes may still run unseen.

        When a node of the job is DOWN, its processes there may outlive what the controller knows:
        the resources stay held (see ``ctld/reconcile.py``) until the node confirms they are gone.
        """
        if job.job_id in self.recon.held:
            return  # released by reconcile.release_held once confirmed
        if job.job_id in self.running:
            down = {n for n in job.alloc_nodes if n in self.nodes and not self.nodes[n].alive}
            if down:
                rc.hold(self, job, down, requeue=False)
                return
        self._free(job)

    def _free(self, job: Job) -> None:
        """Give a job's resources back to its nodes now."""
        self.running.pop(job.job_id, None)
        rv = self.running_view.pop(job.job_id, None)
        taken = self.gres_taken.pop(job.job_id, [])
        if rv is None:
            return
        for idx in rv.nodes:
            node = self.nodes[self.sched_nodes[idx].name]
            s = node.sched
            s.njobs = max(0, s.njobs - 1)
            if node.exclusive_job == job.job_id:
                node.exclusive_job = 0
                s.cpus_free, s.mem_free, s.gres_free = s.cpus_total, s.mem_total, dict(s.gres_total)
                continue
            s.cpus_free = min(s.cpus_total, s.cpus_free + job.cpus_per_node)
            s.mem_free = min(s.mem_total, s.mem_free + job.mem_per_node)
            if taken:
                gres_rules.give(s.gres_free, taken.pop(0))

    def _fits(self, job: Job, node: NodeState) -> bool:
        s = node.sched
        if not s.usable or job.partition not in s.partitions:
            return False
        if job.exclusive and s.njobs:
            return False
        if s.cpus_free + EPS < job.cpus_per_node or s.mem_free < job.mem_per_node:
            return False
        return not job.gres_per_node or gres_rules.fits(s.gres_free, job.gres_per_node)

    def _assign_devices(self, job: Job, nodes: list[NodeState]) -> dict[str, list[str]]:
        """Pick device files for the job's GRES on each node (first free ones)."""
        if not job.gres_per_node:
            return {}
        used: dict[str, set[str]] = {}
        for other in self.running.values():
            for node_name, devs in other.devices.items():
                used.setdefault(node_name, set()).update(devs)
        out: dict[str, list[str]] = {}
        for node in nodes:
            picked: list[str] = []
            for key, want in job.gres_per_node.items():
                keys = [key] if ":" in key or key in node.gres_devices else \
                    [k for k in node.gres_devices if gres_rules.family(k) == key]
                for k in keys:
                    for dev in node.gres_devices.get(k, []):
                        if want <= 0:
                            break
                        if dev not in used.get(node.name, ()) and dev not in picked:
                            picked.append(dev)
                            want -= 1
            out[node.name] = picked
        return out

    # ------------------------------------------------------------------
    # scheduling
    # ------------------------------------------------------------------
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

    def _launch_message(self, job: Job, spec: dict) -> Any:
        nodelist = compress(list(job.alloc_nodes))
        env = dict(spec.get("env") or {})
        env.update({
            "CRANE_JOB_ID": str(job.job_id),
            "CRANE_JOB_NAME": job.name,
            "CRANE_JOB_NODELIST": nodelist,
            "CRANE_JOB_NUM_NODES": str(job.node_num),
            "CRANE_SUBMIT_DIR": spec.get("submit_dir") or spec.get("cwd", ""),
            "CRANE_SUBMIT_HOST": spec.get("submit_host", ""),
            "CRANE_JOB_PARTITION": job.partition,
            "CRANE_JOB_ACCOUNT": job.account,
            "CRANE_JOB_QOS": job.qos,
            "CRANE_JOB_USER": job.user,
            "CRANE_JOB_UID": str(job.uid),
            "CRANE_NTASKS": str(spec.get("ntasks", job.node_num * job.ntasks_per_node)),
            "CRANE_NTASKS_PER_NODE": str(job.ntasks_per_node),
            "CRANE_CPUS_PER_TASK": f"{job.cpus_per_task:g}",
            "CRANE_CPUS_ON_NODE": f"{job.cpus_per_node:g}",
            "CRANE_MEM_PER_NODE": str(job.mem_per_node >> 20),
            "CRANE_TIMELIMIT": str(job.time_limit),
            "CRANE_CLUSTER_NAME": self.cluster,
        })
        head = self.nodes[job.head_node]
        devices = (job.devices or {}).get(job.head_node, [])
        all_devices = [d for devs in head.gres_devices.values() for d in devs]
        env.update(device_environment(devices, head.device_env))
        step = {
            "job_id": job.job_id, "name": job.name, "uid": job.uid, "gid": job.gid, "user": job.user,
            "cwd": spec.get("cwd") or "/", "script": spec.get("script", ""),
            "interpreter": spec.get("interpreter") or "/bin/bash", "env": env,
            "export": spec.get("export", "ALL"), "get_user_env": spec.get("get_user_env", False),
            "output": spec.get("output", ""), "error": spec.get("error", ""), "input": spec.get("input", ""),
            "open_mode": spec.get("open_mode") or "truncate", "cpus": job.cpus_per_node,
            "cpu_ids": head.cpu_ids, "mem_bytes": job.mem_per_node, "time_limit": job.time_limit,
            "devices_allow": devices, "devices_deny": [d for d in all_devices if d not in devices],
            "exclusive": job.exclusive,
        }
        return m.LaunchStep(job_id=job.job_id, step_id=1, spec=step, epoch=job.epoch)

    # ------------------------------------------------------------------
    # node and step messages (from the bus)
    # ------------------------------------------------------------------
    def handle_messages(self, batch: list[tuple[Any, Any]]) -> None:
        """Apply a batch of messages from the controller stream in one journal transaction."""
        outbox: list = []
        now = self.clock()
        with self.lock:
            updates: list = []
            for _entry_id, msg in batch:
                try:
                    if isinstance(msg, m.StepStatus):
                        updates += self._on_step_status(msg, now, outbox)
                    elif isinstance(msg, m.NodeHeartbeat):
                        updates += self._on_heartbeat(msg.node, msg.running, now, outbox, msg.steps, msg.ended)
                    elif isinstance(msg, m.NodeRegister):
                        updates += self._on_register(msg, now, outbox)
                    else:
                        log.warning("ignoring unexpected %s message on the controller stream", msg.kind)
                except Exception:  # a bad message must not take the others down
                    log.exception("failed to apply %s message %s; skipped", getattr(msg, "kind", "?"),
                                  getattr(msg, "id", "?"))
            self.store.write(updates=updates)
        self.publish(outbox)
        self.wake.set()

    def _node_seen(self, name: str, now: float, outbox: list) -> NodeState | None:
        node = self.nodes.get(name)
        if node is None:
            log.warning("message from unknown node %r ignored", name)
            return None
        node.last_seen = now
        node.ever_seen = True
        if not node.alive:
            node.alive = True
            node.refresh_usable()
            log.info("node %s is up", name)
            outbox.append((self.events_stream(), m.NodeEvent(kind="node.up", node=name, data={})))
        return node

    def _on_heartbeat(self, name: str, running: list[int], now: float, outbox: list,
                      steps: list | None = None, ended: list | None = None) -> list:
        """A node is alive and reports what it runs: reconcile it with the jobs (returns journal rows)."""
        node = self._node_seen(name, now, outbox)
        if node is None:
            return []
        live = rc.step_map(steps) if steps else rc.step_map(running)  # an older craned sends job ids only
        return rc.reconcile_node(self, node, live, rc.step_map(ended or []), now, outbox)

    def _on_register(self, msg: Any, now: float, outbox: list) -> list:
        node = self._node_seen(msg.node, now, outbox)
        if node is None:
            return []
        updates: list = []
        for result in msg.finished or []:
            try:
                status = m.StepStatus(**result)
            except Exception as exc:
                log.warning("bad finished record from %s: %s", msg.node, exc)
                continue
            updates += self._on_step_status(status, now, outbox)
        live = rc.step_map(msg.steps) if msg.steps else rc.step_map(msg.running)
        return updates + rc.reconcile_node(self, node, live, rc.step_map(msg.ended), now, outbox)

    def _on_step_status(self, msg: Any, now: float, outbox: list) -> list:
        job = self.jobs.get(msg.job_id)
        epoch = getattr(msg, "epoch", 0)
        if job is None or job.state in FINAL_STATES or job.state == JobState.Pending or \
                (epoch and epoch != job.epoch):
            if msg.state != "running":
                outbox.append((self.node_stream(msg.node), m.FreeJob(job_id=msg.job_id)))
                return rc.final_status(self, msg, now)  # a held job's step ended: its node confirms
            return []
        if msg.state == "running":
            if job.state == JobState.Configuring:
                job.state = JobState.Running
                job.start_time = msg.time or now
                rv = self.running_view.get(job.job_id)
                if rv is not None and job.time_limit:
                    rv.end_time = job.start_time + job.time_limit
                return [(int(job.state), self._rt_json(job), job.job_id)]
            return []
        if msg.state == "failed_to_start":
            state = JobState.Cancelled if job.cancel_requested else JobState.Failed
        else:
            state = state_from_exit(msg.exit_code, msg.oom)
            if job.cancel_requested and state in (JobState.Failed, JobState.Completed):
                state = JobState.Cancelled
        job.usage_cpu_ms = msg.cpu_time_ms
        job.usage_mem_peak = msg.mem_peak
        outbox.append((self.node_stream(msg.node), m.FreeJob(job_id=msg.job_id)))
        return self._finish(job, state, msg.exit_code, msg.time or now, outbox, persist=False,
                            reason=msg.reason)

    def _end_lost(self, job: Job, now: float, outbox: list, why: str) -> list:
        """A running job's node went away: requeue it when the rules allow, else end it as node-down.

        Its resources stay held while any of its nodes may still run its processes (the node is
        DOWN, its last report listed the job, or the launch may still be queued for it; the live
        ones are told to kill it), and a requeued job waits as Pending (reason NodeDown) until they
        are released: it never runs twice at once.
        """
        requeue = self._may_requeue(job)
        waiting = rc.may_still_run_on(self, job)
        held = bool(waiting) and job.job_id in self.running
        if held:
            rc.hold(self, job, waiting, requeue=requeue)
            for n in sorted(waiting):
                if self.nodes[n].alive:
                    outbox.append((self.node_stream(n), m.TerminateStep(job_id=job.job_id, reason="node",
                                                                        epoch=job.epoch)))
        if requeue:
            self._release(job)
            job.state = JobState.Pending
            job.alloc_nodes = ()
            job.head_node = ""
            job.exit_code = EC_CRANED_DOWN
            job.reason = rc.REASON_NODE_DOWN if held else ""
            if not held:
                job.devices = {}
                self.pending[job.job_id] = job
            log.info("job %d requeued: %s%s", job.job_id, why, " (starts once its old processes are gone)"
                     if held else "")
            outbox.append((self.events_stream(), m.JobEvent(kind="job.requeued", job_id=job.job_id,
                                                            data={"reason": why})))
            return [(int(job.state), self._rt_json(job), job.job_id)]
        return self._finish(job, JobState.Failed, EC_CRANED_DOWN, now, outbox, persist=False, reason=why)

    def _may_requeue(self, job: Job) -> bool:
        if job.no_requeue or job.cancel_requested:
            return False
        if not (self.cfg.CraneCtld.JobRequeue or job.requeue):
            return False
        return job.epoch <= self.cfg.CraneCtld.MaxRequeueCount

    def _finish(self, job: Job, state: JobState, exit_code: int, now: float, outbox: list,
                persist: bool = True, reason: str = "") -> list:
        """Move a job to a final state, free its resources, and emit the event."""
        if job.state != JobState.Pending and job.start_time:
            self.pm.hook.crane_job_finished(job=job, start_time=job.start_time, end_time=now)
        self._release(job)
        self.pending.pop(job.job_id, None)
        job.state = state
        job.exit_code = exit_code
        job.end_time = now
        job.reason = reason
        self.finished.append((now, job.job_id))
        outbox.append((self.events_stream(), m.JobEvent(
            kind="job.finished", job_id=job.job_id,
            data={"state": state.name, "exit_code": exit_code, "user": job.user, "account": job.account,
                  "partition": job.partition, "nodes": list(job.alloc_nodes), "start": job.start_time,
                  "end": now, "submit": job.submit_time, "cpu_ms": job.usage_cpu_ms,
                  "mem_peak": job.usage_mem_peak, "cpus": job.cpus_per_node * job.node_num})))
        row = (int(job.state), self._rt_json(job), job.job_id)
        if persist:
            self.store.write(updates=[row])
            return []
        return [row]

    def _check_liveness(self, now: float, outbox: list) -> None:
        timeout = self.cfg.CraneCtld.CranedTimeout
        held = self.recon.held
        updates: list = []
        for node in self.nodes.values():
            if now - node.last_seen <= timeout:
                continue
            lost = [j for j in self.running.values() if node.name in j.alloc_nodes and j.job_id not in held]
            if not node.alive and not lost:
                continue
            if node.alive:
                log.warning("node %s missed heartbeats for %.0fs: DOWN", node.name, now - node.last_seen)
                outbox.append((self.events_stream(), m.NodeEvent(kind="node.down", node=node.name,
                                                                 data={"reason": "heartbeat timeout"})))
            node.alive = False
            node.refresh_usable()
            for job in lost:
                updates += self._end_lost(job, now, outbox, f"node {node.name} down")
        if updates:
            self.store.write(updates=updates)

    def confirm_node_down(self, names: list[str], reason: str, identity: Identity) -> tuple[list, list]:
        """An admin confirms nodes are down and run nothing of their jobs (e.g. powered off); admins only.

        See :func:`crane_kernel.ctld.reconcile.confirm_node_down`.
        """
        with self.lock:
            ok, bad, outbox = rc.confirm_node_down(self, names, reason, identity)
        self.publish(outbox)
        self.wake.set()
        return ok, bad

    def _retry_dispatch(self, now: float, outbox: list) -> None:
        retry = self.cfg.CraneCtld.DispatchRetry
        late = [j for j in self.running.values()
                if j.state == JobState.Configuring and now - j.dispatch_time > retry]
        if not late:
            return
        specs = self.store.specs([j.job_id for j in late])
        for job in late:
            if self.nodes[job.head_node].alive:
                job.dispatch_time = now
                log.info("re-sending launch of job %d to %s", job.job_id, job.head_node)
                outbox.append((self.node_stream(job.head_node), self._launch_message(job, specs[job.job_id])))

    def _expire_finished(self, now: float) -> None:
        keep = self.cfg.CraneCtld.FinishedJobRetention
        while self.finished and now - self.finished[0][0] > keep:
            _, jid = self.finished.popleft()
            job = self.jobs.get(jid)
            if job is not None and job.state in FINAL_STATES:
                del self.jobs[jid]

    # ------------------------------------------------------------------
    # queries
    # ------------------------------------------------------------------
    def finished_from_store(self, ids: list[int]) -> list[Job]:
        """Ended jobs no longer in memory, read back from the store."""
        out = []
        missing = [i for i in ids if i not in self.jobs]
        if not missing:
            return out
        for jid, spec, rt in self.store.jobs_by_id(missing):
            job = job_from_spec(jid, spec)
            job.apply_rt(rt)
            out.append(job)
        return out

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------
    def _rt_json(self, job: Job) -> str:
        return json.dumps(job.rt(), separators=(",", ":"))

    def node_stream(self, name: str) -> str:
        """Stream name for messages to node ``name``."""
        return f"crane:{self.cluster}:node:{name}"

    def events_stream(self) -> str:
        """Stream name for cluster events."""
        return f"crane:{self.cluster}:events"

    def rss_kb(self) -> int:
        """Current resident set size of this process in KB."""
        with open(f"/proc/{os.getpid()}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0
