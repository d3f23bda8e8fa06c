"""The node emulator's protocol handling, against a real Redis with the closed bus (ACL users, signed commands).

The test plays the controller: it signs commands with the real :class:`CommandSigner` and reads the
report streams; the emulator runs its loop one :meth:`NodeEmulator.step` at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crane_common.states import EC_EXCEED_TIME_LIMIT, EC_SPAWN_FAILED, EC_TERMINATED
from crane_kernel import messages as m
from crane_kernel.bus import Bus
from crane_kernel.bus import credentials as creds
from crane_kernel.bus.client import FIELD
from crane_kernel.bus.signing import CommandSigner
from crane_kernel.config import parse_config
from crane_kernel.errors import CraneError
from crane_tools.localcluster import default_config
from crane_tools.nodeemu import NodeEmulator, TimerWheel, job_duration, job_exit_code
from crane_tools.redis_server import RedisServer


class Rig:
    """A closed bus on a private Redis, the controller's signing bus, and an emulator of 3 nodes."""

    def __init__(self, tmp: Path) -> None:
        base = str(tmp / "base")
        os.makedirs(base)
        draft = default_config(base, "redis://127.0.0.1:1/0", 1, nodes=3, cpus=4, memory="2G", cluster="emu",
                               Craned={"PingInterval": 0.3})
        pre = parse_config(draft)
        self.secret = creds.ensure(pre.bus_dir, "emu", list(pre.node_table()))
        admin = creds.load_role(pre.bus_dir, "admin")
        self.redis = RedisServer(tmp / "redis", acl_file=os.path.join(pre.bus_dir, creds.ACL_FILE),
                                 auth=(admin.user, admin.password))
        self.redis.start()
        self.cfg = parse_config({**draft, "RedisUrl": self.redis.url})
        self.epoch = int(time.time() * 1000)
        self.ctld = self.controller_bus(self.epoch)
        self.admin = Bus.from_config(self.cfg, "admin")
        self.emu = self.emulator()
        self.emu.connect()
        self.emu.register_all()

    def controller_bus(self, epoch: int) -> Bus:
        """The controller's bus, signing with the nodes' command keys (a new controller start: a new epoch)."""
        signer = CommandSigner("crane:emu", lambda n: creds.command_key(self.secret, n), epoch)
        return Bus.from_config(self.cfg, "controller", signer=signer)

    def emulator(self) -> NodeEmulator:
        """A fresh emulator of every node of the config."""
        return NodeEmulator(self.cfg, poll_interval=0.01, idle_interval=0.01)

    def send(self, node: str, msg: m.BusMessage) -> None:
        """Publish a signed command to ``node``."""
        self.ctld.publish(self.ctld.node_stream(node), msg)

    def reports(self, node: str) -> list[m.BusMessage]:
        """Every message on ``node``'s report stream so far, decoded (then the stream is emptied)."""
        stream = self.admin.report_stream(node)
        out = [m.decode(fields[FIELD]) for _id, fields in self.admin.redis.xrange(stream)]
        self.admin.redis.delete(stream)
        return out

    def statuses(self, node: str) -> list[m.StepStatus]:
        """The step statuses of ``node``'s reports so far."""
        return [r for r in self.reports(node) if isinstance(r, m.StepStatus)]

    def dead(self, node: str) -> list[dict[bytes, bytes]]:
        """The node's dead-lettered commands."""
        return [f for _id, f in self.admin.redis.xrange(self.admin.node_stream(node) + ":dead")]

    def close(self) -> None:
        """Stop everything."""
        self.emu.close()
        for bus in (self.ctld, self.admin):
            bus.close()
        self.redis.stop()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """A started :class:`Rig`."""
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()


def spec(**fields: Any) -> m.LaunchSpec:
    """A launch spec of a job of uid 1000."""
    return m.LaunchSpec(**{"uid": 1000, "gid": 1000, "script": "#!/bin/bash\ntrue\n", **fields})


def launch(job_id: int, epoch: int = 1, **fields: Any) -> m.LaunchStep:
    """A LaunchStep of job ``job_id``."""
    return m.LaunchStep(job_id=job_id, epoch=epoch, spec=spec(**fields))


