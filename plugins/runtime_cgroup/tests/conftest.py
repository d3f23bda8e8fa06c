"""Fixtures for the cgroup runtime tests: a unique cgroup prefix, a test user, step factories."""

from __future__ import annotations

import grp
import itertools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from crane_kernel.runtime import StepSpec

sys.path.insert(0, str(Path(__file__).parent))  # for rtcg_support, under --import-mode=importlib

from rtcg_support import CGROUP_ROOT, NODE, PREFIX, TEST_GROUP, TEST_USER, StepFactory, v1_settings

from crane_runtime_cgroup import CgroupRuntime
from crane_runtime_cgroup.detect import detect_version
from crane_runtime_cgroup.errors import CgroupError
from crane_runtime_cgroup.v1 import CgroupV1Backend

_job_ids = itertools.count(1000)


def _v1_problem() -> str | None:
    """Why real cgroup v1 enforcement cannot be tested here, or None when it can."""
    if os.geteuid() != 0:
        return f"tests are not running as root (euid {os.geteuid()})"
    try:
        version = detect_version(CGROUP_ROOT)
    except CgroupError as exc:
        return str(exc)
    if version != "v1":
        return f"{CGROUP_ROOT} is cgroup {version}, not v1"
    probe = Path(CGROUP_ROOT) / "memory" / f"{PREFIX}_probe"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return f"root cannot create cgroups in {probe.parent}: {exc.strerror}"
    return None


@pytest.fixture(scope="session")
def v1_root() -> Iterator[str]:
    """The real cgroup v1 root, or a LOUD skip when root cannot write cgroup v1 here.

    At the end of the session every cgroup under the test prefix is emptied and removed.
    """
    problem = _v1_problem()
    if problem:
        message = f"REAL CGROUP ENFORCEMENT NOT TESTED: {problem}"
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    yield CGROUP_ROOT
    backend = CgroupV1Backend(CGROUP_ROOT)
    backend.kill_all(PREFIX, timeout=5)
    backend.remove(PREFIX)


@pytest.fixture
def runtime(v1_root: str) -> CgroupRuntime:
    """A CgroupRuntime on the real v1 hierarchy with the per-run test prefix."""
    rt = CgroupRuntime()
    rt.crane_plugin_configure(settings={**v1_settings(), "Root": v1_root})
    return rt


@pytest.fixture(scope="session")
def test_user() -> pwd.struct_passwd:
    """The unprivileged test user ``crane_rt_test`` (created if missing), with supplementary group ``crane_rt_grp``."""
    if os.geteuid() != 0:
        pytest.skip("REAL CGROUP ENFORCEMENT NOT TESTED: creating the test user needs root")
    try:
        grp.getgrnam(TEST_GROUP)
    except KeyError:
        subprocess.run(["groupadd", TEST_GROUP], check=True)
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/bin/bash", TEST_USER], check=True)
    if TEST_USER not in grp.getgrnam(TEST_GROUP).gr_mem:
        subprocess.run(["usermod", "-a", "-G", TEST_GROUP, TEST_USER], check=True)
    return pwd.getpwnam(TEST_USER)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A world-traversable scratch directory (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="crane_rt_", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_step(workdir: Path) -> StepFactory:
    """Build a StepSpec running ``script`` (bash unless ``interpreter`` says otherwise) in ``workdir``.

    ``user`` (a pwd entry) makes the step run as that user, owning the script and workdir.
    """

    def factory(script: str, *, user: pwd.struct_passwd | None = None, **fields: object) -> StepSpec:
        job_id = next(_job_ids)
        script_path = workdir / f"job_{job_id}.sh"
        script_path.write_text(script)
        script_path.chmod(0o700)
        uid, gid, name = (0, 0, "root") if user is None else (user.pw_uid, user.pw_gid, user.pw_name)
        os.chown(script_path, uid, gid)
        os.chown(workdir, uid, gid)
        values: dict[str, object] = dict(
            job_id=job_id, step_id=0, node=NODE, name="test", uid=uid, gid=gid, user=name, cwd=str(workdir),
            script_path=str(script_path), interpreter=["/bin/bash"],
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "USER": name},
            stdout=str(workdir / f"job_{job_id}.out"), stderr="", cpus=1.0, mem_bytes=0,
        )
        values.update(fields)
        return StepSpec(**values)  # type: ignore[arg-type]

    return factory
