"""The controller's scheduling-cycle histogram (``QueryServerInfo`` fields 12-14, read by the prometheus plugin)."""

from __future__ import annotations

from crane_kernel.ctld import cycle
from crane_kernel.ctld.cycle import CYCLE_BUCKETS


def test_cycle_times_land_in_their_buckets(ctld, monkeypatch):
    h = ctld()
    h.register_all()
    assert h.ctl.cycle_counts == [0] * (len(CYCLE_BUCKETS) + 1) and h.ctl.cycle_seconds_sum == 0
    durations = [0.003, 0.0025, 0.5, 99.0]  # 0.0025 is exactly a bound: "le" includes it
    ticks = iter(t for d in durations for t in (0.0, d))
    monkeypatch.setattr(cycle.time, "perf_counter", lambda: next(ticks))
    for _ in durations:
        h.ctl.schedule_cycle()
    counts = h.ctl.cycle_counts
    assert counts[CYCLE_BUCKETS.index(0.005)] == 1
    assert counts[CYCLE_BUCKETS.index(0.0025)] == 1
    assert counts[CYCLE_BUCKETS.index(0.5)] == 1
    assert counts[-1] == 1  # above the highest bound
    assert sum(counts) == h.ctl.cycles == 4
    assert abs(h.ctl.cycle_seconds_sum - sum(durations)) < 1e-6
    assert list(CYCLE_BUCKETS) == sorted(CYCLE_BUCKETS)
