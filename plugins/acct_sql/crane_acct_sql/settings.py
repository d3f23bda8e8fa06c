"""The ``sql`` plugin's settings (``Plugins.Settings.sql``), shared by its events and accounting halves.

::

    Url: sqlite:///var/lib/crane/acct/acct.db    # or postgresql://crane@db:5432/crane?options=-csearch_path%3Dacct
    Retention: 365                               # days an ended job is kept; 0 = forever
    PruneInterval: 3600                          # seconds between pruning passes (events side)

``CraneBaseDir`` is supplied by the kernel (cranectld, cplugind); the default ``Url`` is
``sqlite://<CraneBaseDir>/acct/acct.db``. A relative SQLite path is relative to ``CraneBaseDir``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("crane_acct_sql")

KNOWN = ("Url", "Retention", "PruneInterval")
# supplied by the kernel; not the user's to set
KERNEL = ("CraneBaseDir", "Cluster", "ClusterName", "BusUrl", "CredentialsDir")


@dataclass(frozen=True)
class Settings:
    """Validated settings: the engine and where, retention in days, the pruning interval in seconds."""

    engine: str            # "sqlite" or "postgres"
    target: str            # the SQLite file path or the PostgreSQL conninfo URL
    retention_days: float = 0.0
    prune_interval: float = 3600.0

    def describe(self) -> str:
        """Where the store is, without a password."""
        if self.engine == "sqlite":
            return f"sqlite:{self.target}"
        from urllib.parse import urlsplit

        u = urlsplit(self.target)
        host = u.hostname or "localhost"
        who = f"{u.username}@" if u.username else ""
        return f"postgresql://{who}{host}{':' + str(u.port) if u.port else ''}{u.path}"


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{where} must be a number, not {value!r}")
    if value < 0:
        raise ValueError(f"{where} must be >= 0, not {value!r}")
    return float(value)


def parse_settings(raw: Mapping[str, Any]) -> Settings:
    """Validate ``raw``; a bad value raises ``ValueError`` with a one-line message naming it."""
    for key in raw:
        if key not in KNOWN and key not in KERNEL:
            log.warning("sql accounting: ignoring unknown setting %r (known: %s)", key, ", ".join(KNOWN))
    base = str(raw.get("CraneBaseDir") or "")
    url = raw.get("Url")
    if url is None or url == "":
        if not base:
            raise ValueError("Url is not set and no CraneBaseDir is known")
        url = "sqlite://" + os.path.join(base, "acct", "acct.db")
    if not isinstance(url, str):
        raise ValueError(f"Url must be a string, not {url!r}")
    retention = _number(raw.get("Retention", 0), "Retention")
    prune = _number(raw.get("PruneInterval", 3600), "PruneInterval")
    if prune <= 0:
        raise ValueError("PruneInterval must be positive")
    if url.startswith("sqlite:"):
        path = url[len("sqlite:"):]
        path = path[2:] if path.startswith("//") else path
        if not path or path in ("/", ":memory:"):
            raise ValueError(f"Url {url!r}: an SQLite Url names a file (sqlite:///path/to/acct.db)")
        if not os.path.isabs(path):
            if not base:
                raise ValueError(f"Url {url!r}: a relative path needs CraneBaseDir")
            path = os.path.join(base, path)
        return Settings("sqlite", os.path.normpath(path), retention, prune)
    if url.startswith(("postgresql://", "postgres://")):
        return Settings("postgres", url, retention, prune)
    raise ValueError(f"Url {url.split(':', 1)[0]!r}: unknown engine (sqlite:///path or postgresql://...)")
