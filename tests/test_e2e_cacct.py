"""cacct, ceff, ``cqueue -t all`` and ``ccontrol show job`` against a real cluster, for ended jobs."""

from __future__ import annotations

import json


def test_ended_jobs_in_cqueue_ccontrol_cacct_and_ceff(cluster):
    ok = cluster.cbatch("--wrap", "true")
    bad = cluster.cbatch("--wrap", "exit 3")
    cluster.wait_done(ok)
    cluster.wait_done(bad)

    q = cluster.run("cqueue", "-t", "all", "-o", "%j %t", "-N")
    assert q.returncode == 0, q.stderr
    listed = dict(line.split() for line in q.stdout.splitlines())
    assert listed[str(ok)] == "Completed" and listed[str(bad)] == "Failed"
    assert str(ok) not in cluster.run("cqueue", "-o", "%j", "-N").stdout.split()

    show = cluster.run("ccontrol", "show", "job", str(bad))
    assert show.returncode == 0, show.stderr
    assert "JobState=Failed" in show.stdout and "ExitCode=3:0" in show.stdout

    a = cluster.run("cacct", "-j", f"{ok},{bad}", "-o", "%j %t %e", "-N")
    assert a.returncode == 0, a.stderr
    job_rows = [line.split() for line in a.stdout.splitlines() if "." not in line.split()[0]]
    assert job_rows == [[str(ok), "Completed", "0:0"], [str(bad), "Failed", "3:0"]]
    data = json.loads(cluster.run("cacct", "--json", "-j", str(ok)).stdout)
    assert data["ok"] is True and [j["job_id"] for j in data["job_info_list"]] == [ok]

    e = cluster.run("ceff", str(ok))
    assert e.returncode == 0, e.stderr
    lines = e.stdout.splitlines()
    assert lines[0] == f"JobId: {ok}" and "JobState: Completed (exit code 0)" in lines
    assert any(line.startswith("CPU Efficiency: ") and line.endswith(" core-walltime") for line in lines)
    assert json.loads(cluster.run("ceff", "--json", str(bad)).stdout)[0]["job_state"] == 3
