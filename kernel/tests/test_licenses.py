"""Cluster licenses (ctld/licenses.py): parsing, the controller's counters, the gate and the journal (ctlrig.Rig)."""

from __future__ import annotations

from typing import Any

import pytest
from crane_common.states import JobState
from crane_kernel import messages as m
from crane_kernel.config import parse_config
from crane_kernel.ctld.licenses import parse_licenses
from crane_kernel.errors import ConfigError, JobRejected
from ctlrig import ROOT, Rig

LICENSES = {"Licenses": {"matlab": 2, "ansys": 1}}


@pytest.fixture()
def rig(tmp_path: Any) -> Rig:
    r = Rig(str(tmp_path / "state.db"), config=LICENSES)
    r.all_up()
    return r


def _end(rig: Rig, job: Any) -> None:
    rig.feed(m.StepStatus(node=job.head_node, job_id=job.job_id, state="finished", exit_code=0, epoch=job.epoch))


def test_parsing() -> None:
    known = {"matlab": 10, "ansys": 4}
    assert parse_licenses("matlab:2,ansys", known).items == (("matlab", 2), ("ansys", 1))
    req = parse_licenses("matlab:2|ansys:1", known)
    assert req.any_of and req.text() == "matlab:2|ansys:1"
    for bad, why in [("fluent:1", "does not exist"), ("matlab:11", "the cluster has 10"), ("matlab:x", "whole"),
                     ("matlab:1,ansys:1|matlab:2", "not both"), ("matlab,matlab", "twice"), ("", "empty")]:
        with pytest.raises(JobRejected, match=why):
            parse_licenses(bad, known)


def test_the_configuration_takes_both_forms() -> None:
    base = {"Nodes": [{"name": "n1", "cpu": 1, "memory": "1G"}], "Partitions": [{"name": "p", "nodes": "ALL"}]}
    assert parse_config({**base, "Licenses": {"matlab": 3}}).Licenses == {"matlab": 3}
    assert parse_config({**base, "Licenses": [{"name": "fluent", "quantity": 30}]}).Licenses == {"fluent": 30}
    with pytest.raises(ConfigError):
        parse_config({**base, "Licenses": {"bad name": 1}})


def test_licenses_limit_how_many_jobs_run(rig: Rig) -> None:
    ids = [rig.submit(licenses="matlab:1", cpus_per_task=1) for _ in range(3)]
    rig.cycle()
    states = [rig.ctl.jobs[i].state for i in ids]
    assert states.count(JobState.Configuring) == 2
    waiting = rig.ctl.jobs[ids[states.index(JobState.Pending)]]
    assert waiting.reason == "Licenses"
    assert rig.ctl.licenses_info(["matlab"]) == [("matlab", 2, 2)]
    first = rig.ctl.jobs[ids[0]]
    rig.feed(m.StepStatus(node=first.head_node, job_id=first.job_id, state="running", epoch=first.epoch))
    _end(rig, first)
    assert rig.ctl.licenses_info(["matlab"]) == [("matlab", 2, 1)]
    rig.cycle()
    assert waiting.state == JobState.Configuring


def test_one_of_picks_the_first_free_alternative_and_records_it(rig: Rig) -> None:
    a = rig.submit(licenses="ansys:1", cpus_per_task=1)
    b = rig.submit(licenses="ansys:1|matlab:2", cpus_per_task=1)
    rig.cycle()
    assert rig.ctl.jobs[a].state == rig.ctl.jobs[b].state == JobState.Configuring
    assert rig.ctl.job_licenses(b) == {"matlab": 2}
    assert '"lic":{"matlab":2}' in rig.ctl._rt_json(rig.ctl.jobs[b])


def test_all_of_waits_for_every_license(rig: Rig) -> None:
    hog = rig.start(licenses="ansys", cpus_per_task=1)
    both = rig.submit(licenses="matlab:1,ansys:1", cpus_per_task=1)
    rig.cycle()
    assert rig.ctl.jobs[both].reason == "Licenses"
    assert rig.ctl.licenses_info([]) == [("ansys", 1, 1), ("matlab", 2, 0)]  # nothing half-taken
    _end(rig, hog)
    rig.cycle()
    assert rig.ctl.jobs[both].state == JobState.Configuring


def test_unknown_licenses_refuse_the_submission(rig: Rig) -> None:
    with pytest.raises(JobRejected, match="fluent does not exist"):
        rig.submit(licenses="fluent:1")


def test_held_licenses_are_rebuilt_at_recovery(tmp_path: Any) -> None:
    path = str(tmp_path / "state.db")
    rig = Rig(path, config=LICENSES)
    rig.all_up()
    job = rig.start(licenses="matlab:2|ansys:1", cpus_per_task=1)
    waiting = rig.submit(licenses="matlab:1", cpus_per_task=1)
    again = Rig(path, clock=rig.clock, config=LICENSES)
    assert again.ctl.licenses_info(["matlab"]) == [("matlab", 2, 2)]
    for n in ("cn01", "cn02", "cn03"):  # the node still runs it
        steps = [(job.job_id, 1, job.epoch)] if n == job.head_node else []
        again.feed(m.NodeRegister(node=n, cpus=2, mem=1 << 30, running=[s[0] for s in steps], steps=steps))
    again.cycle()
    assert again.ctl.jobs[waiting].reason == "Licenses"
    _end(again, again.ctl.jobs[job.job_id])
    again.cycle()
    assert again.ctl.jobs[waiting].state == JobState.Configuring


def test_a_requeued_job_gives_its_licenses_back(tmp_path: Any) -> None:
    rig = Rig(str(tmp_path / "state.db"), requeue=True, config=LICENSES)
    rig.all_up()
    job = rig.start(licenses="ansys:1", cpus_per_task=1)
    rig.beat(job.head_node)  # the node has no trace of it: lost, requeued
    assert job.state == JobState.Pending
    assert rig.ctl.licenses_info(["ansys"]) == [("ansys", 1, 0)]
    rig.cycle()
    assert job.state == JobState.Configuring and rig.ctl.job_licenses(job.job_id) == {"ansys": 1}


def test_modifying_a_pending_jobs_licenses(rig: Rig) -> None:
    jid = rig.submit(cpus_per_task=1, hold=True)
    done, failed = rig.ctl.modify_job_extra([jid], ROOT, "licenses", "fluent:1")
    assert not done and "does not exist" in failed[0][1]
    assert rig.ctl.modify_job_extra([jid], ROOT, "licenses", "matlab:2")[0] == [jid]
    assert rig.store.specs([jid])[jid]["licenses"] == "matlab:2"
    rig.ctl.modify([jid], ROOT, hold=False)
    rig.cycle()
    assert rig.ctl.job_licenses(jid) == {"matlab": 2}


def test_two_starts_of_one_plan_cannot_share_the_last_license(rig: Rig) -> None:
    from crane_kernel.sched_types import Plan

    a = rig.submit(licenses="ansys", cpus_per_task=1)
    b = rig.submit(licenses="ansys", cpus_per_task=1)
    rig.ctl.keeper.sync(rig.ctl.pending, rig.ctl.running_view, rig.clock.t)
    plan = Plan()  # a plan made as if each were alone (both were free at the view's sync)
    plan.starts += [(a, [0]), (b, [1])]
    assert rig.ctl._commit(plan, rig.clock.t, []) == 1
    assert rig.ctl.jobs[a].state == JobState.Configuring
    assert rig.ctl.jobs[b].state == JobState.Pending and rig.ctl.jobs[b].reason == "Licenses"
    assert rig.ctl.licenses_info(["ansys"]) == [("ansys", 1, 1)]
