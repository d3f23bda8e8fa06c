"""Command-line parsing on click, and the process wrapper shared by the commands.

Every command declares its flags once, as click parameters built from :class:`Option` and
:class:`Argument` (click's, with a few attributes of ours) in a :class:`Command` or
:class:`Group`. The same objects serve three purposes:

* parsing the command line (:func:`parse` for a plain command, :func:`invoke` for a group);
* parsing ``#CBATCH``/``#SBATCH`` script directives (:mod:`crane_cli.directives` reads each
  option's ``script_names``, ``sbatch_names``, flag-ness and type);
* ``--help``, rendered by :mod:`crane_cli.helpfmt` in the layout the commands have always
  had.

Behaviour kept from the earlier argparse front end (the tests hold it):

* errors are one line on stderr, ``<prog>: <what is wrong>``, exit code 2
  (:data:`~crane_cli.errors.EXIT_ARGS`);
* a value option never swallows the next flag: ``-J --exclusive`` is "expected one
  argument", as argparse had it (a negative number or a value with a space is a value);
* mutually exclusive options (``group=``) and options upstream has but this cluster cannot
  honour (``unsupported=True``, hidden) are errors naming the flags;
* repeated options (``multiple=True``) give a list, or ``None`` when absent;
* ``-h/--help`` and ``-v/--version`` print to stdout and exit 0.

:func:`run` calls a command's ``main(argv)`` and turns every outcome into an exit code:
:class:`~crane_cli.errors.CliError` is printed as one line, unexpected exceptions too (with
the traceback only when ``$CRANE_DEBUG`` is set); never a raw traceback.

Start-up cost: ``import click`` brings ``inspect`` (~8 ms), which click uses only to tidy
help strings; the package defers it (``crane_cli/__init__``, :mod:`crane_cli.fastimport`)
and :class:`Option` stores its (single-line) help without asking ``inspect.cleandoc``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any, NoReturn

import click

from crane_cli import __version__
from crane_cli.errors import EXIT_ARGS, EXIT_GENERIC, CliError

__all__ = ["Argument", "Command", "Group", "Option", "common_options", "disable_fast_exit", "invoke", "parse",
           "run", "split_list", "usage_error"]

CONFIG_HELP = "cluster config file (default: $CRANE_CONFIG or /etc/crane/config.yaml)"


class Option(click.Option):
    """A click option with the attributes the CraneSched front end needs.

    ``Option("-N", "--nodes", help=...)``; ``flag=True`` makes a flag (default ``None``
    unless ``default`` is given), ``group`` names a mutually exclusive group,
    ``unsupported=True`` an upstream option this cluster rejects (hidden from help).
    ``script`` lists the spellings accepted in ``#CBATCH`` directives (default: the
    command-line spellings; ``()``: command line only), ``sbatch`` those accepted after
    ``#SBATCH`` (``True``: every script spelling).
    """

    def __init__(self, *decls: str, help: str | None = None, flag: bool = False,  # noqa: A002 - click's name
                 group: str | None = None, unsupported: bool = False, script: Iterable[str] | None = None,
                 sbatch: Iterable[str] | bool = (), **kwargs: Any) -> None:
        if flag:
            kwargs.setdefault("is_flag", True)
            kwargs.setdefault("flag_value", True)
            kwargs.setdefault("default", None)
        if unsupported:
            kwargs["hidden"] = True
        super().__init__(list(decls), **kwargs)
        self.help = help  # click would run inspect.cleandoc on it (importing inspect); ours are one line
        self.group = group
        self.unsupported = unsupported
        names = tuple(self.opts) + tuple(self.secondary_opts)
        self.script_names: tuple[str, ...] = names if script is None else tuple(script)
        self.sbatch_names: tuple[str, ...] = self.script_names if sbatch is True else tuple(sbatch or ())

    @property
    def label(self) -> str:
        """``-N/--nodes``: how error messages name the option (argparse's style)."""
        return "/".join(self.opts)


class Argument(click.Argument):
    """A click positional argument that also carries a help line (shown by ``--help``)."""

    def __init__(self, name: str, *, help: str | None = None, **kwargs: Any) -> None:  # noqa: A002
        super().__init__([name], **kwargs)
        self.help = help


def _print_help(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from crane_cli.helpfmt import render_help

        sys.stdout.write(render_help(ctx))
        ctx.exit(0)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        sys.stdout.write(f"{ctx.command_path} (crane-cli) {__version__}\n")
        ctx.exit(0)


def help_option() -> Option:
    """``-h/--help``: print the help text and exit 0."""
    return Option("-h", "--help", flag=True, expose_value=False, is_eager=True, callback=_print_help,
                  help="show this help message and exit", script=())


def common_options(json_flag: bool = True, config_help: str = CONFIG_HELP) -> list[Option]:
    """``-C/--config``, ``-v/--version`` and (optionally) ``--json``."""
    opts = [Option("-C", "--config", metavar="PATH", help=config_help, script=()),
            Option("-v", "--version", flag=True, expose_value=False, is_eager=True, callback=_print_version,
                   help="show program's version number and exit", script=())]
    if json_flag:
        opts.append(Option("--json", flag=True, default=False, help="print the controller's reply as JSON",
                           script=()))
    return opts


def usage_error(ctx: click.Context | None, message: str) -> click.UsageError:
    """A :class:`click.UsageError` (exit code 2) for ``message``."""
    return click.UsageError(message, ctx)


def _looks_like_option(value: str) -> bool:
    """argparse's rule: ``-x``/``--x`` is a flag; ``-``, negative numbers and values with spaces are not."""
    if not value.startswith("-") or value == "-" or " " in value:
        return False
    digits = value[1:]
    return not (digits.replace(".", "", 1).isdigit() and digits.count(".") <= 1)


class _CraneMixin:
    """Parsing rules shared by :class:`Command` and :class:`Group` (see the module docs)."""

    params: list[click.Parameter]

    def _options(self) -> list[Option]:
        return [p for p in self.params if isinstance(p, Option)]

    def _check_values(self, ctx: click.Context, args: list[str]) -> None:
        """A value option followed by a flag is an error ("expected one argument"), as with argparse."""
        takes_value: dict[str, Option] = {}
        flags: set[str] = set()
        for p in self._options():
            for name in (*p.opts, *p.secondary_opts):
                if p.is_flag or p.count or getattr(p, "_flag_needs_value", False):  # optional value: -s [ids]
                    flags.add(name)
                else:
                    takes_value[name] = p
        i = 0
        while i < len(args):
            arg = args[i]
            wanted: Option | None = None
            if arg == "--":
                return
            if arg.startswith("--"):
                if "=" not in arg:
                    wanted = takes_value.get(arg)
            elif arg.startswith("-") and len(arg) > 1:
                for j in range(1, len(arg)):
                    name = "-" + arg[j]
                    if name in takes_value:
                        wanted = takes_value[name] if j == len(arg) - 1 else None
                        break
                    if name not in flags:
                        break
            elif isinstance(self, click.Group):
                return  # the subcommand: the rest is its business
            if wanted is not None:
                if i + 1 < len(args) and _looks_like_option(args[i + 1]):
                    raise usage_error(ctx, f"argument {wanted.label}: expected one argument")
                i += 1
            i += 1

    def _check_after_parse(self, ctx: click.Context, args: list[str]) -> None:
        """Mutually exclusive groups, unsupported options; ``multiple`` values as list or None."""
        given: dict[str, list[Option]] = {}
        for p in self._options():
            if p.name is None:
                continue
            if p.multiple and p.name in ctx.params:
                ctx.params[p.name] = list(ctx.params[p.name]) or None
            if ctx.get_parameter_source(p.name) != click.core.ParameterSource.COMMANDLINE:
                continue
            if p.unsupported:
                raise usage_error(ctx, f"{p.label} is not supported by this cluster")
            if p.group:
                given.setdefault(p.group, []).append(p)
        for members in given.values():
            if len(members) > 1:
                first, second = sorted(members, key=lambda p: _first_position(p, args))[:2]
                raise usage_error(ctx, f"argument {second.label}: not allowed with argument {first.label}")


def _with_context(ctx: click.Context, parse_args: Callable[..., list[str]], args: list[str]) -> list[str]:
    """Call click's ``parse_args``; its parser raises some usage errors without the context (for the name)."""
    try:
        return parse_args(ctx, args)
    except click.UsageError as exc:
        if exc.ctx is None:
            exc.ctx = ctx
        raise


def _first_position(option: Option, args: list[str]) -> int:
    for i, arg in enumerate(args):
        for name in (*option.opts, *option.secondary_opts):
            if arg == name or arg.startswith(name + "=") or (len(name) == 2 and arg.startswith(name)):
                return i
    return len(args)


class Command(_CraneMixin, click.Command):
    """A click command with the front end's parsing rules; ``-h/--help`` is added first."""

    def __init__(self, name: str, params: list[click.Parameter], help: str | None = None,  # noqa: A002
                 **kwargs: Any) -> None:
        kwargs.setdefault("add_help_option", False)
        kwargs.setdefault("context_settings", {}).setdefault("allow_extra_args", True)
        super().__init__(name, params=[help_option(), *params], help=help, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse like :class:`click.Command`, then apply the checks of :class:`_CraneMixin`."""
        original = list(args)
        self._check_values(ctx, original)
        rest = _with_context(ctx, super().parse_args, args)
        if rest:
            raise usage_error(ctx, f"unrecognized arguments: {' '.join(rest)}")
        self._check_after_parse(ctx, original)
        return rest


class Group(_CraneMixin, click.Group):
    """A click group with the front end's parsing rules and argparse-style subcommand errors.

    ``metavar`` names the subcommand in help and errors (``COMMAND``, ``ACTION``).
    """

    def __init__(self, name: str, params: list[click.Parameter] | None = None, help: str | None = None,  # noqa: A002
                 metavar: str = "COMMAND", **kwargs: Any) -> None:
        kwargs.setdefault("add_help_option", False)
        kwargs.setdefault("no_args_is_help", False)
        super().__init__(name, params=[help_option(), *(params or [])], help=help,
                         subcommand_metavar=metavar, **kwargs)
        self.metavar = metavar

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse the group's own options (the subcommand's are left to it)."""
        original = list(args)
        self._check_values(ctx, original)
        rest = _with_context(ctx, super().parse_args, args)
        self._check_after_parse(ctx, original)
        return rest

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                            list[str]]:
        """Find the subcommand; an unknown one is "invalid choice", listing the known ones."""
        name = args[0]
        cmd = self.get_command(ctx, name)
        if cmd is None:
            if _looks_like_option(name):
                raise usage_error(ctx, f"unrecognized arguments: {name}")
            choices = ", ".join(repr(c) for c in self.list_commands(ctx))
            raise usage_error(ctx, f"argument {self.metavar}: invalid choice: {name!r} (choose from {choices})")
        return name, cmd, args[1:]

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Subcommands in the order they were added (argparse's order)."""
        return list(self.commands)


def _message(exc: click.ClickException) -> str:
    """One line for a click error, prefixed with the failing (sub)command's name."""
    ctx = getattr(exc, "ctx", None)
    prog = ctx.command_path if ctx is not None else os.path.basename(sys.argv[0])
    if isinstance(exc, click.MissingParameter) and exc.param is not None:
        what = exc.param.opts[0] if isinstance(exc.param, click.Option) else exc.param.human_readable_name
        if isinstance(exc.param, click.Option) and len(exc.param.opts) > 1:
            what = "/".join(exc.param.opts)
        text = f"the following arguments are required: {what}"
    elif isinstance(exc, click.NoSuchOption):
        text = f"unrecognized arguments: {exc.option_name}"
    elif isinstance(exc, click.BadParameter) and isinstance(exc.param, Option):
        text = f"argument {exc.param.label}: {exc.message.rstrip('.')}"
    elif isinstance(exc, click.BadOptionUsage) and exc.message.endswith("requires an argument."):
        option = _option_named(ctx, exc.option_name)
        text = f"argument {option.label if option else exc.option_name}: expected one argument"
    elif isinstance(exc, click.BadOptionUsage) and exc.message.endswith("does not take a value."):
        option = _option_named(ctx, exc.option_name)
        text = f"argument {option.label if option else exc.option_name}: takes no value"
    elif exc.format_message() == "Missing command." and isinstance(getattr(ctx, "command", None), Group):
        text = f"the following arguments are required: {ctx.command.metavar}"
    else:
        text = exc.format_message()
    return f"{prog}: {' '.join(text.split())}"


def _option_named(ctx: click.Context | None, name: str) -> Option | None:
    for p in ctx.command.params if ctx is not None else ():
        if isinstance(p, Option) and name in (*p.opts, *p.secondary_opts):
            return p
    return None


def _translate(exc: click.ClickException) -> CliError:
    code = EXIT_ARGS if isinstance(exc, click.UsageError) else (exc.exit_code or EXIT_GENERIC)
    return CliError(_message(exc), code)


def parse(command: Command, argv: list[str], prog: str | None = None) -> SimpleNamespace:
    """Parse ``argv`` with ``command``; the values as attributes (``args.nodes``).

    Usage errors raise :class:`CliError` (exit code 2); ``--help``/``--version`` print and
    raise ``SystemExit(0)``.
    """
    try:
        ctx = command.make_context(prog or command.name, list(argv))
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        raise _translate(exc) from None
    return SimpleNamespace(**ctx.params)


def invoke(command: click.Command, argv: list[str], prog: str | None = None) -> int:
    """Parse ``argv`` with ``command`` (a group) and run the chosen subcommand's callback; its exit code."""
    try:
        rv = command.main(list(argv), prog_name=prog or command.name, standalone_mode=False)
    except click.exceptions.Abort:
        raise KeyboardInterrupt from None
    except click.ClickException as exc:
        raise _translate(exc) from None
    return int(rv or 0)


def split_list(values: Iterable[str] | None) -> list[str]:
    """Flatten repeated comma-separated option values: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    out: list[str] = []
    for v in values or ():
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


_fast_exit = True


def disable_fast_exit() -> None:
    """Make :func:`run` end with a normal interpreter exit (atexit handlers, thread joins).

    For code run on behalf of other modules (``crane demo`` ...) that may rely on them.
    """
    global _fast_exit
    _fast_exit = False


def _finish(code: int) -> NoReturn:
    """Flush the standard streams and leave without the interpreter's (and grpc's) teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
    if not _fast_exit:
        sys.exit(code)
    os._exit(code)


def run(main: Callable[[list[str]], int], argv: list[str] | None = None, prog: str | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit with its code; see the module docs for error handling.

    The process ends with :func:`os._exit` after flushing stdout and stderr: a
    command has nothing left to clean up, and skipping the interpreter's teardown
    (module and grpc core shutdown) saves a few milliseconds per call (see
    :func:`disable_fast_exit`).
    """
    prog = prog or os.path.basename(sys.argv[0])
    args = sys.argv[1:] if argv is None else argv
    try:
        code = main(args)
    except CliError as exc:
        _print_err(exc.message)
        code = exc.code
    except click.ClickException as exc:  # raised outside parse()/invoke(), e.g. by a delegated click command
        err = _translate(exc)
        _print_err(err.message)
        code = err.code
    except SystemExit as exc:  # --help/--version, or a delegated command's sys.exit
        if isinstance(exc.code, str):
            _print_err(exc.code)
            code = EXIT_GENERIC
        else:
            code = exc.code or 0
    except (KeyboardInterrupt, click.exceptions.Abort):
        code = 130
    except BrokenPipeError:
        code = EXIT_GENERIC
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if os.environ.get("CRANE_DEBUG"):
            import traceback

            traceback.print_exc()
        _print_err(f"{prog}: internal error: {type(exc).__name__}: {exc}")
        code = EXIT_GENERIC
    _finish(int(code or 0))


def _print_err(message: str) -> None:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError, OSError):
        pass
    try:
        sys.stderr.write(message.rstrip("\n") + "\n")
    except (BrokenPipeError, ValueError, OSError):
        pass
