"""A login node installs the user commands without the daemons.

A fresh virtual environment (no system site-packages) gets only ``crane-common`` and
``crane-cli``, built from this work tree as wheels (non-editable; their dependencies come
from the package index, through pip's cache when warm). The commands must work there, and
none of the daemons' dependencies may have come along.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAEMON_ONLY = ("pydantic", "redis", "pluggy", "stevedore", "crane_kernel", "crane_tools", "numpy")
PIP = ["-m", "pip", "--disable-pip-version-check", "--no-input"]


def _run(cmd: list[str], timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _copy_sources(dest: Path) -> list[Path]:
    """Copy common/ and cli/ (sources only) so that building them leaves the work tree alone."""
    ignore = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "tests", "*_pb2*.py")
    out = []
    for name in ("common", "cli"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
        out.append(dest / name)
    return out


def _build_wheels(sources: list[Path], wheels: Path) -> list[Path]:
    """Build the two wheels; reuse this interpreter's setuptools/grpcio-tools when it has them (faster)."""
    cmd = [sys.executable, *PIP, "wheel", "--no-deps", "--wheel-dir", str(wheels)]
    have_build_deps = all(importlib.util.find_spec(m) for m in ("setuptools", "grpc_tools", "wheel"))
    if have_build_deps:
        cmd.append("--no-build-isolation")
    _run([*cmd, *map(str, sources)])
    built = sorted(wheels.glob("*.whl"))
    assert {w.name.split("-")[0] for w in built} == {"crane_common", "crane_cli"}, built
    return built


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_login_node_install_has_the_commands_and_no_daemons(tmp_path):
    wheels = _build_wheels(_copy_sources(tmp_path / "src"), tmp_path / "wheels")
    venv = tmp_path / "login"
    _run([sys.executable, "-m", "venv", str(venv)])  # no --system-site-packages: only what pip puts there
    py, bin_dir = venv / "bin" / "python", venv / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRANE_", "PYTHON", "VIRTUAL_ENV"))}
    _run([str(py), *PIP, "install", "--quiet", *map(str, wheels)], env=env)

    for command in ("cbatch", "cqueue"):
        proc = _run([str(bin_dir / command), "--help"], timeout=60, env=env)
        assert proc.stdout.startswith(f"usage: {command} "), proc.stdout

    probe = ("import importlib.util, sys; import crane_cli, crane_common.units; "
             f"print([m for m in {DAEMON_ONLY!r} if importlib.util.find_spec(m)]); print(sys.prefix)")
    lines = _run([str(py), "-c", probe], timeout=60, env=env).stdout.splitlines()
    assert lines == ["[]", str(venv)], lines

    # The commands really talk gRPC from there: no controller listening is exit code 3, one line.
    conf = tmp_path / "config.yaml"
    conf.write_text(f"ControlMachine: 127.0.0.1\nCraneCtldListenPort: {_free_port()}\n")
    env.update(CRANE_CONFIG=str(conf), CRANE_TOKEN="v1.e30.x", HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path))
    proc = subprocess.run([str(bin_dir / "cbatch"), "--wrap", "true"], capture_output=True, text=True, timeout=60,
                          env=env)
    assert (proc.returncode, proc.stderr) == (3, "Failed to submit the job: Connection to CraneCtld is broken.\n"), proc
    proc = _run([str(bin_dir / "crane"), "--help"], timeout=60, env=env)
    assert proc.stdout.rstrip().endswith("Installed commands (crane.commands): none"), proc.stdout
