"""The task-step supervisor: runs this node's tasks of a task step (crun) and relays their I/O.

Forked by the launcher like the batch supervisor (:mod:`crane_kernel.craned.supervisor`, whose
session, pid-file, status and failure rules it inherits), for a :class:`~crane_kernel.messages.StartStep`.
It gives every task pipes for stdout and stderr (and stdin when the task is a stdin target; a
pty for task 0 with ``pty``), starts the tasks through the runtime plugins
(``crane_step_launch`` with ``StepSpec.tasks``), reports ``running``, and then pumps:

* output of every task to the step's ``io`` stream (:mod:`crane_kernel.iostream`), never letting
  it hold more than ``WINDOW`` entries (``XADD`` and ``XLEN`` pipelined; when full it waits for
  the relay's ``XDEL``: the task then blocks on its full pipe and nothing is dropped);
* the ``ioin`` stream (a thread: ``XREAD BLOCK`` from ``0-0``, consumed entries deleted) to the
  tasks' stdin, signals and the pty's window size;
* each task's exit as it ends, and when all ended (and their pipes reached EOF, whatever was left in
  the step's cgroup SIGKILLed after a short grace) the end entry, then the final ``StepStatus``.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import pwd
import select
import signal
import socket
import struct
import termios
import threading
import time
from typing import Any, NoReturn

from crane_common.states import EC_EXEC_ERR, EC_PERMISSION_DENIED, EC_SPAWN_FAILED, EC_TERMINATED
from crane_kernel import iostream
from crane_kernel.craned.jobfiles import read_time_limit
from crane_kernel.craned.supervisor import Supervisor, user_env
from crane_kernel.errors import StepLaunchError
from crane_kernel.messages import STDIN_ALL, STDIN_NONE, StartStep, TaskLaunch
from crane_kernel.resp import Connection
from crane_kernel.runtime import StepSpec, TaskIo

log = logging.getLogger("craned.stepsup")

GRACE_S = 0.2          # after the last task ended: how long its pipes may take to reach EOF
DRAIN_S = 5.0          # after the SIGKILL of what was left: the most the pipes may take to close
TICK_MS = 50           # the pump's poll interval (cancel and time-limit latency)
GIVE_UP_S = 10.0       # after the final SIGKILL of a cancel: how long output may wait for the relay


def task_env(base: dict[str, str], spec: TaskLaunch, node: str, step_id: int, task_id: int,
             local_id: int) -> dict[str, str]:
    """The environment of one task: ``base`` plus its ``CRANE_*`` ids and their ``SLURM_*`` twins."""
    env = dict(base)
    ids = {"PROCID": task_id, "LOCALID": local_id, "NODEID": spec.node_index, "NTASKS": spec.ntasks,
           "STEP_ID": step_id}
    for name, value in ids.items():
        env[f"CRANE_{name}"] = env[f"SLURM_{name}"] = str(value)
    env["CRANE_NODENAME"] = node
    return env


class TaskStreams:
    """The descriptors of this node's tasks: their ends (:class:`TaskIo`) and the supervisor's.

    ``outputs`` maps a readable fd to ``(task id, 1|2)`` (a pty master is its task's fd 1);
    ``inputs`` maps a task id to the fd its stdin data is written to; ``pty_master`` is -1 without a pty.
    """

    def __init__(self, spec: TaskLaunch, envs: dict[int, dict[str, str]], uid: int, gid: int) -> None:
        """Make the pipes (and the pty) for every task of ``spec``; ``envs`` is each task's environment."""
        self.tasks: list[TaskIo] = []
        self.outputs: dict[int, tuple[int, int]] = {}
        self.inputs: dict[int, int] = {}
        self.pty_master = -1
        self.partial: dict[int, bytes] = {}  # task id -> the unwritten rest of its current stdin entry
        self._theirs: list[int] = []
        for task_id in spec.task_ids:
            if spec.pty and task_id == 0:
                master, slave = os.openpty()
                if spec.rows and spec.cols:
                    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", spec.rows, spec.cols, 0, 0))
                os.fchown(slave, uid, gid)
                os.fchmod(slave, 0o620)
                self.pty_master = master
                self.outputs[master] = (task_id, 1)
                self.inputs[task_id] = master
                self._theirs.append(slave)
                self.tasks.append(TaskIo(task_id, envs[task_id], slave, slave, slave, pty=True))
                continue
            if spec.stdin_task == STDIN_ALL or spec.stdin_task == task_id:
                stdin_r, stdin_w = os.pipe()
                self.inputs[task_id] = stdin_w
            else:
                stdin_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            self.outputs[out_r] = (task_id, 1)
            self.outputs[err_r] = (task_id, 2)
            self._theirs += [stdin_r, out_w, err_w]
            self.tasks.append(TaskIo(task_id, envs[task_id], stdin_r, out_w, err_w))

    def close_theirs(self) -> None:
        """Close the supervisor's copies of the tasks' ends (after the launch), so EOF can come."""
        for fd in self._theirs:
            try:
                os.close(fd)
            except OSError:
                pass
        self._theirs = []


class OutStream:
    """The step's ``io`` stream, written with flow control over one persistent connection."""

    def __init__(self, url: str, key: str, wait: Any) -> None:
        """``wait()`` is called while the stream is full (it handles cancels; True = stop waiting, drop)."""
        self.url, self.key = url, key.encode()
        self.wait = wait
        self.conn: Connection | None = None
        self.length = 0
        self.broken = False

    def _call(self, commands: list[list[bytes]]) -> list[object]:
        for delay in (0, 0.1, 0.5, 1, 2, 5, 10):
            time.sleep(delay)
            try:
                if self.conn is None:
                    self.conn = Connection(self.url)
                return self.conn.pipeline(commands)
            except ConnectionError as exc:
                log.warning("io stream %s: %s", self.key.decode(), exc)
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
        self.broken = True
        raise ConnectionError(f"io stream {self.key.decode()}: redis unreachable")

    def add(self, fields: dict[bytes, bytes], force: bool = False) -> bool:
        """XADD ``fields`` once the stream has room (``force``: do not wait); False if it was dropped."""
        if self.broken:
            return False
        try:
            delay = 0.002
            while self.length >= iostream.WINDOW and not force:
                (self.length,) = self._call([[b"XLEN", self.key]])  # type: ignore[assignment]
                if self.length < iostream.WINDOW:
                    break
                if self.wait():
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            xadd = [b"XADD", self.key, b"*"]
            for name, value in fields.items():
                xadd += [name, value]
            _id, self.length = self._call([xadd, [b"XLEN", self.key]])  # type: ignore[assignment]
            return True
        except ConnectionError:
            return False

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            self.conn.close()


class InputPump(threading.Thread):
    """Reads the step's ``ioin`` stream and applies it: stdin data and EOF, signals, window sizes.

    Stdin is written without blocking: entries a task does not read yet wait here, in order (and
    stay on the stream, so the relay's flow control stops the client), while signals and window
    sizes read after them are applied at once — a Ctrl-C is not stuck behind unread input.
    """

    def __init__(self, url: str, key: str, streams: TaskStreams, signal_tasks: Any) -> None:
        """``signal_tasks(signum)`` signals every task's process group."""
        super().__init__(name="ioin", daemon=True)
        self.url, self.key = url, key
        self.streams = streams
        self.signal_tasks = signal_tasks
        self.stop = False
        self.conn: Connection | None = None
        self.pending: collections.deque[tuple[bytes, iostream.InEntry, list[int]]] = collections.deque()
        for fd in streams.inputs.values():
            os.set_blocking(fd, False)

    def run(self) -> None:
        """XREAD BLOCK from 0-0 onward until stopped; applied entries are deleted."""
        last, conn = b"0-0", None
        while not self.stop:
            try:
                if conn is None:
                    conn = self.conn = Connection(self.url)
                done = self._flush()
                block = 20 if self.pending else 500
                count = max(1, iostream.WINDOW - len(self.pending))
                reply = conn.call("XREAD", "COUNT", count, "BLOCK", block, "STREAMS", self.key, last)
                for entry_id, flat in reply[0][1] if reply else []:  # type: ignore[index]
                    last = entry_id
                    if self._take(entry_id, dict(zip(flat[::2], flat[1::2], strict=False))):
                        done.append(entry_id)
                done += self._flush()
                if done:
                    conn.call("XDEL", self.key, *done)
            except (ConnectionError, OSError, ValueError) as exc:
                if self.stop:
                    break
                log.warning("ioin stream %s: %s", self.key, exc)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.5)
        if conn is not None:
            conn.close()

    def halt(self) -> None:
        """Stop now: a blocked ``XREAD`` is cut short (its socket shut down), so the step's end never waits for it."""
        self.stop = True
        conn = self.conn
        if conn is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _take(self, entry_id: bytes, fields: dict[bytes, bytes]) -> bool:
        """Apply a signal or window size now, queue stdin; True when the entry is done with."""
        try:
            entry = iostream.parse_in(fields)
        except iostream.IoEntryError as exc:
            log.warning("ioin stream %s: malformed entry skipped: %s", self.key, exc)
            return True
        if entry.kind == "s":
            self.signal_tasks(entry.signum)
        elif entry.kind == "w":
            if self.streams.pty_master >= 0:
                try:
                    fcntl.ioctl(self.streams.pty_master, termios.TIOCSWINSZ,
                                struct.pack("HHHH", entry.rows, entry.cols, 0, 0))
                except OSError:
                    pass
        else:
            targets = list(self.streams.inputs) if entry.task == iostream.ALL_TASKS else [entry.task]
            self.pending.append((entry_id, entry, [t for t in targets if t in self.streams.inputs]))
            return False
        return True

    def _flush(self) -> list[bytes]:
        """Write queued stdin as far as the tasks take it; the ids of the entries now done."""
        done = []
        while self.pending:
            entry_id, entry, targets = self.pending[0]
            while targets:
                if not self._stdin(targets[0], entry):
                    return done  # that task's pipe is full: the rest waits, in order
                targets.pop(0)
            self.pending.popleft()
            done.append(entry_id)
        return done

    def _stdin(self, task: int, entry: iostream.InEntry) -> bool:
        """Write (the rest of) ``entry`` to ``task``'s stdin or close it; False if it would block."""
        fd = self.streams.inputs.get(task)
        if fd is None:
            return True
        is_pty = fd == self.streams.pty_master
        if entry.kind == "z":
            if not is_pty:
                self.streams.inputs.pop(task, None)
                os.close(fd)
            return True
        data = self.streams.partial.get(task, entry.data)
        try:
            while data:
                data = data[os.write(fd, data):]
        except BlockingIOError:
            self.streams.partial[task] = data
            return False
        except OSError:  # the task closed its stdin or ended
            if not is_pty:
                self.streams.inputs.pop(task, None)
                os.close(fd)
        self.streams.partial.pop(task, None)
        return True


