"""``crane bench sched --cycles``: consecutive controller-like cycles, fresh view vs one incremental view."""

from __future__ import annotations

import json

import pytest
from crane_tools import schedbench, schedcycles


def test_cycles_mode_reports_both_views_on_the_same_events(capsys):
    pytest.importorskip("crane_sched_backfill")
    rc = schedbench.main(["--nodes", "64", "--jobs", "600", "--scheduler", "easy", "--cycles", "6",
                          "--workload", "whole", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["valid"] and res["cycles"] == 6
    fresh, inc = res["fresh"], res["incremental"]
    assert len(fresh["per_cycle_ms"]) == len(inc["per_cycle_ms"]) == 6
    assert fresh["started"] == inc["started"] > 0 and fresh["ended"] == inc["ended"]   # same decisions
    assert inc["paths"] == {"pool": 6} and "speedup" in res


def test_incremental_view_lets_backfill_keep_its_pool():
    pytest.importorskip("crane_sched_backfill")
    res = schedcycles.run_cycles(32, 300, "easy", cycles=5, mode="incremental", workload="whole")
    assert res["valid"] and res["paths"] == {"pool": 5}
    mixed = schedcycles.run_cycles(40, 400, "fifo", cycles=4, mode="fresh", workload="mixed")
    assert mixed["valid"] and mixed["started"] > 0


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown view mode"):
        schedcycles.run_cycles(4, 4, "fifo", mode="stale")
