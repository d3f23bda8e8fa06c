"""crane_sched_fifo: the ``fifo`` scheduler plugin for cranesched.

Strict priority-then-submit-order scheduling per partition with best-fit node
choice; see :mod:`crane_sched_fifo.plugin` for the policy. Registered as entry
point ``crane.scheduler: fifo``.
"""

from crane_sched_fifo.plugin import FifoScheduler

__all__ = ["FifoScheduler"]
