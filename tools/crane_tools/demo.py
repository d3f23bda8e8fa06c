"""``crane demo``: a real cluster on this machine and a sample workload that exercises it.

Starts a private Redis, ``cranectld`` and several ``craned`` virtual nodes
(closed bus, TLS, JWTs and the account database enforced), adds a QoS, an
account and the user with ``cacctmgr``, then submits jobs with the real ``cbatch`` (single-node, multi-node, one over
its memory, one over its time limit, one cancelled with ``ccancel``; and, where this host can run a
private containerd, one container job with ``cbatch --pod`` through the cri runtime), shows
the queue changing with ``cqueue`` until everything has ended, and prints a
summary of states and exit codes. With ``--exit`` it stops the cluster and
exits 0 only if every job ended as expected; without it, the cluster stays up
and the user gets the commands to use it from another shell.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from crane_common.states import JobState, format_exit_code

MEM_HOG = "python3 -c 'b = bytearray(200 * 1024 * 1024); print(len(b))'"


@dataclass
class DemoJob:
    """One job of the sample workload and how it is expected to end."""

    label: str
    args: list[str]
    expect: JobState
    job_id: int = 0


def sample_workload() -> list[DemoJob]:
    """The jobs the demo submits."""
    return [
        DemoJob("hello (1 node)", ["-J", "hello", "--wrap", "echo hello from $CRANE_NODENAME; sleep 2"],
                JobState.Completed),
        DemoJob("multi-node (-N 2) with a step on each node (crun)", ["-J", "multi", "-N", "2", "-c", "1", "--wrap",
                                      "echo nodes=$CRANE_JOB_NODELIST n=$CRANE_JOB_NUM_NODES; crun hostname; sleep 2"],
                JobState.Completed),
        DemoJob("fails with exit 3", ["-J", "fail", "--wrap", "sleep 1; exit 3"], JobState.Failed),
        DemoJob("over its memory (--mem 50M)", ["-J", "oom", "--mem", "50M", "--wrap", MEM_HOG],
                JobState.OutOfMemory),
        DemoJob("over its time limit (-t 0:0:3)", ["-J", "timeout", "-t", "00:00:03", "--wrap", "sleep 60"],
                JobState.ExceedTimeLimit),
        DemoJob("cancelled with ccancel", ["-J", "cancelme", "--wrap", "sleep 120"], JobState.Cancelled),
        DemoJob("queued behind (whole node)", ["-J", "wide", "-c", "2", "--wrap", "sleep 2"], JobState.Completed),
    ]


CONTAINER_IMAGE = "localhost/crane-busybox:1"


def container_job() -> DemoJob:
    """The container job (``cbatch --pod``), run by the cri runtime plugin through a private containerd."""
    return DemoJob("container (--pod busybox, cri)", ["-J", "container", "--pod", CONTAINER_IMAGE, "--wrap",
                                                       "echo hello from a container; id"], JobState.Completed)


def container_support() -> tuple[object | None, str]:
    """``(crane_tools.containerd, "")`` when container jobs can run here, else ``(None, why not)``."""
    try:
        from crane_tools import containerd
    except ImportError:
        return None, "this tree has no containerd helper (crane_tools.containerd)"
    try:
        from importlib.metadata import entry_points

        if not any(ep.name == "cri" for ep in entry_points(group="crane.runtime")):
            return None, "the cri runtime plugin is not installed"
    except Exception:  # noqa: BLE001 - metadata trouble: let available() decide
        pass
    if containerd.available():
        return containerd, ""
    why = containerd.unavailable_reason() if hasattr(containerd, "unavailable_reason") else ""
    if not why:
        missing = [b for b in ("containerd", "runc", "busybox") if not shutil.which(b)]
        why = ("not root" if os.geteuid() != 0 else
               f"missing {', '.join(missing)}" if missing else "containerd cannot run here")
    return None, str(why)


def _socket_of(handle: object) -> str:
    for attr in ("socket", "socket_path", "address", "sock", "path"):
        value = getattr(handle, attr, None)
        if isinstance(value, str) and value:
            return value
    return str(handle)


def fake_gpu_devices(count: int = 2) -> list[str]:
    """Character-device files standing in for GPUs (root only; an unassigned major number, so opening
    one fails with ENXIO). The devices cgroup still allows or denies them, which the demo shows."""
    if os.geteuid() != 0:
        return []
    import stat
    import tempfile

    devdir = tempfile.mkdtemp(prefix="crane-demo-fakegpu-")
    os.chmod(devdir, 0o755)
    paths = []
    for i in range(count):
        path = os.path.join(devdir, f"fakegpu{i}")
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(241, i))
        except OSError:
            shutil.rmtree(devdir, ignore_errors=True)
            return []
        paths.append(path)
    return paths


def _bin(name: str) -> str:
    here = os.path.dirname(sys.executable)
    path = os.path.join(here, name)
    return path if os.path.exists(path) else (shutil.which(name) or name)


def _run(cmd: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    from crane_tools.localcluster import LocalCluster

    ap = argparse.ArgumentParser(prog="crane demo", description=__doc__.splitlines()[0])
    ap.add_argument("--exit", action="store_true", help="stop when the workload has ended; exit 0 only if all "
                                                        "jobs ended as expected")
    ap.add_argument("--nodes", type=int, default=3, help="virtual nodes (default 3)")
    ap.add_argument("--dir", help="cluster directory (default: a new temporary directory)")
    ap.add_argument("--timeout", type=float, default=120, help="give up after this many seconds")
    ap.add_argument("--no-containers", action="store_true", help="skip the container job (no private containerd)")
    ap.add_argument("--plugins", default="sql", metavar="NAME[,NAME...]",
                    help="event plugins for cplugind (Plugins.Events; default sql: the job history cacct reads; "
                         "'' for none)")
    args = ap.parse_args(argv)

    print(f"Starting a {args.nodes}-node cluster on this machine (Redis, cranectld, {args.nodes} x craned)...")
    extra: dict = {}
    devdir = fake_gpu_devices()
    if devdir:  # a GPU node over FAKE device files (there are no GPUs here), in its own partition
        extra = {"Nodes": [{"name": f"cn[01-{args.nodes:02d}]", "cpu": 2, "memory": "1G"},
                           {"name": "gpu01", "cpu": 2, "memory": "1G",
                            "gres": [{"name": "gpu", "type": "fake", "DeviceFileList": devdir}]}],
                 "Partitions": [{"name": "debug", "nodes": f"cn[01-{args.nodes:02d}]", "priority": 1},
                                {"name": "gpu", "nodes": "gpu01", "priority": 2}]}
    events = [n.strip() for n in args.plugins.split(",") if n.strip()]
    if events:
        extra["Plugins"] = {"Events": events, **({"Accounting": "sql"} if "sql" in events else {})}
        print(f"Event plugins: {', '.join(events)} (in cplugind)")
    stack = contextlib.ExitStack()
    containerd_mod, why = (None, "--no-containers") if args.no_containers else container_support()
    cluster = LocalCluster(args.dir, nodes=args.nodes, cpus=2, memory="1G", cluster="demo",
                           Craned={"PingInterval": 1, "KillWait": 1},
                           Accounting={"Enforce": ["associations", "qos", "limits"]}, **extra)
    if containerd_mod is not None:
        try:
            handle = stack.enter_context(containerd_mod.PrivateContainerd(os.path.join(cluster.base_dir,
                                                                                       "containerd")))
        except Exception as exc:  # noqa: BLE001 - the container job is optional: say why and go on
            stack.close()
            stack = contextlib.ExitStack()
            containerd_mod, why = None, f"the private containerd did not start ({exc})"
        else:
            sock = _socket_of(handle)
            cluster.update_config(Plugins={"Runtime": ["cri", "cgroup"], "Settings": {"cri": {
                "Endpoint": sock, "LogRoot": os.path.join(cluster.base_dir, "crilogs"),
                "Prefix": f"crane_cri_demo_{os.getpid()}"}}})
            print(f"Container jobs: a private containerd at {sock} (image {CONTAINER_IMAGE}); "
                  "Plugins.Runtime: cri, cgroup")
    if containerd_mod is None:
        print(f"Container job skipped: {why}.")
    try:
        cluster.start()
    except Exception as exc:
        print(f"crane demo: could not start the cluster: {exc}", file=sys.stderr)
        cluster.stop()
        stack.close()
        return 1
    if cluster.bus_dir:
        print(f"The bus is closed: Redis ACL users per role, root-only credentials in {cluster.bus_dir}, "
              "signed node commands.")
    env = cluster.env()
    ok = False
    try:
        user = _run([_bin("crane"), "token", "issue", "--user", _whoami(), "--uid", str(os.getuid()),
                     "--ttl", "86400"], env).stdout.strip()
        env["CRANE_TOKEN"] = user
        token_file = os.path.join(cluster.base_dir, "token")
        with open(token_file, "w") as fh:
            fh.write(user + "\n")
        os.chmod(token_file, 0o600)
        workdir = os.path.join(cluster.base_dir, "work")
        os.makedirs(workdir, exist_ok=True)
        os.chmod(workdir, 0o777)
        print(f"Cluster up: config {cluster.config_path}\n")
        _accounts(env)
        print(_run([_bin("cinfo")], env, check=False).stdout)
        jobs = sample_workload()
        if devdir:
            jobs.append(DemoJob("GPU job (--gres gpu:1, fake GPUs)",
                                ["-J", "gpu", "-p", "gpu", "--gres", "gpu:1", "--wrap",
                                 "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; sleep 1"], JobState.Completed))
        if containerd_mod is not None:
            jobs.append(container_job())
        for job in jobs:
            out = _run([_bin("cbatch"), "-D", workdir, "-o", "%x-%j.out", *job.args], env).stdout.strip()
            job.job_id = int(out.rstrip(".").split()[-1])
            print(f"  cbatch {' '.join(job.args[:2])} ... -> {out}   [{job.label}]")
        ok = _watch(jobs, env, args.timeout)
        states = _final_states(jobs, env)
        _summary(jobs, states, workdir)
        ok = ok and all(states.get(j.job_id, ("?", 0))[0] == j.expect.name for j in jobs)
        ok = _interactive(env, workdir) and ok
        if "sql" in events:
            ok = _history(jobs, env) and ok
        print("\nAll jobs ended as expected." if ok else "\nSome jobs did NOT end as expected.")
        if args.exit:
            return 0 if ok else 1
        bindir = os.path.dirname(_bin("cbatch"))
        print(f"\nThe cluster keeps running. From another shell:\n"
              f"  export PATH={bindir}:$PATH CRANE_CONFIG={cluster.config_path} CRANE_TOKEN=$(cat {token_file})\n"
              f"  cbatch --wrap 'hostname; sleep 5'\n  cqueue\n  cinfo\n  ccontrol show node\n"
              f"  crun -N 2 hostname\n  crun --pty bash\n  calloc -N 2\n"
              f"(job output lands in the submit directory; logs in {cluster.logs})\nPress Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopping")
        return 0 if ok else 1
    except Exception as exc:
        print(f"crane demo: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        stack.close()
        if devdir:
            shutil.rmtree(os.path.dirname(devdir[0]), ignore_errors=True)


def _accounts(env: dict[str, str]) -> None:
    """The account database the demo's jobs need (every enforcement is on): a QoS, an account, this user."""
    me = _whoami()
    for args in (["add", "qos", "normal", "Priority=100", "MaxSubmitJobsPerUser=100", "MaxTimeLimitPerJob=1:00:00"],
                 ["add", "account", "demo", "Description=the demo's jobs", "QosList=normal", "DefaultQos=normal"],
                 ["add", "user", me, "Account=demo"]):
        _run([_bin("cacctmgr"), *args], env)
        print(f"  cacctmgr {' '.join(args)}")
    print(_run([_bin("cacctmgr"), "show", "account"], env).stdout)


