"""Registration (entry point, stevedore, the runtime slot), settings, and refusal when cgroups are not writable."""

from __future__ import annotations

import json
import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from crane_common.states import EC_CGROUP_ERR
from crane_kernel import plugins
from crane_kernel.errors import PluginError, StepLaunchError
from crane_kernel.runtime import StepHandle, StepSpec
from rtcg_support import CGROUP_ROOT, PREFIX
from stevedore import driver

from crane_runtime_cgroup import CgroupRuntime


def spec(**fields: object) -> StepSpec:
    """A minimal StepSpec."""
    values: dict[str, object] = dict(job_id=1, step_id=0, node="n1", name="t", uid=0, gid=0, user="root", cwd="/",
                                     script_path="/bin/true", interpreter=[], env={}, stdout="", stderr="")
    values.update(fields)
    return StepSpec(**values)  # type: ignore[arg-type]


def test_entry_point_is_registered() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="crane.runtime")}
    assert eps.get("cgroup") == "crane_runtime_cgroup.plugin:CgroupRuntime"


def test_stevedore_loads_it_without_arguments() -> None:
    manager = driver.DriverManager("crane.runtime", "cgroup", invoke_on_load=True)
    assert isinstance(manager.driver, CgroupRuntime)


def test_it_fits_the_runtime_slot_and_sees_only_its_own_handles() -> None:
    """Loaded like craned loads it; the kernel routes a handle of another runtime away from it."""
    loaded = plugins.load_slots({"Runtime": ["cgroup"], "Settings": {"cgroup": {"Root": "/nonexistent"}}})
    assert loaded.names("runtime") == ["cgroup"]
    rt = loaded.plugins("runtime")[0]
    assert isinstance(rt, CgroupRuntime) and rt.config.root == "/nonexistent"
    foreign = StepHandle(runtime="other", pid=1, spec=spec())
    assert loaded.steps is not None
    with pytest.raises(PluginError, match="belongs to runtime 'other', which is not loaded"):
        loaded.steps.crane_step_wait(handle=foreign, timeout=0)


def test_settings_are_validated_by_the_plugin() -> None:
    with pytest.raises(PluginError, match=r"runtime plugin 'cgroup' rejected its settings: .*PidsMax"):
        plugins.load_slots({"Runtime": ["cgroup"], "Settings": {"cgroup": {"PidsMax": -1}}})
    with pytest.raises(PluginError, match="unknown key"):
        plugins.load_slots({"Runtime": ["cgroup"], "Settings": {"cgroup": {"Prefx": "x"}}})
    rt = CgroupRuntime()
    rt.crane_plugin_configure(settings={"prefix": "/site/crane/", "PIDSMAX": 64})
    assert (rt.config.prefix, rt.config.pids_max, rt.config.version) == ("site/crane", 64, "auto")


def test_container_steps_are_not_claimed() -> None:
    assert CgroupRuntime().crane_step_launch(step=spec(container={"image": "docker.io/library/alpine"})) is None


def test_no_cgroup_hierarchy_is_a_cgroup_error(tmp_path: Path) -> None:
    rt = CgroupRuntime()
    rt.crane_plugin_configure(settings={"Root": str(tmp_path)})
    with pytest.raises(StepLaunchError) as info:
        rt.crane_step_launch(step=spec())
    assert info.value.exit_code == EC_CGROUP_ERR
    assert "no usable cgroup hierarchy" in str(info.value)


def test_unwritable_cgroups_fail_with_a_clear_cgroup_error(test_user) -> None:
    """A process that may not write cgroups (here: an unprivileged user) gets EC_CGROUP_ERR, not a traceback."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(test_user.pw_gid)
            os.setuid(test_user.pw_uid)
            rt = CgroupRuntime()
            rt.crane_plugin_configure(settings={"Version": "auto", "Root": CGROUP_ROOT, "Prefix": f"{PREFIX}_unpriv"})
            try:
                rt.crane_step_launch(step=spec(uid=test_user.pw_uid, gid=test_user.pw_gid, user=test_user.pw_name))
                result = {"code": None, "message": "launched"}
            except StepLaunchError as exc:
                result = {"code": exc.exit_code, "message": str(exc)}
            os.write(write_fd, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert result["code"] == EC_CGROUP_ERR, result
    assert "not writable" in result["message"] or "no usable cgroup" in result["message"], result
