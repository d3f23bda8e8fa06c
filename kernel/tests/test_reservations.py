"""Advance reservations in the controller (ctld/reservations.py) with the fifo scheduler (ctlrig.Rig).

What a user sees: jobs kept off reserved nodes (and why), ``-r`` jobs placed inside, waiting before
the start, the reservation's end, refusals, and the journal across a restart.
"""

from __future__ import annotations

from typing import Any

import pytest
from crane_common.states import JobState
from crane_kernel.ctld.reservations import ReservationError
from crane_kernel.errors import JobRejected
from crane_kernel.sched_types import Plan
from ctlrig import Rig


@pytest.fixture()
def rig(tmp_path: Any) -> Rig:
    r = Rig(str(tmp_path / "state.db"))
    r.all_up()
    return r


def _resv(rig: Rig, name: str = "maint", nodes: str = "cn01", start: float = 0, duration: int = 3600,
          **extra: Any) -> None:
    info = {"reservation_name": name, "start_time": start, "duration": duration, "craned_regex": nodes,
            "allowed_users": ["root"], **extra}
    rig.ctl.create_reservation(info, 0, "root")


def _advance(rig: Rig, seconds: float) -> None:
    """Let time pass, the nodes heartbeating (listing what they run) so none goes DOWN."""
    rig.clock.t += seconds
    for n in ("cn01", "cn02", "cn03"):
        rig.beat(n, steps=[(j.job_id, 1, j.epoch) for j in rig.ctl.running.values() if n in j.alloc_nodes])


def _whole_node(rig: Rig, **spec: Any) -> int:
    spec.setdefault("cpus_per_task", 2)
    spec.setdefault("time_limit", 600)
    return rig.submit(**spec)


def test_an_active_reservation_keeps_other_jobs_off_its_node(rig: Rig) -> None:
    _resv(rig, flags=["MAINT"])
    ids = [_whole_node(rig) for _ in range(3)]
    rig.cycle()
    jobs = [rig.ctl.jobs[i] for i in ids]
    started = [j for j in jobs if j.state == JobState.Configuring]
    assert len(started) == 2 and all("cn01" not in j.alloc_nodes for j in started)
    waiting = [j for j in jobs if j.state == JobState.Pending]
    assert [j.reason for j in waiting] == ["ReqNodeNotAvail, Reserved for maintenance"]


def test_a_job_of_the_reservation_runs_on_its_nodes_only(rig: Rig) -> None:
    _resv(rig, nodes="cn02")
    jid = rig.submit(reservation="maint", time_limit=60)
    rig.cycle()
    job = rig.ctl.jobs[jid]
    assert job.state == JobState.Configuring and job.alloc_nodes == ("cn02",)
    second = _whole_node(rig, reservation="maint")  # cn02 has 1 CPU left: it waits, not elsewhere
    rig.cycle()
    assert rig.ctl.jobs[second].state == JobState.Pending and rig.ctl.jobs[second].reason == "Resource"


def test_a_future_reservation_admits_only_jobs_that_end_before_it(rig: Rig) -> None:
    _resv(rig, nodes="cn[01-03]", start=rig.clock.t + 1000, duration=600)
    short = _whole_node(rig, time_limit=900)
    long = _whole_node(rig, time_limit=2000)  # (fifo: it then blocks the partition; backfill would go on)
    rig.cycle()
    assert rig.ctl.jobs[long].state == JobState.Pending and rig.ctl.jobs[long].reason == "Reservation"
    assert rig.ctl.jobs[short].state == JobState.Configuring


def test_a_job_waits_for_its_reservation_to_start(rig: Rig) -> None:
    _resv(rig, start=rig.clock.t + 100)
    jid = rig.submit(reservation="maint", time_limit=60)
    rig.cycle()
    assert rig.ctl.jobs[jid].state == JobState.Pending and rig.ctl.jobs[jid].reason == "Reservation"
    _advance(rig, 100)
    rig.cycle()
    assert rig.ctl.jobs[jid].state == JobState.Configuring and rig.ctl.jobs[jid].alloc_nodes == ("cn01",)


def test_unknown_or_forbidden_reservations_refuse_the_submission(rig: Rig) -> None:
    with pytest.raises(JobRejected, match="does not exist"):
        rig.submit(reservation="nope")
    _resv(rig, allowed_users=["somebody"])
    with pytest.raises(JobRejected, match="may not use reservation maint"):
        rig.submit(reservation="maint")