def _history(jobs: list[DemoJob], env: dict[str, str], timeout: float = 20.0) -> bool:
    """Show ``cacct`` of the demo's jobs (the controller's recent jobs merged with the job history that
    cplugind's sql plugin writes, which keeps them after the controller forgets them)."""
    ids = ",".join(str(j.job_id) for j in jobs)
    deadline = time.time() + timeout
    out = ""
    while time.time() < deadline:
        out = _run([_bin("cacct"), "-j", ids, "-o", "%j %n %P %a %t %e"], env, check=False).stdout
        if all(any(line.split()[:1] == [str(j.job_id)] for line in out.splitlines()) for j in jobs):
            print("\n--- cacct (job history: cplugind's sql plugin keeps it after the controller forgets a job) ---")
            print(out, end="")
            return True
        time.sleep(0.5)
    print(f"\ncacct did not show every job within {timeout:.0f}s:\n{out}")
    return False


def _interactive(env: dict[str, str], workdir: str) -> bool:
    """Run ``crun -N 3 hostname`` (a job of its own, one task per node, output streamed back); True if it worked."""
    cmd = [_bin("crun"), "-N", "3", "hostname"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=workdir, timeout=60)
    names = sorted(proc.stdout.split())
    print(f"\n--- interactive: crun -N 3 hostname (exit {proc.returncode}) ---\n{proc.stdout.rstrip()}")
    if proc.returncode != 0 or len(set(names)) != 3:
        print(f"crun did not run on three nodes: {proc.stderr.strip()[-300:]}")
        return False
    return True


