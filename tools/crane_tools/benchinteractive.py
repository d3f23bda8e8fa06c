"""``crane bench interactive``: crun and calloc beside Slurm's srun and salloc, in one run on one machine.

A fresh one-machine cluster (``LocalCluster``: private Redis, ``cranectld``, ``--nodes`` virtual
``craned`` nodes of ``--cpus`` CPUs, TLS and the closed bus on, as ``crane bench e2e``) and the
shared Slurm 22.05 harness (``../shared/bench/slurm``: one node advertising 64 CPUs, partition
``debug``) are up at the same time; every figure alternates crane and Slurm, round by round, so
both sides share the machine's noise. Each time is a whole client process, start to exit, run
from this process (``subprocess``), with a new job (or step) each time:

* **run**: ``crun true`` vs ``srun -p debug true`` (a new job of one task each time).
* **run_n**: ``crun -n T true`` vs ``srun -p debug -n T true`` (``--tasks``, default 8: fits on
  one crane node of 16 CPUs and in Slurm's 64 advertised CPUs).
* **step**: ``crun true`` inside an allocation vs ``srun true`` inside ``salloc``: one
  ``calloc -N 1`` and one ``salloc -N 1`` are held open (their command writes its environment to
  a file and waits on stdin); each round runs the step client with exactly that environment
  (``CRANE_JOB_ID`` / ``SLURM_JOB_ID`` and the rest), so only the step is timed.
* **alloc**: ``calloc -N 1 true`` vs ``salloc -p debug -N 1 true`` (allocate, run a local
  command, release).
* **stream**: ``crun bash -c 'head -c <MB>M /dev/zero'`` vs the same with ``srun``: stdout read
  here in 1 MiB reads, counted and hashed; the rate is bytes / (start to exit), in MB/s
  (10^6 bytes/s), and a round counts only if the sha256 matches the expected one. The controller's
  VmRSS / VmHWM are read before the first and after the last crane stream round, and its VmRSS
  is sampled every 20 ms during them (the relay must not buffer the output).

Medians over ``--rounds`` (default 20; ``--stream-rounds``, default 5, for the stream), one
untimed warm-up of each command first; ratios are crane / Slurm (for times: < 1 is faster; for
the stream rate: > 1 is faster). ``--no-slurm`` measures crane alone. crun and calloc go through
the cluster's ``cfored`` (the login node's forwarder, which ``LocalCluster`` starts as root) unless
``--direct`` (``CRANE_NO_CFORED=1``: their own grpc channel, TLS and token). Run as root (the cgroup
runtime and the Slurm harness need it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

PARTITION = "debug"
# environment variables that would make a client think it runs inside an allocation
_ALLOC_VARS = ("CRANE_JOB_ID", "CRANE_STEP_ID", "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_STEP_ID", "SLURM_NODELIST",
               "SLURM_JOB_NODELIST")

# (figure, what, unit, better) -- the table's rows in order; better: "lower" (times) or "higher" (rates)
FIGURES: list[tuple[str, str, str, str]] = [
    ("run", "`crun true` / `srun true` (new job, 1 task)", "ms", "lower"),
    ("run_n", "`crun -n {tasks} true` / `srun -n {tasks} true` (new job)", "ms", "lower"),
    ("step", "`crun true` / `srun true` inside `calloc -N 1` / `salloc -N 1`", "ms", "lower"),
    ("alloc", "`calloc -N 1 true` / `salloc -N 1 true`", "ms", "lower"),
    ("start", "client start alone: `crun --help` / `srun --help`", "ms", "lower"),
    ("stream", "`crun`/`srun bash -c 'head -c {mb}M /dev/zero'` to a sha256 here", "MB/s", "higher"),
]
TARGETS = {"run": ("ratio", 1.5), "stream": ("crane", 50.0)}


# -- report (pure: no cluster, no Slurm; unit-tested) -------------------------------------------------------------
def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and count of one side's samples (``{}`` when there are none)."""
    if not values:
        return {}
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "n": len(values)}


def ratio(crane: float | None, slurm: float | None) -> float | None:
    """crane / slurm (None when either is missing or slurm's is 0)."""
    if crane is None or not slurm:
        return None
    return round(crane / slurm, 2)


