"""Loading the scheduler and priority plugins the way the controller does: stevedore by name, then pluggy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

import pluggy
from crane_kernel import PROJECT, hookspecs

__all__ = ["PluginLoadError", "hook_caller", "installed", "load_plugin", "plugin_manager"]


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


def hook_caller(pm: pluggy.PluginManager, name: str, argnames: tuple[str, ...]) -> Callable[..., Any] | None:
    """A positional-argument caller for hook ``name``, or ``None`` when no plugin implements it.

    When exactly one plain implementation is registered (no wrappers), pluggy
    would call just that one, so the caller invokes it directly (saving pluggy's
    dispatch on every simulated pass) with the arguments it declares, in
    ``argnames`` order. Otherwise it goes through ``pm.hook`` as usual.
    """
    hook = getattr(pm.hook, name)
    impls = hook.get_hookimpls()
    if not impls:
        return None
    if len(impls) == 1 and not impls[0].hookwrapper and not getattr(impls[0], "wrapper", False):
        fn = impls[0].function
        wanted = tuple(impls[0].argnames)
        if wanted == argnames:
            return fn
        pick = [argnames.index(a) for a in wanted]
        return lambda *args: fn(*[args[i] for i in pick])
    return lambda *args: hook(**dict(zip(argnames, args, strict=True)))
