"""Plugin loading: stevedore selects plugins by name, pluggy calls their hooks.

Each slot is an entry-point group (``crane.scheduler``, ``crane.priority``,
``crane.runtime``, ``crane.auth``, ``crane.job_filter``, ``crane.events``).
The configuration names which plugins fill it. A name that is not installed,
or a plugin that fails to import, becomes a one-line :class:`PluginError`
naming what *is* installed. Bundled plugins load exactly like third-party
ones; we never call ``load_setuptools_entrypoints`` on these groups.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from crane_kernel import PROJECT, hookspecs
from crane_kernel.errors import PluginError

log = logging.getLogger(__name__)

SLOTS = {
    "scheduler": "crane.scheduler",
    "priority": "crane.priority",
    "runtime": "crane.runtime",
    "auth": "crane.auth",
    "job_filter": "crane.job_filter",
    "events": "crane.events",
    "gres": "crane.gres",
    "lifecycle": "crane.lifecycle",
}


def installed(slot: str) -> list[str]:
    """Names of the installed plugins for a slot."""
    return sorted({ep.name for ep in entry_points(group=SLOTS[slot])})


def new_manager() -> pluggy.PluginManager:
    """A plugin manager with every cranesched hookspec added and nothing registered."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_one(slot: str, name: str, settings: dict[str, Any] | None = None) -> Any:
    """Load and instantiate the plugin ``name`` of ``slot``; configure it with ``settings``."""
    from stevedore import driver
    from stevedore.exception import MultipleMatches, NoMatches

    group = SLOTS[slot]
    available = installed(slot)
    failures: list[BaseException] = []

    def _failed(_mgr: Any, _ep: Any, exc: BaseException) -> None:
        failures.append(exc)

    try:
        mgr = driver.DriverManager(namespace=group, name=name, invoke_on_load=True,
                                   on_load_failure_callback=_failed)
    except NoMatches:
        if failures:
            exc = failures[0]
            raise PluginError(f"{slot} plugin {name!r} failed to load: {type(exc).__name__}: {exc}") from None
        raise PluginError(
            f"no {slot} plugin named {name!r} is installed (installed: {', '.join(available) or 'none'})"
        ) from None
    except MultipleMatches:
        raise PluginError(f"more than one {slot} plugin is named {name!r}") from None
    except Exception as exc:  # the plugin's own import or constructor failed
        raise PluginError(f"{slot} plugin {name!r} failed to load: {type(exc).__name__}: {exc}") from None
    obj = mgr.driver
    configure = getattr(obj, "configure", None)
    if callable(configure):
        try:
            configure(dict(settings or {}))
        except Exception as exc:
            raise PluginError(f"{slot} plugin {name!r} rejected its settings: {exc}") from None
    return obj


def register(pm: pluggy.PluginManager, slot: str, names: Iterable[str],
             settings: dict[str, dict] | None = None) -> list[Any]:
    """Load the named plugins of ``slot`` in order and register them; return the plugin objects.

    For ordered slots (runtime, auth) the first name is asked first: pluggy
    calls the most recently registered implementation first, so we register
    in reverse order.
    """
    settings = settings or {}
    names = list(names)
    objs = [load_one(slot, n, settings.get(n)) for n in names]
    for name, obj in reversed(list(zip(names, objs, strict=True))):
        try:
            pm.register(obj, name=f"{slot}:{name}")
        except Exception as exc:
            raise PluginError(f"{slot} plugin {name!r} does not fit the hook specifications: {exc}") from None
    try:
        pm.check_pending()
    except Exception as exc:
        raise PluginError(f"{slot} plugin implements an unknown hook: {exc}") from None
    return objs
