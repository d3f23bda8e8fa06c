"""crane_prio_multifactor: the multifactor priority plugin for cranesched (``crane.priority: multifactor``).

See :mod:`crane_prio_multifactor.plugin` for the formula,
:mod:`crane_prio_multifactor.fairshare` for the decayed usage and fair-share
factor, and :mod:`crane_prio_multifactor.settings` for the configuration.
"""

from crane_prio_multifactor.plugin import MultifactorPriority

__all__ = ["MultifactorPriority"]
