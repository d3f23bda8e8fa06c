"""A private ``munged`` for tests and demos: its own key, socket, pid, log and seed file in a directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time


class PrivateMunged:
    """``munged`` with a fresh random key in ``directory`` (a new tmp dir by default); root only."""

    def __init__(self, directory: str | None = None) -> None:
        self.dir = directory or tempfile.mkdtemp(prefix="crane-munge-")
        self.socket = os.path.join(self.dir, "munge.socket")
        self.pid_file = os.path.join(self.dir, "munged.pid")

    def start(self, timeout: float = 10.0) -> PrivateMunged:
        """Start it (it forks into the background) and wait for its socket."""
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)  # clients of any user reach the socket
        key = os.path.join(self.dir, "munge.key")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(1024))
        subprocess.run(["munged", f"--socket={self.socket}", f"--key-file={key}", f"--pid-file={self.pid_file}",
                        f"--log-file={self.dir}/munged.log", f"--seed-file={self.dir}/munged.seed", "--force"],
                       check=True, capture_output=True)
        deadline = time.time() + timeout
        while not os.path.exists(self.socket):
            if time.time() > deadline:
                raise RuntimeError(f"munged did not create {self.socket}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop it (by the pid in its pid file) and remove the directory."""
        try:
            with open(self.pid_file) as fh:
                pid = int(fh.read().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 5
            while time.time() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
