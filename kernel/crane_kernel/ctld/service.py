"""The public gRPC API of cranectld: authentication, authorization, and conversion to/from protobuf."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from crane_common.hostlist import compress
from crane_common.proto import crane_pb2 as pb
from crane_common.proto import crane_pb2_grpc as pbg
from crane_common.states import FINAL_STATES, JobState
from google.protobuf import json_format

from crane_kernel import __version__
from crane_kernel.auth_types import CallInfo, Identity
from crane_kernel.ctld import history as hist
from crane_kernel.ctld.acctservice import AccountServiceMixin
from crane_kernel.ctld.core import Controller, Denied
from crane_kernel.ctld.cycle import CYCLE_BUCKETS
from crane_kernel.ctld.jobs import ArrayJob, Job
from crane_kernel.ctld.resvservice import ReservationServiceMixin, fill_job_extras
from crane_kernel.ctld.rpcguard import guarded as _guarded
from crane_kernel.ctld.rpcguard import one_line as _one_line
from crane_kernel.errors import CraneError, JobRejected

log = logging.getLogger("cranectld.api")

_DEFAULT_STATES = {JobState.Pending, JobState.Running, JobState.Configuring, JobState.Starting,
                   JobState.Completing, JobState.Suspended}
_KNOWN_STATES = frozenset(int(s) for s in JobState)


def job_info(job: Job, now: float, private: bool = False) -> Any:
    """Convert a job record to the public ``JobInfo`` message.

    ``private``: the caller may not see the job's details (another user's job): its command line,
    comment, working directory, output paths and submit host are left out.
    """
    info = pb.JobInfo(
        job_id=job.job_id, name=job.name, user=job.user, uid=job.uid, gid=job.gid, account=job.account,
        partition=job.partition, qos=job.qos, status=int(job.state),
        type=pb.Container if job.container_image else pb.Interactive if job.interactive else pb.Batch,
        time_limit=job.time_limit,
        submit_time=int(job.submit_time), start_time=int(job.start_time or job.planned_start),
        end_time=int(job.end_time), node_num=job.node_num, req_cpus=job.cpus_per_node * job.node_num,
        cpus_per_task=job.cpus_per_task, ntasks_per_node=job.ntasks_per_node,
        req_mem_per_node=job.mem_per_node, priority=job.priority, held=job.held, exclusive=job.exclusive,
        exit_code=job.exit_code, comment=job.comment, cmd_line=job.cmd_line, cwd=job.cwd,
        stdout_path=job.stdout, stderr_path=job.stderr, submit_host=job.submit_host,
        usage_cpu_ms=job.usage_cpu_ms, usage_mem_peak=job.usage_mem_peak,
    )
    if job.alloc_nodes:
        info.craned_list = compress(list(job.alloc_nodes))
        info.alloc_cpus = job.cpus_per_node * job.node_num
        info.alloc_mem_per_node = job.mem_per_node
    if job.state == JobState.Pending:
        info.pending_reason = job.reason
    elif job.reason:
        info.pending_reason = job.reason
    if job.state in (JobState.Running, JobState.Configuring) and job.start_time:
        info.elapsed = max(0, int(now - job.start_time))
    elif job.end_time and job.start_time:
        info.elapsed = max(0, int(job.end_time - job.start_time))
    if job.nodelist:
        info.req_nodes = ",".join(sorted(job.nodelist))
    if job.exclude:
        info.exclude_nodes = ",".join(sorted(job.exclude))
    if job.gres_per_node:
        info.gres = ",".join(f"{k}:{v}" for k, v in job.gres_per_node.items())
    if job.container_image:
        info.container.image = job.container_image
    if job.array_job_id:
        info.array_job_id, info.array_task_id = job.array_job_id, job.array_task_id
    elif isinstance(job, ArrayJob):
        info.array_job_id, info.array_spec = job.job_id, job.array_spec
        info.array_pending = job.pending_text()
    if private:
        for name in _PRIVATE_FIELDS:
            info.ClearField(name)
    return info


ERR_GENERIC_FAILURE = pb.ErrCode.Value("ERR_GENERIC_FAILURE")  # a refusal without a more specific code


def _code(exc: Exception) -> int:
    """The ErrCode of a refused submission (AccountRejected carries one)."""
    return getattr(exc, "code", ERR_GENERIC_FAILURE)


ON_BEHALF_OF = "x-crane-on-behalf-of"  # a forwarder's (cfored's) assertion of the user it serves

_PRIVATE_FIELDS = ("comment", "cmd_line", "cwd", "stdout_path", "stderr_path", "submit_host")
_USAGE_FIELDS = ("usage_cpu_ms", "usage_mem_peak")


def _states(values: Any, context: grpc.ServicerContext) -> set[JobState]:
    """The requested job states; an unknown number ends the call with INVALID_ARGUMENT."""
    bad = [v for v in values if v not in _KNOWN_STATES]
    if bad:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown job state {bad[0]}")
    return {JobState(v) for v in values}


def spec_dict(spec: Any) -> dict:
    """A JobSpec message as a plain dict (proto field names, defaults included)."""
    d = json_format.MessageToDict(spec, preserving_proto_field_name=True)
    for key in ("mem_per_node", "mem_per_cpu", "time_limit", "begin_time", "deadline"):
        if key in d:
            d[key] = int(d[key])
    if "gres" in d:
        d["gres"] = {k: int(v) for k, v in d["gres"].items()}
    return d


class CraneCtldService(AccountServiceMixin, ReservationServiceMixin, pbg.CraneCtldServicer):
    """gRPC servicer; every call is authenticated by the auth plugins first (account RPCs: ctld/acctservice.py)."""

    def __init__(self, ctl: Controller, scheduler_name: str, relay: Any = None) -> None:
        self.ctl = ctl
        self.scheduler_name = scheduler_name
        self.relay = relay  # ctld/iorelay.IoRelay: the CrunStream sessions (None: not served)

    # -- auth --------------------------------------------------------------
    def _identity(self, context: grpc.ServicerContext, method: str) -> Identity:
        md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        ident = self.ctl.pm.hook.crane_authenticate(call=CallInfo(method=method, metadata=md, peer=context.peer()))
        if ident is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no valid credentials (token missing, bad or expired)")
        return self.ctl.accounts.enrich(ident)  # the account database's admin level and coordinated accounts

    def _forwarded_identity(self, context: grpc.ServicerContext, forwarder: Identity, behalf: Any) -> Identity:
        """The user a forwarder (root) acts for; anyone else asserting another user is refused."""
        if forwarder.uid != 0 or not isinstance(behalf, str) or not behalf.isdigit() or len(behalf) > 10:
            log.warning("%s (uid %d) claimed to act for %r: refused", forwarder.user, forwarder.uid, behalf)
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          "Permission denied: only the forwarder (root) may act for another user")
        uid = int(behalf)
        try:
            import pwd

            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"Permission denied: uid {uid} is unknown here")
        level = forwarder.admin_level if uid == 0 else "none"
        return self.ctl.accounts.enrich(Identity(uid, user, admin_level=level, via=f"cfored:{forwarder.via}"))

    def _authorized(self, context: grpc.ServicerContext, method: str, action: str) -> Identity:
        """Authenticate the call and ask ``crane_authorize`` for ``action`` (no target); abort if denied."""
        ident = self._identity(context, method)
        if not self.ctl._authorized(ident, action, None):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"Permission denied: {action} is not allowed")
        return ident

    def _bounded(self, context: grpc.ServicerContext, *lists: Any) -> None:
        """Refuse (INVALID_ARGUMENT) a request naming more than ``CraneCtld.MaxHostlistExpand`` items in a list."""
        most = self.ctl.cfg.CraneCtld.MaxHostlistExpand
        if any(len(items) > most for items in lists):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"a request may name at most {most} items per list")

    # -- jobs --------------------------------------------------------------
    @_guarded
    def SubmitBatchJob(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Submit one batch job."""
        ident = self._identity(context, "SubmitBatchJob")
        try:
            (jid,) = self.ctl.submit([spec_dict(request.job)], ident)
        except (JobRejected, Denied, CraneError) as exc:
            return pb.SubmitBatchJobReply(ok=False, reason=_one_line(exc), code=_code(exc))
        return pb.SubmitBatchJobReply(ok=True, job_id=jid)

    @_guarded
    def SubmitBatchJobs(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Submit one job ``count`` times, or a list of jobs, atomically."""
        ident = self._identity(context, "SubmitBatchJobs")
        specs = [spec_dict(j) for j in request.jobs]
        if request.HasField("job"):
            count = request.count or 1
            most = self.ctl.cfg.CraneCtld.MaxJobsPerSubmit
            if count + len(specs) > most:
                return pb.SubmitBatchJobsReply(ok=False, reason=f"at most {most} jobs per call")
            one = spec_dict(request.job)
            specs += [one] * count
        if not specs:
            return pb.SubmitBatchJobsReply(ok=False, reason="no job given")
        if len(specs) > self.ctl.cfg.CraneCtld.MaxJobsPerSubmit:
            return pb.SubmitBatchJobsReply(ok=False, reason=f"at most {self.ctl.cfg.CraneCtld.MaxJobsPerSubmit} "
                                           "jobs per call")
        try:
            ids = self.ctl.submit(specs, ident)
        except (JobRejected, Denied, CraneError) as exc:
            return pb.SubmitBatchJobsReply(ok=False, reason=_one_line(exc), code=_code(exc))
        return pb.SubmitBatchJobsReply(ok=True, job_ids=ids)

    @_guarded
    def QueryJobsInfo(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """List jobs matching the filters (pending and running by default; with ``include_history`` also
        the accounting store's ended jobs, see :mod:`crane_kernel.ctld.history`)."""
        ident = self._authorized(context, "QueryJobsInfo", "job.query")
        self._bounded(context, request.job_ids, request.names, request.users, request.nodes, request.accounts,
                      request.partitions, request.qos)
        ctl = self.ctl
        now = ctl.clock()
        history = bool(request.include_history)
        states = _states(request.states, context) or (
            None if request.include_finished or history else _DEFAULT_STATES)
        private_jobs, private_usage = (k in ctl.cfg.CraneCtld.PrivateData for k in ("jobs", "usage"))
        # the job history (cacct) is private whatever PrivateData says: a plain user gets her own jobs and
        # those of the accounts she coordinates; operators and admins see all (as CraneSched's cacct)
        private_jobs = private_jobs or history
        names, users = set(request.names), set(request.users)
        accounts, parts, qos = set(request.accounts), set(request.partitions), set(request.qos)
        nodes = set(request.nodes)
        resvs = set(request.reservations)
        submit_r, start_r, end_r = hist.time_ranges(request)
        timed = any(r != (0.0, 0.0) for r in (submit_r, start_r, end_r))
        limit = request.max_lines or 0
        steps = bool(request.include_steps)
        out = []
        with ctl.lock:
            ids = set(ctl.array_members(list(request.job_ids)))  # an array's id: the array and its tasks
            for ref in request.array_tasks:
                jid = ctl.resolve_task(ref.array_job_id, ref.task_id, False, now, [])
                ids.add(jid if jid is not None else ref.array_job_id)  # a task still to come: its array's row
            if ids:
                source = [ctl.jobs[i] for i in ids if i in ctl.jobs]
            elif states is not None and states <= _DEFAULT_STATES:
                source = [*ctl.pending.values(), *ctl.running.values(),  # skip the ended jobs kept around
                          *(a for a in ctl.arrays.values() if len(a.array_tasks))]  # and arrays' tasks to come
            else:
                source = list(ctl.jobs.values())
            if ids and (request.include_finished or history):
                source += ctl.finished_from_store(sorted(ids))
            known = set(ctl.jobs).union(j.job_id for j in source)  # for these ids the controller's copy wins
            for job in source:
                if states is not None and job.state not in states:
                    continue
                if isinstance(job, ArrayJob) and not len(job.array_tasks) and job.state not in FINAL_STATES:
                    continue  # every task created: the tasks are the rows
                if isinstance(job, ArrayJob) and job.state in FINAL_STATES and job.job_id not in ids:
                    continue  # an ended array is shown when asked for by its id
                if (names and job.name not in names) or (users and job.user not in users) or \
                        (accounts and job.account not in accounts) or (parts and job.partition not in parts) or \
                        (qos and job.qos not in qos) or (nodes and not nodes.intersection(job.alloc_nodes)) or \
                        (resvs and ctl.resv_jobs.get(job.job_id) not in resvs):
                    continue
                if timed and not (hist.in_range(job.submit_time, submit_r) and hist.in_range(job.start_time, start_r)
                                  and hist.in_range(job.end_time, end_r)):
                    continue
                out.append(job)
            out.sort(key=lambda j: j.job_id)
            viewable = {j.job_id for j in out if j.uid == ident.uid or ctl._authorized(ident, "job.view", j)}
            if private_jobs:
                out = [j for j in out if j.job_id in viewable]
            memory_ids = [j.job_id for j in out]
            if limit:
                out = out[:limit]
            infos = []
            for j in out:
                info = job_info(j, now, private=j.job_id not in viewable)
                fill_job_extras(ctl, info, j.job_id)  # -r and -L (ctld/resvservice.py)
                ctl.life_info(info, j, now)  # deadline, signal, requeues, time suspended (ctld/lifecycle.py)
                if j.job_id in self.ctl.preempted:  # ctld/preempt.py
                    info.preempted_by = str(self.ctl.preempted_by(j.job_id))
                if private_usage and j.job_id not in viewable:
                    for name in _USAGE_FIELDS:
                        info.ClearField(name)
                if steps and (not private_jobs or j.job_id in viewable):
                    info.step_info_list.extend(hist.job_steps(j, ctl.job_steps(j.job_id), now))
                infos.append(info)
        reason = ""
        if history and ctl.has_history:
            query = hist.query_from_request(request, states)
            try:  # outside the lock: the store may take a while
                records = hist.fetch_history(ctl.history, hist.narrowed(query, ident, private_jobs), limit, known,
                                             memory_ids)
            except hist.HistoryUnavailable as exc:
                return pb.QueryJobsInfoReply(ok=False, reason=f"job history unavailable: {_one_line(exc)}")
            extra = []
            for rec in records:
                mine = rec.uid == ident.uid or ctl._authorized(ident, "job.view", rec)
                if private_jobs and not mine:
                    continue
                info = hist.record_info(rec, now, not mine, _PRIVATE_FIELDS)
                if private_usage and not mine:
                    for name in _USAGE_FIELDS:
                        info.ClearField(name)
                if steps:
                    info.step_info_list.extend(hist.record_steps(rec))
                extra.append(info)
            if extra:
                infos = sorted([*infos, *extra], key=lambda i: i.job_id)
                if limit:
                    infos = infos[:limit]
        elif history:
            reason = "no accounting plugin is configured (Plugins.Accounting): only the jobs the controller has"
        return pb.QueryJobsInfoReply(ok=True, jobs=infos, reason=reason)

    @_guarded
    def CancelJob(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Cancel jobs by id and/or filters."""
        ident = self._identity(context, "CancelJob")
        self._bounded(context, request.job_ids, request.nodes, request.array_tasks)
        ctl = self.ctl
        ids = list(request.job_ids)
        filtered = request.name or request.partition or request.account or request.user or request.states or \
            request.nodes
        if filtered:
            states = _states(request.states, context) or _DEFAULT_STATES
            nodes = set(request.nodes)
            with ctl.lock:
                pool = [ctl.jobs[i] for i in ids if i in ctl.jobs] if ids else list(ctl.jobs.values())
                ids = [j.job_id for j in pool if j.state in states
                       and (not request.name or j.name == request.name)
                       and (not request.partition or j.partition == request.partition)
                       and (not request.account or j.account == request.account)
                       and (not request.user or j.user == request.user)
                       and (not nodes or nodes.intersection(j.alloc_nodes))]
        if request.signal:  # ccancel -s: the signal to the jobs' processes, which keep running (ctld/jobcontrol.py)
            ids = ctl.resolve_targets(ids, request.array_tasks)  # a task still to come has no processes
            done, failed = ctl.signal_jobs(ids, ident, request.signal)
            return pb.CancelJobReply(cancelled=done, not_cancelled=[f[0] for f in failed],
                                     reasons=[f[1] for f in failed])
        tdone, tfailed = ([], []) if not request.array_tasks else ctl.cancel_tasks(
            [(r.array_job_id, r.task_id) for r in request.array_tasks], ident)
        task_jobs = [jid for _, jid in tdone if jid]
        done, failed = ctl.cancel([*ids, *task_jobs], ident) if ids or task_jobs or not (
            request.steps or request.array_tasks) else ([], [])
        reply = pb.CancelJobReply(cancelled=[j for j in done if j not in task_jobs],
                                  not_cancelled=[f[0] for f in failed], reasons=[f[1] for f in failed])
        ended = {jid for jid, _ in failed}
        reply.cancelled_tasks.extend(pb.ArrayTaskRef(array_job_id=a, task_id=t) for (a, t), jid in tdone
                                     if jid not in ended)
        reply.not_cancelled_tasks.extend(pb.ArrayTaskRef(array_job_id=a, task_id=t) for (a, t), _ in tfailed)
        reply.task_reasons.extend(why for _, why in tfailed)
        if request.steps:
            self._bounded(context, request.steps)
            sdone, sfailed = ctl.cancel_steps([(r.job_id, r.step_id) for r in request.steps], ident)
            reply.cancelled_steps.extend(pb.StepRef(job_id=j, step_id=s) for j, s in sdone)
            reply.not_cancelled_steps.extend(pb.StepRef(job_id=r[0], step_id=r[1]) for r, _ in sfailed)
            reply.step_reasons.extend(why for _, why in sfailed)
        return reply

    def CrunStream(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """crun and calloc: one stream per interactive job or step (ctld/iorelay.py, docs/interactive.md).

        Directly from the command, or through a login node's forwarder (``cfored``): root's call
        carrying ``x-crane-on-behalf-of: <uid>`` (the uid the forwarder's kernel vouched for with
        SO_PEERCRED) acts as that user, with that user's rights only.
        """
        ident = self._identity(context, "CrunStream")
        behalf = next((v for k, v in context.invocation_metadata() if k == ON_BEHALF_OF), None)
        if behalf is not None:
            ident = self._forwarded_identity(context, ident, behalf)
        if self.relay is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "this controller serves no interactive sessions")
        yield from self.relay.serve(request_iterator, context, ident, spec_dict)

    @_guarded
    def ModifyJob(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Pin priority, hold/release, change a time limit, suspend/resume, or another field (``ccontrol update``)."""
        ident = self._identity(context, "ModifyJob")
        which = request.WhichOneof("change")
        kwargs = {which: getattr(request, which)} if which else {}
        if not kwargs:
            return pb.ModifyJobReply(not_modified=list(request.job_ids),
                                     reasons=["nothing to change"] * len(request.job_ids))
        ctl = self.ctl
        self._bounded(context, request.job_ids, request.array_tasks)
        ids = ctl.resolve_targets(list(request.job_ids), request.array_tasks, ident, "job.modify")
        if which == "suspend":  # ccontrol suspend|resume (ctld/jobcontrol.py)
            done, failed = ctl.suspend_jobs(ids, ident, request.suspend)
        elif which in ("priority", "hold", "time_limit"):
            done, failed = ctl.modify(ids, ident, **kwargs)
        elif which == "array_max_concurrent":  # an array's %max, by the array's own id (ctld/arrays.py)
            done, failed = ctl.set_array_throttle(list(request.job_ids), ident, request.array_max_concurrent)
        else:  # ccontrol update job key=value (ctld/jobupdate.py)
            done, failed = ctl.update_jobs(ids, ident, which, kwargs[which])
        ctl.arrays_touched(done)
        return pb.ModifyJobReply(modified=done, not_modified=[f[0] for f in failed], reasons=[f[1] for f in failed])

    @_guarded
    def RequeueJob(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Running or suspended jobs back to Pending, their ids kept (``ccontrol requeue``; ctld/jobcontrol.py)."""
        ident = self._identity(context, "RequeueJob")
        self._bounded(context, request.job_ids, request.array_tasks)
        ids = self.ctl.resolve_targets(list(request.job_ids), request.array_tasks)  # tasks to come have not run
        done, failed = self.ctl.requeue_jobs(ids, ident, hold=request.hold)
        return pb.RequeueJobReply(requeued_jobs=done, not_requeued_jobs=dict(failed))

    # -- nodes and partitions ---------------------------------------------------
    @_guarded
    def QueryCranedInfo(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Nodes with capacity, allocation and state."""
        self._authorized(context, "QueryCranedInfo", "node.query")
        self._bounded(context, request.names)
        wanted = set(request.names)
        out = []
        with self.ctl.lock:
            for node in self.ctl.nodes.values():
                if wanted and node.name not in wanted:
                    continue
                s = node.sched
                out.append(pb.CranedInfo(
                    name=node.name, cpu_total=s.cpus_total, cpu_alloc=max(0.0, s.cpus_total - s.cpus_free),
                    mem_total=s.mem_total, mem_alloc=max(0, s.mem_total - s.mem_free),
                    resource_state=node.resource_state, control_state="drain" if node.drain else "none",
                    partitions=list(s.partitions), last_seen=int(node.last_seen), running_jobs=s.njobs,
                    reason=node.drain_reason,
                    gres_total=",".join(f"{k}:{v}" for k, v in s.gres_total.items()),
                    gres_alloc=",".join(f"{k}:{s.gres_total[k] - s.gres_free.get(k, 0)}" for k in s.gres_total)))
        return pb.QueryCranedInfoReply(nodes=out)

    @_guarded
    def QueryPartitionInfo(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Partitions with their nodes and totals."""
        self._authorized(context, "QueryPartitionInfo", "partition.query")
        wanted = set(request.names)
        ctl = self.ctl
        out = []
        with ctl.lock:
            for pc in ctl.cfg.Partitions:
                if wanted and pc.name not in wanted:
                    continue
                part = ctl.partitions[pc.name]
                members = [ctl.sched_nodes[i] for i in part.node_indices]
                out.append(pb.PartitionInfo(
                    name=pc.name, state="up", nodes=[n.name for n in members], priority=pc.priority,
                    is_default=pc.name == ctl.cfg.DefaultPartition,
                    cpu_total=sum(n.cpus_total for n in members),
                    cpu_alloc=sum(n.cpus_total - n.cpus_free for n in members),
                    mem_total=sum(n.mem_total for n in members),
                    mem_alloc=sum(n.mem_total - n.mem_free for n in members),
                    default_mem_per_cpu=pc.DefaultMemPerCpu or ctl.cfg.DefaultMemPerCpu,
                    max_time_limit=pc.MaxTimeLimit))
        return pb.QueryPartitionInfoReply(partitions=out)

    @_guarded
    def ModifyNode(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Drain or resume nodes, or confirm they are down (powered off: nothing of their jobs runs there)."""
        ident = self._identity(context, "ModifyNode")
        self._bounded(context, request.names)
        state = request.state.lower()
        if state not in ("drain", "resume", "down"):
            return pb.ModifyNodeReply(not_modified=list(request.names),
                                      reasons=[f"unknown state {request.state!r}"] * len(request.names))
        if state in ("drain", "down") and not request.reason:
            return pb.ModifyNodeReply(not_modified=list(request.names),
                                      reasons=[f"a reason is required to set a node {state}"] * len(request.names))
        if state == "down":
            ok, bad = self.ctl.confirm_node_down(list(request.names), request.reason, ident)
        else:
            ok, bad = self.ctl.set_drain(list(request.names), state == "drain", request.reason, ident)
        return pb.ModifyNodeReply(modified=ok, not_modified=[b[0] for b in bad], reasons=[b[1] for b in bad])

    @_guarded
    def QueryServerInfo(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Version, cluster and who the caller is."""
        ident = self._authorized(context, "QueryServerInfo", "server.query")
        ctl = self.ctl
        return pb.ServerInfoReply(version=__version__, cluster_name=ctl.cluster,
                                  scheduler=self.scheduler_name, identity=f"{ident.user}({ident.uid})",
                                  admin=ident.is_admin, pending_jobs=len(ctl.pending), running_jobs=len(ctl.running),
                                  cycles=ctl.cycles, last_cycle_s=ctl.last_cycle_s, max_cycle_s=ctl.max_cycle_s,
                                  last_cycle_considered=ctl.last_considered, cycle_bucket_bounds=CYCLE_BUCKETS,
                                  cycle_bucket_counts=ctl.cycle_counts, cycle_seconds_sum=ctl.cycle_seconds_sum)
