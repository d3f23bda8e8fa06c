"""crane_sched_backfill: EASY and conservative backfilling scheduler plugins for cranesched.

Entry points (group ``crane.scheduler``): ``easy``, ``conservative``, and
``backfill`` (mode from the ``mode`` setting). See :mod:`crane_sched_backfill.plugin`
for the policy and :mod:`crane_sched_backfill.settings` for the configuration.
"""

from crane_sched_backfill.plugin import BackfillScheduler, ConservativeScheduler, EasyScheduler

__all__ = ["BackfillScheduler", "ConservativeScheduler", "EasyScheduler"]
