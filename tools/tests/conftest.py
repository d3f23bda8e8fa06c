"""Test fixtures: a private, real redis-server per test (never the shared one on 6379)."""

from crane_tools.testing import redis_server, redis_url  # noqa: F401 - fixtures
