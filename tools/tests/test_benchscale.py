"""The figures ``crane bench scale`` derives: sustained rates, histogram quantiles, the py-spy summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from crane_tools.benchscale import cycle_quantile, profile_summary, sustained


def test_benchmark_figures_from_samples() -> None:
    samples = [{"t": float(t), "launched": 100 * t} for t in range(11)]  # 100 jobs/s for 10 s
    assert sustained(samples, "launched", 1000) == pytest.approx(100.0)
    assert sustained(samples, "launched", 5000) is None  # never got there
    assert cycle_quantile([0.1, 1.0], [90, 9, 1], 0.5) == 0.1
    assert cycle_quantile([0.1, 1.0], [90, 9, 1], 0.995) == float("inf")
    assert cycle_quantile([0.1, 1.0], [0, 0, 0], 0.5) is None


def test_profile_summary_reads_py_spy_raw_stacks(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text("thread (1): bus;run (a.py:1);janitor (r.py:2) 30\n"
                   "thread (1): bus;run (a.py:1);poll (c.py:3) 10\n"
                   "thread (2): sched;cycle (y.py:4) 60\n")
    prof = profile_summary(str(raw))
    assert prof["samples"] == 100
    assert prof["threads"] == {"thread (2): sched": 60.0, "thread (1): bus": 40.0}
    assert prof["own_pct"]["janitor (r.py:2)"] == 30.0
    assert prof["total_pct"]["run (a.py:1)"] == 40.0
