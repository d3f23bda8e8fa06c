"""The one console script, ``crane-slurm``: dispatch to a wrapper, or install the Slurm-named links.

``crane-slurm sbatch job.sh`` runs the sbatch wrapper; so does a link named ``sbatch`` that
points at ``crane-slurm`` (the command is taken from ``argv[0]``). ``crane-slurm install DIR``
creates those links in DIR (a site or a user opts in by putting DIR on PATH); installing the
package itself never puts ``sbatch`` & co. on PATH.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import NoReturn

from crane_cli.cliparse import run
from crane_cli.errors import EXIT_ARGS, EXIT_OK, EXIT_SYSTEM, CliError

# command -> module of crane_slurm with its ``command(argv) -> int``
COMMANDS = {
    "sbatch": "sbatch", "squeue": "squeue", "scancel": "scancel", "sinfo": "sinfo", "scontrol": "scontrol",
    "sacct": "sacct", "srun": "interactive", "salloc": "interactive",
}

USAGE = f"""usage: crane-slurm COMMAND [ARGS...]     run a Slurm command ({', '.join(COMMANDS)})
       crane-slurm install [--force] DIR   create the Slurm-named links in DIR (put DIR on PATH to use them)
       crane-slurm list                    the commands
"""


def dispatch(name: str, argv: list[str]) -> int:
    """Run the wrapper ``name`` with ``argv``; its exit code."""
    module = importlib.import_module(f"crane_slurm.{COMMANDS[name]}")
    if COMMANDS[name] == "interactive":
        return module.command(name, argv)
    return module.command(argv)


def install(argv: list[str], target: str | None = None) -> int:
    """``install [--force] DIR``: a link per command in DIR pointing at ``target`` (this script)."""
    force = "--force" in argv
    rest = [a for a in argv if a != "--force"]
    if len(rest) != 1 or rest[0].startswith("-"):
        raise CliError("crane-slurm: error: usage: crane-slurm install [--force] DIR", EXIT_ARGS)
    directory = rest[0]
    target = target or _self_path()
    try:
        os.makedirs(directory, exist_ok=True)
        for name in COMMANDS:
            link = os.path.join(directory, name)
            if os.path.lexists(link):
                if os.path.islink(link) and os.readlink(link) == target:
                    continue
                if not force:
                    raise CliError(f"crane-slurm: error: {link} exists (use --force to replace it)", EXIT_ARGS)
                os.unlink(link)
            os.symlink(target, link)
    except OSError as exc:
        raise CliError(f"crane-slurm: error: cannot install into {directory}: {exc.strerror or exc}",
                       EXIT_SYSTEM) from None
    print(f"Installed {', '.join(COMMANDS)} in {directory}; put it on PATH to use them.")
    return EXIT_OK


def _self_path() -> str:
    """The ``crane-slurm`` script this process runs as (the links' target)."""
    path = sys.argv[0]
    if os.path.basename(path) != "crane-slurm":
        path = os.path.join(os.path.dirname(sys.executable), "crane-slurm")
    return os.path.abspath(path)


def command(argv: list[str], argv0: str | None = None) -> int:
    """Choose by ``argv0``'s name (a link) or by the first argument."""
    name = os.path.basename(argv0 if argv0 is not None else sys.argv[0])
    if name in COMMANDS:
        return dispatch(name, argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return EXIT_OK
    if argv[0] == "install":
        return install(argv[1:])
    if argv[0] == "list":
        print("\n".join(COMMANDS))
        return EXIT_OK
    if argv[0] in COMMANDS:
        return dispatch(argv[0], argv[1:])
    raise CliError(f"crane-slurm: error: unknown command {argv[0]!r} (one of: {', '.join(COMMANDS)}, install)",
                   EXIT_ARGS)


def main() -> NoReturn:
    """Console-script entry point (also reached through the Slurm-named links)."""
    name = os.path.basename(sys.argv[0])
    run(command, prog=name if name in COMMANDS else "crane-slurm")
