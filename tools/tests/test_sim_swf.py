"""SWF parsing and the simulator's job model."""

from __future__ import annotations

import gzip
from pathlib import Path

from crane_tools.sim.model import build_jobs, job_shape
from crane_tools.sim.swf import parse_swf, read_swf

TRACE = """\
; Version: 2.2
; Computer: test machine
; MaxNodes: 8
; MaxProcs: 16
; Note: a comment: with a colon
;       a continuation line without a key
;
    1      0   5   100    4  -1 -1    4   200 -1 1 10 20 -1 1 1 -1 -1
    2      5   0    50    2 50.5 -1   -1   -1 -1 1 11 21 -1 1 1 -1 -1

    3      3   0   300    2  -1 -1    2   120 -1 0 10 20 -1 1 1 -1 -1
; a comment in the middle
    4      3   0    -1    2  -1 -1    2   120 -1 5 10 20 -1 1 1 -1 -1
    5      8   0    10    0  -1 -1   -1   100 -1 1 10 20 -1 1 1 -1 -1
    6      9   0    10   17  -1 -1   17   100 -1 1 10 20 -1 1 1 -1 -1
    7      9   0  12.7    1  -1 -1    1  60.0 -1 1 10 20 -1 1 1 -1 -1
short line 1 2
"""


def test_parse_header_and_records() -> None:
    tr = parse_swf(TRACE.splitlines())
    assert tr.header["MaxProcs"] == "16"
    assert tr.header["Note"] == "a comment: with a colon"
    assert tr.max_procs == 16
    assert [r.job for r in tr.records] == [1, 2, 3, 4, 5, 6, 7]
    r1 = tr.records[0]
    assert (r1.submit, r1.wait, r1.run, r1.alloc, r1.req_procs, r1.req_time) == (0, 5, 100, 4, 4, 200)
    assert (r1.user, r1.group) == (10, 20)
    assert tr.records[6].run == 12 and tr.records[6].req_time == 60  # decimals are truncated


def test_max_procs_falls_back_to_max_nodes() -> None:
    tr = parse_swf(["; MaxNodes: 32", "1 0 0 1 1 -1 -1 1 1 -1 1 1 1 -1 1 1 -1 -1"])
    assert tr.max_procs == 32
    assert parse_swf(["1 0 0 1 1 -1 -1 1 1"]).max_procs is None


def test_read_plain_gzip_and_max_jobs(tmp_path: Path) -> None:
    plain = tmp_path / "t.swf"
    plain.write_text(TRACE)
    packed = tmp_path / "t.swf.gz"
    packed.write_bytes(gzip.compress(TRACE.encode()))
    a = read_swf(str(plain))
    b = read_swf(str(packed))
    assert a == b
    assert len(a.records) == 7
    first3 = read_swf(str(packed), max_jobs=3)
    assert [r.job for r in first3.records] == [1, 2, 3]
    assert first3.max_procs == 16


def test_model_rules() -> None:
    tr = parse_swf(TRACE.splitlines())
    jobs, skipped = build_jobs(tr.records, 16)
    # job 4: negative run time; job 5: size unknown (0); job 6: 17 > 16 procs
    assert skipped == 3
    assert [j.job_id for j in jobs] == [1, 3, 2, 7]  # by submit time, then job number
    by = {j.job_id: j for j in jobs}
    assert (by[1].size, by[1].estimate, by[1].run) == (4, 200, 100)
    assert (by[2].size, by[2].estimate, by[2].run) == (2, 50, 50)  # size from field 5, estimate from run
    assert (by[3].estimate, by[3].run) == (120, 120)  # run capped at the estimate
    assert by[1].recorded_wait == 5
    exact, _ = build_jobs(tr.records, 16, exact_estimates=True)
    assert all(j.estimate == j.run for j in exact)
    assert {j.job_id: j.run for j in exact}[3] == 300


def test_job_shape_node_model() -> None:
    assert job_shape(5, 1) == (5, 1)
    assert job_shape(3, 4) == (1, 3)
    assert job_shape(4, 4) == (1, 4)
    assert job_shape(5, 4) == (2, 4)
    assert job_shape(9, 4) == (3, 4)
