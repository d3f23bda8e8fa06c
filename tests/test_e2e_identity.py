"""Identity and TLS on a real cluster: JWTs from ``crane token``, revocation, expiry, rotation, TLS on.

Runs as root (the controller's host token is root's credential); the user tokens are for real
unprivileged accounts.
"""

from __future__ import annotations

import os
import time

import pytest
from crane_e2e import ensure_user, run_as

pytestmark = pytest.mark.e2e


def issue(cluster, user: str, uid: int, *extra: str) -> str:
    """A token from the real ``crane token issue``."""
    proc = cluster.run("crane", "token", "issue", "--user", user, "--uid", str(uid), *extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


class Who:
    """``crane whoami``'s outcome: ``returncode``, ``stderr`` and ``stdout`` (the user name only)."""

    def __init__(self, proc) -> None:
        self.returncode, self.stderr = proc.returncode, proc.stderr
        self.stdout = proc.stdout.split("(")[0] + (" (admin)" if "(admin)" in proc.stdout else "")


def whoami(cluster, token: str | None = None) -> Who:
    """``crane whoami`` with ``token`` (None: root's own host token)."""
    return Who(cluster.run("crane", "whoami", env={"CRANE_TOKEN": token} if token else None))


def test_tls_is_on_and_verified(cluster, tmp_path):
    assert cluster.lc.cfg.CraneCtld.Tls.Cert and cluster.lc.cfg.CraneCtld.Tls.CA
    assert whoami(cluster).stdout.strip() == "root (admin)"
    plain = tmp_path / "plain.yaml"                                  # the same cluster, without the CA
    text = open(cluster.lc.config_path).read()
    import yaml

    cfg = yaml.safe_load(text)
    del cfg["CraneCtld"]["Tls"]
    plain.write_text(yaml.safe_dump(cfg))
    proc = cluster.run("cqueue", env={"CRANE_CONFIG": str(plain)})
    assert proc.returncode == 3 and "Connection to CraneCtld is broken" in proc.stderr


def test_user_tokens_expire_and_are_revoked(cluster):
    alice = ensure_user("crane_e2e_alice")
    token = issue(cluster, alice.pw_name, alice.pw_uid)
    assert whoami(cluster, token).stdout.strip() == alice.pw_name
    from crane_auth_rbac import jwt_tokens

    expired = jwt_tokens.mint(jwt_tokens.read_keyring(cluster.lc.cfg.key_file), cluster.lc.cfg.ClusterName,
                              alice.pw_uid, alice.pw_name, ttl=10, now=time.time() - 100)
    proc = whoami(cluster, expired)
    assert proc.returncode == 3 and "Access denied" in proc.stderr
    other = issue(cluster, alice.pw_name, alice.pw_uid)
    jti = jwt_tokens.decode_unverified(token)["jti"]
    assert cluster.run("crane", "token", "revoke", jti).returncode == 0
    assert whoami(cluster, token).returncode == 3                    # that token only
    assert whoami(cluster, other).stdout.strip() == alice.pw_name
    assert cluster.run("crane", "token", "revoke", "--user", alice.pw_name).returncode == 0
    assert whoami(cluster, other).returncode == 3                    # every token alice had
    time.sleep(1.1)
    assert whoami(cluster, issue(cluster, alice.pw_name, alice.pw_uid)).stdout.strip() == alice.pw_name


def test_the_revocation_list_and_keyring_are_root_only(cluster):
    base = os.path.dirname(cluster.lc.cfg.key_file)
    for name in ("cluster.key", "revoked.json", "root.token"):
        st = os.stat(os.path.join(base, name))
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600), name
    bob = ensure_user("crane_e2e_bob")
    as_bob = run_as(cluster, bob, "crane", "token", "revoke", "root")      # a user cannot revoke (or issue)
    assert as_bob.returncode == 6 and "cannot read the cluster key" in as_bob.stderr
    as_bob = run_as(cluster, bob, "crane", "token", "issue", "--user", "root", "--uid", "0", "--level", "root")
    assert as_bob.returncode == 6
    as_bob = run_as(cluster, bob, "crane", "whoami")                        # nor use root's host token
    assert as_bob.returncode == 3 and "No token found" in as_bob.stderr
    ok = run_as(cluster, bob, "crane", "whoami", token=issue(cluster, bob.pw_name, bob.pw_uid))
    assert ok.returncode == 0 and ok.stdout.startswith(bob.pw_name)


def test_rotation_keeps_the_grace_window(cluster):
    alice = ensure_user("crane_e2e_alice")
    before = issue(cluster, alice.pw_name, alice.pw_uid)
    assert cluster.run("crane", "token", "rotate-key", "--grace", "3600").returncode == 0
    after = issue(cluster, alice.pw_name, alice.pw_uid)
    assert whoami(cluster, before).stdout.strip() == alice.pw_name   # still within the grace
    assert whoami(cluster, after).stdout.strip() == alice.pw_name
    assert cluster.run("crane", "token", "rotate-key", "--grace", "0").returncode == 0
    assert whoami(cluster, before).returncode == 3                   # its key is gone now
    assert whoami(cluster, after).returncode == 3                    # so is the previous key's
    assert whoami(cluster).stdout.strip() == "root (admin)"          # the host token was re-signed
