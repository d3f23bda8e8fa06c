"""Tokens are verifiable and unforgeable; host lists expand and compress."""

from __future__ import annotations

import pytest
from crane_common import tokens
from crane_common.hostlist import HostlistError, compress, expand


def test_token_roundtrip_and_tamper():
    key = b"k" * 32
    t = tokens.mint(key, 1001, "alice", "none", ttl=60, now=1000)
    assert tokens.verify(key, t, now=1010)["user"] == "alice"
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(key, t, now=2000)
    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.verify(b"other", t, now=1010)
    v, body, sig = t.split(".")
    forged = tokens.mint(b"x", 0, "root", "root").split(".")[1]
    with pytest.raises(tokens.TokenError):
        tokens.verify(key, f"{v}.{forged}.{sig}", now=1010)
    with pytest.raises(tokens.TokenError, match="malformed"):
        tokens.verify(key, "garbage")


def test_key_file_is_private(tmp_path):
    path = str(tmp_path / "k")
    key = tokens.create_key_file(path)
    import os

    assert os.stat(path).st_mode & 0o777 == 0o600
    assert tokens.create_key_file(path) == key


def test_hostlists():
    assert expand("cn[01-03],gpu[1,3]") == ["cn01", "cn02", "cn03", "gpu1", "gpu3"]
    assert compress(["cn01", "cn02", "cn03", "cn05"]) == "cn[01-03,05]"
    assert compress(["a"]) == "a"
    for bad in ("cn[01-", "cn]", "cn[a-b]", "cn[3-1]"):
        with pytest.raises(HostlistError):
            expand(bad)
