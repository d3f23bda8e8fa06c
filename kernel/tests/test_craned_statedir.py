"""The node state directories and the checks on what craned reads back from them (issue 11, node-side trust)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from crane_kernel.craned import statedir
from crane_kernel.craned.jobfiles import (
    SUP_FILE,
    is_supervisor,
    proc_start_time,
    read_state,
    signal_supervisor,
    supervisor_alive,
    write_json,
    write_script,
)
from crane_kernel.errors import CraneError

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (other users' files and processes)")


@pytest.fixture
def session_leader() -> Iterator[subprocess.Popen]:
    """A live process of this uid that leads its own session, as a supervisor does."""
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _info(pid: int, **extra: int) -> dict:
    return {"pid": pid, "start": proc_start_time(pid), **extra}


def test_prepare_makes_root_only_jobs_and_searchable_scripts(tmp_path):
    base = tmp_path / "base"
    jobs, scripts = statedir.prepare(str(base), "cn01")
    assert jobs == os.path.realpath(base / "craned" / "cn01" / "jobs")
    assert (os.stat(jobs).st_mode & 0o7777, os.stat(scripts).st_mode & 0o7777) == (0o700, 0o711)
    os.chmod(jobs, 0o755)  # a wrong mode is put right at the next start
    assert statedir.prepare(str(base), "cn01") == (jobs, scripts)
    assert os.stat(jobs).st_mode & 0o7777 == 0o700


def test_prepare_refuses_a_path_others_can_change(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(CraneError, match=r"not safe: .*/open is writable by other users \(mode 0777\)"):
        statedir.prepare(str(open_dir / "base"), "cn01")
    os.chmod(open_dir, 0o1777)  # sticky, like /tmp: others cannot rename root's entries in it
    statedir.prepare(str(open_dir / "base"), "cn01")
    link = tmp_path / "link"
    link.symlink_to(open_dir / "base")  # a symlink is resolved: the real path is checked and used
    assert statedir.prepare(str(link), "cn01")[0].startswith(str(open_dir / "base"))


@root_only
def test_prepare_refuses_a_component_owned_by_a_user(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(CraneError, match=f"theirs is owned by uid {NOBODY}"):
        statedir.prepare(str(theirs / "base"), "cn01")


@root_only
def test_read_state_believes_only_root_written_regular_files(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"pid": 5}')
    assert read_state(str(good)) == {"pid": 5}
    link = tmp_path / "link.json"
    link.symlink_to(good)
    assert read_state(str(link)) is None  # not followed
    theirs = tmp_path / "theirs.json"
    theirs.write_text('{"pid": 6}')
    os.chown(theirs, NOBODY, NOBODY)
    assert read_state(str(theirs)) is None
    open_file = tmp_path / "open.json"
    open_file.write_text('{"pid": 7}')
    os.chmod(open_file, 0o666)
    assert read_state(str(open_file)) is None
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert read_state(str(fifo)) is None  # and it does not block


@root_only
def test_only_a_live_root_session_leader_with_its_start_time_is_a_supervisor(session_leader):
    assert is_supervisor(_info(session_leader.pid))
    assert not is_supervisor({**_info(session_leader.pid), "start": 1})      # a reused pid
    assert not is_supervisor(_info(os.getpid()))                             # not a session leader
    assert not is_supervisor({"pid": 1, "start": proc_start_time(1)})        # never init
    assert not is_supervisor({"pid": "x"}) and not is_supervisor({})
    theirs = subprocess.Popen(["sleep", "120"], start_new_session=True, user=NOBODY, group=NOBODY)
    try:
        time.sleep(0.1)  # let it exec (its real uid is set in the child)
        assert not is_supervisor(_info(theirs.pid))                          # a user's process
    finally:
        theirs.kill()
        theirs.wait()


@root_only
def test_signal_supervisor_signals_only_a_verified_supervisor_of_the_epoch(tmp_path, session_leader):
    other = subprocess.Popen(["sleep", "120"])  # a process that is no supervisor (same session as pytest)
    try:
        write_json(str(tmp_path / SUP_FILE), _info(other.pid, epoch=2))
        assert not supervisor_alive(str(tmp_path))
        assert not signal_supervisor(str(tmp_path), signal.SIGTERM, 2)
        assert other.poll() is None
        write_json(str(tmp_path / SUP_FILE), _info(session_leader.pid, epoch=2))
        assert supervisor_alive(str(tmp_path))
        assert not signal_supervisor(str(tmp_path), signal.SIGTERM, 3)  # another epoch's
        assert session_leader.poll() is None
        assert signal_supervisor(str(tmp_path), signal.SIGTERM, 2)
        assert session_leader.wait(5) == -signal.SIGTERM
    finally:
        other.kill()
        other.wait()


def test_write_json_never_writes_through_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    path = tmp_path / "result.json"
    (tmp_path / f"result.json.tmp{os.getpid()}").symlink_to(victim)
    path.symlink_to(victim)
    write_json(str(path), {"a": 1})
    assert victim.read_text() == "keep\n"
    assert not path.is_symlink() and json.loads(path.read_text()) == {"a": 1}
    assert path.stat().st_mode & 0o777 == 0o600


@root_only
def test_write_script_gives_a_fresh_file_to_the_user(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    path = tmp_path / "42"
    path.symlink_to(victim)  # whatever was there is removed, never followed
    write_script(str(path), "echo hi\n", NOBODY, NOBODY)
    st = os.lstat(path)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (NOBODY, NOBODY, 0o500)
    assert path.read_text() == "echo hi\n" and victim.read_text() == "keep\n"


def test_job_dir_trusted(tmp_path):
    d = tmp_path / "7"
    d.mkdir(mode=0o700)
    assert statedir.job_dir_trusted(str(d))
    os.chmod(d, 0o777)
    assert not statedir.job_dir_trusted(str(d))
    (tmp_path / "8").symlink_to(d)
    assert not statedir.job_dir_trusted(str(tmp_path / "8"))
