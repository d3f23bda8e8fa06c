"""Latency of the console scripts: median wall (and CPU) time over N runs against a FakeCtld.

    .venv/bin/python cli/tests/bench_cli.py [--runs 30] [--jobs 1000] [--target host:port] [--baseline DIR]

Starts an in-process FakeCtld with ``--jobs`` canned jobs (unless ``--target`` points
at a running controller, whose config is then taken from ``$CRANE_CONFIG``), then runs
``cbatch --wrap true``, ``cqueue``, ``cacct``, ``ceff``, ``cinfo`` and ``ccancel`` as subprocesses, like
hyperfine would, and prints the median wall-clock time, the median CPU time
(user+system of the child, less sensitive to other load on the machine) and, for
reference, ``python -c pass`` of the same interpreter.

``--baseline DIR`` compares with another version of the commands: ``DIR`` holds its
``crane_cli`` package (e.g. ``git archive <commit> cli | tar -x -C /tmp/old``, then
``--baseline /tmp/old/cli``), put first on ``PYTHONPATH``; the two versions run
alternately, so that a busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

BIN = Path(sys.executable).parent


def measure(cmd: list[str], env: dict[str, str], runs: int, warmup: int = 2) -> tuple[float, float, int]:
    """(median wall ms, median CPU ms, last exit code) of ``cmd`` over ``runs`` runs."""
    walls, cpus = [], []
    code = 0
    for i in range(runs + warmup):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        code = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i >= warmup:
            walls.append(wall * 1000)
            cpus.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return statistics.median(walls), statistics.median(cpus), code


def main() -> int:
    """Run the measurements and print one line per command."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--target", help="measure against this controller instead of a FakeCtld (uses $CRANE_CONFIG)")
    ap.add_argument("--baseline", metavar="DIR", help="also run the crane_cli package in DIR, alternately")
    ns = ap.parse_args()
    env = dict(os.environ)
    server = None
    tmp = tempfile.TemporaryDirectory()
    if not ns.target:
        from fakectld import FakeCtld, make_jobs, start

        server, port, _ = start(FakeCtld(make_jobs(ns.jobs)))
        conf = Path(tmp.name) / "config.yaml"
        conf.write_text(f"ControlMachine: 127.0.0.1\nCraneCtldListenPort: {port}\n")
        env.update(CRANE_CONFIG=str(conf), CRANE_TOKEN="v1.eyJ1c2VyIjoiYmVuY2gifQ.x")
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("cbatch --wrap true", [str(BIN / "cbatch"), "--wrap", "true"]),
        (f"cqueue ({ns.jobs} jobs)", [str(BIN / "cqueue")]),
        (f"cacct ({ns.jobs} jobs)", [str(BIN / "cacct")]),
        ("ceff 2", [str(BIN / "ceff"), "2"]),
        ("cinfo", [str(BIN / "cinfo")]),
        ("ccancel 1", [str(BIN / "ccancel"), "1"]),
    ]
    envs = {"": env}
    if ns.baseline:
        envs = {"this": env, "baseline": dict(env, PYTHONPATH=os.path.abspath(ns.baseline))}
    print(f"{'command':<30} {'wall median':>12} {'cpu median':>11}  (runs={ns.runs}, loadavg={os.getloadavg()[0]:.2f})")
    for label, cmd in cases:
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in envs}
        for i in range(ns.runs):
            for name in (list(envs) if i % 2 == 0 else list(reversed(envs))):
                results[name].append(measure(cmd, envs[name], 1, warmup=2 if i == 0 else 0))
        for name, rows in results.items():
            wall = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            tag = f"{label} [{name}]" if name else label
            print(f"{tag:<30} {wall:>9.1f} ms {cpu:>8.1f} ms  rc={rows[-1][2]}")
    if server is not None:
        server.stop(0)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
