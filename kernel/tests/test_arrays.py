"""Array jobs (ctld/arrays.py, ctld/arrayspec.py): one record until tasks start, %max, A_T, dependencies, restart."""

from __future__ import annotations

import time
from typing import Any

import pytest
from crane_common.states import JobState
from crane_kernel import messages as m
from crane_kernel.ctld.arrayspec import TaskSet, expand_array_pattern, parse_array
from crane_kernel.errors import JobRejected
from ctlrig import ROOT, Rig


@pytest.fixture()
def rig(tmp_path: Any) -> Rig:
    r = Rig(str(tmp_path / "state.db"))
    r.all_up()
    return r


def run(rig: Rig, job: Any) -> None:
    rig.feed(m.StepStatus(node=job.head_node, job_id=job.job_id, state="running", epoch=job.epoch))


def finish(rig: Rig, job: Any, code: int = 0) -> None:
    rig.feed(m.StepStatus(node=job.head_node, job_id=job.job_id, state="finished", exit_code=code, epoch=job.epoch))


def tasks_of(rig: Rig, aid: int) -> list[Any]:
    return sorted((j for j in rig.ctl.jobs.values() if j.array_job_id == aid), key=lambda j: j.array_task_id)


def test_array_forms_and_refusals() -> None:
    assert parse_array("0-15", 100).indices == tuple(range(16))
    stepped = parse_array("1-9:4,20%3", 100)
    assert stepped.indices == (1, 5, 9, 20) and stepped.max_concurrent == 3
    assert parse_array("7,3,3,5", 100).indices == (3, 5, 7)
    for bad in ("", "a-b", "5-1", "1-4:0", "3:2", "1-10%0", "1-10%x", "-1", "0-20000"):
        with pytest.raises(JobRejected):
            parse_array(bad, 10_000)


def test_taskset_keeps_ranges_and_removes_one_index() -> None:
    ts = TaskSet.from_indices([1, 2, 3, 4, 10, 12, 14, 20])
    assert ts.text() == "1-4,10-14:2,20" and len(ts) == 8
    assert ts.discard(12) and ts.text() == "1-4,10,14,20" and 12 not in ts and len(ts) == 7
    assert not ts.discard(12)
    assert [ts.pop_first() for _ in range(5)] == [1, 2, 3, 4, 10] and ts.text() == "14,20"
    assert TaskSet.parse_text(ts.text()).text() == "14,20"
    assert expand_array_pattern("out-%A_%a-%j.%%a", 7, 3) == "out-7_3-%j.%%a"


def test_a_10000_task_array_is_one_record_and_never_runs_more_than_its_max(rig: Rig) -> None:
    t0 = time.perf_counter()
    aid = rig.submit(partition="debug", array="1-10000%10", cpus_per_task=0.25)
    took = time.perf_counter() - t0
    assert took < 0.5, took  # the benchmark (crane bench array) measures it through the API
    assert len(rig.store.jobs_by_id(list(range(aid, aid + 20)))) == 1  # nothing but the array's record yet
    most = done = 0
    while done < 10000:
        rig.cycle()
        live = [j for j in tasks_of(rig, aid) if j.state not in (JobState.Completed,)]
        running = [j for j in live if j.state in (JobState.Configuring, JobState.Running)]
        most = max(most, len(running))
        assert len(running) <= 10
        assert running, "the array stalled"
        for job in running:
            run(rig, job)
            finish(rig, job)
            done += 1
        for job in running:  # ended tasks leave memory after FinishedJobRetention; here, at once
            rig.ctl.jobs.pop(job.job_id, None)
    assert most == 10
    parent = rig.ctl.jobs[aid]
    assert parent.state == JobState.Completed and not len(parent.array_tasks)


def test_tasks_get_their_identity_env_and_patterns(rig: Rig) -> None:
    aid = rig.submit(partition="debug", array="0-4:2", output="log-%A_%a.out", cpus_per_task=0.25)
    rig.cycle()
    tasks = tasks_of(rig, aid)
    assert [t.array_task_id for t in tasks] == [0, 2, 4]
    launches = {msg.job_id: msg for n in ("cn01", "cn02", "cn03") for msg in rig.to(n, m.LaunchStep)}
    spec = launches[tasks[1].job_id].spec
    assert spec.output == f"log-{aid}_2.out"
    env = spec.env
    assert env["CRANE_ARRAY_JOB_ID"] == str(aid) and env["CRANE_ARRAY_TASK_ID"] == "2"
    assert env["CRANE_ARRAY_TASK_COUNT"] == "3" and env["CRANE_ARRAY_TASK_MIN"] == "0"
    assert env["CRANE_ARRAY_TASK_MAX"] == "4" and env["CRANE_ARRAY_TASK_STEP"] == "2"
    assert env["SLURM_ARRAY_TASK_ID"] == "2" and env["SLURM_ARRAY_JOB_ID"] == str(aid)


