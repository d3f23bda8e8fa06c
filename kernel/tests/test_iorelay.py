"""The controller's CrunStream sessions (ctld/iorelay.py) against a real Redis, with the nodes played by the test.

The test writes what a node's supervisor would write to the step's ``io`` streams and feeds the
controller the statuses it would send; it reads the ``ioin`` streams as a supervisor would. The
whole path with real supervisors and the real crun is tests/test_e2e_interactive.py.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest
import redis
from crane_common.proto import crane_pb2 as pb
from crane_common.states import JobState
from crane_kernel import iostream as io
from crane_kernel import messages as m
from crane_kernel.ctld.iorelay import IoRelay
from crane_kernel.ctld.service import spec_dict
from ctlrig import ROOT, Rig


class Requests:
    """The client's side of the stream: messages put here are what the session reads; ``close`` ends it."""

    _END = object()

    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()

    def put(self, **fields: Any) -> None:
        self.q.put(pb.CrunRequest(**fields))

    def close(self) -> None:
        self.q.put(self._END)

    def __iter__(self) -> Requests:
        return self

    def __next__(self) -> Any:
        item = self.q.get()
        if item is self._END:
            raise StopIteration
        return item


class Context:
    """What the session uses of a gRPC context: the callback run when the call ends."""

    def __init__(self) -> None:
        self.callbacks: list = []

    def add_callback(self, fn: Any) -> None:
        self.callbacks.append(fn)


class Client:
    """A session served in a thread; its replies collected in order."""

    def __init__(self, relay: IoRelay, start: Any) -> None:
        self.requests = Requests()
        self.requests.put(start=start)
        self.replies: list[Any] = []
        self.relay_gen = relay.serve(self.requests, Context(), ROOT, spec_dict)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for reply in self.relay_gen:
            self.replies.append(reply)

    def kinds(self) -> list[str]:
        return [r.WhichOneof("msg") for r in self.replies]

    def wait_for(self, kind: str, timeout: float = 10) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [r for r in self.replies if r.WhichOneof("msg") == kind]
            if found:
                return getattr(found[-1], kind)
            time.sleep(0.01)
        raise AssertionError(f"no {kind} reply; got {self.kinds()}")


@pytest.fixture()
def world(tmp_path: Any, redis_url: str) -> Any:
    rig = Rig(str(tmp_path / "state.db"), InteractiveTimeout=30.0)
    rig.all_up()
    r = redis.Redis.from_url(redis_url)
    relay = IoRelay(rig.ctl, r)
    yield rig, relay, r
    r.close()


def serve(relay: IoRelay, start: Any) -> Client:
    """A session for ``start``, served in its own thread."""
    return Client(relay, start)


