"""crane sim --depend-every: dependent jobs stay out of the view until their parent ended (crane_tools/sim/deps.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from crane_tools.sim import run_sim
from simcheck import Checker

KTH = Path("/work/shared/traces/KTH-SP2-1996-2.1-cln.swf.gz")


def _swf(rows: list[tuple[int, int, int, int, int]], procs: int) -> str:
    lines = [f"; MaxProcs: {procs}"]
    for job, submit, run, size, est in rows:
        lines.append(f"{job} {submit} -1 {run} {size} -1 -1 {size} {est} -1 1 1 1 -1 1 1 -1 -1")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("scheduler", ["fifo", "easy", "conservative"])
def test_every_second_job_waits_for_the_previous_one(tmp_path: Path, scheduler: str) -> None:
    # P = 4, one user. J2 depends on J1 (ends at 100), J4 on J3 (ends at 52): free processors do not
    # start them earlier.
    trace = tmp_path / "t.swf"
    trace.write_text(_swf([(1, 0, 100, 1, 100), (2, 1, 10, 1, 10), (3, 2, 50, 1, 50), (4, 3, 5, 1, 5)], 4))
    res = run_sim(str(trace), scheduler=scheduler, keep_schedule=True, depend_every=2)
    starts = {row[0]: row[2] for row in res["schedule"]}
    assert starts == {1: 0, 2: 100, 3: 2, 4: 52}
    assert res["dependencies"] == {"every": 2, "dependent_jobs": 2, "held": 2}
    plain = run_sim(str(trace), scheduler=scheduler, keep_schedule=True)
    assert {row[0]: row[2] for row in plain["schedule"]} == {1: 0, 2: 1, 3: 2, 4: 3}


@pytest.mark.skipif(not KTH.exists(), reason="the KTH trace is not here")
def test_a_trace_slice_with_dependencies_keeps_every_invariant() -> None:
    checker = Checker()
    res = run_sim(str(KTH), scheduler="easy", max_jobs=3000, observer=checker, depend_every=4)
    assert res["jobs"] == 3000 and res["dependencies"]["held"] > 0
    assert res["classes"]["dependent"]["jobs"] == res["dependencies"]["dependent_jobs"]


def test_dependencies_and_preemption_together_are_refused(tmp_path: Path) -> None:
    trace = tmp_path / "t.swf"
    trace.write_text(_swf([(1, 0, 10, 1, 10)], 2))
    with pytest.raises(ValueError, match="not modelled"):
        run_sim(str(trace), scheduler="fifo", depend_every=2, preempt_every=3)