def test_registers_every_node_on_its_own_report_stream(rig: Rig) -> None:
    for name in ("cn01", "cn02", "cn03"):
        (reg,) = rig.reports(name)
        assert isinstance(reg, m.NodeRegister)
        assert (reg.node, reg.cpus, reg.mem) == (name, 4.0, 2 << 30)
        assert reg.steps == [] and reg.ended == []
    # each node reads its stream as itself: its consumer in group "craned" is named after it
    consumers = rig.admin.redis.xinfo_consumers(rig.admin.node_stream("cn02"), "craned")
    assert consumers == [] or consumers[0]["name"] == b"cn02"


def test_wrong_credentials_are_refused_by_redis(rig: Rig) -> None:
    emu = rig.emulator()
    node = emu.nodes["cn01"]
    node.auth = node.auth.replace(node.creds.password.encode(), b"x" * len(node.creds.password))
    emu.connect()
    with pytest.raises(ConnectionError, match="cn01: redis refused its credentials"):
        emu.register_all()
    emu.close()


def test_a_job_runs_for_its_duration_then_waits_for_free_job(rig: Rig) -> None:
    rig.reports("cn01")
    rig.send("cn01", launch(7, env={"CRANE_EMU_DURATION": "0.3", "CRANE_EMU_EXIT_CODE": "3"}))
    rig.emu.step()
    (running,) = rig.statuses("cn01")
    assert (running.job_id, running.state, running.epoch) == (7, "running", 1)
    rig.emu.step()
    assert rig.statuses("cn01") == []  # still running
    time.sleep(0.35)
    rig.emu.step()
    reports = rig.reports("cn01")
    finished = [r for r in reports if isinstance(r, m.StepStatus)]
    assert [(s.state, s.exit_code) for s in finished] == [("finished", 3)]
    beats = [r for r in reports if isinstance(r, m.NodeHeartbeat)]
    assert beats and beats[-1].steps == [] and beats[-1].ended == [(7, 0, 1)]
    assert reports.index(finished[0]) < reports.index(beats[-1])  # the final status comes before the heartbeat
    rig.send("cn01", m.FreeJob(job_id=7, epoch=1))
    time.sleep(0.3)
    rig.emu.step()
    beat = [r for r in rig.reports("cn01") if isinstance(r, m.NodeHeartbeat)][-1]
    assert beat.ended == [] and beat.steps == []
    snap = rig.emu.snapshot()
    assert sum(snap["rtt_counts"]) == 1  # one report -> FreeJob round trip measured
    assert (snap["finished"], snap["freed"]) == (1, 1)


def test_running_jobs_are_listed_in_heartbeats(rig: Rig) -> None:
    rig.send("cn02", launch(11, env={"CRANE_EMU_DURATION": "100"}))
    rig.emu.step()
    time.sleep(0.35)
    rig.emu.step()
    beat = [r for r in rig.reports("cn02") if isinstance(r, m.NodeHeartbeat)][-1]
    assert beat.steps == [(11, 0, 1)] and beat.running == [11]


def test_time_limit_ends_a_longer_job_as_exceeded(rig: Rig) -> None:
    rig.send("cn01", launch(8, script="#!/bin/bash\nsleep 50\n", time_limit=1))
    rig.emu.step()
    time.sleep(1.05)
    rig.emu.step()
    final = [s for s in rig.statuses("cn01") if s.state == "finished"]
    assert [(s.job_id, s.exit_code, s.reason) for s in final] == [(8, EC_EXCEED_TIME_LIMIT, "time limit exceeded")]


def test_update_step_shortens_the_time_limit(rig: Rig) -> None:
    rig.send("cn01", launch(9, env={"CRANE_EMU_DURATION": "100"}, time_limit=100))
    rig.emu.step()
    rig.send("cn01", m.UpdateStep(job_id=9, time_limit=1, epoch=1))
    rig.emu.step()
    time.sleep(1.05)
    rig.emu.step()
    assert [s.exit_code for s in rig.statuses("cn01") if s.state == "finished"] == [EC_EXCEED_TIME_LIMIT]


def test_terminate_ends_a_running_job_and_cancels_one_not_yet_launched(rig: Rig) -> None:
    rig.send("cn01", launch(20, env={"CRANE_EMU_DURATION": "100"}))
    rig.send("cn01", m.TerminateStep(job_id=20, reason="cancel", epoch=1))
    rig.send("cn01", m.TerminateStep(job_id=21, reason="cancel", epoch=1))
    rig.send("cn01", launch(21))
    rig.send("cn01", m.TerminateStep(job_id=22, reason="timeout", epoch=0))  # unknown: only marked
    rig.emu.step()
    got = [(s.job_id, s.state, s.exit_code, s.reason) for s in rig.statuses("cn01")]
    assert got == [(20, "running", 0, ""), (20, "finished", EC_TERMINATED, "cancelled"),
                   (21, "finished", EC_TERMINATED, "cancelled before launch")]


