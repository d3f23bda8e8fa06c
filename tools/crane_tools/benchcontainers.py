"""``crane bench containers``: container jobs (cri runtime, private containerd) beside plain cgroup jobs.

One LocalCluster with a private containerd (``crane_tools.containerd``) and ``Plugins.Runtime: [cri,
cgroup]``, so both kinds of job run on the same nodes in the same run:

* **latency**: submit one job and time until the first line of its output appears in the job's output
  file (polled every 2 ms); jobs one at a time, container and plain alternately; median of ``--runs``
  (default 10) of each, after one warm-up of each.
* **drain**: submit ``--jobs`` (default 200) trivial jobs in one SubmitBatchJobs call and time until
  all have ended (first submit to last completion); plain and container rounds alternate
  (``--rounds``, default 1).

Needs root, containerd, runc and busybox-static (as ``crane demo``'s container job).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

IMAGE = "localhost/crane-busybox:1"


def _first_line_s(path: str, t0: float, timeout: float) -> float:
    """Seconds from ``t0`` until ``path`` holds a complete first line."""
    deadline = t0 + timeout
    while time.time() < deadline:
        try:
            with open(path, "rb") as fh:
                if b"\n" in fh.read(4096):
                    return time.time() - t0
        except OSError:
            pass
        time.sleep(0.002)
    raise TimeoutError(f"no output in {path} within {timeout:.0f}s")


def _spec(client: Any, container: bool, command: str, **fields: Any) -> Any:
    from crane_common.proto import crane_pb2 as pb

    spec = client.spec(wrap=command, **fields)
    if container:
        spec.container.CopyFrom(pb.ContainerSpec(image=IMAGE, command=["/bin/sh", "-c", command]))
    return spec


def latency(client: Any, workdir: str, runs: int) -> dict[str, Any]:
    """Submit-to-first-output-line medians (ms) of container and plain jobs, alternating."""
    from crane_common.states import FINAL_STATES, JobState

    from crane_tools.client import wait_for

    times: dict[str, list[float]] = {"container": [], "plain": []}
    for i in range(runs + 1):
        for kind in ("container", "plain"):
            spec = _spec(client, kind == "container", "echo first line; true", cwd=workdir,
                         output=f"lat-{kind}-%j.out")
            t0 = time.time()
            job_id = client.submit(spec)[0]
            took = _first_line_s(os.path.join(workdir, f"lat-{kind}-{job_id}.out"), t0, 60)
            wait_for(lambda j=job_id: (x := client.job(j)) is not None and JobState(x.status) in FINAL_STATES,
                     timeout=60)
            state = JobState(client.job(job_id).status).name
            if state != "Completed":
                raise RuntimeError(f"{kind} latency job {job_id} ended {state}")
            if i:  # the first round warms up both paths
                times[kind].append(took * 1000)
    out: dict[str, Any] = {"latency_runs": runs}
    for kind, values in times.items():
        out[f"{kind}_start_median_ms"] = round(statistics.median(values), 1)
        out[f"{kind}_start_min_ms"] = round(min(values), 1)
        out[f"{kind}_start_max_ms"] = round(max(values), 1)
    out["container_vs_plain_start"] = round(out["container_start_median_ms"] / out["plain_start_median_ms"], 2)
    return out


def drain(client: Any, n: int, container: bool) -> dict[str, Any]:
    """Submit ``n`` trivial jobs in one call and time the drain."""
    from crane_common.states import JobState

    from crane_tools.benche2e import _wait_drained

    spec = _spec(client, container, "true", cwd="/tmp", output="/dev/null")
    t0 = time.time()
    ids = client.submit(spec, count=n)
    t_end = _wait_drained(client, ids, timeout=max(120, 2 * n))
    infos = client.jobs(ids, include_finished=True)
    states: dict[str, int] = {}
    for info in infos:
        name = JobState(info.status).name
        states[name] = states.get(name, 0) + 1
    return {"drain_s": round(t_end - t0, 3), "jobs_per_s": round(n / (t_end - t0), 1), "states": states}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures (``--json``: one object)."""
    ap = argparse.ArgumentParser(prog="crane bench containers", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="latency samples per kind (default 10)")
    ap.add_argument("--jobs", type=int, default=200, help="trivial jobs per drain (default 200)")
    ap.add_argument("--rounds", type=int, default=1, help="drain rounds per kind, alternating (default 1)")
    ap.add_argument("--nodes", type=int, default=2, help="virtual nodes (default 2)")
    ap.add_argument("--cpus", type=int, default=4, help="CPUs per virtual node (default 4)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.runs <= 0 or args.jobs <= 0 or args.rounds <= 0:
        print("crane bench containers: --runs, --jobs and --rounds must be positive", file=sys.stderr)
        return 2
    from crane_tools.demo import _socket_of, container_support

    containerd, why = container_support()
    if containerd is None:
        print(f"crane bench containers: container jobs cannot run here: {why}", file=sys.stderr)
        return 1
    from crane_tools.localcluster import LocalCluster

    result: dict[str, Any] = {"machine": f"{os.cpu_count()} cpus", "python": sys.version.split()[0],
                              "cluster": f"{args.nodes} nodes x {args.cpus} cpus", "image": IMAGE}
    lc = LocalCluster(nodes=args.nodes, cpus=args.cpus, memory=f"{args.cpus * 256}M", cluster="benchctr",
                      Craned={"PingInterval": 2, "KillWait": 2},
                      CraneCtld={"CranedTimeout": 30, "ScheduleInterval": 0.1, "FinishedJobRetention": 3600})
    with containerd.PrivateContainerd(os.path.join(lc.base_dir, "containerd")) as ctr:
        lc.update_config(Plugins={"Runtime": ["cri", "cgroup"], "Settings": {"cri": {
            "Endpoint": _socket_of(ctr), "LogRoot": os.path.join(lc.base_dir, "crilogs"),
            "Prefix": f"crane_cri_bench_{os.getpid()}"}}})
        with lc:
            client = lc.client()
            workdir = os.path.join(lc.base_dir, "work")
            os.makedirs(workdir, exist_ok=True)
            os.chmod(workdir, 0o777)
            result.update(latency(client, workdir, args.runs))
            rates: dict[str, list[float]] = {"plain": [], "container": []}
            rounds: list[dict[str, Any]] = []
            for _ in range(args.rounds):
                for kind in ("plain", "container"):
                    r = drain(client, args.jobs, kind == "container")
                    rates[kind].append(r["jobs_per_s"])
                    rounds.append({"kind": kind, **r})
            result["drain_jobs"] = args.jobs
            result["drain_rounds"] = rounds
            for kind, values in rates.items():
                result[f"{kind}_drain_jobs_per_s"] = statistics.median(values)
            result["container_vs_plain_drain"] = round(result["container_drain_jobs_per_s"]
                                                       / result["plain_drain_jobs_per_s"], 2)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:32} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
