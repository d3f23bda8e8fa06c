"""A scripted test server for crun and calloc: an in-process gRPC server implementing only ``CrunStream``.

It tests the *client*: each stream runs ``script(session)``, a generator that waits for what the
client sent (:meth:`Session.wait_for`) and yields the replies the test wants, in order. Every
request is recorded (``session.requests``, as ``(kind, value)``). It is not a controller: no
jobs, no scheduling, no nodes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
from crane_common.proto import crane_pb2 as pb
from crane_common.proto import crane_pb2_grpc as pbg


class Session:
    """One stream as the scripted server sees it."""

    def __init__(self, request_iterator: Iterator[pb.CrunRequest], context: grpc.ServicerContext) -> None:
        self.context = context
        self.metadata = dict(context.invocation_metadata())
        self.requests: list[tuple[str, object]] = []
        self.cond = threading.Condition()
        self.client_done = False
        threading.Thread(target=self._read, args=(request_iterator,), daemon=True).start()

    def _read(self, it: Iterator[pb.CrunRequest]) -> None:
        try:
            for req in it:
                kind = req.WhichOneof("msg")
                with self.cond:
                    self.requests.append((kind, getattr(req, kind)))
                    self.cond.notify_all()
        except Exception:  # noqa: BLE001 - the client went away
            pass
        with self.cond:
            self.client_done = True
            self.cond.notify_all()

    def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[object]:
        """Block until ``count`` requests of ``kind`` arrived; their values (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [v for k, v in self.requests if k == kind]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {count} {kind!r} requests; got {self.kinds()}")
                self.cond.wait(left)

    def kinds(self) -> list[str]:
        """The kinds of the requests received so far."""
        return [k for k, _v in self.requests]

    @property
    def start(self) -> pb.StepStart:
        """The client's ``StepStart`` (waits for it)."""
        return self.wait_for("start")[0]


# -- reply builders ------------------------------------------------------------------------------

def pending(job_id: int = 42, step_id: int = 0, reason: str = "Resources") -> pb.CrunReply:
    return pb.CrunReply(pending=pb.StepPending(job_id=job_id, step_id=step_id, reason=reason))


def allocated(job_id: int = 42, step_id: int = 0, nodes: str = "cn[01-02]", heartbeat: int = 0,
              env: dict[str, str] | None = None) -> pb.CrunReply:
    return pb.CrunReply(allocated=pb.StepAllocated(job_id=job_id, step_id=step_id, craned_list=nodes,
                                                   heartbeat=heartbeat, env=env or {}))


def output(task: int, fd: int, data: bytes) -> pb.CrunReply:
    return pb.CrunReply(output=pb.TaskOutput(task=task, fd=fd, data=data))


def ended(status: int = pb.Completed, exit_code: int = 0, crun_exit: int = 0, reason: str = "",
          job_id: int = 42, step_id: int = 0) -> pb.CrunReply:
    return pb.CrunReply(ended=pb.StepEnded(job_id=job_id, step_id=step_id, status=status, exit_code=exit_code,
                                           crun_exit=crun_exit, reason=reason))


def error(reason: str, code: int = 0) -> pb.CrunReply:
    return pb.CrunReply(error=pb.StepError(reason=reason, code=code))


Script = Callable[[Session], Iterator[pb.CrunReply]]


class ScriptedCrunServer(pbg.CraneCtldServicer):
    """Runs ``script`` for every stream; ``sessions`` lists them."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sessions: list[Session] = []
        self.cond = threading.Condition()

    def CrunStream(self, request_iterator, context):  # noqa: N802, D102
        session = Session(request_iterator, context)
        with self.cond:
            self.sessions.append(session)
            self.cond.notify_all()
        yield from self.script(session)

    def session(self, timeout: float = 10.0) -> Session:
        """The first stream (waits for it)."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.sessions, timeout):
                raise AssertionError("no stream opened")
            return self.sessions[0]


def serve(script: Script) -> tuple[grpc.Server, int, ScriptedCrunServer]:
    """Start the scripted server on 127.0.0.1 (a free port); (server, port, servicer)."""
    servicer = ScriptedCrunServer(script)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pbg.add_CraneCtldServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, servicer
