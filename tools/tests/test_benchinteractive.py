"""``crane bench interactive``: registered, argument checks, and the report code (medians, ratios, targets, the
table, the JSON) on made-up samples and fake clients, with neither a cluster nor Slurm."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from typing import Any

import pytest


def test_bench_lists_interactive(capsys: Any) -> None:
    from crane_tools import bench

    assert bench.main(["--help"]) == 0
    assert "interactive" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--stream-rounds", "0"], ["--mb", "-1"], ["--only", "nope"],
                                  ["--tasks", "65"]])
def test_bad_arguments(argv: list[str]) -> None:
    from crane_tools import benchinteractive

    assert benchinteractive.main(argv) == 2


def test_summaries_ratios_and_targets() -> None:
    from crane_tools.benchinteractive import figure, ratio, summarize, verdicts

    assert summarize([]) == {}
    assert summarize([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    assert ratio(90.0, 60.0) == 1.5 and ratio(None, 1.0) is None and ratio(1.0, 0) is None and ratio(1.0, None) is None
    run = figure({"crane": [80, 90, 100], "slurm": [55, 60, 65]})
    assert run["crane"]["median"] == 90 and run["slurm"]["median"] == 60 and run["ratio"] == 1.5
    assert run["samples"] == {"crane": [80, 90, 100], "slurm": [55, 60, 65]}
    stream = figure({"crane": [40.0, 60.0, 70.0], "slurm": [38.0]})
    assert stream["ratio"] == round(60.0 / 38.0, 2)
    assert verdicts({"run": run, "stream": stream}) == {"run_ratio_le_1.5": True, "stream_crane_ge_50": True}
    slow = figure({"crane": [100.0], "slurm": [60.0]})
    assert verdicts({"run": slow, "stream": figure({"crane": [49.9]})}) == {"run_ratio_le_1.5": False,
                                                                          "stream_crane_ge_50": False}
    # crane alone (no Slurm): no ratio, so no ratio verdict
    alone = figure({"crane": [70.0]})
    assert alone["slurm"] == {} and alone["ratio"] is None and verdicts({"run": alone}) == {}


def test_table_and_text() -> None:
    from crane_tools.benchinteractive import figure, render_table, render_text, verdicts

    figures = {"run": figure({"crane": [80.0, 90.0, 100.0], "slurm": [60.0, 60.0, 60.0]}),
               "run_n": figure({"crane": [150.0], "slurm": [160.0]}),
               "stream": figure({"crane": [120.0], "slurm": [40.0]})}
    result = {"machine": "2 cpus", "python": "3.11", "cluster": "4 nodes x 16 cpus", "tasks": 8, "stream_mb": 200,
              "rounds": 3, "stream_rounds": 1, "slurm": {"status": "up"}, "figures": figures,
              "verdicts": verdicts(figures), "errors": ["step: boom"],
              "ctld_memory": {"before_kb": 70000, "after_kb": 71000, "peak_kb": 75000, "growth_kb": 1000,
                              "hwm_before_kb": 72000, "hwm_after_kb": 75000}}
    table = render_table(result)
    rows = table.splitlines()
    assert rows[0].startswith("| measure |") and len(rows) == 2 + 3  # header, rule, the three measured figures
    assert "| `crun true` / `srun true` (new job, 1 task) | 90.0 ms (80.0–100.0, n=3) | 60.0 ms (60.0–60.0, n=3) " \
           "| 1.50 |" in table
    assert "`crun -n 8 true`" in table and "head -c 200M" in table and "3.00 (higher is better)" in table
    text = render_text(result)
    assert "growth 1000 kB" in text and "run_ratio_le_1.5 yes" in text and "error: step: boom" in text
    json.dumps(result)  # the --json object is plain JSON


def test_expected_sha256() -> None:
    from crane_tools.benchinteractive import expected_sha256

    for n in (0, 1, (1 << 20) - 1, 1 << 20, (3 << 20) + 5):
        assert expected_sha256(n) == hashlib.sha256(bytes(n)).hexdigest()


def _script(path: str, body: str) -> str:
    with open(path, "w") as fh:
        fh.write("#!/bin/bash\n" + body + "\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def test_stream_checks_the_bytes(tmp_path: Any) -> None:
    from crane_tools.benchinteractive import expected_sha256, stream

    n = 3 << 20
    want = expected_sha256(n)
    good = stream(["bash", "-c", f"head -c {n} /dev/zero"], dict(os.environ), n, want)
    assert good["ok"] and good["bytes"] == n and good["mb_per_s"] > 0
    short = stream(["bash", "-c", f"head -c {n - 1} /dev/zero"], dict(os.environ), n, want)
    assert not short["ok"] and "differs" in short["error"]
    wrong = stream(["bash", "-c", f"head -c {n} /dev/urandom"], dict(os.environ), n, want)
    assert not wrong["ok"] and wrong["bytes"] == n


def test_held_allocation_reads_the_shell_environment(tmp_path: Any) -> None:
    """A fake allocation client (runs its command with FAKE_JOB_ID set), as calloc and salloc do."""
    from crane_tools.benchinteractive import HeldAllocation

    fake = _script(str(tmp_path / "falloc"), 'FAKE_JOB_ID=42 exec "$@"')
    held = HeldAllocation([fake], dict(os.environ), "FAKE_JOB_ID")
    assert held.job_id == "42" and held.env["FAKE_JOB_ID"] == "42"
    assert held.close() == 0
    with pytest.raises(RuntimeError, match="no allocation"):  # the client refused: no env file, it exited
        HeldAllocation([_script(str(tmp_path / "refuse"), "echo refused >&2; exit 1")], dict(os.environ), "X")


def test_main_with_fake_clients(tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:
    """The whole main() on fake crun/calloc/srun/salloc scripts and a fake cluster: every figure, the JSON."""
    from crane_tools import benchinteractive

    bindir = tmp_path / "bin"
    bindir.mkdir()
    _script(str(bindir / "crun"), '[[ $1 == --help ]] && exit 0; while [[ $1 == -* ]]; do shift 2; done\n'
                                  'echo "Allocated craned nodes: cn01" >&2; exec "$@"')
    _script(str(bindir / "calloc"), 'while [[ $1 == -* && $1 != -- ]]; do shift 2; done; [[ $1 == -- ]] && shift\n'
                                    'CRANE_JOB_ID=7 exec "$@"')
    _script(str(bindir / "srun"), '[[ $1 == --help ]] && exit 0; while [[ $1 == -* ]]; do shift 2; done; exec "$@"')
    _script(str(bindir / "salloc"), 'while [[ $1 == -* ]]; do shift 2; done; SLURM_JOB_ID=9 exec "$@"')
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(benchinteractive, "_bin", lambda name: str(bindir / name))
    monkeypatch.setattr(benchinteractive, "slurm_ready", lambda start=True: "up")

    class FakeCluster:
        ctld = type("P", (), {"pid": os.getpid()})()
        cfored = ctld

        def env(self) -> dict[str, str]:
            return dict(os.environ)

    @contextlib.contextmanager
    def factory(nodes: int, cpus: int) -> Any:
        yield FakeCluster()

    assert benchinteractive.main(["--rounds", "2", "--stream-rounds", "1", "--mb", "2", "--json", "--quiet"],
                                 cluster_factory=factory) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["errors"] == []
    assert set(out["figures"]) == {"run", "run_n", "step", "alloc", "start", "stream"}
    for name in ("run", "run_n", "step", "alloc"):
        fig = out["figures"][name]
        assert fig["crane"]["n"] == 2 and fig["slurm"]["n"] == 2 and fig["ratio"] > 0
    assert out["figures"]["step"]["jobs"] == {"crane": "7", "slurm": "9"}
    assert out["figures"]["run"]["allocated_line_ms"]["crane"]["n"] == 2  # srun prints no such line
    assert "slurm" not in out["figures"]["run"]["allocated_line_ms"]
    assert set(out["figures"]["run"]["client_cpu_ms"]) == {"crane", "slurm"}
    assert out["figures"]["stream"]["byte_exact"] == {"crane": 1, "slurm": 1}
    assert out["ctld_memory"]["before_kb"] > 0 and "growth_kb" in out["ctld_memory"]
    assert out["ctld_memory"]["cfored_before_kb"] > 0 and out["crane_path"].startswith("through cfored")
    assert out["commands"]["run_n"] == {"crane": "crun -n 8 true", "slurm": "srun -p debug -n 8 true"}


def test_timed_marks_the_allocated_line_and_fails_on_exit_codes() -> None:
    from crane_tools.benchinteractive import timed

    ms, allocated, cpu = timed(["bash", "-c", "echo 'Allocated craned nodes: cn01' >&2; sleep 0.05"], dict(os.environ))
    assert allocated is not None and allocated < ms and ms >= 50 and cpu >= 0
    assert timed(["true"], dict(os.environ))[1] is None
    with pytest.raises(RuntimeError, match="exited 3: nope"):
        timed(["bash", "-c", "echo nope >&2; exit 3"], dict(os.environ))


def test_direct_sets_no_cfored(monkeypatch: Any, capsys: Any) -> None:
    from crane_tools import benchinteractive

    seen: list[dict[str, str]] = []
    monkeypatch.setattr(benchinteractive, "slurm_ready", lambda start=True: "off")
    def fake_timed(cmd: list[str], env: dict[str, str], timeout: float = 120) -> tuple[float, None, float]:
        seen.append(env)
        return 1.0, None, 1.0

    monkeypatch.setattr(benchinteractive, "timed", fake_timed)

    class FakeCluster:
        ctld = None
        cfored = object()

        def env(self) -> dict[str, str]:
            return {"PATH": os.environ["PATH"], "CRANE_JOB_ID": "5"}

    @contextlib.contextmanager
    def factory(nodes: int, cpus: int) -> Any:
        yield FakeCluster()

    assert benchinteractive.main(["--rounds", "1", "--only", "run", "--direct", "--json", "--quiet"],
                                 cluster_factory=factory) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["crane_path"].startswith("direct") and out["figures"]["run"]["slurm"] == {}
    assert seen and all(e.get("CRANE_NO_CFORED") == "1" and "CRANE_JOB_ID" not in e for e in seen)
