"""``crane bench containers``: registered, argument checks, a plain refusal where containers cannot run, and a
short real run where they can (root, containerd, runc, busybox-static and the cri runtime)."""

from __future__ import annotations

import json
from typing import Any

import pytest


def test_bench_lists_containers(capsys: Any) -> None:
    from crane_tools import bench

    assert bench.main(["--help"]) == 0
    assert "containers" in capsys.readouterr().out


def test_bad_arguments() -> None:
    from crane_tools import benchcontainers

    assert benchcontainers.main(["--runs", "0"]) == 2


def test_refuses_plainly_without_containerd(monkeypatch: Any, capsys: Any) -> None:
    from crane_tools import benchcontainers, demo

    monkeypatch.setattr(demo, "container_support", lambda: (None, "no containerd here"))
    assert benchcontainers.main(["--json"]) == 1
    assert "no containerd here" in capsys.readouterr().err


def test_short_real_run(capsys: Any) -> None:
    from crane_tools import benchcontainers, demo

    if demo.container_support()[0] is None:
        pytest.skip(f"container jobs cannot run here: {demo.container_support()[1]}")
    assert benchcontainers.main(["--runs", "2", "--jobs", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["container_start_median_ms"] > 0 and out["plain_drain_jobs_per_s"] > 0
    assert all(set(r["states"]) == {"Completed"} for r in out["drain_rounds"])


def test_container_support_says_why_not(monkeypatch: Any) -> None:
    from crane_tools import containerd, demo

    monkeypatch.setattr(containerd, "available", lambda: False)
    monkeypatch.setattr(containerd, "unavailable_reason", lambda: "runc is not installed")
    assert demo.container_support() == (None, "runc is not installed")