def test_terminate_for_another_launch_leaves_the_job_alone(rig: Rig) -> None:
    rig.send("cn01", launch(30, epoch=2, env={"CRANE_EMU_DURATION": "100"}))
    rig.send("cn01", m.TerminateStep(job_id=30, reason="node", epoch=1))
    rig.send("cn01", launch(30, epoch=2))  # a duplicate delivery of the same launch
    rig.emu.step()
    assert [(s.job_id, s.state) for s in rig.statuses("cn01")] == [(30, "running")]


def test_bad_commands_are_survived_and_reported(rig: Rig) -> None:
    rig.send("cn03", m.LaunchStep.model_validate({"kind": "launch_step", "job_id": 40, "epoch": 1,
                                                  "spec": {"uid": -5, "gid": 0, "script": "x"}}))
    rig.send("cn03", m.StartStep(job_id=41, step_id=1, epoch=1, spec=None, spec_error="x"))
    rig.send("cn03", launch(42, env={"CRANE_EMU_DURATION": "0"}, time_limit=0))
    rig.emu.step()
    got = [(s.job_id, s.state, s.exit_code) for s in rig.statuses("cn03")]
    assert got == [(40, "failed_to_start", EC_SPAWN_FAILED), (41, "failed_to_start", EC_SPAWN_FAILED),
                   (42, "running", 0)]


def test_unsigned_forged_and_replayed_commands_are_refused(rig: Rig) -> None:
    stream = rig.admin.node_stream("cn01")
    r = rig.admin.redis
    r.xadd(stream, {FIELD: m.encode(launch(50))})                          # unsigned
    other = CommandSigner("crane:emu", lambda n: creds.command_key(rig.secret, "cn02"), rig.epoch + 1)
    r.xadd(stream, other.fields(stream, m.encode(launch(51))))            # signed with cn02's key
    r.xadd(stream, {FIELD: b"{not json"})                                  # garbage
    r.xadd(stream, {b"x": b"y"})                                           # no message
    rig.send("cn01", launch(52, env={"CRANE_EMU_DURATION": "100"}))        # genuine
    rig.emu.step()
    assert [(s.job_id, s.state) for s in rig.statuses("cn01")] == [(52, "running")]
    reasons = [f[b"dlq_reason"].decode() for f in rig.dead("cn01")]
    assert reasons[0] == "refused: unsigned command"
    assert reasons[1] == "refused: bad signature"
    assert reasons[2].startswith("malformed JSON")
    assert reasons[3] == "entry has no 'm' field"
    assert len(reasons) == 4
    # a replayed entry (same signature and sequence) is refused, also by a restarted emulator
    rig.emu.save_sequences()
    restarted = rig.emulator()
    restarted.connect()
    signed = rig.ctld.signer.fields(stream, m.encode(launch(53)))           # accepted: newer
    r.xadd(stream, signed)
    r.xadd(stream, signed)                                                  # replayed
    restarted.step()
    assert [(s.job_id, s.state) for s in rig.statuses("cn01") if s.job_id == 53] == [(53, "running")]
    assert rig.dead("cn01")[-1][b"dlq_reason"].decode().startswith("refused: replayed or stale command")
    restarted.close()


def test_a_new_controller_epoch_is_accepted_an_old_one_is_not(rig: Rig) -> None:
    rig.send("cn02", launch(60, env={"CRANE_EMU_DURATION": "100"}))
    rig.emu.step()
    old = rig.controller_bus(rig.epoch - 1)
    old.publish(old.node_stream("cn02"), m.TerminateStep(job_id=60, epoch=1))
    new = rig.controller_bus(rig.epoch + 5)
    new.publish(new.node_stream("cn02"), m.FreeJob(job_id=61))
    rig.emu.step()
    assert [(s.job_id, s.state) for s in rig.statuses("cn02")] == [(60, "running")]
    assert rig.dead("cn02")[-1][b"dlq_reason"].decode().startswith("refused: replayed or stale")
    old.close()
    new.close()