def test_creation_is_refused_when_it_overlaps_or_the_nodes_are_busy(rig: Rig) -> None:
    _resv(rig, nodes="cn01")
    with pytest.raises(ReservationError, match="reserved by maint"):
        _resv(rig, name="other", nodes="cn[01-02]")
    rig.start(cpus_per_task=1, time_limit=3600)  # lands on cn02 (cn01 is reserved)
    with pytest.raises(ReservationError, match="nodes are busy"):
        _resv(rig, name="busy", nodes="cn02")
    _resv(rig, name="busy", nodes="cn02", flags=["IGNORE_JOBS"])
    with pytest.raises(ReservationError, match="users or accounts"):
        rig.ctl.create_reservation({"reservation_name": "x", "duration": 60, "craned_regex": "cn03"}, 0, "root")
    with pytest.raises(ReservationError, match="unknown flag"):
        _resv(rig, name="y", nodes="cn03", flags=["FOO"])


def test_node_count_picks_free_nodes(rig: Rig) -> None:
    _resv(rig, nodes="cn01")
    rig.ctl.create_reservation({"reservation_name": "two", "duration": 60, "allowed_users": ["root"]}, 2, "root")
    assert rig.ctl.reservations["two"].nodes == ("cn02", "cn03")
    with pytest.raises(ReservationError, match="free"):
        rig.ctl.create_reservation({"reservation_name": "three", "duration": 60, "allowed_users": ["root"]}, 1,
                                   "root")


def test_at_its_end_running_jobs_keep_running_and_pending_ones_say_so(rig: Rig) -> None:
    _resv(rig, duration=100)
    running = rig.start(reservation="maint", cpus_per_task=2, time_limit=1000)
    waiting = _whole_node(rig, reservation="maint")
    rig.cycle()
    assert rig.ctl.jobs[waiting].reason == "Resource"
    _advance(rig, 100)
    rig.cycle()
    assert "maint" not in rig.ctl.reservations
    assert running.state == JobState.Running
    assert rig.ctl.jobs[waiting].state == JobState.Pending
    assert rig.ctl.jobs[waiting].reason == "Reservation deleted"


def test_the_commit_refuses_a_plan_that_breaks_a_reservation(rig: Rig) -> None:
    _resv(rig, nodes="cn01")
    jid = _whole_node(rig)
    rig.ctl.reservation_tick(rig.clock.t)
    plan = Plan()
    plan.starts.append((jid, [rig.ctl.keeper.view.node_index["cn01"]]))
    assert rig.ctl._commit(plan, rig.clock.t, []) == 0
    assert rig.ctl.jobs[jid].state == JobState.Pending and rig.ctl.jobs[jid].reason == "Reservation"
    inside = rig.submit(reservation="maint", time_limit=60)
    plan = Plan()
    plan.starts.append((inside, [rig.ctl.keeper.view.node_index["cn02"]]))  # outside its reservation
    assert rig.ctl._commit(plan, rig.clock.t, []) == 0


def test_update_and_delete(rig: Rig) -> None:
    _resv(rig, nodes="cn01")
    jid = rig.submit(reservation="maint", time_limit=60, hold=True)
    rig.ctl.update_reservation("maint", {"allowed_users": ["nobody"]}, ["allowed_users"])
    rig.ctl.modify([jid], rig.ctl.accounts.enrich(__import__("ctlrig").ROOT), hold=False)
    rig.cycle()
    assert rig.ctl.jobs[jid].reason == "Reservation changed"
    rig.ctl.delete_reservation("maint")
    rig.cycle()
    assert rig.ctl.jobs[jid].reason == "Reservation deleted"
    with pytest.raises(ReservationError, match="does not exist"):
        rig.ctl.delete_reservation("maint")


def test_reservations_and_their_jobs_survive_a_restart(tmp_path: Any) -> None:
    path = str(tmp_path / "state.db")
    rig = Rig(path)
    rig.all_up()
    _resv(rig, nodes="cn02", start=rig.clock.t + 50, flags=["maint"])
    jid = rig.submit(reservation="maint", time_limit=60)
    rig.cycle()
    assert rig.ctl.jobs[jid].reason == "Reservation"
    again = Rig(path, clock=rig.clock)
    again.all_up()
    resv = again.ctl.reservations["maint"]
    assert resv.nodes == ("cn02",) and resv.flags == ("MAINT",) and resv.allowed_users == ("root",)
    _advance(again, 50)
    again.cycle()
    job = again.ctl.jobs[jid]
    assert job.state == JobState.Configuring and job.alloc_nodes == ("cn02",)


def test_modifying_a_pending_jobs_reservation(rig: Rig) -> None:
    from ctlrig import ROOT

    _resv(rig, nodes="cn03")
    jid = rig.submit(time_limit=60, hold=True)
    done, failed = rig.ctl.modify_job_extra([jid], ROOT, "reservation", "nope")
    assert not done and "does not exist" in failed[0][1]
    done, _ = rig.ctl.modify_job_extra([jid], ROOT, "reservation", "maint")
    assert done == [jid]
    assert rig.store.specs([jid])[jid]["reservation"] == "maint"  # journaled in the spec
    rig.ctl.modify([jid], ROOT, hold=False)
    rig.cycle()
    assert rig.ctl.jobs[jid].alloc_nodes == ("cn03",)
