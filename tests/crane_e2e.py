"""Helpers shared by the end-to-end tests: a real one-machine cluster and CLI runners."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from crane_common.states import FINAL_STATES, JobState
from crane_tools.client import CtldClient
from crane_tools.localcluster import LocalCluster

BIN = os.path.dirname(sys.executable)


def cli(name: str) -> str:
    """Path of a console script installed beside this Python."""
    path = os.path.join(BIN, name)
    return path if os.path.exists(path) else (shutil.which(name) or name)


def cgroups_writable() -> bool:
    """True when root can create cgroup v1 memory cgroups here (real enforcement is possible)."""
    probe = f"/sys/fs/cgroup/memory/crane_probe_{os.getpid()}"
    try:
        os.mkdir(probe)
        os.rmdir(probe)
        return True
    except OSError:
        return False


def ensure_user(name: str) -> pwd.struct_passwd:
    """Create a local test user (as root) if it does not exist."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", name], check=True, capture_output=True)
        return pwd.getpwnam(name)


def run_as(cluster: "Cluster", user: pwd.struct_passwd, *args: str, token: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a CLI command as the unprivileged ``user`` (HOME in a private tmp dir, no token unless given)."""
    import tempfile

    home = tempfile.mkdtemp(prefix="crane-home-")
    os.chown(home, user.pw_uid, user.pw_gid)
    full = {"PATH": os.environ.get("PATH", ""), "HOME": home, "CRANE_CONFIG": cluster.lc.config_path,
            **({"CRANE_TOKEN": token} if token else {}), **(env or {})}

    def drop() -> None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return subprocess.run([cli(args[0]), *args[1:]], env=full, capture_output=True, text=True, timeout=60,
                          preexec_fn=drop, cwd=home)


class Cluster:
    """A started :class:`LocalCluster` plus helpers the tests share."""

    def __init__(self, lc: LocalCluster) -> None:
        self.lc = lc
        self.client: CtldClient = lc.client()
        self.workdir = os.path.join(lc.base_dir, "work")
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o777)

    def run(self, *args: str, env: dict[str, str] | None = None, input: str | None = None,
            cwd: str | None = None) -> subprocess.CompletedProcess:
        """Run a CLI command against this cluster."""
        e = self.lc.env()
        e.update(env or {})
        return subprocess.run([cli(args[0]), *args[1:]], env=e, capture_output=True, text=True, input=input,
                              cwd=cwd or self.workdir, timeout=60)

    def cbatch(self, *args: str, env: dict[str, str] | None = None) -> int:
        """Submit with cbatch and return the job id (asserts success)."""
        proc = self.run("cbatch", *args, env=env)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.strip().rstrip(".").split()[-1])

    def job(self, job_id: int) -> Any:
        """The job's current record."""
        return self.client.job(job_id)

    def wait_state(self, job_id: int, pred: Callable[[Any], bool], timeout: float = 30) -> Any:
        """Wait until the job's record satisfies ``pred``."""
        deadline = time.time() + timeout
        info = None
        while time.time() < deadline:
            info = self.job(job_id)
            if info is not None and pred(info):
                return info
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not reach the expected state; last: {info}")

    def wait_done(self, job_id: int, timeout: float = 30) -> Any:
        """Wait until the job has ended; return its record."""
        return self.wait_state(job_id, lambda i: JobState(i.status) in FINAL_STATES, timeout)

    def wait_running(self, job_id: int, timeout: float = 30) -> Any:
        """Wait until the job runs on a node."""
        return self.wait_state(job_id, lambda i: i.status == JobState.Running, timeout)

    def output(self, path: str) -> str:
        """Read a job output file from the work directory."""
        with open(os.path.join(self.workdir, path)) as fh:
            return fh.read()


def make_cluster(**overrides: Any) -> LocalCluster:
    """A small, fast-reacting cluster for tests."""
    settings: dict[str, Any] = dict(nodes=3, cpus=2, memory="1G", cluster=f"t{os.getpid()}",
                                    CraneCtld={"CranedTimeout": 4, "ScheduleInterval": 0.5, "DispatchRetry": 3},
                                    Craned={"PingInterval": 0.5, "KillWait": 1})
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(settings.get(k), dict):
            settings[k] = {**settings[k], **v}
        else:
            settings[k] = v
    return LocalCluster(**settings)


@contextlib.contextmanager
def running_cluster(**overrides: Any) -> Iterator[Cluster]:
    """A started :func:`make_cluster` cluster for the ``with`` block (a module fixture's body), stopped after."""
    lc = make_cluster(**overrides)
    lc.start()
    try:
        yield Cluster(lc)
    finally:
        lc.stop()
