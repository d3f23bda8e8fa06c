"""Sending one mail over SMTP: the function the rq workers run (:func:`deliver`).

It is handed everything it needs as plain data (the rendered mail and the SMTP settings, with the
password as a *file path*, never the password itself, so no secret is stored in Redis), so any rq
worker listening on the queue can run it, on any host that reaches the SMTP server and can read
the password file.

A transient failure (the server down or unreachable, a 4xx reply, a timeout) raises, and rq tries
again later (the plugin enqueues with ``Retry``); a permanent refusal (every recipient or the
sender refused with a 5xx reply) is logged and not retried: sending the same mail again would only
be refused again.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

log = logging.getLogger("crane_notify_mail")

SMTP_DEFAULTS: dict[str, Any] = {
    "host": "localhost", "port": 25, "from": "", "starttls": False, "ssl": False, "ca_file": "", "user": "",
    "password_file": "", "timeout": 30.0,
}


# Lines up to RFC 5322's limit: a subject of up to 250 characters stays on one line (Python's folding
# of a long unstructured header would otherwise start it on a continuation line).
_POLICY = policy.default.clone(max_line_length=998)


def read_password(path: str) -> str:
    """The first line of ``path`` (the SMTP password), without its newline; ``OSError`` if unreadable."""
    with open(path, encoding="utf-8") as fh:
        return fh.readline().rstrip("\r\n")


def build_message(mail: dict[str, Any], sender: str) -> EmailMessage:
    """A ``multipart/alternative`` message: the plain-text part first, then the HTML one."""
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = mail["to"]
    msg["Subject"] = mail["subject"]
    msg["Date"] = formatdate(localtime=True)
    if mail.get("message_id"):
        msg["Message-ID"] = mail["message_id"]
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies to the cluster
    msg.set_content(mail["text"])
    if mail.get("html"):
        msg.add_alternative(mail["html"], subtype="html")
    return msg


def _permanent(exc: smtplib.SMTPException) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return exc.smtp_code >= 500
    return False


def deliver(mail: dict[str, Any], smtp: dict[str, Any]) -> str:
    """Send ``mail`` (``to``, ``subject``, ``text``, ``html``, ``message_id``) with ``smtp`` settings.

    ``smtp``: ``host``, ``port``, ``from``, ``starttls``, ``ssl`` (implicit TLS), ``ca_file``
    (the CAs to verify the server with; default the system's), ``user``, ``password_file``,
    ``timeout``. Returns ``"sent"`` or ``"refused: ..."`` (permanent, not
    retried); raises on a transient failure so that rq retries.
    """
    cfg = {**SMTP_DEFAULTS, **smtp}
    msg = build_message(mail, cfg["from"])
    context = (ssl.create_default_context(cafile=cfg["ca_file"] or None)  # the server's certificate is verified
               if cfg["ssl"] or cfg["starttls"] else None)
    cls = smtplib.SMTP_SSL if cfg["ssl"] else smtplib.SMTP
    kwargs: dict[str, Any] = {"context": context} if cfg["ssl"] else {}
    try:
        with cls(cfg["host"], int(cfg["port"]), timeout=float(cfg["timeout"]), **kwargs) as client:
            if cfg["starttls"] and not cfg["ssl"]:
                client.starttls(context=context)
            if cfg["user"]:
                client.login(cfg["user"], read_password(cfg["password_file"]) if cfg["password_file"] else "")
            client.send_message(msg)
    except smtplib.SMTPException as exc:
        if _permanent(exc):
            log.warning("mail %s to %s refused for good: %s", mail.get("message_id"), mail["to"], exc)
            return f"refused: {exc}"
        raise
    log.info("mail %s sent to %s", mail.get("message_id"), mail["to"])
    return "sent"
