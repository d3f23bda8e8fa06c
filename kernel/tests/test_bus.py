"""Bus messages and Redis-streams consumer: run against a real private redis-server."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from crane_kernel.bus import FIELD, Bus, Consumer
from crane_kernel.errors import BusMessageError
from crane_kernel.events import JobEvent, JobRecord, NodeEvent, StepEvent
from crane_kernel.messages import (
    MESSAGE_TYPES,
    BusMessage,
    FreeJob,
    JobControlResult,
    LaunchStep,
    NodeHeartbeat,
    NodeRegister,
    ResumeJob,
    SignalJob,
    StartStep,
    StepStatus,
    SuspendJob,
    TerminateStep,
    UpdateStep,
    decode,
    encode,
)
from crane_tools.redis_server import RedisServer

Batch = list[tuple[str, BusMessage]]

SAMPLES: list[BusMessage] = [
    NodeRegister(
        node="cn01",
        cpus=8.0,
        mem=16 << 30,
        gres={"gpu": 2},
        running=[11, 12],
        finished=[{"job_id": 10, "exit_code": 0}],
        boot_id="b00t",
        pid=4242,
    ),
    NodeHeartbeat(node="cn01", running=[11, 12], time=1700000000.5),
    StepStatus(node="cn01", job_id=11, step_id=1, state="running", epoch=2),
    StepStatus(node="cn01", job_id=12, state="finished", exit_code=137, oom=True, cpu_time_ms=1500, mem_peak=1 << 20),
    StepStatus(node="cn02", job_id=13, state="failed_to_start", exit_code=1, reason="no such file: /bin/nope"),
    LaunchStep(job_id=11, step_id=2, spec={"argv": ["/bin/echo", "hi"], "cpus": 1.5, "env": {"A": "b"}}, epoch=3),
    StartStep(job_id=11, step_id=2, epoch=3, spec={
        "uid": 1000, "gid": 1000, "argv": ["hostname"], "task_ids": [2, 3], "ntasks": 4, "node_index": 1,
        "nodes": ["cn01", "cn02"], "cpus": 2.0, "pty": False, "stdin_task": 0}),
    TerminateStep(job_id=11, reason="timeout", epoch=3),
    TerminateStep(job_id=11, reason="cancel", step_id=2),
    TerminateStep(job_id=99, reason="orphan"),
    FreeJob(job_id=11),
    FreeJob(job_id=11, step_id=2),
    UpdateStep(job_id=11, time_limit=300, epoch=3),
    SuspendJob(job_id=11, epoch=3),
    ResumeJob(job_id=11, epoch=3),
    SignalJob(job_id=11, signum=10, batch_only=True, epoch=3),
    JobControlResult(node="cn01", job_id=11, step_id=1, epoch=3, action="suspend", ok=False, reason="no freezer"),
    JobEvent(kind="job.submitted", job_id=11, seq=1, job=JobRecord(job_id=11, user="alice", partition="cpu")),
    JobEvent(kind="job.ended", job_id=11, seq=2, job=JobRecord(job_id=11, state="Completed", exit_code=0)),
    StepEvent(kind="step.ended", job_id=11, seq=3, state="Completed", nodes=["cn01"]),
    NodeEvent(kind="node.down", node="cn02", seq=4, reason="heartbeat timeout"),
]


class Recorder:
    """A handler that records its batches and can be told to fail."""

    def __init__(self, fail: Callable[[Batch], bool] = lambda batch: False) -> None:
        self.batches: list[Batch] = []
        self.fail = fail

    def __call__(self, batch: Batch) -> None:
        self.batches.append(list(batch))
        if self.fail(batch):
            raise RuntimeError("database is locked")

    @property
    def messages(self) -> list[BusMessage]:
        return [m for b in self.batches for _, m in b]


class _Died(BaseException):
    """Simulates a process dying inside its handler (not an Exception: the consumer does not catch it)."""


def _consumer(bus: Bus, handler: Callable[[Batch], None], name: str = "c1", **kw: object) -> Consumer:
    kw.setdefault("block_ms", 0)
    return Consumer(bus, bus.ctld_stream(), "ctld", name, handler, **kw)  # type: ignore[arg-type]


def _dead_letters(bus: Bus, stream: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in bus.redis.xrange(bus.dead_letter_stream(stream))]


@pytest.fixture
def bus(redis_url: str) -> Iterator[Bus]:
    """A Bus on the test's private Redis."""
    b = Bus(redis_url, "test")
    yield b
    b.close()


# --- messages ---------------------------------------------------------------------------------


