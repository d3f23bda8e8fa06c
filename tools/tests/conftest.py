"""Test fixtures: a private, real redis-server per test (never the shared one on 6379)."""

import sys
from pathlib import Path

from crane_tools.testing import redis_server, redis_url  # noqa: F401 - fixtures

sys.path.insert(0, str(Path(__file__).parent))  # the tests' shared helpers (simcheck), as tests/conftest.py does
