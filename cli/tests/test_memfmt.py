"""--mem parsing and memory display."""

import pytest

from crane_cli.memfmt import MemoryFormatError, format_memory, parse_memory


@pytest.mark.parametrize("text,nbytes", [
    ("100", 100 << 20), ("100M", 100 << 20), ("100m", 100 << 20), ("2G", 2 << 30), ("2g", 2 << 30),
    ("512K", 512 << 10), ("512k", 512 << 10), ("4096B", 4096), ("1.5G", 3 << 29), ("1.", 1 << 20), ("0", 0),
])
def test_parse_memory(text, nbytes):
    assert parse_memory(text) == nbytes


@pytest.mark.parametrize("text", ["", "G", "1.5.5", "-1", "1T", "1 G", "1GB", ".5G", "1e3", "1b"])
def test_parse_memory_rejects(text):
    with pytest.raises(MemoryFormatError):
        parse_memory(text)


@pytest.mark.parametrize("nbytes,text", [
    (0, "0"), (100, "100B"), (1024, "1K"), (2 << 30, "2G"), (3 << 29, "1.5G"), (1000000, "976.56K"), (5 << 40, "5T"),
])
def test_format_memory(nbytes, text):
    assert format_memory(nbytes) == text
