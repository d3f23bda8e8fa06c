"""What ``cacct`` asks of the accounting store: :class:`HistoryQuery` (the ``crane_history_query`` hook).

Every list filter is "any of" (empty = no filter); the time ranges are unix seconds, ``0`` =
open on that side, inclusive. Records come back as :class:`crane_kernel.events.JobRecord`, with
their steps (``JobRecord``-shaped dicts in :attr:`HistoryRecord.steps`) when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crane_kernel.events import JobRecord


@dataclass
class HistoryQuery:
    """A query of ended jobs (cacct's filters)."""

    job_ids: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    qos: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)       # JobState names, e.g. "Completed"
    nodes: list[str] = field(default_factory=list)        # jobs that ran on any of these nodes
    submit_time: tuple[float, float] = (0.0, 0.0)
    start_time: tuple[float, float] = (0.0, 0.0)
    end_time: tuple[float, float] = (0.0, 0.0)
    max_lines: int = 0                                    # 0 = no limit
    include_steps: bool = False


@dataclass
class StepRecord:
    """One step of an ended job (the batch script is step 0)."""

    job_id: int
    step_id: int
    name: str = ""
    state: str = ""
    exit_code: int = 0
    start_time: float = 0.0
    end_time: float = 0.0
    nodes: list[str] = field(default_factory=list)
    cpus: float = 0.0
    cpu_time_ms: int = 0
    mem_peak_bytes: int = 0


class HistoryRecord(JobRecord):
    """A :class:`JobRecord` with its steps, as the accounting store returns it."""

    steps: list[StepRecord] = []
