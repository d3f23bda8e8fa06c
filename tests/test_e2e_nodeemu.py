"""End to end: the real cranectld (journal, plugins, closed bus, TLS) with 50 nodes emulated by one process."""

from __future__ import annotations

import time
from typing import Any

import pytest
from crane_common.hostlist import expand
from crane_common.states import FINAL_STATES, JobState
from crane_e2e import Cluster, make_cluster

NODES = 50


@pytest.fixture(scope="module")
def emu() -> Any:
    """50 emulated nodes of 2 CPUs (100 job slots) under one real controller."""
    lc = make_cluster(nodes=NODES, cpus=2, emulated=True, CraneCtld={"FinishedJobRetention": 3600})
    lc.start()
    try:
        yield Cluster(lc)
    finally:
        lc.stop()


def _wait_all_done(c: Cluster, ids: list[int], timeout: float) -> list[Any]:
    deadline = time.time() + timeout
    infos: list[Any] = []
    while time.time() < deadline:
        infos = c.client.jobs(ids, include_finished=True)
        if len(infos) == len(ids) and all(JobState(i.status) in FINAL_STATES for i in infos):
            return infos
        time.sleep(0.2)
    states = sorted({JobState(i.status).name for i in infos})
    raise AssertionError(f"jobs did not all end in {timeout}s; states seen: {states}")


def test_cinfo_shows_every_emulated_node_up(emu: Cluster) -> None:
    proc = emu.run("cinfo", "-N", "-o", "%s %n %l")
    assert proc.returncode == 0, proc.stderr
    state, count, hosts = proc.stdout.split()
    assert (state, count) == ("idle", str(NODES)), proc.stdout
    assert expand(hosts) == [f"cn{i:02d}" for i in range(1, NODES + 1)]
    nodes = emu.client.nodes()
    assert len(nodes) == NODES
    assert all(n.resource_state == "idle" for n in nodes)


def test_500_short_jobs_run_to_completion_on_the_emulated_nodes(emu: Cluster) -> None:
    spec = emu.client.spec(wrap="sleep 1", cwd="/tmp", output="/dev/null", env={"CRANE_EMU_DURATION": "0.5"})
    ids: list[int] = []
    for _ in range(5):
        ids += emu.client.submit(spec, count=100)
    seen_running = ""
    deadline = time.time() + 20
    while time.time() < deadline and not seen_running:
        proc = emu.run("cqueue", "-N", "-t", "R", "-o", "%j %t %L")
        assert proc.returncode == 0, proc.stderr
        seen_running = proc.stdout
        time.sleep(0.1)
    assert " cn" in seen_running  # running on an emulated node, as cqueue shows it
    infos = _wait_all_done(emu, ids, timeout=120)
    assert {JobState(i.status) for i in infos} == {JobState.Completed}
    assert len({i.craned_list for i in infos}) == NODES  # every emulated node ran some
    assert emu.run("cqueue", "-N").stdout.strip() == ""


def test_exit_codes_time_limits_and_cancel_as_a_real_node_reports_them(emu: Cluster) -> None:
    fails = emu.cbatch("--export", "ALL,CRANE_EMU_EXIT_CODE=3", "--wrap", "sleep 0.2")
    timed = emu.cbatch("-t", "0:00:01", "--wrap", "sleep 30")
    long = emu.cbatch("--wrap", "sleep 600")
    emu.wait_running(long)
    assert emu.run("ccancel", str(long)).returncode == 0
    assert emu.wait_done(fails).status == JobState.Failed
    assert emu.job(fails).exit_code == 3
    assert emu.wait_done(timed, timeout=30).status == JobState.ExceedTimeLimit
    assert emu.wait_done(long).status == JobState.Cancelled


def test_jobs_survive_a_controller_kill9_with_emulated_nodes(emu: Cluster) -> None:
    spec = emu.client.spec(wrap="sleep 3", cwd="/tmp", output="/dev/null")
    ids = emu.client.submit(spec, count=40)
    deadline = time.time() + 20
    while time.time() < deadline and not emu.client.jobs(ids, states=[int(JobState.Running)]):
        time.sleep(0.1)
    emu.lc.kill_ctld()
    emu.lc.start_ctld()
    emu.client = emu.lc.client()
    infos = _wait_all_done(emu, ids, timeout=60)
    assert {JobState(i.status) for i in infos} == {JobState.Completed}