def figure(samples: dict[str, Sequence[float]]) -> dict[str, Any]:
    """One figure from its samples ``{"crane": [...], "slurm": [...]}``: both summaries and the median ratio."""
    crane = summarize(samples.get("crane") or [])
    slurm = summarize(samples.get("slurm") or [])
    return {"crane": crane, "slurm": slurm, "ratio": ratio(crane.get("median"), slurm.get("median")),
            "samples": {side: [round(v, 1) for v in values] for side, values in samples.items()}}


def verdicts(figures: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Each target met or not: ``run`` crun/srun ≤ 1.5, ``stream`` crane ≥ 50 MB/s (only figures measured)."""
    out: dict[str, bool] = {}
    for name, (kind, bound) in TARGETS.items():
        fig = figures.get(name) or {}
        if kind == "ratio" and fig.get("ratio") is not None:
            out[f"{name}_ratio_le_{bound}"] = fig["ratio"] <= bound
        elif kind == "crane" and fig.get("crane", {}).get("median") is not None:
            out[f"{name}_crane_ge_{bound:g}"] = fig["crane"]["median"] >= bound
    return out


def _cell(side: dict[str, Any], unit: str) -> str:
    if not side:
        return "—"
    return f"{side['median']:.1f} {unit} ({side['min']:.1f}–{side['max']:.1f}, n={side['n']})"


def render_table(result: dict[str, Any]) -> str:
    """A Markdown table of every measured figure: crane, Slurm, crane/Slurm (as docs/performance.md prints)."""
    fmt = {"tasks": result.get("tasks", 8), "mb": result.get("stream_mb", 200)}
    lines = ["| measure | cranesched (median, min–max) | Slurm 22.05 (same run) | crane / Slurm |",
             "|---|---|---|---|"]
    for name, what, unit, better in FIGURES:
        fig = result.get("figures", {}).get(name)
        if not fig:
            continue
        r = fig.get("ratio")
        note = "" if r is None else f"{r:.2f}" + (" (higher is better)" if better == "higher" else "")
        lines.append(f"| {what.format(**fmt)} | {_cell(fig['crane'], unit)} | {_cell(fig['slurm'], unit)} | "
                     f"{note or '—'} |")
    return "\n".join(lines)


def render_text(result: dict[str, Any]) -> str:
    """The whole text report: context lines, the table, memory and the targets."""
    out = [f"machine: {result.get('machine')}, python {result.get('python')}",
           f"crane cluster: {result.get('cluster')}, crun {result.get('crane_path', '?')}; "
           f"slurm: {result.get('slurm', {}).get('status', 'not run')}",
           f"rounds: {result.get('rounds')} (stream: {result.get('stream_rounds')}), interleaved crane/slurm", "",
           render_table(result)]
    mem = result.get("ctld_memory")
    if mem:
        out += ["", "cranectld during the stream rounds: VmRSS {before_kb} kB before, {after_kb} kB after, "
                    "peak {peak_kb} kB sampled (growth {growth_kb} kB); VmHWM {hwm_before_kb} → {hwm_after_kb} kB"
                    .format(**mem)]
        if "redis_before_kb" in mem:
            out.append("redis-server: VmRSS {redis_before_kb} kB before, {redis_after_kb} kB after, "
                       "VmHWM {redis_hwm_kb} kB".format(**mem))
        if "cfored_before_kb" in mem:
            out.append("cfored: VmRSS {cfored_before_kb} kB before, {cfored_after_kb} kB after, "
                       "VmHWM {cfored_hwm_kb} kB".format(**mem))
    lines = []
    for name, _what, _unit, _better in FIGURES:
        marks = (result.get("figures", {}).get(name) or {}).get("allocated_line_ms") or {}
        lines += [f"{name} {side} {m['median']:.1f} ms" for side, m in marks.items()]
    if lines:
        out += ["", "start to the client's 'allocated' line on stderr (median): " + ", ".join(lines)]
    cpu = []
    for name, _what, _unit, _better in FIGURES:
        sides = (result.get("figures", {}).get(name) or {}).get("client_cpu_ms") or {}
        if sides:
            cpu.append(f"{name} " + " / ".join(f"{side} {m['median']:.1f}" for side, m in sides.items()))
    if cpu:
        out += ["", "the client process's own CPU, user + sys, median ms: " + "; ".join(cpu)]
    if result.get("verdicts"):
        out += ["", "targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in result["verdicts"].items())]
    for err in result.get("errors", []):
        out.append(f"error: {err}")
    return "\n".join(out)


# -- measuring ------------------------------------------------------------------------------------------------------
def _bin(name: str) -> str:
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else (shutil.which(name) or name)


def _clean_env(base: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in base.items() if k not in _ALLOC_VARS}


ALLOCATED_LINES = (b"Allocated craned nodes", b"salloc: Granted job allocation")


def timed(cmd: list[str], env: dict[str, str], timeout: float = 120) -> tuple[float, float | None, float]:
    """Wall milliseconds of one run of ``cmd`` (start to exit), of its "allocated" line on stderr (crun's
    ``Allocated craned nodes``, salloc's ``Granted job allocation``; None if it printed none), and the client's
    own CPU milliseconds (user + sys, from ``wait4``); raise RuntimeError when it fails."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd="/tmp")
    allocated = None
    err: list[bytes] = []
    killer = threading.Timer(timeout, proc.kill)  # a client that hangs with stderr open
    killer.start()
    try:
        for line in proc.stderr:  # type: ignore[union-attr]
            if allocated is None and line.startswith(ALLOCATED_LINES):
                allocated = (time.perf_counter() - t) * 1000
            err.append(line)
        _pid, status, usage = os.wait4(proc.pid, 0)
        rc = proc.returncode = os.waitstatus_to_exitcode(status)
        cpu = (usage.ru_utime + usage.ru_stime) * 1000
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    ms = (time.perf_counter() - t) * 1000
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}: {b''.join(err).decode(errors='replace')[-400:]}")
    return ms, allocated, cpu


def expected_sha256(nbytes: int) -> str:
    """sha256 of ``nbytes`` zero bytes (what ``head -c N /dev/zero`` writes)."""
    h = hashlib.sha256()
    block = bytes(1 << 20)
    left = nbytes
    while left > 0:
        h.update(block[:min(left, len(block))])
        left -= len(block)
    return h.hexdigest()


def stream(cmd: list[str], env: dict[str, str], nbytes: int, want: str, timeout: float = 600) -> dict[str, Any]:
    """Run ``cmd``, read its stdout here (count, sha256); MB/s from start to exit; ``ok``: byte-exact."""
    h = hashlib.sha256()
    got = 0
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd="/tmp")
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
    rc = proc.wait(timeout)
    secs = time.perf_counter() - t
    reader.join(5)
    proc.stdout.close()  # type: ignore[union-attr]
    digest = h.hexdigest()
    out = {"bytes": got, "s": round(secs, 3), "mb_per_s": round(got / secs / 1e6, 1), "rc": rc,
           "ok": rc == 0 and got == nbytes and digest == want}
    if not out["ok"]:
        out["error"] = (f"{' '.join(cmd)}: exit {rc}, {got} of {nbytes} bytes, sha256 "
                        f"{'matches' if digest == want else 'differs'}: "
                        f"{b''.join(err).decode(errors='replace')[-300:]}")
    return out


