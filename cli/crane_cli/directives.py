"""Batch-script directives: ``#CBATCH``, plus the ``#SBATCH`` and ``#BSUB`` compatibility forms.

Rules (upstream cbatch's behaviour):

* Any line whose first word is ``#CBATCH`` is a directive, wherever it is in the
  file; directive lines (all three kinds) are removed from the shipped script.
* The line is split on whitespace and must give exactly 2 or 3 fields
  (``#CBATCH --opt value``, ``#CBATCH --opt=value``, ``#CBATCH --flag``); any other
  count is an error ("fields out of bound") — so values with spaces and trailing
  comments fail.
* Unknown ``#CBATCH`` options are an error: ``unrecognized '<opt>' in script``.
* ``#SBATCH`` lines accept every spelling of every cbatch option (long or short, with ``=``
  or a space: ``--job-name=x``, ``--job-name x``, ``-J x``), applied exactly as on the command
  line (upstream accepts only a whitelist and drops the rest: scripts written for Slurm break).
  An option cbatch has but this cluster cannot honour, or a Slurm option that changes when or
  whether the job runs (:data:`WHEN_OR_WHETHER`: dependencies, arrays, begin, hold, ...), fails
  the submission; any other unknown option gets one warning naming it.
* ``#BSUB`` options are mapped to cbatch ones (``-nnode`` → ``--nodes``, ``-n`` →
  ``--ntasks-per-node``, ``-W [H:]M`` → ``--time``, ``-M`` → ``--mem``, ``-cwd``
  → ``--chdir``, ``-q`` → ``--partition``, ``-env`` → ``--export``; ``-J -o -e``
  as is).
* A first line starting with ``#!`` gives the interpreter.

The directives are read with cbatch's own click options (:class:`OptionTable`, from
:func:`crane_cli.cbatch.build_command`): each option lists the spellings a ``#CBATCH``
line accepts (``script_names``: ``-Q``/``--qos`` where the command line has ``-q``,
``--chdir`` without ``-D``, none for ``--wrap``) and those upstream whitelists after
``#SBATCH`` (``sbatch_names``); a flag is a boolean directive, and a value goes through
the option's click type as on the command line. Options that upstream accepts but this
cluster cannot honour (arrays, licenses, dependencies, reservations, pods, ...) are
``unsupported`` options: an error rather than silently ignored, here as on the command
line. The result is a list of :class:`Directive` keyed by the same destination names as
cbatch's command-line options, so that the command line can override them.
"""

from __future__ import annotations

from crane_cli.errors import CliError, arg_error

VALUE, BOOL, UNSUPPORTED = "value", "bool", "unsupported"

BSUB_OPTIONS: dict[str, str] = {
    "-J": "job_name", "-o": "output", "-e": "error", "-nnode": "nodes", "-n": "ntasks_per_node",
    "-W": "time", "-M": "mem", "-cwd": "chdir", "-q": "partition", "-env": "export",
}

NOT_IN_SCRIPTS = frozenset({"wrap", "repeat"})
"""cbatch options that make no sense inside a script (a script cannot wrap itself or repeat itself)."""

WHEN_OR_WHETHER = frozenset({
    "--dependency", "-d", "--array", "-a", "--begin", "-b", "--hold", "-H", "--deadline", "--reservation",
    "--licenses", "-L", "--time-min", "--delay-boot", "--immediate", "-I", "--test-only", "--wait", "-W",
    "--requeue", "--no-requeue", "--signal", "--kill-on-invalid-dep", "--exclusive", "--overcommit", "-O",
})
"""Slurm options that change when or whether a job runs: never ignored — applied, or the submission fails."""

_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


