"""The ``mail`` plugin's settings (``Plugins.Settings.mail``), checked at configure time.

Every bad value is a ``ValueError`` with one line naming the setting, which the kernel reports as
``events plugin 'mail' rejected its settings: <message>``. docs/notifications.md lists them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crane_common.mail import check_mail_user

DEFAULT_INTERVALS = (10, 30, 60, 300, 900, 1800, 3600)

KNOWN = (
    "RedisUrl", "Username", "Password", "CredentialsFile", "Queue", "Cluster", "TemplateDir", "MailDomain",
    "SmtpHost", "SmtpPort", "From", "StartTLS", "SSL", "SmtpCaFile", "User", "PasswordFile", "SmtpTimeout",
    "Retries", "RetryIntervals", "KeepSeconds", "JobTimeout", "StartWorker",
)
# keys a plugin host may hand every plugin of the slot: accepted, and ``ClusterName`` names the cluster
TOLERATED = ("ClusterName", "CredentialsDir", "CraneBaseDir", "BusUrl")  # what a host process may add


def _bool(settings: Mapping[str, Any], key: str, default: bool) -> bool:
    value = settings.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise ValueError(f"{key} must be true or false, not {str(value)[:40]!r}")


def _int(settings: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{key} must be a whole number between {lo} and {hi}")
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{key} must be a whole number between {lo} and {hi}, not {str(value)[:40]!r}") from None
    if not lo <= n <= hi:
        raise ValueError(f"{key} must be between {lo} and {hi}, not {n}")
    return n


def _text(settings: Mapping[str, Any], key: str, default: str = "", most: int = 1024) -> str:
    value = settings.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > most or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{key} must be a line of text (at most {most} characters)")
    return value


@dataclass(frozen=True)
class Settings:
    """The checked settings; :func:`parse` builds it."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    username: str = ""
    password: str = field(default="", repr=False)
    queue: str = "crane-mail"
    cluster: str = ""
    template_dir: str = ""
    mail_domain: str = ""
    smtp: dict[str, Any] = field(default_factory=dict)
    retries: int = 10
    intervals: tuple[int, ...] = DEFAULT_INTERVALS
    keep_seconds: int = 7 * 86400
    job_timeout: int = 120
    start_worker: bool = True


def parse(settings: Mapping[str, Any]) -> Settings:
    """Check ``settings`` and return them; ``ValueError`` (one line) for the first bad one."""
    if not isinstance(settings, Mapping):
        raise ValueError("the settings must be a mapping")
    unknown = sorted(k for k in settings if k not in KNOWN and k not in TOLERATED)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(map(str, unknown))} (known: {', '.join(KNOWN)})")
    # default: the cluster's bus as cplugind (the host passes BusUrl and, on a closed bus, CredentialsDir)
    url = _text(settings, "RedisUrl", _text(settings, "BusUrl", "redis://127.0.0.1:6379/0"))
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"RedisUrl must be a redis://, rediss:// or unix:// URL, not {url[:60]!r}")
    username, password = _text(settings, "Username"), _text(settings, "Password")
    cred_file = _text(settings, "CredentialsFile")
    host_dir = _text(settings, "CredentialsDir")
    if not (cred_file or username or password or _text(settings, "RedisUrl")) and host_dir:
        cred_file = os.path.join(host_dir, "cplugind.json")  # the host's own bus role
    if cred_file:
        if password or username:
            raise ValueError("give either CredentialsFile or Username/Password, not both")
        from crane_notify_mail.redisconn import load_credentials

        username, password = load_credentials(cred_file)
    elif username and not password:
        raise ValueError("Username needs a Password (or use CredentialsFile)")
    queue = _text(settings, "Queue", "crane-mail", most=128)
    if not queue or any(c in queue for c in " :*?[]"):
        raise ValueError(f"Queue must be a plain name (no spaces, ':' or wildcards), not {queue!r}")
    template_dir = _text(settings, "TemplateDir")
    if template_dir and not os.path.isdir(template_dir):
        raise ValueError(f"TemplateDir {template_dir}: not a directory")
    domain = _text(settings, "MailDomain", most=253)
    if domain:
        try:
            check_mail_user(f"x@{domain}")
        except ValueError:
            raise ValueError(f"MailDomain {domain!r} is not a host name") from None
    sender = _text(settings, "From", most=254)
    if sender:
        try:
            check_mail_user(sender)
        except ValueError as exc:
            raise ValueError(f"From: {exc}") from None
    else:
        import socket

        sender = f"crane@{domain or socket.getfqdn()}"
    use_ssl, starttls = _bool(settings, "SSL", False), _bool(settings, "StartTLS", False)
    if use_ssl and starttls:
        raise ValueError("SSL (implicit TLS) and StartTLS exclude each other")
    ca_file = _text(settings, "SmtpCaFile")
    if ca_file:
        if not (use_ssl or starttls):
            raise ValueError("SmtpCaFile needs StartTLS or SSL")
        if not os.path.isfile(ca_file):
            raise ValueError(f"SmtpCaFile {ca_file}: not a file")
    user, password_file = _text(settings, "User"), _text(settings, "PasswordFile")
    if password_file:
        if not user:
            raise ValueError("PasswordFile needs User")
        try:
            with open(password_file, encoding="utf-8") as fh:
                fh.readline()
        except OSError as exc:
            raise ValueError(f"PasswordFile {password_file}: {exc.strerror or exc}") from None
    smtp = {
        "host": _text(settings, "SmtpHost", "localhost", most=253) or "localhost",
        "port": _int(settings, "SmtpPort", 465 if use_ssl else 25, 1, 65535),
        "from": sender, "starttls": starttls, "ssl": use_ssl, "ca_file": ca_file, "user": user,
        "password_file": password_file,
        "timeout": _int(settings, "SmtpTimeout", 30, 1, 600),
    }
    intervals = settings.get("RetryIntervals", DEFAULT_INTERVALS)
    if isinstance(intervals, int | str) and not isinstance(intervals, bool):
        intervals = [intervals]
    if not isinstance(intervals, list | tuple) or not intervals or len(intervals) > 32:
        raise ValueError("RetryIntervals must be a list of 1 to 32 delays in seconds")
    checked = tuple(_int({"RetryIntervals": v}, "RetryIntervals", 0, 0, 86400) for v in intervals)
    return Settings(
        redis_url=url, username=username, password=password, queue=queue,
        cluster=_text(settings, "Cluster", str(settings.get("ClusterName") or ""), most=128),
        template_dir=template_dir, mail_domain=domain, smtp=smtp,
        retries=_int(settings, "Retries", 10, 0, 1000), intervals=checked,
        keep_seconds=_int(settings, "KeepSeconds", 7 * 86400, 60, 366 * 86400),
        job_timeout=_int(settings, "JobTimeout", 120, 5, 3600),
        start_worker=_bool(settings, "StartWorker", True),
    )