def rss_kb(pid: int, key: str = "VmRSS") -> int:
    """A process's ``VmRSS`` (or ``VmHWM``) in kB, 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Sample a process's VmRSS every ``interval`` seconds in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


class HeldAllocation:
    """An allocation kept open: ``cmd`` (``calloc ...`` / ``salloc ...``) runs a shell that writes its environment
    to a file and waits on stdin; :attr:`env` is that environment; :meth:`close` ends the shell normally."""

    def __init__(self, cmd: list[str], env: dict[str, str], id_var: str, timeout: float = 60) -> None:
        self.dir = tempfile.mkdtemp(prefix="crane-bench-alloc-")
        path = os.path.join(self.dir, "env")
        script = f"env -0 > {path}.tmp && mv {path}.tmp {path} && read -r _ || true"
        self.proc = subprocess.Popen([*cmd, "bash", "-c", script], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/tmp")
        deadline = time.time() + timeout
        while not os.path.exists(path):
            if self.proc.poll() is not None or time.time() > deadline:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else "timeout"
                self.close()
                raise RuntimeError(f"{' '.join(cmd)}: no allocation: {err[-400:]}")
            time.sleep(0.02)
        with open(path, "rb") as fh:
            pairs = [item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item]
        self.env = {k.decode(): v.decode(errors="replace") for k, v in pairs}
        if not self.env.get(id_var):
            self.close()
            raise RuntimeError(f"{' '.join(cmd)}: the shell has no {id_var}")
        self.job_id = self.env[id_var]

    def close(self, timeout: float = 30) -> int | None:
        """Let the shell exit (stdin closed) and wait for the allocation client to end."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            return self.proc.wait(10)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _harness_script(name: str) -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    for up in range(2, 6):
        script = os.path.join(here, *[".."] * up, "shared", "bench", "slurm", name)
        if os.path.exists(script):
            return os.path.normpath(script)
    return None


