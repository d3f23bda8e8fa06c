"""Reservations and licenses on a real cluster (cranectld, three craneds, Redis), through the CLIs.

A reservation keeps other jobs off its node while ``-r`` jobs run there; licenses limit how many jobs
run at once; a real unprivileged user can neither create a reservation nor use one she is not in;
reservations survive a controller restart.
"""

from __future__ import annotations

import json
import time

import pytest
from crane_common.states import JobState
from crane_e2e import Cluster, ensure_user, run_as, running_cluster

pytestmark = pytest.mark.e2e

ALICE = "crane_e2e_alice"


@pytest.fixture(scope="module")
def cluster():
    with running_cluster(Licenses={"matlab": 1}) as c:
        yield c


def _cancel_all(c: Cluster) -> None:
    ids = [j.job_id for j in c.client.jobs()]
    if ids:
        c.client.cancel(ids)
        for jid in ids:
            c.wait_done(jid)


def test_a_reservation_keeps_other_jobs_off_its_node_and_runs_its_own(cluster: Cluster) -> None:
    c = cluster
    made = c.run("ccontrol", "create", "reservation", "maint", "startTime=now", "duration=00:10:00", "nodes=cn01",
                 "user=root", "flags=MAINT")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "Reservation maint created successfully."
    try:
        others = [c.cbatch("-c", "2", "--wrap", "sleep 30") for _ in range(3)]
        for jid in others[:2]:
            c.wait_running(jid)
        assert {c.job(j).craned_list for j in others[:2]} == {"cn02", "cn03"}
        waiting = c.wait_state(others[2], lambda i: i.pending_reason.startswith("ReqNodeNotAvail"))
        assert waiting.pending_reason == "ReqNodeNotAvail, Reserved for maintenance"
        inside = c.cbatch("-r", "maint", "-c", "2", "--wrap", "sleep 30")
        assert c.wait_running(inside).craned_list == "cn01"
        assert c.job(inside).reservation == "maint"
        shown = c.run("ccontrol", "show", "reservation", "maint")
        assert shown.returncode == 0 and shown.stdout.startswith("ReservationName=maint ")
        assert "\tNodes=cn01 NodeCnt=1" in shown.stdout and "State=ACTIVE" in shown.stdout
        assert "AllocCPU=2.00" in shown.stdout
        col = c.run("cqueue", "-o", "%.6j %reservation", "-j", str(inside))
        assert col.stdout.split()[-1] == "maint"
        moved = c.run("ccontrol", "update", "jobid=" + str(others[2]), "reservation=maint")  # into it, pending
        assert moved.returncode == 0, moved.stderr
        assert c.wait_state(others[2], lambda i: i.reservation == "maint" and i.pending_reason == "Resource")
        longer = c.run("ccontrol", "update", "reservation", "maint", "duration=00:20:00")
        assert longer.stdout.strip() == "Reservation maint updated successfully."
        assert "Duration=00:20:00" in c.run("ccontrol", "show", "reservation").stdout
        bad = c.run("ccontrol", "update", "reservation", "maint", "nodes=cn09")
        assert bad.returncode == 1 and bad.stderr == "Failed to update reservation: unknown node cn09.\n"
        typo = c.run("ccontrol", "create", "reservation", "x", "duration=soon", "nodes=cn01", "user=root")
        assert typo.returncode == 2 and len(typo.stderr.strip().splitlines()) == 1
    finally:
        _cancel_all(c)
        deleted = c.run("ccontrol", "delete", "reservation", "maint")
        assert deleted.stdout.strip() == "Reservation maint deleted successfully."
    again = c.run("ccontrol", "delete", "reservation", "maint")
    assert again.returncode == 1 and again.stderr.startswith("Failed to delete reservation: ")


