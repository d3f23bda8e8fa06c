"""Loading the scheduler and priority plugins the way the controller does: stevedore by name, then pluggy."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

import pluggy

from crane_kernel import PROJECT, hookspecs

__all__ = ["PluginLoadError", "installed", "load_plugin", "plugin_manager"]


class PluginLoadError(RuntimeError):
    """A plugin name that is not installed, or a plugin that failed to load or rejected its settings."""


def installed(group: str) -> list[str]:
    """Names registered in entry-point group ``group`` (e.g. ``crane.scheduler``)."""
    return sorted({ep.name for ep in entry_points(group=group)})


def load_plugin(group: str, name: str, config: Mapping[str, Any] | None = None) -> Any:
    """Instantiate plugin ``name`` of ``group`` through stevedore and pass ``config`` to its ``configure``.

    ``configure`` (when the plugin has one) is called only when ``config`` is
    not ``None``, so the plugin keeps its own defaults otherwise.
    """
    from stevedore import driver
    from stevedore.exception import NoMatches

    try:
        mgr = driver.DriverManager(namespace=group, name=name, invoke_on_load=True)
    except NoMatches:
        names = ", ".join(installed(group)) or "none"
        raise PluginLoadError(f"no plugin named {name!r} in {group} (installed: {names})") from None
    except Exception as exc:  # the plugin's import or constructor failed
        raise PluginLoadError(f"plugin {name!r} in {group} failed to load: {type(exc).__name__}: {exc}") from None
    obj = mgr.driver
    if config is not None:
        configure = getattr(obj, "configure", None)
        if callable(configure):
            try:
                configure(dict(config))
            except Exception as exc:
                raise PluginLoadError(f"plugin {name!r} in {group} rejected its settings: {exc}") from None
        elif config:
            raise PluginLoadError(f"plugin {name!r} in {group} takes no settings")
    return obj


def plugin_manager(*plugins: Any) -> pluggy.PluginManager:
    """A pluggy manager for project ``crane`` with every hookspec added and ``plugins`` registered."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        if plugin is not None:
            pm.register(plugin)
    return pm
