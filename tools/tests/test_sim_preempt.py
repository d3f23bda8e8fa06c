"""``crane sim`` with preemption: two classes on a slice of the KTH trace, every mode, invariants on every pass."""

from __future__ import annotations

from pathlib import Path
from statistics import mean

import pytest
from crane_tools.sim import run_sim
from crane_tools.sim.cli import main
from simcheck import Checker

KTH = Path("/work/shared/traces/KTH-SP2-1996-2.1-cln.swf.gz")
SLICE = 1500
EVERY = 10

pytestmark = pytest.mark.skipif(not KTH.exists(), reason="KTH trace not available")


@pytest.fixture(scope="module")
def baseline():
    """The same slice without preemption: the high class's wait when nobody makes room for it."""
    res = run_sim(str(KTH), scheduler="fifo", max_jobs=SLICE, keep_schedule=True)
    rows = res["schedule"]
    return mean(row[2] - row[1] for i, row in enumerate(rows) if i % EVERY == 0)


@pytest.mark.parametrize("mode", ["CANCEL", "REQUEUE", "SUSPEND"])
def test_the_high_class_waits_less_and_no_node_is_ever_over_allocated(mode, baseline):
    checker = Checker()
    res = run_sim(str(KTH), scheduler="fifo", max_jobs=SLICE, preempt_every=EVERY, preempt_mode=mode,
                  observer=checker)
    pre, classes = res["preemption"], res["classes"]
    assert pre["preempted_total"] > 0 and pre["preemptions"][mode] == pre["preempted_total"]
    assert classes["high"]["mean_wait"] < baseline / 2, (classes, baseline)
    assert classes["high"]["mean_wait"] < classes["low"]["mean_wait"]
    assert classes["high"]["jobs"] == len(range(0, SLICE, EVERY))
    if mode == "CANCEL":  # its victims leave for good, each counted once
        assert pre["cancelled_by_preemption"] == pre["preempted_total"] and pre["lost_work"] > 0
        assert res["jobs"] + pre["cancelled_by_preemption"] == SLICE
    else:  # every job runs to its end in the end
        assert res["jobs"] == SLICE and res["unstarted"] == 0 and pre["cancelled_by_preemption"] == 0
    if mode == "SUSPEND":
        assert pre["lost_work"] == 0  # frozen, not restarted
    if mode == "REQUEUE":
        assert pre["lost_work"] > 0


def test_the_command_line_reports_it(capsys):
    assert main([str(KTH), "--scheduler", "fifo", "--max-jobs", "300", "--preempt-every", "5",
                 "--preempt-mode", "suspend", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "mode SUSPEND" in out and "high " in out and "low " in out
    assert main([str(KTH), "--max-jobs", "10", "--preempt-every", "0"]) == 1
    assert "--preempt-every must be >= 1" in capsys.readouterr().err


def test_backfilling_with_preemption_keeps_every_invariant():
    checker = Checker()
    res = run_sim(str(KTH), scheduler="easy", max_jobs=400, preempt_every=EVERY, preempt_mode="REQUEUE",
                  observer=checker)
    assert res["preemption"]["preempted_total"] > 0 and res["jobs"] == 400 and checker.passes > 0
