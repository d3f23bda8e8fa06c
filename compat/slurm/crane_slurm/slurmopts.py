"""Slurm's command lines: a getopt_long-style parser and the errors every wrapper reports.

Slurm's commands parse with GNU ``getopt_long``: ``--name=value`` or ``--name value`` (an option
with a required value), ``--name[=value]`` (an optional value only after ``=``), unique
prefixes of long names (``--part=debug``), ``-Xvalue`` / ``-X value`` and bundled short flags
(``-vH``), ``--`` ending the options. ``sbatch``, ``srun`` and ``salloc`` stop at the first
word that is not an option (the script or the command: the rest is its arguments); the query
commands take positional words anywhere.

Each wrapper declares its options as :class:`Opt` entries with an *action*: what the wrapper
does with it (pass it to our flag, handle it itself, warn that it is ignored, or refuse it
because this cluster cannot honour it). Refusals and bad usage are one line,
``<prog>: error: <what>``, exit code 2; a harmless ignored option is one warning line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from crane_cli.errors import EXIT_ARGS, EXIT_GENERIC, CliError

NONE, REQUIRED, OPTIONAL = "none", "required", "optional"

# actions
PASS = "pass"        # give the value to our flag ``target`` (``--target=value``; a flag: ``--target``)
LOCAL = "local"      # the wrapper handles it itself
IGNORE = "ignore"    # harmless here: one warning, then ignored
REFUSE = "refuse"    # this cluster cannot honour it: an error naming it, exit 2

EXIT_FAILURE = EXIT_GENERIC
"""Slurm's commands exit 1 when the work failed (the controller refused, could not be reached ...)."""


@dataclass(frozen=True)
class Opt:
    """One Slurm option: its long name, short letter, argument kind, and what the wrapper does with it."""

    long: str
    short: str | None = None
    arg: str = REQUIRED
    action: str = PASS
    target: str | None = None  # PASS: our flag (default: ``--<long>``)
    why: str = ""              # REFUSE/IGNORE: a few words on why
    drop_value: bool = False   # PASS: our flag takes no value (``--exclusive[=user]`` -> ``--exclusive``)
    convert: Callable[[str, str], str] | None = None  # PASS: (prog, Slurm's value) -> ours

    @property
    def label(self) -> str:
        """How messages name the option: ``--long`` (or ``-s/--long``)."""
        return f"-{self.short}/--{self.long}" if self.short else f"--{self.long}"


@dataclass
class Parsed:
    """The parse result: the options in order as ``(Opt, value)`` and the positional words."""

    options: list[tuple[Opt, str | None]] = field(default_factory=list)
    positional: list[str] = field(default_factory=list)

    def last(self, long: str) -> str | None:
        """The value of the last occurrence of ``--long`` (``""`` for a flag), None when absent."""
        found = None
        for opt, value in self.options:
            if opt.long == long:
                found = "" if value is None else value
        return found

    def given(self, long: str) -> bool:
        """Was ``--long`` given?"""
        return any(opt.long == long for opt, _ in self.options)

    def values(self, long: str) -> list[str]:
        """Every value of ``--long``, in order (repeated options accumulate)."""
        return [v for opt, v in self.options if opt.long == long and v is not None]


def usage(prog: str, message: str) -> CliError:
    """A usage error: ``<prog>: error: <message>``, exit code 2."""
    return CliError(f"{prog}: error: {message}", EXIT_ARGS)


def failure(prog: str, message: str, code: int = EXIT_FAILURE) -> CliError:
    """A failed operation: ``<prog>: error: <message>``, Slurm's exit code 1."""
    return CliError(f"{prog}: error: {message}", code)


def node_list(prog: str, parsed: Parsed) -> list[str]:
    """The ``--nodelist`` values as node names ([] when not given); a bad host list is the usage error."""
    if not parsed.given("nodelist"):
        return []
    from crane_cli.cliparse import split_list
    from crane_common import hostlist

    try:
        return hostlist.expand(split_list(parsed.values("nodelist")))
    except ValueError as exc:
        raise usage(prog, f"Invalid node list: {exc}") from None


def iterate_seconds(prog: str, parsed: Parsed) -> int | None:
    """``-i/--iterate N``: the seconds between reports (None when not given); not a positive number: usage error."""
    if not parsed.given("iterate"):
        return None
    text = parsed.last("iterate") or ""
    if not text.isdigit() or int(text) <= 0:
        raise usage(prog, f"--iterate={text}: expected a positive number of seconds")
    return int(text)


def warn(prog: str, message: str) -> None:
    """One warning line on stderr (Slurm's ``<prog>: warning: ...``)."""
    sys.stderr.write(f"{prog}: warning: {message}\n")