def test_every_command_kind_has_a_sample() -> None:
    assert set(MESSAGE_TYPES) <= {m.kind for m in SAMPLES}


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.kind)
def test_encode_decode_round_trip(msg: BusMessage) -> None:
    raw = encode(msg)
    assert raw.startswith(b'{"kind":"')
    assert raw == json.dumps(json.loads(raw), separators=(",", ":")).encode()  # compact
    back = decode(raw)
    assert type(back) is type(msg) and back == msg


def test_messages_have_unique_ids_and_version() -> None:
    ids = {FreeJob(job_id=1).id for _ in range(1000)}
    assert len(ids) == 1000
    assert FreeJob(job_id=1).v == 1


def test_decode_accepts_other_key_orders() -> None:
    msg = decode(b'{"job_id": 5, "id": "x", "v": 1, "kind": "free_job"}')
    assert msg == FreeJob(job_id=5, id="x")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "malformed JSON"),
        (b'{"kind":"free_job","v":1,', "malformed JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"job_id": 1}', "'kind'"),
        (b'{"kind":"warp_drive","v":1}', "unknown message kind 'warp_drive'"),
        (b'{"kind":"free_job","v":2,"id":"a","job_id":1}', "unsupported schema version 2"),
        (b'{"kind":"free_job","v":9,"id":"a"}', "unsupported schema version 9"),
        (b'{"kind":"free_job","v":1,"id":"a","job_id":"x"}', "invalid free_job message: job_id"),
        (b'{"kind":"step_status","v":1,"node":"n","job_id":1,"state":"zombie"}', "state"),
        (b'{"kind":"job.","v":1,"job_id":1}', "unknown job event"),
        (b"\xff\xfe", "malformed JSON"),
    ],
)
def test_decode_rejects_with_one_line_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(BusMessageError) as info:
        decode(raw)
    assert reason in str(info.value) and "\n" not in str(info.value)


# --- publishing -------------------------------------------------------------------------------


def test_key_names(bus: Bus) -> None:
    assert bus.ctld_stream() == "crane:test:ctld"
    assert bus.node_stream("cn01") == "crane:test:node:cn01"
    assert bus.events_stream() == "crane:test:events"
    assert bus.dead_letter_stream(bus.ctld_stream()) == "crane:test:ctld:dead"


def test_publish_one_and_many(bus: Bus) -> None:
    stream = bus.ctld_stream()
    one = bus.publish(stream, FreeJob(job_id=1))
    many = bus.publish(stream, [FreeJob(job_id=i) for i in range(2, 252)])
    assert len(one) == 1 and len(many) == 250
    entries = bus.redis.xrange(stream)
    assert [e[0].decode() for e in entries] == one + many
    assert [decode(f[FIELD]).job_id for _, f in entries] == list(range(1, 252))


def test_publish_maxlen_trims(bus: Bus) -> None:
    stream = bus.events_stream()
    for _ in range(20):
        events = [JobEvent(kind="job.started", job_id=i, job=JobRecord(job_id=i)) for i in range(100)]
        bus.publish(stream, events, maxlen=100)
    assert 100 <= bus.redis.xlen(stream) < 2000


def test_publish_many_fans_out_in_one_pipeline(bus: Bus) -> None:
    nodes = [f"cn{i:02d}" for i in range(5)]
    items = [(bus.node_stream(n), LaunchStep(job_id=i, spec={"argv": ["true"]})) for i, n in enumerate(nodes)]
    items.append((bus.events_stream(), JobEvent(kind="job.started", job_id=0, job=JobRecord(job_id=0))))
    ids = bus.publish_many(items)
    assert len(ids) == 6
    for i, n in enumerate(nodes):
        (entry,) = bus.redis.xrange(bus.node_stream(n))
        assert decode(entry[1][FIELD]) == items[i][1]
    assert bus.redis.xlen(bus.events_stream()) == 1


# --- consuming --------------------------------------------------------------------------------


def test_round_trip_every_kind_through_redis(bus: Bus) -> None:
    rec = Recorder()
    cons = _consumer(bus, rec)
    bus.publish(bus.ctld_stream(), SAMPLES)
    assert cons.poll_once() == len(SAMPLES)
    assert rec.messages == SAMPLES
    assert all(type(a) is type(b) for a, b in zip(rec.messages, SAMPLES, strict=True))


def test_handler_gets_whole_batch_once_then_acks(bus: Bus) -> None:
    rec = Recorder()
    cons = _consumer(bus, rec, batch=500)
    ids = bus.publish(bus.ctld_stream(), [NodeHeartbeat(node=f"n{i}") for i in range(300)])
    assert cons.poll_once() == 300
    assert len(rec.batches) == 1 and [eid for eid, _ in rec.batches[0]] == ids
    assert bus.redis.xpending(bus.ctld_stream(), "ctld")["pending"] == 0
    assert cons.poll_once() == 0 and len(rec.batches) == 1


