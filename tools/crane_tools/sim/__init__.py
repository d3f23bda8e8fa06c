"""Trace-driven scheduling simulator: replays SWF workloads through the real scheduler plugins.

``python -m crane_tools.sim TRACE [--scheduler fifo|easy|conservative] [--procs P] [--json]
[--plot FILE.png] [--cpus-per-node C]`` or :func:`run_sim` from Python. The
scheduler and priority plugins are the same objects the controller uses,
loaded by :func:`crane_kernel.plugins.load_slots` and called through the
kernel's hook callers, on a virtual clock (no processes, no Redis). See ``docs/simulation.md`` for the model.

Modules: :mod:`~crane_tools.sim.swf` (parsing), :mod:`~crane_tools.sim.model`
(job/machine model), :mod:`~crane_tools.sim.engine` (event loop, on the kernel's
:class:`~crane_kernel.sched_types.IncrementalView`),
:mod:`~crane_tools.sim.metrics`, :mod:`~crane_tools.sim.reference` (a compact
stdlib-only single-pool simulator used as a cross-check).
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_sim", "main"]


def run_sim(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Replay a trace; see :func:`crane_tools.sim.runner.run_sim` for the arguments and result keys."""
    from crane_tools.sim.runner import run_sim as _run_sim

    return _run_sim(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see :func:`crane_tools.sim.cli.main`."""
    from crane_tools.sim.cli import main as _main

    return _main(argv)
