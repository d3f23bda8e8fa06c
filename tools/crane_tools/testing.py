"""pytest fixtures for tests that need a real Redis: a private redis-server per test.

Import them into a ``conftest.py`` (``from crane_tools.testing import redis_server, redis_url``).
Never the shared server on 6379: each test gets its own on a free 127.0.0.1 port.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crane_tools.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server on a free 127.0.0.1 port, stopped after the test."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the test's private redis-server."""
    return redis_server.url
