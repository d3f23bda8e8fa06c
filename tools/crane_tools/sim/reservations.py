"""Advance reservations in ``crane sim``: ``--reservation NAME:START:DURATION:NODES`` (docs/simulation.md).

``START`` and ``DURATION`` are seconds (``START`` on the trace's clock: the SWF submit times, usually
from 0; ``DURATION`` also ``[D-]HH:MM:SS``), ``NODES`` a count (the first that many nodes) or an index
range ``A-B`` (inclusive). Trace jobs never run inside a reservation: a reservation only keeps them
off its nodes over its window, so its effect is in the report's waits and utilization (and
``reserved_proc_s``, the processor-seconds it set aside).
"""

from __future__ import annotations

from dataclasses import dataclass

from crane_common.units import parse_duration
from crane_kernel.sched_types import SchedReservation

__all__ = ["SimReservation", "parse_reservation"]


@dataclass(frozen=True)
class SimReservation:
    """One reservation of the simulated machine: node indices over ``[start, start + duration)``."""

    name: str
    start: float
    duration: float
    nodes: tuple[int, ...]

    @property
    def end(self) -> float:
        """When it ends."""
        return self.start + self.duration

    def sched(self) -> SchedReservation:
        """The scheduler protocol's record."""
        return SchedReservation(self.name, self.start, self.end, self.nodes)


def parse_reservation(text: str, node_count: int | None = None) -> SimReservation:
    """Parse ``NAME:START:DURATION:NODES``; raise ValueError with one line."""
    parts = text.split(":")
    if len(parts) < 4:
        raise ValueError(f"reservation {text!r}: expected NAME:START:DURATION:NODES")
    name, start_s, nodes_s = parts[0], parts[1], parts[-1]
    dur_s = ":".join(parts[2:-1])
    if not name:
        raise ValueError(f"reservation {text!r}: the name is empty")
    try:
        start = float(start_s)
    except ValueError:
        raise ValueError(f"reservation {name}: the start {start_s!r} is not a number of seconds") from None
    try:
        duration = float(dur_s) if dur_s.replace(".", "", 1).isdigit() else float(parse_duration(dur_s))
    except ValueError as exc:
        raise ValueError(f"reservation {name}: bad duration {dur_s!r} ({exc})") from None
    if duration <= 0:
        raise ValueError(f"reservation {name}: the duration must be positive")
    lo_s, dash, hi_s = nodes_s.partition("-")
    if not lo_s.isdigit() or (dash and not hi_s.isdigit()):
        raise ValueError(f"reservation {name}: nodes are a count N or an index range A-B, not {nodes_s!r}")
    nodes = tuple(range(int(lo_s), int(hi_s) + 1)) if dash else tuple(range(int(lo_s)))
    if not nodes:
        raise ValueError(f"reservation {name}: no nodes")
    if node_count is not None and nodes[-1] >= node_count:
        raise ValueError(f"reservation {name}: the machine has nodes 0-{node_count - 1}")
    return SimReservation(name, start, duration, nodes)
