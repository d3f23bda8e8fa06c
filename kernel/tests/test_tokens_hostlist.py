"""Host lists expand and compress (the token tests moved to plugins/auth_rbac/tests with the tokens)."""

from __future__ import annotations

import pytest
from crane_common.hostlist import HostlistError, compress, expand


def test_hostlists():
    assert expand("cn[01-03],gpu[1,3]") == ["cn01", "cn02", "cn03", "gpu1", "gpu3"]
    assert compress(["cn01", "cn02", "cn03", "cn05"]) == "cn[01-03,05]"
    assert compress(["a"]) == "a"
    assert compress(["cn0", "cn1"]) == "cn[0-1]"  # a lone 0 is not zero padding
    assert compress(["n0", "n1", "n2", "n10"]) == "n[0-2,10]" and compress(["cn00", "cn0"]) == "cn00,cn0"
    for hosts in (["cn0", "cn1", "cn2"], ["cn00", "cn01", "cn1"], ["x9", "x10", "x0"]):
        assert sorted(expand(compress(hosts))) == sorted(hosts)
    for bad in ("cn[01-", "cn]", "cn[a-b]", "cn[3-1]"):
        with pytest.raises(HostlistError):
            expand(bad)


def test_integer_runs():
    from crane_common.hostlist import format_ranges

    assert format_ranges([5, 0, 1, 2, 2, 9, 10]) == "0-2,5,9-10" and format_ranges([]) == ""
