"""A new UTS namespace for the step supervisor, so ``hostname`` in a job prints its (virtual) node's name."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket

from crane_common.states import EC_SPAWN_FAILED
from crane_kernel.errors import StepLaunchError

log = logging.getLogger("crane_runtime_cgroup")

CLONE_NEWUTS = 0x04000000


def enter_uts_namespace(hostname: str) -> None:
    """``unshare(CLONE_NEWUTS)`` this process and set its host name; StepLaunchError on failure.

    Python 3.11 has no ``os.unshare``: libc's is called through ctypes. Idempotent for a process
    whose host name is already ``hostname``. Without the privilege (EPERM: no CAP_SYS_ADMIN, e.g.
    an unprivileged test cluster) the step runs with the machine's host name, and a warning says so.
    """
    if socket.gethostname() == hostname:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUTS) != 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            log.warning("UtsNamespace: no privilege to enter a UTS namespace; the step keeps the host name")
            return
        raise StepLaunchError(f"cannot enter a new UTS namespace: {os.strerror(err)}", EC_SPAWN_FAILED)
    try:
        socket.sethostname(hostname)
    except OSError as exc:
        raise StepLaunchError(f"cannot set the host name to {hostname}: {exc.strerror}", EC_SPAWN_FAILED) from None