class OptionTable:
    """A command's Slurm options, looked up by long name (or unique prefix) and short letter."""

    def __init__(self, prog: str, opts: Iterable[Opt]) -> None:
        self.prog = prog
        self.opts = list(opts)
        self.by_long = {o.long: o for o in self.opts}
        self.by_short = {o.short: o for o in self.opts if o.short}

    def find_long(self, name: str) -> Opt:
        """The option ``--name`` names (exactly, or as the unique prefix of one long name)."""
        if name in self.by_long:
            return self.by_long[name]
        matches = [o for n, o in self.by_long.items() if n.startswith(name)]
        if len({id(o) for o in matches}) == 1:
            return matches[0]
        if matches:
            names = ", ".join(f"--{o.long}" for o in matches[:5])
            raise usage(self.prog, f"option '--{name}' is ambiguous; possibilities: {names}")
        raise usage(self.prog, f"unrecognized option '--{name}'")

    def parse(self, argv: Sequence[str], stop_at_positional: bool) -> Parsed:
        """Parse ``argv`` as getopt_long does (see the module docs)."""
        out = Parsed()
        i = 0
        while i < len(argv):
            word = argv[i]
            i += 1
            if word == "--":
                out.positional.extend(argv[i:])
                break
            if word.startswith("--"):
                name, eq, value = word[2:].partition("=")
                opt = self.find_long(name)
                if opt.arg == NONE:
                    if eq:
                        raise usage(self.prog, f"option '--{opt.long}' doesn't allow an argument")
                    out.options.append((opt, None))
                elif opt.arg == OPTIONAL:
                    out.options.append((opt, value if eq else None))
                elif eq:
                    out.options.append((opt, value))
                elif i < len(argv):
                    out.options.append((opt, argv[i]))
                    i += 1
                else:
                    raise usage(self.prog, f"option '--{opt.long}' requires an argument")
                continue
            if word.startswith("-") and len(word) > 1:
                i = self._short(word, argv, i, out)
                continue
            out.positional.append(word)
            if stop_at_positional:
                out.positional.extend(argv[i:])
                break
        return out

    def _short(self, word: str, argv: Sequence[str], i: int, out: Parsed) -> int:
        """Bundled short options ``-abc`` / ``-Xvalue`` / ``-X value``; returns the next index."""
        j = 1
        while j < len(word):
            letter = word[j]
            opt = self.by_short.get(letter)
            if opt is None:
                raise usage(self.prog, f"invalid option -- '{letter}'")
            rest = word[j + 1:]
            if opt.arg == NONE:
                out.options.append((opt, None))
                j += 1
                continue
            if rest:
                out.options.append((opt, rest))
            elif opt.arg == OPTIONAL:
                out.options.append((opt, None))
            elif i < len(argv):
                out.options.append((opt, argv[i]))
                i += 1
            else:
                raise usage(self.prog, f"option requires an argument -- '{letter}'")
            break
        return i


def translate(prog: str, parsed: Parsed) -> list[str]:
    """Our flags for the ``PASS`` options (``--target=value`` / ``--target``), in order.

    ``REFUSE`` options raise the one-line error (exit 2); ``IGNORE`` ones get one warning each.
    ``LOCAL`` options are left to the caller.
    """
    out: list[str] = []
    warned: set[str] = set()
    for opt, value in parsed.options:
        if opt.action == REFUSE:
            why = f" ({opt.why})" if opt.why else ""
            raise usage(prog, f"{opt.label} is not supported by this cluster{why}")
        if opt.action == IGNORE:
            if opt.long not in warned:
                warned.add(opt.long)
                warn(prog, f"{opt.label} is ignored{f' ({opt.why})' if opt.why else ''}")
            continue
        if opt.action != PASS:
            continue
        target = opt.target or f"--{opt.long}"
        if opt.arg == NONE or opt.drop_value or (opt.arg == OPTIONAL and value is None):
            out.append(target)
        else:
            out.append(f"{target}={opt.convert(prog, value) if opt.convert else value}")
    return out


def node_count(prog: str, value: str) -> str:
    """``-N min-max`` -> ``min`` (Slurm may give a job its minimum; one warning), other values as they are."""
    low, dash, high = value.partition("-")
    if dash and low.isdigit() and high.isdigit():
        warn(prog, f"-N/--nodes {value}: a node range is not supported, the job gets {low} node(s)")
        return low
    return value


def reword(prog: str, exc: CliError, ours: Iterable[str] = ()) -> CliError:
    """A CliError raised by our CLI code, shown as ``<prog>: error: ...`` (our command's name removed).

    Argument errors keep exit code 2; anything else (the controller refused, unreachable ...)
    becomes Slurm's 1.
    """
    text = exc.message
    if text.startswith(f"{prog}: error: "):
        return exc
    for name in ours:
        for prefix in (f"{name}: error: ", f"{name}: "):
            if text.startswith(prefix):
                text = text[len(prefix):]
                break
    code = EXIT_ARGS if exc.code == EXIT_ARGS else EXIT_FAILURE
    return CliError(f"{prog}: error: {text}", code)
