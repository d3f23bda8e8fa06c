"""craned's end of its launcher: starting the launcher process, handing it launches, and the runtime plugins it loads.

The launcher itself (:mod:`crane_kernel.craned.launcher`) is a small warm process that forks one
step supervisor per launch; this module is what ``craned`` uses to start it (its set-up line: node,
the supervisors' Redis URL with the node's bus credentials — over the pipe, never the environment —
report stream, KillWait, the runtime part of the ``Plugins:`` section), write launches to it, and
restart it if it died.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from crane_kernel.config import ClusterConfig

if TYPE_CHECKING:
    from crane_kernel.craned.main import Craned

log = logging.getLogger("craned")


def runtime_selection(cfg: ClusterConfig) -> dict[str, Any]:
    """The runtime part of the ``Plugins:`` section (names and their settings), JSON-serialisable for the launcher."""
    from crane_kernel import plugins

    selection = plugins.config_selection(cfg)
    names = list(selection.get("Runtime") or [])
    settings = selection.get("Settings") or {}
    return {"Runtime": names, "Settings": {n: settings[n] for n in names if n in settings}}


def build_runtime_manager(cfg: ClusterConfig) -> Any:
    """Load the runtime plugins named in the config, in order (a bad name fails here, at start-up).

    Returns a :class:`crane_kernel.plugins.Plugins` holding only the runtime slot.
    """
    from crane_kernel import plugins

    return plugins.load_slots(runtime_selection(cfg), slots=("runtime",))


class Launcher:
    """The launcher process (:mod:`crane_kernel.craned.launcher`) that forks step supervisors."""

    def __init__(self, craned: "Craned") -> None:
        self.craned = craned
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        c = self.craned
        setup = {"node": c.node, "redis_url": c.supervisor_url(), "stream": c.bus.report_stream(c.node),
                 "cluster": c.bus.cluster,
                 "kill_wait": c.cfg.Craned.KillWait, "plugins": runtime_selection(c.cfg)}
        env = dict(os.environ, CRANE_LOG_LEVEL=logging.getLevelName(logging.getLogger().level))
        proc = subprocess.Popen([sys.executable, "-m", "crane_kernel.craned.launcher"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=c.log_stream, env=env, text=True,
                                start_new_session=True)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(setup) + "\n")
        proc.stdin.flush()
        log.info("launcher %d started", proc.pid)
        return proc

    def launch(self, request: dict[str, Any]) -> None:
        """Hand one launch to the launcher (starting or restarting it when needed)."""
        line = json.dumps(request, separators=(",", ":")) + "\n"
        for attempt in (1, 2):
            if self.proc is None or self.proc.poll() is not None:
                if self.proc is not None:
                    log.error("launcher exited with %s; restarting it", self.proc.returncode)
                self.proc = self._start()
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
                return
            except (BrokenPipeError, OSError) as exc:
                if attempt == 2:
                    raise
                log.error("launcher pipe broken (%s); restarting it", exc)
                self.proc = None

    def close(self) -> None:
        """Close the pipe; the launcher exits, running supervisors do not."""
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
