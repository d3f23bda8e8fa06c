"""Which mails an event calls for, and the Jinja2 templates that write them.

Three templates make a mail: ``subject.txt`` (one line), ``body.txt`` (the plain-text part) and
``body.html`` (the HTML alternative). A site's ``TemplateDir`` overrides any of them by name, for
every type (``TemplateDir/body.txt``) or for one type (``TemplateDir/fail/body.txt``, the type in
lower case); what it does not override comes from the bundled defaults
(``crane_notify_mail/templates``). ``.html`` templates are autoescaped.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import jinja2
from crane_common import hostlist
from crane_common.mail import ALL_TYPES, MAIL_TYPES
from crane_common.states import format_exit_code
from crane_kernel.events import JobEvent, JobRecord

TEMPLATE_NAMES = ("subject.txt", "body.txt", "body.html")
MAX_SUBJECT = 250

TITLES = {
    "BEGIN": "Began", "END": "Ended", "FAIL": "Failed", "REQUEUE": "Requeued",
    "TIME_LIMIT": "Reached its time limit", "OOM": "Ran out of memory",
}
FAILED_STATES = frozenset({"Failed", "ExceedTimeLimit", "OutOfMemory", "Deadline"})


def asked_types(job: JobRecord) -> frozenset[str]:
    """The job's ``mail_type`` as canonical names (tolerates ``ALL`` and ``TIMELIMIT`` spellings)."""
    out: set[str] = set()
    for t in job.mail_type:
        t = t.upper()
        if t == "ALL":
            out.update(ALL_TYPES)
        elif t == "TIMELIMIT":
            out.add("TIME_LIMIT")
        elif t in MAIL_TYPES:
            out.add(t)
    return frozenset(out)


def mail_types_for(event: JobEvent) -> list[str]:
    """The types of mail ``event`` calls for, among those the job asked for (Slurm's rules).

    ``job.started`` → BEGIN; ``job.requeued`` → REQUEUE; ``job.ended`` → FAIL when the job failed
    (``Failed``, ``ExceedTimeLimit``, ``OutOfMemory``, ``Deadline``) and FAIL was asked, else END
    when asked (a cancelled job *ended*); plus TIME_LIMIT for ``ExceedTimeLimit`` and OOM for
    ``OutOfMemory`` when asked.
    """
    asked = asked_types(event.job)
    if not asked:
        return []
    out: list[str] = []
    if event.kind == "job.started":
        out.append("BEGIN")
    elif event.kind == "job.requeued":
        out.append("REQUEUE")
    elif event.kind == "job.ended":
        state = event.job.state
        if state in FAILED_STATES and "FAIL" in asked:
            out.append("FAIL")
        elif "END" in asked:
            out.append("END")
        if state == "ExceedTimeLimit":
            out.append("TIME_LIMIT")
        elif state == "OutOfMemory":
            out.append("OOM")
    return [t for t in out if t in asked]


def _clock(seconds: float) -> str:
    """``[D-]HH:MM:SS`` (cacct's elapsed format)."""
    s = max(0, int(seconds))
    d, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{d}-{text}" if d else text


def _when(ts: float) -> str:
    if not ts:
        return ""
    return datetime.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


@dataclass(frozen=True)
class Mail:
    """A rendered mail: what :func:`crane_notify_mail.send.deliver` sends."""

    to: str
    subject: str
    text: str
    html: str
    message_id: str


class Renderer:
    """The templates (bundled defaults under an optional site directory), compiled once."""

    def __init__(self, template_dir: str | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if template_dir:
            if not os.path.isdir(template_dir):
                raise ValueError(f"TemplateDir {template_dir} is not a directory")
            loaders.append(jinja2.FileSystemLoader(template_dir))
        loaders.append(jinja2.PackageLoader("crane_notify_mail", "templates"))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self.env.filters["clock"] = _clock
        self.env.filters["when"] = _when
        self.template_dir = template_dir
        self._cache: dict[tuple[str, str], jinja2.Template] = {}
        for t in MAIL_TYPES:  # compile every template now: a broken site template is a configure error
            for name in TEMPLATE_NAMES:
                self._template(t, name)

    def _template(self, mail_type: str, name: str) -> jinja2.Template:
        key = (mail_type, name)
        tpl = self._cache.get(key)
        if tpl is None:
            try:
                tpl = self.env.select_template([f"{mail_type.lower()}/{name}", name])
            except jinja2.TemplateSyntaxError as exc:
                raise ValueError(f"template {exc.filename or exc.name}, line {exc.lineno}: {exc.message}") from None
            except jinja2.TemplateNotFound as exc:
                raise ValueError(f"template {exc.name} not found") from None
            self._cache[key] = tpl
        return tpl

    def _render(self, mail_type: str, name: str, ctx: dict[str, Any]) -> str:
        tpl = self._template(mail_type, name)
        try:
            return tpl.render(ctx)
        except jinja2.TemplateError as exc:
            raise ValueError(f"template {tpl.filename or tpl.name}: {type(exc).__name__}: {exc}") from None

    def context(self, event: JobEvent, mail_type: str, cluster: str) -> dict[str, Any]:
        """The variables every template gets (docs/notifications.md lists them)."""
        job = event.job
        end = job.end_time or (event.time if event.kind == "job.ended" else 0.0)
        start = job.start_time
        run = (end or event.time) - start if start else 0.0
        return {
            "type": mail_type,
            "title": TITLES.get(mail_type, mail_type.title()),
            "cluster": cluster,
            "job": job,
            "event": event,
            "job_id": job.job_id,
            "name": job.name,
            "user": job.user,
            "state": job.state,
            "exit_code": format_exit_code(job.exit_code),
            "nodes": hostlist.compress(list(job.nodes)) if job.nodes else "",
            "submit_time": _when(job.submit_time),
            "start_time": _when(start),
            "end_time": _when(end),
            "run_time": _clock(run) if start else "",
            "time_limit": _clock(job.time_limit) if job.time_limit else "UNLIMITED",
            "event_time": _when(event.time),
        }

    def render(self, event: JobEvent, mail_type: str, *, to: str, cluster: str, message_id: str) -> Mail:
        """Render one mail; a template error raises (the event is retried, then dead-lettered)."""
        ctx = self.context(event, mail_type, cluster)
        subject = " ".join(self._render(mail_type, "subject.txt", ctx).split())[:MAX_SUBJECT]
        text = self._render(mail_type, "body.txt", ctx)
        html = self._render(mail_type, "body.html", ctx)
        return Mail(to=to, subject=subject, text=text, html=html, message_id=message_id)
