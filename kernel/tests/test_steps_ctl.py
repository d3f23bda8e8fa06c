"""The controller's side of job steps: interactive jobs, steps in allocations, their ends, cancels and losses.

A real :class:`Controller` (ctlrig.Rig) is driven with the statuses and heartbeats nodes would send;
the nodes' side (supervisors, tasks, I/O) is tested in test_task_steps_node.py and end to end in
tests/test_interactive.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from crane_common.states import EC_CRANED_DOWN, JobState
from crane_kernel import messages as m
from crane_kernel.auth_types import Identity
from crane_kernel.ctld.steps import ERR_PERMISSION_DENIED, ERR_STEP_RES_BEYOND, StepRefused, place_step
from ctlrig import ROOT, TIMEOUT, Rig

NOBODY = Identity(65534, "nobody")


@pytest.fixture()
def rig(tmp_path: Any) -> Rig:
    r = Rig(str(tmp_path / "state.db"), InteractiveTimeout=30.0)
    r.all_up()
    return r


def crun_job(rig: Rig, argv: list[str], **spec: Any) -> Any:
    spec.setdefault("partition", "debug")
    jid = rig.ctl.submit_interactive(spec, {"argv": argv}, ROOT)
    rig.cycle()
    return rig.ctl.jobs[jid]


def calloc_job(rig: Rig, **spec: Any) -> Any:
    spec.setdefault("partition", "debug")
    jid = rig.ctl.submit_interactive(spec, {"allocate_only": True}, ROOT)
    rig.cycle()
    return rig.ctl.jobs[jid]


def status(rig: Rig, node: str, job: Any, step: int, state: str, code: int = 0, reason: str = "") -> None:
    rig.feed(m.StepStatus(node=node, job_id=job.job_id, step_id=step, state=state, exit_code=code, reason=reason,
                          epoch=job.epoch))


def step_of(rig: Rig, job: Any, step: int) -> Any:
    return rig.ctl.steps[job.job_id][step]


# --- placement -----------------------------------------------------------------------------------


def test_a_step_takes_all_nodes_of_the_allocation_by_default() -> None:
    tasks, cpt, mem = place_step({}, ["a", "b", "c"], 2.0, 1 << 30, 1.0, 3, 1000)
    assert tasks == {"a": [0], "b": [1], "c": [2]} and cpt == 1.0 and mem == 1 << 30


def test_a_step_spreads_tasks_in_blocks_and_honours_node_choices() -> None:
    assert place_step({"ntasks": 3}, ["a", "b"], 2.0, 1 << 30, 1.0, 2, 1000)[0] == {"a": [0, 1], "b": [2]}
    assert place_step({"node_num": 1, "nodelist": ["b"]}, ["a", "b"], 2.0, 1 << 30, 1.0, 2, 1000)[0] == {"b": [0]}
    # without -N, the job's task count (2) on what is left
    assert place_step({"exclude": ["a"]}, ["a", "b"], 2.0, 1 << 30, 1.0, 2, 1000)[0] == {"b": [0, 1]}


@pytest.mark.parametrize("request_, code", [
    ({"node_num": 4}, ERR_STEP_RES_BEYOND),
    ({"ntasks_per_node": 3}, ERR_STEP_RES_BEYOND),
    ({"mem_per_node": 2 << 30}, ERR_STEP_RES_BEYOND),
    ({"nodelist": ["zz"]}, 44),
])
def test_a_step_larger_than_the_allocation_is_refused(request_: dict, code: int) -> None:
    with pytest.raises(StepRefused) as err:
        place_step(request_, ["a", "b", "c"], 2.0, 1 << 30, 1.0, 3, 1000)
    assert err.value.code == code


# --- crun's own job ----------------------------------------------------------------------------------


def test_a_crun_job_runs_its_command_as_step_0_on_every_node_and_ends_with_it(rig: Rig) -> None:
    job = crun_job(rig, ["hostname"], node_num=2)
    assert job.state == JobState.Running and job.interactive == "crun" and job.name == "hostname"
    starts = {n: rig.to(n, m.StartStep) for n in job.alloc_nodes}
    assert all(len(s) == 1 for s in starts.values())
    assert sorted(s[0].spec.task_ids[0] for s in starts.values()) == [0, 1]
    first = starts[job.alloc_nodes[0]][0]
    assert first.step_id == 0 and first.spec.argv == ["hostname"] and first.spec.ntasks == 2
    assert first.spec.env["CRANE_JOB_ID"] == str(job.job_id) and first.spec.env["CRANE_STEP_ID"] == "0"
    assert rig.to(job.alloc_nodes[0], m.LaunchStep) == []      # nothing is launched for the job itself
    for n in job.alloc_nodes:
        status(rig, n, job, 0, "running")
    assert step_of(rig, job, 0).state == JobState.Running
    status(rig, job.alloc_nodes[0], job, 0, "finished", 0)
    assert job.state == JobState.Running                        # one node's part is still running
    status(rig, job.alloc_nodes[1], job, 0, "finished", 3)
    assert job.state == JobState.Failed and job.exit_code == 3
    assert step_of(rig, job, 0).state == JobState.Failed
    assert rig.cpus_free(job.alloc_nodes[0]) == 2


def test_a_silent_crun_client_ends_its_job(rig: Rig) -> None:
    job = crun_job(rig, ["sleep", "100"])
    node = job.alloc_nodes[0]
    status(rig, node, job, 0, "running")
    rig.clock.t += 31
    for n in ("cn01", "cn02", "cn03"):  # the node still runs the step: its heartbeat says so
        rig.feed(m.NodeHeartbeat(node=n, task_steps=[(job.job_id, 0, job.epoch)] if n == node else []))
    rig.cycle()
    assert [t.step_id for t in rig.to(node, m.TerminateStep)] == [0]
    status(rig, node, job, 0, "finished", 320, "cancelled")
    assert job.state == JobState.Cancelled and "stopped responding" in job.reason


def test_a_crun_job_whose_node_dies_fails_with_exit_code_326(rig: Rig) -> None:
    job = crun_job(rig, ["sleep", "100"])
    status(rig, job.alloc_nodes[0], job, 0, "running")
    others = [n for n in ("cn01", "cn02", "cn03") if n not in job.alloc_nodes]
    rig.clock.t += TIMEOUT + 1
    for n in others:
        rig.beat(n)
    for key in list(rig.ctl.client_seen):
        rig.ctl.client_seen[key] = rig.clock.t  # its client is fine
    rig.cycle()
    assert job.state == JobState.Failed and job.exit_code == EC_CRANED_DOWN
    assert "down" in step_of(rig, job, 0).reason


# --- calloc and steps in an allocation -------------------------------------------------------------


def test_calloc_runs_no_process_and_its_steps_share_the_allocation(rig: Rig) -> None:
    job = calloc_job(rig, node_num=1, cpus_per_task=2)
    node = job.alloc_nodes[0]
    assert job.state == JobState.Running and rig.to(node, m.StartStep) == []
    assert step_of(rig, job, 0).state == JobState.Running and step_of(rig, job, 0).name == "interactive"
    one = rig.ctl.create_step({"job_id": job.job_id, "argv": ["sleep", "9"]}, ROOT)
    two = rig.ctl.create_step({"job_id": job.job_id, "argv": ["true"]}, ROOT)
    assert (one.step_id, one.state) == (1, JobState.Configuring)
    assert (two.step_id, two.state, two.reason) == (2, JobState.Pending, "Resources")  # the CPUs are step 1's
    status(rig, node, job, 1, "running")
    status(rig, node, job, 1, "finished", 0)
    assert one.state == JobState.Completed and two.state == JobState.Configuring
    assert [s.step_id for s in rig.to(node, m.StartStep)] == [1, 2]
    rig.ctl.client_request_end(job.job_id, 0, "complete", 0)
    assert job.state == JobState.Running                       # step 2 still runs on the node
    assert [t.step_id for t in rig.to(node, m.TerminateStep)] == [2]
    status(rig, node, job, 2, "finished", 320)
    assert job.state == JobState.Completed and two.state == JobState.Cancelled


def test_a_step_in_someone_elses_allocation_is_refused(rig: Rig) -> None:
    job = calloc_job(rig)
    with pytest.raises(StepRefused) as err:
        rig.ctl.create_step({"job_id": job.job_id, "argv": ["id"]}, NOBODY)
    assert err.value.code == ERR_PERMISSION_DENIED and "not yours" in str(err.value)
    with pytest.raises(StepRefused):
        rig.ctl.create_step({"job_id": 999, "argv": ["id"]}, ROOT)


def test_a_step_can_run_inside_a_batch_job_and_ccancel_ends_only_it(rig: Rig) -> None:
    job = rig.start(partition="debug", node_num=3)
    step = rig.ctl.create_step({"job_id": job.job_id, "argv": ["hostname"]}, ROOT)
    assert step.nodes == list(job.alloc_nodes) and step.ntasks == 3
    done, failed = rig.ctl.cancel_steps([(job.job_id, step.step_id), (job.job_id, 77)], ROOT)
    assert done == [(job.job_id, step.step_id)] and failed[0][0] == (job.job_id, 77)
    for n in job.alloc_nodes:
        assert [t.step_id for t in rig.to(n, m.TerminateStep)] == [step.step_id]
        status(rig, n, job, step.step_id, "finished", 320)
    assert step.state == JobState.Cancelled and job.state == JobState.Running


def test_a_batch_jobs_end_ends_its_steps(rig: Rig) -> None:
    job = rig.start(partition="debug", node_num=2)
    step = rig.ctl.create_step({"job_id": job.job_id, "argv": ["sleep", "9"]}, ROOT)
    rig.feed(m.StepStatus(node=job.head_node, job_id=job.job_id, step_id=0, state="finished", epoch=job.epoch))
    assert job.state == JobState.Completed and step.state == JobState.Cancelled
    assert all(rig.to(n, m.TerminateStep) for n in job.alloc_nodes)


# --- reconciliation and recovery ---------------------------------------------------------------------


def test_a_node_kills_task_steps_the_controller_does_not_know_and_reports_dead_supervisors(rig: Rig) -> None:
    job = crun_job(rig, ["sleep", "100"])
    node = job.alloc_nodes[0]
    status(rig, node, job, 0, "running")
    rig.feed(m.NodeHeartbeat(node=node, task_steps=[(job.job_id, 0, job.epoch), (4242, 1, 1)]))
    assert [(t.job_id, t.step_id, t.reason) for t in rig.to(node, m.TerminateStep)] == [(4242, 1, "orphan")]
    rig.feed(m.NodeHeartbeat(node=node, task_ended=[(job.job_id, 0, job.epoch)]))
    assert job.state == JobState.Failed and job.exit_code == EC_CRANED_DOWN
    assert "supervisor died" in job.reason


def test_steps_survive_a_controller_restart(tmp_path: Any) -> None:
    path = str(tmp_path / "state.db")
    rig = Rig(path, InteractiveTimeout=30.0)
    rig.all_up()
    job = calloc_job(rig)
    step = rig.ctl.create_step({"job_id": job.job_id, "argv": ["sleep", "9"]}, ROOT)
    status(rig, job.alloc_nodes[0], job, step.step_id, "running")
    rig.store.close()
    again = Rig(path, clock=rig.clock, InteractiveTimeout=30.0)
    node = job.alloc_nodes[0]
    for n in ("cn01", "cn02", "cn03"):   # the node still runs the step: its registration says so
        again.feed(m.NodeRegister(node=n, cpus=2, mem=1 << 30,
                                  task_steps=[(job.job_id, step.step_id, job.epoch)] if n == node else []))
    job2 = again.ctl.jobs[job.job_id]
    assert job2.interactive == "calloc" and job2.state == JobState.Running
    assert again.ctl.steps[job.job_id][step.step_id].state == JobState.Running
    assert again.ctl.create_step({"job_id": job.job_id, "argv": ["true"]}, ROOT).step_id == step.step_id + 1
    # no client came back within InteractiveTimeout: the job ends, its step is killed on its node
    again.clock.t += 31
    for n in ("cn01", "cn02", "cn03"):
        again.beat(n)
    again.cycle()
    assert again.to(job2.alloc_nodes[0], m.TerminateStep)


def test_a_node_that_registers_without_a_started_step_has_lost_it(rig: Rig) -> None:
    job = calloc_job(rig)
    step = rig.ctl.create_step({"job_id": job.job_id, "argv": ["sleep", "9"]}, ROOT)
    node = job.alloc_nodes[0]
    status(rig, node, job, step.step_id, "running")
    rig.feed(m.NodeRegister(node=node, cpus=2, mem=1 << 30))   # e.g. its state directory was wiped
    assert step.state == JobState.Failed and step.exit_code == EC_CRANED_DOWN and "lost the step" in step.reason
    assert job.state == JobState.Running                        # the allocation itself is fine


@pytest.mark.parametrize("start", [
    {"argv": []},
    {"argv": ["echo", "a\x00b"]},
    {"argv": ["x"] * 5000},
    {"argv": ["true"], "name": "two\nlines"},
    {"argv": ["true"], "env": {"A=B": "c"}},
    {"argv": ["true"], "stdin_target": "7"},
])
def test_malformed_steps_are_refused_before_anything_runs(rig: Rig, start: dict) -> None:
    job = calloc_job(rig)
    with pytest.raises(StepRefused):
        rig.ctl.create_step({"job_id": job.job_id, **start}, ROOT)
    assert rig.to(job.alloc_nodes[0], m.StartStep) == []


def test_every_step_start_and_end_is_an_event_with_its_name_for_the_history(rig: Rig) -> None:
    from crane_kernel.events import StepEvent

    rig.ctl.event_models = True
    job = calloc_job(rig)
    step = rig.ctl.create_step({"job_id": job.job_id, "argv": ["/usr/bin/hostname"]}, ROOT)
    node = job.alloc_nodes[0]
    status(rig, node, job, step.step_id, "running")
    status(rig, node, job, step.step_id, "finished", 2)
    events = [(e.kind, e.step_id, e.name, e.state, e.exit_code) for _, e in rig.sent if isinstance(e, StepEvent)]
    assert events == [("step.started", 0, "interactive", "Running", 0), ("step.started", 1, "hostname", "Running", 0),
                      ("step.ended", 1, "hostname", "Failed", 2)]
    from crane_acct_sql.store import step_row

    ended = next(e for _, e in rig.sent if isinstance(e, StepEvent) and e.kind == "step.ended")
    assert step_row(ended)[:5] == (job.job_id, 1, "hostname", "Failed", 2)   # the row cacct shows as <job>.1
