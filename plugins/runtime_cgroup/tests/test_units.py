"""Pure units: configuration, paths, cpu lists, detection from mountinfo, exit codes, the v1 layout logic."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
from crane_common.states import EC_CGROUP_ERR, EC_FILE_NOT_FOUND, EC_PERMISSION_DENIED, EC_SPAWN_FAILED
from crane_kernel.errors import ConfigError
from crane_kernel.runtime import StepSpec

from crane_runtime_cgroup.config import RuntimeConfig, parse_config
from crane_runtime_cgroup.detect import detect_version, read_mounts
from crane_runtime_cgroup.errors import CgroupError
from crane_runtime_cgroup.paths import format_cpu_list, job_cgroup_path
from crane_runtime_cgroup.process import raw_exit_code
from crane_runtime_cgroup.spawn import ChildFailure
from crane_runtime_cgroup.v1 import CgroupV1Backend


def test_parse_config_defaults_and_values() -> None:
    assert parse_config({}) == RuntimeConfig("auto", "/sys/fs/cgroup", "crane", 4096) == RuntimeConfig()
    assert parse_config({"PidsMax": 0}).pids_max == 0                # explicitly no limit
    assert parse_config({"Prefix": None, "PidsMax": None}) == RuntimeConfig()
    cfg = parse_config({"Version": "V2", "Root": "/tmp/cg", "Prefix": "/crane_x/", "PidsMax": 12})
    assert cfg == RuntimeConfig("v2", "/tmp/cg", "crane_x", 12)
    assert parse_config({"pidsmax": "64"}).pids_max == 64


@pytest.mark.parametrize("bad", [{"Version": "v3"}, {"Root": "relative"}, {"Prefix": "a/../b"}, {"Colour": 1},
                                 {"PidsMax": -1}, {"PidsMax": 1.5}, {"PidsMax": True}, {"PidsMax": "many"}])
def test_parse_config_rejects(bad: dict) -> None:
    with pytest.raises(ConfigError, match="runtime cgroup"):
        parse_config(bad)


def test_paths_and_cpu_lists() -> None:
    assert job_cgroup_path("crane", "cn01", 42) == "crane/cn01/job_42"
    for prefix, node in (("crane", "../x"), ("crane", "a/b"), ("", "n"), ("a/../b", "n")):
        with pytest.raises(CgroupError):
            job_cgroup_path(prefix, node, 1)
    assert format_cpu_list([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert format_cpu_list([3]) == "3"
    assert format_cpu_list([]) == ""


def _mountinfo(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_detect_version_from_mountinfo(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "memory").mkdir(parents=True)
    v1 = _mountinfo(tmp_path, [
        f"30 25 0:26 / {root} rw - tmpfs tmpfs rw",
        f"35 30 0:31 / {root}/memory rw,relatime shared:9 - cgroup cgroup rw,memory",
    ])
    assert detect_version(root, v1) == "v1"
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    v2 = _mountinfo(tmp_path, [f"30 25 0:26 / {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"])
    assert detect_version(root, v2) == "v2"
    (root / "cgroup.controllers").write_text("\n")
    with pytest.raises(CgroupError, match="no controllers"):
        detect_version(root, v2)
    with pytest.raises(CgroupError, match="no usable cgroup hierarchy"):
        detect_version(root, _mountinfo(tmp_path, ["1 0 8:1 / / rw - ext4 /dev/sda1 rw"]))


def test_read_mounts_unescapes_spaces(tmp_path: Path) -> None:
    mounts = read_mounts(_mountinfo(tmp_path, [r"36 30 0:32 / /a\040b rw - cgroup cgroup rw,cpu,cpuacct"]))
    assert mounts["/a b"].options == frozenset({"rw", "cpu", "cpuacct"})


def test_this_machine_is_detected() -> None:
    """Informative: the real root must be detected as something or fail with a clear reason."""
    try:
        assert detect_version("/sys/fs/cgroup") in ("v1", "v2")
    except CgroupError as exc:
        assert "cgroup" in str(exc)


@pytest.mark.parametrize(("stage", "err", "code"), [
    ("cgroup", errno.ENOENT, EC_CGROUP_ERR),
    ("user", errno.EPERM, EC_PERMISSION_DENIED),
    ("cwd", errno.ENOENT, EC_FILE_NOT_FOUND),
    ("cwd", errno.ENOTDIR, EC_FILE_NOT_FOUND),
    ("cwd", errno.EACCES, EC_PERMISSION_DENIED),
    ("stdio", errno.EACCES, EC_PERMISSION_DENIED),
    ("stdio", errno.ENOENT, EC_FILE_NOT_FOUND),
    ("stdio", errno.EISDIR, EC_SPAWN_FAILED),
    ("exec", errno.ENOENT, EC_SPAWN_FAILED),
    ("exec", errno.EACCES, EC_PERMISSION_DENIED),
    ("exec", errno.ENOEXEC, EC_SPAWN_FAILED),
    ("session", errno.EPERM, EC_SPAWN_FAILED),
])
def test_child_failure_codes(stage: str, err: int, code: int) -> None:
    assert ChildFailure(stage, err, "/x").exit_code() == code


def test_child_failure_messages() -> None:
    step = StepSpec(job_id=1, step_id=0, node="n", name="j", uid=1000, gid=1000, user="alice", cwd="/w",
                    script_path="/s", interpreter=[], env={}, stdout="", stderr="")
    assert ChildFailure("cwd", errno.ENOENT, "").message(step) == \
        "cannot change to working directory /w: No such file or directory"
    assert ChildFailure("stdio", errno.EACCES, "/o").message(step) == "cannot open /o: Permission denied"
    assert ChildFailure("user", errno.EPERM, "").message(step).startswith("cannot switch to user alice")


def test_raw_exit_codes() -> None:
    assert raw_exit_code(3 << 8) == 3
    assert raw_exit_code(signal.SIGKILL) == 256 + signal.SIGKILL
    assert raw_exit_code(0) == 0


def test_v1_layout_with_comounted_cpu_cpuacct(tmp_path: Path) -> None:
    """cpu and cpuacct as symlinks to one cpu,cpuacct hierarchy are handled once; cpuset parents initialised."""
    (tmp_path / "cpu,cpuacct").mkdir()
    os.symlink("cpu,cpuacct", tmp_path / "cpu")
    os.symlink("cpu,cpuacct", tmp_path / "cpuacct")
    for controller in ("cpuset", "memory", "pids", "freezer", "devices"):
        (tmp_path / controller).mkdir()
    (tmp_path / "cpuset/cpuset.cpus").write_text("0-3\n")
    (tmp_path / "cpuset/cpuset.mems").write_text("0\n")
    backend = CgroupV1Backend(tmp_path)
    rel = "crane/n1/job_9"
    step = StepSpec(job_id=9, step_id=0, node="n1", name="j", uid=0, gid=0, user="root", cwd="/", script_path="/s",
                    interpreter=[], env={}, stdout="", stderr="", cpus=0.5, cpu_ids=[2, 3], mem_bytes=1 << 26,
                    devices_deny=["/dev/null"])
    backend.create(rel, step, pids_max=7)
    assert len(backend.dirs(rel)) == 6
    assert (tmp_path / "cpu,cpuacct" / rel / "cpu.cfs_quota_us").read_text() == "50000"
    assert (tmp_path / "cpuset/crane/cpuset.cpus").read_text() == "0-3"
    assert (tmp_path / "cpuset/crane/n1/cpuset.mems").read_text() == "0"
    assert (tmp_path / "cpuset" / rel / "cpuset.cpus").read_text() == "2-3"
    assert (tmp_path / "cpuset" / rel / "cpuset.mems").read_text() == "0"
    assert (tmp_path / "memory" / rel / "memory.limit_in_bytes").read_text() == str(1 << 26)
    assert not (tmp_path / "memory" / rel / "memory.memsw.limit_in_bytes").exists()  # absent: not created
    assert (tmp_path / "pids" / rel / "pids.max").read_text() == "7"
    rdev = os.stat("/dev/null").st_rdev
    assert (tmp_path / "devices" / rel / "devices.deny").read_text() == f"c {os.major(rdev)}:{os.minor(rdev)} rwm"
    (tmp_path / "memory" / rel / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (tmp_path / "cpu,cpuacct" / rel / "cpuacct.usage").write_text("1500000000\n")
    (tmp_path / "memory" / rel / "memory.max_usage_in_bytes").write_text("999\n")
    usage = backend.usage(rel)
    assert (usage.cpu_time_ms, usage.mem_peak_bytes, usage.oom_killed) == (1500, 999, True)
    backend.remove(rel)
    assert not any(d.exists() for d in backend.dirs(rel))


def test_v1_missing_controller_for_a_limit(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    step = StepSpec(job_id=9, step_id=0, node="n1", name="j", uid=0, gid=0, user="root", cwd="/", script_path="/s",
                    interpreter=[], env={}, stdout="", stderr="", mem_bytes=1 << 20)
    with pytest.raises(CgroupError, match="memory"):
        CgroupV1Backend(tmp_path).create("crane/n1/job_9", step)
