"""Test fixtures: a private, real redis-server per test (never the shared one on 6379); an in-process controller."""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path
from typing import Any

import pytest
from crane_tools.testing import redis_server, redis_url  # noqa: F401 - fixtures

sys.path.insert(0, str(Path(__file__).parent))  # the tests' shared helpers (tlsapi), as tests/conftest.py does

ME = pwd.getpwuid(os.getuid())


class CtldHarness:
    """A real :class:`~crane_kernel.ctld.core.Controller` with the plugins cranectld would load, and no bus.

    Messages the controller publishes are collected in ``outbox``; node messages are fed with :meth:`feed`.
    """

    def __init__(self, tmp_path: Any, overrides: dict[str, Any] | None = None, scheduler: Any = None) -> None:
        from crane_kernel.auth_types import Identity
        from crane_kernel.config import parse_config
        from crane_kernel.ctld.core import Controller
        from crane_kernel.ctld.main import build_plugin_manager
        from crane_kernel.ctld.store import StateStore

        os.makedirs(tmp_path, exist_ok=True)
        raw: dict[str, Any] = {
            "ClusterName": "unit", "CraneBaseDir": str(tmp_path), "RedisUrl": "redis://127.0.0.1:1/0",
            "Nodes": [{"name": "cn[01-04]", "cpu": 4, "memory": "8G"}],
            "Partitions": [{"name": "debug", "nodes": "ALL"}],
        }
        raw.update(overrides or {})
        self.cfg = parse_config(raw)
        self.pm = build_plugin_manager(self.cfg)
        if scheduler is not None:  # a test's scheduler object in the scheduler slot, the other slots as configured
            from crane_kernel import plugins

            objects = {slot: dict(zip(self.pm.names(slot), self.pm.plugins(slot), strict=True))
                       for slot in ("priority", "auth", "job_filter", "gres", "lifecycle", "accounting")}
            self.pm = plugins.from_objects({**objects, "scheduler": {"test": scheduler}})
        self.store = StateStore(str(tmp_path / "state.db"))
        self.outbox: list = []
        self.now = 1_000_000.0
        self.ctl = Controller(self.cfg, self.store, self.pm, self.outbox.extend, clock=lambda: self.now)
        self.ctl.recover()
        self.me = Identity(ME.pw_uid, ME.pw_name)

    def feed(self, *msgs: Any) -> None:
        """Deliver messages on the controller stream."""
        self.ctl.handle_messages([(f"{i}-0", msg) for i, msg in enumerate(msgs)])

    def register_all(self) -> None:
        """Every configured node registers (and so is up)."""
        from crane_kernel import messages as m

        self.feed(*[m.NodeRegister(node=n.name, cpus=n.sched.cpus_total, mem=n.sched.mem_total)
                    for n in self.ctl.nodes.values()])

    def beat(self) -> None:
        """Every node heartbeats, listing the jobs the controller placed there."""
        from crane_kernel import messages as m

        self.feed(*[m.NodeHeartbeat(node=name, running=[j.job_id for j in self.ctl.running.values()
                                                         if j.head_node == name], time=self.now)
                    for name in self.ctl.nodes])

    def submit(self, **spec: Any) -> int:
        """Submit one job as the current user; return its id."""
        spec.setdefault("script", "#!/bin/bash\ntrue\n")
        spec.setdefault("cwd", "/tmp")
        return self.ctl.submit([spec], self.me)[0]

    def sent(self, kind: type) -> list:
        """Messages of one type published so far."""
        return [msg for _stream, msg in self.outbox if isinstance(msg, kind)]

    def close(self) -> None:
        """Close the journal."""
        self.store.close()


@pytest.fixture
def ctld(tmp_path: Any) -> Any:
    """A factory of :class:`CtldHarness` objects (closed at the end of the test)."""
    made: list[CtldHarness] = []

    def make(overrides: dict[str, Any] | None = None, scheduler: Any = None) -> CtldHarness:
        h = CtldHarness(tmp_path / f"c{len(made)}", overrides, scheduler)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