class OptionTable:
    """What a directive may say, read from cbatch's click options (:func:`crane_cli.cbatch.build_command`).

    ``cbatch[spelling]`` is ``(dest, kind, option)`` for every ``#CBATCH`` spelling (an
    option's ``script_names``); ``sbatch`` is the set of spellings upstream accepts after
    ``#SBATCH`` (the options' ``sbatch_names``).
    """

    __slots__ = ("cbatch", "sbatch", "spellings")

    def __init__(self, command: object | None = None) -> None:
        from crane_cli.cliparse import Option

        if command is None:
            from crane_cli.cbatch import build_command

            command = build_command()
        self.cbatch: dict[str, tuple[str, str, Option]] = {}
        self.spellings: dict[str, tuple[str, str, Option]] = {}  # every command-line spelling (#SBATCH)
        sbatch: set[str] = set()
        for p in command.params:  # type: ignore[attr-defined]
            if not isinstance(p, Option) or p.name is None:
                continue
            kind = UNSUPPORTED if p.unsupported else BOOL if p.is_flag else VALUE
            for name in p.script_names:
                self.cbatch[name] = (p.name, kind, p)
            if p.name not in NOT_IN_SCRIPTS:
                for name in (*p.opts, *p.secondary_opts, *p.script_names, *p.sbatch_names):
                    self.spellings[name] = (p.name, kind, p)
            sbatch.update(p.sbatch_names)
        self.sbatch = frozenset(sbatch)


_table: OptionTable | None = None


def option_table() -> OptionTable:
    """The directive table of cbatch's options (built once per process)."""
    global _table
    if _table is None:
        _table = OptionTable()
    return _table


class Directive:
    """One option taken from the script: destination name, value, line number and spelling."""

    __slots__ = ("dest", "value", "line", "option")

    def __init__(self, dest: str, value: str | bool, line: int, option: str) -> None:
        self.dest = dest
        self.value = value
        self.line = line
        self.option = option

    def __repr__(self) -> str:
        return f"Directive({self.dest!r}, {self.value!r}, line={self.line}, option={self.option!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Directive) and (self.dest, self.value) == (other.dest, other.value)

    __hash__ = None  # type: ignore[assignment]


class ParsedScript:
    """A script with its directives taken out."""

    __slots__ = ("directives", "script", "interpreter", "warnings")

    def __init__(self, directives: list[Directive], script: str, interpreter: str | None,
                 warnings: list[str]) -> None:
        self.directives = directives
        self.script = script
        self.interpreter = interpreter
        self.warnings = warnings

    def options(self) -> dict[str, str | bool]:
        """The directives as ``{dest: value}``; a later directive overrides an earlier one."""
        return {d.dest: d.value for d in self.directives}


def parse_bool(text: str) -> bool:
    """Go-style boolean (``1 t T true TRUE True`` / ``0 f F false FALSE False``)."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"invalid boolean {text!r}")


def _split_option(fields: list[str], table: dict[str, object]) -> tuple[str, str | None]:
    """``["--opt", "v"]``, ``["--opt=v"]``, ``["-Nv"]``, ``["-N=v"]`` or ``["--flag"]`` -> (option, value)."""
    opt = fields[0]
    value = fields[1] if len(fields) > 1 else None
    if value is None:
        if opt.startswith("--") and "=" in opt:
            opt, value = opt.split("=", 1)
        elif not opt.startswith("--") and opt.startswith("-") and len(opt) > 2 and opt not in table:
            opt, value = opt[:2], opt[2:]
            if value.startswith("="):
                value = value[1:]
    return opt, value


def _convert(opt: str, entry: tuple[str, str, object], value: str | None, lineno: int) -> Directive:
    """A directive's value, converted as the command line's would be (click's type of the option)."""
    dest, kind, option = entry
    if kind == BOOL:
        if value is None:
            return Directive(dest, True, lineno, opt)
        try:
            return Directive(dest, parse_bool(value), lineno, opt)
        except ValueError:
            raise arg_error(f"invalid value {value!r} for '{opt}' in script line {lineno}: "
                            "expected true or false") from None
    if value is None or value == "":
        raise arg_error(f"option '{opt}' in script line {lineno} needs a value")
    import click

    try:
        converted = option.type.convert(value, option, None)  # type: ignore[attr-defined]
    except click.BadParameter as exc:
        raise arg_error(f"invalid value {value!r} for '{opt}' in script line {lineno}: {exc.message}") from None
    return Directive(dest, converted, lineno, opt)


def bsub_time(value: str) -> str:
    """LSF ``-W [H:]M`` as a cbatch time limit (``H:M:00`` or minutes)."""
    parts = value.split(":")
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"invalid #BSUB -W value {value!r}: expected [H:]M")
    return f"{parts[0]}:{parts[1]}:00" if len(parts) == 2 else parts[0]


