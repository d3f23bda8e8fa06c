"""``crane bench scale``: the real controller at cluster scale, its nodes emulated (:mod:`crane_tools.nodeemu`).

One run: a private Redis with the closed bus, the real ``cranectld`` (journal, plugins, TLS gRPC)
and ONE node-emulator process for ``--nodes`` nodes (``LocalCluster(emulated=True)``). ``--jobs``
one-CPU jobs of ``--duration`` seconds (``CRANE_EMU_DURATION``) are submitted through the gRPC API
(``SubmitBatchJobs``, ``--batch`` per call) while a sampler records once a second:

* jobs started and finished (the emulator's counters: launches read; ends the controller recorded,
  i.e. the ``FreeJob`` it sends after journaling a job's end arrived);
* the scheduling cycles (``QueryServerInfo``: count, time sum, latest, longest, histogram);
* bus lag: node side, the time from a job's final ``StepStatus`` to the ``FreeJob`` that answers
  it (the controller read, applied and journaled the report, and published the answer), which
  includes up to one emulator poll interval;
* the controller's memory (``VmRSS``) and the CPU seconds of cranectld, the emulator and Redis.

Sustained rates are over the middle 80 % of the jobs (the 10th to the 90th percentile job
started or finished); the drain rate is from the first submission to the last end.
``--profile FILE`` samples cranectld with py-spy (``--threads``; raw collapsed stacks to FILE)
and prints its busiest functions.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

import grpc

from crane_tools.benche2e import _rss_kb


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


class Sampler(threading.Thread):
    """Once a second: the emulator's counters, the controller's cycle figures, memory and CPU."""

    def __init__(self, lc: Any, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.lc = lc
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.client = lc.client()

    def sample(self) -> dict[str, Any]:
        """One sample (time, counters, cycles, RSS, CPU)."""
        emu = _read_json(self.lc.nodeemu_stats_path())
        out: dict[str, Any] = {"t": time.time(), "launched": emu.get("launched", 0),
                               "reported": emu.get("finished", 0),
                               "finished": emu.get("freed", 0), "emu_running": emu.get("running", 0),
                               "rtt_bounds": emu.get("rtt_bounds", []), "rtt_counts": emu.get("rtt_counts", []),
                               "emu_errors": emu.get("errors", 0),
                               "ctld_rss_kb": _rss_kb(self.lc.ctld.pid), "ctld_cpu_s": _cpu_s(self.lc.ctld.pid),
                               "emu_cpu_s": _cpu_s(self.lc.nodeemu.pid),
                               "redis_cpu_s": _cpu_s(self.lc.redis.pid) if self.lc.redis.pid else 0.0}
        try:
            info = self.client.server_info()
            out.update(pending=info.pending_jobs, running=info.running_jobs, cycles=info.cycles,
                       cycle_sum_s=info.cycle_seconds_sum, last_cycle_s=info.last_cycle_s,
                       max_cycle_s=info.max_cycle_s, considered=info.last_cycle_considered,
                       bounds=list(info.cycle_bucket_bounds), counts=list(info.cycle_bucket_counts))
        except Exception as exc:  # noqa: BLE001 - a slow answer is a figure, not a failure
            out["rpc_error"] = str(exc).splitlines()[0][:200]
        return out

    def run(self) -> None:
        """Sample until :attr:`done` is set."""
        while not self.done.is_set():
            self.samples.append(self.sample())
            self.done.wait(self.interval)
        self.samples.append(self.sample())


def _when(samples: list[dict[str, Any]], key: str, target: float) -> float | None:
    """The time (interpolated between samples) at which counter ``key`` reached ``target``."""
    values = [s[key] for s in samples]
    i = bisect.bisect_left(values, target)
    if i >= len(samples):
        return None
    if i == 0:
        return samples[0]["t"]
    a, b = samples[i - 1], samples[i]
    span = b[key] - a[key]
    return a["t"] + (b["t"] - a["t"]) * ((target - a[key]) / span if span else 1.0)


def sustained(samples: list[dict[str, Any]], key: str, total: int) -> float | None:
    """Jobs per second of counter ``key`` between its 10 % and 90 % of ``total``."""
    t10, t90 = _when(samples, key, 0.1 * total), _when(samples, key, 0.9 * total)
    if t10 is None or t90 is None or t90 <= t10:
        return None
    return 0.8 * total / (t90 - t10)


def cycle_quantile(bounds: list[float], counts: list[int], q: float) -> float | None:
    """Upper bound of the histogram bucket holding quantile ``q`` (None: empty; inf: above the highest bound)."""
    total = sum(counts)
    if not total:
        return None
    seen = 0
    for i, c in enumerate(counts):
        seen += c
        if seen >= q * total:
            return bounds[i] if i < len(bounds) else float("inf")
    return float("inf")


def _diff_hist(first: dict[str, Any], last: dict[str, Any]) -> tuple[list[float], list[int]]:
    bounds = last.get("bounds") or []
    a, b = first.get("counts") or [0] * (len(bounds) + 1), last.get("counts") or []
    return bounds, [y - (a[i] if i < len(a) else 0) for i, y in enumerate(b)]


def summarize(samples: list[dict[str, Any]], jobs: int, t_submit0: float, submit_s: float,
              submitted: int | None = None) -> dict[str, Any]:
    """The figures of a run from its samples (``submitted``: jobs accepted, when not all of ``jobs`` were)."""
    submitted = jobs if submitted is None else submitted
    ok = [s for s in samples if "cycles" in s]
    first, last = (ok[0], ok[-1]) if ok else ({}, {})
    t_done = _when(samples, "finished", jobs)
    cycles = last.get("cycles", 0) - first.get("cycles", 0)
    cycle_sum = last.get("cycle_sum_s", 0.0) - first.get("cycle_sum_s", 0.0)
    bounds, counts = _diff_hist(first, last)
    rtt_bounds, rtt_counts = samples[-1].get("rtt_bounds") or [], samples[-1].get("rtt_counts") or []
    wall = (samples[-1]["t"] - samples[0]["t"]) or 1.0
    out: dict[str, Any] = {
        "jobs": jobs,
        "submit_s": round(submit_s, 2),
        "submitted": submitted,
        "submit_jobs_per_s": round(submitted / submit_s, 1) if submit_s else None,
        "started_total": samples[-1]["launched"],
        "finished_total": samples[-1]["finished"],
        "started_jobs_per_s": _round(sustained(samples, "launched", jobs)),
        "finished_jobs_per_s": _round(sustained(samples, "finished", jobs)),
        "reported_jobs_per_s": _round(sustained(samples, "reported", jobs)),
        "drain_s": _round(t_done - t_submit0 if t_done else None, 2),
        "drain_jobs_per_s": _round(jobs / (t_done - t_submit0) if t_done else None),
        "all_finished": bool(t_done),
        "cycles": cycles,
        "cycle_mean_s": _round(cycle_sum / cycles if cycles else None, 4),
        "cycle_p50_le_s": cycle_quantile(bounds, counts, 0.5),
        "cycle_p99_le_s": cycle_quantile(bounds, counts, 0.99),
        "cycle_max_s": _round(last.get("max_cycle_s"), 4),
        "bus_lag_p50_le_s": cycle_quantile(rtt_bounds, rtt_counts, 0.5),
        "bus_lag_p99_le_s": cycle_quantile(rtt_bounds, rtt_counts, 0.99),
        "ctld_rss_mb_peak": round(max(s["ctld_rss_kb"] for s in samples) / 1024, 1),
        "ctld_rss_mb_end": round(samples[-1]["ctld_rss_kb"] / 1024, 1),
        "cpu_share": {name: round((samples[-1][k] - samples[0][k]) / wall, 2)
                      for name, k in (("cranectld", "ctld_cpu_s"), ("nodeemu", "emu_cpu_s"),
                                      ("redis", "redis_cpu_s"))},
        "emulator_errors": samples[-1].get("emu_errors", 0),
    }
    return out


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _count_in(path: str, text: str) -> int:
    """Lines of file ``path`` that contain ``text`` (0 when it cannot be read)."""
    try:
        with open(path, errors="replace") as fh:
            return sum(1 for line in fh if text in line)
    except OSError:
        return 0


def profile_summary(path: str, top: int = 15) -> dict[str, Any]:
    """From py-spy's raw (collapsed) stacks: samples per thread, and the functions with most own and total samples."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    samples = 0
    with open(path) as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            samples += n
            threads[frames[0]] += n
            funcs = [f for f in frames[1:] if f]
            if funcs:
                own[funcs[-1]] += n
            for f in set(funcs):
                total[f] += n
    pct = (lambda c: round(100.0 * c / samples, 1)) if samples else (lambda c: 0.0)
    return {"samples": samples,
            "threads": {k: pct(v) for k, v in threads.most_common(8)},
            "own_pct": {k: pct(v) for k, v in own.most_common(top)},
            "total_pct": {k: pct(v) for k, v in total.most_common(top)}}


