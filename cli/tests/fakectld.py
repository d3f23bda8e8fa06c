"""FakeCtld: an in-process gRPC server implementing crane.grpc.CraneCtld with canned replies.

Used by the CLI tests (and by ``bench_cli.py`` for latency measurements) until they
can run against the real controller. It records every request with its metadata,
knows a few partitions and nodes, accepts submissions to known partitions, and can
be told to demand a bearer token. Run it standalone with
``python fakectld.py --port 10011 --jobs 1000``.
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent import futures

import grpc
from crane_common.proto import crane_pb2 as pb
from crane_common.proto import crane_pb2_grpc as pbg

NODES = [f"cn{i:02d}" for i in range(1, 9)]
ALL_STATES = {pb.Pending, pb.Running, pb.Completed, pb.Failed, pb.ExceedTimeLimit, pb.Cancelled, pb.OutOfMemory,
              pb.Configuring, pb.Starting, pb.Completing, pb.Suspended, pb.Deadline}


def _in_range(value: int, rng: pb.TimeRange) -> bool:
    """``rng`` (0 = open on that side) contains ``value``; an unset range contains everything, an unset time nothing."""
    if not (rng.lower or rng.upper):
        return True
    return bool(value) and (not rng.lower or value >= rng.lower) and (not rng.upper or value <= rng.upper)


def make_jobs(n: int, now: float | None = None) -> list[pb.JobInfo]:
    """``n`` canned jobs: every third pending (reason Priority), the others running on cn01..cn08."""
    now = time.time() if now is None else now
    jobs = []
    for i in range(n):
        job_id = i + 1
        pending = i % 3 == 0
        status = pb.Pending if pending else pb.Running
        node = NODES[i % len(NODES)]
        jobs.append(pb.JobInfo(
            job_id=job_id, name=f"job{job_id}.sh", user="alice" if i % 2 else "bob", uid=1000 + i % 2,
            account="physics", partition="CPU" if i % 4 else "GPU", qos="normal", status=status, type=pb.Batch,
            time_limit=3600 if i % 5 else 0, submit_time=int(now) - 600, start_time=0 if pending else int(now) - 65,
            node_num=1, req_cpus=2, cpus_per_task=2, ntasks_per_node=1, req_mem_per_node=2 << 30,
            alloc_cpus=0 if pending else 2, alloc_mem_per_node=0 if pending else 2 << 30,
            craned_list="" if pending else node, pending_reason="Priority" if pending else "",
            priority=1000 - i, elapsed=0 if pending else 65, cmd_line=f"cbatch job{job_id}.sh",
            command=f"job{job_id}.sh", cwd="/home/alice",
        ))
    return jobs


class FakeCtld(pbg.CraneCtldServicer):
    """Canned CraneCtld: see the module docs. Attributes may be changed by tests between calls."""

    def __init__(self, jobs: list[pb.JobInfo] | None = None, token: str | None = None) -> None:
        self.jobs = list(jobs or [])  # what the controller holds (including recently ended jobs)
        self.history: list[pb.JobInfo] = []  # the accounting store (cacct: include_history)
        self.query_reply: pb.QueryJobsInfoReply | None = None  # when set, QueryJobsInfo returns it
        self.token = token  # when set, calls without "Bearer <token>" are rejected (UNAUTHENTICATED)
        self.partitions = [
            pb.PartitionInfo(name="CPU", state="up", nodes=NODES[:6], is_default=True, priority=1),
            pb.PartitionInfo(name="GPU", state="up", nodes=NODES[6:], priority=2),
            pb.PartitionInfo(name="EMPTY", state="up", nodes=[]),
        ]
        self.nodes = [
            pb.CranedInfo(name=n, cpu_total=8, cpu_alloc=(0 if i < 3 else 8 if i < 5 else 4), mem_total=16 << 30,
                          resource_state="idle" if i < 3 else "alloc" if i < 5 else "mix",
                          control_state="drain" if i == 5 else "none", reason="maintenance" if i == 5 else "",
                          partitions=["CPU"] if i < 6 else ["GPU"])
            for i, n in enumerate(NODES)
        ]
        self.nodes[7].resource_state = "down"
        self.requests: list[tuple[str, object, dict]] = []
        self.next_job_id = 1000
        self.lock = threading.Lock()
        # container jobs (JobSpec.container set) are kept in self.jobs as ended jobs with this status and raw
        # exit code; container_output, when set, is written to the job's output file (as a node would)
        self.container_status = pb.Completed
        self.container_exit = 0
        self.container_output: str | None = None

    # -- helpers -------------------------------------------------------------------
    def _record(self, method: str, request: object, context: grpc.ServicerContext) -> None:
        md = dict(context.invocation_metadata())
        with self.lock:
            self.requests.append((method, request, md))
        if self.token is not None and md.get("authorization") != f"Bearer {self.token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or missing token")

    def last(self, method: str) -> object:
        """The most recent request of ``method``."""
        for m, req, _md in reversed(self.requests):
            if m == method:
                return req
        raise LookupError(method)

    def _check_job(self, job: pb.JobSpec) -> str:
        known = {p.name for p in self.partitions}
        if job.partition and job.partition not in known:
            return f"Partition '{job.partition}' does not exist."
        return ""

    def _keep_container(self, job: pb.JobSpec, job_id: int) -> None:
        """A submitted container job becomes a JobInfo (container included), ended as configured."""
        if not job.HasField("container"):
            return
        now = int(time.time())
        info = pb.JobInfo(job_id=job_id, name=job.name, user="alice", uid=1000, account=job.account or "physics",
                          partition=job.partition or "CPU", status=self.container_status, type=pb.Container,
                          submit_time=now, start_time=now, end_time=now, node_num=1, craned_list="cn01",
                          exit_code=self.container_exit, cwd=job.cwd, stdout_path=job.output, command=job.name,
                          cmd_line=job.cmd_line)
        info.container.CopyFrom(job.container)
        with self.lock:
            self.jobs.append(info)
        if self.container_output is not None:
            import os

            path = (job.output or "Crane-%j.out").replace("%j", str(job_id))
            with open(os.path.join(job.cwd, path), "w") as fh:
                fh.write(self.container_output)

    def _alloc_ids(self, n: int) -> list[int]:
        with self.lock:
            ids = list(range(self.next_job_id, self.next_job_id + n))
            self.next_job_id += n
        return ids

    # -- RPCs ------------------------------------------------------------------------
    def SubmitBatchJob(self, request, context):  # noqa: N802, D102
        self._record("SubmitBatchJob", request, context)
        reason = self._check_job(request.job)
        if reason:
            return pb.SubmitBatchJobReply(ok=False, reason=reason)
        job_id = self._alloc_ids(1)[0]
        self._keep_container(request.job, job_id)
        return pb.SubmitBatchJobReply(ok=True, job_id=job_id)

    def SubmitBatchJobs(self, request, context):  # noqa: N802, D102
        self._record("SubmitBatchJobs", request, context)
        jobs = list(request.jobs) or [request.job] * max(request.count, 1)
        for job in jobs:
            reason = self._check_job(job)
            if reason:
                return pb.SubmitBatchJobsReply(ok=False, reason=reason)
        return pb.SubmitBatchJobsReply(ok=True, job_ids=self._alloc_ids(len(jobs)))

    def QueryJobsInfo(self, request, context):  # noqa: N802, D102
        self._record("QueryJobsInfo", request, context)
        if self.query_reply is not None:
            return self.query_reply
        if request.partitions and any(p not in {x.name for x in self.partitions} for p in request.partitions):
            return pb.QueryJobsInfoReply(ok=False, reason="Partition does not exist.")
        wide = request.include_finished or request.include_history
        states = set(request.states) or (ALL_STATES if wide else {pb.Pending, pb.Running})
        source = list(self.jobs)
        if request.include_history or (request.include_finished and request.job_ids):
            known = {j.job_id for j in source}
            source += [j for j in self.history if j.job_id not in known]  # the accounting store
        out = []
        for j in sorted(source, key=lambda j: j.job_id):
            if j.status not in states:
                continue
            if request.job_ids and j.job_id not in request.job_ids:
                continue
            if request.users and j.user not in request.users:
                continue
            if request.partitions and j.partition not in request.partitions:
                continue
            if request.names and j.name not in request.names:
                continue
            if request.accounts and j.account not in request.accounts:
                continue
            if request.qos and j.qos not in request.qos:
                continue
            if request.nodes and j.craned_list not in request.nodes:
                continue
            if not all(_in_range(getattr(j, attr), getattr(request, "filter_" + attr))
                       for attr in ("submit_time", "start_time", "end_time")):
                continue
            if not request.include_steps and j.step_info_list:
                copy = pb.JobInfo()
                copy.CopyFrom(j)
                del copy.step_info_list[:]  # a copy without the steps
                j = copy  # noqa: PLW2901
            out.append(j)
            if request.max_lines and len(out) >= request.max_lines:
                break
        return pb.QueryJobsInfoReply(ok=True, jobs=out)

    def CancelJob(self, request, context):  # noqa: N802, D102
        self._record("CancelJob", request, context)
        known = {j.job_id for j in self.jobs}
        ok = [i for i in request.job_ids if i in known]
        bad = [i for i in request.job_ids if i not in known]
        steps_ok = [s for s in request.steps if s.job_id in known and s.step_id < 5]
        steps_bad = [s for s in request.steps if s not in steps_ok]
        if request.steps:
            return pb.CancelJobReply(cancelled=ok, not_cancelled=bad, reasons=["Job not found"] * len(bad),
                                     cancelled_steps=steps_ok, not_cancelled_steps=steps_bad,
                                     step_reasons=["Step not found"] * len(steps_bad))
        if not request.job_ids:
            ok = [j.job_id for j in self.jobs
                  if (not request.user or j.user == request.user)
                  and (not request.partition or j.partition == request.partition)
                  and (not request.name or j.name == request.name)]
        return pb.CancelJobReply(cancelled=ok, not_cancelled=bad, reasons=["Job not found"] * len(bad))

    def ModifyJob(self, request, context):  # noqa: N802, D102
        self._record("ModifyJob", request, context)
        return pb.ModifyJobReply(modified=list(request.job_ids))

    def QueryCranedInfo(self, request, context):  # noqa: N802, D102
        self._record("QueryCranedInfo", request, context)
        names = set(request.names)
        return pb.QueryCranedInfoReply(nodes=[n for n in self.nodes if not names or n.name in names])

    def QueryPartitionInfo(self, request, context):  # noqa: N802, D102
        self._record("QueryPartitionInfo", request, context)
        names = set(request.names)
        return pb.QueryPartitionInfoReply(partitions=[p for p in self.partitions if not names or p.name in names])

    def ModifyNode(self, request, context):  # noqa: N802, D102
        self._record("ModifyNode", request, context)
        return pb.ModifyNodeReply(modified=list(request.names))

    def QueryServerInfo(self, request, context):  # noqa: N802, D102
        self._record("QueryServerInfo", request, context)
        md = dict(context.invocation_metadata())
        who = "anonymous"
        auth = md.get("authorization", "")
        if auth.startswith("Bearer "):
            import base64
            import json

            try:
                body = auth.split(".")[1]
                who = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["user"]
            except (IndexError, ValueError, KeyError):
                who = "invalid-token"
        return pb.ServerInfoReply(version="fake-0.0", cluster_name="fakecluster", scheduler="fifo", identity=who,
                                  admin=who == "root")


def start(servicer: FakeCtld | None = None, port: int = 0,
          host: str = "127.0.0.1") -> tuple[grpc.Server, int, FakeCtld]:
    """Start a FakeCtld server; return (server, bound port, servicer)."""
    servicer = servicer or FakeCtld()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pbg.add_CraneCtldServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound, servicer


def main() -> None:
    """Run a FakeCtld until interrupted (for manual tests and latency measurements)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=10011)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--token")
    ns = ap.parse_args()
    server, port, _ = start(FakeCtld(make_jobs(ns.jobs), token=ns.token), port=ns.port)
    print(f"FakeCtld listening on 127.0.0.1:{port}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)


if __name__ == "__main__":
    main()
