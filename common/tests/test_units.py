"""crane_common.units: the one parser of durations and of memory amounts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from crane_common.units import (
    MAX_DURATION,
    MAX_MEMORY,
    UNLIMITED,
    DurationError,
    MemoryAmountError,
    config_duration,
    format_duration,
    format_memory,
    parse_duration,
    parse_memory,
)

# -- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize("text,seconds", [
    # a bare number is minutes
    ("5", 300), ("90", 5400), (" 10 ", 600), ("0", 0),
    # MM:SS (the first field is unbounded), HH:MM:SS
    ("1:30", 90), ("90:30", 5430), ("2:30", 150), ("1:00:00", 3600), ("00:00:03", 3), ("100:00:00", 360000),
    # D-HH, D-HH:MM, D-HH:MM:SS
    ("2-3", 2 * 86400 + 3 * 3600), ("7-0", 7 * 86400), ("2-3:30", 2 * 86400 + 3 * 3600 + 1800),
    ("2-03:30:15", 185415), ("1-00:00:00", 86400), ("0-0:0:5", 5), ("1-02:03:04", 93784),
    # explicit units
    ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 7 * 86400), ("30 sec", 30), ("2hours", 7200), ("1DAY", 86400),
    # no limit
    ("UNLIMITED", UNLIMITED), ("unlimited", UNLIMITED), ("Infinite", UNLIMITED),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_an_int_is_the_same_bare_number():
    assert parse_duration(5) == parse_duration("5") == 300


@pytest.mark.parametrize("text", [
    "", "   ", "x", "1-", "1:2:3:4", "1:60", "1:2:61", "2-3:60", "-5", "1.5", "1-2-3", "5w", "1.5h", "h",
    "nan", "inf", "-inf", "1e3", "9" * 80, "36526-00:00:00", "99999999999", "5 5",
])
def test_parse_duration_rejects(text):
    with pytest.raises(DurationError) as exc:
        parse_duration(text)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("invalid duration")


@pytest.mark.parametrize("value", [True, False, 1.5, float("nan"), float("inf"), -1, None, [1]])
def test_parse_duration_rejects_non_text(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_limits():
    assert parse_duration("36525-00:00:00") == MAX_DURATION == UNLIMITED
    with pytest.raises(DurationError, match="100 years"):
        parse_duration(f"{MAX_DURATION + 1}s")


def test_config_duration_yaml_numbers_are_seconds():
    yaml = pytest.importorskip("yaml")

    doc = yaml.safe_load("a: 1:30:00\nb: 10:30\nc: 7-0\nd: 3600\ne: '90'\nf: 0.5\ng: 15m\nh: 0:30\n")
    assert doc["a"] == 5400 and doc["b"] == 630  # YAML 1.1 base-60 integers
    got = {k: config_duration(v) for k, v in doc.items()}
    assert got == {"a": 5400, "b": 630, "c": 7 * 86400, "d": 3600, "e": 5400, "f": 0.5, "g": 900, "h": 30}


@pytest.mark.parametrize("value", [True, -1, float("nan"), float("inf"), MAX_DURATION + 1, "", "soon", None])
def test_config_duration_rejects(value):
    with pytest.raises(DurationError):
        config_duration(value)


@pytest.mark.parametrize("seconds,text", [
    (0, "00:00:00"), (59, "00:00:59"), (86399, "23:59:59"), (86400, "1-00:00:00"), (90061, "1-01:01:01"),
    (-5, "00:00:00"), (5.9, "00:00:05"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 59, 60, 3599, 3600, 86399, 86400, 185415, 30 * 86400 + 1])
def test_format_duration_reads_back(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


# -- memory --------------------------------------------------------------------------------


@pytest.mark.parametrize("text,nbytes", [
    # a bare number is MB
    ("100", 100 << 20), ("512", 512 << 20), ("0", 0), ("1.", 1 << 20),
    ("100M", 100 << 20), ("100m", 100 << 20), ("2G", 2 << 30), ("2g", 2 << 30), ("512K", 512 << 10),
    ("512k", 512 << 10), ("4096B", 4096), ("1.5G", 3 << 29), ("1.5g", 3 << 29), ("1T", 1 << 40), ("2t", 2 << 40),
    # spellings config files use
    ("2GB", 2 << 30), ("2GiB", 2 << 30), ("512mb", 512 << 20), ("1 G", 1 << 30), (" 8G ", 8 << 30),
])
def test_parse_memory(text, nbytes):
    assert parse_memory(text) == nbytes


def test_numbers_are_mb():
    assert parse_memory(512) == 512 << 20
    assert parse_memory(0.5) == 1 << 19


@pytest.mark.parametrize("text", ["", "  ", "G", "1.5.5", "-1", ".5G", "1e3", "1b", "1 GB B", "1P", "nan", "inf",
                                  "1G1", "9" * 80, "2000000000000G"])
def test_parse_memory_rejects(text):
    with pytest.raises(MemoryAmountError) as exc:
        parse_memory(text)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("invalid memory amount")


@pytest.mark.parametrize("value", [True, float("nan"), float("inf"), -1, None])
def test_parse_memory_rejects_non_text(value):
    with pytest.raises(ValueError):
        parse_memory(value)


def test_memory_limit():
    assert parse_memory("1048576T") == MAX_MEMORY
    with pytest.raises(MemoryAmountError, match="1 EiB"):
        parse_memory("1048577T")


@pytest.mark.parametrize("nbytes,text", [
    (0, "0"), (-1, "0"), (100, "100B"), (1024, "1K"), (2 << 30, "2G"), (3 << 29, "1.5G"), (1000000, "976.56K"),
    (5 << 40, "5T"), (5000 << 40, "5000T"),
])
def test_format_memory(nbytes, text):
    assert format_memory(nbytes) == text


@pytest.mark.parametrize("nbytes", [1 << 10, 3 << 29, 100 << 20, 7 << 40, 4096])
def test_format_memory_reads_back(nbytes):
    assert parse_memory(format_memory(nbytes)) == nbytes


# -- the module stays cheap ---------------------------------------------------------------------


def test_import_is_stdlib_only_and_lazy():
    code = ("import sys; before = set(sys.modules); import crane_common.units as u; "
            "print(sorted(set(sys.modules) - before)); print(len(u._patterns)); u.parse_duration('5'); "
            "print(len(u._patterns))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    new, before, after = out.stdout.splitlines()
    assert set(eval(new)) <= {"__future__", "crane_common", "crane_common.units", "math"}, new
    assert (before, after) == ("0", "1")  # patterns are compiled on first use
