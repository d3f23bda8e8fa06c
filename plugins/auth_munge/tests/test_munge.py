"""The munge auth plugin against a real ``munged`` started with a private key, socket and pid file."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess

import pytest
from crane_auth_munge import METADATA_KEY, MungeAuth
from crane_kernel.auth_types import CallInfo

pytestmark = pytest.mark.skipif(shutil.which("munged") is None or os.geteuid() != 0,
                                reason="needs Debian's munge (apt-get install munge) and root")


@pytest.fixture(scope="module")
def munged():
    """A private munged; yields its socket path."""
    from crane_auth_munge.testing import PrivateMunged

    daemon = PrivateMunged().start()
    yield daemon.socket
    daemon.stop()


def plugin(sock: str) -> MungeAuth:
    """A configured munge plugin for cluster ``unit``."""
    p = MungeAuth()
    p.crane_plugin_configure({"Socket": sock, "Cluster": "unit", "Admins": ["root"]})
    return p


def credential(sock: str, payload: str = "cranectld:unit", user: pwd.struct_passwd | None = None) -> str:
    """A credential from the ``munge`` command, as ``user`` (default: us)."""
    def drop() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    return subprocess.run(["munge", "--socket", sock, "--string", payload], capture_output=True, text=True,
                          check=True, preexec_fn=drop).stdout.strip()


def call(cred: str, **extra: str) -> CallInfo:
    """A call carrying ``cred``."""
    return CallInfo(method="QueryJobsInfo", metadata={METADATA_KEY: cred, **extra})


def test_the_uid_comes_from_munged(munged):
    from crane_cli import munge as client

    os.environ[client.SOCKET_ENV] = munged
    try:
        cred = client.credential("unit")                       # what the CLI sends
    finally:
        del os.environ[client.SOCKET_ENV]
    ident = plugin(munged).crane_authenticate(call(cred, uid="1234", user="mallory"))
    assert (ident.uid, ident.user, ident.admin_level, ident.via) == (0, "root", "root", "munge")


def test_an_unprivileged_user_is_who_munged_says(munged):
    nobody = pwd.getpwnam("nobody")
    ident = plugin(munged).crane_authenticate(call(credential(munged, user=nobody), uid="0"))
    assert (ident.uid, ident.user, ident.admin_level) == (nobody.pw_uid, "nobody", "none")


def test_refused_credentials(munged):
    p = plugin(munged)
    cred = credential(munged)
    assert p.crane_authenticate(call(cred)) is not None
    assert p.crane_authenticate(call(cred)) is None                       # replayed
    assert p.crane_authenticate(call(credential(munged, "cranectld:other"))) is None   # another cluster
    assert p.crane_authenticate(call(credential(munged, ""))) is None     # no audience
    tampered = cred[:20] + ("A" if cred[20] != "A" else "B") + cred[21:]
    assert p.crane_authenticate(call(tampered)) is None
    assert p.crane_authenticate(call("garbage")) is None
    assert p.crane_authenticate(CallInfo(method="m", metadata={"uid": "0"})) is None
    assert plugin("/nonexistent/socket").crane_authenticate(call(credential(munged))) is None
