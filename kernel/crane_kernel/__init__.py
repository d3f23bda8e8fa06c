"""crane_kernel: the cranesched microkernel.

It holds configuration, the data model, the hook specifications, the plugin
manager, the Redis-streams bus, the state store and the daemons' main loops —
and no policy: scheduling, priority, runtimes, auth and accounting are plugins.

``from crane_kernel import hookimpl`` gives plugins the hook-implementation
marker. It is created lazily so that CLI commands, which never need pluggy,
do not pay for importing it.
"""

from typing import Any

__version__ = "0.1.0"

PROJECT = "crane"


def __getattr__(name: str) -> Any:
    """Create ``hookimpl``/``hookspec`` markers on first use (PEP 562)."""
    if name in ("hookimpl", "hookspec"):
        import pluggy

        marker = pluggy.HookimplMarker(PROJECT) if name == "hookimpl" else pluggy.HookspecMarker(PROJECT)
        globals()[name] = marker
        return marker
    raise AttributeError(f"module 'crane_kernel' has no attribute {name!r}")