def test_batch_size_limits_reads(bus: Bus) -> None:
    rec = Recorder()
    cons = _consumer(bus, rec, batch=40)
    bus.publish(bus.ctld_stream(), [FreeJob(job_id=i) for i in range(100)])
    assert [cons.poll_once() for _ in range(4)] == [40, 40, 20, 0]
    assert [m.job_id for m in rec.messages] == list(range(100))


def test_failed_handler_means_redelivery_then_dead_letter(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(fail=lambda batch: True)
    cons = _consumer(bus, rec, max_deliveries=3)
    (entry_id,) = bus.publish(bus.ctld_stream(), FreeJob(job_id=7))
    with caplog.at_level(logging.WARNING, logger="crane_kernel.bus"):
        for _ in range(3):
            assert cons.poll_once() == 0
            assert bus.redis.xpending(bus.ctld_stream(), "ctld")["pending"] == 1  # not acked
        assert len(rec.batches) == 3  # delivered three times
        assert cons.poll_once() == 1  # fourth delivery > max_deliveries: dead-lettered, not handled
    assert len(rec.batches) == 3
    assert bus.redis.xpending(bus.ctld_stream(), "ctld")["pending"] == 0
    (dead,) = _dead_letters(bus, bus.ctld_stream())
    assert decode(dead[FIELD]).job_id == 7
    assert dead[b"dlq_entry"].decode() == entry_id
    assert b"delivered 4 times (max 3)" in dead[b"dlq_reason"] and b"database is locked" in dead[b"dlq_reason"]
    assert any(entry_id in r.getMessage() and "dead-lettered" in r.getMessage() for r in caplog.records)
    assert cons.handler_failures == 3 and cons.dead_lettered == 1


def test_transient_failure_is_retried_and_succeeds(bus: Bus) -> None:
    failures = iter([True, False])
    rec = Recorder(fail=lambda batch: next(failures, False))
    cons = _consumer(bus, rec)
    bus.publish(bus.ctld_stream(), [FreeJob(job_id=i) for i in range(10)])
    assert cons.poll_once() == 0 and cons.last_poll_failed
    assert cons.poll_once() == 10 and not cons.last_poll_failed
    assert [len(b) for b in rec.batches] == [10, 10]
    assert bus.redis.xpending(bus.ctld_stream(), "ctld")["pending"] == 0


def test_one_poison_entry_does_not_sink_its_batch(bus: Bus) -> None:
    rec = Recorder(fail=lambda batch: any(getattr(m, "job_id", 0) == 666 for _, m in batch))
    cons = _consumer(bus, rec, max_deliveries=3)
    bus.publish(bus.ctld_stream(), [FreeJob(job_id=1), FreeJob(job_id=666), FreeJob(job_id=2)])
    for _ in range(8):
        cons.poll_once()
    handled = [m.job_id for b in rec.batches if not any(m.job_id == 666 for _, m in b) for _, m in b]
    assert sorted(handled) == [1, 2]
    (dead,) = _dead_letters(bus, bus.ctld_stream())
    assert decode(dead[FIELD]).job_id == 666
    bus.publish(bus.ctld_stream(), FreeJob(job_id=3))
    assert cons.poll_once() == 1 and rec.messages[-1].job_id == 3


def test_malformed_entries_go_to_dead_letter_and_consumer_goes_on(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    stream = bus.ctld_stream()
    rec = Recorder()
    cons = _consumer(bus, rec)
    bus.publish(stream, FreeJob(job_id=1))
    bad_ids = [
        bus.redis.xadd(stream, {FIELD: b"\x00garbage"}).decode(),
        bus.redis.xadd(stream, {b"other": b"field"}).decode(),
        bus.redis.xadd(stream, {FIELD: b'{"kind":"warp_drive","v":1}'}).decode(),
        bus.redis.xadd(stream, {FIELD: b'{"kind":"free_job","v":2,"id":"x","job_id":1}'}).decode(),
    ]
    bus.publish(stream, FreeJob(job_id=2))
    with caplog.at_level(logging.WARNING, logger="crane_kernel.bus"):
        assert cons.poll_once() == 6
    assert [m.job_id for m in rec.messages] == [1, 2]
    dead = _dead_letters(bus, stream)
    assert [d[b"dlq_entry"].decode() for d in dead] == bad_ids
    reasons = [d[b"dlq_reason"].decode() for d in dead]
    assert "malformed JSON" in reasons[0]
    assert "no 'm' field" in reasons[1] and dead[1][b"other"] == b"field"
    assert "unknown message kind" in reasons[2]
    assert "schema version 2" in reasons[3]
    assert dead[0][FIELD] == b"\x00garbage"
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for entry_id in bad_ids:
        assert sum(entry_id in line for line in lines) == 1
    assert bus.redis.xpending(stream, "ctld")["pending"] == 0
    bus.publish(stream, FreeJob(job_id=3))
    assert cons.poll_once() == 1 and rec.messages[-1].job_id == 3


def test_restarted_consumer_rereads_its_own_pending_entries_first(bus: Bus) -> None:
    def die(batch: Batch) -> None:
        raise _Died

    first = _consumer(bus, die, name="cn01")
    bus.publish(bus.ctld_stream(), [FreeJob(job_id=1), FreeJob(job_id=2)])
    with pytest.raises(_Died):
        first.poll_once()
    bus.publish(bus.ctld_stream(), FreeJob(job_id=3))
    rec = Recorder()
    again = _consumer(bus, rec, name="cn01")
    assert again.poll_once() == 2  # its own pending entries, re-read from id 0
    assert again.poll_once() == 1  # then new ones
    assert [[m.job_id for _, m in b] for b in rec.batches] == [[1, 2], [3]]


def test_xautoclaim_hands_a_dead_consumers_entries_to_another(bus: Bus) -> None:
    def die(batch: Batch) -> None:
        raise _Died

    a = _consumer(bus, die, name="a")
    bus.publish(bus.ctld_stream(), [FreeJob(job_id=1), FreeJob(job_id=2)])
    with pytest.raises(_Died):
        a.poll_once()
    rec = Recorder()
    b = _consumer(bus, rec, name="b", claim_idle_ms=300)
    assert b.poll_once() == 0  # not B's: still pending in A
    assert b.janitor() == 0  # not idle long enough yet
    time.sleep(0.35)
    assert b.janitor() == 2
    assert [m.job_id for m in rec.messages] == [1, 2]
    assert bus.redis.xpending(bus.ctld_stream(), "ctld")["pending"] == 0


def test_janitor_dead_letters_entries_delivered_too_often(bus: Bus) -> None:
    def die(batch: Batch) -> None:
        raise _Died

    bus.publish(bus.ctld_stream(), FreeJob(job_id=1))
    for name in ("a", "b"):  # two consumers die on the same entry
        c = _consumer(bus, die, name=name, claim_idle_ms=0, max_deliveries=2)
        with pytest.raises(_Died):
            c.poll_once() if name == "a" else c.janitor()
    rec = Recorder()
    janitor = _consumer(bus, rec, name="c", claim_idle_ms=0, max_deliveries=2)
    assert janitor.janitor() == 1
    assert rec.batches == []
    (dead,) = _dead_letters(bus, bus.ctld_stream())
    assert b"delivered 3 times (max 2)" in dead[b"dlq_reason"]


def test_consumer_recreates_a_lost_group(bus: Bus) -> None:
    rec = Recorder()
    cons = _consumer(bus, rec)
    bus.publish(bus.ctld_stream(), FreeJob(job_id=1))
    assert cons.poll_once() == 1
    bus.redis.flushall()  # Redis lost everything
    bus.publish(bus.ctld_stream(), FreeJob(job_id=2))
    polls = [cons.poll_once() for _ in range(3)]
    assert sum(polls) == 1 and [m.job_id for m in rec.messages] == [1, 2]


def _wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_run_survives_redis_restart_without_data(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus = Bus(redis_server.url, "test")
    rec = Recorder()
    cons = Consumer(bus, bus.ctld_stream(), "ctld", "c1", rec, block_ms=200, janitor_interval=0.1)
    stop = threading.Event()
    thread = threading.Thread(target=cons.run, args=(stop,), daemon=True)
    second: RedisServer | None = None
    with caplog.at_level(logging.INFO, logger="crane_kernel.bus"):
        thread.start()
        try:
            bus.publish(bus.ctld_stream(), FreeJob(job_id=1))
            assert _wait_for(lambda: len(rec.messages) == 1)
            port = redis_server.port
            redis_server.stop()
            time.sleep(0.3)  # the consumer notices the outage
            second = RedisServer(tmp_path / "redis2", port=port).start()
            bus.publish(bus.ctld_stream(), [FreeJob(job_id=2), FreeJob(job_id=3)])
            assert _wait_for(lambda: len(rec.messages) == 3)
            bus.publish(bus.ctld_stream(), FreeJob(job_id=4))
            assert _wait_for(lambda: len(rec.messages) == 4)
        finally:
            stop.set()
            thread.join(5)
            if second is not None:
                second.stop()
    assert not thread.is_alive()
    assert [m.job_id for m in rec.messages] == [1, 2, 3, 4]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "is gone" in text  # group recreated


def test_run_stops_promptly_and_backs_off_on_failing_handler(bus: Bus) -> None:
    rec = Recorder(fail=lambda batch: True)
    cons = _consumer(bus, rec, block_ms=100, max_deliveries=1000)
    bus.publish(bus.ctld_stream(), FreeJob(job_id=1))
    stop = threading.Event()
    thread = threading.Thread(target=cons.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(0.5)
    stop.set()
    thread.join(3)
    assert not thread.is_alive()
    assert 2 <= len(rec.batches) <= 6  # retried with backoff (0.1, 0.2, 0.4 s ...), not in a hot loop


def test_block_ms_must_be_below_socket_timeout(redis_url: str) -> None:
    bus = Bus(redis_url, "test", socket_timeout=1.0)
    with pytest.raises(ValueError, match="socket timeout"):
        Consumer(bus, bus.ctld_stream(), "ctld", "c", Recorder(), block_ms=1000)


def test_trim_acked_removes_only_settled_entries(redis_url):
    from crane_kernel import messages as msgs
    from crane_kernel.bus import Bus, Consumer

    bus = Bus(redis_url, "trim")
    stream = bus.node_stream("n1")
    seen = []
    c = Consumer(bus, stream, "g", "n1", lambda batch: seen.extend(batch), block_ms=0, batch=5)
    bus.publish(stream, [msgs.FreeJob(job_id=i) for i in range(10)])
    c.poll_once()                      # 5 handled and acked, 5 not yet delivered
    c.trim_acked()
    left = bus.redis.xrange(stream)
    assert len(left) == 5              # the 5 settled went, the undelivered stay
    c.poll_once()
    assert len(seen) == 10


def test_publish_fresh_speaks_resp_and_is_consumed(redis_url):
    from crane_kernel import messages as msgs
    from crane_kernel.bus import Bus, Consumer

    bus = Bus(redis_url, "fresh")
    got = []
    c = Consumer(bus, bus.ctld_stream(), "g", "c", lambda batch: got.extend(m for _, m in batch), block_ms=0)
    entry = bus.publish_fresh(bus.ctld_stream(), msgs.StepStatus(node="n1", job_id=7, state="finished", exit_code=3))
    assert "-" in entry
    c.poll_once()
    assert [(m.job_id, m.exit_code) for m in got] == [(7, 3)]
    bad = Bus("redis://127.0.0.1:1/0", "fresh")
    import pytest

    with pytest.raises(ConnectionError):
        bad.publish_fresh(bad.ctld_stream(), msgs.FreeJob(job_id=1))


def test_the_janitor_of_many_streams_claims_and_trims_each_in_pipelined_round_trips(redis_url):
    """A consumer of 50 streams: stale entries of a dead consumer are claimed on every stream, settled ones
    trimmed, undelivered ones kept, and one pass makes a few round trips in all, not 4 per stream."""
    from crane_kernel import messages as msgs
    from crane_kernel.bus import Bus, Consumer

    bus = Bus(redis_url, "many")
    streams = [bus.node_stream(f"n{i}") for i in range(50)]

    def die(batch: Batch) -> None:
        raise _Died

    dead = Consumer(bus, streams, "g", "dead", die, block_ms=0, batch=1)
    for s in streams:
        bus.publish(s, [msgs.FreeJob(job_id=1), msgs.FreeJob(job_id=2)])
    with pytest.raises(_Died):  # the dead one takes the first entry of every stream and never acks it
        dead.poll_once()
    assert all(bus.redis.xpending(s, "g")["pending"] == 1 for s in streams)
    rec = Recorder()
    live = Consumer(bus, streams, "g", "live", rec, block_ms=0, claim_idle_ms=0)
    calls = []
    real = live._r.pipeline

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    live._r.pipeline = counting
    assert live.janitor() == len(streams)  # every stream's stale entry claimed and handled
    assert len(calls) <= 8, len(calls)  # claims, the batch's delivery counts and acks, groups, pending, trims
    assert all(bus.redis.xpending(s, "g")["pending"] == 0 for s in streams)
    assert all(len(bus.redis.xrange(s)) == 1 for s in streams)  # the handled one trimmed, the undelivered kept
