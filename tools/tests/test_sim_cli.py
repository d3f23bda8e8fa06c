"""The simulator's command line, JSON output, plot, plugin loading errors, and the priority plugin hook-up."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from crane_tools.sim import main, run_sim

KEYS = {"jobs", "skipped", "mean_wait", "median_wait", "mean_bsld", "utilization", "makespan", "wall_s",
        "jobs_per_s", "passes", "procs", "scheduler"}


def _trace(tmp_path: Path) -> Path:
    rows = [
        # job submit wait run alloc cpu mem req_procs req_time mem status user group exe queue part prev think
        "1 0 -1 100 1 -1 -1 1 100 -1 1 1 1 -1 1 1 -1 -1",
        "2 1 -1 10 1 -1 -1 1 10 -1 1 1 1 -1 1 1 -1 -1",
        "3 2 -1 10 1 -1 -1 1 10 -1 1 2 2 -1 1 1 -1 -1",
    ]
    path = tmp_path / "t.swf"
    path.write_text("; MaxProcs: 1\n" + "\n".join(rows) + "\n")
    return path


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_trace(tmp_path)), "--scheduler", "easy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert KEYS <= set(out)
    assert out["jobs"] == 3 and out["skipped"] == 0 and out["procs"] == 1
    assert out["mean_wait"] == pytest.approx((0 + 99 + 108) / 3)


def test_text_output_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_trace(tmp_path)), "--scheduler", "conservative", "--procs", "2", "--max-jobs", "2",
                 "--sched-opt", "depth=10"]) == 0
    out = capsys.readouterr().out
    assert "mean wait" in out and "2 procs" in out and "2 simulated" in out


def test_unknown_scheduler_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_trace(tmp_path)), "--scheduler", "no-such-policy"]) == 1
    err = capsys.readouterr().err
    assert "no-such-policy" in err and "easy" in err


def test_bad_scheduler_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_trace(tmp_path)), "--sched-opt", "mode=sideways"]) == 1
    assert "mode" in capsys.readouterr().err


def test_missing_procs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "noheader.swf"
    path.write_text("1 0 -1 10 1 -1 -1 1 10 -1 1 1 1 -1 1 1 -1 -1\n")
    assert main([str(path)]) == 1
    assert "MaxProcs" in capsys.readouterr().err
    assert run_sim(str(path), procs=3)["procs"] == 3


def test_cpus_per_node_must_divide_procs(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        run_sim(str(_trace(tmp_path)), procs=6, cpus_per_node=4)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib not installed")
def test_plot(tmp_path: Path) -> None:
    png = tmp_path / "out.png"
    res = run_sim(str(_trace(tmp_path)), plot=str(png))
    assert res["plot"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fair_share_reorders_queue(tmp_path: Path) -> None:
    """Group 1 has used the machine when job 1 ends, so group 2's job 3 overtakes job 2."""
    path = _trace(tmp_path)
    plain = run_sim(str(path), scheduler="easy", keep_schedule=True)
    assert {r[0]: r[2] for r in plain["schedule"]} == {1: 0, 2: 100, 3: 110}
    fair = run_sim(str(path), scheduler="easy", priority="multifactor", keep_schedule=True,
                   priority_config={"WeightAge": 1, "WeightFairShare": 1000})
    assert {r[0]: r[2] for r in fair["schedule"]} == {1: 0, 3: 100, 2: 110}
    assert fair["priority"] == "multifactor"
