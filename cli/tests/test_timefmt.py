"""Durations, time limits, timestamps and --begin expressions."""

import time

import pytest

from crane_cli.timefmt import (
    MAX_TIME_LIMIT,
    TimeFormatError,
    format_duration,
    format_time_limit,
    format_timestamp,
    parse_duration,
    parse_time_expr,
)


@pytest.mark.parametrize("text,seconds", [
    ("5", 300), ("90", 5400), ("1:30", 90), ("90:30", 5430), ("1:00:00", 3600), ("100:00:00", 360000),
    ("2-3", 2 * 86400 + 3 * 3600), ("2-3:30", 2 * 86400 + 3 * 3600 + 1800), ("2-03:30:15", 185415),
    ("0-0:0:5", 5), (" 10 ", 600),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "x", "1-", "1:2:3:4", "1:60", "1:2:61", "-5", "1.5", "1-2-3", "2-3:60"])
def test_parse_duration_rejects(text):
    with pytest.raises(TimeFormatError):
        parse_duration(text)


def test_format_duration():
    assert format_duration(0) == "00:00:00"
    assert format_duration(59) == "00:00:59"
    assert format_duration(86399) == "23:59:59"
    assert format_duration(86400) == "1-00:00:00"
    assert format_duration(90061) == "1-01:01:01"
    assert format_duration(-5) == "00:00:00"


def test_format_time_limit():
    assert format_time_limit(0) == "unlimited"
    assert format_time_limit(MAX_TIME_LIMIT) == "unlimited"
    assert format_time_limit(MAX_TIME_LIMIT + 1) == "unlimited"
    assert format_time_limit(3600) == "01:00:00"


def test_format_timestamp():
    assert format_timestamp(0) == "-"
    ts = time.mktime((2024, 1, 2, 15, 4, 5, 0, 0, -1))
    assert format_timestamp(ts) == "2024-01-02 15:04:05"


NOW = time.mktime((2026, 3, 10, 14, 0, 0, 0, 0, -1))  # a Tuesday, 14:00 local time


def local(*fields):
    return int(time.mktime((*fields, *([0] * (6 - len(fields))), 0, 0, -1)))


@pytest.mark.parametrize("expr,expected", [
    ("now", local(2026, 3, 10, 14)),
    ("now+1hour", local(2026, 3, 10, 15)),
    ("now+90", local(2026, 3, 10, 14, 1, 30)),
    ("now+2d", local(2026, 3, 12, 14)),
    ("now-10min", local(2026, 3, 10, 13, 50)),
    ("16:00", local(2026, 3, 10, 16)),
    ("13:00", local(2026, 3, 11, 13)),  # already past today -> tomorrow
    ("13:00:30", local(2026, 3, 11, 13, 0, 30)),
    ("2026-04-01", local(2026, 4, 1)),
    ("2026-04-01T10:30", local(2026, 4, 1, 10, 30)),
    ("2026-04-01T10:30:15", local(2026, 4, 1, 10, 30, 15)),
    ("04/05", local(2026, 4, 5)),
    ("04/05/27", local(2027, 4, 5)),
    ("0405", local(2026, 4, 5)),
    ("040527", local(2027, 4, 5)),
    ("midnight", local(2026, 3, 11)),
    ("noon", local(2026, 3, 11, 12)),
    ("teatime", local(2026, 3, 10, 16)),
    ("elevenses", local(2026, 3, 11, 11)),
    ("fika", local(2026, 3, 10, 15)),
    ("today", local(2026, 3, 10)),
    ("tomorrow", local(2026, 3, 11)),
    ("Monday", local(2026, 3, 16)),
    ("tuesday", local(2026, 3, 17)),
])
def test_parse_time_expr(expr, expected):
    assert parse_time_expr(expr, NOW) == expected


def test_parse_time_expr_rfc3339():
    assert parse_time_expr("2026-04-01T10:30:00Z", NOW) == 1775039400
    assert parse_time_expr("2026-04-01T10:30:00+08:00", NOW) == 1775039400 - 8 * 3600


@pytest.mark.parametrize("expr", ["", "bogus", "now+3parsecs", "02/30", "25:00", "2026-13-01", "now+"])
def test_parse_time_expr_rejects(expr):
    with pytest.raises(TimeFormatError):
        parse_time_expr(expr, NOW)
