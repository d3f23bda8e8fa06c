"""docs/cli.md's flag status list stays true: every flag and directive of every command is listed.

The inventory comes from the commands' own definitions (each module's ``build_command()``,
crun/calloc's in stepspec, cbatch's directive spellings from the same click options, cqueue's
``--format`` letters and names from jobfields). A flag another session adds fails this test
until docs/cli.md lists it with a status. ``python cli/tests/test_cli_docs.py`` prints the
inventory as table rows (status ``supported``), for a new flag to be pasted and described.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import click
import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
SECTION = "## Flag and directive status"
STATUSES = ("supported", "supported with differences", "not supported")

# (heading in docs/cli.md, module, function building the click command)
COMMANDS = [
    ("cbatch", "crane_cli.cbatch", "build_command"), ("crun", "crane_cli.stepspec", "crun_command"),
    ("calloc", "crane_cli.stepspec", "calloc_command"), ("cqueue", "crane_cli.cqueue", "build_command"),
    ("cacct", "crane_cli.cacct", "build_command"), ("ceff", "crane_cli.ceff", "build_command"),
    ("cinfo", "crane_cli.cinfo", "build_command"), ("ccancel", "crane_cli.ccancel", "build_command"),
    ("ccontrol", "crane_cli.ccontrol", "build_command"), ("cacctmgr", "crane_cli.cacctmgr", "build_command"),
    ("ccon", "crane_cli.ccon", "build_command"), ("crane", "crane_cli.crane", "build_command"),
]


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


def inventory() -> dict[str, list[click.Option]]:
    """Heading -> the options of that command (a group's subcommands under ``<group> <sub>``)."""
    out: dict[str, list[click.Option]] = {}
    for heading, module, func in COMMANDS:
        command = getattr(importlib.import_module(module), func)()
        out[heading] = _options(command)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                if any(o.name != "help" for o in _options(sub)):  # a subcommand with flags of its own
                    out[f"{heading} {name}"] = _options(sub)
    return out


def spellings(option: click.Option) -> list[str]:
    """Every command-line spelling of ``option``."""
    return [*option.opts, *option.secondary_opts]


def cbatch_directives(option: click.Option) -> tuple[list[str], bool]:
    """(the ``#CBATCH`` spellings of a cbatch option, whether ``#SBATCH`` takes it)."""
    from crane_cli.directives import NOT_IN_SCRIPTS

    return list(getattr(option, "script_names", ())), option.name not in NOT_IN_SCRIPTS


def doc_tables(text: str) -> dict[str, list[list[str]]]:
    """The status section's tables: ``### <command>`` -> rows of cells (the header rows left out)."""
    assert SECTION in text, f"docs/cli.md has no {SECTION!r} section"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[list[str]]] = {}
    current = None
    for line in body.splitlines():
        if line.startswith("### "):
            current = line[4:].strip().strip("`")
            tables[current] = []
        elif current and line.startswith("|") and not set(line) <= set("|-: "):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]  # "\|" is a literal pipe
            if cells[0].lower() not in ("flag", "specifier"):
                tables[current].append(cells)
    return tables


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


@pytest.fixture(scope="module")
def tables() -> dict[str, list[list[str]]]:
    return doc_tables(DOC.read_text())


@pytest.mark.parametrize("heading", list(inventory()))
def test_every_flag_is_listed_with_a_status(tables, heading):
    assert heading in tables, f"docs/cli.md {SECTION}: no '### {heading}' table"
    rows = tables[heading]
    listed = {name: row for row in rows for name in _ticked(row[0])}
    for option in inventory()[heading]:
        for name in spellings(option):
            assert name in listed, f"docs/cli.md: {heading} {name} is not in the flag status list"
    for row in rows:
        assert row[-1].lower().startswith(STATUSES), f"{heading} {row[0]}: status must start with one of {STATUSES}"


def test_every_console_script_has_a_table():
    """A command another session adds to cli/pyproject.toml needs its entry in COMMANDS (and its table)."""
    import tomllib

    scripts = tomllib.loads((DOC.parents[1] / "cli" / "pyproject.toml").read_text())["project"]["scripts"]
    documented = {heading for heading, _module, _func in COMMANDS} | {"cfored"}  # cfored: a daemon, in the prose
    assert set(scripts) <= documented, f"console scripts without a flag status table: {set(scripts) - documented}"


def test_no_flag_listed_that_does_not_exist(tables):
    known = inventory()
    for heading, rows in tables.items():
        if heading.startswith("cqueue --format"):
            continue
        assert heading in known, f"docs/cli.md {SECTION}: '### {heading}' is not a command"
        names = {n for option in known[heading] for n in spellings(option)}
        for row in rows:
            for name in _ticked(row[0]):
                assert name in names, f"docs/cli.md lists {heading} {name}, which the command does not have"


def test_cbatch_directive_columns_match_the_definitions(tables):
    rows = {tuple(_ticked(row[0])): row for row in tables["cbatch"]}
    for option in inventory()["cbatch"]:
        row = rows.get(tuple(spellings(option)))
        assert row is not None and len(row) == 4, f"cbatch {spellings(option)}: expected one row of 4 cells"
        cbatch_names, in_sbatch = cbatch_directives(option)
        assert _ticked(row[1]) == cbatch_names, f"cbatch {row[0]}: #CBATCH column should list {cbatch_names}"
        assert (row[2] != "—") == in_sbatch, f"cbatch {row[0]}: #SBATCH column says {row[2]!r}"


def test_cqueue_format_specifiers_are_listed(tables):
    from crane_cli import jobfields

    rows = tables.get("cqueue --format")
    assert rows, "docs/cli.md: no '### cqueue --format' table"
    letters = {t for row in rows for t in _ticked(row[0])}
    names = {t.lower() for row in rows for t in _ticked(row[1])}
    assert set(jobfields.LETTERS) <= {x.lstrip("%") for x in letters}
    assert set(jobfields.LONG_NAMES) <= {x.lstrip("%") for x in names}


def test_unsupported_flags_name_themselves():
    """"``--x`` is not supported" style: the error names the flag (cliparse's ``unsupported=``)."""
    from crane_cli.cbatch import build_command
    from crane_cli.cliparse import parse
    from crane_cli.errors import CliError

    for option in inventory()["cbatch"]:
        if getattr(option, "unsupported", False):
            argv = [option.opts[0]] if option.is_flag else [option.opts[0], "x"]
            with pytest.raises(CliError) as err:
                parse(build_command(), [*argv, "--wrap", "true"])
            assert err.value.code == 2 and option.opts[0] in err.value.message
            assert "is not supported" in err.value.message


def main() -> None:
    """Print the inventory as markdown rows (status ``supported``), one table per command."""
    for heading, options in inventory().items():
        print(f"### {heading}\n")
        if heading == "cbatch":
            print("| Flag | #CBATCH | #SBATCH | Status |\n|---|---|---|---|")
        else:
            print("| Flag | Status |\n|---|---|")
        for option in options:
            flag = ", ".join(f"`{n}`" for n in spellings(option))
            status = "not supported" if getattr(option, "unsupported", False) else "supported"
            if heading == "cbatch":
                names, in_sbatch = cbatch_directives(option)
                print(f"| {flag} | {', '.join(f'`{n}`' for n in names) or '—'} | "
                      f"{'every spelling' if in_sbatch else '—'} | {status} |")
            else:
                print(f"| {flag} | {status} |")
        print()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
