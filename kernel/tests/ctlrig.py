"""A real :class:`Controller` over a temporary store, driven with the messages nodes would send (tests' rig).

The ``fifo`` scheduler and ``standard`` lifecycle plugins, an auth plugin that lets admins do
anything and others anything but node changes, and a clock the test sets.
"""

from __future__ import annotations

from typing import Any

from crane_common.states import JobState
from crane_kernel import hookimpl, plugins
from crane_kernel import messages as m
from crane_kernel.auth_types import Identity
from crane_kernel.config import parse_config
from crane_kernel.ctld.core import Controller
from crane_kernel.ctld.store import StateStore

ROOT = Identity(0, "root", "root")
ALICE = Identity(0, "alice")        # same uid (it must exist here), but not an admin
TIMEOUT = 10.0


class _Auth:
    """Admins may do anything; others anything but node changes."""

    @hookimpl
    def crane_authorize(self, identity: Identity, action: str, target: Any) -> bool:
        return identity.is_admin or not action.startswith("node.")


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


class Rig:
    """A controller over a temporary store, with the messages it published collected."""

    def __init__(self, path: str, requeue: bool = False, clock: Clock | None = None,
                 config: dict[str, Any] | None = None, partitions: list[dict] | None = None, preempt: Any = None,
                 **ctld: Any) -> None:
        self.cfg = parse_config({
            "Nodes": [{"name": "cn[01-03]", "cpu": 2, "memory": "1G"}],
            "Partitions": partitions or [{"name": "debug", "nodes": "ALL"}],
            "DefaultMemPerCpu": "64M",
            "CraneCtld": {"CranedTimeout": TIMEOUT, "JobRequeue": requeue, **ctld},
            **(config or {}),  # other top-level keys (Licenses, ...)
        })
        from crane_kernel.plugins import kernel_defaults
        from crane_lifecycle_standard import StandardLifecycle
        from crane_preempt_standard import StandardPreempt
        from crane_sched_fifo import FifoScheduler

        pm = plugins.from_objects({"auth": {"test": _Auth()}, "scheduler": {"fifo": FifoScheduler()},
                                   "lifecycle": {"standard": StandardLifecycle()},
                                   "preempt": {"preempt_standard": preempt or StandardPreempt()}},
                                  defaults={"lifecycle": kernel_defaults(self.cfg)["lifecycle"]})
        self.clock = clock or Clock()
        self.sent: list[tuple[str, Any]] = []
        self.store = StateStore(path)
        self.ctl = Controller(self.cfg, self.store, pm, self.sent.extend, clock=self.clock)
        self.ctl.recover()
        self.ctl.recon.index_max_age = 0.0  # our clock stands still: index every report

    # -- driving ---------------------------------------------------------------------------
    def feed(self, *msgs: Any) -> None:
        self.ctl.handle_messages([(str(i), msg) for i, msg in enumerate(msgs)])

    def beat(self, node: str, steps: list[tuple[int, int, int]] = (), ended: list[tuple[int, int, int]] = ()) -> None:
        self.feed(m.NodeHeartbeat(node=node, running=[s[0] for s in steps], steps=list(steps), ended=list(ended)))

    def all_up(self) -> None:
        for n in ("cn01", "cn02", "cn03"):
            self.feed(m.NodeRegister(node=n, cpus=2, mem=1 << 30))

    def submit(self, **spec: Any) -> int:
        spec.setdefault("script", "#!/bin/bash\nsleep 100\n")
        (jid,) = self.ctl.submit([spec], ROOT)
        return jid

    def cycle(self) -> None:
        self.ctl.schedule_cycle()

    def start(self, **spec: Any) -> Any:
        """Submit, schedule, and report the step running; return the job."""
        jid = self.submit(**spec)
        self.cycle()
        job = self.ctl.jobs[jid]
        assert job.state == JobState.Configuring, job.state
        self.feed(m.StepStatus(node=job.head_node, job_id=jid, state="running", epoch=job.epoch))
        assert job.state == JobState.Running
        return job

    def timeout(self, *alive: str) -> None:
        """Let CranedTimeout pass; the nodes in ``alive`` heartbeat just in time (listing what they ran)."""
        self.clock.t += TIMEOUT + 1
        for n in alive:
            self.beat(n, steps=[(j, 1, e) for j, e in self.ctl.recon.live_on.get(n, {}).items()])
        self.cycle()

    # -- looking -------------------------------------------------------------------------------
    def to(self, node: str, kind: type) -> list[Any]:
        stream = self.ctl.node_stream(node)
        return [msg for s, msg in self.sent if s == stream and isinstance(msg, kind)]

    def cpus_free(self, node: str) -> float:
        return self.ctl.nodes[node].sched.cpus_free


