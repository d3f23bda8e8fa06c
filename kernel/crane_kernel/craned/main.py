"""``craned``: the node daemon.

One ``craned`` per (virtual) node. It registers the node's resources,
heartbeats, and consumes its own stream (``crane:{cluster}:node:{name}``):
launches (fork a step supervisor), terminations (signal the supervisor) and
frees (forget a finished job). It is single-threaded on purpose, so forking a
supervisor from it is safe and cheap.

Job directories ``<CraneBaseDir>/craned/<node>/jobs/<job_id>/`` hold the
supervisor's pid file and the result file; they are how a restarted ``craned``
finds the steps that kept running without it, and the results it still has to
report; ``jobs/<job_id>.<step_id>/`` are the same for the task steps (crun) that
:class:`~crane_kernel.messages.StartStep` started, each run by a task-step supervisor
(:mod:`crane_kernel.craned.stepsup`). They are root's and 0700 (:mod:`crane_kernel.craned.statedir`): nothing
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
from dataclasses import dataclass, field
from typing import Any

from crane_common.states import EC_CRANED_DOWN, EC_SPAWN_FAILED, EC_TERMINATED
from crane_kernel import messages as m
from crane_kernel.bus.credentials import node_user
from crane_kernel.bus.signing import CommandVerifier
from crane_kernel.config import ClusterConfig, load_config
from crane_kernel.craned import jobctl, statedir
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


def parse_dir_name(name: str) -> tuple[int, int | None] | None:
    """``<job>`` -> (job, None) (a job directory), ``<job>.<step>`` -> (job, step) (a task step's), else None."""
    job, dot, step = name.partition(".")
    if not job.isdigit() or (dot and not step.isdigit()):
        return None
    return int(job), (int(step) if dot else None)


@dataclass
class Survey:
    """What the state directories say (:meth:`Craned._survey`).

    ``steps``/``ended`` are the job directories' (batch steps), ``task_steps``/``task_ended`` the
    task steps'; ``unsent`` maps a directory to the final status its supervisor could not send;
    ``dirs`` maps each ended directory to its ref and whether it is a task step's.
    """

    steps: list[StepRef] = field(default_factory=list)
    ended: list[StepRef] = field(default_factory=list)
    task_steps: list[StepRef] = field(default_factory=list)
    task_ended: list[StepRef] = field(default_factory=list)
    unsent: dict[str, dict] = field(default_factory=dict)
    dirs: dict[str, tuple[StepRef, bool]] = field(default_factory=dict)


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
        self.task_launched: dict[tuple[int, int], int] = {}  # (job, step) -> epoch of the StartStep run here
        self.reaped: set[tuple[str, StepRef]] = set()  # (dir, step) of dead supervisors the runtimes reaped
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

    def _step_dir(self, job_id: int, step_id: int) -> str:
        return os.path.join(self.jobs_dir, f"{job_id}.{step_id}")

    def _task_dirs(self, job_id: int) -> dict[int, str]:
        """The task-step directories of ``job_id``: step id -> path."""
        found = {}
        for name in os.listdir(self.jobs_dir):
            ids = parse_dir_name(name)
            if ids is not None and ids[0] == job_id and ids[1] is not None:
                found[ids[1]] = os.path.join(self.jobs_dir, name)
        return found

    def _script_path(self, job_id: int) -> str:
        return os.path.join(self.scripts_dir, str(job_id))

    def _remove_job(self, job_id: int) -> None:
        """Delete the job's state directory and script (neither follows a symlink)."""
        shutil.rmtree(self._job_dir(job_id), ignore_errors=True)
        try:
            os.unlink(self._script_path(job_id))
        except FileNotFoundError:
            pass

    def _survey(self) -> Survey:
        """What the job and task-step directories say: steps that run, directories whose step ended, unsent results.

        A step runs while its supervisor lives, and also while it is being started: its directory
        exists (the launch was handed to the launcher) but the supervisor has not written its pid
        file yet (for at most :data:`STARTING_GRACE` seconds). Every other directory is *ended*:
        its step's final status was sent, or is in ``result.json`` (returned here to be sent),
        or the supervisor died without one. A directory that cannot be read is logged and skipped,
        and so is one that is not root's alone (:func:`statedir.job_dir_trusted`; e.g. left by an
        older version that gave job directories to their users): nothing in it is believed.
        """
        survey = Survey()
        now = time.time()
        for name in os.listdir(self.jobs_dir):
            ids = parse_dir_name(name)
            if ids is None:
                continue
            job_id, task_step = ids
            d = os.path.join(self.jobs_dir, name)
            if not statedir.job_dir_trusted(d):
                log.warning("job directory %s is not root's alone; ignored", d)
                continue
            try:
                running, ref, result = self._survey_dir(d, job_id, task_step, now)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("job directory %s skipped in this report: %s", d, exc)
                continue
            if result is not None:
                survey.unsent[d] = result
            if running:
                (survey.steps if task_step is None else survey.task_steps).append(ref)
            else:
                (survey.ended if task_step is None else survey.task_ended).append(ref)
                survey.dirs[d] = (ref, task_step is not None)
        return survey

    def _survey_dir(self, d: str, job_id: int, task_step: int | None, now: float) -> tuple[bool, StepRef, dict | None]:
        """One directory: whether its step runs, its ref, and the result it could not send."""
        sup = self._read(os.path.join(d, SUP_FILE)) or {}
        if task_step is None:
            ref = (job_id, int(sup.get("step", 0)), int(sup.get("epoch", self.launched.get(job_id, 0))))
        else:
            ref = (job_id, task_step, int(sup.get("epoch", self.task_launched.get((job_id, task_step), 0))))
        if sup and supervisor_alive(d):
            return True, ref, None
        if not sup and not os.path.exists(os.path.join(d, "cancelled")) and now - os.stat(d).st_mtime < STARTING_GRACE:
            return True, ref, None  # handed to the launcher; the supervisor is starting
        result = self._read(os.path.join(d, RESULT_FILE))
        if result is not None:
            return False, ref, result
        if sup and not self._reaped(ref, d):
            return True, ref, None  # its dead supervisor's processes may still run: still the node's
        return False, ref, None

    def _reaped(self, ref: StepRef, d: str) -> bool:
        """For a step whose supervisor died: True once the runtimes say nothing of it is left (asked once a survey)."""
        if (d, ref) in self.reaped:
            return True
        job_id, step_id, _epoch = ref
        if os.path.exists(os.path.join(d, SENT_FILE)):
            self.reaped.add((d, ref))  # its final status went out: the supervisor cleaned up before it ended
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
        self.reaped.add((d, ref))
        return True

    def _reconcile_runtimes(self) -> None:
        """Before registering: every runtime removes what it has of jobs without a job directory here."""
        try:
            ids = (parse_dir_name(n) for n in os.listdir(self.jobs_dir))
            known = frozenset(i[0] for i in ids if i is not None)
            self.pm.hook.crane_node_reconcile(node=self.node, known_jobs=known)
        except Exception as exc:  # a runtime must not keep the node from starting
            log.error("runtime reconciliation at start failed: %s", exc)

    def _scan(self) -> tuple[Survey, list[dict]]:
        """For a (re)registration: the survey, and final statuses the controller may lack.

        An ended directory holds either the status it could not send, or none because it was sent
        (the controller's FreeJob has not arrived yet; the sent copy is reported again), or none
        because the supervisor died: then the job (or task step) is reported lost. The controller
        ignores reports about steps it has already ended, so over-reporting is harmless.
        """
        self.launched.clear()
        for name in os.listdir(self.jobs_dir):
            ids = parse_dir_name(name)
            if ids is None:
                continue
            sup = self._read(os.path.join(self.jobs_dir, name, SUP_FILE)) or {}
            if ids[1] is None:
                self.launched[ids[0]] = int(sup.get("epoch", 0))
            else:
                self.task_launched[(ids[0], ids[1])] = int(sup.get("epoch", 0))
        survey = self._survey()
        finished = []
        for d, ((job_id, step_id, epoch), _task) in survey.dirs.items():
            result = survey.unsent.get(d) or self._read(os.path.join(d, SENT_FILE))
            if result is None and os.path.exists(os.path.join(d, SUP_FILE)):
                result = m.StepStatus(node=self.node, job_id=job_id, step_id=step_id, state="finished",
                                      exit_code=EC_CRANED_DOWN, time=time.time(), reason="step supervisor lost",
                                      epoch=epoch).model_dump()
            if result is not None:
                finished.append(result)
        return survey, finished

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
                elif isinstance(msg, m.StartStep):
                    self._start_step(msg)
                elif isinstance(msg, m.TerminateStep):
                    self._terminate(msg)
                elif isinstance(msg, m.FreeJob):
                    self._free(msg.job_id, msg.epoch, msg.step_id)
                elif isinstance(msg, m.UpdateStep):
                    request_time_limit(self._job_dir(msg.job_id), msg.time_limit, msg.epoch)
                elif isinstance(msg, m.SuspendJob | m.ResumeJob | m.SignalJob):
                    jobctl.forward(self._job_dir(msg.job_id), self._task_dirs(msg.job_id), msg)
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

    def _start_step(self, msg: m.StartStep) -> None:
        """A task step: make its directory ``jobs/<job>.<step>/`` and have the launcher fork its supervisor.

        A malformed spec is reported as failed to start at once; a duplicate (the same step and
        launch epoch, already here) is ignored; a step cancelled before it arrived is reported so.
        """
        job_id, step_id = msg.job_id, msg.step_id

        def report(state: str, code: int, reason: str) -> None:
            self.bus.publish(self.bus.report_stream(self.node), m.StepStatus(
                node=self.node, job_id=job_id, step_id=step_id, state=state, exit_code=code, time=time.time(),
                reason=reason, epoch=msg.epoch))

        if msg.spec is None:
            report("failed_to_start", EC_SPAWN_FAILED, f"invalid launch spec: {msg.spec_error or 'no spec'}")
            return
        d = self._step_dir(job_id, step_id)
        if self._cancelled_before(d, msg.epoch):
            report("finished", EC_TERMINATED, "cancelled before launch")
            return
        if self.task_launched.get((job_id, step_id), -1) >= msg.epoch:
            return  # a duplicate delivery: started already
        if os.path.lexists(d):
            sup = self._read(os.path.join(d, SUP_FILE))
            if sup is None or int(sup.get("epoch", 0)) >= msg.epoch or supervisor_alive(d):
                log.warning("job %d step %d: StartStep of epoch %d ignored, the step is here", job_id, step_id,
                            msg.epoch)
                return
            shutil.rmtree(d, ignore_errors=True)  # an older launch's, ended
        os.mkdir(d, 0o700)
        self.task_launched[(job_id, step_id)] = msg.epoch
        self.launcher.launch({"task_step": True, "job_dir": d, "job_id": job_id, "step_id": step_id,
                              "epoch": msg.epoch, "spec": msg.spec.model_dump(), "spec_error": msg.spec_error})

    def _terminate(self, msg: Any) -> None:
        """Cancel steps: SIGTERM their supervisors (verified, :func:`signal_supervisor`), or mark them cancelled.

        ``step_id`` None: the batch step and every task step of the job; 0: the job directory's
        step and ``jobs/<job>.0/``; another number: that task step only.
        """
        if msg.step_id is None or msg.step_id == 0:
            d = self._job_dir(msg.job_id)
            if supervisor_alive(d):
                signal_supervisor(d, signal.SIGTERM, msg.epoch)  # another epoch's supervisor is left alone
            elif not os.path.lexists(d):
                os.mkdir(d, 0o700)
                write_json(os.path.join(d, "cancelled"), {"epoch": msg.epoch})
        if msg.step_id is None:
            targets = self._task_dirs(msg.job_id)
        else:
            targets = {msg.step_id: self._step_dir(msg.job_id, msg.step_id)}
        for step_id, d in targets.items():
            if supervisor_alive(d):
                signal_supervisor(d, signal.SIGTERM, msg.epoch)
            elif step_id or os.path.lexists(d):
                if not os.path.lexists(d):
                    os.mkdir(d, 0o700)
                write_json(os.path.join(d, "cancelled"), {"epoch": msg.epoch})  # a starting one reads it

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

    def _free(self, job_id: int, epoch: int = 0, step_id: int | None = None) -> None:
        """Forget a job (or one task step) the controller has recorded as ended — unless a newer launch of it is here.

        A FreeJob about launch ``epoch`` can arrive after the job was requeued and launched here
        again (the same directory): removing it then would pull the new supervisor's files away.
        The whole job: its directory, every task-step directory, and whatever the runtimes still
        have of it (``crane_step_reap`` of step 0, once no supervisor of it lives).
        """
        if step_id is not None:
            d = self._step_dir(job_id, step_id)
            if os.path.lexists(d) and not supervisor_alive(d):
                shutil.rmtree(d, ignore_errors=True)
                self.reaped = {r for r in self.reaped if r[0] != d}
            return
        if epoch and self.launched.get(job_id, 0) > epoch:
            log.info("job %d: FreeJob for launch %d ignored, launch %d is here", job_id, epoch,
                     self.launched[job_id])
            return
        d = self._job_dir(job_id)
        alive = False
        task_dirs = self._task_dirs(job_id)
        had_any = bool(task_dirs) or os.path.lexists(d)
        if os.path.lexists(d):
            if supervisor_alive(d):
                alive = True
            else:
                self._remove_job(job_id)
                self.launched.pop(job_id, None)
        for task_step, sd in task_dirs.items():
            if supervisor_alive(sd):
                alive = True
                continue
            shutil.rmtree(sd, ignore_errors=True)
            self.task_launched.pop((job_id, task_step), None)
        self.reaped = {r for r in self.reaped if r[1][0] != job_id}
        if had_any and not alive:  # nothing of a job that never had a directory here
            try:
                self.pm.hook.crane_step_reap(node=self.node, job_id=job_id, step_id=0)
            except Exception as exc:  # a runtime must not take the node down
                log.error("job %d: reaping it at FreeJob failed: %s", job_id, exc)

    # -- main loop -----------------------------------------------------------
    def _register(self) -> None:
        survey, finished = self._scan()
        self.bus.publish(self.bus.report_stream(self.node), m.NodeRegister(
            node=self.node, cpus=self.conf.cpu, mem=self.conf.memory,
            gres={g.key: int(g.count or 0) for g in self.conf.gres}, running=[s[0] for s in survey.steps],
            finished=finished, boot_id=self.boot_id, pid=os.getpid(), steps=survey.steps, ended=survey.ended,
            task_steps=survey.task_steps, task_ended=survey.task_ended))
        log.info("registered node %s: %d running, %d task steps, %d unreported results", self.node,
                 len(survey.steps), len(survey.task_steps), len(finished))

    def _heartbeat(self) -> None:
        """Send the results supervisors could not send, then the heartbeat listing what runs here.

        The order matters: the controller reads a step missing from ``steps`` as gone, so any final
        status of it must be on the stream before the heartbeat.
        """
        survey = self._survey()
        for d, result in survey.unsent.items():  # the supervisor could not report it: do it now
            try:
                status = m.StepStatus(**result)
            except (TypeError, ValueError) as exc:
                log.warning("%s: unusable result file set aside: %s", d, exc)
                os.replace(os.path.join(d, RESULT_FILE), os.path.join(d, "result.bad"))
                continue
            self.bus.publish(self.bus.report_stream(self.node), status)
            os.replace(os.path.join(d, RESULT_FILE), os.path.join(d, SENT_FILE))
        self.bus.publish(self.bus.report_stream(self.node), m.NodeHeartbeat(
            node=self.node, running=[s[0] for s in survey.steps], time=time.time(), steps=survey.steps,
            ended=survey.ended, task_steps=survey.task_steps, task_ended=survey.task_ended))

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