def _parse_cbatch(fields: list[str], lineno: int, table: OptionTable) -> Directive:
    opt, value = _split_option(fields, table.cbatch)
    entry = table.cbatch.get(opt)
    if entry is None:
        raise arg_error(f"unrecognized '{opt}' in script")
    if entry[1] == UNSUPPORTED:
        raise arg_error(f"'{opt}' in script line {lineno} is not supported by this cluster")
    return _convert(opt, entry, value, lineno)


def _parse_sbatch(fields: list[str], lineno: int, warnings: list[str], table: OptionTable) -> Directive | None:
    """An ``#SBATCH`` line: every spelling cbatch has (long or short, ``=`` or a space) applies as on the
    command line; an option cbatch has but cannot honour, or a Slurm option that changes when or
    whether the job runs, fails the submission; any other Slurm option gets one warning naming it."""
    opt, value = _split_option(fields, table.spellings)
    entry = table.spellings.get(opt)
    if entry is None:
        if opt in WHEN_OR_WHETHER:
            raise arg_error(f"'#SBATCH {opt}' in script line {lineno} changes when or whether the job runs, and "
                            "this cluster cannot honour it")
        warnings.append(f"Warning: unsupported '#SBATCH {opt}' in script line {lineno} is ignored.")
        return None
    if entry[1] == UNSUPPORTED:
        raise arg_error(f"'#SBATCH {opt}' in script line {lineno} is not supported by this cluster")
    return _convert(opt, entry, value, lineno)


def _parse_bsub(fields: list[str], lineno: int, warnings: list[str]) -> Directive | None:
    opt = fields[0]
    value = fields[1] if len(fields) > 1 else None
    dest = BSUB_OPTIONS.get(opt)
    if dest is None:
        if value is not None:
            warnings.append(f"Warning: unsupported '#BSUB {opt}' in script line {lineno} is ignored.")
            return None
        raise arg_error(f"unsupported '#BSUB {opt}' in script line {lineno}")
    if value is None:
        raise arg_error(f"option '#BSUB {opt}' in script line {lineno} needs a value")
    if opt == "-W":
        try:
            value = bsub_time(value)
        except ValueError as exc:
            raise arg_error(f"{exc} (script line {lineno})") from None
    return Directive(dest, value, lineno, opt)


_PREFIXES = ("#CBATCH", "#SBATCH", "#BSUB")


def parse_script(text: str, table: OptionTable | None = None) -> ParsedScript:
    """Take the directives out of ``text``; raise :class:`CliError` (exit 2) on a bad directive.

    ``table`` defaults to cbatch's options (:func:`option_table`), built only when the
    script has a ``#CBATCH`` or ``#SBATCH`` line.
    """
    directives: list[Directive] = []
    warnings: list[str] = []
    kept: list[str] = []
    interpreter = None
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith("#!"):
        interpreter = lines[0][2:].strip() or None
    for lineno, line in enumerate(lines, 1):
        if not line.startswith("#") or not line.startswith(_PREFIXES):
            kept.append(line)
            continue
        fields = line.split()
        prefix = fields[0]
        if prefix not in _PREFIXES:  # e.g. "#CBATCHES are fun": an ordinary comment
            kept.append(line)
            continue
        if len(fields) not in (2, 3):
            raise CliError(f"fields out of bound in script line {lineno}: {line.strip()!r}", 2)
        rest = fields[1:]
        if prefix == "#CBATCH":
            table = table or option_table()
            d: Directive | None = _parse_cbatch(rest, lineno, table)
        elif prefix == "#SBATCH":
            table = table or option_table()
            d = _parse_sbatch(rest, lineno, warnings, table)
        else:
            d = _parse_bsub(rest, lineno, warnings)
        if d is not None:
            directives.append(d)
    return ParsedScript(directives, "".join(kept), interpreter, warnings)


def check_script_bytes(data: bytes, name: str) -> str:
    """Decode a script file, rejecting what is not a text script (exit code 2)."""
    if not data.strip():
        raise arg_error(f"script {name} is empty")
    if b"\0" in data:
        raise arg_error(f"script {name} is not a text file (it contains NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise arg_error(f"script {name} is not valid UTF-8 text") from None
