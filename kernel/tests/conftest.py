"""Kernel test fixtures: a private, real redis-server per test (never the shared one on 6379)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from crane_kernel.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server on a free 127.0.0.1 port, stopped after the test."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the test's private redis-server."""
    return redis_server.url
