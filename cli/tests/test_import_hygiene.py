"""Start-up guard: what the commands must not import on their fast paths (latency regressions)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_support import script_path

# click is the commands' parser and expected; "inspect", which it imports, is deferred (crane_cli.fastimport).
HEAVY = ("pydantic", "pluggy", "redis", "yaml", "asyncio.base_events", "ssl", "concurrent.futures",
         "shutil", "inspect", "google.protobuf.json_format", "google.protobuf.text_format", "grpc._server",
         "crane_common.hostlist", "crane_kernel.config", "json.decoder", "hashlib", "typing_extensions")


def imported_modules(cmd: list[str], env: dict) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", *cmd], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            names.add(line.split("|")[2].strip())
    return names


@pytest.mark.parametrize("args", [["cbatch", "--wrap", "true"], ["cqueue"], ["cacct"], ["ceff", "2"], ["cinfo"],
                                  ["ccancel", "1"], ["crane", "whoami"]])
def test_fast_path_imports(cli_env, args):
    cmd = [script_path(args[0]), *args[1:]]
    imported_modules(cmd, cli_env)  # fills the config cache
    names = imported_modules(cmd, cli_env)
    assert "grpc" in names and "crane_common.proto.crane_pb2" in names
    heavy = set(HEAVY) - ({"crane_common.hostlist"} if args[0] == "cinfo" else set())  # cinfo compresses lists
    assert not names & heavy, sorted(names & heavy)
