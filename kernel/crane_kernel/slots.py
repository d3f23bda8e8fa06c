"""The plugin slots: which hooks each slot's plugins may and must implement, and the check at load time.

:data:`SLOTS` is plain data, one :class:`Slot` per entry-point group (a slot added later is one more
entry, plus its config key in ``PluginsConfig`` and its hookspecs). :func:`check_slot` is what
:func:`crane_kernel.plugins.load_slots` runs on every plugin before registering it: a hook outside
the plugin's slot, an unknown hook, or a required hook missing is a one-line
:class:`~crane_kernel.errors.PluginError` naming the slot, the plugin and the hook.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from crane_kernel import hookspecs
from crane_kernel.errors import PluginError

__all__ = ["COMMON_HOOKS", "RUNTIME_HOOKS", "SLOTS", "Slot", "check_slot", "hookimpl_names", "hookspec_names"]


@dataclass(frozen=True)
class Slot:
    """One plugin slot: its entry-point group, config key, how many plugins, and its hooks.

    ``hooks`` are the hooks a plugin of this slot may implement (besides
    :data:`COMMON_HOOKS`), ``required`` those each of its plugins must
    implement. Every plugin must implement at least one of ``hooks``. ``most``
    is ``None`` for "any number"; list slots keep the configured order (the
    first plugin is asked first).
    """

    name: str
    group: str
    key: str
    least: int
    most: int | None
    hooks: frozenset[str]
    required: frozenset[str] = frozenset()

    def describe_count(self) -> str:
        """``exactly one``, ``at most one``, ... for error messages."""
        if self.least == self.most == 1:
            return "exactly one plugin"
        if self.most == 1:
            return "at most one plugin"
        return f"at least {self.least} plugin(s)" if self.least else "any number of plugins"


def _slot(name: str, key: str, least: int, most: int | None, hooks: Iterable[str],
          required: Iterable[str] = ()) -> Slot:
    return Slot(name, f"crane.{name}", key, least, most, frozenset(hooks), frozenset(required))


RUNTIME_HOOKS = ("crane_step_launch", "crane_step_wait", "crane_step_signal", "crane_step_suspend",
                  "crane_step_resume", "crane_step_usage", "crane_step_cleanup")

SLOTS: dict[str, Slot] = {s.name: s for s in (
    _slot("scheduler", "Scheduler", 1, 1, ["crane_schedule"], required=["crane_schedule"]),
    _slot("priority", "Priority", 0, 1, ["crane_job_priorities", "crane_job_finished"],
          required=["crane_job_priorities"]),
    _slot("runtime", "Runtime", 0, None, (*RUNTIME_HOOKS, "crane_step_reap", "crane_node_reconcile"),
          required=["crane_step_launch", "crane_step_wait", "crane_step_signal", "crane_step_cleanup"]),
    _slot("auth", "Auth", 0, None, ["crane_authenticate", "crane_authorize"]),
    _slot("job_filter", "JobFilters", 0, None, ["crane_job_submit"], required=["crane_job_submit"]),
    _slot("events", "Events", 0, None, ["crane_event"], required=["crane_event"]),
    _slot("accounting", "Accounting", 0, 1, ["crane_history_query"], required=["crane_history_query"]),
    _slot("gres", "Gres", 0, None, ["crane_gres_select", "crane_gres_environment"]),
    _slot("lifecycle", "Lifecycle", 0, None, ["crane_job_requeue"]),
    _slot("preempt", "Preempt", 0, 1, ["crane_preempt"], required=["crane_preempt"]),
)}
"""Every plugin slot, in load order. A slot added later is one entry here."""

COMMON_HOOKS = frozenset({"crane_plugin_configure", "crane_plugin_shutdown"})
"""Hooks a plugin of any slot may implement (settings and shutdown)."""

def hookimpl_names(pm: pluggy.PluginManager, obj: Any) -> set[str]:
    """The hooks ``obj`` implements: its attributes marked with ``crane_kernel.hookimpl`` (pluggy's own parser).

    A ``specname`` given to the marker names the hook instead of the attribute.
    """
    found = set()
    for attr in dir(obj):
        try:
            opts = pm.parse_hookimpl_opts(obj, attr)
        except Exception:  # a property that raises is not a hook implementation
            continue
        if opts is not None:
            found.add(opts.get("specname") or attr)
    return found


def check_slot(pm: pluggy.PluginManager, slot: Slot, name: str, obj: Any) -> None:
    """Raise :class:`PluginError` unless ``obj`` implements only hooks of ``slot`` and all it requires."""
    hooks = hookimpl_names(pm, obj)
    specs = set(hookspec_names())
    for hook in sorted(hooks):
        if hook not in specs:
            raise PluginError(f"{slot.name} plugin {name!r} implements {hook}, which is not a cranesched hook")
        if hook not in slot.hooks and hook not in COMMON_HOOKS:
            raise PluginError(f"{slot.name} plugin {name!r} implements {hook}, which is not a {slot.name} hook "
                              f"({slot.name} hooks: {', '.join(sorted(slot.hooks))})")
    missing = sorted(slot.required - hooks)
    if missing:
        raise PluginError(f"{slot.name} plugin {name!r} does not implement {missing[0]}, which every "
                          f"{slot.name} plugin must")
    if not hooks & slot.hooks:
        raise PluginError(f"{slot.name} plugin {name!r} implements none of the {slot.name} hooks "
                          f"({', '.join(sorted(slot.hooks))})")


def hookspec_names() -> list[str]:
    """The name of every hook in :mod:`crane_kernel.hookspecs`."""
    return [n for n in vars(hookspecs) if n.startswith("crane_") and callable(getattr(hookspecs, n))]
