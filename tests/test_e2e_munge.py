"""MUNGE end to end: a cluster with ``Plugins.Auth: [munge, rbac]``, the CLIs sending MUNGE credentials.

A private munged (own key and socket) stands in for the site's; commands run as real users.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from crane_e2e import cli, ensure_user, make_cluster

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("munged") is None or os.geteuid() != 0,
                                 reason="needs Debian's munge (apt-get install munge) and root")]


@pytest.fixture(scope="module")
def munge_cluster():
    """``(LocalCluster, munged socket)``."""
    from crane_auth_munge.testing import PrivateMunged

    daemon = PrivateMunged().start()
    lc = make_cluster(nodes=1, Plugins={"Auth": ["munge", "rbac"], "Settings": {"munge": {"Socket": daemon.socket}}},
                      Auth={"ClientCredential": "munge"})
    try:
        lc.start()
        yield lc, daemon.socket
    finally:
        lc.stop()
        daemon.stop()


def run_as(lc, sock: str, user, *args: str, **env: str) -> subprocess.CompletedProcess:
    """A CLI command as ``user`` with the cluster's config and munged socket."""
    def drop() -> None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    e = {"PATH": os.environ.get("PATH", ""), "HOME": "/", "CRANE_CONFIG": lc.config_path,
         "CRANE_MUNGE_SOCKET": sock, "XDG_CACHE_HOME": "/nonexistent", **env}
    return subprocess.run([cli(args[0]), *args[1:]], env=e, capture_output=True, text=True, timeout=60,
                          preexec_fn=drop, cwd="/")


def test_the_controller_takes_the_uid_munged_vouches_for(munge_cluster):
    lc, sock = munge_cluster
    alice = ensure_user("crane_e2e_alice")
    proc = run_as(lc, sock, alice, "crane", "whoami")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"crane_e2e_alice({alice.pw_uid})")
    proc = run_as(lc, sock, alice, "cqueue")                     # a command making several calls
    assert proc.returncode == 0, proc.stderr


def test_without_munged_there_is_no_identity(munge_cluster):
    lc, sock = munge_cluster
    alice = ensure_user("crane_e2e_alice")
    proc = run_as(lc, "/nonexistent/munge.socket", alice, "crane", "whoami")
    assert proc.returncode == 3 and "MUNGE" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    token = lc.token(alice.pw_name, alice.pw_uid)                 # an explicit token still works (rbac)
    proc = run_as(lc, "/nonexistent/munge.socket", alice, "crane", "whoami", CRANE_TOKEN=token)
    assert proc.returncode == 0 and proc.stdout.startswith("crane_e2e_alice")


def test_crun_as_a_user_through_the_forwarder_and_directly(munge_cluster):
    """Through cfored (which holds root's MUNGE credential) and directly with her own: she is herself."""
    lc, sock = munge_cluster
    alice = ensure_user("crane_e2e_alice")
    for extra in ({}, {"CRANE_NO_CFORED": "1"}):
        proc = run_as(lc, sock, alice, "crun", "id", "-u", **extra)
        assert proc.returncode == 0, (extra, proc.stderr)
        assert proc.stdout.strip() == str(alice.pw_uid)
