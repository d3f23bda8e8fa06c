"""The rbac plugin's JWTs: what verifies, what is refused, rotation, revocation and the host token."""

from __future__ import annotations

import base64
import json
import os
import time

import jwt
import pytest
from crane_auth_rbac import RbacAuth, jwt_tokens
from crane_auth_rbac.jwt_tokens import Key, Keyring, Revocations, TokenError
from crane_kernel.auth_types import CallInfo

CLUSTER = "unit"


@pytest.fixture
def ring(tmp_path):
    """A fresh keyring file and its contents."""
    path = str(tmp_path / "cluster.key")
    return path, jwt_tokens.create_keyring(path)


def call(token: str, **extra: str) -> CallInfo:
    """A call carrying ``token`` as its bearer credential (plus other metadata)."""
    return CallInfo(method="QueryJobsInfo", metadata={"authorization": f"Bearer {token}", **extra}, peer="ipv4:x")


def plugin(path: str, **settings) -> RbacAuth:
    """A configured rbac plugin over the keyring at ``path``."""
    p = RbacAuth()
    p.crane_plugin_configure({"KeyFile": path, "Admins": ["root"], "Cluster": CLUSTER, **settings})
    return p


def test_the_keyring_is_private_and_kept(ring):
    path, keys = ring
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert jwt_tokens.create_keyring(path).signing.kid == keys.signing.kid
    assert len(keys.signing.secret) == 32


def test_roundtrip_claims(ring):
    _, keys = ring
    t = jwt_tokens.mint(keys, CLUSTER, 1001, "alice", "operator", ttl=60, now=1000)
    claims = jwt_tokens.verify(keys, t, CLUSTER, now=1010)
    assert (claims["sub"], claims["uid"], claims["lvl"], claims["exp"]) == ("alice", 1001, "operator", 1060)
    assert claims["iss"] == "crane:unit" and claims["aud"] == "cranectld:unit" and len(claims["jti"]) == 32
    assert jwt.get_unverified_header(t)["kid"] == keys.signing.kid
    assert "exp" not in jwt_tokens.verify(keys, jwt_tokens.mint(keys, CLUSTER, 1, "a", ttl=0), CLUSTER)


def test_default_expiry_is_seven_days(ring):
    _, keys = ring
    claims = jwt_tokens.verify(keys, jwt_tokens.mint(keys, CLUSTER, 1, "a"), CLUSTER)
    assert claims["exp"] - claims["iat"] == 7 * 24 * 3600


def test_refused_tokens(ring):
    _, keys = ring
    t = jwt_tokens.mint(keys, CLUSTER, 1001, "alice", ttl=60, now=1000)
    with pytest.raises(TokenError, match="expired"):
        jwt_tokens.verify(keys, t, CLUSTER, now=2000)
    foreign = Keyring([Key(keys.signing.kid, b"f" * 32, 0)])              # same kid, other secret
    with pytest.raises(TokenError, match="signature"):
        jwt_tokens.verify(foreign, t, CLUSTER, now=1010)
    with pytest.raises(TokenError, match="unknown or retired key"):      # a key we do not have
        jwt_tokens.verify(Keyring([Key("other", b"f" * 32, 0)]), t, CLUSTER, now=1010)
    with pytest.raises(TokenError, match="issuer|audience"):              # another cluster's token
        jwt_tokens.verify(keys, t, "elsewhere", now=1010)
    head, body, sig = t.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(uid=0, sub="root", lvl="root")
    tampered = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="signature"):
        jwt_tokens.verify(keys, f"{head}.{tampered}.{sig}", CLUSTER, now=1010)
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": keys.signing.kid})
    with pytest.raises(TokenError, match="algorithm"):
        jwt_tokens.verify(keys, unsigned, CLUSTER, now=1010)
    wrong_iss = jwt.encode({**claims, "iss": "crane:elsewhere"}, keys.signing.secret, algorithm="HS256",
                           headers={"kid": keys.signing.kid})
    with pytest.raises(TokenError, match="issuer"):
        jwt_tokens.verify(keys, wrong_iss, CLUSTER, now=1010)
    wrong_aud = jwt.encode({**claims, "aud": "some-other-service"}, keys.signing.secret, algorithm="HS256",
                           headers={"kid": keys.signing.kid})
    with pytest.raises(TokenError, match="audience"):
        jwt_tokens.verify(keys, wrong_aud, CLUSTER, now=1010)
    no_jti = jwt.encode({k: v for k, v in claims.items() if k != "jti"}, keys.signing.secret, algorithm="HS256",
                        headers={"kid": keys.signing.kid})
    with pytest.raises(TokenError):
        jwt_tokens.verify(keys, no_jti, CLUSTER, now=1010)
    for garbage in ("garbage", "v1.e30.x", ""):
        with pytest.raises(TokenError):
            jwt_tokens.verify(keys, garbage, CLUSTER)


