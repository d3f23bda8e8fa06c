"""The cgroup v2 backend against a temporary directory laid out like cgroup2fs (no real enforcement)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
from crane_common.states import EC_CGROUP_ERR
from crane_kernel.errors import StepLaunchError
from crane_kernel.runtime import StepSpec

from crane_runtime_cgroup import CgroupError, CgroupRuntime, CgroupStepHandle, cleanup_stale
from crane_runtime_cgroup.v2 import CgroupV2Backend

REL = "crane/n1/job_5"


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A cgroup2-like root offering the usual controllers, none delegated yet."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (tmp_path / "cgroup.subtree_control").write_text("\n")
    (tmp_path / "cgroup.procs").write_text("")
    return tmp_path


def spec(**fields: object) -> StepSpec:
    """A StepSpec with the limits under test."""
    values: dict[str, object] = dict(job_id=5, step_id=0, node="n1", name="t", uid=0, gid=0, user="root", cwd="/",
                                     script_path="/bin/true", interpreter=[], env={}, stdout="", stderr="")
    values.update(fields)
    return StepSpec(**values)  # type: ignore[arg-type]


def text(path: Path) -> str:
    """File content, stripped."""
    return path.read_text().strip()


def test_create_writes_limits_in_v2_format(fake_root: Path) -> None:
    CgroupV2Backend(fake_root).create(REL, spec(cpus=1.5, cpu_ids=[0, 1, 2, 5], mem_bytes=50 << 20), pids_max=64)
    for level in (fake_root, fake_root / "crane", fake_root / "crane/n1"):
        assert text(level / "cgroup.subtree_control") == "+cpu +memory +pids +cpuset", level
    job = fake_root / REL
    assert text(job / "cpu.max") == "150000 100000"
    assert text(job / "memory.max") == str(50 << 20)
    assert text(job / "memory.swap.max") == "0"
    assert text(job / "pids.max") == "64"
    assert text(job / "cpuset.cpus") == "0-2,5"
    assert not (job / "cgroup.subtree_control").exists()      # the leaf delegates nothing


def test_existing_period_is_kept_and_unlimited_values(fake_root: Path) -> None:
    job = fake_root / REL
    job.mkdir(parents=True)
    (job / "cpu.max").write_text("max 50000\n")
    CgroupV2Backend(fake_root).create(REL, spec(cpus=2))
    assert text(job / "cpu.max") == "100000 50000"
    assert not (job / "memory.max").exists() and not (job / "pids.max").exists()
    CgroupV2Backend(fake_root).create(REL, spec(cpus=0))
    assert text(job / "cpu.max") == "max 50000"


def test_already_delegated_controllers_are_not_rewritten(fake_root: Path) -> None:
    (fake_root / "cgroup.subtree_control").write_text("cpu memory\n")
    CgroupV2Backend(fake_root).create(REL, spec())
    assert text(fake_root / "cgroup.subtree_control") == "+pids +cpuset"


def test_missing_controller_for_a_requested_limit_fails(fake_root: Path) -> None:
    (fake_root / "cgroup.controllers").write_text("cpu pids\n")
    with pytest.raises(CgroupError, match="memory"):
        CgroupV2Backend(fake_root).create(REL, spec(mem_bytes=1 << 20))
    CgroupV2Backend(fake_root).create(REL, spec(), pids_max=3)      # cpu and pids alone are fine
    assert text(fake_root / "cgroup.subtree_control") == "+cpu +pids"


def test_devices_are_skipped_with_a_warning(fake_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="crane_runtime_cgroup"):
        CgroupV2Backend(fake_root).create(REL, spec(devices_deny=["/dev/null"]))
    assert "eBPF" in caplog.text


def test_freeze_thaw_usage_pids_and_remove(fake_root: Path) -> None:
    backend = CgroupV2Backend(fake_root)
    backend.create(REL, spec())
    job = fake_root / REL
    backend.freeze(REL)
    assert text(job / "cgroup.freeze") == "1" and backend.is_frozen(REL)
    backend.thaw(REL)
    assert text(job / "cgroup.freeze") == "0" and not backend.is_frozen(REL)
    (job / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (job / "memory.peak").write_text("12345678\n")
    (job / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n")
    usage = backend.usage(REL)
    assert (usage.cpu_time_ms, usage.mem_peak_bytes, usage.oom_killed) == (2500, 12345678, True)
    (job / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    assert backend.usage(REL).oom_killed is False
    (job / "cgroup.procs").write_text("4000001\n4000002\n")
    assert backend.pids(REL) == [4000001, 4000002]
    assert backend.attach_files(REL) == [str(job / "cgroup.procs")]
    (job / "cgroup.procs").write_text("")
    backend.remove(REL)
    assert not job.exists() and (fake_root / "crane/n1").is_dir()
    backend.remove(REL)                                            # idempotent


def test_usage_of_a_removed_cgroup_is_zero(fake_root: Path) -> None:
    usage = CgroupV2Backend(fake_root).usage("crane/n1/job_404")
    assert (usage.cpu_time_ms, usage.mem_peak_bytes, usage.oom_killed) == (0, 0, False)


def test_full_plugin_cycle_on_a_stand_in_tree(fake_root: Path, tmp_path: Path) -> None:
    """Launch/wait/suspend/usage/cleanup through the plugin with Version v2 on the fake tree."""
    job = fake_root / "crane/n1/job_5"
    job.mkdir(parents=True)
    (job / "cgroup.procs").write_text("")       # a real cgroupfs provides it; the child opens it without O_CREAT
    script = tmp_path / "job.sh"
    script.write_text("echo v2 >\"$OUT\"\n")
    rt = CgroupRuntime()
    rt.crane_plugin_configure(settings={"Version": "v2", "Root": str(fake_root)})
    handle = rt.crane_step_launch(step=spec(script_path=str(script), interpreter=["/bin/sh"], cpus=0.5,
                                            env={"OUT": str(tmp_path / "out")}, mem_bytes=1 << 30))
    assert isinstance(handle, CgroupStepHandle) and handle.version == "v2" and handle.cgroup == "crane/n1/job_5"
    # a plain directory cannot move processes: it records that the spawner joined the job cgroup
    # for the fork (the task inherits it) and went back to its own cgroup afterwards
    assert text(job / "cgroup.procs") == str(os.getpid())
    assert text(job / "cpu.max") == "50000 100000"
    assert rt.crane_step_wait(handle=handle, timeout=10) == 0
    assert text(tmp_path / "out") == "v2"
    (job / "cgroup.procs").write_text("")       # the stand-in cannot forget exited pids by itself
    assert rt.crane_step_suspend(handle=handle) is True and text(job / "cgroup.freeze") == "1"
    assert rt.crane_step_resume(handle=handle) is True and text(job / "cgroup.freeze") == "0"
    assert rt.crane_step_usage(handle=handle).oom_killed is False
    assert rt.crane_step_cleanup(handle=handle) is True
    assert not job.exists()
    assert rt.crane_step_cleanup(handle=handle) is True


def test_attach_failure_is_a_cgroup_error(fake_root: Path, tmp_path: Path) -> None:
    """Without cgroup.procs in the job directory the child cannot join: EC_CGROUP_ERR, nothing left behind."""
    rt = CgroupRuntime()
    rt.crane_plugin_configure(settings={"Version": "v2", "Root": str(fake_root)})
    with pytest.raises(StepLaunchError) as info:
        rt.crane_step_launch(step=spec(script_path="/bin/true"))
    assert info.value.exit_code == EC_CGROUP_ERR
    assert "cannot join the job cgroup" in str(info.value)
    assert not (fake_root / REL).exists()


def test_cleanup_stale_on_v2_tree(fake_root: Path) -> None:
    backend = CgroupV2Backend(fake_root)
    backend.create("crane/n1/job_1", spec())
    backend.create("crane/n1/job_2", spec())
    (fake_root / "crane/n1/job_2/cgroup.procs").write_text(f"{os.getpid()}\n")
    (fake_root / "crane/n1/other").mkdir()
    assert cleanup_stale("crane", "n1", root=fake_root, version="v2") == ["job_1"]
    assert (fake_root / "crane/n1/job_2").is_dir() and (fake_root / "crane/n1/other").is_dir()


def test_sigkill_uses_cgroup_kill_when_present(fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = CgroupV2Backend(fake_root)
    backend.create(REL, spec())
    job = fake_root / REL
    (job / "cgroup.kill").write_text("0")
    (job / "cgroup.procs").write_text("4000001\n")
    sent: list[tuple[int, int]] = []

    def fake_kill(pid: int, signum: int) -> None:
        sent.append((pid, signum))
        raise ProcessLookupError

    monkeypatch.setattr(os, "kill", fake_kill)
    backend.signal_all(REL, signal.SIGKILL)
    assert text(job / "cgroup.kill") == "1"
    assert sent == [(4000001, signal.SIGKILL)]
