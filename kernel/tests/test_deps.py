"""Job dependencies (ctld/deps.py): parsing, the states of each kind, and the controller's gate (ctlrig.Rig)."""

from __future__ import annotations

from typing import Any

import pytest
from crane_common.states import JobState
from crane_kernel import messages as m
from crane_kernel.ctld.deps import NEVER, OK, WAIT, condition_state, parse_dependency
from crane_kernel.errors import JobRejected
from ctlrig import Rig


@pytest.fixture()
def rig(tmp_path: Any) -> Rig:
    r = Rig(str(tmp_path / "state.db"))
    r.all_up()
    return r


def test_parsing_all_and_any() -> None:
    dep = parse_dependency("afterok:1:2,afterany:3")
    assert dep.conditions == (("afterok", 1, 0), ("afterok", 2, 0), ("afterany", 3, 0)) and not dep.any_of
    assert parse_dependency("afterok:1?afternotok:2").any_of
    assert parse_dependency("afterok:1+5,singleton,aftercorr:7,after:8_3").conditions == (
        ("afterok", 1, 300), ("singleton", 0, 0), ("aftercorr", 7, 0), ("after", (8, 3), 0))
    assert parse_dependency("afterok:1+5,singleton,after:8_3").text() == "afterok:1+5,singleton,after:8_3"


@pytest.mark.parametrize("text", ["", "afterok", "afterok:x", "before:1", "afterok:1,afterany:2?after:3",
                                  "singleton:3", "afterok:1+x", "afterok:1+99999999", "aftercorr:4_2", "afterok:_2",
                                  "afterok:3_x"])
def test_a_dependency_it_cannot_honour_is_refused(text: str) -> None:
    with pytest.raises(JobRejected):
        parse_dependency(text)


@pytest.mark.parametrize("kind, state, started, want", [
    ("after", JobState.Pending, False, WAIT), ("after", JobState.Running, True, OK),
    ("afterany", JobState.Running, True, WAIT), ("afterany", JobState.Failed, True, OK),
    ("afterok", JobState.Completed, True, OK), ("afterok", JobState.Failed, True, NEVER),
    ("afterok", JobState.Cancelled, False, NEVER), ("afternotok", JobState.Completed, True, NEVER),
    ("afternotok", JobState.Failed, True, OK), ("afternotok", JobState.Running, True, WAIT),
])
def test_each_kind(kind: str, state: JobState, started: bool, want: str) -> None:
    assert condition_state(kind, state, started) == want


def finish(rig: Rig, job: Any, code: int) -> None:
    rig.feed(m.StepStatus(node=job.head_node, job_id=job.job_id, state="finished", exit_code=code, epoch=job.epoch))


def test_an_afterok_chain_runs_in_order_and_a_failed_parent_dooms_its_child(rig: Rig) -> None:
    first = rig.start(partition="debug")
    second = rig.ctl.jobs[rig.submit(partition="debug", dependency=f"afterok:{first.job_id}")]
    third = rig.ctl.jobs[rig.submit(partition="debug", dependency=f"afterok:{second.job_id}")]
    rig.cycle()
    assert second.state == third.state == JobState.Pending and second.reason == third.reason == "Dependency"
    finish(rig, first, 0)
    rig.cycle()
    assert second.state == JobState.Configuring and third.state == JobState.Pending
    rig.feed(m.StepStatus(node=second.head_node, job_id=second.job_id, state="running", epoch=second.epoch))
    finish(rig, second, 1)                  # the middle one fails: the last can never start
    rig.cycle()
    rig.cycle()
    assert third.state == JobState.Cancelled and third.reason == "DependencyNeverSatisfied"


def test_any_of_and_an_unknown_parent(rig: Rig) -> None:
    a = rig.start(partition="debug")
    b = rig.start(partition="debug")
    child = rig.ctl.jobs[rig.submit(partition="debug", dependency=f"afterok:{a.job_id}?afterok:{b.job_id}")]
    finish(rig, a, 3)                       # one failed: the other may still satisfy it
    rig.cycle()
    assert child.state == JobState.Pending and child.reason == "Dependency"
    finish(rig, b, 0)
    rig.cycle()
    assert child.state == JobState.Configuring
    with pytest.raises(JobRejected, match="does not exist"):
        rig.submit(partition="debug", dependency="afterok:999")


def test_dependencies_survive_a_controller_restart(tmp_path: Any) -> None:
    path = str(tmp_path / "state.db")
    rig = Rig(path)
    rig.all_up()
    parent = rig.start(partition="debug")
    child_id = rig.submit(partition="debug", dependency=f"afterany:{parent.job_id}")
    rig.store.close()
    again = Rig(path, clock=rig.clock)
    for n in ("cn01", "cn02", "cn03"):  # the parent still runs on its node: the registration says so
        again.feed(m.NodeRegister(node=n, cpus=2, mem=1 << 30, steps=[(parent.job_id, 0, parent.epoch)]
                                  if n == parent.head_node else []))
    again.cycle()
    assert again.ctl.jobs[child_id].state == JobState.Pending and again.ctl.jobs[child_id].reason == "Dependency"
    job = again.ctl.jobs[parent.job_id]
    again.feed(m.StepStatus(node=job.head_node, job_id=job.job_id, state="finished", exit_code=9, epoch=job.epoch))
    again.cycle()
    assert again.ctl.jobs[child_id].state == JobState.Configuring
