"""Host lists expand and compress (the token tests moved to plugins/auth_rbac/tests with the tokens)."""

from __future__ import annotations

import pytest
from crane_common.hostlist import HostlistError, compress, expand


def test_hostlists():
    assert expand("cn[01-03],gpu[1,3]") == ["cn01", "cn02", "cn03", "gpu1", "gpu3"]
    assert compress(["cn01", "cn02", "cn03", "cn05"]) == "cn[01-03,05]"
    assert compress(["a"]) == "a"
    for bad in ("cn[01-", "cn]", "cn[a-b]", "cn[3-1]"):
        with pytest.raises(HostlistError):
            expand(bad)
