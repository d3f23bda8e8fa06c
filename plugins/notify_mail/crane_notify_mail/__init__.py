"""``mail``: the ``--mail-type``/``--mail-user`` notifications, an event plugin run by ``cplugind``.

For ``job.started``, ``job.ended`` and ``job.requeued`` events of a job that asked for mail
(``event.job.mail_type``), :func:`~crane_notify_mail.render.mail_types_for` decides which mails
are due (Slurm's rules), the Jinja2 templates write each one (subject, plain text and HTML), and
the send is *enqueued* on an rq queue, with retries: the hook returns as soon as Redis has the
job, so a slow or dead SMTP server never holds up the plugin host. rq workers
(``python -m crane_notify_mail.worker``; the plugin starts one unless ``StartWorker: false``)
run :func:`crane_notify_mail.send.deliver`.

One mail per (job, type, event): the rq job id is ``crane-mail[-<cluster>]-<job id>-<type>-<seq>``,
and an event whose rq job already exists (a redelivered event) enqueues nothing. The rq job is kept
``KeepSeconds`` after it ran, which is how long a redelivery is recognised.

Settings, templates, workers and the delivery guarantees: docs/notifications.md.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import Any

from crane_kernel import hookimpl
from crane_kernel.events import JobEvent, JobRecord

from crane_notify_mail.redisconn import PASSWORD_ENV, REDIS_ACL
from crane_notify_mail.render import MAIL_TYPES, Mail, Renderer, mail_types_for
from crane_notify_mail.settings import Settings, parse

__all__ = ["REDIS_ACL", "MailNotifier", "rq_job_id"]

log = logging.getLogger("crane_notify_mail")

KINDS = frozenset({"job.started", "job.ended", "job.requeued"})
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
WORKER_STOP_S = 10.0


def _slug(text: str) -> str:
    return "".join(c if c in _SAFE else "_" for c in text)[:64]


def rq_job_id(cluster: str, event: JobEvent, mail_type: str) -> str:
    """The deterministic rq job id of one mail: the same event (redelivered) gives the same id.

    ``seq`` identifies the event (a requeued job's second start is another event); an event
    without one (``seq`` 0) is identified by its message ``id``.
    """
    which = str(event.seq) if event.seq else "id" + _slug(str(event.id))
    prefix = f"crane-mail-{_slug(cluster)}" if cluster else "crane-mail"
    return f"{prefix}-{event.job_id}-{mail_type.lower()}-{which}"


def _sample_event() -> JobEvent:
    """An event with every field set, to render each template once at configure time."""
    job = JobRecord(job_id=1, name="sample", user="root", account="acct", partition="part", state="Failed",
                    exit_code=1, submit_time=1.0e9, start_time=1.0e9 + 60, end_time=1.0e9 + 3600, time_limit=7200,
                    node_num=2, cpus=4, nodes=["cn01", "cn02"], cwd="/tmp", reason="sample",
                    mail_type=list(MAIL_TYPES), mail_user="root")
    return JobEvent(kind="job.ended", seq=1, time=1.0e9 + 3600, job_id=1, job=job)


class MailNotifier:
    """The ``mail`` event plugin (entry point ``crane.events: mail``)."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.renderer: Renderer | None = None
        self.redis: Any = None
        self.queue: Any = None
        self.worker: subprocess.Popen[bytes] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @hookimpl
    def crane_plugin_configure(self, settings: dict) -> None:
        """Check the settings, compile the templates, connect the queue, start the worker."""
        cfg = parse(settings or {})
        try:
            renderer = Renderer(cfg.template_dir or None)
            sample = _sample_event()
            for t in MAIL_TYPES:  # a site template using an unknown variable fails here, not at the first job
                renderer.render(sample, t, to="root", cluster=cfg.cluster, message_id="<sample@localhost>")
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - a template error of any kind is a settings error
            raise ValueError(f"the mail templates do not render: {type(exc).__name__}: {exc}") from None
        import redis
        from rq import Queue

        from crane_notify_mail.redisconn import connect

        conn = connect(cfg.redis_url, cfg.username or None, cfg.password or None, socket_timeout=10,
                       socket_connect_timeout=5, health_check_interval=30)
        try:
            conn.ping()
        except redis.AuthenticationError as exc:
            raise ValueError(f"Redis at {cfg.redis_url} refused the credentials: {exc}") from None
        except redis.ResponseError as exc:  # e.g. NOPERM: the ACL user may not use the rq keys
            raise ValueError(f"Redis at {cfg.redis_url}: {exc}") from None
        except redis.RedisError as exc:  # down for now: events are retried by the host until it is back
            log.warning("mail: Redis at %s is not reachable yet (%s); mails are queued once it is", cfg.redis_url, exc)
        self.settings, self.renderer, self.redis = cfg, renderer, conn
        self.queue = Queue(cfg.queue, connection=conn)
        if cfg.start_worker:
            self._start_worker()

    @hookimpl
    def crane_plugin_shutdown(self) -> None:
        """Stop the worker this plugin started (after the mail it is sending), close the connection."""
        self._stop_worker()
        if self.redis is not None:
            try:
                self.redis.close()
            except Exception:  # noqa: BLE001 - shutting down
                pass
            self.redis = None

    def _start_worker(self) -> None:
        cfg = self.settings
        assert cfg is not None
        env = dict(os.environ)
        env.pop(PASSWORD_ENV, None)
        args = [sys.executable, "-m", "crane_notify_mail.worker", "--redis-url", cfg.redis_url, "--queue", cfg.queue,
                "--exit-with-parent"]
        if cfg.password:
            env[PASSWORD_ENV] = cfg.password  # the environment, not argv: ps shows argv to everyone
            if cfg.username:
                args += ["--username", cfg.username]
        self.worker = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, close_fds=True)
        log.info("mail: started rq worker pid %d on queue %s", self.worker.pid, cfg.queue)

    def _stop_worker(self) -> None:
        proc, self.worker = self.worker, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # rq's warm shutdown: the mail in progress is finished
        try:
            proc.wait(WORKER_STOP_S)
        except subprocess.TimeoutExpired:
            log.warning("mail: rq worker pid %d did not stop in %.0f s, killing it", proc.pid, WORKER_STOP_S)
            proc.kill()
            proc.wait()

    def _check_worker(self) -> None:
        """Start the worker again if it died (logged)."""
        if self.worker is not None and self.worker.poll() is not None:
            log.warning("mail: rq worker pid %d exited with %s; starting another", self.worker.pid,
                        self.worker.returncode)
            self._start_worker()

    # -- events ---------------------------------------------------------------------------------
    def recipient(self, job: JobRecord) -> str:
        """Where a job's mail goes: ``mail_user`` (default the job's user), a bare name with ``@MailDomain``."""
        cfg = self.settings
        assert cfg is not None
        to = job.mail_user or job.user
        if "@" not in to and cfg.mail_domain:
            to = f"{to}@{cfg.mail_domain}"
        return to

    def message_id(self, rq_id: str) -> str:
        """A deterministic Message-ID: a mail sent twice (at-least-once) is recognisable as one."""
        cfg = self.settings
        assert cfg is not None
        domain = cfg.smtp["from"].rpartition("@")[2] or "localhost"
        return f"<{rq_id}@{domain}>"

    def mails_for(self, event: JobEvent) -> list[tuple[str, Mail]]:
        """``(rq job id, mail)`` for each mail ``event`` calls for (empty for most events)."""
        if self.renderer is None or self.settings is None:
            raise RuntimeError("the mail plugin is not configured")
        out = []
        for mail_type in mail_types_for(event):
            rq_id = rq_job_id(self.settings.cluster, event, mail_type)
            out.append((rq_id, self.renderer.render(event, mail_type, to=self.recipient(event.job),
                                                    cluster=self.settings.cluster,
                                                    message_id=self.message_id(rq_id))))
        return out

    @hookimpl
    def crane_event(self, event: Any) -> None:
        """Enqueue the mails ``event`` calls for; raises (so the host retries) when Redis is unreachable."""
        if not isinstance(event, JobEvent) or event.kind not in KINDS or not event.job.mail_type:
            return
        mails = self.mails_for(event)
        if not mails:
            return
        from rq import Retry
        from rq.job import Job

        cfg = self.settings
        assert cfg is not None and self.queue is not None
        self._check_worker()
        retry = Retry(max=cfg.retries, interval=list(cfg.intervals)) if cfg.retries else None
        for rq_id, mail in mails:
            if Job.exists(rq_id, connection=self.redis):
                log.info("mail: %s already queued (event %s delivered again); not sent twice", rq_id, event.id)
                continue
            self.queue.enqueue(
                "crane_notify_mail.send.deliver",
                {"to": mail.to, "subject": mail.subject, "text": mail.text, "html": mail.html,
                 "message_id": mail.message_id},
                cfg.smtp,
                job_id=rq_id, retry=retry, result_ttl=cfg.keep_seconds, failure_ttl=cfg.keep_seconds,
                job_timeout=cfg.job_timeout, description=f"mail {mail.subject[:120]!r} to {mail.to}",
            )
            log.info("mail: queued %s for %s", rq_id, mail.to)
