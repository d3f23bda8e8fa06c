"""Fixtures for the cross-package end-to-end tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from crane_e2e import running_cluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Any:
    """A 3-node cluster shared by the tests of one module."""
    with running_cluster() as cluster:
        yield cluster