def slurm_ready(start: bool = True) -> str:
    """``"up"`` when partition ``debug`` answers ``sinfo``; else try the harness's up.sh once; else why not."""
    if shutil.which("srun") is None:
        return "srun not installed (apt-get install -y slurmctld slurmd slurm-client munge)"

    def idle() -> bool:
        try:
            out = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%a %t"], capture_output=True, text=True,
                                 timeout=20).stdout.split()
        except (OSError, subprocess.SubprocessError):
            return False
        return len(out) >= 2 and out[0] == "up" and out[1] in ("idle", "mix", "alloc")

    if idle():
        return "up"
    up = _harness_script("up.sh") if start else None
    if up is None:
        return "Slurm is not up (../shared/bench/slurm/up.sh)"
    proc = subprocess.run(["bash", up], capture_output=True, text=True, timeout=300)
    return "up (started by up.sh)" if idle() else f"up.sh failed: {proc.stderr.strip()[-300:]}"


class Bench:
    """The two sides' commands and the interleaved rounds."""

    def __init__(self, crane_env: dict[str, str], slurm: bool, tasks: int, mb: int) -> None:
        self.crane_env = _clean_env(crane_env)
        self.slurm_env = _clean_env(dict(os.environ))
        self.slurm = slurm
        self.tasks = tasks
        self.mb = mb
        self.crun, self.calloc = _bin("crun"), _bin("calloc")
        self.errors: list[str] = []

    def commands(self, name: str) -> dict[str, list[str]]:
        """The crane and slurm command of a figure (``step``: the step client alone)."""
        n = str(self.tasks)
        table = {
            "run": ([self.crun, "true"], ["srun", "-p", PARTITION, "true"]),
            "run_n": ([self.crun, "-n", n, "true"], ["srun", "-p", PARTITION, "-n", n, "true"]),
            "step": ([self.crun, "true"], ["srun", "true"]),
            "alloc": ([self.calloc, "-N", "1", "true"], ["salloc", "-p", PARTITION, "-N", "1", "true"]),
            "start": ([self.crun, "--help"], ["srun", "--help"]),
            "stream": ([self.crun, "bash", "-c", f"head -c {self.mb}M /dev/zero"],
                       ["srun", "-p", PARTITION, "bash", "-c", f"head -c {self.mb}M /dev/zero"]),
        }
        crane, slurm = table[name]
        return {"crane": crane, "slurm": slurm}

    def sides(self) -> list[str]:
        """``crane`` and, with Slurm up, ``slurm``."""
        return ["crane", "slurm"] if self.slurm else ["crane"]

    def latency(self, name: str, rounds: int, envs: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
        """Interleaved timed runs of one figure's commands; one warm-up each; a failed run is an error, not a sample."""
        cmds = self.commands(name)
        envs = envs or {"crane": self.crane_env, "slurm": self.slurm_env}
        samples: dict[str, list[float]] = {s: [] for s in self.sides()}
        marks: dict[str, list[float]] = {s: [] for s in self.sides()}
        cpus: dict[str, list[float]] = {s: [] for s in self.sides()}
        failures: dict[str, int] = {s: 0 for s in self.sides()}
        for i in range(rounds + 1):
            for side in self.sides():
                try:
                    ms, allocated, cpu = timed(cmds[side], envs[side])
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    failures[side] += 1
                    if failures[side] <= 2:
                        self.errors.append(f"{name} {side}: {exc}")
                    continue
                if i:
                    samples[side].append(ms)
                    cpus[side].append(cpu)
                    if allocated is not None:
                        marks[side].append(allocated)
        fig = figure(samples)
        fig["failed"] = failures
        # start to the client's "allocated" line: the part before the tasks run (crun and salloc print one)
        fig["allocated_line_ms"] = {side: summarize(v) for side, v in marks.items() if v}
        fig["client_cpu_ms"] = {side: summarize(v) for side, v in cpus.items() if v}  # the client process alone
        return fig

    def step(self, rounds: int) -> dict[str, Any]:
        """Steps inside a held calloc / salloc allocation."""
        held: dict[str, HeldAllocation] = {}
        try:
            held["crane"] = HeldAllocation([self.calloc, "-N", "1", "--"], self.crane_env, "CRANE_JOB_ID")
            if self.slurm:
                held["slurm"] = HeldAllocation(["salloc", "-p", PARTITION, "-N", "1"], self.slurm_env,
                                               "SLURM_JOB_ID")
            fig = self.latency("step", rounds, {side: h.env for side, h in held.items()})
            fig["jobs"] = {side: h.job_id for side, h in held.items()}
            return fig
        finally:
            for side, h in held.items():
                rc = h.close()
                if rc not in (0, None):
                    self.errors.append(f"step {side}: the allocation client exited {rc}")

    def stream(self, rounds: int, ctld_pid: int | None, redis_pid: int | None = None,
               cfored_pid: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The stream figure and the controller's (and Redis's, cfored's) memory around the rounds."""
        nbytes = self.mb << 20
        want = expected_sha256(nbytes)
        cmds = self.commands("stream")
        envs = {"crane": self.crane_env, "slurm": self.slurm_env}
        samples: dict[str, list[float]] = {s: [] for s in self.sides()}
        runs: list[dict[str, Any]] = []
        mem: dict[str, Any] = {}
        if ctld_pid:
            mem = {"before_kb": rss_kb(ctld_pid), "hwm_before_kb": rss_kb(ctld_pid, "VmHWM")}
        if redis_pid:
            mem["redis_before_kb"] = rss_kb(redis_pid)
        if cfored_pid:
            mem["cfored_before_kb"] = rss_kb(cfored_pid)
        sampler = RssSampler(ctld_pid) if ctld_pid else None
        with sampler or contextlib.nullcontext():
            for _ in range(rounds):
                for side in self.sides():
                    r = stream(cmds[side], envs[side], nbytes, want)
                    runs.append({"side": side, **{k: v for k, v in r.items() if k != "error"}})
                    if r["ok"]:
                        samples[side].append(r["mb_per_s"])
                    else:
                        self.errors.append(f"stream {side}: {r['error']}")
        if ctld_pid:
            mem.update(after_kb=rss_kb(ctld_pid), hwm_after_kb=rss_kb(ctld_pid, "VmHWM"),
                       peak_kb=sampler.peak if sampler else 0)
            mem["growth_kb"] = mem["after_kb"] - mem["before_kb"]
        if redis_pid:
            mem["redis_after_kb"] = rss_kb(redis_pid)
            mem["redis_hwm_kb"] = rss_kb(redis_pid, "VmHWM")
        if cfored_pid:
            mem["cfored_after_kb"] = rss_kb(cfored_pid)
            mem["cfored_hwm_kb"] = rss_kb(cfored_pid, "VmHWM")
        fig = figure(samples)
        fig["runs"] = runs
        fig["byte_exact"] = {s: sum(1 for r in runs if r["side"] == s and r["ok"]) for s in self.sides()}
        return fig, mem


ALL = ("run", "run_n", "step", "alloc", "start", "stream")


def run(args: argparse.Namespace, lc: Any) -> dict[str, Any]:
    """Every selected figure on the started cluster ``lc`` (and Slurm when ``args.slurm_status`` is up)."""
    env = lc.env()
    if args.direct:
        env["CRANE_NO_CFORED"] = "1"  # crun and calloc call the controller themselves (grpc, TLS, token)
    bench = Bench(env, args.slurm_status.startswith("up"), args.tasks, args.mb)
    figures: dict[str, Any] = {}
    mem: dict[str, Any] = {}
    for name in args.only:
        try:
            if name == "step":
                figures[name] = bench.step(args.rounds)
            elif name == "stream":
                redis, cfored = getattr(lc, "redis", None), getattr(lc, "cfored", None)
                figures[name], mem = bench.stream(args.stream_rounds, lc.ctld.pid if lc.ctld else None,
                                                  getattr(redis, "pid", None),
                                                  cfored.pid if cfored is not None and not args.direct else None)
            else:
                figures[name] = bench.latency(name, args.rounds)
        except Exception as exc:  # noqa: BLE001 - one figure's failure is reported, the others still run
            bench.errors.append(f"{name}: {type(exc).__name__}: {exc}")
        if args.progress:
            shown = {k: v for k, v in figures.get(name, {}).items() if k not in ("runs", "samples")}
            print(f"[bench interactive] {name}: {json.dumps(shown)}", file=sys.stderr, flush=True)
    via_cfored = getattr(lc, "cfored", None) is not None and not args.direct
    result: dict[str, Any] = {"crane_path": "through cfored (the login node's forwarder)" if via_cfored else
                              "direct (grpc to cranectld)", "figures": figures, "verdicts": verdicts(figures),
                              "errors": bench.errors}
    if mem:
        result["ctld_memory"] = mem
    result["commands"] = {name: {side: " ".join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd))
                                 for side, cmd in bench.commands(name).items()} for name in args.only}
    return result


