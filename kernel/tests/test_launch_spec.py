"""The typed launch contract: the controller builds a LaunchSpec, the node validates it on receipt,
the supervisor reads it and reports with StepStatus models; a malformed spec becomes a failed start."""

from __future__ import annotations

import json
import os
import signal

import pytest
from crane_common.states import EC_SPAWN_FAILED
from crane_kernel import messages as m
from crane_kernel.craned.supervisor import Supervisor, build_step
from crane_kernel.errors import BusMessageError


def _launch_of(h, jid):
    launches = [msg for msg in h.sent(m.LaunchStep) if msg.job_id == jid]
    assert launches, "no launch was published"
    return launches[-1]


def test_controller_launch_round_trips_through_the_bus(ctld):
    h = ctld()
    h.register_all()
    jid = h.submit(name="rt", cpus_per_task=1.5, mem_per_node=256 << 20, time_limit=120, output="o-%j.txt",
                   env={"FOO": "bar"})
    h.ctl.schedule_cycle()
    launch = _launch_of(h, jid)
    assert isinstance(launch.spec, m.LaunchSpec)
    back = m.decode(m.encode(launch))
    assert back == launch and back.spec_error == ""
    spec = back.spec
    assert (spec.name, spec.cpus, spec.mem_bytes, spec.time_limit) == ("rt", 1.5, 256 << 20, 120)
    assert spec.output == "o-%j.txt"
    assert spec.env["FOO"] == "bar" and spec.env["CRANE_JOB_ID"] == str(jid)
    assert "pids_max" not in back.spec.model_dump() and "cgroup_prefix" not in back.spec.model_dump()


def test_a_malformed_spec_arrives_as_an_error_not_a_dead_letter():
    good = m.encode(m.LaunchStep(job_id=5, epoch=2, spec=m.LaunchSpec(uid=0, gid=0, script="true")))
    msg = m.decode(good.replace(b'"uid":0', b'"uid":-3').replace(b'"open_mode":"truncate"', b'"open_mode":"x"'))
    assert msg.spec is None and msg.job_id == 5 and msg.epoch == 2
    assert msg.spec_error.startswith("spec.uid:") and "(+1 more)" in msg.spec_error and "\n" not in msg.spec_error
    with pytest.raises(BusMessageError, match="job_id"):  # the envelope itself must be valid
        m.decode(good.replace(b'"job_id":5', b'"job_id":"five"'))


def test_build_step_reads_the_typed_spec(tmp_path):
    spec = m.LaunchSpec(uid=os.getuid(), gid=os.getgid(), script="echo hi\n", name="nm", cwd=str(tmp_path),
                        output="out-%j-%x.txt", interpreter="/bin/bash -e", cpus=0.5, env={"A": "1"})
    step = build_step("cn01", str(tmp_path), 42, spec)
    assert step.job_id == 42 and step.stdout == str(tmp_path / "out-42-nm.txt")
    assert step.interpreter == ["/bin/bash", "-e"] and step.cpus == 0.5 and step.env["A"] == "1"
    assert open(step.script_path).read() == "echo hi\n"


class _ReportedError(Exception):
    pass


def _run_supervisor(tmp_path, request):
    """Run a Supervisor in-process up to its final report; return the StepStatus it would send."""
    sup = Supervisor("cn01", str(tmp_path), request, pm=None, redis_url="redis://127.0.0.1:1/0",
                     stream="s", kill_wait=1.0)
    got = []

    def final(status):
        got.append(status)
        raise _ReportedError

    def fail(exc):
        raise exc  # the test's own stop signal: not a supervisor failure to report

    sup._final = final  # type: ignore[method-assign]
    sup._fail = fail  # type: ignore[method-assign]
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)}
    try:
        with pytest.raises(_ReportedError):
            sup.run()
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    return got[0]


def test_supervisor_reports_a_malformed_launch_as_failed(tmp_path):
    # what craned hands the launcher for a launch whose spec failed validation on receipt
    raw = m.encode(m.LaunchStep(job_id=9, epoch=3, spec=m.LaunchSpec(uid=0, gid=0, script="true")))
    msg = m.decode(raw.replace(b'"cpus":1.0', b'"cpus":-1'))
    request = json.loads(json.dumps({"job_dir": str(tmp_path), "job_id": msg.job_id, "step_id": msg.step_id,
                                     "epoch": msg.epoch, "spec": msg.spec and msg.spec.model_dump(),
                                     "spec_error": msg.spec_error}))
    status = _run_supervisor(tmp_path, request)
    assert isinstance(status, m.StepStatus)
    assert (status.job_id, status.epoch, status.state, status.exit_code) == (9, 3, "failed_to_start", EC_SPAWN_FAILED)
    assert status.reason.startswith("invalid launch spec: spec.cpus:")
    # a request whose spec was damaged after receipt is caught by the supervisor's own validation
    request.update(spec={"uid": "root"}, spec_error="")
    status = _run_supervisor(tmp_path, request)
    assert status.state == "failed_to_start" and "spec.uid" in status.reason and "spec.script" not in status.reason
    assert m.decode(m.encode(status)) == status
