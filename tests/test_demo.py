"""The README's first command: `crane demo --exit` runs the sample workload and every job ends as expected."""

from __future__ import annotations

import subprocess

import pytest
from crane_e2e import cli

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("flags", [[], ["--no-containers"]], ids=["default", "no-containers"])
def test_demo_exit(flags):
    proc = subprocess.run([cli("crane"), "demo", "--exit", *flags], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "All jobs ended as expected." in out
    for state in ("Completed", "Failed", "OutOfMemory", "ExceedTimeLimit", "Cancelled"):
        assert state in out
    assert "hello from cn0" in out
    assert "nodes=cn[" in out
    # the container job runs when this host can run a private containerd (root, containerd, runc, busybox)
    if flags:
        assert "Container job skipped: --no-containers." in out
    else:
        assert "hello from a container" in out or "Container job skipped:" in out
