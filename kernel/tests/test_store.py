"""The SQLite state store: grouped writes survive a process crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from crane_kernel.ctld.store import StateStore


def test_write_and_read_back(tmp_path):
    s = StateStore(str(tmp_path / "s.db"))
    s.write(inserts=[(1, 0, json.dumps({"a": 1}), json.dumps({"state": 0}))], meta={"next_job_id": 2})
    s.write(updates=[(1, json.dumps({"state": 1}), 1)])
    assert s.get_meta("next_job_id") == 2
    rows = list(s.iter_jobs([1]))
    assert rows == [(1, 1, {"a": 1}, {"state": 1})]
    assert s.specs([1]) == {1: {"a": 1}}


def test_committed_writes_survive_kill9(tmp_path):
    path = str(tmp_path / "s.db")
    code = (
        "import json, os, signal\n"
        "from crane_kernel.ctld.store import StateStore\n"
        f"s = StateStore({path!r})\n"
        "s.write(inserts=[(i, 0, '{}', '{}') for i in range(1, 1001)], meta={'next_job_id': 1001})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9
    s = StateStore(path)
    assert len(list(s.iter_jobs([0]))) == 1000
    assert s.get_meta("next_job_id") == 1001
    assert os.path.exists(path)
