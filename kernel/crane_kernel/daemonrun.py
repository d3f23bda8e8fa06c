"""What every daemon's ``main`` ends with: block until SIGTERM or SIGINT, then shut down."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any


def run_until_signalled(daemon: Any, log: logging.Logger) -> int:
    """Wait for SIGTERM or SIGINT (polling once a second), then ``daemon.shutdown()``; returns 0."""
    done = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not done.wait(1.0):
        pass
    daemon.shutdown()
    return 0
