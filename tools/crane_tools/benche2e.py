"""``crane bench e2e``: throughput and latency of a real one-machine cluster, optionally beside Slurm.

Phases (each on a fresh cluster of virtual nodes; the jobs really run, under cgroups):

* **drain**: submit N trivial jobs (``true``) through the API, wait until all have completed;
  report submit time and the drain rate (first submit to last completion).
* **cbatch**: median wall time of ``cbatch --wrap true`` (the real console script, 30 runs).
* **cqueue**: median wall time of ``cqueue`` with 1,000 jobs in the queue (held, 30 runs).
* **memory**: controller RSS growth per pending job with ``--pending`` held jobs (default 100,000).
* **cycles** (``--cycle-pending N``): API latency while every cycle hands the scheduler N queued jobs.

``--security both`` runs the drain and the CLI figures alternately with the security parts on
(closed bus: Redis ACL users, per-node streams, signed node commands; TLS on the gRPC API) and off
(an open bus, plaintext gRPC), ``--rounds`` times each, in the same run. JWT identity is on in
both: there is no unauthenticated mode to compare with.

``--slurm`` also runs ``../shared/bench/slurm/drain.sh N`` (Slurm 22.05 on loopback, default
settings) in the same run and reports the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from crane_common.states import FINAL_STATES, JobState


def _bin(name: str) -> str:
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else (shutil.which(name) or name)


def _cluster(nodes: int, cpus: int, secure: bool = True) -> Any:
    from crane_tools.localcluster import LocalCluster

    return LocalCluster(nodes=nodes, cpus=cpus, memory=f"{cpus * 256}M", cluster="bench", tls=secure,
                        Bus={"Auth": secure}, Craned={"PingInterval": 2, "KillWait": 2},
                        CraneCtld={"CranedTimeout": 30, "ScheduleInterval": 1.0,
                                   "FinishedJobRetention": 3600})


def _wait_drained(client: Any, ids: list[int], timeout: float) -> float:
    """Wait until every job in ``ids`` has ended; return the time it was seen so."""
    last = ids[-1]
    deadline = time.time() + timeout
    while time.time() < deadline:
        active = client.jobs(max_lines=1)
        if not active:
            done = client.job(last)
            if done is not None and JobState(done.status) in FINAL_STATES:
                return time.time()
        time.sleep(0.1)
    raise TimeoutError(f"jobs did not drain within {timeout:.0f}s")


def drain(n: int, nodes: int, cpus: int, batch: int, secure: bool = True) -> dict[str, Any]:
    """Submit ``n`` trivial jobs and time the drain (``secure``: closed bus and TLS on)."""
    with _cluster(nodes, cpus, secure) as lc:
        client = lc.client()
        spec = client.spec(wrap="true", cwd="/tmp", output="/dev/null")
        t0 = time.time()
        ids: list[int] = []
        for start in range(0, n, batch):
            ids += client.submit(spec, count=min(batch, n - start))
        submit_s = time.time() - t0
        t_end = _wait_drained(client, ids, timeout=max(120, n))
        infos = client.jobs(ids[:1] + ids[-1:], include_finished=True)
        states = {JobState(i.status).name for i in infos}
        drain_s = t_end - t0
        return {"jobs": n, "submit_s": round(submit_s, 3), "drain_s": round(drain_s, 3),
                "drain_jobs_per_s": round(n / drain_s, 1), "states_seen": sorted(states),
                "cluster": f"{nodes} nodes x {cpus} cpus"}


def _median_ms(cmd: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append((time.perf_counter() - t) * 1000)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.decode().strip()}")
    return round(statistics.median(times), 1)


def cli_latency(runs: int, queue: int, secure: bool = True) -> dict[str, Any]:
    """Median wall time of ``cbatch --wrap true`` and of ``cqueue`` with ``queue`` jobs queued."""
    with _cluster(2, 8, secure) as lc:
        env = lc.env()
        cbatch_ms = _median_ms([_bin("cbatch"), "-o", "/dev/null", "-D", "/tmp", "--wrap", "true"], env, runs)
        client = lc.client()
        spec = client.spec(wrap="true", cwd="/tmp", output="/dev/null", hold=True)
        client.submit(spec, count=queue)
        cqueue_ms = _median_ms([_bin("cqueue")], env, runs)
        lines = subprocess.run([_bin("cqueue")], env=env, capture_output=True, text=True).stdout.count("\n")
        return {"cbatch_median_ms": cbatch_ms, "cqueue_1000_median_ms": cqueue_ms, "cqueue_rows": lines - 1,
                "cli_runs": runs}


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def memory(pending: int) -> dict[str, Any]:
    """Controller RSS growth per pending (held) job."""
    with _cluster(2, 8) as lc:
        client = lc.client()
        spec = client.spec(wrap="true", cwd="/tmp", output="/dev/null", hold=True)
        client.submit(spec, count=100)
        time.sleep(0.5)
        before = _rss_kb(lc.ctld.pid)
        t0 = time.time()
        for start in range(0, pending, 10_000):
            client.submit(spec, count=min(10_000, pending - start))
        submit_s = time.time() - t0
        time.sleep(1.5)  # let a scheduling cycle run over all of them
        after = _rss_kb(lc.ctld.pid)
        t = time.perf_counter()
        client.jobs(max_lines=1)
        q_ms = (time.perf_counter() - t) * 1000
        return {"pending_jobs": pending, "ctld_rss_kb_before": before, "ctld_rss_kb_after": after,
                "ctld_rss_kb_per_pending_job": round((after - before) / pending, 3),
                "submit_pending_s": round(submit_s, 2), "submit_jobs_per_s": round(pending / submit_s),
                "query_with_pending_ms": round(q_ms, 1)}


def api_during_cycles(pending: int, scheduler: str, samples: int = 60) -> dict[str, Any]:
    """API latency while the controller cycles over ``pending`` queued (not held) jobs.

    Every node is taken by an exclusive job first, so the queue cannot drain: each cycle hands the
    scheduler all ``pending`` candidates. Then single-job queries and submissions are timed.
    """
    from crane_tools.localcluster import LocalCluster

    lc = LocalCluster(nodes=4, cpus=16, memory="4G", cluster="benchcyc", Plugins={"Scheduler": scheduler},
                      CraneCtld={"ScheduleInterval": 0.2, "CranedTimeout": 60})
    with lc:
        client = lc.client()
        blocker = client.spec(wrap="sleep 600", cwd="/tmp", output="/dev/null", exclusive=True)
        for name in lc.node_names:
            client.submit(pb_spec(blocker, nodelist=[name]))
        spec = client.spec(wrap="true", cwd="/tmp", output="/dev/null", time_limit=600)
        for start in range(0, pending, 10_000):
            client.submit(spec, count=min(10_000, pending - start))
        time.sleep(2.0)  # let a few full cycles run
        lat_q, lat_s = [], []
        probe = client.spec(wrap="true", cwd="/tmp", output="/dev/null", hold=True)
        for i in range(samples):
            t = time.perf_counter()
            client.jobs([1 + i])
            lat_q.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            client.submit(probe)
            lat_s.append((time.perf_counter() - t) * 1000)
            time.sleep(0.02)
        info = client.server_info()
        return {"cycle_pending_jobs": info.pending_jobs, "cycle_scheduler": scheduler,
                "cycle_last_s": round(info.last_cycle_s, 3), "cycle_max_s": round(info.max_cycle_s, 3),
                "cycles_run": info.cycles,
                "api_query_median_ms": round(statistics.median(lat_q), 1), "api_query_max_ms": round(max(lat_q), 1),
                "api_submit_median_ms": round(statistics.median(lat_s), 1),
                "api_submit_max_ms": round(max(lat_s), 1)}


def pb_spec(spec: Any, **fields: Any) -> Any:
    """A copy of a JobSpec message with some fields changed."""
    copy = type(spec)()
    copy.CopyFrom(spec)
    for key, value in fields.items():
        if isinstance(value, list):
            getattr(copy, key)[:] = value
        else:
            setattr(copy, key, value)
    return copy


def slurm_drain(n: int) -> dict[str, Any]:
    """Run the shared Slurm harness's drain of ``n`` jobs, if it is installed here."""
    here = os.path.dirname(os.path.abspath(__file__))
    for up in range(2, 6):
        script = os.path.join(here, *[".."] * up, "shared", "bench", "slurm", "drain.sh")
        if os.path.exists(script):
            break
    else:
        return {"error": "../shared/bench/slurm/drain.sh not found"}
    proc = subprocess.run(["bash", script, str(n)], capture_output=True, text=True, timeout=3600)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"slurm drain failed: {proc.stderr.strip()[-200:]}"}


