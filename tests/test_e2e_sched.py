"""End to end: backfilling and multifactor priority through the real controller (issue 3)."""

from __future__ import annotations

import pytest
from crane_common.states import JobState
from crane_e2e import Cluster, make_cluster

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def easy():
    lc = make_cluster(nodes=2, cpus=2, Plugins={"Scheduler": "easy", "Priority": "multifactor"})
    lc.start()
    try:
        yield Cluster(lc)
    finally:
        lc.stop()


def test_easy_backfills_short_jobs_but_never_delays_the_reservation(easy):
    c = easy
    a = c.cbatch("-w", "cn01", "-c", "2", "-t", "00:00:06", "--wrap", "sleep 4")
    b = c.cbatch("-w", "cn02", "-c", "1", "-t", "00:00:06", "--wrap", "sleep 4")
    c.wait_running(a)
    c.wait_running(b)
    head = c.cbatch("-N", "2", "-c", "2", "-t", "00:00:05", "--wrap", "sleep 1")
    c.wait_state(head, lambda i: i.status == JobState.Pending and i.pending_reason == "Resource")
    assert c.job(head).start_time > 0                 # the reservation is shown as the expected start
    short = c.cbatch("-c", "1", "-t", "00:00:02", "--wrap", "sleep 1")
    long = c.cbatch("-c", "1", "-t", "00:10:00", "--wrap", "sleep 1")
    info = c.wait_running(short)                       # fits in the hole before the reservation
    assert info.craned_list == "cn02"
    assert c.job(head).status == JobState.Pending
    assert c.job(long).status == JobState.Pending      # would delay the head job: must wait
    h = c.wait_done(head, timeout=30)
    lg = c.wait_done(long, timeout=30)
    assert h.status == JobState.Completed and lg.status == JobState.Completed
    assert lg.start_time >= h.start_time


def test_pinned_priority_jumps_the_queue(easy):
    c = easy
    fill = [c.cbatch("-w", f"cn0{i}", "-c", "2", "-t", "00:00:05", "--wrap", "sleep 2") for i in (1, 2)]
    for f in fill:
        c.wait_running(f)
    first = c.cbatch("-N", "2", "-c", "2", "-t", "00:00:05", "--wrap", "sleep 1")
    second = c.cbatch("-N", "2", "-c", "2", "-t", "00:00:05", "--wrap", "sleep 1")
    proc = c.run("ccontrol", "update", f"jobid={second}", "priority=1000000")
    assert proc.returncode == 0, proc.stderr
    s, f = c.wait_done(second, timeout=30), c.wait_done(first, timeout=30)
    assert s.start_time <= f.start_time
    assert c.run("ccontrol", "show", "job", str(second)).stdout.count("Priority=1000000 ") == 1
