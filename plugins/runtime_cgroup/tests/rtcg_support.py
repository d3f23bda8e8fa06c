"""Constants shared by the cgroup runtime tests (a uniquely named module, importable next to conftest)."""

from __future__ import annotations

import os
from collections.abc import Callable

from crane_kernel.runtime import StepSpec

CGROUP_ROOT = "/sys/fs/cgroup"
PREFIX = f"crane_test_{os.getpid()}"   # unique per test run: never collides with other work
NODE = "node1"
TEST_USER = "crane_rt_test"
TEST_GROUP = "crane_rt_grp"

StepFactory = Callable[..., StepSpec]


def v1_settings(**extra: object) -> dict[str, object]:
    """The plugin settings of the real-v1 tests (the per-run prefix), plus ``extra`` (e.g. ``PidsMax=20``)."""
    return {"Version": "auto", "Root": CGROUP_ROOT, "Prefix": PREFIX, **extra}
