"""``craned``: the node daemon.

One ``craned`` per (virtual) node. It registers the node's resources,
heartbeats, and consumes its own stream (``crane:{cluster}:node:{name}``):
launches (fork a step supervisor), terminations (signal the supervisor) and
frees (forget a finished job). It is single-threaded on purpose, so forking a
supervisor from it is safe and cheap.

Job directories ``<CraneBaseDir>/craned/<node>/jobs/<job_id>/`` hold the
supervisor's pid file and the result file; they are how a restarted ``craned``
finds the steps that kept running without it, and the results it still has to
report. They are root's and 0700 (:mod:`crane_kernel.craned.statedir`): nothing
``craned`` reads back can be written by a job's user, and a pid read back is
signalled only after it is checked to be a live supervisor. Job scripts go to
the separate ``scripts/`` directory, where the user can read but not replace hers.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from typing import Any

from crane_common.states import EC_CRANED_DOWN, EC_TERMINATED
from crane_kernel import messages as m
from crane_kernel.bus.credentials import node_user
from crane_kernel.bus.signing import CommandVerifier
from crane_kernel.config import ClusterConfig, load_config
from crane_kernel.craned import statedir
from crane_kernel.craned.jobfiles import (
    RESULT_FILE,
    SENT_FILE,
    SUP_FILE,
    read_state,
    request_time_limit,
    signal_supervisor,
    supervisor_alive,
    write_json,
)
from crane_kernel.craned.launcherclient import Launcher, build_runtime_manager
from crane_kernel.errors import CraneError

log = logging.getLogger("craned")

StepRef = tuple[int, int, int]  # (job id, step id, launch epoch) as heartbeats report them
STARTING_GRACE = 30.0  # seconds a launched job directory without a supervisor pid file counts as starting


class Craned:
    """The node daemon's state and main loop."""

    def __init__(self, cfg: ClusterConfig, node: str) -> None:
        from crane_kernel.bus import Bus

        table = cfg.node_table()
        if node not in table:
            raise CraneError(f"node {node!r} is not in the config (known: {', '.join(list(table)[:10])})")
        self.cfg = cfg
        self.node = node
        self.conf = table[node]
        self.pm = build_runtime_manager(cfg)  # validates the runtime plugins now; the launcher loads its own
        self.bus = Bus.from_config(cfg, node_user(node))
        self.verifier: CommandVerifier | None = None
        if self.bus.credentials is not None:  # Bus.Auth: only commands the controller signed are obeyed
            self.verifier = CommandVerifier(self.bus.node_stream(node), self.bus.credentials.command_key,
                                            os.path.join(cfg.bus_dir, f"seq-{node}.json"))
        self.jobs_dir, self.scripts_dir = statedir.prepare(cfg.base_dir, node)
        self.boot_id = uuid.uuid4().hex[:12]
        self.stop = False
        self.launched: dict[int, int] = {}  # job id -> epoch of the launch made here
        self.reaped: set[StepRef] = set()   # steps of dead supervisors whose leftovers the runtimes removed
        self.log_stream: Any = None          # where the launcher and supervisors log (set by main)
        self.launcher = Launcher(self)

    def supervisor_url(self) -> str:
        """The Redis URL step supervisors report with: the node's ACL user and TLS files in it (never logged).

        It reaches the launcher over its stdin pipe, never through the environment or argv; the
        supervisors drop it before the user's task runs (the task is exec'ed, and inherits no fd of it).
        """
        from urllib.parse import quote, urlencode, urlsplit, urlunsplit

        url = self.cfg.RedisUrl
        creds, bus = self.bus.credentials, self.cfg.Bus
        parts = urlsplit(url)
        if creds is None and not (parts.scheme == "rediss" and (bus.TlsCaFile or bus.TlsCertFile)):
            return url
        netloc = parts.netloc.rpartition("@")[2]
        if creds is not None:
            netloc = f"{quote(creds.user, safe='')}:{quote(creds.password, safe='')}@{netloc}"
        query = parts.query
        if parts.scheme == "rediss":
            tls = {"ssl_ca_certs": bus.TlsCaFile, "ssl_certfile": bus.TlsCertFile, "ssl_keyfile": bus.TlsKeyFile}
            query = "&".join(q for q in (query, urlencode({k: v for k, v in tls.items() if v})) if q)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    # -- job directories -------------------------------------------------
    def _job_dir(self, job_id: int) -> str:
        return os.path.join(self.jobs_dir, str(job_id))

    def _script_path(self, job_id: int) -> str:
        return os.path.join(self.scripts_dir, str(job_id))

    def _remove_job(self, job_id: int) -> None:
        """Delete the job's state directory and script (neither follows a symlink)."""
        shutil.rmtree(self._job_dir(job_id), ignore_errors=True)
        try:
            os.unlink(self._script_path(job_id))
        except FileNotFoundError:
            pass

    def _survey(self) -> tuple[list[StepRef], list[StepRef], dict[int, dict]]:
        """What the job directories say: steps that run, directories whose step ended, unsent results.

        A step runs while its supervisor lives, and also while it is being started: its directory
        exists (the launch was handed to the launcher) but the supervisor has not written its pid
        file yet (for at most :data:`STARTING_GRACE` seconds). Every other directory is *ended*:
        its step's final status was sent, or is in ``result.json`` (returned here to be sent),
        or the supervisor died without one. A directory that cannot be read is logged and skipped,
        and so is one that is not root's alone (:func:`statedir.job_dir_trusted`; e.g. left by an
        older version that gave job directories to their users): nothing in it is believed.
        """
        steps: list[StepRef] = []
        ended: list[StepRef] = []
        unsent: dict[int, dict] = {}
        now = time.time()
        for name in os.listdir(self.jobs_dir):
            if not name.isdigit():
                continue
            job_id = int(name)
            d = self._job_dir(job_id)
            if not statedir.job_dir_trusted(d):
                log.warning("job directory %s is not root's alone; ignored", d)
                continue
            try:
                sup = self._read(os.path.join(d, SUP_FILE)) or {}
                ref = (job_id, int(sup.get("step", 0)), int(sup.get("epoch", self.launched.get(job_id, 0))))
                if sup and supervisor_alive(d):
                    steps.append(ref)
                    continue
                if not sup and not os.path.exists(os.path.join(d, "cancelled")) \
                        and now - os.stat(d).st_mtime < STARTING_GRACE:
                    steps.append(ref)  # handed to the launcher; the supervisor is starting
                    continue
                result = self._read(os.path.join(d, RESULT_FILE))
                if result is not None:
                    unsent[job_id] = result
                elif sup and not self._reaped(ref):
                    steps.append(ref)  # its dead supervisor's processes may still run: still the node's
                    continue
                ended.append(ref)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("job directory %s skipped in this report: %s", d, exc)
        return steps, ended, unsent

    def _reaped(self, ref: StepRef) -> bool:
        """For a step whose supervisor died: True once the runtimes say nothing of it is left (asked once a survey)."""
        if ref in self.reaped:
            return True
        job_id, step_id, _epoch = ref
        if os.path.exists(os.path.join(self._job_dir(job_id), SENT_FILE)):
            self.reaped.add(ref)  # its final status went out: the supervisor cleaned up before it ended
            return True
        try:
            answers = self.pm.hook.crane_step_reap(node=self.node, job_id=job_id, step_id=step_id)
        except Exception as exc:  # a runtime must not take the node's report down
            log.error("job %d: reaping its dead supervisor's step failed: %s", job_id, exc)
            return False
        if False in answers:
            log.warning("job %d: its supervisor died and some of its processes still run; reported as running",
                        job_id)
            return False
        self.reaped.add(ref)
        return True

    def _reconcile_runtimes(self) -> None:
        """Before registering: every runtime removes what it has of jobs without a job directory here."""
        try:
            known = frozenset(int(n) for n in os.listdir(self.jobs_dir) if n.isdigit())
            self.pm.hook.crane_node_reconcile(node=self.node, known_jobs=known)
        except Exception as exc:  # a runtime must not keep the node from starting
            log.error("runtime reconciliation at start failed: %s", exc)

    def _scan(self) -> tuple[list[StepRef], list[StepRef], list[dict]]:
        """For a (re)registration: live steps, ended directories, and final statuses the controller may lack.

        An ended directory holds either the status it could not send, or none because it was sent
        (the controller's FreeJob has not arrived yet; the sent copy is reported again), or none
        because the supervisor died: then the job is reported lost. The controller ignores reports
        about jobs it has already ended, so over-reporting is harmless.
        """
        self.launched.clear()
        for name in os.listdir(self.jobs_dir):
            if name.isdigit():
                sup = self._read(os.path.join(self._job_dir(int(name)), SUP_FILE)) or {}
                self.launched[int(name)] = int(sup.get("epoch", 0))
        steps, ended, unsent = self._survey()
        finished = []
        for job_id, step_id, epoch in ended:
            d = self._job_dir(job_id)
            result = unsent.get(job_id) or self._read(os.path.join(d, SENT_FILE))
            if result is None and os.path.exists(os.path.join(d, SUP_FILE)):
                result = m.StepStatus(node=self.node, job_id=job_id, step_id=step_id, state="finished",
                                      exit_code=EC_CRANED_DOWN, time=time.time(), reason="step supervisor lost",
                                      epoch=epoch).model_dump()
            if result is not None:
                finished.append(result)
        return steps, ended, finished

    @staticmethod
    def _read(path: str) -> dict | None:
        """A state file craned's side wrote (:func:`read_state`: no symlink, root's, not group/other-writable)."""
        return read_state(path)

    # -- messages ----------------------------------------------------------
    def handle(self, batch: list[tuple[Any, Any]]) -> None:
        """Apply a batch of messages from this node's stream."""
        for _entry, msg in batch:
            try:
                if isinstance(msg, m.LaunchStep):
                    self._launch(msg)
                elif isinstance(msg, m.TerminateStep):
                    self._terminate(msg)
                elif isinstance(msg, m.FreeJob):
                    self._free(msg.job_id, msg.epoch)
                elif isinstance(msg, m.UpdateStep):
                    request_time_limit(self._job_dir(msg.job_id), msg.time_limit, msg.epoch)
                else:
                    log.warning("ignoring unexpected %s message", msg.kind)
            except Exception:
                log.exception("failed to apply %s for job %s; skipped", msg.kind, getattr(msg, "job_id", "?"))

    def _launch(self, msg: Any) -> None:
        d = self._job_dir(msg.job_id)
        if self._cancelled_before(d, msg.epoch):
            status = m.StepStatus(node=self.node, job_id=msg.job_id, step_id=msg.step_id, state="finished",
                                  exit_code=EC_TERMINATED, time=time.time(), reason="cancelled before launch",
                                  epoch=msg.epoch)
            self.bus.publish(self.bus.report_stream(self.node), status)
            return
        if self.launched.get(msg.job_id, -1) >= msg.epoch:
            return  # a duplicate delivery: launched already
        if os.path.lexists(d):
            if supervisor_alive(d):
                log.warning("job %d: launch epoch %d while an older epoch still runs", msg.job_id, msg.epoch)
                return
            self._remove_job(msg.job_id)
        os.mkdir(d, 0o700)
        self.launched[msg.job_id] = msg.epoch
        self.launcher.launch({"job_dir": d, "script_path": self._script_path(msg.job_id), "job_id": msg.job_id,
                              "step_id": msg.step_id, "epoch": msg.epoch,
                              "spec": msg.spec and msg.spec.model_dump(), "spec_error": msg.spec_error})

    def _terminate(self, msg: Any) -> None:
        """Cancel the step: SIGTERM its supervisor (verified, :func:`signal_supervisor`), or mark it cancelled."""
        d = self._job_dir(msg.job_id)
        if supervisor_alive(d):
            signal_supervisor(d, signal.SIGTERM, msg.epoch)  # another epoch's supervisor is left alone
            return
        if not os.path.lexists(d):
            os.mkdir(d, 0o700)
            write_json(os.path.join(d, "cancelled"), {"epoch": msg.epoch})

    @staticmethod
    def _cancelled_before(job_dir: str, epoch: int) -> bool:
        """Whether a TerminateStep that came before this launch (of ``epoch``) cancels it.

        The marker names the launch it was about: one about an older launch (a requeued job's
        first run, fenced while its node was down) does not cancel the new one; ``0`` means any.
        """
        path = os.path.join(job_dir, "cancelled")
        if not os.path.lexists(path):
            return False
        marker = read_state(path) or {}
        about = int(marker.get("epoch", 0) or 0) if isinstance(marker.get("epoch", 0), int) else 0
        return about == 0 or about >= epoch

    def _free(self, job_id: int, epoch: int = 0) -> None:
        """Forget a job the controller has recorded as ended — unless a newer launch of it is here.

        A FreeJob about launch ``epoch`` can arrive after the job was requeued and launched here
        again (the same directory): removing it then would pull the new supervisor's files away.
        """
        if epoch and self.launched.get(job_id, 0) > epoch:
            log.info("job %d: FreeJob for launch %d ignored, launch %d is here", job_id, epoch,
                     self.launched[job_id])
            return
        d = self._job_dir(job_id)
        if os.path.lexists(d) and not supervisor_alive(d):
            self._remove_job(job_id)
            self.launched.pop(job_id, None)
            self.reaped = {ref for ref in self.reaped if ref[0] != job_id}

    # -- main loop -----------------------------------------------------------
    def _register(self) -> None:
        steps, ended, finished = self._scan()
        self.bus.publish(self.bus.report_stream(self.node), m.NodeRegister(
            node=self.node, cpus=self.conf.cpu, mem=self.conf.memory,
            gres={g.key: int(g.count or 0) for g in self.conf.gres}, running=[s[0] for s in steps],
            finished=finished, boot_id=self.boot_id, pid=os.getpid(), steps=steps, ended=ended))
        log.info("registered node %s: %d running, %d unreported results", self.node, len(steps), len(finished))

    def _heartbeat(self) -> None:
        """Send the results supervisors could not send, then the heartbeat listing what runs here.

        The order matters: the controller reads a step missing from ``steps`` as gone, so any final
        status of it must be on the stream before the heartbeat.
        """
        steps, ended, unsent = self._survey()
        for job_id, result in unsent.items():  # the supervisor could not report it: do it now
            d = self._job_dir(job_id)
            try:
                status = m.StepStatus(**result)
            except (TypeError, ValueError) as exc:
                log.warning("job %d: unusable result file set aside: %s", job_id, exc)
                os.replace(os.path.join(d, RESULT_FILE), os.path.join(d, "result.bad"))
                continue
            self.bus.publish(self.bus.report_stream(self.node), status)
            os.replace(os.path.join(d, RESULT_FILE), os.path.join(d, SENT_FILE))
        self.bus.publish(self.bus.report_stream(self.node), m.NodeHeartbeat(
            node=self.node, running=[s[0] for s in steps], time=time.time(), steps=steps, ended=ended))

    def run(self) -> None:
        """Register, then consume launches and heartbeat until stopped."""
        from crane_kernel.bus import Consumer

        ping = self.cfg.Craned.PingInterval
        if self.launcher.proc is None:  # warm it now, not at the first job: its imports cost ~0.25 s of CPU
            self.launcher.proc = self.launcher._start()
        self._reconcile_runtimes()
        consumer = Consumer(self.bus, self.bus.node_stream(self.node), "craned", self.node, self.handle,
                            batch=200, block_ms=int(min(1.0, ping) * 1000), claim_idle_ms=60_000,
                            check=self.verifier)
        registered = False
        next_beat = next_janitor = 0.0
        while not self.stop:
            try:
                if not registered:
                    self._register()
                    registered = True
                    next_beat = time.time() + ping
                consumer.poll_once()
                if time.time() >= next_beat:
                    self._heartbeat()
                    next_beat = time.time() + ping
                if time.time() >= next_janitor:
                    consumer.janitor()  # also trims entries already settled
                    next_janitor = time.time() + 5.0
            except Exception as exc:
                log.error("node loop error (will retry): %s", exc)
                time.sleep(0.5)
        self.launcher.close()
        self.pm.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Run the node daemon for one (virtual) node until SIGTERM/SIGINT."""
    from crane_kernel.ctld.main import setup_logging

    ap = argparse.ArgumentParser(prog="craned", description="cranesched node daemon")
    ap.add_argument("-C", "--config", help="config file (default $CRANE_CONFIG or /etc/crane/config.yaml)")
    ap.add_argument("-N", "--node", default=socket.gethostname().split(".")[0],
                    help="node name to act as (default: short hostname)")
    ap.add_argument("-L", "--log-file", help="log to this file instead of stderr")
    ap.add_argument("-D", "--debug-level", default="info")
    args = ap.parse_args(argv)
    setup_logging(args.log_file, args.debug_level)
    try:
        daemon = Craned(load_config(args.config), args.node)
    except CraneError as exc:
        print(f"craned: {exc}", file=sys.stderr)
        return 1
    daemon.log_stream = open(args.log_file, "a") if args.log_file else None  # noqa: SIM115 - lives as long as craned

    def _stop(_signum: int, _frame: Any) -> None:
        daemon.stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    daemon.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