def test_cancel_one_task_to_come_then_the_whole_array(rig: Rig) -> None:
    aid = rig.submit(partition="debug", array="1-20%2")
    rig.cycle()
    done, failed = rig.ctl.cancel_tasks([(aid, 7), (aid, 99)], ROOT)
    assert done == [((aid, 7), 0)] and failed[0][0] == (aid, 99)
    assert 7 not in rig.ctl.jobs[aid].array_tasks
    ok, bad = rig.ctl.cancel([aid], ROOT)
    assert ok == [aid] and not bad
    assert rig.ctl.jobs[aid].state == JobState.Pending  # until its running tasks are gone
    for t in tasks_of(rig, aid):
        assert t.cancel_requested
        run(rig, t)
        finish(rig, t, 0)
    rig.cycle()
    assert all(t.state == JobState.Cancelled for t in tasks_of(rig, aid))
    parent = rig.ctl.jobs[aid]
    assert parent.state == JobState.Cancelled
    assert len(tasks_of(rig, aid)) == 2  # the 18 others never ran


def test_held_array_creates_nothing_until_released(rig: Rig) -> None:
    aid = rig.submit(partition="debug", array="1-5", hold=True)
    rig.cycle()
    assert tasks_of(rig, aid) == []
    done, _ = rig.ctl.modify([aid], ROOT, hold=False)
    rig.ctl.arrays_touched(done)
    rig.cycle()
    assert len(tasks_of(rig, aid)) == 5


def test_afterok_on_a_whole_array_and_on_one_task(rig: Rig) -> None:
    aid = rig.submit(partition="debug", array="1-3", cpus_per_task=0.25)
    whole = rig.submit(partition="debug", dependency=f"afterok:{aid}")
    one = rig.submit(partition="debug", dependency=f"afterok:{aid}_2")
    rig.cycle()
    tasks = {t.array_task_id: t for t in tasks_of(rig, aid)}
    for t in tasks.values():
        run(rig, t)
    finish(rig, tasks[2], 0)
    rig.cycle()
    assert rig.ctl.jobs[one].state == JobState.Configuring
    assert rig.ctl.jobs[whole].state == JobState.Pending and rig.ctl.jobs[whole].reason == "Dependency"
    finish(rig, tasks[1], 0)
    finish(rig, tasks[3], 1)  # one task fails: the whole array did not complete
    rig.cycle()
    assert rig.ctl.jobs[aid].state == JobState.Failed
    rig.cycle()  # a dependency that can never hold is cancelled at the next cycle
    assert rig.ctl.jobs[whole].state == JobState.Cancelled and rig.ctl.jobs[whole].reason == "DependencyNeverSatisfied"


def test_aftercorr_pairs_tasks_of_two_arrays(rig: Rig) -> None:
    first = rig.submit(partition="debug", array="1-2", cpus_per_task=0.25)
    second = rig.submit(partition="debug", array="1-2", dependency=f"aftercorr:{first}", cpus_per_task=0.25)
    rig.cycle()
    a = {t.array_task_id: t for t in tasks_of(rig, first)}
    b = {t.array_task_id: t for t in tasks_of(rig, second)}
    assert all(t.state == JobState.Pending for t in b.values())
    run(rig, a[2])
    finish(rig, a[2], 0)
    rig.cycle()
    assert b[2].state == JobState.Configuring and b[1].state == JobState.Pending


def test_singleton_runs_one_job_of_a_name_at_a_time(rig: Rig) -> None:
    first = rig.start(partition="debug", name="nightly")
    second = rig.submit(partition="debug", name="nightly", dependency="singleton")
    third = rig.submit(partition="debug", name="nightly", dependency="singleton")
    other = rig.submit(partition="debug", name="other", dependency="singleton")
    rig.cycle()
    assert rig.ctl.jobs[second].reason == "Dependency" and rig.ctl.jobs[other].state == JobState.Configuring
    finish(rig, first, 0)
    rig.cycle()
    assert rig.ctl.jobs[second].state == JobState.Configuring and rig.ctl.jobs[third].state == JobState.Pending


