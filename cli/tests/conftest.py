"""Shared fixtures: a FakeCtld on a free port and the environment for running the console scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cli_support import TOKEN, script_path, write_config  # noqa: E402
from crunserver import serve  # noqa: E402
from fakectld import FakeCtld, make_jobs, start  # noqa: E402


@pytest.fixture
def fake():
    """A running FakeCtld with 30 canned jobs; yields the servicer (``.port`` set)."""
    servicer = FakeCtld(make_jobs(30))
    server, port, servicer = start(servicer)
    servicer.port = port
    yield servicer
    server.stop(0)


@pytest.fixture
def cli_env(tmp_path, fake):
    """Environment for the console scripts: config at the fake, a token, private cache/config dirs."""
    conf = write_config(tmp_path, fake.port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRANE_")}
    env.update(CRANE_CONFIG=str(conf), CRANE_TOKEN=TOKEN, XDG_CACHE_HOME=str(tmp_path / "cache"),
               XDG_CONFIG_HOME=str(tmp_path / "xdgconf"))
    return env


class Result:
    """Outcome of a console-script run."""

    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def cli(cli_env, tmp_path):
    """``cli("cbatch", "--wrap", "true")`` runs a console script; returns a :class:`Result`."""

    def run(name: str, *args: str, env: dict | None = None, cwd: str | None = None, stdin: str | None = None):
        proc = subprocess.run([script_path(name), *args], env=env or cli_env, cwd=cwd or str(tmp_path),
                              capture_output=True, text=True, timeout=60, input=stdin)
        return Result(proc)

    return run


class Ran:
    """Outcome of a command run in-process: exit code, stdout, stderr."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Ran(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def acct(tmp_path, monkeypatch):
    """A FakeCtld holding jobs 1-5 (5 ended) with jobs 100-104 in its accounting store (``acct_data``)."""
    from acct_data import controller_jobs, history_jobs

    servicer = FakeCtld(controller_jobs())
    servicer.history = history_jobs()
    server, port, servicer = start(servicer)
    servicer.port = port
    servicer.conf = write_config(tmp_path, port)
    monkeypatch.setenv("CRANE_TOKEN", TOKEN)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield servicer
    server.stop(0)


@pytest.fixture
def run_cmd(acct, capsys):
    """``run_cmd(cacct, "-t", "c")``: the command's ``command()`` in-process against ``acct``; a :class:`Ran`."""
    from crane_cli.errors import CliError

    def run(module, *argv: str, conf: bool = True) -> Ran:
        capsys.readouterr()
        try:
            code = module.command((["-C", str(acct.conf)] if conf else []) + list(argv))
        except CliError as exc:
            print(exc.message, file=sys.stderr)
            code = exc.code
        cap = capsys.readouterr()
        return Ran(code, cap.out, cap.err)

    return run


@pytest.fixture
def scripted(tmp_path):
    """``scripted(script)``: a scripted CrunStream server (crunserver.py); returns (servicer, env for the CLI)."""
    servers = []

    def start(script):
        server, port, servicer = serve(script)
        servers.append(server)
        conf = write_config(tmp_path, port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRANE_")}
        env.update(CRANE_CONFIG=str(conf), CRANE_TOKEN=TOKEN, XDG_CACHE_HOME=str(tmp_path / "cache"))
        servicer.server = server
        return servicer, env

    yield start
    for server in servers:
        server.stop(0)
