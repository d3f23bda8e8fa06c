"""A MUNGE credential for the controller (``Auth.ClientCredential: munge``): stdlib only.

The credential is made by the local ``munged`` through the ``munge`` command, with the payload
``cranectld:<ClusterName>`` so that it is good for this cluster's controller only; the controller's
``munge`` auth plugin decodes it with ``unmunge`` and takes the uid and gid munged vouches for.
The socket is ``$CRANE_MUNGE_SOCKET`` or ``Auth.MungeSocket`` (default: munge's own).
"""

from __future__ import annotations

import os
import subprocess

from crane_cli.errors import EXIT_NETWORK, CliError

METADATA_KEY = "x-crane-munge"
SOCKET_ENV = "CRANE_MUNGE_SOCKET"


def payload(cluster: str) -> str:
    """What the credential carries: the audience, ``cranectld:<cluster>``."""
    return f"cranectld:{cluster or 'crane'}"


def credential(cluster: str = "", socket: str | None = None, ttl: int = 60) -> str:
    """Ask munged for a fresh credential (one per call: munged refuses a replayed one)."""
    cmd = ["munge", "--string", payload(cluster), "--ttl", str(ttl)]
    socket = os.environ.get(SOCKET_ENV) or socket
    if socket:
        cmd += ["--socket", socket]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CliError(f"Cannot get a MUNGE credential: {exc}", EXIT_NETWORK) from None
    if proc.returncode != 0 or not proc.stdout.strip():
        reason = " ".join(proc.stderr.split()) or f"munge exited with {proc.returncode}"
        raise CliError(f"Cannot get a MUNGE credential: {reason}", EXIT_NETWORK)
    return proc.stdout.strip()
