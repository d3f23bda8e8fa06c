"""``crane sim --reservation``: the replay keeps jobs off reserved nodes, and the report shows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crane_tools.sim import main, run_sim
from crane_tools.sim.reservations import parse_reservation


def _trace(tmp_path: Path) -> Path:
    rows = [  # job submit wait run alloc cpu mem req_procs req_time ...: four 1-proc jobs of 100 s at t=0
        f"{i} 0 -1 100 1 -1 -1 1 100 -1 1 1 1 -1 1 1 -1 -1" for i in range(1, 5)]
    path = tmp_path / "t.swf"
    path.write_text("; MaxProcs: 2\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("scheduler", ["fifo", "easy", "conservative"])
def test_a_reservation_delays_the_jobs_that_would_overlap_it(tmp_path: Path, scheduler: str) -> None:
    plain = run_sim(str(_trace(tmp_path)), scheduler=scheduler)
    assert plain["makespan"] == 200
    # the engine re-checks every start (reservation_conflict): a plan crossing the window would raise SimError
    got = run_sim(str(_trace(tmp_path)), scheduler=scheduler, keep_schedule=True, reservations=["maint:50:300:1"])
    starts = sorted(s for _jid, _sub, s, *_ in got["schedule"])
    # node 0 is reserved from 50 to 350 (100-s jobs cannot start there before): node 1 runs jobs from 0, 100,
    # 200; node 0 one from 350 (or the last of node 1's, at 300)
    assert starts == [0, 100, 200, 300]
    assert got["makespan"] == 400 > plain["makespan"]
    assert got["reservations"] == [("maint", 50.0, 350.0, 1)] and got["reserved_proc_s"] == 300


def test_command_line_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_trace(tmp_path)), "--reservation", "m:0:00:10:00:0-1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reservations"] == [["m", 0.0, 600.0, 2]] and out["mean_wait"] >= 600
    assert main([str(_trace(tmp_path)), "--reservation", "m:0:600:1"]) == 0
    assert "reservation  m: 1 nodes from 0 s to 600 s" in capsys.readouterr().out
    assert main([str(_trace(tmp_path)), "--reservation", "m:0:600:9"]) == 1
    assert "the machine has nodes 0-1" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["m", "m:x:10:1", ":0:10:1", "m:0:-5:1", "m:0:10:a-b"])
def test_bad_reservations_are_one_line_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_reservation(text, 4)