def test_rotation_with_a_grace_window(ring):
    path, keys = ring
    old = jwt_tokens.mint(keys, CLUSTER, 1, "alice", ttl=10 ** 6, now=1000)
    new_key = jwt_tokens.rotate(path, grace=100, now=2000)
    rotated = jwt_tokens.read_keyring(path)
    assert rotated.signing.kid == new_key.kid != keys.signing.kid
    fresh = jwt_tokens.mint(rotated, CLUSTER, 1, "alice", ttl=10 ** 6, now=2000)
    assert jwt.get_unverified_header(fresh)["kid"] == new_key.kid
    assert jwt_tokens.verify(rotated, old, CLUSTER, now=2050)["sub"] == "alice"     # within the grace
    with pytest.raises(TokenError, match="retired"):
        jwt_tokens.verify(rotated, old, CLUSTER, now=2101)                        # after it
    assert jwt_tokens.verify(rotated, fresh, CLUSTER, now=2101)["sub"] == "alice"
    jwt_tokens.rotate(path, grace=0, now=3000)                                     # the expired key is dropped
    assert keys.signing.kid not in [k.kid for k in jwt_tokens.read_keyring(path).keys]


def test_revocation_by_id_and_by_user(tmp_path, ring):
    path, keys = ring
    p = plugin(path)
    a1 = jwt_tokens.mint(keys, CLUSTER, 1001, "alice", now=time.time() - 10)
    a2 = jwt_tokens.mint(keys, CLUSTER, 1001, "alice", now=time.time() - 10)
    b = jwt_tokens.mint(keys, CLUSTER, 1002, "bob", now=time.time() - 10)
    assert p.crane_authenticate(call(a1)).user == "alice"
    revoked = Revocations()
    revoked.jti[jwt_tokens.decode_unverified(a1)["jti"]] = 0.0
    revoked.write(str(tmp_path / "revoked.json"))
    assert os.stat(tmp_path / "revoked.json").st_mode & 0o777 == 0o600
    assert p.crane_authenticate(call(a1)) is None                     # picked up without a restart
    assert p.crane_authenticate(call(a2)).user == "alice"
    revoked.users["alice"] = time.time()
    revoked.write(str(tmp_path / "revoked.json"))
    assert p.crane_authenticate(call(a2)) is None
    assert p.crane_authenticate(call(b)).user == "bob"
    later = jwt_tokens.mint(keys, CLUSTER, 1001, "alice", now=time.time() + 2)   # issued after the cut
    assert p.crane_authenticate(call(later)).user == "alice"


def test_the_identity_comes_from_the_token_only(ring):
    path, keys = ring
    p = plugin(path)
    t = jwt_tokens.mint(keys, CLUSTER, 1001, "alice")
    ident = p.crane_authenticate(call(t, uid="0", user="root", **{"x-crane-uid": "0"}))
    assert (ident.uid, ident.user, ident.admin_level, ident.via) == (1001, "alice", "none", "token")
    assert p.crane_authenticate(CallInfo(method="m", metadata={"uid": "0"})) is None
    p.crane_plugin_shutdown()
    assert p.crane_authenticate(call(t)) is None


def test_a_rotation_reaches_the_running_plugin(ring):
    path, keys = ring
    p = plugin(path)
    jwt_tokens.rotate(path, grace=0)
    time.sleep(0.01)
    new = jwt_tokens.read_keyring(path)
    assert p.crane_authenticate(call(jwt_tokens.mint(new, CLUSTER, 5, "eve"))).user == "eve"
    assert p.crane_authenticate(call(jwt_tokens.mint(keys, CLUSTER, 5, "eve"))) is None


def test_host_token(tmp_path, ring):
    path, _ = ring
    p = plugin(path)
    host = tmp_path / "root.token"
    assert os.stat(host).st_mode & 0o777 == 0o600
    ident = p.crane_authenticate(call(host.read_text().strip()))
    assert ident.uid == os.getuid()
    assert ident.admin_level == ("root" if os.getuid() == 0 else "none")
    claims = jwt_tokens.decode_unverified(host.read_text().strip())
    assert claims["exp"] - claims["iat"] == 24 * 3600


def test_a_symlink_at_the_host_token_is_replaced_not_followed(tmp_path, ring):
    path, _ = ring
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, tmp_path / "root.token")
    plugin(path)
    assert victim.read_text() == "precious"
    assert not os.path.islink(tmp_path / "root.token")


def test_a_legacy_key_file_still_signs(tmp_path):
    (tmp_path / "k").write_text("secret")
    keys = jwt_tokens.read_keyring(str(tmp_path / "k"))
    assert keys.signing.kid == "legacy"
    assert jwt_tokens.verify(keys, jwt_tokens.mint(keys, CLUSTER, 1, "a"), CLUSTER)["sub"] == "a"


def test_a_malformed_keyring_is_one_line(tmp_path):
    (tmp_path / "k").write_text("{not json")
    with pytest.raises(ValueError, match="malformed keyring"):
        plugin(str(tmp_path / "k"))