def _stop_profiler(profiler: subprocess.Popen | None) -> None:
    """Stop py-spy so that it writes its file (SIGINT), killing it if it does not end."""
    if profiler is None or profiler.poll() is not None:
        return
    profiler.send_signal(2)
    try:
        profiler.wait(60)
    except subprocess.TimeoutExpired:
        profiler.kill()


def _drive(args: argparse.Namespace, client: Any, spec: Any, sampler: Sampler, progress: dict[str, Any],
           result: dict[str, Any]) -> None:
    """Submit (and with ``--queued`` release) the jobs, then wait until every end is recorded or ``--timeout``.

    Fills ``progress`` as it goes (``calls``: seconds per SubmitBatchJobs, ``submit_s``, ``t0``: the start
    of the run) so that an interrupted run still has its figures.
    """
    ids: list[int] = []
    while len(ids) < args.jobs:
        t_call = time.time()
        ids += client.submit(spec, count=min(args.batch, args.jobs - len(ids)))
        progress["calls"].append(time.time() - t_call)
        progress["submitted"] = len(ids)
    progress["submit_s"] = time.time() - progress["t_submit"]
    t0 = progress["t0"] = time.time() if args.queued else progress["t_submit"]
    if args.queued:
        for start in range(0, len(ids), args.batch):
            reply = client.modify(ids[start:start + args.batch], hold=False)
            if reply.not_modified:
                raise RuntimeError(f"releasing the held jobs failed: {list(reply.reasons)[:1]}")
        result["release_s"] = round(time.time() - t0, 2)
    deadline = t0 + args.timeout
    while time.time() < deadline:
        if sampler.samples[-1]["finished"] >= args.jobs:
            return
        time.sleep(0.5)
    raise RuntimeError(f"not every end was recorded within --timeout {args.timeout:g}s")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the cluster, submit, sample until every job ended (or ``--timeout``), return the figures."""
    from crane_tools.localcluster import LocalCluster

    width = len(str(args.nodes))
    lc = LocalCluster(
        args.base_dir, nodes=args.nodes, cpus=args.cpus, memory=f"{args.cpus}G", cluster="scale", emulated=True,
        emulator_args=["--poll-interval", str(args.poll_interval), "--idle-interval", str(args.idle_interval)],
        Nodes=[{"name": f"cn[{1:0{width}d}-{args.nodes}]", "cpu": args.cpus, "memory": f"{args.cpus}G"}],
        Craned={"PingInterval": args.ping},
        CraneCtld={"CranedTimeout": args.craned_timeout, "ScheduleInterval": args.schedule_interval},
        Plugins={"Scheduler": args.scheduler},
    )
    profiler: subprocess.Popen | None = None
    result: dict[str, Any] = {}
    try:
        t_start = time.time()
        lc.start()
        result["cluster_up_s"] = round(time.time() - t_start, 1)
        client = lc.client()
        client.timeout = args.rpc_timeout
        spec = client.spec(wrap=f"sleep {args.duration:g}", cwd="/tmp", output="/dev/null", time_limit=3600,
                           env={"CRANE_EMU_DURATION": f"{args.duration:g}"})
        sampler = Sampler(lc)
        if args.profile:
            spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
            profiler = subprocess.Popen([spy, "record", "--pid", str(lc.ctld.pid), "--format", "raw", "--threads",
                                         "--nonblocking", "--rate", "50", "-o", args.profile],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if args.queued:  # the whole queue first (held), then released: the run path without submissions
            spec.hold = True
        sampler.samples.append(sampler.sample())
        sampler.start()
        progress: dict[str, Any] = {"t_submit": time.time(), "calls": []}
        try:
            _drive(args, client, spec, sampler, progress, result)
        except (KeyboardInterrupt, grpc.RpcError, RuntimeError) as exc:  # keep what was measured so far
            why = f"{exc.code().name} {exc.details()}" if isinstance(exc, grpc.RpcError) else \
                type(exc).__name__ if isinstance(exc, KeyboardInterrupt) else str(exc)
            result["stopped"] = f"run stopped early: {why}"
        calls = sorted(progress["calls"])
        if calls:
            result.update(submit_call_p50_s=round(calls[len(calls) // 2], 3), submit_call_max_s=round(calls[-1], 3))
        t0 = progress.get("t0", progress["t_submit"])
        submit_s = progress.get("submit_s", time.time() - progress["t_submit"])
        sampler.done.set()
        sampler.join(10)
        _stop_profiler(profiler)
        result.update(summarize(sampler.samples, args.jobs, t0, submit_s, progress.get("submitted", 0)))
        result["nodes_marked_down"] = _count_in(os.path.join(lc.logs, "cranectld.log"), "missed heartbeats")
        result["launches_resent"] = _count_in(os.path.join(lc.logs, "cranectld.log"), "re-sending launch")
        if args.profile and os.path.exists(args.profile):
            result["profile"] = profile_summary(args.profile)
        result["series"] = [{k: s.get(k) for k in ("t", "launched", "finished", "pending", "running", "cycles",
                                                    "last_cycle_s", "ctld_rss_kb")} for s in sampler.samples]
    finally:
        _stop_profiler(profiler)  # also when the run failed: its profile says why
        lc.stop()
    return result


TABLE = [
    ("nodes", "emulated nodes"), ("jobs", "jobs"), ("submit_jobs_per_s", "submitted (jobs/s)"),
    ("submit_call_max_s", "slowest SubmitBatchJobs call (s)"),
    ("started_total", "jobs started"), ("finished_total", "jobs finished (end recorded)"),
    ("started_jobs_per_s", "started, sustained (jobs/s)"),
    ("finished_jobs_per_s", "finished (end recorded), sustained (jobs/s)"),
    ("drain_jobs_per_s", "drain: first submit (--queued: release) to last end (jobs/s)"),
    ("cycles", "scheduling cycles"),
    ("cycle_mean_s", "cycle mean (s)"), ("cycle_p99_le_s", "cycle p99 (s, bucket bound)"),
    ("cycle_max_s", "cycle max (s)"), ("bus_lag_p50_le_s", "bus lag p50: status -> FreeJob (s, bucket bound)"),
    ("bus_lag_p99_le_s", "bus lag p99 (s, bucket bound)"), ("ctld_rss_mb_peak", "cranectld VmRSS peak (MB)"),
    ("cpu_share", "CPU (cores) cranectld / nodeemu / redis"),
    ("nodes_marked_down", "nodes marked DOWN (missed heartbeats)"), ("launches_resent", "launches re-sent"),
    ("load_before", "load average before"),
]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a short table (``--json``: one object)."""
    ap = argparse.ArgumentParser(prog="crane bench scale", description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10_000, help="emulated nodes (default 10000)")
    ap.add_argument("--jobs", type=int, default=100_000, help="one-CPU jobs to run (default 100000)")
    ap.add_argument("--cpus", type=int, default=4, help="CPUs per node (default 4)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds each job runs (default 5)")
    ap.add_argument("--batch", type=int, default=1000, help="jobs per SubmitBatchJobs call (default 1000)")
    ap.add_argument("--ping", type=float, default=5.0, help="heartbeat interval of the nodes, s (default 5)")
    ap.add_argument("--craned-timeout", type=float, default=30.0,
                    help="CraneCtld.CranedTimeout: seconds without a heartbeat before a node is DOWN (default 30)")
    ap.add_argument("--poll-interval", type=float, default=0.1,
                    help="emulator: sweep of the busy nodes every this many s (default 0.1)")
    ap.add_argument("--idle-interval", type=float, default=0.5,
                    help="emulator: sweep of every node every this many s (default 0.5)")
    ap.add_argument("--schedule-interval", type=float, default=1.0, help="CraneCtld.ScheduleInterval (default 1)")
    ap.add_argument("--scheduler", default="fifo", help="scheduler plugin (default fifo)")
    ap.add_argument("--queued", action="store_true",
                    help="submit every job held first, then release them all: the start/finish rates without "
                         "submissions competing (default: submit while the jobs run)")
    ap.add_argument("--rpc-timeout", type=float, default=600.0,
                    help="seconds one gRPC call (a SubmitBatchJobs of --batch jobs) may take (default 600)")
    ap.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds (default 1800)")
    ap.add_argument("--profile", metavar="FILE", help="sample cranectld with py-spy into FILE (raw stacks)")
    ap.add_argument("--base-dir", help="keep the cluster's directory (logs, journal) here instead of a temporary one")
    ap.add_argument("--json", action="store_true", help="print one JSON object (with the per-second series)")
    args = ap.parse_args(argv)
    for name in ("nodes", "jobs", "cpus", "batch"):
        if getattr(args, name) <= 0:
            print(f"crane bench scale: --{name} must be positive", file=sys.stderr)
            return 2
    if args.duration < 0:
        print("crane bench scale: --duration must not be negative", file=sys.stderr)
        return 2
    if min(args.ping, args.poll_interval, args.idle_interval, args.rpc_timeout, args.timeout) <= 0:
        print("crane bench scale: --ping, --poll-interval, --idle-interval and the timeouts must be positive",
              file=sys.stderr)
        return 2
    if args.profile and not (shutil.which("py-spy") or os.path.exists(
            os.path.join(os.path.dirname(sys.executable), "py-spy"))):
        print("crane bench scale: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"machine": f"{os.cpu_count()} cpus", "python": sys.version.split()[0],
                              "nodes": args.nodes, "cpus_per_node": args.cpus, "duration_s": args.duration,
                              "ping_s": args.ping, "scheduler": args.scheduler,
                              "mode": "queued" if args.queued else "live",
                              "load_before": round(os.getloadavg()[0], 2)}
    try:
        result.update(run(args))
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"crane bench scale: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        print(f"crane bench scale: the controller did not answer: {exc.code().name} {exc.details()}",
              file=sys.stderr)
        return 1
    if result.get("stopped"):
        print(f"crane bench scale: {result['stopped']}", file=sys.stderr)
    result["load_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(result))
        return 0
    for key, label in TABLE:
        value = result.get(key)
        if isinstance(value, dict):
            value = " / ".join(str(v) for v in value.values())
        print(f"{label:58} {value}")
    if result.get("profile"):
        prof = result["profile"]
        print(f"\ncranectld profile ({prof['samples']} samples), threads: {prof['threads']}")
        for name, pct in prof["own_pct"].items():
            print(f"  {pct:5.1f}%  {name}")
    return 0 if result.get("all_finished") else 1


if __name__ == "__main__":
    sys.exit(main())
