"""The step supervisor: one process per running step, forked from the warm launcher of ``craned``.

It outlives ``craned`` (own session, not killed with it), launches the step
through the runtime plugins, enforces the time limit, turns a cancel into
SIGTERM-then-SIGKILL, reads usage, cleans up, and reports the final status
straight to the controller's stream (or, when Redis is unreachable, to a
result file that ``craned`` sends later). Forking (not exec'ing a new interpreter) keeps a launch at about a
millisecond instead of ~10 ms of interpreter start-up.
"""

from __future__ import annotations

import logging
import os
import pwd
import resource
import signal
import time
from typing import Any, NoReturn

from crane_common.states import (
    EC_EXCEED_TIME_LIMIT,
    EC_EXEC_ERR,
    EC_PERMISSION_DENIED,
    EC_SPAWN_FAILED,
    EC_TERMINATED,
)
from crane_kernel.craned.jobctl import StepControl
from crane_kernel.craned.jobfiles import (
    POLL_S,
    RESULT_FILE,
    SUP_FILE,
    proc_start_time,
    read_time_limit,
    write_json,
    write_script,
)
from crane_kernel.errors import StepLaunchError
from crane_kernel.messages import BusMessage, LaunchSpec, LaunchStep, StepStatus, encode
from crane_kernel.resp import xadd_once
from crane_kernel.runtime import StepSpec

log = logging.getLogger("craned.supervisor")

