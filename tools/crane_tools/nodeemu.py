"""``python -m crane_tools.nodeemu``: one process that is N virtual nodes on the real bus, for the controller at scale.

Each emulated node does what a ``craned`` does on the bus (:mod:`crane_kernel.craned.main`), as
that node: it authenticates as the node's own ACL user (``node-{name}``, credentials from
``Bus.CredentialsDir`` exactly as craned loads them), registers (:class:`~crane_kernel.messages.NodeRegister`),
heartbeats every ``Craned.PingInterval`` with the steps it runs and the ended ones the controller has
not freed, reads its command stream ``crane:{c}:node:{name}`` in consumer group ``craned`` (consumer
name: the node's), checks every command's signature and sequence with the node's command key
(:class:`~crane_kernel.bus.signing.CommandVerifier`; refused and undecodable entries go to the node's
dead-letter stream), and reports :class:`~crane_kernel.messages.StepStatus` on ``crane:{c}:report:{name}``.

A job "runs" without a process: ``running`` as soon as its ``LaunchStep`` is read, ``finished`` when
its duration is over (a timer wheel), or when a ``TerminateStep`` ends it. The duration is, first
found: the job's environment variable ``CRANE_EMU_DURATION`` (seconds), the sum of the script's
``sleep N`` lines, the job's time limit, else ``--default-duration`` (0: until cancelled). A duration
above the time limit ends at the limit as ``ExceedTimeLimit``; ``CRANE_EMU_EXIT_CODE`` (0..255) gives
the exit code. Task steps (``StartStep``, crun) are refused as ``failed_to_start``.

Scale: all nodes share ONE Redis connection. A sweep is one pipelined round trip per chunk of
nodes: ``AUTH node-x`` + ``XREADGROUP`` for each (precomputed bytes, replies parsed by hiredis);
the busy nodes (a command or a final status in the last :data:`HOT_S` s) are swept every poll
interval, every node every idle interval. What a loop produces (reports, acks, trims, dead
letters) goes out in one more pipeline. The
emulator's state is in memory: a restarted emulator registers its nodes empty (like rebooted
nodes); the command sequences it accepted are kept in ``<state-dir>/sequences.json`` so replays
stay refused across restarts.
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import hiredis
from crane_common.states import EC_EXCEED_TIME_LIMIT, EC_SPAWN_FAILED, EC_TERMINATED
from crane_kernel import messages as m
from crane_kernel.bus.client import DEAD_LETTER_MAXLEN, FIELD
from crane_kernel.bus.credentials import BusCredentials, _private_dir, load_role, node_user
from crane_kernel.bus.signing import CommandVerifier
from crane_kernel.errors import BusMessageError
from crane_kernel.resp import _connect, _frame

log = logging.getLogger("crane_tools.nodeemu")

GROUP = b"craned"
DURATION_ENV = "CRANE_EMU_DURATION"
EXIT_CODE_ENV = "CRANE_EMU_EXIT_CODE"
HOT_S = 2.0
"""Seconds a node stays hot (swept every poll interval) after it got a command or sent a final status."""
READ_COUNT = 200
"""Most command entries read per node and sweep (as craned's consumer batch)."""
RTT_BOUNDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
"""Upper bounds (s) of the report -> FreeJob round-trip histogram; one more bucket holds what is above."""
_SLEEP_LINE = re.compile(r"^[ \t]*sleep[ \t]+(\d+(?:\.\d+)?)[ \t]*(?:#.*)?$", re.MULTILINE)


def job_duration(spec: m.LaunchSpec, default: float = 0.0) -> float:
    """How long an emulated job runs (seconds; 0 = until it is cancelled or its time limit ends it).

    ``CRANE_EMU_DURATION`` in the job's environment, else the sum of the script's ``sleep N``
    lines, else the time limit, else ``default``. A malformed variable is ignored.
    """
    raw = spec.env.get(DURATION_ENV)
    if raw is not None:
        try:
            value = float(raw)
            if 0 <= value < 1e9:
                return value
        except ValueError:
            pass
    sleeps = _SLEEP_LINE.findall(spec.script)
    if sleeps:
        return sum(float(s) for s in sleeps)
    return float(spec.time_limit) if spec.time_limit else default


def job_exit_code(spec: m.LaunchSpec) -> int:
    """The exit code an emulated job ends with: ``CRANE_EMU_EXIT_CODE`` (0..255), else 0."""
    raw = spec.env.get(EXIT_CODE_ENV, "0")
    return int(raw) if raw.isdigit() and int(raw) <= 255 else 0


class TimerWheel:
    """Timers bucketed by ``resolution`` seconds: O(1) to add, due ones popped in tick order."""

    def __init__(self, resolution: float = 0.05, now: float | None = None) -> None:
        self.resolution = resolution
        self.slots: dict[int, list[Any]] = {}
        self.cursor = int((time.time() if now is None else now) / resolution)

    def add(self, when: float, item: Any) -> None:
        """Fire ``item`` at ``when`` (or at the next :meth:`due` if that is past)."""
        tick = max(int(when / self.resolution), self.cursor)
        self.slots.setdefault(tick, []).append(item)

    def due(self, now: float) -> list[Any]:
        """Every item whose time has come, oldest tick first."""
        end = int(now / self.resolution)
        out: list[Any] = []
        if end - self.cursor > 4 * len(self.slots) + 64:  # a long gap: look at the slots, not at every tick
            for tick in sorted(t for t in self.slots if t <= end):
                out += self.slots.pop(tick)
        else:
            for tick in range(self.cursor, end + 1):
                items = self.slots.pop(tick, None)
                if items:
                    out += items
        self.cursor = end + 1
        return out

    def __len__(self) -> int:
        return sum(len(v) for v in self.slots.values())


class SequenceCheck(CommandVerifier):
    """A node's :class:`CommandVerifier` whose accepted sequence lives in memory (the emulator saves all at once)."""

    def __init__(self, stream: str, key: bytes, committed: tuple[int, int]) -> None:
        self._initial = committed
        super().__init__(stream, key, state_file="")

    def _load(self) -> tuple[int, int]:
        """The sequence the emulator saved for this node."""
        return self._initial

    def commit(self) -> None:
        """Accept the batch's newest sequence (saved by :meth:`NodeEmulator.save_sequences`)."""
        self.committed = self.high


@dataclass
class Run:
    """One emulated batch step on a node."""

    job_id: int
    step_id: int
    epoch: int
    start: float
    duration: float     # 0: until cancelled
    time_limit: int     # 0: none
    exit_code: int
    end: float = 0.0    # when its timer fires (0: none)
    ending: str = ""    # "" (its duration), "timeout"

    def schedule(self) -> None:
        """Set ``end``/``ending`` from the duration and the time limit."""
        natural = self.start + self.duration if self.duration else 0.0
        limit = self.start + self.time_limit if self.time_limit else 0.0
        if limit and (not natural or limit < natural):
            self.end, self.ending = limit, "timeout"
        else:
            self.end, self.ending = natural, ""


@dataclass
class EmulatedNode:
    """One virtual node's state: what it runs, what ended and waits for ``FreeJob``, its outgoing messages."""

    name: str
    cpus: float
    mem: int
    gres: dict[str, int]
    creds: BusCredentials
    check: SequenceCheck
    stream: str
    report: str
    running: dict[int, Run] = field(default_factory=dict)
    ended: dict[int, tuple[int, int]] = field(default_factory=dict)      # job -> (step, epoch): awaits FreeJob
    cancelled: dict[int, int] = field(default_factory=dict)              # job -> epoch of a cancel before launch
    launched: dict[int, int] = field(default_factory=dict)               # job -> epoch launched here
    out: list[m.BusMessage] = field(default_factory=list)
    acks: list[bytes] = field(default_factory=list)
    dead: list[tuple[bytes, dict[bytes, bytes], str]] = field(default_factory=list)
    next_beat: float = 0.0
    hot_until: float = 0.0  # swept every poll interval until then (see NodeEmulator.sweep)
    group_ready: bool = False
    read_pending: bool = True
    auth: bytes = b""
    read_new: bytes = b""
    read_old: bytes = b""


class NodeEmulator:
    """N emulated nodes on one Redis connection (see the module doc).

    Args:
        cfg: the cluster config (nodes, bus, ``Craned.PingInterval``).
        names: the nodes to emulate (default: every node of the config).
        state_dir: where ``sequences.json`` is kept (default ``<CraneBaseDir>/nodeemu``).
        default_duration: seconds a job with no duration and no time limit runs (0: until cancelled).
        poll_interval: seconds between sweeps of the *hot* nodes' command streams: those that got a
            command or sent a final status in the last :data:`HOT_S` seconds (a FreeJob and the next
            launch are on their way).
        idle_interval: seconds between sweeps of every node's stream.
        chunk: nodes per pipelined round trip.
    """

    def __init__(self, cfg: Any, names: list[str] | None = None, *, state_dir: str | None = None,
                 default_duration: float = 0.0, poll_interval: float = 0.1, idle_interval: float = 0.5,
                 chunk: int = 2000) -> None:
        from crane_kernel.bus import Bus

        table = cfg.node_table()
        names = list(table) if names is None else names
        unknown = [n for n in names if n not in table]
        if unknown:
            raise ValueError(f"nodes not in the config: {', '.join(unknown[:5])}")
        if not cfg.Bus.Auth:
            raise ValueError("the node emulator needs the closed bus (Bus.Auth): it speaks as each node's ACL user")
        self.cfg = cfg
        self.default_duration = default_duration
        self.poll_interval = poll_interval
        self.idle_interval = max(idle_interval, poll_interval)
        self.next_full = 0.0
        self.chunk = chunk
        self.ping = cfg.Craned.PingInterval
        self.state_dir = state_dir or os.path.join(cfg.base_dir, "nodeemu")
        _private_dir(self.state_dir)  # 0700 and ours: the sequences decide which commands are replays
        self.seq_file = os.path.join(self.state_dir, "sequences.json")
        saved = self._load_sequences()
        names_bus = Bus(cfg.RedisUrl, cfg.ClusterName)  # for its key names only (redis-py connects on first use)
        self.boot_id = uuid.uuid4().hex[:12]
        self.nodes: dict[str, EmulatedNode] = {}
        now = time.time()
        for i, name in enumerate(names):
            conf = table[name]
            creds = load_role(cfg.bus_dir, node_user(name))
            stream = names_bus.node_stream(name)
            node = EmulatedNode(
                name=name, cpus=conf.cpu, mem=conf.memory, gres={g.key: int(g.count or 0) for g in conf.gres},
                creds=creds, check=SequenceCheck(stream, creds.command_key, saved.get(name, (0, 0))),
                stream=stream, report=names_bus.report_stream(name),
                next_beat=now + self.ping * (i + 1) / max(1, len(names)))
            node.auth = _frame([b"AUTH", creds.user.encode(), creds.password.encode()])
            node.read_new = _frame([b"XREADGROUP", b"GROUP", GROUP, name.encode(), b"COUNT", b"%d" % READ_COUNT,
                                    b"STREAMS", stream.encode(), b">"])
            node.read_old = _frame([b"XREADGROUP", b"GROUP", GROUP, name.encode(), b"COUNT", b"%d" % READ_COUNT,
                                    b"STREAMS", stream.encode(), b"0"])
            self.nodes[name] = node
        self.wheel = TimerWheel()
        self.stop = False
        self.sock: Any = None
        self.reader: Any = None
        self.stats: dict[str, Any] = {"launched": 0, "finished": 0, "freed": 0, "terminated": 0, "refused": 0,
                                      "dead": 0, "heartbeats": 0, "sweeps": 0, "sweep_s": 0.0, "flush_s": 0.0,
                                      "commands": 0, "errors": 0}
        self._sent_final: dict[tuple[str, int], float] = {}  # (node, job) -> when its final status went out
        self.rtt_counts = [0] * (len(RTT_BOUNDS) + 1)       # report -> FreeJob round trips, since start
        self._seq_dirty = False

    # -- Redis: one raw connection, pipelines of precomputed commands -------------------------------
    def connect(self) -> None:
        """(Re)open the connection (select the URL's database; every node authenticates per command batch)."""
        self.close()
        tls = self.cfg.Bus
        self.sock, db = _connect(self.cfg.RedisUrl, 30.0, tls.TlsCaFile, tls.TlsCertFile, tls.TlsKeyFile)
        self.reader = hiredis.Reader()
        if db != "0":
            first = next(iter(self.nodes.values()))
            self.roundtrip(first.auth + _frame([b"SELECT", db.encode()]), 2)

    def close(self) -> None:
        """Close the connection."""
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def roundtrip(self, payload: bytes, count: int) -> list[Any]:
        """Send ``payload`` (``count`` commands) and return their ``count`` replies (errors as ReplyError objects)."""
        self.sock.sendall(payload)
        replies: list[Any] = []
        reader = self.reader
        while len(replies) < count:
            reply = reader.gets()
            if reply is False:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("redis closed the connection")
                reader.feed(data)
                continue
            replies.append(reply)
        return replies

    def lost_connection(self) -> None:
        """After a failed round trip: close, and make the next sweep re-read every node's unacked commands.

        Queued reports are kept and sent again (some may be in Redis twice: the controller ignores
        a repeated status); the commands whose ack was lost are read again and re-applied (every
        handler is idempotent), so their sequences are forgotten rather than refused as replays.
        """
        self.close()
        for n in self.nodes.values():
            n.read_pending = True  # a read may have been delivered but its reply lost
            n.acks.clear()
            n.dead.clear()
            n.check.abort()

    # -- start ---------------------------------------------------------------------------------------
    def register_all(self) -> None:
        """Create every node's consumer group and send its NodeRegister (pipelined in chunks)."""
        nodes = list(self.nodes.values())
        for start in range(0, len(nodes), self.chunk):
            part = nodes[start:start + self.chunk]
            buf = b"".join(n.auth + _frame([b"XGROUP", b"CREATE", n.stream.encode(), GROUP, b"0", b"MKSTREAM"])
                           for n in part)
            replies = self.roundtrip(buf, 2 * len(part))
            for n, auth, made in zip(part, replies[0::2], replies[1::2], strict=True):
                if isinstance(auth, hiredis.ReplyError):
                    raise ConnectionError(f"node {n.name}: redis refused its credentials: {auth}")
                if isinstance(made, hiredis.ReplyError) and "BUSYGROUP" not in str(made):
                    raise ConnectionError(f"node {n.name}: cannot create its consumer group: {made}")
                n.group_ready = True
        for n in nodes:
            n.out.append(self._register_message(n))
        self.flush()
        log.info("registered %d emulated nodes", len(nodes))

    def _register_message(self, n: EmulatedNode) -> m.NodeRegister:
        steps = [(r.job_id, r.step_id, r.epoch) for r in n.running.values()]
        return m.NodeRegister(node=n.name, cpus=n.cpus, mem=n.mem, gres=n.gres, running=[s[0] for s in steps],
                              boot_id=self.boot_id, pid=os.getpid(), steps=steps,
                              ended=[(j, s, e) for j, (s, e) in n.ended.items()])

    # -- the loop -------------------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> int:
        """Read the command streams (pipelined AUTH + XREADGROUP per node) and apply what came; return the count.

        Every node's stream once per ``idle_interval``, in between only the hot nodes'.
        """
        now = time.time() if now is None else now
        got = 0
        if now >= self.next_full:
            nodes = list(self.nodes.values())
            self.next_full = now + self.idle_interval
        else:
            nodes = [n for n in self.nodes.values() if n.hot_until > now or n.read_pending]
        while nodes:
            caught_up = []  # nodes whose own pending entries are done: read their new ones in this sweep too
            for start in range(0, len(nodes), self.chunk):
                part = nodes[start:start + self.chunk]
                was_pending = [n.read_pending for n in part]
                buf = b"".join(n.auth + (n.read_old if n.read_pending else n.read_new) for n in part)
                replies = self.roundtrip(buf, 2 * len(part))
                for n, reply, pending in zip(part, replies[1::2], was_pending, strict=True):
                    got += self._take(n, reply)
                    if pending and not n.read_pending:
                        caught_up.append(n)
            nodes = caught_up
        self.stats["sweeps"] += 1
        self.stats["commands"] += got
        return got

    def _take(self, n: EmulatedNode, reply: Any) -> int:
        """Apply one node's XREADGROUP reply; return the number of entries."""
        if isinstance(reply, hiredis.ReplyError):
            if "NOGROUP" in str(reply):  # the stream or group vanished (Redis lost its data): recreate it
                self.roundtrip(n.auth + _frame([b"XGROUP", b"CREATE", n.stream.encode(), GROUP, b"0", b"MKSTREAM"]),
                               2)
                n.read_pending = True
            else:
                self.stats["errors"] += 1
                log.warning("node %s: reading its commands failed: %s", n.name, reply)
            return 0
        if not reply:
            if n.read_pending:
                n.read_pending = False
            return 0
        entries = reply[0][1]
        if n.read_pending and not entries:
            n.read_pending = False
            return 0
        n.hot_until = time.time() + HOT_S
        for raw_id, flat in entries:
            self.handle_entry(n, raw_id, dict(zip(flat[0::2], flat[1::2], strict=True)) if flat else {})
        return len(entries)

    def handle_entry(self, n: EmulatedNode, raw_id: bytes, fields: dict[bytes, bytes]) -> None:
        """Check and apply one command entry of node ``n`` (acked with the next flush, whatever it was)."""
        n.acks.append(raw_id)
        if not fields:
            return  # trimmed while pending
        raw = fields.get(FIELD)
        if raw is None:
            n.dead.append((raw_id, fields, f"entry has no {FIELD.decode()!r} field"))
            return
        try:
            msg = m.decode(raw)
        except BusMessageError as exc:
            n.dead.append((raw_id, fields, str(exc)))
            return
        refused = n.check.check(n.stream, fields, msg)
        if refused is not None:
            self.stats["refused"] += 1
            n.dead.append((raw_id, fields, f"refused: {refused}"))
            return
        self._seq_dirty = True
        try:
            self.apply(n, msg)
        except Exception:  # noqa: BLE001 - one bad command must not take the other nodes down
            self.stats["errors"] += 1
            log.exception("node %s: failed to apply %s; skipped", n.name, msg.kind)

    def apply(self, n: EmulatedNode, msg: m.BusMessage, now: float | None = None) -> None:
        """What node ``n`` does with a verified command (as craned does it, with no process)."""
        now = time.time() if now is None else now
        if isinstance(msg, m.LaunchStep):
            self._launch(n, msg, now)
        elif isinstance(msg, m.TerminateStep):
            self._terminate(n, msg, now)
        elif isinstance(msg, m.FreeJob):
            self._free(n, msg, now)
        elif isinstance(msg, m.UpdateStep):
            run = n.running.get(msg.job_id)
            if run is not None and (not msg.epoch or msg.epoch == run.epoch):
                run.time_limit = msg.time_limit
                self._arm(n, run, now)
        elif isinstance(msg, m.StartStep):
            n.out.append(m.StepStatus(node=n.name, job_id=msg.job_id, step_id=msg.step_id, state="failed_to_start",
                                      exit_code=EC_SPAWN_FAILED, time=now, epoch=msg.epoch,
                                      reason="task steps are not emulated"))
        else:
            log.warning("node %s: ignoring unexpected %s message", n.name, msg.kind)

    def _launch(self, n: EmulatedNode, msg: m.LaunchStep, now: float) -> None:
        job_id, epoch = msg.job_id, msg.epoch
        marker = n.cancelled.get(job_id)
        if marker is not None and (marker == 0 or marker >= epoch):
            n.out.append(m.StepStatus(node=n.name, job_id=job_id, step_id=msg.step_id, state="finished",
                                      exit_code=EC_TERMINATED, time=now, reason="cancelled before launch",
                                      epoch=epoch))
            n.ended[job_id] = (msg.step_id, epoch)
            return
        if n.launched.get(job_id, -1) >= epoch:
            return  # a duplicate delivery
        old = n.running.get(job_id)
        if old is not None:
            log.warning("node %s job %d: launch epoch %d while epoch %d still runs", n.name, job_id, epoch, old.epoch)
            return
        n.cancelled.pop(job_id, None)
        n.ended.pop(job_id, None)
        n.launched[job_id] = epoch
        self.stats["launched"] += 1
        if msg.spec is None:
            n.out.append(m.StepStatus(node=n.name, job_id=job_id, step_id=msg.step_id, state="failed_to_start",
                                      exit_code=EC_SPAWN_FAILED, time=now, epoch=epoch,
                                      reason=f"invalid launch spec: {msg.spec_error or 'no spec'}"))
            n.ended[job_id] = (msg.step_id, epoch)
            return
        run = Run(job_id=job_id, step_id=msg.step_id, epoch=epoch, start=now,
                  duration=job_duration(msg.spec, self.default_duration), time_limit=msg.spec.time_limit,
                  exit_code=job_exit_code(msg.spec))
        n.running[job_id] = run
        n.out.append(m.StepStatus(node=n.name, job_id=job_id, step_id=msg.step_id, state="running", time=now,
                                  epoch=epoch))
        self._arm(n, run, now)

    def _arm(self, n: EmulatedNode, run: Run, now: float) -> None:
        """(Re)compute the run's end and put it on the wheel (a stale timer is ignored when it fires)."""
        run.schedule()
        if run.end:
            self.wheel.add(run.end, (n.name, run.job_id, run.epoch, run.end))

    def fire_timers(self, now: float) -> int:
        """End the runs whose time has come; return how many ended."""
        ended = 0
        for name, job_id, epoch, end in self.wheel.due(now):
            n = self.nodes[name]
            run = n.running.get(job_id)
            if run is None or run.epoch != epoch or run.end != end:
                continue  # ended otherwise, or re-armed by an UpdateStep
            if run.ending == "timeout":
                self._end(n, run, EC_EXCEED_TIME_LIMIT, "time limit exceeded", now)
            else:
                self._end(n, run, run.exit_code, "", now)
            ended += 1
        return ended

    def _end(self, n: EmulatedNode, run: Run, exit_code: int, reason: str, now: float) -> None:
        del n.running[run.job_id]
        n.ended[run.job_id] = (run.step_id, run.epoch)
        cpu_ms = int((now - run.start) * n.cpus * 1000) if exit_code == 0 else 0
        n.out.append(m.StepStatus(node=n.name, job_id=run.job_id, step_id=run.step_id, state="finished",
                                  exit_code=exit_code, time=now, reason=reason, epoch=run.epoch,
                                  cpu_time_ms=max(0, cpu_ms)))
        self.stats["finished"] += 1
        self._sent_final[(n.name, run.job_id)] = now
        n.hot_until = now + HOT_S  # its FreeJob, and a launch for the freed CPUs, come next

    def _terminate(self, n: EmulatedNode, msg: m.TerminateStep, now: float) -> None:
        if msg.step_id not in (None, 0):
            return  # a task step: none runs here
        run = n.running.get(msg.job_id)
        if run is not None:
            if msg.epoch and msg.epoch != run.epoch:
                return  # about another launch: this one is left alone (as craned does)
            self.stats["terminated"] += 1
            if msg.reason == "timeout":
                self._end(n, run, EC_EXCEED_TIME_LIMIT, "time limit exceeded", now)
            else:
                self._end(n, run, EC_TERMINATED, "cancelled", now)
        elif msg.job_id not in n.ended:
            n.cancelled[msg.job_id] = msg.epoch  # a launch still on its way is cancelled when it arrives

    def _free(self, n: EmulatedNode, msg: m.FreeJob, now: float) -> None:
        if msg.step_id is not None:
            return  # a task step's directory: none here
        if msg.epoch and n.launched.get(msg.job_id, 0) > msg.epoch:
            return  # a newer launch is here
        if msg.job_id in n.running:
            return  # still runs: its end will be reported
        if n.ended.pop(msg.job_id, None) is not None:
            self.stats["freed"] += 1  # the controller has recorded this end
        n.cancelled.pop(msg.job_id, None)
        n.launched.pop(msg.job_id, None)
        sent = self._sent_final.pop((n.name, msg.job_id), None)
        if sent is not None:
            self.rtt_counts[bisect.bisect_left(RTT_BOUNDS, now - sent)] += 1

    def heartbeats(self, now: float) -> int:
        """Queue the heartbeat of every node whose ping interval is over (after its statuses: order matters)."""
        beats = 0
        for n in self.nodes.values():
            if now < n.next_beat:
                continue
            steps = [(r.job_id, r.step_id, r.epoch) for r in n.running.values()]
            ended = [(j, s, e) for j, (s, e) in n.ended.items()] + \
                    [(j, 0, 0) for j in n.cancelled if j not in n.ended]
            n.out.append(m.NodeHeartbeat(node=n.name, running=[s[0] for s in steps], time=now, steps=steps,
                                         ended=ended))
            n.next_beat = now + self.ping
            beats += 1
        self.stats["heartbeats"] += beats
        return beats

    def flush(self) -> int:
        """Send every node's queued reports, acks, trims and dead letters in pipelines; return messages sent."""
        buf: list[bytes] = []
        count = 0
        sent = 0
        pending = [n for n in self.nodes.values() if n.out or n.acks or n.dead]
        for n in pending:
            buf.append(n.auth)
            count += 1
            report = n.report.encode()
            for msg in n.out:
                buf.append(_frame([b"XADD", report, b"*", FIELD, m.encode(msg)]))
            count += len(n.out)
            sent += len(n.out)
            stream = n.stream.encode()
            for raw_id, fields, reason in n.dead:
                log.warning("node %s: dead-lettered command %s: %s", n.name, raw_id.decode(), reason)
                record = [b"XADD", stream + b":dead", b"MAXLEN", b"~", b"%d" % DEAD_LETTER_MAXLEN, b"*"]
                for key, value in {**fields, b"dlq_reason": reason.encode(), b"dlq_stream": stream,
                                   b"dlq_entry": raw_id, b"dlq_group": GROUP,
                                   b"dlq_consumer": n.name.encode()}.items():
                    record += [key, value]
                buf.append(_frame(record))
                count += 1
                self.stats["dead"] += 1
            if n.acks:
                ms, _, seq = n.acks[-1].partition(b"-")
                buf.append(_frame([b"XACK", stream, GROUP, *n.acks]))
                buf.append(_frame([b"XTRIM", stream, b"MINID", b"%s-%d" % (ms, int(seq or 0) + 1)]))
                count += 2
        if not pending:
            return 0
        replies = self.roundtrip(b"".join(buf), count)
        errors = [r for r in replies if isinstance(r, hiredis.ReplyError)]
        if errors:
            self.stats["errors"] += len(errors)
            log.warning("%d of %d commands refused by redis, first: %s", len(errors), count, errors[0])
        for n in pending:
            n.out.clear()
            n.acks.clear()
            n.dead.clear()
            n.check.commit()
        return sent

    # -- sequences ------------------------------------------------------------------------------------
    def _load_sequences(self) -> dict[str, tuple[int, int]]:
        try:
            with open(self.seq_file) as fh:
                data = json.load(fh)
            return {str(k): (int(v[0]), int(v[1])) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
            log.error("sequence file %s unreadable (%s); starting from 0", self.seq_file, exc)
            return {}

    def save_sequences(self) -> None:
        """Write every node's last accepted command sequence (atomically, 0600), if any changed."""
        if not self._seq_dirty:
            return
        data = {n.name: list(n.check.committed) for n in self.nodes.values() if n.check.committed != (0, 0)}
        tmp = f"{self.seq_file}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, json.dumps(data).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.seq_file)
        self._seq_dirty = False

    def step(self, now: float | None = None) -> None:
        """One loop: sweep the command streams, end due runs, heartbeat, flush, save the sequences."""
        t0 = time.time()
        self.sweep()
        t1 = time.time()
        now = time.time() if now is None else now
        self.fire_timers(now)
        self.heartbeats(now)
        self.flush()
        self.save_sequences()
        self.stats["sweep_s"] += t1 - t0
        self.stats["flush_s"] += time.time() - t1

    def snapshot(self) -> dict[str, Any]:
        """The counters, and the histogram of report -> FreeJob round trips since start (for ``--stats-file``)."""
        return dict(self.stats, time=time.time(), nodes=len(self.nodes),
                    running=sum(len(n.running) for n in self.nodes.values()), timers=len(self.wheel),
                    cpu_s=time.process_time(), rtt_bounds=list(RTT_BOUNDS), rtt_counts=list(self.rtt_counts))

    def run(self, stats_file: str | None = None, stats_interval: float = 1.0) -> None:
        """Connect, register, then loop until :attr:`stop`; reconnect (and re-register) after a lost connection."""
        delay = 0.1
        registered = False
        next_stats = 0.0
        while not self.stop:
            try:
                if self.sock is None:
                    self.connect()
                if not registered:
                    self.register_all()
                    registered = True
                started = time.time()
                self.step()
                delay = 0.1
                if stats_file and started >= next_stats:
                    _write_json(stats_file, self.snapshot())
                    next_stats = started + stats_interval
                rest = self.poll_interval - (time.time() - started)
                if rest > 0:
                    time.sleep(rest)
            except (ConnectionError, OSError, hiredis.ProtocolError) as exc:
                log.warning("redis connection lost (%s); retrying in %.1fs", exc, delay)
                self.lost_connection()
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.close()


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGTERM/SIGINT: ``python -m crane_tools.nodeemu -C config.yaml [--nodes cn[1-100]]``."""
    from crane_common.hostlist import expand
    from crane_kernel.config import load_config
    from crane_kernel.ctld.main import setup_logging
    from crane_kernel.errors import CraneError

    ap = argparse.ArgumentParser(prog="python -m crane_tools.nodeemu", description="emulate many nodes on the real bus")
    ap.add_argument("-C", "--config", help="config file (default $CRANE_CONFIG or /etc/crane/config.yaml)")
    ap.add_argument("--nodes", help="hostlist of the nodes to emulate (default: every node of the config)")
    ap.add_argument("--default-duration", type=float, default=0.0,
                    help="seconds a job with no duration and no time limit runs (0: until cancelled)")
    ap.add_argument("--poll-interval", type=float, default=0.1,
                    help="seconds between sweeps of the busy nodes' streams (default 0.1)")
    ap.add_argument("--idle-interval", type=float, default=0.5,
                    help="seconds between sweeps of every node's stream (default 0.5)")
    ap.add_argument("--state-dir", help="where the accepted command sequences are kept")
    ap.add_argument("--stats-file", help="write counters (JSON) to this file every second")
    ap.add_argument("-L", "--log-file", help="log to this file instead of stderr")
    ap.add_argument("-D", "--debug-level", default="info")
    args = ap.parse_args(argv)
    setup_logging(args.log_file, args.debug_level)
    try:
        cfg = load_config(args.config)
        names = expand(args.nodes) if args.nodes else None
        emu = NodeEmulator(cfg, names, state_dir=args.state_dir, default_duration=args.default_duration,
                           poll_interval=args.poll_interval, idle_interval=args.idle_interval)
    except (CraneError, ValueError) as exc:
        print(f"nodeemu: {exc}", file=sys.stderr)
        return 1

    def _stop(_signum: int, _frame: Any) -> None:
        emu.stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    emu.run(args.stats_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