def test_licenses_limit_how_many_jobs_run(cluster: Cluster) -> None:
    c = cluster
    first = c.cbatch("-L", "matlab:1", "--wrap", "sleep 3")
    second = c.cbatch("-L", "matlab", "--wrap", "true")
    c.wait_running(first)
    info = c.wait_state(second, lambda i: i.pending_reason == "Licenses")
    assert info.status == JobState.Pending
    lic = c.run("ccontrol", "show", "lic", "matlab")
    assert lic.stdout == "LicenseName=matlab\n\tTotal=1 Used=1 Free=0 Reserved=0 Remote=no\n"
    as_json = json.loads(c.run("ccontrol", "show", "lic", "--json").stdout)
    assert as_json["license_info_list"] == [{"name": "matlab", "total": 1, "used": 1, "free": 0, "reserved": 0,
                                             "remote": False, "last_consumed": 0, "last_deficit": 0,
                                             "last_update": "0"}]  # upstream's LicenseInfo (cranesched-json.md)
    col = c.run("cqueue", "-L", "-j", str(first))
    assert col.stdout.splitlines()[0].split()[-1] == "LICENSES" and col.stdout.splitlines()[1].split()[-1] == \
        "matlab:1"
    assert c.wait_done(first).status == JobState.Completed
    assert c.wait_done(second).status == JobState.Completed
    refused = c.run("cbatch", "-L", "fluent:1", "--wrap", "true")
    assert refused.returncode == 4 and "license fluent does not exist" in refused.stdout + refused.stderr


def test_an_unprivileged_user_can_neither_create_nor_use_a_reservation(cluster: Cluster) -> None:
    c = cluster
    alice = ensure_user(ALICE)
    token = c.lc.token(alice.pw_name, alice.pw_uid)
    attempt = run_as(c, alice, "ccontrol", "create", "reservation", "mine", "startTime=now", "duration=01:00:00",
                     "nodes=cn[01-03]", f"user={ALICE}", token=token)
    assert attempt.returncode != 0 and "reservation.modify is not allowed" in attempt.stderr
    assert c.run("ccontrol", "show", "reservation").stdout.strip() == "No reservation is available."
    made = c.run("ccontrol", "create", "reservation", "rootonly", "startTime=now", "duration=00:05:00",
                 "nodes=cn03", "user=root")
    assert made.returncode == 0, made.stderr
    try:
        for verb in (("update", "reservation", "rootonly", f"user={ALICE}"), ("delete", "reservation", "rootonly")):
            tried = run_as(c, alice, "ccontrol", *verb, token=token)
            assert tried.returncode != 0 and "not allowed" in tried.stderr
        used = run_as(c, alice, "cbatch", "-r", "rootonly", "--wrap", "true", token=token)
        assert used.returncode == 4 and "may not use reservation rootonly" in used.stdout + used.stderr
        shown = run_as(c, alice, "ccontrol", "show", "reservation", token=token)  # looking is allowed
        assert shown.returncode == 0 and "ReservationName=rootonly" in shown.stdout and "Users=root" in shown.stdout
    finally:
        c.run("ccontrol", "delete", "reservation", "rootonly")


def test_reservations_survive_a_controller_restart(cluster: Cluster) -> None:
    c = cluster
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 3600))
    made = c.run("ccontrol", "create", "reservation", "later", f"startTime={start}", "duration=1:00:00",
                 "nodeCnt=2", "account=-nobody", "flags=IGNORE_JOBS")
    assert made.returncode == 0, made.stderr
    c.lc.kill_ctld()
    time.sleep(0.5)
    c.lc.start_ctld()
    c.client = c.lc.client()
    shown = c.run("ccontrol", "show", "reservation", "later")
    assert shown.returncode == 0, shown.stderr
    assert "NodeCnt=2" in shown.stdout and "Flags=IGNORE_JOBS State=INACTIVE" in shown.stdout
    assert "Accounts=-nobody" in shown.stdout
    short = c.cbatch("-t", "00:01:00", "--wrap", "true")  # ends long before it: runs
    assert c.wait_done(short).status == JobState.Completed
    c.run("ccontrol", "delete", "reservation", "later")
