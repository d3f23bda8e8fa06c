"""Connecting to the Redis that holds the mail queue, and the ACL rules the connection needs.

Shared by the plugin (which enqueues) and the workers (which consume); imports redis-py only when
a connection is made.
"""

from __future__ import annotations

import json
from typing import Any

PASSWORD_ENV = "CRANE_MAIL_REDIS_PASSWORD"
"""The environment variable that hands a worker its Redis password (never a command-line argument)."""
DEFAULT_QUEUE = "crane-mail"

REDIS_ACL = ("resetchannels ~rq:* &rq:* -@all +@connection +@transaction +@list +@hash +@set +@sortedset "
             "+@string +@stream +@keyspace +@pubsub +@scripting -@dangerous +info")
"""The Redis ACL rules of a user that enqueues mails and runs rq workers: rq's keys and channels only
(``rq:*``), no dangerous command (``INFO`` excepted: rq reads the server version). Meant for a user
of its own (``user crane-mail on #<sha256> <REDIS_ACL>``): added to the plugin host's user it would
also let that one write to the events stream. rq's ``CLIENT LIST`` is refused; rq only logs a
warning (the worker's address shows as unknown)."""


def load_credentials(path: str) -> tuple[str, str]:
    """``(user, password)`` from a bus role file (``{"user": ..., "password": ...}``, e.g. ``cplugind.json``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return str(data["user"]), str(data["password"])
    except OSError as exc:
        raise ValueError(f"CredentialsFile {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"CredentialsFile {path}: not a bus credentials file ({type(exc).__name__}: {exc})") from None


def connect(url: str, username: str | None = None, password: str | None = None, **kwargs: Any) -> Any:
    """A redis-py client for rq (binary replies, as rq wants), authenticated when a password is given."""
    import redis

    extra: dict[str, Any] = {}
    if password:
        extra["password"] = password
        if username:
            extra["username"] = username
    return redis.Redis.from_url(url, **extra, **kwargs)
