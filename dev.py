#!/usr/bin/env python3
"""Set up the development workspace and run things in it. Needs only Python 3.11+.

    python3 dev.py demo [--exit]     set up, then run the demo cluster (crane demo)
    python3 dev.py test [pytest...]  set up, then run the whole test suite
    python3 dev.py install           only set up: .venv with every package installed editable
    python3 dev.py run CMD [ARGS]    run a command from the workspace's .venv

Set-up creates ``.venv`` beside this file and installs the kernel, the CLI,
every plugin under ``plugins/`` and every distribution under ``compat/`` (the Slurm
wrappers) as editable distributions (each registers its
entry points exactly as a third-party package would). It is skipped when
nothing changed since the last run.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".crane-installed"
DEV_TOOLS = ["pytest>=8,<10", "ruff>=0.5", "pexpect>=4.8,<5"]
# optional features, all on for dev (notify_mail[test]: the local SMTP server its tests run)
EXTRAS = {"tools": "[embedded-redis,fast,plot]", "sched_fifo": "[fast]", "notify_mail": "[test]"}


def packages() -> list[Path]:
    """Every distribution of the workspace: common and kernel first, then plugins, the CLI, the tools and compat/*."""
    plugins = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
    compat = sorted(p.parent for p in (ROOT / "compat").glob("*/pyproject.toml"))  # e.g. the Slurm wrappers
    return [ROOT / "common", ROOT / "kernel", *plugins, ROOT / "cli", ROOT / "tools", *compat]


def _fingerprint() -> str:
    h = hashlib.sha256(sys.version.encode())
    for pkg in packages():
        for name in ("pyproject.toml", "setup.py"):
            f = pkg / name
            if f.exists():
                h.update(str(f).encode() + f.read_bytes())
    for proto in sorted((ROOT / "common" / "crane_common" / "proto").glob("*.proto")):
        h.update(proto.read_bytes())
    h.update(" ".join(DEV_TOOLS).encode() + repr(sorted(EXTRAS.items())).encode() + b"compat")
    return h.hexdigest()


def install() -> None:
    """Create the venv and install the workspace (idempotent, quick when nothing changed)."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under whatever python3 the user has
        sys.exit(f"cranesched needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    fp = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == fp:
        return
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    print("dev.py: installing the workspace into .venv (kernel, plugins, cli, dev tools)", flush=True)
    log = VENV / "install.log"
    args: list[str] = []
    for pkg in packages():
        extras = EXTRAS.get(pkg.name, "")
        args += ["-e", f"{pkg}{extras}"]
    with open(log, "w") as out:
        # editable_mode=compat: a static path entry per package instead of an import hook that every
        # Python start-up (every CLI call) runs; the dev CLIs start ~15 ms faster, like a real install
        compat = ["--config-settings", "editable_mode=compat"]
        for step in (["--upgrade", "pip", "setuptools>=68", "wheel", "grpcio-tools>=1.60,<2"],
                     [*DEV_TOOLS, *compat, *args]):
            if subprocess.run([*pip, *step], stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                tail = log.read_text().splitlines()[-30:]
                sys.exit("dev.py: installation failed; last lines of " + str(log) + ":\n" + "\n".join(tail))
    STAMP.write_text(fp)


def compile_sources() -> None:
    """Byte-compile the workspace: CLI start-up time matters, and PYTHONDONTWRITEBYTECODE may be set."""
    dirs = [str(p) for p in packages()]
    subprocess.run([str(BIN / "python"), "-m", "compileall", "-q", "-x", r"/tests?/", *dirs],
                   check=False, stdout=subprocess.DEVNULL)


def _exec(argv: list[str]) -> int:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    return subprocess.call(argv, env=env, cwd=ROOT)


def main(argv: list[str]) -> int:
    """Dispatch the sub-command."""
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in ("install", "demo", "test", "run"):
        print(f"dev.py: unknown command {cmd!r} (install, demo, test, run)", file=sys.stderr)
        return 2
    install()
    compile_sources()
    if cmd == "install":
        return 0
    if cmd == "demo":
        return _exec([str(BIN / "crane"), "demo", *rest])
    if cmd == "test":
        return _exec([str(BIN / "python"), "-m", "pytest", *rest])
    return _exec(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
