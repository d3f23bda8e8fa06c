"""End to end: bad input gets a one-line error and an exit code, never a traceback or lost state."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from crane_common.states import JobState
from crane_e2e import cli

pytestmark = pytest.mark.e2e


def _one_line_error(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.strip() or proc.stdout.strip()


def test_unknown_partition(cluster):
    proc = cluster.run("cbatch", "-p", "nosuch", "--wrap", "true")
    assert proc.returncode == 4
    assert "nosuch" in proc.stdout + proc.stderr
    _one_line_error(proc)


def test_impossible_request(cluster):
    proc = cluster.run("cbatch", "-c", "64", "--wrap", "true")
    assert proc.returncode == 4
    assert "exceed" in (proc.stdout + proc.stderr).lower()
    _one_line_error(proc)


def test_unknown_flag(cluster):
    proc = cluster.run("cbatch", "--no-such-flag", "--wrap", "true")
    assert proc.returncode == 2
    _one_line_error(proc)


def test_binary_script(cluster, tmp_path):
    bad = tmp_path / "bin.sh"
    bad.write_bytes(b"\x7fELF\x00\x01\x02binary")
    proc = cluster.run("cbatch", str(bad))
    assert proc.returncode == 2
    _one_line_error(proc)


def test_malformed_config(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("ClusterName: x\nNodes: [ {name: cn01, cpu: two} ]\nPartitions: []\n")
    env = dict(os.environ, CRANE_CONFIG=str(cfg))
    proc = subprocess.run([cli("cranectld")], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert str(cfg) in proc.stderr and "Nodes" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([cli("cqueue")], env=dict(os.environ, CRANE_CONFIG=str(tmp_path / "missing.yaml")),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    _one_line_error(proc)


def test_malformed_bus_messages_are_logged_and_skipped(cluster):
    # the bus is closed: a node writes only its own report stream, the controller (or an admin) a node's stream
    r = cluster.lc.bus("node-cn01").redis
    stream = f"crane:{cluster.lc.cfg.ClusterName}:report:cn01"
    r.xadd(stream, {"m": b"{not json"})
    r.xadd(stream, {"m": b'{"kind":"step_status","node":"cn01"}'})
    r.xadd(stream, {"junk": b"x"})
    node_stream = f"crane:{cluster.lc.cfg.ClusterName}:node:cn01"
    cluster.lc.bus("controller").redis.xadd(node_stream, {"m": b'{"kind":"launch_step","job_id":"x"}'})
    r = cluster.lc.bus("admin").redis
    time.sleep(1.0)
    assert cluster.lc.ctld.poll() is None
    assert cluster.lc.craneds["cn01"].poll() is None
    jid = cluster.cbatch("-w", "cn01", "--wrap", "true")
    assert cluster.wait_done(jid).status == JobState.Completed
    assert r.xlen(stream + ":dead") >= 3
    assert r.xlen(node_stream + ":dead") >= 1


def test_cancel_unknown_job(cluster):
    proc = cluster.run("ccancel", "999999")
    assert proc.returncode == 4
    _one_line_error(proc)


def test_out_of_range_numbers_are_one_line_refusals(cluster):
    for args, words in ((["-c", "1e-300"], "below the minimum"), (["--mem", "1B"], "below the minimum"),
                        (["-c", "5000"], "exceed"), (["--comment", "two\nlines"], "control character")):
        proc = cluster.run("cbatch", *args, "--wrap", "true")
        assert proc.returncode == 4, (args, proc.stderr)
        assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        _one_line_error(proc)


def test_host_list_expansion_limit(cluster):
    start = time.monotonic()
    for cmd in (["cinfo", "-n", "cn[01-9999999999]"], ["cqueue", "-w", "cn[01-9999999999]"],
                ["cbatch", "-w", "cn[01-9999999999]", "--wrap", "true"]):
        proc = cluster.run(*cmd)
        assert proc.returncode == 2 and "more than the limit" in proc.stderr, (cmd, proc.stderr)
        _one_line_error(proc)
    assert time.monotonic() - start < 15


def test_unknown_state_number_is_invalid_argument(cluster):
    import grpc
    from crane_common.proto import crane_pb2 as pb

    client = cluster.client
    with pytest.raises(grpc.RpcError) as err:
        client.stub.QueryJobsInfo(pb.QueryJobsInfoRequest(states=[77]), metadata=client.metadata)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "unknown job state 77"
    assert cluster.lc.ctld.poll() is None
