"""Array ids on the command line (A, A_T, A_[...]) and in tables (crane_cli/arrayids.py)."""

from __future__ import annotations

import pytest
from crane_common.proto import crane_pb2 as pb

from crane_cli import cbatch
from crane_cli.arrayids import collapse_pending, display_id, parse_refs
from crane_cli.errors import CliError


def test_refs_of_every_form() -> None:
    assert parse_refs(["12,13_4", "14_[1-3,7]"], "x") == ([12], [(13, 4), (14, 1), (14, 2), (14, 3), (14, 7)])
    for bad in ("12_", "12_x", "x_1", "12_[3-1]", "0_1"):
        with pytest.raises(CliError) as exc:
            parse_refs([bad], "x")
        assert exc.value.code == 2


def test_how_jobs_tasks_and_arrays_are_named() -> None:
    assert display_id(pb.JobInfo(job_id=5)) == "5"
    assert display_id(pb.JobInfo(job_id=9, array_job_id=5, array_task_id=0)) == "5_0"
    assert display_id(pb.JobInfo(job_id=5, array_job_id=5, array_pending="3-99%4")) == "5_[3-99%4]"


def test_waiting_tasks_fold_into_their_arrays_row() -> None:
    rows = [pb.JobInfo(job_id=5, array_job_id=5, array_pending="4-9%2"),
            pb.JobInfo(job_id=6, array_job_id=5, array_task_id=1, status=1),
            pb.JobInfo(job_id=7, array_job_id=5, array_task_id=2),
            pb.JobInfo(job_id=8, array_job_id=5, array_task_id=3),
            pb.JobInfo(job_id=20, array_job_id=19, array_task_id=1), pb.JobInfo(job_id=21, array_job_id=19,
                                                                                 array_task_id=2)]
    out = collapse_pending(rows)
    assert [display_id(j) for j in out] == ["5_[2-3,4-9%2]", "5_1", "19_[1-2]"]


def test_array_and_repeat_exclude_each_other(tmp_path) -> None:
    with pytest.raises(CliError, match="--array is exclusive with --repeat"):
        cbatch.prepare(["--array", "1-3", "--repeat", "2", "--wrap", "true"])
    _, fields, _ = cbatch.prepare(["--array", "1-3%1", "--wrap", "true"])
    assert fields["array"] == "1-3%1"
