"""End to end: array jobs with real daemons (cbatch --array, %max, A_T, cqueue's A_[...] row, ccancel, afterok:A)."""

from __future__ import annotations

import time

import pytest
from crane_common.states import FINAL_STATES, JobState

pytestmark = pytest.mark.e2e


def array_record(cluster, aid: int, timeout: float = 60):  # noqa: ANN001, ANN201
    """Wait until the array's own record has ended; return it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = [j for j in cluster.client.jobs([aid], include_finished=True) if j.job_id == aid]
        if rows and JobState(rows[0].status) in FINAL_STATES:
            return rows[0]
        time.sleep(0.1)
    raise AssertionError(f"array {aid} did not end")


def tasks(cluster, aid: int) -> list:  # noqa: ANN001
    return sorted((j for j in cluster.client.jobs([aid], include_finished=True) if j.job_id != aid),
                  key=lambda j: j.array_task_id)


def test_tasks_run_with_their_index_and_patterns_never_more_than_max(cluster):
    aid = cluster.cbatch("--array", "1-6%2", "-c", "0.5", "-o", "arr-%A_%a.out", "--wrap",
                         "echo T=$CRANE_ARRAY_TASK_ID S=$SLURM_ARRAY_TASK_ID A=$CRANE_ARRAY_JOB_ID "
                         "N=$CRANE_ARRAY_TASK_COUNT; date +%s.%N; sleep 0.6; date +%s.%N")
    assert array_record(cluster, aid).status == JobState.Completed
    spans = []
    for t in range(1, 7):
        lines = cluster.output(f"arr-{aid}_{t}.out").split("\n")
        assert lines[0] == f"T={t} S={t} A={aid} N=6"
        spans.append((float(lines[1]), float(lines[2])))
    most = max(sum(1 for a, b in spans if a <= start < b) for start, _ in spans)
    assert most <= 2, spans
    rows = tasks(cluster, aid)
    assert [r.array_task_id for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r.status == JobState.Completed and r.array_job_id == aid for r in rows)


def test_a_10000_task_array_with_max_10(cluster):
    t0 = time.perf_counter()
    aid = cluster.cbatch("--array", "0-9999%10", "-c", "0.5", "-o", "/dev/null", "--wrap", "sleep 0.3")
    submit_s = time.perf_counter() - t0
    assert submit_s < 5, submit_s  # the whole cbatch process; crane bench array measures the RPC
    seen_running: set[int] = set()
    deadline = time.time() + 8
    while time.time() < deadline:
        proc = cluster.run("cqueue", "-N", "-o", "%j %t")
        assert proc.returncode == 0, proc.stderr
        rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(f"{aid}_")]
        running = [r for r in rows if r[1] == "Running"]
        assert len(running) <= 10, rows
        seen_running.update(int(r[0].split("_")[1]) for r in running)
        waiting = [r for r in rows if r[1] == "Pending"]
        assert len(waiting) == 1 and waiting[0][0].startswith(f"{aid}_[") and waiting[0][0].endswith("%10]"), rows
        time.sleep(0.2)
    assert len(seen_running) > 10  # tasks came and went, the window moved on
    proc = cluster.run("ccancel", str(aid))
    assert proc.returncode == 0 and f"Job {aid}" in proc.stdout, proc
    record = array_record(cluster, aid)
    assert record.status == JobState.Cancelled
    assert len(tasks(cluster, aid)) < 1000  # the thousands still to come never became jobs


def test_cancel_one_task_to_come_and_depend_on_the_whole_array(cluster):
    aid = cluster.cbatch("--array", "1-3%1", "-c", "0.5", "--wrap", "sleep 0.3")
    proc = cluster.run("ccancel", f"{aid}_3")
    assert proc.returncode == 0 and f"Job {aid}_3 cancelled successfully." in proc.stdout, proc
    after = cluster.cbatch("-d", f"afterok:{aid}", "--wrap", "true")
    assert cluster.job(after).status == JobState.Pending
    record = array_record(cluster, aid)
    assert [t.array_task_id for t in tasks(cluster, aid)] == [1, 2]
    assert record.status == JobState.Cancelled  # one task never ran: the array did not complete
    child = cluster.wait_done(after)
    assert child.status == JobState.Cancelled and child.pending_reason == "DependencyNeverSatisfied"


def test_afterok_on_an_array_runs_after_every_task(cluster):
    aid = cluster.cbatch("--array", "1-4", "-c", "0.5", "--wrap", "sleep 0.5")
    after = cluster.cbatch("-d", f"afterok:{aid}", "-o", "after-%j.out", "--wrap", "date +%s.%N")
    done = cluster.wait_done(after, timeout=60)
    assert done.status == JobState.Completed
    ends = [t.end_time for t in tasks(cluster, aid)]
    assert len(ends) == 4 and done.start_time >= max(ends)
    shown = cluster.run("ccontrol", "show", "job", f"{aid}_2")
    assert shown.returncode == 0 and shown.stdout.startswith(f"JobId={aid}_2 "), shown


def test_the_history_keeps_each_task_under_its_array():
    from crane_e2e import running_cluster

    settings = {"Plugins": {"Events": ["sql"], "Accounting": "sql"}, "CraneCtld": {"FinishedJobRetention": 1}}
    with running_cluster(nodes=2, cpus=2, **settings) as c:
        aid = c.cbatch("--array", "1-3", "-c", "0.5", "--wrap", "exit $CRANE_ARRAY_TASK_ID")
        array_record(c, aid)
        deadline = time.time() + 30
        rows: list[list[str]] = []
        while time.time() < deadline:  # once the controller forgot them, only the history has the tasks
            forgotten = f"{aid}_" not in c.run("cqueue", "-t", "all", "-N", "-o", "%j").stdout
            out = c.run("cacct", "-j", str(aid), "-N", "-o", "%j %t %e")
            rows = [line.split() for line in out.stdout.splitlines() if "." not in line.split()[0]]
            if forgotten and len(rows) == 3:
                break
            time.sleep(0.3)
        assert rows == [[f"{aid}_1", "Failed", "1:0"], [f"{aid}_2", "Failed", "2:0"], [f"{aid}_3", "Failed", "3:0"]]