def test_delay_minutes_after_the_parent_ends(rig: Rig) -> None:
    parent = rig.start(partition="debug")
    child = rig.submit(partition="debug", dependency=f"afterany:{parent.job_id}+2")
    finish(rig, parent, 3)
    rig.cycle()
    assert rig.ctl.jobs[child].state == JobState.Pending
    for step in (119, 121):  # after the parent's end (the time its node reported)
        rig.clock.t = parent.end_time + step
        for node in ("cn01", "cn02", "cn03"):
            rig.beat(node)
        rig.cycle()
        if step == 119:
            assert rig.ctl.jobs[child].state == JobState.Pending
    assert rig.ctl.jobs[child].state == JobState.Configuring


def test_an_array_survives_a_controller_restart(tmp_path: Any) -> None:
    path = str(tmp_path / "state.db")
    rig = Rig(path)
    rig.all_up()
    aid = rig.submit(partition="debug", array="1-6%2", cpus_per_task=0.25)
    rig.cycle()
    first = tasks_of(rig, aid)
    for t in first:
        run(rig, t)
    finish(rig, first[0], 0)
    rig.store.close()
    again = Rig(path, clock=rig.clock)
    alive = first[1]
    for n in ("cn01", "cn02", "cn03"):  # the running task's node still runs it
        again.feed(m.NodeRegister(node=n, cpus=2, mem=1 << 30, running=[alive.job_id] if n == alive.head_node else [],
                                  steps=[(alive.job_id, 0, alive.epoch)] if n == alive.head_node else []))
    parent = again.ctl.jobs[aid]
    assert parent.array_live == 1 and parent.array_tasks.text() == "3-6"
    assert again.ctl.jobs[alive.job_id].state == JobState.Running
    seen = {t.array_task_id for t in first}
    for _ in range(10):
        again.cycle()
        for t in tasks_of(again, aid):
            if t.state in (JobState.Configuring, JobState.Running):
                seen.add(t.array_task_id)
                run(again, t)
                finish(again, t, 0)
    assert seen == {1, 2, 3, 4, 5, 6}
    assert again.ctl.jobs[aid].state == JobState.Completed


def test_the_throttle_of_an_array_can_change(rig: Rig) -> None:
    aid = rig.submit(partition="debug", array="1-8%1", cpus_per_task=0.25)
    rig.cycle()
    assert len(tasks_of(rig, aid)) == 1
    done, failed = rig.ctl.set_array_throttle([aid, 999], ROOT, 3)
    assert done == [aid] and failed[0][0] == 999
    rig.cycle()
    assert len(tasks_of(rig, aid)) == 3 and rig.ctl.jobs[aid].pending_text() == "4-8%3"


def test_updating_a_task_keeps_it_in_its_array_and_an_array_update_reaches_its_tasks_to_come(rig: Rig) -> None:
    aid = rig.submit(partition="debug", array="1-4%1", cpus_per_task=0.25, hold=True)
    done, _ = rig.ctl.update_jobs([aid], ROOT, "comment", "whole array")
    assert done == [aid]
    done, failed = rig.ctl.update_jobs([aid], ROOT, "node_num", 1)
    assert done == [aid], failed
    parent = rig.ctl.jobs[aid]
    assert aid in rig.ctl.arrays and aid not in rig.ctl.pending and parent.array_tasks.text() == "1-4"
    with rig.ctl.lock:  # A_T named while the array is held: created at once, held like it
        rig.ctl.create_task_now(parent, 1, rig.clock(), [])
    (task,) = tasks_of(rig, aid)
    assert task.held and task.state == JobState.Pending
    done, failed = rig.ctl.update_jobs([task.job_id], ROOT, "begin_time", 0)
    assert done == [task.job_id], failed
    task = rig.ctl.jobs[task.job_id]
    assert task.array_job_id == aid and task.array_task_id == 1


def test_tasks_take_the_arrays_deadline(rig: Rig) -> None:
    aid = rig.submit(partition="debug", array="1-2", cpus_per_task=0.25, deadline=int(rig.clock.t) + 3600,
                     time_limit=600)
    rig.cycle()
    assert all(rig.ctl.life[t.job_id].deadline for t in tasks_of(rig, aid))
