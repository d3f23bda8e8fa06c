"""What craned reports with its heartbeat and registration: live steps, ended job directories, results first."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from crane_kernel import messages as m
from crane_kernel.config import parse_config
from crane_kernel.craned.jobfiles import RESULT_FILE, SENT_FILE, SUP_FILE, proc_start_time
from crane_kernel.craned.main import STARTING_GRACE, Craned


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write(path: str, data: Any) -> None:
    with open(path, "w") as fh:
        fh.write(data if isinstance(data, str) else json.dumps(data))


@pytest.fixture
def supervisor_like() -> Iterator[dict]:
    """A live process that looks like a supervisor (root's, leads its own session): its pid file content."""
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        yield {"pid": proc.pid, "start": proc_start_time(proc.pid)}
    finally:
        proc.kill()
        proc.wait()


def _node(tmp_path: Any, redis_url: str) -> Craned:
    cfg = parse_config({"CraneBaseDir": str(tmp_path), "RedisUrl": redis_url, "ClusterName": "rep",
                        "Nodes": [{"name": "cn01", "cpu": 2, "memory": "1G"}],
                        "Partitions": [{"name": "p", "nodes": "ALL"}], "Bus": {"Auth": False}})
    return Craned(cfg, "cn01")


def _dirs(c: Craned, me: dict) -> None:
    dead = {"pid": _dead_pid(), "start": 1}
    layout = {
        1: {SUP_FILE: {**me, "epoch": 3, "step": 1}},                      # supervisor alive
        2: {},                                                             # handed to the launcher: starting
        3: {},                                                             # ... long ago: the launch failed
        4: {SUP_FILE: {**dead, "epoch": 2}, RESULT_FILE: m.StepStatus(     # supervisor gone, result unsent
            node="cn01", job_id=4, state="finished", exit_code=9, epoch=2).model_dump()},
        5: {"cancelled": ""},                                              # terminated before its launch
        6: {SUP_FILE: {**dead, "epoch": 1}, RESULT_FILE: {"job_id": "x"}},  # gone, unusable result file
        7: {SUP_FILE: {**dead, "epoch": 5}},                               # gone without any result
    }
    for jid, files in layout.items():
        d = os.path.join(c.jobs_dir, str(jid))
        os.makedirs(d)
        for name, data in files.items():
            _write(os.path.join(d, name), data)
    c.launched[2] = 8
    old = time.time() - STARTING_GRACE - 5
    os.utime(os.path.join(c.jobs_dir, "3"), (old, old))


def _stream(c: Craned) -> list[Any]:
    return [m.decode(fields[b"m"]) for _id, fields in c.bus.redis.xrange(c.bus.report_stream("cn01"))]


def test_heartbeat_lists_live_and_starting_steps_and_sends_results_first(tmp_path, redis_url, supervisor_like):
    c = _node(tmp_path, redis_url)
    _dirs(c, supervisor_like)
    c._heartbeat()
    msgs = _stream(c)
    assert [type(x).__name__ for x in msgs] == ["StepStatus", "NodeHeartbeat"]
    status, beat = msgs
    assert (status.job_id, status.exit_code, status.epoch) == (4, 9, 2)
    assert sorted(beat.steps) == [(1, 1, 3), (2, 0, 8)] and sorted(beat.running) == [1, 2]
    assert sorted(e[0] for e in beat.ended) == [3, 4, 5, 6, 7]
    assert os.path.exists(os.path.join(c.jobs_dir, "4", SENT_FILE))
    assert os.path.exists(os.path.join(c.jobs_dir, "6", "result.bad"))
    c._heartbeat()                                     # sent once only
    assert [type(x).__name__ for x in _stream(c)[2:]] == ["NodeHeartbeat"]


def test_registration_reports_steps_ended_directories_and_results(tmp_path, redis_url, supervisor_like):
    c = _node(tmp_path, redis_url)
    _dirs(c, supervisor_like)
    c._register()
    (reg,) = _stream(c)
    assert isinstance(reg, m.NodeRegister)
    assert sorted(reg.steps) == [(1, 1, 3), (2, 0, 0)]   # a restarted craned knows no epoch without sup.json
    finished = {f["job_id"]: f for f in reg.finished}
    assert finished[4]["exit_code"] == 9
    assert finished[7]["reason"] == "step supervisor lost" and finished[7]["epoch"] == 5
    assert 5 not in finished and 3 not in finished      # nothing ever ran there
