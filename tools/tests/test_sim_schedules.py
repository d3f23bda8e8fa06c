"""Hand-made traces with hand-computed schedules: FIFO, EASY and conservative start times, exactly."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from crane_tools.sim import reference, run_sim


def _swf(rows: list[tuple[int, int, int, int, int]], procs: int) -> str:
    """SWF text for rows of (job, submit, run, size, estimate)."""
    lines = [f"; MaxProcs: {procs}", "; Note: hand-made"]
    for job, submit, run, size, est in rows:
        lines.append(f"{job} {submit} -1 {run} {size} -1 -1 {size} {est} -1 1 1 1 -1 1 1 -1 -1")
    return "\n".join(lines) + "\n"


def _starts(path: Path, scheduler: str, **kw: object) -> dict[int, float]:
    res = run_sim(str(path), scheduler=scheduler, keep_schedule=True, **kw)
    return {row[0]: row[2] for row in res["schedule"]}


def _have(name: str) -> bool:
    return name in {ep.name for ep in entry_points(group="crane.scheduler")}


# P = 4. J1 holds 3 procs for 100 s. J2 (3 procs) is blocked: EASY reserves it at 100 with 1
# processor spare. J3 (4 procs) must wait. J4 (1 proc, 300 s) uses the spare processor: EASY
# starts it at once (it delays J3 to 303, which EASY allows), conservative refuses because it
# would delay J3's reservation [200, 300) and reserves it at 300. J5 (1 proc, 50 s): conservative
# starts it at 4 on the processor J4 did not take; EASY has none left at 4 and backfills it at
# 200, ending by J3's shadow time 303.
CASE_A = [(1, 0, 100, 3, 100), (2, 1, 100, 3, 100), (3, 2, 100, 4, 100), (4, 3, 300, 1, 300),
          (5, 4, 50, 1, 50)]
EXPECT_A = {
    "fifo": {1: 0, 2: 100, 3: 200, 4: 300, 5: 300},
    "easy": {1: 0, 2: 100, 3: 303, 4: 3, 5: 200},
    "conservative": {1: 0, 2: 100, 3: 200, 4: 300, 5: 4},
}

# P = 2: completions before the pass (J2 starts at 10), run time capped at the estimate (J3 ends
# at 35, not 115), skipped jobs (too large, unknown size, negative run), a 0-second job (J7),
# and a job whose estimate is far too long (J8 cannot backfill before J9's... no reservation needed).
CASE_B = [(1, 0, 10, 2, 10), (2, 10, 5, 2, 5), (3, 11, 100, 1, 20), (4, 12, 10, 3, 10),
          (6, 14, -1, 1, 10), (7, 16, 0, 1, 0), (8, 17, 30, 2, 40)]
EXPECT_B = {2: 10, 1: 0, 3: 15, 7: 16, 8: 35}

# P = 4, estimates 2x the run time. J1 (4 procs) runs 0-50 (estimate 100). J2 (2 procs, est 100)
# and J3 (4 procs, est 100) queue. At 50 J1 ends early: J2 starts; J3 reserved at 150 (J2's
# estimated end); J4 (2 procs, est 40, submit 20) backfills at 50 in every backfill mode; FIFO
# keeps it behind J3.
CASE_C = [(1, 0, 50, 4, 100), (2, 10, 50, 2, 100), (3, 15, 50, 4, 100), (4, 20, 20, 2, 40)]
EXPECT_C = {
    "fifo": {1: 0, 2: 50, 3: 100, 4: 150},
    "easy": {1: 0, 2: 50, 3: 100, 4: 50},
    "conservative": {1: 0, 2: 50, 3: 100, 4: 50},
}


@pytest.mark.parametrize("scheduler", ["fifo", "easy", "conservative"])
def test_case_a(tmp_path: Path, scheduler: str) -> None:
    if not _have(scheduler):
        pytest.skip(f"scheduler {scheduler!r} is not installed")
    path = tmp_path / "a.swf"
    path.write_text(_swf(CASE_A, 4))
    assert _starts(path, scheduler) == EXPECT_A[scheduler]


@pytest.mark.parametrize("scheduler", ["easy", "conservative"])
def test_case_a_node_level_path(tmp_path: Path, scheduler: str) -> None:
    """The general (node-level) path reaches the same schedule on single-processor nodes."""
    path = tmp_path / "a.swf"
    path.write_text(_swf(CASE_A, 4))
    assert _starts(path, scheduler, scheduler_config={"fast_path": False}) == EXPECT_A[scheduler]


@pytest.mark.parametrize("scheduler", ["fifo", "easy", "conservative"])
def test_case_b_model_details(tmp_path: Path, scheduler: str) -> None:
    if not _have(scheduler):
        pytest.skip(f"scheduler {scheduler!r} is not installed")
    path = tmp_path / "b.swf"
    path.write_text(_swf(CASE_B, 2))
    res = run_sim(str(path), scheduler=scheduler, keep_schedule=True)
    assert res["skipped"] == 2  # J4: 3 > 2 procs; J6: negative run time
    assert {row[0]: row[2] for row in res["schedule"]} == EXPECT_B
    assert res["makespan"] == 35 + 30 - 0  # J8 runs 35..65
    assert res["passes"] >= 6


@pytest.mark.parametrize("scheduler", ["fifo", "easy", "conservative"])
def test_case_c_early_end(tmp_path: Path, scheduler: str) -> None:
    if not _have(scheduler):
        pytest.skip(f"scheduler {scheduler!r} is not installed")
    path = tmp_path / "c.swf"
    path.write_text(_swf(CASE_C, 4))
    assert _starts(path, scheduler) == EXPECT_C[scheduler]


@pytest.mark.parametrize("case,expect,procs", [(CASE_A, EXPECT_A, 4), (CASE_C, EXPECT_C, 4)])
def test_reference_agrees(case: list, expect: dict, procs: int) -> None:
    jobs = sorted(((j, s, min(r, e), z, e) for j, s, r, z, e in case), key=lambda t: (t[1], t[0]))
    for policy, want in expect.items():
        assert reference.simulate(jobs, procs, policy) == want, policy


def test_metrics_of_case_a(tmp_path: Path) -> None:
    path = tmp_path / "a.swf"
    path.write_text(_swf(CASE_A, 4))
    res = run_sim(str(path), scheduler="easy")
    waits = [0, 99, 301, 0, 196]
    assert res["jobs"] == 5
    assert res["mean_wait"] == pytest.approx(sum(waits) / 5)
    assert res["median_wait"] == 99
    runs = [100, 100, 100, 300, 50]
    bsld = [max(1, (w + r) / max(r, 10)) for w, r in zip(waits, runs, strict=True)]
    assert res["mean_bsld"] == pytest.approx(sum(bsld) / 5)
    # last end: J3 303 + 100 = 403; first submit 0
    assert res["makespan"] == 403
    work = 3 * 100 + 3 * 100 + 4 * 100 + 1 * 300 + 1 * 50
    assert res["utilization"] == pytest.approx(work / (4 * 403))
