"""Batch-script directives: ``#CBATCH``, plus the ``#SBATCH`` and ``#BSUB`` compatibility forms.

Rules (upstream cbatch's behaviour):

* Any line whose first word is ``#CBATCH`` is a directive, wherever it is in the
  file; directive lines (all three kinds) are removed from the shipped script.
* The line is split on whitespace and must give exactly 2 or 3 fields
  (``#CBATCH --opt value``, ``#CBATCH --opt=value``, ``#CBATCH --flag``); any other
  count is an error ("fields out of bound") — so values with spaces and trailing
  comments fail.
* Unknown ``#CBATCH`` options are an error: ``unrecognized '<opt>' in script``.
* ``#SBATCH`` lines are accepted for a whitelist of options; an option outside it
  gives a warning on a 3-field line and an error on a 2-field line.
* ``#BSUB`` options are mapped to cbatch ones (``-nnode`` → ``--nodes``, ``-n`` →
  ``--ntasks-per-node``, ``-W [H:]M`` → ``--time``, ``-M`` → ``--mem``, ``-cwd``
  → ``--chdir``, ``-q`` → ``--partition``, ``-env`` → ``--export``; ``-J -o -e``
  as is).
* A first line starting with ``#!`` gives the interpreter.

Options that upstream accepts but this cluster cannot honour (arrays, licenses,
dependencies, reservations, pods, ...) are an error rather than silently ignored.
The result is a list of :class:`Directive` keyed by the same destination names as
cbatch's command-line options, so that the command line can override them.
"""

from __future__ import annotations

from crane_cli.errors import CliError, arg_error

VALUE, BOOL, UNSUPPORTED = "value", "bool", "unsupported"


def _names(kind: str, dest: str | None, *names: str) -> dict[str, tuple[str | None, str]]:
    return {n: (dest, kind) for n in names}


# option name -> (destination, kind)
CBATCH_OPTIONS: dict[str, tuple[str | None, str]] = {
    **_names(VALUE, "nodes", "-N", "--nodes"),
    **_names(VALUE, "cpus_per_task", "-c", "--cpus-per-task"),
    **_names(VALUE, "gres", "--gres"),
    **_names(VALUE, "gpus_per_node", "--gpus-per-node"),
    **_names(VALUE, "ntasks_per_node", "--ntasks-per-node"),
    **_names(VALUE, "ntasks", "-n", "--ntasks"),
    **_names(VALUE, "time", "-t", "--time"),
    **_names(VALUE, "begin", "-b", "--begin"),
    **_names(VALUE, "mem", "--mem"),
    **_names(VALUE, "mem_per_cpu", "--mem-per-cpu"),
    **_names(VALUE, "partition", "-p", "--partition"),
    **_names(VALUE, "job_name", "-J", "--job-name"),
    **_names(VALUE, "account", "-A", "--account"),
    **_names(VALUE, "qos", "-Q", "--qos"),
    **_names(VALUE, "chdir", "--chdir"),
    **_names(VALUE, "exclude", "-x", "--exclude"),
    **_names(VALUE, "nodelist", "-w", "--nodelist"),
    **_names(BOOL, "get_user_env", "--get-user-env"),
    **_names(VALUE, "export", "--export"),
    **_names(VALUE, "input", "-i", "--input"),
    **_names(VALUE, "output", "-o", "--output"),
    **_names(VALUE, "error", "-e", "--error"),
    **_names(VALUE, "interpreter", "--interpreter"),
    **_names(VALUE, "extra_attr", "--extra-attr"),
    **_names(VALUE, "mail_type", "--mail-type"),
    **_names(VALUE, "mail_user", "--mail-user"),
    **_names(VALUE, "comment", "--comment"),
    **_names(VALUE, "open_mode", "--open-mode"),
    **_names(BOOL, "exclusive", "--exclusive"),
    **_names(BOOL, "requeue", "--requeue"),
    **_names(BOOL, "no_requeue", "--no-requeue"),
    **_names(UNSUPPORTED, None, "-a", "--array", "-L", "--licenses", "-r", "--reservation", "--wckey",
             "-d", "--dependency", "-s", "--signal", "--pod", "--pod-name", "--pod-port", "--pod-user",
             "--pod-userns", "--pod-host-network", "--pod-dns"),
}

SBATCH_WHITELIST = frozenset(
    "-c -J -N --qos -A -e --exclude --chdir --export --mem -p -i -o --nodelist -w --get-user-env -t "
    "--ntasks-per-node -n --mail-type --mail-user --comment --open-mode -r --wrap --gres --exclusive "
    "-b --begin --deadline -a --array".split()
)

BSUB_OPTIONS: dict[str, str] = {
    "-J": "job_name", "-o": "output", "-e": "error", "-nnode": "nodes", "-n": "ntasks_per_node",
    "-W": "time", "-M": "mem", "-cwd": "chdir", "-q": "partition", "-env": "export",
}

_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


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


def _split_option(fields: list[str], table: dict[str, tuple[str | None, str]]) -> tuple[str, str | None]:
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


def _convert(opt: str, dest: str, kind: str, value: str | None, lineno: int) -> Directive:
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
    return Directive(dest, value, lineno, opt)


def bsub_time(value: str) -> str:
    """LSF ``-W [H:]M`` as a cbatch time limit (``H:M:00`` or minutes)."""
    parts = value.split(":")
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"invalid #BSUB -W value {value!r}: expected [H:]M")
    return f"{parts[0]}:{parts[1]}:00" if len(parts) == 2 else parts[0]


def _parse_cbatch(fields: list[str], lineno: int) -> Directive:
    opt, value = _split_option(fields, CBATCH_OPTIONS)
    entry = CBATCH_OPTIONS.get(opt)
    if entry is None:
        raise arg_error(f"unrecognized '{opt}' in script")
    dest, kind = entry
    if kind == UNSUPPORTED or dest is None:
        raise arg_error(f"'{opt}' in script line {lineno} is not supported by this cluster")
    return _convert(opt, dest, kind, value, lineno)


def _parse_sbatch(fields: list[str], lineno: int, warnings: list[str]) -> Directive | None:
    opt, value = _split_option(fields, CBATCH_OPTIONS)
    entry = CBATCH_OPTIONS.get(opt)
    if opt not in SBATCH_WHITELIST:
        if len(fields) == 2:  # the option and its value: ignore with a warning
            warnings.append(f"Warning: unsupported '#SBATCH {opt}' in script line {lineno} is ignored.")
            return None
        raise arg_error(f"unsupported '#SBATCH {opt}' in script line {lineno}")
    if entry is None or entry[1] == UNSUPPORTED or entry[0] is None:
        raise arg_error(f"'#SBATCH {opt}' in script line {lineno} is not supported by this cluster")
    dest, kind = entry
    return _convert(opt, dest, kind, value, lineno)


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


def parse_script(text: str) -> ParsedScript:
    """Take the directives out of ``text``; raise :class:`CliError` (exit 2) on a bad directive."""
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
            d: Directive | None = _parse_cbatch(rest, lineno)
        elif prefix == "#SBATCH":
            d = _parse_sbatch(rest, lineno, warnings)
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
