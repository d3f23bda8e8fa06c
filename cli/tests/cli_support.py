"""Helpers shared by the CLI tests (a module of its own: several test trees have a ``conftest``)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
TOKEN = "v1.eyJ1c2VyIjoiYWxpY2UiLCJ1aWQiOjEwMDB9.sig"


def script_path(name: str) -> str:
    """The console script ``name`` installed beside the interpreter (else on PATH)."""
    p = BIN / name
    return str(p) if p.exists() else (shutil.which(name) or name)


def write_config(directory: Path, port: int, host: str = "127.0.0.1") -> Path:
    """Write a minimal config.yaml pointing at ``host:port``; return its path."""
    conf = directory / "config.yaml"
    conf.write_text(f"ClusterName: test\nControlMachine: {host}\nCraneCtldListenPort: {port}\n"
                    f"CraneBaseDir: {directory}/\n")
    return conf
