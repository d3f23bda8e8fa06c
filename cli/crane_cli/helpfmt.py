"""``--help`` text of the commands, from their click definitions, in the layout they have always had.

The commands' help has the argparse layout (``usage: cbatch [-h] [-N NODES] ...``, then
``positional arguments:`` and ``options:`` with the help column at 24), which users,
wrappers and docs know. Rather than re-implementing that layout, :func:`render_help`
describes the click command to :class:`argparse.ArgumentParser` — every flag, metavar,
choice list, mutually exclusive group and subcommand comes from the click parameters,
so there is still one definition of each flag — and lets argparse's formatter lay it
out (terminal width from ``$COLUMNS``/the terminal, as before). argparse is imported
only here, i.e. only for ``--help``; it parses nothing.
"""

from __future__ import annotations

import argparse

import click

from crane_cli.cliparse import Argument, Group, Option


def _escape(text: str | None) -> str | None:
    return None if text is None else text.replace("%", "%%")


def _add_option(target: argparse._ActionsContainer, p: click.Option) -> None:
    kwargs: dict[str, object] = {"help": _escape(p.help), "dest": p.name}
    if p.is_flag:
        kwargs["action"] = "store_true"
    else:
        if isinstance(p.type, click.Choice):
            kwargs["choices"] = list(p.type.choices)
        if p.metavar is not None:
            kwargs["metavar"] = p.metavar
        elif "choices" not in kwargs:
            kwargs["metavar"] = (p.name or "").upper()
        if p.multiple:
            kwargs["action"] = "append"
    if p.required:
        kwargs["required"] = True
    target.add_argument(*p.opts, *p.secondary_opts, **kwargs)


def _add_argument(parser: argparse.ArgumentParser, p: click.Argument) -> None:
    if p.nargs == -1:
        nargs = "+" if p.required else "*"
    else:
        nargs = None if p.required else "?"
    kwargs: dict[str, object] = {"nargs": nargs, "help": _escape(getattr(p, "help", None))}
    if p.metavar is not None:
        kwargs["metavar"] = p.metavar
    parser.add_argument(p.name or "arg", **kwargs)


def describe(ctx: click.Context) -> argparse.ArgumentParser:
    """An argparse parser that shows what ``ctx.command`` accepts (used for its help text only)."""
    cmd = ctx.command
    epilog = cmd.help_epilog(ctx) if hasattr(cmd, "help_epilog") else cmd.epilog
    parser = argparse.ArgumentParser(prog=ctx.command_path, description=cmd.help, epilog=epilog, add_help=False,
                                     allow_abbrev=False)
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for p in cmd.get_params(ctx):
        if getattr(p, "hidden", False):
            continue
        if isinstance(p, click.Option):
            group_name = p.group if isinstance(p, Option) else None
            target: argparse._ActionsContainer = parser
            if group_name:
                if group_name not in groups:
                    groups[group_name] = parser.add_mutually_exclusive_group()
                target = groups[group_name]
            _add_option(target, p)
        elif isinstance(p, (Argument, click.Argument)):
            _add_argument(parser, p)
    if isinstance(cmd, click.Group):
        metavar = cmd.metavar if isinstance(cmd, Group) else "COMMAND"
        sub = parser.add_subparsers(dest="command", metavar=metavar)
        for name in cmd.list_commands(ctx):
            child = cmd.get_command(ctx, name)
            if child is not None and not child.hidden:
                sub.add_parser(name, help=_escape(child.short_help or child.help), add_help=False)
    return parser


def render_help(ctx: click.Context) -> str:
    """The ``--help`` text of the command of ``ctx``."""
    return describe(ctx).format_help()
