"""--format parsing and table rendering."""

import pytest

from crane_cli.fmtspec import FormatSpecError, Item, parse_format
from crane_cli.table import MAX_CELL, cut, render_format, render_table

FIELDS = {"j": "JOBID", "n": "NAME", "t": "STATE", "jobid": "JOBID", "name": "NAME"}


def parse(fmt):
    return parse_format(fmt, FIELDS.get)


def test_parse_items_and_literals():
    layout = parse("%.8j | %20n%t")
    assert [x if isinstance(x, str) else (x.field, x.width, x.right) for x in layout] == [
        ("JOBID", 8, True), " | ", ("NAME", 20, False), ("STATE", None, False)]


def test_long_names_are_case_insensitive_letters_are_not():
    assert parse("%JobId")[0].field == "JOBID"
    assert parse("%NAME")[0].field == "NAME"
    with pytest.raises(FormatSpecError):
        parse("%J")


def test_percent_escape_and_prefix():
    layout = parse("id=%j 100%%")
    assert layout[0] == "id="
    assert isinstance(layout[1], Item)
    assert layout[2] == " 100%"


@pytest.mark.parametrize("fmt", ["%z", "%jn", "%", "abc", "%5", "%.", "x%", "%0j", "%j%", "%%"])
def test_invalid_formats(fmt):
    with pytest.raises(FormatSpecError):
        parse(fmt)


def test_cut():
    assert cut("a" * MAX_CELL) == "a" * MAX_CELL
    assert cut("a" * 31) == "a" * 30 + "..."
    assert cut("a" * 31, full=True) == "a" * 31


def test_render_table_alignment_and_truncation():
    text = render_table(["JOBID", "NAME", "STATE"], [["1", "x" * 40, "Running"], ["12345", "y", "Pending"]])
    lines = text.splitlines()
    assert lines[0] == "JOBID NAME                              STATE"
    assert lines[1] == "1     " + "x" * 30 + "... Running"
    assert lines[2] == "12345 y                                 Pending"
    assert render_table(None, [["a", "b"]]) == "a b"
    assert render_table(["A"], []) == "A"
    assert render_table(None, []) == ""
    full = render_table(["N"], [["x" * 40]], full=True)
    assert full.splitlines()[1] == "x" * 40


def test_render_format_widths_alignment_literals():
    layout = parse("%.6j|%4n %t")
    text = render_format(layout, ["JOBID", "NAME", "STATE"], [["1", "longname", "Running"], ["22", "ab", "Pending"]])
    assert text.splitlines() == [
        " JOBID|NAME STATE",
        "     1|long Running",
        "    22|ab   Pending",
    ]


def test_render_format_adjacent_items_get_a_space():
    layout = parse("%j%n")
    assert render_format(layout, ["JOBID", "NAME"], [["1", "a"]]).splitlines() == ["JOBID NAME", "1     a"]


def test_render_format_no_header():
    layout = parse("%j")
    assert render_format(layout, None, [["1"], ["2"]]) == "1\n2"
