"""Token files are written without following planted symlinks, and as their user when root writes them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest
from crane_auth_rbac.cli import write_token

from crane_cli import tokenfile
from crane_cli.errors import CliError

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def nobody_home() -> Iterator[str]:
    """A directory owned by uid 65534, reachable by it (under /tmp)."""
    home = tempfile.mkdtemp()
    os.chown(home, NOBODY, NOBODY)
    try:
        yield home
    finally:
        import shutil

        shutil.rmtree(home, ignore_errors=True)


def test_write_private_replaces_a_symlink_instead_of_following_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    path = tmp_path / "token"
    path.symlink_to(victim)
    tokenfile.write_private(str(path), b"tok\n")
    assert victim.read_text() == "keep\n"
    assert not path.is_symlink() and path.read_text() == "tok\n" and path.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["token", "victim"]  # no temporary file left


def test_write_private_makes_missing_parents_private(tmp_path):
    tokenfile.write_private(str(tmp_path / "a" / "b" / "token"), b"x")
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700


@root_only
def test_root_writes_another_users_token_as_that_user(nobody_home, tmp_path):
    victim = tmp_path / "victim"  # root's, in a directory nobody cannot even reach
    victim.write_text("keep\n")
    path = os.path.join(nobody_home, "token")
    os.symlink(victim, path)
    write_token(path, "tok", owner_uid=NOBODY)
    st = os.lstat(path)
    assert (st.st_uid, st.st_mode & 0o777) == (NOBODY, 0o600) and open(path).read() == "tok\n"
    assert victim.read_text() == "keep\n"


@root_only
def test_a_directory_swapped_for_a_link_to_roots_gets_only_her_permissions(nobody_home, tmp_path):
    os.symlink(tmp_path, os.path.join(nobody_home, "d"))  # tmp_path: root's, 0700
    with pytest.raises(CliError, match=r"cannot write token to .*/d/token: Permission denied"):
        write_token(os.path.join(nobody_home, "d", "token"), "tok", owner_uid=NOBODY)
    assert os.listdir(tmp_path) == []