def expand_pattern(pattern: str, job_id: int, name: str, user: str, cwd: str) -> str:
    """Resolve an output file pattern (``%j`` job id, ``%x`` name, ``%u`` user, ``%%``) against ``cwd``."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append({"j": str(job_id), "x": name, "u": user, "%": "%", "J": f"{job_id}.0"}.get(nxt, "%" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    path = "".join(out)
    return path if os.path.isabs(path) else os.path.join(cwd, path)


def user_env(base: dict[str, str], pw: pwd.struct_passwd, node: str) -> dict[str, str]:
    """``base`` with the user's defaults (PATH, HOME, SHELL), USER/LOGNAME and the node's name."""
    env = dict(base)
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("HOME", pw.pw_dir)
    env.setdefault("SHELL", pw.pw_shell or "/bin/sh")
    env["USER"] = env["LOGNAME"] = pw.pw_name
    env["CRANE_NODENAME"] = node
    env["CRANE_JOB_NODENAME"] = node
    return env


def build_step(node: str, job_dir: str, job_id: int, spec: LaunchSpec, script_path: str = "") -> StepSpec:
    """Turn the controller's launch spec into a :class:`StepSpec`, writing the script file.

    The script goes to ``script_path`` (craned's script directory; ``<job_dir>/script`` when not
    given, for a root job or a test) with :func:`write_script`. The job directory itself stays
    root's: nothing of it is given to the user.
    """
    uid, gid = spec.uid, spec.gid
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        raise StepLaunchError(f"uid {uid} does not exist on node {node}", EC_PERMISSION_DENIED) from None
    user = pw.pw_name
    cwd = spec.cwd or pw.pw_dir
    script_path = script_path or os.path.join(job_dir, "script")
    write_script(script_path, spec.script, uid, gid)
    env = user_env(spec.env, pw, node)  # already what --export selected at submission (cbatch builds it)
    name = spec.name or "job"
    stdout = expand_pattern(spec.output or "Crane-%j.out", job_id, name, user, cwd)
    stderr = expand_pattern(spec.error, job_id, name, user, cwd) if spec.error else ""
    stdin = expand_pattern(spec.input, job_id, name, user, cwd) if spec.input else ""
    return StepSpec(
        job_id=job_id, step_id=0, node=node, name=name, uid=uid, gid=gid, user=user, cwd=cwd,
        script_path=script_path, interpreter=spec.interpreter.split(), env=env, stdout=stdout, stderr=stderr,
        stdin=stdin, open_mode=spec.open_mode, cpus=spec.cpus, cpu_ids=list(spec.cpu_ids), mem_bytes=spec.mem_bytes,
        devices_allow=list(spec.devices_allow), devices_deny=list(spec.devices_deny),
        time_limit=spec.time_limit,
        container=spec.container.model_dump() if spec.container is not None else None,
    )


def _ignore(_signum: int, _frame: Any) -> None:
    """Signal handler that does nothing."""


class Supervisor:
    """Runs one step to its end and reports how it ended.

    ``job_dir`` is the job's state directory (root's, 0700: the pid file and an unsent result go
    there, and nothing the job's user can write). ``launch`` is the launcher's request: the
    ``launch_step`` message's fields as a dict (``job_id``, ``step_id``, ``epoch``, ``spec``,
    ``spec_error``) plus ``script_path`` (where to write the script), validated here into a
    :class:`~crane_kernel.messages.LaunchStep`; a malformed spec is reported as a failed start.
    Statuses (:class:`~crane_kernel.messages.StepStatus`) go to ``stream`` on the Redis at ``redis_url``.
    The task-step supervisor (:mod:`crane_kernel.craned.stepsup`) subclasses it with another
    ``MESSAGE`` and its own :meth:`_supervise`.
    """

    MESSAGE: Any = LaunchStep
    LOCAL_KEYS = ("job_dir", "script_path", "task_step")

    def __init__(self, node: str, job_dir: str, launch: dict[str, Any], pm: Any, redis_url: str, stream: str,
                 kill_wait: float) -> None:
        self.node = node
        self.job_dir = job_dir
        self.script_path = str(launch.get("script_path") or "")
        msg = self.MESSAGE.model_validate({k: v for k, v in launch.items() if k not in self.LOCAL_KEYS})
        self.job_id = msg.job_id
        self.step_id = msg.step_id
        self.epoch = msg.epoch
        self.spec = msg.spec
        self.spec_error = msg.spec_error if msg.spec is not None or msg.spec_error else "the launch has no spec"
        self.pm = pm
        self.redis_url = redis_url
        self.stream = stream
        self.kill_wait = kill_wait
        self.cancel = False
        self.limit_changed = False
        self.handle: Any = None  # the launched step, once a runtime has accepted it
        self.control = StepControl()  # suspend, resume, signals from craned (craned/jobctl.py)

    def _on_term(self, _signum: int, _frame: Any) -> None:
        self.cancel = True

    def _on_usr1(self, _signum: int, _frame: Any) -> None:
        """craned changed the time limit (:func:`request_time_limit`): re-read it in the loop."""
        self.limit_changed = True

    def _status(self, state: str, exit_code: int = 0, reason: str = "", **usage: Any) -> StepStatus:
        return StepStatus(node=self.node, job_id=self.job_id, step_id=self.step_id, epoch=self.epoch, state=state,
                          exit_code=exit_code, reason=reason, **usage)

    def _send(self, status: StepStatus) -> bool:
        payload = encode(status)
        for delay in (0, 0.1, 0.5, 1, 2, 5):
            time.sleep(delay)
            try:
                xadd_once(self.redis_url, self.stream, {b"m": payload})
                return True
            except ConnectionError as exc:
                log.warning("job %d: could not report %s: %s", self.job_id, status.state, exc)
        return False

    def _report(self, msg: BusMessage) -> None:
        """Send a message other than the final status to the controller (a few tries; lost if Redis stays away)."""
        payload = encode(msg)
        for delay in (0, 0.2, 1):
            time.sleep(delay)
            try:
                xadd_once(self.redis_url, self.stream, {b"m": payload})
                return
            except ConnectionError as exc:
                log.warning("job %d: could not report %s: %s", self.job_id, msg.kind, exc)

    def _controls(self, handle: Any, deadline: float | None) -> float | None:
        """Carry out craned's suspend/resume/signal requests; the time limit moves by the time spent frozen."""
        frozen_for = self.control.apply(self, handle)
        if frozen_for and deadline:
            deadline += frozen_for
            log.info("job %d step %d: resumed after %.0f s; the time limit ends %.0f s later", self.job_id,
                     self.step_id, frozen_for, frozen_for)
        return deadline

    def _final(self, status: StepStatus) -> NoReturn:
        if not self._send(status):
            # craned re-sends it with its next heartbeat (or its registration after a restart)
            write_json(os.path.join(self.job_dir, RESULT_FILE), status.model_dump())
        if log.isEnabledFor(logging.DEBUG):
            ru = resource.getrusage(resource.RUSAGE_SELF)
            log.debug("job %d supervisor: %.2f ms CPU (%.2f sys), %d page faults", self.job_id,
                      (ru.ru_utime + ru.ru_stime) * 1000, ru.ru_stime * 1000, ru.ru_minflt)
        os._exit(0)

    def run(self) -> NoReturn:
        """Launch, supervise and report; never returns.

        Whatever raises in here (a runtime hook, the supervisor's own code) still ends with a final
        status: the step is killed and cleaned up as far as possible, and reported ``finished``
        with ``EC_EXEC_ERR`` (``failed_to_start`` if it was not launched yet) and the error as reason.
        """
        try:
            self._supervise()
        except BaseException as exc:  # the job must not be left without a final status
            self._fail(exc)
        self._fail(RuntimeError("the supervisor ended without a final status"))

    def _fail(self, exc: BaseException) -> NoReturn:
        """Stop the step after an unexpected error and report the failure; never returns."""
        log.error("job %d: step supervisor failed: %s: %s", self.job_id, type(exc).__name__, exc,
                  exc_info=(type(exc), exc, exc.__traceback__))
        reason = f"step supervisor failed: {type(exc).__name__}: {exc}"
        handle, hook = self.handle, self.pm.steps
        if handle is not None:
            for stop in (lambda: hook.crane_step_signal(handle=handle, signum=signal.SIGKILL, all_processes=True),
                         lambda: hook.crane_step_cleanup(handle=handle)):
                try:
                    stop()
                except BaseException:  # report anyway
                    log.exception("job %d: stopping the step after the failure failed", self.job_id)
        status = self._status("finished" if handle is not None else "failed_to_start",
                              EC_EXEC_ERR if handle is not None else EC_SPAWN_FAILED, reason)
        try:
            self._final(status)
        except BaseException:  # last resort: craned sends the result file
            log.exception("job %d: reporting the failure failed", self.job_id)
            try:
                write_json(os.path.join(self.job_dir, RESULT_FILE), status.model_dump())
            finally:
                os._exit(1)

    def _start(self) -> None:
        """Install the signal handlers and write the pid file craned verifies before signalling."""
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGUSR1, self._on_usr1)
        signal.signal(signal.SIGUSR2, self.control.on_signal)
        for ignored in (signal.SIGINT, signal.SIGHUP):
            signal.signal(ignored, _ignore)  # a handler, not SIG_IGN: the task must not inherit "ignored"
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        write_json(os.path.join(self.job_dir, SUP_FILE),
                   {"pid": os.getpid(), "start": proc_start_time(os.getpid()), "epoch": self.epoch,
                    "step": self.step_id})

    def _ending_code(self, ending: str, rc: int, usage: Any) -> tuple[int, str, bool]:
        """The final exit code, reason and OOM flag for how the step ended (``ending``: "", cancel, timeout)."""
        if ending == "timeout":
            exit_code, reason = EC_EXCEED_TIME_LIMIT, "time limit exceeded"
        elif ending == "cancel":
            exit_code, reason = EC_TERMINATED, "cancelled"
        else:
            exit_code, reason = rc, ""
        oom = bool(usage and usage.oom_killed) and not ending
        if oom:
            reason = "out of memory"
        return exit_code, reason, oom

    def _usage_and_cleanup(self, handle: Any) -> Any:
        """Read the step's usage, then clean it up (both logged, never raised); the usage or None."""
        hook, usage = self.pm.steps, None
        try:
            usage = hook.crane_step_usage(handle=handle)
        except Exception:
            log.exception("job %d: reading usage failed", self.job_id)
        try:
            hook.crane_step_cleanup(handle=handle)
        except Exception:
            log.exception("job %d: cleanup failed", self.job_id)
        return usage

    def _finish(self, exit_code: int, reason: str, oom: bool, usage: Any) -> NoReturn:
        """Report the final ``finished`` status with the usage; never returns."""
        self._final(self._status(
            "finished", exit_code, reason, oom=oom,
            cpu_time_ms=usage.cpu_time_ms if usage else 0, mem_peak=usage.mem_peak_bytes if usage else 0))

    def _supervise(self) -> None:
        """Launch the step, supervise it to its end and report it (exits the process when done)."""
        self._start()
        job_id = self.job_id
        try:
            if self.spec is None:
                raise StepLaunchError(f"invalid launch spec: {self.spec_error}", EC_SPAWN_FAILED)
            step = build_step(self.node, self.job_dir, job_id, self.spec, self.script_path)
            handle = self.handle = self.pm.steps.crane_step_launch(step=step)  # later hooks go to its runtime
            if handle is None:
                raise StepLaunchError("no runtime plugin accepted the step", EC_SPAWN_FAILED)
        except StepLaunchError as exc:
            log.warning("job %d failed to start: %s", job_id, exc)
            self._final(self._status("failed_to_start", exc.exit_code, str(exc)))
        except Exception as exc:
            log.exception("job %d failed to start", job_id)
            self._final(self._status("failed_to_start", EC_SPAWN_FAILED, f"{type(exc).__name__}: {exc}"))
        started = time.time()
        self._send(self._status("running"))
        deadline = started + step.time_limit if step.time_limit else None
        self.limit_changed = True  # a limit changed before the step started is in the file already
        ending, term_at, killed = "", 0.0, False
        frozen_total = 0.0  # seconds suspended so far: a changed limit counts from the start plus these
        warn = WarnSignal(self.spec)
        hook = self.pm.steps  # the runtime hooks, called on the plugin that launched the step
        while True:
            rc = hook.crane_step_wait(handle=handle, timeout=POLL_S)
            if rc is not None:
                break
            before = deadline
            deadline = self._controls(handle, deadline)
            if deadline and before:
                frozen_total += deadline - before
            now = time.time()
            if self.limit_changed:
                self.limit_changed = False
                new_limit = read_time_limit(self.job_dir)
                if new_limit is not None:
                    deadline = started + new_limit + frozen_total
                    warn.rearm(deadline, now)
                    log.info("job %d: time limit now %d s", job_id, new_limit)
            suspended = bool(self.control.suspended_at)
            if not ending and not suspended:
                warn.maybe_send(hook, handle, deadline, now)
            if not ending and (self.cancel or (deadline and now >= deadline and not suspended)):
                ending = "cancel" if self.cancel else "timeout"
                hook.crane_step_resume(handle=handle)  # a suspended step must see its SIGTERM
                hook.crane_step_signal(handle=handle, signum=signal.SIGCONT, all_processes=True)
                hook.crane_step_signal(handle=handle, signum=signal.SIGTERM, all_processes=False)
                term_at = now
            elif ending and not killed and now - term_at >= self.kill_wait:
                hook.crane_step_signal(handle=handle, signum=signal.SIGKILL, all_processes=True)
                killed = True
        usage = self._usage_and_cleanup(handle)
        self._finish(*self._ending_code(ending, rc, usage), usage)


class WarnSignal:
    """``--signal [B:]SIG@seconds``: the signal sent once, that many seconds before the time limit."""

    def __init__(self, spec: LaunchSpec | None) -> None:
        self.signum = spec.warn_signal if spec is not None else 0
        self.before = spec.warn_seconds if spec is not None else 0
        self.batch_only = bool(spec.warn_batch_only) if spec is not None else False
        self.sent = False

    def rearm(self, deadline: float | None, now: float) -> None:
        """A new time limit: the signal is due again if its moment is still ahead."""
        if deadline and now < deadline - self.before:
            self.sent = False

    def maybe_send(self, hook: Any, handle: Any, deadline: float | None, now: float) -> None:
        """Send the signal when its moment has come (to the batch shell's group, or to every process)."""
        if not self.signum or self.sent or not deadline or now < deadline - self.before:
            return
        self.sent = True
        log.info("job %d: signal %d, %d s before the time limit", handle.spec.job_id, self.signum, self.before)
        hook.crane_step_signal(handle=handle, signum=self.signum, all_processes=not self.batch_only)