def test_acked_commands_are_trimmed(rig: Rig) -> None:
    for job in range(70, 80):
        rig.send("cn01", launch(job, env={"CRANE_EMU_DURATION": "100"}))
    rig.emu.step()
    assert rig.admin.redis.xlen(rig.admin.node_stream("cn01")) == 0
    assert rig.admin.redis.xpending(rig.admin.node_stream("cn01"), "craned")["pending"] == 0


def test_job_duration_sources() -> None:
    assert job_duration(spec(env={"CRANE_EMU_DURATION": "2.5"}, time_limit=60)) == 2.5
    assert job_duration(spec(script="#!/bin/bash\nsleep 3\necho\n  sleep 1.5  # more\n", time_limit=60)) == 4.5
    assert job_duration(spec(script="sleep $X\n", time_limit=60)) == 60
    assert job_duration(spec(env={"CRANE_EMU_DURATION": "soon"}, time_limit=0), default=9) == 9
    assert job_exit_code(spec(env={"CRANE_EMU_EXIT_CODE": "7"})) == 7
    assert job_exit_code(spec(env={"CRANE_EMU_EXIT_CODE": "999"})) == 0


def test_timer_wheel_pops_due_items_in_order() -> None:
    wheel = TimerWheel(resolution=0.1, now=100.0)
    wheel.add(100.35, "c")
    wheel.add(100.12, "a")
    wheel.add(100.15, "b")
    wheel.add(99.0, "late")  # in the past: the next due()
    assert wheel.due(100.0) == ["late"]
    assert wheel.due(100.2) == ["a", "b"]
    assert len(wheel) == 1
    assert wheel.due(10_000.0) == ["c"]
    assert wheel.due(10_000.0) == []


def test_state_directory_is_private_and_a_foreign_one_is_refused(rig: Rig, tmp_path: Path) -> None:
    state = os.path.join(rig.cfg.base_dir, "nodeemu")
    assert os.stat(state).st_mode & 0o777 == 0o700
    rig.send("cn01", launch(90, env={"CRANE_EMU_DURATION": "100"}))
    rig.emu.step()
    assert os.stat(os.path.join(state, "sequences.json")).st_mode & 0o777 == 0o600
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)
    with pytest.raises(CraneError, match="owned by uid 65534"):
        NodeEmulator(rig.cfg, state_dir=str(foreign))


def test_a_lost_connection_loses_no_status_and_no_command(rig: Rig) -> None:
    rig.reports("cn01")
    rig.send("cn01", launch(95, env={"CRANE_EMU_DURATION": "0.2"}))
    rig.send("cn01", launch(96, env={"CRANE_EMU_DURATION": "100"}))
    rig.emu.sweep()                        # both read and applied, their statuses queued ...
    rig.emu.sock.close()                   # ... and the connection is gone before the flush
    with pytest.raises(OSError):
        rig.emu.flush()
    rig.emu.lost_connection()
    rig.emu.connect()
    rig.emu.step()                         # re-reads the unacked commands (duplicates: ignored), sends the queue
    assert [(s.job_id, s.state) for s in rig.statuses("cn01")] == [(95, "running"), (96, "running")]
    assert rig.dead("cn01") == []          # nothing refused as a replay
    time.sleep(0.25)
    rig.emu.step()
    assert [(s.job_id, s.state) for s in rig.statuses("cn01")] == [(95, "finished")]
    assert rig.admin.redis.xpending(rig.admin.node_stream("cn01"), "craned")["pending"] == 0


def test_only_busy_nodes_are_swept_between_full_sweeps(rig: Rig) -> None:
    emu = rig.emu
    emu.idle_interval = 60.0
    rig.send("cn01", launch(100, env={"CRANE_EMU_DURATION": "100"}))
    emu.next_full = 0.0
    emu.step()                      # a full sweep: cn01 got a command, so it is hot now
    rig.send("cn01", launch(101, env={"CRANE_EMU_DURATION": "100"}))
    rig.send("cn02", launch(102, env={"CRANE_EMU_DURATION": "100"}))
    emu.step()                      # only the hot node is read
    assert [s.job_id for s in rig.statuses("cn01")] == [100, 101]
    assert rig.statuses("cn02") == []
    emu.next_full = 0.0
    emu.step()                      # the next full sweep reads the idle node too
    assert [s.job_id for s in rig.statuses("cn02")] == [102]

