"""crane: the admin/developer multi-command (a click group).

Built in::

    crane version                      versions of crane-cli, crane-common and (if reachable) cranectld
    crane whoami                       who the controller thinks you are

Tokens are the auth plugins' business: ``crane token issue|show|revoke|rotate-key`` comes
with the rbac auth plugin (crane-auth-rbac), ``crane certs`` with crane-tools. The CLI itself
never signs anything; it only finds a credential and presents it (:mod:`crane_common.tokens`).

Installed verbs: every entry point of the ``crane.commands`` group (what crane-tools and any
third-party package register, e.g. ``demo``, ``bench``, ``sim``) is a subcommand, imported
only when used. The entry point may be a click command (invoked with the rest of the command
line, as ``crane <verb>``) or a plain ``main(argv)`` callable (called with the rest of the
command line, its return value is the exit code).

Global option ``-C/--config PATH`` comes before the subcommand; for installed verbs it is
passed on as ``$CRANE_CONFIG``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, NoReturn

import click

from crane_cli import __version__
from crane_cli.cliparse import Command, Group, Option, common_options, disable_fast_exit, invoke, run
from crane_cli.errors import EXIT_GENERIC, EXIT_OK, CliError

COMMAND_GROUP = "crane.commands"
BUILTINS = ("version", "whoami")

if TYPE_CHECKING:  # importlib.metadata costs ~10 ms: imported only to list or run installed verbs
    from importlib.metadata import EntryPoint


def installed_commands() -> dict[str, EntryPoint]:
    """``{verb: entry point}`` of the ``crane.commands`` group (what installed packages add)."""
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group=COMMAND_GROUP):
        if ep.name not in BUILTINS:
            found.setdefault(ep.name, ep)
    return found


def delegate(ep: EntryPoint, argv: list[str], config: str | None) -> int:
    """Load the verb's entry point and run it on ``argv``; a broken package is a one-line error.

    A click command is invoked as ``crane <verb>`` (its usage errors are one line, exit code
    2, like the built-in commands'); any other callable is called as ``main(argv)``. Either
    way the return value is the exit code.
    """
    disable_fast_exit()
    if config:
        os.environ["CRANE_CONFIG"] = os.path.abspath(config)
    try:
        main = ep.load()
    except Exception as exc:  # the package is broken or half-installed
        raise CliError(f"crane: the {ep.name!r} command ({ep.value}) failed to load: {type(exc).__name__}: {exc}",
                       EXIT_GENERIC) from None
    if isinstance(main, click.Command):
        return int(main.main(list(argv), prog_name=f"crane {ep.name}", standalone_mode=False) or 0)
    if not callable(main):
        raise CliError(f"crane: the {ep.name!r} command ({ep.value}) is not callable", EXIT_GENERIC)
    code = main(list(argv))
    return int(code or 0)


class InstalledCommand(click.Command):
    """A ``crane.commands`` verb: the rest of the command line goes to it untouched."""

    def __init__(self, ep: EntryPoint) -> None:
        package = ep.value.split(":")[0].split(".")[0]
        super().__init__(ep.name, params=[click.Argument(["argv"], nargs=-1, type=click.UNPROCESSED)],
                         callback=self._run, add_help_option=False, short_help=f"(from {package})",
                         context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
        self.entry_point = ep

    def _run(self, argv: tuple[str, ...]) -> int:
        return delegate(self.entry_point, list(argv), _root_config())


class CraneGroup(Group):
    """``crane``: the built-in subcommands plus the installed ``crane.commands`` verbs."""

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """A built-in subcommand, else an installed verb (not imported until it runs)."""
        if name in self.commands:
            return self.commands[name]
        ep = installed_commands().get(name)
        return None if ep is None else InstalledCommand(ep)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The built-ins, then the installed verbs in name order."""
        return [*self.commands, *sorted(installed_commands())]

    def help_epilog(self, ctx: click.Context) -> str:
        """The last line of ``crane --help``: which verbs installed packages add."""
        return "Installed commands (crane.commands): " + (", ".join(sorted(installed_commands())) or "none")


def _root_config() -> str | None:
    return click.get_current_context().find_root().params.get("config")


def _body(fn: Callable[[SimpleNamespace], int]) -> Callable[..., int]:
    """A click callback running ``fn(args)``, with ``args.config`` the global ``-C``."""

    def callback(**values: object) -> int:
        return fn(SimpleNamespace(config=_root_config(), **values))

    callback.__doc__ = fn.__doc__
    return callback


def build_command() -> CraneGroup:
    """The ``crane`` group: global options, built-in subcommands (installed verbs are looked up on use)."""
    group = CraneGroup("crane", help="cranesched admin and developer commands.",
                       params=common_options(json_flag=False, config_help="cluster config file"))
    group.add_command(Command("version", short_help="versions of the CLI, the kernel and the controller", params=[
        Option("--timeout", type=click.FLOAT, default=2.0, help="seconds to wait for the controller (default 2)"),
    ], callback=_body(cmd_version)))
    group.add_command(Command("whoami", short_help="the identity the controller sees", params=[
        Option("--json", flag=True, default=False, help="print the controller's reply as JSON"),
    ], callback=_body(cmd_whoami)))
    return group


# -- version / whoami ------------------------------------------------------------------

def _common_version() -> str:
    try:
        import crane_common

        return getattr(crane_common, "__version__", "unknown")
    except ImportError:
        return "not installed"


def cmd_version(args: SimpleNamespace) -> int:
    """Print the versions; ask the controller too, but never fail because it is away."""
    print(f"crane-cli {__version__}")
    print(f"crane-common {_common_version()}")
    from crane_cli import clientconf

    try:
        conf = clientconf.load(args.config)
    except CliError as exc:
        print(f"cranectld: unknown ({exc.message})")
        return EXIT_OK
    from crane_cli import rpc

    try:
        with rpc.Controller(conf, timeout=args.timeout) as ctld:
            info = ctld.call("QueryServerInfo", rpc.pb.ServerInfoRequest())
    except CliError as exc:
        print(f"cranectld: unreachable at {conf.target} ({exc.message})")
        return EXIT_OK
    cluster = f", cluster {info.cluster_name}" if info.cluster_name else ""
    sched = f", scheduler {info.scheduler}" if info.scheduler else ""
    print(f"cranectld {info.version or 'unknown'} at {conf.target}{cluster}{sched}")
    return EXIT_OK


def cmd_whoami(args: SimpleNamespace) -> int:
    """Print the identity the controller derives from our token."""
    from crane_cli import clientconf

    conf = clientconf.load(args.config)
    from crane_cli import rpc

    with rpc.Controller(conf) as ctld:
        info = ctld.call("QueryServerInfo", rpc.pb.ServerInfoRequest())
    if args.json:
        from crane_cli.protojson import to_json

        print(to_json(info))
        return EXIT_OK
    print(f"{info.identity or 'anonymous'}{' (admin)' if info.admin else ''}")
    return EXIT_OK


def command(argv: list[str]) -> int:
    """crane's body: parse with the click group and run the subcommand; its exit code."""
    return invoke(build_command(), argv, "crane")


def main() -> NoReturn:
    """Console-script entry point."""
    run(command, prog="crane")