def _whoami() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _watch(jobs: list[DemoJob], env: dict[str, str], timeout: float) -> bool:
    ids = ",".join(str(j.job_id) for j in jobs)
    cancel = next(j for j in jobs if j.expect == JobState.Cancelled)
    cancelled = False
    start = time.time()
    last = ""
    while time.time() - start < timeout:
        out = _run([_bin("cqueue"), "-j", ids], env, check=False).stdout
        if out != last:
            print(f"\n--- cqueue at t={time.time() - start:4.1f}s ---\n{out.rstrip()}")
            last = out
        if not cancelled and time.time() - start > 2:
            print(f"\n$ ccancel {cancel.job_id}\n" + _run([_bin("ccancel"), str(cancel.job_id)], env).stdout.strip())
            cancelled = True
        if out.strip() and len(out.strip().splitlines()) <= 1 and cancelled:
            return True
        time.sleep(0.5)
    print("timed out waiting for the workload to end", file=sys.stderr)
    return False


def _final_states(jobs: list[DemoJob], env: dict[str, str]) -> dict[int, tuple[str, int]]:
    from crane_tools.client import CtldClient

    client = CtldClient.from_config(env["CRANE_CONFIG"], token=env.get("CRANE_TOKEN"))
    infos = client.jobs([j.job_id for j in jobs], include_finished=True)
    return {i.job_id: (JobState(i.status).name, i.exit_code) for i in infos}


def _summary(jobs: list[DemoJob], states: dict[int, tuple[str, int]], workdir: str) -> None:
    print("\nSummary:")
    print(f"  {'JOBID':<6} {'JOB':<34} {'STATE':<16} {'EXITCODE':<9} EXPECTED")
    for j in jobs:
        state, code = states.get(j.job_id, ("?", 0))
        print(f"  {j.job_id:<6} {j.label:<34} {state:<16} {format_exit_code(code):<9} {j.expect.name}")
    for j in jobs:
        name = j.args[j.args.index("-J") + 1]
        path = os.path.join(workdir, f"{name}-{j.job_id}.out")
        if name in ("hello", "multi", "gpu", "container") and os.path.exists(path):
            with open(path) as fh:
                print(f"{path}:\n  {fh.read().strip()}")


if __name__ == "__main__":
    sys.exit(main())
