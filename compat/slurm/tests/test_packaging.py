"""The wrappers are a login-node distribution: crane-cli's code only, and no Slurm names on PATH by themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crane_slurm.main import COMMANDS

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_one_console_script_only():
    import tomllib

    meta = tomllib.loads(PYPROJECT.read_text())
    assert meta["project"]["name"] == "crane-slurm-wrappers"
    assert meta["project"]["scripts"] == {"crane-slurm": "crane_slurm.main:main"}
    assert not set(COMMANDS) & set(meta["project"]["scripts"])
    assert all(not dep.startswith("crane-kernel") for dep in meta["project"]["dependencies"])


def test_wrappers_import_no_daemon_code():
    code = ("import sys\n"
            "import crane_slurm.main, crane_slurm.sbatch, crane_slurm.squeue, crane_slurm.scancel, "
            "crane_slurm.sinfo, crane_slurm.scontrol, crane_slurm.sacct, crane_slurm.interactive\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('crane_kernel', 'pydantic', 'redis', 'pluggy', 'stevedore'))\n"
            "print(','.join(bad))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_usage_errors_never_show_a_traceback():
    script = os.path.join(os.path.dirname(sys.executable), "crane-slurm")
    for argv in (["sbatch", "--constraint=x", "--wrap", "true"], ["squeue", "-o", "%!"], ["sacct", "-o", "Nope"],
                 ["scontrol", "frobnicate"], ["scancel"], ["sinfo", "--bogus"], ["srun"], ["nosuch"]):
        proc = subprocess.run([script, *argv], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "CRANE_CONFIG": "/nonexistent/config.yaml"})
        assert proc.returncode == 2, (argv, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, (argv, proc.stderr)
        assert proc.stderr.startswith(f"{argv[0] if argv[0] != 'nosuch' else 'crane-slurm'}: error: "), proc.stderr
