"""The controller's end of ``CrunStream``: one session per crun or calloc, relaying between it and the nodes.

A session (docs/interactive.md) creates the job (crun outside an allocation, calloc) or the step
(crun inside one), tells the client where it waits and where it runs, then relays: output, task
exits and ends from the nodes' ``io`` streams to the client, and the client's stdin, signals and
window changes to the nodes' ``ioin`` streams (:mod:`crane_kernel.iostream`). The client's
messages also keep the session alive (``touch_client``); when its stream breaks, the session
ends what it owned at once (``client_request_end``), and a silent client is ended by the
controller's periodic pass.

The relay trusts nothing it reads: an entry that is malformed, or names a task the node does not
run, is logged and dropped (a compromised node cannot inject output for another node's tasks).
Flow control: entries are deleted from an ``io`` stream only after they were handed to gRPC,
whose own flow control blocks this thread while the client is slow; and stdin is added to an
``ioin`` stream only while it holds fewer than :data:`~crane_kernel.iostream.WINDOW` entries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from crane_common.hostlist import compress
from crane_common.proto import crane_pb2 as pb
from crane_common.states import FINAL_STATES, JobState

from crane_kernel import iostream as io
from crane_kernel.ctld.core import Denied
from crane_kernel.ctld.steps import ERR_INVALID_PARAM, ERR_PERMISSION_DENIED, ERR_SYSTEM_ERR, StepRefused
from crane_kernel.errors import CraneError, JobRejected

log = logging.getLogger("cranectld.crun")

ERR_MAX_JOB_COUNT_PER_USER = 65
POLL_S = 0.05            # how often a waiting session looks at its job or step without being woken


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:1000]


class IoRelay:
    """Serves every ``CrunStream``: admission (stream limits), then one :class:`Session` per stream.

    ``redis`` is a redis-py client with the controller's credentials (it may read and delete
    every node's ``io`` keys and write their ``ioin`` keys).
    """

    def __init__(self, ctl: Any, redis: Any) -> None:
        self.ctl = ctl
        self.redis = redis
        self.cfg = ctl.cfg.CraneCtld
        self._lock = threading.Lock()
        self.active = 0
        self.per_user: Counter[int] = Counter()

    def serve(self, requests: Iterator[Any], context: Any, identity: Any, spec_dict: Any) -> Iterator[Any]:
        """The stream's replies (a generator for gRPC); ``spec_dict`` turns a JobSpec into the controller's dict."""
        with self._lock:
            if self.active >= self.cfg.MaxInteractiveStreams:
                refusal = (ERR_SYSTEM_ERR, f"the controller serves its maximum of {self.cfg.MaxInteractiveStreams} "
                           "interactive sessions (CraneCtld.MaxInteractiveStreams)")
            elif self.per_user[identity.uid] >= self.cfg.MaxInteractiveStreamsPerUser:
                refusal = (ERR_MAX_JOB_COUNT_PER_USER, f"you have {self.per_user[identity.uid]} interactive sessions "
                           "open, the most a user may (CraneCtld.MaxInteractiveStreamsPerUser)")
            else:
                refusal = None
                self.active += 1
                self.per_user[identity.uid] += 1
        if refusal is not None:
            yield _error(*refusal)
            return
        try:
            yield from Session(self, requests, context, identity, spec_dict).run()
        finally:
            with self._lock:
                self.active -= 1
                self.per_user[identity.uid] -= 1
                if self.per_user[identity.uid] <= 0:
                    del self.per_user[identity.uid]

    def janitor(self, now: float, delay: float = 10.0) -> None:
        """Delete the I/O streams of steps that ended ``delay`` seconds ago (a relay deletes its own sooner)."""
        garbage = self.ctl.io_garbage
        due = []
        while garbage and now - garbage[0][0] >= delay:
            due.extend(garbage.pop(0)[1])
        if due:
            try:
                self.redis.delete(*due)
            except Exception as exc:  # Redis down: the keys are small (at most WINDOW entries)
                log.warning("could not delete %d ended I/O stream(s): %s", len(due), exc)


def _error(code: int, reason: str) -> Any:
    return pb.CrunReply(error=pb.StepError(code=code, reason=reason))


def _start_dict(start: Any) -> dict[str, Any]:
    """The step fields of a StepStart as plain values."""
    return {
        "job_id": start.job_id, "allocate_only": start.allocate_only, "argv": list(start.argv),
        "node_num": start.node_num, "ntasks": start.ntasks, "ntasks_per_node": start.ntasks_per_node,
        "cpus_per_task": start.cpus_per_task, "mem_per_node": start.mem_per_node, "nodelist": list(start.nodelist),
        "exclude": list(start.exclude), "gres": dict(start.gres), "time_limit": start.time_limit,
        "name": start.name, "env": dict(start.env), "cwd": start.cwd, "pty": start.pty,
        "stdin_target": start.stdin_target, "rows": start.rows, "cols": start.cols,
    }


class Session:
    """One crun or calloc: its job or step, the client's messages (a thread) and the relay of output (the caller)."""

    def __init__(self, relay: IoRelay, requests: Iterator[Any], context: Any, identity: Any, spec_dict: Any) -> None:
        self.relay = relay
        self.ctl = relay.ctl
        self.redis = relay.redis
        self.requests = requests
        self.context = context
        self.identity = identity
        self.spec_dict = spec_dict
        self.job_id = 0
        self.step_id = 0
        self.calloc = False
        self.gone = threading.Event()        # the client's stream ended (or broke)
        self.allocated = threading.Event()   # the step's nodes are known: stdin may go out
        self.step: Any = None
        self.node_of_task: dict[int, str] = {}

    # --- the replies --------------------------------------------------------------------------
    def run(self) -> Iterator[Any]:
        """Create the job or step, then relay until it ended; yields CrunReply messages."""
        try:
            first = next(self.requests)
        except StopIteration:
            return
        except Exception as exc:  # the client went away before saying anything
            log.info("a crun stream ended before its start message: %s", _one_line(exc))
            return
        if first.WhichOneof("msg") != "start":
            yield _error(ERR_INVALID_PARAM, "the first message of a CrunStream must be start")
            return
        start = first.start
        fields = _start_dict(start)
        ctl = self.ctl
        try:
            if start.job_id:
                step = ctl.create_step(fields, self.identity)
                self.job_id, self.step_id = step.job_id, step.step_id
            else:
                self.calloc = bool(start.allocate_only)
                self.job_id = ctl.submit_interactive(self.spec_dict(start.job), fields, self.identity)
        except StepRefused as exc:
            yield _error(exc.code, _one_line(exc))
            return
        except (JobRejected, CraneError) as exc:
            yield _error(getattr(exc, "code", 0) or ERR_INVALID_PARAM, _one_line(exc))
            return
        except Denied as exc:
            yield _error(ERR_PERMISSION_DENIED, _one_line(exc))
            return
        except (ValueError, TypeError, OverflowError, KeyError, UnicodeError) as exc:  # never a traceback
            log.warning("a malformed crun request was refused: %s: %s", type(exc).__name__, exc)
            yield _error(ERR_INVALID_PARAM, f"invalid request: {_one_line(exc)}")
            return
        self.context.add_callback(self._on_rpc_done)
        reader = threading.Thread(target=self._read_client, name=f"crun-{self.job_id}.{self.step_id}", daemon=True)
        reader.start()
        try:
            step = self._wait_step()
            pend = step.reason if step is not None else self._job_reason()
            yield pb.CrunReply(pending=pb.StepPending(job_id=self.job_id, step_id=self.step_id, reason=pend or ""))
            step = self._wait_started(step)
            if step is None:
                yield self._ended_reply(None)
                return
            self.step = step
            step.attached = True
            yield self._allocated_reply(step)
            self.allocated.set()
            if step.tasks:
                yield from self._relay_output(step)
            self._wait_ended(step)
            yield self._ended_reply(step)
        finally:
            self.gone.set()
            if self.step is not None:
                self.step.attached = False
                self._delete_keys(self.step)

    def _job(self) -> Any:
        return self.ctl.jobs.get(self.job_id)

    def _job_reason(self) -> str:
        job = self._job()
        return job.reason if job is not None else ""

    def _wait_step(self) -> Any:
        """The step's record if it exists already (a step in an allocation; a job that started at once)."""
        return (self.ctl.steps.get(self.job_id) or {}).get(self.step_id)

    def _wait_started(self, step: Any) -> Any:
        """Wait until the step has its nodes (Configuring or later); None when the job ended before."""
        waiter = None
        if step is None:  # a new job: its step 0 appears when the scheduler starts it (stepexec wakes us)
            waiter = self.ctl.start_waiter(self.job_id)
        while not self.gone.is_set():
            step = step or self._wait_step()
            if step is not None:
                step.wakeup.clear()
                if step.state != JobState.Pending:
                    return step
                step.wakeup.wait(POLL_S * 10)
                continue
            job = self._job()
            if job is None or job.state in FINAL_STATES:
                return None
            waiter.wait(POLL_S * 10)
        return step if step is not None and step.state != JobState.Pending else None

    def _allocated_reply(self, step: Any) -> Any:
        job = self._job()
        nodes = step.nodes or (list(job.alloc_nodes) if job is not None else [])
        for node, tasks in step.tasks.items():
            for t in tasks:
                self.node_of_task[t] = node
        env: dict[str, str] = {}
        if self.calloc and job is not None:
            env = {k: v for k, v in self.ctl._job_env(job, {"env": {}, "cwd": job.cwd}).items()
                   if k.startswith("CRANE_")}
            env.update({"SLURM_JOB_ID": str(job.job_id), "SLURM_JOBID": str(job.job_id),
                        "SLURM_JOB_NODELIST": env.get("CRANE_JOB_NODELIST", ""),
                        "SLURM_JOB_NUM_NODES": str(job.node_num)})
        return pb.CrunReply(allocated=pb.StepAllocated(
            job_id=self.job_id, step_id=self.step_id, craned_list=compress(nodes), nodes=nodes,
            ntasks=step.ntasks, env=env, heartbeat=max(1, int(self.relay.cfg.InteractiveHeartbeat))))

    def _relay_output(self, step: Any) -> Iterator[Any]:
        """Output, task exits and node ends from the step's ``io`` streams, until every node's part ended."""
        cluster = self.ctl.cluster
        keys = {io.out_key(cluster, n, self.job_id, self.step_id): n for n in step.nodes}
        last = dict.fromkeys(keys, "0-0")
        open_keys = set(keys)
        grace_until = 0.0
        while open_keys and not self.gone.is_set():
            try:
                batch = self.redis.xread({k: last[k] for k in open_keys}, count=io.WINDOW, block=int(POLL_S * 1000))
            except Exception as exc:
                log.warning("step %d.%d: reading its output failed: %s", self.job_id, self.step_id, _one_line(exc))
                time.sleep(POLL_S)
                batch = []
            for raw_key, entries in batch or []:
                key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
                node = keys.get(key)
                if node is None:
                    continue
                ids = []
                for entry_id, fields in entries:
                    ids.append(entry_id)
                    last[key] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    reply = self._reply_for(node, fields, open_keys, key)
                    if reply is not None:
                        yield reply
                if ids:
                    try:
                        self.redis.xdel(key, *ids)  # handed to gRPC: the node may write more
                    except Exception as exc:
                        log.warning("step %d.%d: trimming its output failed: %s", self.job_id, self.step_id, exc)
            if step.ended and open_keys:
                # the controller ended it without every node's end entry (node down, supervisor lost):
                # take what is left, briefly, then stop
                grace_until = grace_until or time.monotonic() + 1.0
                if time.monotonic() > grace_until or not batch:
                    break

    def _reply_for(self, node: str, fields: dict, open_keys: set[str], key: str) -> Any:
        try:
            entry = io.parse_out(fields)
        except io.IoEntryError as exc:
            log.warning("step %d.%d: malformed output entry from %s dropped: %s", self.job_id, self.step_id, node, exc)
            return None
        if entry.kind == "e":
            open_keys.discard(key)
            return None
        if self.node_of_task.get(entry.task) != node:
            log.warning("step %d.%d: node %s sent output of task %d, which it does not run: dropped", self.job_id,
                        self.step_id, node, entry.task)
            return None
        if entry.kind == "o":
            return pb.CrunReply(output=pb.TaskOutput(task=entry.task, fd=entry.fd, data=entry.data))
        return pb.CrunReply(task_exit=pb.TaskExit(task=entry.task, exit_code=entry.code))

    def _wait_ended(self, step: Any) -> None:
        """Wait for the controller to record the step's end (its nodes' final statuses follow their end entries)."""
        while not step.ended:
            step.wakeup.clear()
            if step.ended:
                break
            step.wakeup.wait(POLL_S * 4)
            if self.gone.is_set() and not step.ended:
                return

    def _ended_reply(self, step: Any) -> Any:
        if step is None or not step.ended:
            job = self._job()
            state = job.state if job is not None else JobState.Cancelled
            code = job.exit_code if job is not None else 0
            reason = (job.reason if job is not None else "") or ("" if state == JobState.Completed else state.name)
            return pb.CrunReply(ended=pb.StepEnded(job_id=self.job_id, step_id=self.step_id, status=int(state),
                                                   exit_code=code, reason=reason, crun_exit=_crun_exit(code, state)))
        return pb.CrunReply(ended=pb.StepEnded(
            job_id=self.job_id, step_id=self.step_id, status=int(step.state), exit_code=step.exit_code,
            reason=step.reason if step.state != JobState.Completed else "",
            crun_exit=_crun_exit(step.exit_code, step.state)))

    def _delete_keys(self, step: Any) -> None:
        if not step.tasks or not step.ended:
            return
        cluster = self.ctl.cluster
        keys = [k for n in step.nodes for k in (io.out_key(cluster, n, self.job_id, self.step_id),
                                                 io.in_key(cluster, n, self.job_id, self.step_id))]
        try:
            self.redis.delete(*keys)
        except Exception as exc:
            log.warning("step %d.%d: could not delete its I/O streams: %s", self.job_id, self.step_id, exc)

    # --- the client's messages ------------------------------------------------------------------
    def _on_rpc_done(self) -> None:
        """gRPC ended the call (the client closed, cancelled or vanished)."""
        self._client_gone()

    def _client_gone(self) -> None:
        if self.gone.is_set():
            return
        self.gone.set()
        self.ctl.client_request_end(self.job_id, self.step_id, "client")

    def _read_client(self) -> None:
        """Apply the client's messages until its stream ends; then what it owned ends too."""
        ctl = self.ctl
        try:
            for req in self.requests:
                ctl.touch_client(self.job_id, self.step_id)
                kind = req.WhichOneof("msg")
                if kind == "stdin":
                    self._stdin(req.stdin)
                elif kind == "stdin_eof":
                    self._to_stdin_nodes(lambda task: io.eof_entry(task))
                elif kind == "signal":
                    if 1 <= req.signal <= 64:
                        self._to_nodes(self._step_nodes(), io.signal_entry(req.signal))
                elif kind == "winsize":
                    node = self._node_with_task(0)
                    if node:
                        self._to_nodes([node], io.winsize_entry(min(req.winsize.rows, 10000),
                                                                min(req.winsize.cols, 10000)))
                elif kind == "cancel":
                    ctl.client_request_end(self.job_id, self.step_id, "cancel")
                elif kind == "complete":
                    ctl.client_request_end(self.job_id, self.step_id, "complete", min(int(req.complete), 1023))
        except Exception as exc:  # the stream broke
            log.info("crun stream of %d.%d broke: %s", self.job_id, self.step_id, _one_line(exc))
        self._client_gone()

    def _wait_allocated(self) -> bool:
        while not self.allocated.wait(POLL_S * 4):
            if self.gone.is_set():
                return False
        return True

    def _step_nodes(self) -> list[str]:
        return self.step.nodes if self.step is not None else []

    def _node_with_task(self, task: int) -> str:
        return self.node_of_task.get(task, "")

    def _stdin_nodes(self) -> list[tuple[str, int]]:
        """(node, task target) pairs the step's stdin goes to."""
        from crane_kernel.messages import STDIN_ALL, STDIN_NONE

        step = self.step
        if step is None or step.stdin_task == STDIN_NONE:
            return []
        if step.stdin_task == STDIN_ALL:
            return [(n, io.ALL_TASKS) for n in step.nodes]
        node = self._node_with_task(step.stdin_task)
        return [(node, step.stdin_task)] if node else []

    def _stdin(self, data: bytes) -> None:
        if not self._wait_allocated():
            return
        for i in range(0, len(data), io.MAX_CHUNK):
            chunk = data[i:i + io.MAX_CHUNK]
            self._to_stdin_nodes(lambda task, chunk=chunk: io.stdin_entry(task, chunk))

    def _to_stdin_nodes(self, make: Any) -> None:
        if not self._wait_allocated():
            return
        for node, task in self._stdin_nodes():
            self._to_nodes([node], make(task), flow=True)

    def _to_nodes(self, nodes: list[str], entry: dict, flow: bool = False) -> None:
        """Add ``entry`` to each node's ``ioin`` stream; with ``flow``, wait while that stream is full."""
        step = self.step
        if step is None and not self._wait_allocated():
            return
        cluster = self.ctl.cluster
        for node in nodes:
            key = io.in_key(cluster, node, self.job_id, self.step_id)
            try:
                while flow and self.redis.xlen(key) >= io.WINDOW:
                    if self.gone.is_set() or (self.step is not None and self.step.ended):
                        return
                    time.sleep(0.005)
                self.redis.xadd(key, entry)
            except Exception as exc:
                log.warning("step %d.%d: could not pass input to %s: %s", self.job_id, self.step_id, node, exc)


def _crun_exit(code: int, state: JobState) -> int:
    """What crun exits with: the tasks' status (128+N for signal N); 1 for a step that failed otherwise."""
    value = io.crun_exit_code(code)
    if value == 0 and state not in (JobState.Completed,):
        return 1
    return value