def security_comparison(args: argparse.Namespace) -> dict[str, Any]:
    """Drain and CLI figures with the security parts on and off, rounds interleaved; medians and ratios."""
    rates: dict[str, list[float]] = {"on": [], "off": []}
    cli: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for _ in range(max(1, args.rounds)):
        for setting in ("on", "off"):
            rates[setting].append(drain(args.jobs, args.nodes, args.cpus, args.batch, setting == "on")
                                  ["drain_jobs_per_s"])
            if args.cli_runs:
                cli[setting].append(cli_latency(args.cli_runs, 1000, setting == "on"))
    out: dict[str, Any] = {}
    for setting in ("on", "off"):
        out[f"drain_jobs_per_s_{setting}"] = rates[setting]
        out[f"drain_median_{setting}"] = statistics.median(rates[setting])
        for key in ("cbatch_median_ms", "cqueue_1000_median_ms"):
            if cli[setting]:
                out[f"{key}_{setting}"] = statistics.median(c[key] for c in cli[setting])
    out["drain_on_vs_off"] = round(out["drain_median_on"] / out["drain_median_off"], 3)
    if args.cli_runs:
        for key in ("cbatch_median_ms", "cqueue_1000_median_ms"):
            out[f"{key}_on_vs_off"] = round(out[f"{key}_on"] / out[f"{key}_off"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures (``--json``: one object)."""
    ap = argparse.ArgumentParser(prog="crane bench e2e", description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000, help="trivial jobs to drain (default 1000)")
    ap.add_argument("--nodes", type=int, default=4, help="virtual nodes (default 4)")
    ap.add_argument("--cpus", type=int, default=16, help="CPUs per virtual node (default 16: 64 slots, as the "
                                                        "Slurm harness advertises)")
    ap.add_argument("--batch", type=int, default=1000, help="jobs per SubmitBatchJobs call (default 1000)")
    ap.add_argument("--pending", type=int, default=100_000, help="held jobs for the memory figure (0 = skip)")
    ap.add_argument("--cli-runs", type=int, default=30, help="runs per CLI latency figure (0 = skip)")
    ap.add_argument("--cycle-pending", type=int, default=0,
                    help="also time the API while cycles run over this many queued jobs (e.g. 100000)")
    ap.add_argument("--scheduler", default="fifo", help="scheduler plugin for the --cycle-pending phase")
    ap.add_argument("--slurm", action="store_true", help="also measure Slurm's drain of the same N here")
    ap.add_argument("--security", choices=("on", "off", "both"), default="on",
                    help="closed bus and TLS on (default), off, or both alternately in one run")
    ap.add_argument("--rounds", type=int, default=3, help="drain rounds per setting with --security both")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.jobs <= 0:
        print("crane bench e2e: --jobs must be positive", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"machine": f"{os.cpu_count()} cpus", "python": sys.version.split()[0]}
    if args.security == "both":
        result["security"] = security_comparison(args)
    else:
        secure = args.security == "on"
        result.update(drain(args.jobs, args.nodes, args.cpus, args.batch, secure))
        if args.cli_runs:
            result.update(cli_latency(args.cli_runs, 1000, secure))
    if args.pending:
        result.update(memory(args.pending))
    if args.cycle_pending:
        result.update(api_during_cycles(args.cycle_pending, args.scheduler))
    if args.slurm:
        s = slurm_drain(args.jobs)
        result["slurm"] = s
        if s.get("drain_jobs_per_s"):
            result["drain_ratio_vs_slurm"] = round(result["drain_jobs_per_s"] / s["drain_jobs_per_s"], 2)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:32} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