def main(argv: list[str] | None = None, cluster_factory: Callable[..., Any] | None = None) -> int:
    """Run the benchmark and print the report (``--json``: one object)."""
    ap = argparse.ArgumentParser(prog="crane bench interactive", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="timed rounds per latency figure and side (default 20)")
    ap.add_argument("--stream-rounds", type=int, default=5, help="rounds of the stream figure per side (default 5)")
    ap.add_argument("--mb", type=int, default=200, help="MiB written by the stream figure's task (default 200)")
    ap.add_argument("--tasks", type=int, default=8, help="tasks of the run_n figure (default 8)")
    ap.add_argument("--nodes", type=int, default=4, help="virtual crane nodes (default 4)")
    ap.add_argument("--cpus", type=int, default=16, help="CPUs per virtual node (default 16: 64 in all, as Slurm's)")
    ap.add_argument("--only", default=",".join(ALL), help=f"figures to measure, comma-separated ({','.join(ALL)})")
    ap.add_argument("--no-slurm", action="store_true", help="measure crane alone")
    ap.add_argument("--direct", action="store_true",
                    help="crun/calloc call cranectld directly (CRANE_NO_CFORED=1), not through the cluster's cfored")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in args.only if x not in ALL]
    if bad or args.rounds <= 0 or args.stream_rounds <= 0 or args.mb <= 0 or args.tasks <= 0:
        print(f"crane bench interactive: --rounds, --stream-rounds, --mb and --tasks must be positive, --only from "
              f"{','.join(ALL)}" + (f" (not {','.join(bad)})" if bad else ""), file=sys.stderr)
        return 2
    if args.tasks > args.nodes * args.cpus:
        print("crane bench interactive: --tasks is larger than the cluster", file=sys.stderr)
        return 2
    args.progress = not args.quiet
    args.slurm_status = "off (--no-slurm)" if args.no_slurm else slurm_ready()
    if cluster_factory is None:
        from crane_tools.benche2e import _cluster

        cluster_factory = _cluster
    result: dict[str, Any] = {"machine": f"{os.cpu_count()} cpus", "python": sys.version.split()[0],
                              "cluster": f"{args.nodes} nodes x {args.cpus} cpus", "tasks": args.tasks,
                              "stream_mb": args.mb, "rounds": args.rounds, "stream_rounds": args.stream_rounds,
                              "slurm": {"status": args.slurm_status, "partition": PARTITION}}
    with cluster_factory(args.nodes, args.cpus) as lc:
        result.update(run(args, lc))
    if args.json:
        print(json.dumps(result))
    else:
        print(render_text(result))
    return 1 if result["errors"] and not result["figures"] else 0


if __name__ == "__main__":
    sys.exit(main())