def wait(pred: Any, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def out(r: Any, rig: Rig, node: str, job_id: int, step: int, entry: dict) -> None:
    r.xadd(io.out_key(rig.ctl.cluster, node, job_id, step), entry)


def test_a_crun_session_relays_output_in_order_and_ends_with_the_tasks_code(world):
    rig, relay, r = world
    client = serve(relay, pb.StepStart(job=pb.JobSpec(partition="debug", node_num=2), argv=["hostname"]))
    pending = client.wait_for("pending")
    rig.cycle()
    job = rig.ctl.jobs[pending.job_id]
    allocated = client.wait_for("allocated")
    assert list(allocated.nodes) == list(job.alloc_nodes) and allocated.ntasks == 2
    a, b = job.alloc_nodes
    out(r, rig, a, job.job_id, 0, io.output_entry(0, 1, b"one\n"))
    out(r, rig, a, job.job_id, 0, io.output_entry(0, 2, b"err\n"))
    out(r, rig, b, job.job_id, 0, io.output_entry(0, 1, b"forged\n"))   # task 0 does not run on b: dropped
    out(r, rig, b, job.job_id, 0, {b"k": b"?"})                        # malformed: dropped
    out(r, rig, b, job.job_id, 0, io.output_entry(1, 1, b"two\n"))
    out(r, rig, a, job.job_id, 0, io.exit_entry(0, 0))
    out(r, rig, b, job.job_id, 0, io.exit_entry(1, 256 + 9))
    out(r, rig, a, job.job_id, 0, io.end_entry(0))
    out(r, rig, b, job.job_id, 0, io.end_entry(256 + 9))
    for n, code in ((a, 0), (b, 256 + 9)):
        rig.feed(m.StepStatus(node=n, job_id=job.job_id, step_id=0, state="running", epoch=job.epoch))
        rig.feed(m.StepStatus(node=n, job_id=job.job_id, step_id=0, state="finished", exit_code=code,
                              epoch=job.epoch))
    ended = client.wait_for("ended")
    outputs = [(o.output.task, o.output.fd, o.output.data) for o in client.replies if o.WhichOneof("msg") == "output"]
    assert outputs == [(0, 1, b"one\n"), (0, 2, b"err\n"), (1, 1, b"two\n")]
    exits = sorted((x.task_exit.task, x.task_exit.exit_code) for x in client.replies
                   if x.WhichOneof("msg") == "task_exit")
    assert exits == [(0, 0), (1, 265)]
    assert ended.crun_exit == 137 and ended.status == JobState.Failed
    client.requests.close()
    wait(lambda: r.exists(io.out_key(rig.ctl.cluster, a, job.job_id, 0)) == 0)  # the session cleaned its streams


def test_stdin_signals_and_window_go_to_the_right_nodes_with_flow_control(world):
    rig, relay, r = world
    client = serve(relay, pb.StepStart(job=pb.JobSpec(partition="debug", node_num=2), argv=["cat"], pty=True))
    client.wait_for("pending")
    rig.cycle()
    alloc = client.wait_for("allocated")
    a, b = alloc.nodes
    job_id = alloc.job_id
    key_a, key_b = (io.in_key(rig.ctl.cluster, n, job_id, 0) for n in (a, b))
    client.requests.put(stdin=b"x" * (io.MAX_CHUNK + 10))   # split in two entries, both for task 0's node
    client.requests.put(signal=2)
    client.requests.put(winsize=pb.WindowSize(rows=40, cols=120))
    wait(lambda: r.xlen(key_a) == 4 and r.xlen(key_b) == 1)
    entries = [io.parse_in(f) for _, f in r.xrange(key_a)]
    assert [e.kind for e in entries] == ["i", "i", "s", "w"] and len(entries[0].data) == io.MAX_CHUNK
    assert (entries[3].rows, entries[3].cols) == (40, 120)
    assert io.parse_in(r.xrange(key_b)[0][1]).signum == 2
    for _ in range(io.WINDOW):                            # the node does not read: the stream fills up ...
        client.requests.put(stdin=b"y")
    time.sleep(0.5)
    assert r.xlen(key_a) == io.WINDOW                     # ... and the relay waits instead of adding more
    r.delete(key_a)                                       # the node reads it all
    wait(lambda: r.xlen(key_a) > 0)
    client.requests.close()                               # the client goes away: its job ends
    wait(lambda: rig.ctl.jobs[job_id].job_id in rig.ctl.job_end_request or rig.ctl.jobs[job_id].state != 1)
    job = rig.ctl.jobs[job_id]
    assert [t.step_id for t in rig.to(a, m.TerminateStep)] == [0]
    for n in (a, b):
        rig.feed(m.StepStatus(node=n, job_id=job_id, step_id=0, state="finished", exit_code=320, epoch=job.epoch))
    assert job.state == JobState.Cancelled and "client" in job.reason


def test_calloc_gets_the_allocations_variables_and_completes_when_the_shell_ends(world):
    rig, relay, r = world
    client = serve(relay, pb.StepStart(job=pb.JobSpec(partition="debug", node_num=1), allocate_only=True))
    client.wait_for("pending")
    rig.cycle()
    alloc = client.wait_for("allocated")
    assert alloc.env["CRANE_JOB_ID"] == str(alloc.job_id) and alloc.env["CRANE_JOB_NUM_NODES"] == "1"
    assert alloc.heartbeat >= 1
    client.requests.put(complete=0)
    ended = client.wait_for("ended")
    assert ended.status == JobState.Completed and ended.crun_exit == 0
    assert rig.ctl.jobs[alloc.job_id].state == JobState.Completed


def test_refusals_come_back_as_one_error_message(world):
    rig, relay, r = world
    client = serve(relay, pb.StepStart(job=pb.JobSpec(partition="nosuch"), argv=["true"]))
    err = client.wait_for("error")
    assert "nosuch" in err.reason and client.kinds() == ["error"]
    client = serve(relay, pb.StepStart(job_id=4242, argv=["true"]))
    assert "does not exist" in client.wait_for("error").reason


def test_a_user_cannot_hold_more_sessions_than_allowed(world):
    rig, relay, r = world
    relay.cfg = relay.cfg.model_copy(update={"MaxInteractiveStreamsPerUser": 1})
    first = serve(relay, pb.StepStart(job=pb.JobSpec(partition="debug"), allocate_only=True))
    first.wait_for("pending")
    second = serve(relay, pb.StepStart(job=pb.JobSpec(partition="debug"), allocate_only=True))
    assert "interactive sessions" in second.wait_for("error").reason
    first.requests.close()
