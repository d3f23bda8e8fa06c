"""MUNGE authentication for cranectld: the uid is what the local ``munged`` vouches for.

A client configured with ``Auth.ClientCredential: munge`` sends ``x-crane-munge: <credential>``
(``crane_cli.munge``: ``munge --string cranectld:<cluster>``). This plugin decodes it with
Debian's ``unmunge`` against the controller's ``munged`` (same key as the clients' hosts) and
takes the UID and GID from unmunge's verified output; the payload must be this cluster's
audience, ``cranectld:<Cluster>``. munged itself refuses expired and replayed credentials.
Nothing the client declares is used. Users in ``Admins`` get admin level, uid 0 root level.

Settings (``Plugins.Settings.munge``): ``Socket`` (munged's socket; default munge's own),
``Unmunge`` (the program, default ``unmunge``), ``Timeout`` (seconds, default 5); cranectld
supplies ``Cluster`` and ``Admins``.
"""

from __future__ import annotations

import logging
import pwd
import subprocess
from typing import Any

from crane_kernel import hookimpl
from crane_kernel.auth_types import CallInfo, Identity

log = logging.getLogger(__name__)

METADATA_KEY = "x-crane-munge"
_MAX_CREDENTIAL = 8192


def parse_unmunge(output: str) -> tuple[dict[str, str], str]:
    """unmunge's numeric output: ``({KEY: value}, payload)`` (metadata, a blank line, the payload)."""
    head, _, payload = output.partition("\n\n")
    meta = {}
    for line in head.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            meta[key.strip().upper()] = value.strip()
    return meta, payload


class MungeAuth:
    """The ``munge`` auth plugin."""

    def __init__(self) -> None:
        self.socket = ""
        self.unmunge = "unmunge"
        self.timeout = 5.0
        self.cluster = "crane"
        self.admins: set[str] = {"root"}

    @hookimpl
    def crane_plugin_configure(self, settings: dict[str, Any]) -> None:
        """Read ``Socket``, ``Unmunge``, ``Timeout``, ``Cluster`` and ``Admins`` (see the module docs)."""
        self.socket = str(settings.get("Socket") or "")
        self.unmunge = str(settings.get("Unmunge") or "unmunge")
        self.timeout = float(settings.get("Timeout", 5.0))
        self.cluster = str(settings.get("Cluster") or "crane")
        self.admins = set(settings.get("Admins", ["root"]))

    def decode(self, credential: str) -> tuple[int, int]:
        """``(uid, gid)`` of a valid credential for this cluster; ValueError naming why not."""
        cmd = [self.unmunge, "--numeric"] + (["--socket", self.socket] if self.socket else [])
        try:
            proc = subprocess.run(cmd, input=credential, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ValueError(f"unmunge failed: {exc}") from None
        meta, payload = parse_unmunge(proc.stdout)
        if proc.returncode != 0 or meta.get("STATUS") != "0":
            raise ValueError(" ".join(proc.stderr.split()) or f"unmunge status {meta.get('STATUS')}")
        if payload.strip() != f"cranectld:{self.cluster}":
            raise ValueError("credential not for this cluster's controller")
        return int(meta["UID"]), int(meta["GID"])

    @hookimpl
    def crane_authenticate(self, call: CallInfo) -> Identity | None:
        """The identity munged vouches for, or None (no credential, or an invalid one)."""
        credential = call.metadata.get(METADATA_KEY, "")
        if not credential or len(credential) > _MAX_CREDENTIAL:
            return None
        try:
            uid, _gid = self.decode(credential)
        except (ValueError, KeyError) as exc:
            log.info("rejected munge credential on %s from %s: %s", call.method, call.peer, exc)
            return None
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        level = "root" if uid == 0 else ("admin" if user in self.admins else "none")
        return Identity(uid=uid, user=user, admin_level=level, via="munge")
