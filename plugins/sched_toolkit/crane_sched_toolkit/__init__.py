"""Building blocks the scheduler plugins share; this distribution registers no plugin itself.

* :mod:`crane_sched_toolkit.pool` — the count-based fast path (one partition of identical nodes,
  whole-node jobs): strict FIFO, EASY and conservative passes on counts, kept incrementally
  across calls from the view's change journal. Used by ``sched_fifo`` and ``sched_backfill``.
"""