class TaskStepSupervisor(Supervisor):
    """Runs this node's tasks of one task step to their end, relaying their I/O (see the module)."""

    MESSAGE = StartStep

    def __init__(self, node: str, job_dir: str, launch: dict[str, Any], pm: Any, redis_url: str, stream: str,
                 kill_wait: float, cluster: str = "") -> None:
        """As :class:`Supervisor`; ``cluster`` names the I/O stream keys."""
        super().__init__(node, job_dir, launch, pm, redis_url, stream, kill_wait)
        self.cluster = cluster or stream.split(":")[1]
        self.out_key = iostream.out_key(self.cluster, node, self.job_id, self.step_id)
        self.in_key = iostream.in_key(self.cluster, node, self.job_id, self.step_id)
        self.ending, self.term_at, self.killed = "", 0.0, False
        self.deadline: float | None = None
        self.started = 0.0
        self.frozen_total = 0.0  # seconds the step was suspended (a changed limit counts them out)

    def _fail(self, exc: BaseException) -> NoReturn:
        """As :meth:`Supervisor._fail`, with the end entry on the io stream first (best effort)."""
        try:
            out = getattr(self, "out", None)
            if out is not None:
                out.add(iostream.end_entry(EC_EXEC_ERR if self.handle is not None else EC_SPAWN_FAILED,
                                           f"step supervisor failed: {type(exc).__name__}: {exc}"), force=True)
        except BaseException:
            log.exception("job %d step %d: the end entry after the failure failed", self.job_id, self.step_id)
        super()._fail(exc)

    def _build(self, spec: TaskLaunch) -> tuple[StepSpec, TaskStreams]:
        """The StepSpec of this node's tasks and their descriptors."""
        try:
            pw = pwd.getpwuid(spec.uid)
        except KeyError:
            raise StepLaunchError(f"uid {spec.uid} does not exist on node {self.node}", EC_PERMISSION_DENIED) from None
        base = user_env(spec.env, pw, self.node)
        base.setdefault("CRANE_JOB_ID", str(self.job_id))
        envs = {t: task_env(base, spec, self.node, self.step_id, t, i) for i, t in enumerate(spec.task_ids)}
        streams = TaskStreams(spec, envs, spec.uid, spec.gid)
        step = StepSpec(
            job_id=self.job_id, step_id=self.step_id, node=self.node, name=spec.name or spec.argv[0][:64],
            uid=spec.uid, gid=spec.gid, user=pw.pw_name, cwd=spec.cwd or pw.pw_dir, script_path="", interpreter=[],
            env=base, stdout="", stderr="", cpus=spec.cpus, cpu_ids=list(spec.cpu_ids), mem_bytes=spec.mem_bytes,
            devices_allow=list(spec.devices_allow), devices_deny=list(spec.devices_deny),
            time_limit=spec.time_limit, argv=list(spec.argv), tasks=streams.tasks, step_cpus=spec.step_cpus,
            step_mem_bytes=spec.step_mem_bytes)
        return step, streams

    def _supervise(self) -> None:
        """Launch the tasks, pump their I/O to the end and report (exits the process when done)."""
        self._start()
        self.out = OutStream(self.redis_url, self.out_key, self._waiting)
        streams: TaskStreams | None = None
        if os.path.lexists(os.path.join(self.job_dir, "cancelled")):  # craned cancelled it while it started
            self.out.add(iostream.end_entry(EC_TERMINATED, "cancelled before launch"), force=True)
            self._final(self._status("finished", EC_TERMINATED, "cancelled before launch"))
        try:
            if self.spec is None:
                raise StepLaunchError(f"invalid launch spec: {self.spec_error}", EC_SPAWN_FAILED)
            step, streams = self._build(self.spec)
            handle = self.handle = self.pm.steps.crane_step_launch(step=step)
            if handle is None:
                raise StepLaunchError("no runtime plugin accepted the step", EC_SPAWN_FAILED)
        except Exception as exc:
            code = exc.exit_code if isinstance(exc, StepLaunchError) else EC_SPAWN_FAILED
            reason = str(exc) if isinstance(exc, StepLaunchError) else f"{type(exc).__name__}: {exc}"
            log.warning("job %d step %d failed to start: %s", self.job_id, self.step_id, reason)
            self.out.add(iostream.end_entry(code, reason), force=True)
            self._final(self._status("failed_to_start", code, reason))
        streams.close_theirs()
        self.started = time.time()
        self.deadline = self.started + step.time_limit if step.time_limit else None
        self._send(self._status("running"))
        pump = InputPump(self.redis_url, self.in_key, streams, self._signal_tasks)
        pump.start()
        rc = self._pump(handle, streams)
        pump.halt()
        pump.join(1.0)  # it may write to the pty master: closed only once it stopped
        if streams.pty_master >= 0 and not pump.is_alive():
            os.close(streams.pty_master)
        usage = None
        try:
            usage = self.pm.steps.crane_step_usage(handle=handle)
        except Exception:
            log.exception("job %d step %d: reading usage failed", self.job_id, self.step_id)
        code, reason, oom = self._ending_code(self.ending, rc, usage)
        self.out.add(iostream.end_entry(code, reason), force=self._waiting())  # before the final status
        self.out.close()
        try:
            self.pm.steps.crane_step_cleanup(handle=handle)
        except Exception:
            log.exception("job %d step %d: cleanup failed", self.job_id, self.step_id)
        self._finish(code, reason, oom, usage)

    def _signal_tasks(self, signum: int) -> None:
        """Deliver ``signum`` to every task's process group (an ``s`` entry)."""
        if self.handle is not None:
            try:
                self.pm.steps.crane_step_signal(handle=self.handle, signum=signum, all_processes=False)
            except Exception:
                log.exception("job %d step %d: signal %d failed", self.job_id, self.step_id, signum)

    def _tick(self) -> None:
        """Cancel and time limit: SIGCONT+SIGTERM to the tasks, SIGKILL to all after KillWait."""
        handle, hook, now = self.handle, self.pm.steps, time.time()
        before = self.deadline
        self.deadline = self._controls(handle, self.deadline)  # suspend, resume, signals (craned/jobctl.py)
        if self.deadline and before:
            self.frozen_total += self.deadline - before
        if self.limit_changed:
            self.limit_changed = False
            new_limit = read_time_limit(self.job_dir)
            if new_limit is not None:
                self.deadline = self.started + new_limit + self.frozen_total
        suspended = bool(self.control.suspended_at)
        if not self.ending and (self.cancel or (self.deadline and now >= self.deadline and not suspended)):
            self.ending = "cancel" if self.cancel else "timeout"
            hook.crane_step_resume(handle=handle)
            hook.crane_step_signal(handle=handle, signum=signal.SIGCONT, all_processes=True)
            hook.crane_step_signal(handle=handle, signum=signal.SIGTERM, all_processes=False)
            self.term_at = now
        elif self.ending and not self.killed and now - self.term_at >= self.kill_wait:
            hook.crane_step_signal(handle=handle, signum=signal.SIGKILL, all_processes=True)
            self.killed = True

    def _waiting(self) -> bool:
        """While output waits for room: keep the limits enforced; True once a killed step's output is dropped."""
        self._tick()
        return self.killed and time.time() - self.term_at > self.kill_wait + GIVE_UP_S

    def _pump(self, handle: Any, streams: TaskStreams) -> int:
        """Relay output and task exits until every task ended and its output is on the stream; the worst code."""
        hook = self.pm.steps
        poller = select.poll()
        readers = dict(streams.outputs)
        for fd in readers:
            poller.register(fd, select.POLLIN)
        open_fds = {t: 0 for t in handle.task_pids}
        for task, _fd in readers.values():
            open_fds[task] = open_fds.get(task, 0) + 1
        ended_at: dict[int, float] = {}
        sent: set[int] = set()
        rc, all_ended, swept = None, 0.0, False
        while True:
            self._tick()
            for fd, _ev in poller.poll(TICK_MS if readers else 0):
                if not self._read(fd, readers[fd]):
                    poller.unregister(fd)
                    if fd != streams.pty_master:
                        os.close(fd)
                    open_fds[readers.pop(fd)[0]] -= 1
            if rc is None:
                rc = hook.crane_step_wait(handle=handle, timeout=0 if readers else TICK_MS / 1000)
            now = time.monotonic()
            for task, code in list(handle.task_exit.items()):
                ended_at.setdefault(task, now)
                if task not in sent and (open_fds.get(task, 0) <= 0 or now - ended_at[task] >= GRACE_S or swept):
                    self.out.add(iostream.exit_entry(task, code))
                    sent.add(task)
            if rc is None:
                continue
            all_ended = all_ended or now
            if not readers and len(sent) >= len(handle.task_exit):
                break
            if not swept and now - all_ended >= GRACE_S:
                hook.crane_step_signal(handle=handle, signum=signal.SIGKILL, all_processes=True)
                swept = True
            elif swept and now - all_ended >= GRACE_S + DRAIN_S:
                log.warning("job %d step %d: output still open after the tasks ended; closed", self.job_id,
                            self.step_id)
                for fd in list(readers):
                    poller.unregister(fd)
                    if fd != streams.pty_master:
                        os.close(fd)
                    open_fds[readers.pop(fd)[0]] -= 1
        return rc

    def _read(self, fd: int, origin: tuple[int, int]) -> bool:
        """Read one chunk of ``fd`` and put it on the stream; False at end of file."""
        try:
            data = os.read(fd, iostream.MAX_CHUNK)
        except BlockingIOError:  # the (non-blocking) pty master had nothing after all
            return True
        except OSError:  # EIO: a pty whose slave side is closed everywhere
            return False
        if not data:
            return False
        self.out.add(iostream.output_entry(origin[0], origin[1], data))
        return True


__all__ = ["STDIN_ALL", "STDIN_NONE", "TaskStepSupervisor", "task_env"]
