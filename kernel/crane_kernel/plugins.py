"""The plugin manager: stevedore selects plugins by name, one pluggy manager per process calls their hooks.

Each *slot* (:data:`SLOTS`) is an entry-point group with a config key, how
many plugins it takes, the hooks its plugins may implement and those they
must implement. :func:`load_slots` is the one way a process loads its
plugins (cranectld, craned and its launcher, ``crane sim``, ``crane bench
sched``): it instantiates each named plugin through stevedore, checks it
against its slot, registers it with the process's single
``pluggy.PluginManager`` and hands it its settings through its own
``crane_plugin_configure``. Every failure is a one-line :class:`PluginError`
naming the slot, the plugin and, where there is one, the hook. Bundled
plugins load exactly like third-party ones; we never call
``load_setuptools_entrypoints`` on these groups.

A new slot is one entry in :data:`SLOTS` (plus its config key in
``PluginsConfig`` and its hookspecs); nothing else here changes.

The result, :class:`Plugins`, is how the kernel calls hooks:
``plugins.hook.<name>(**kwargs)`` has pluggy's semantics, with two
documented refinements (see :meth:`Plugins.caller`): a hook with exactly one
plain implementation is called directly, without pluggy's dispatch loop; and
the runtime hooks that take a step handle go only to the runtime that
launched the step (:class:`~crane_kernel.runtime.StepDispatcher`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from crane_kernel import PROJECT, hookspecs
from crane_kernel.errors import PluginError
from crane_kernel.hookcall import fast_caller
from crane_kernel.slots import COMMON_HOOKS, RUNTIME_HOOKS, SLOTS, Slot, check_slot, hookimpl_names, hookspec_names

__all__ = ["COMMON_HOOKS", "SLOTS", "LoadedPlugin", "Plugins", "Slot", "check_slot", "config_selection",
           "fast_caller", "from_objects", "installed", "load_slots", "new_manager", "own_caller"]

_CONFIGURE = "crane_plugin_configure"
_SHUTDOWN = "crane_plugin_shutdown"

if TYPE_CHECKING:
    from crane_kernel.config import ClusterConfig
    from crane_kernel.runtime import StepDispatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedPlugin:
    """A plugin object loaded into a slot under its configured name."""

    slot: str
    name: str
    obj: Any


def installed(slot: str) -> list[str]:
    """Names of the installed plugins for a slot."""
    return sorted({ep.name for ep in entry_points(group=SLOTS[slot].group)})


def new_manager() -> pluggy.PluginManager:
    """A plugin manager with every cranesched hookspec added and nothing registered."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# --------------------------------------------------------------------------
# selecting plugins from the configuration
# --------------------------------------------------------------------------

def config_selection(cfg: "ClusterConfig") -> dict[str, Any]:
    """The config's ``Plugins:`` section as a :func:`load_slots` mapping.

    Compatibility alias: a top-level ``Cgroup:`` section (the old home of the
    cgroup settings) is handed, unvalidated, to the plugin named ``cgroup`` as
    settings; keys also given in ``Plugins.Settings.cgroup`` (compared
    case-insensitively) take the latter's value.
    """
    selection = cfg.Plugins.model_dump()
    legacy = dict(getattr(cfg, "Cgroup", None) or {})
    if legacy:
        settings = dict(selection.get("Settings") or {})
        own = dict(settings.get("cgroup") or {})
        lowered = {str(k).lower() for k in own}
        merged = {k: v for k, v in legacy.items() if str(k).lower() not in lowered}
        merged.update(own)
        settings["cgroup"] = merged
        selection["Settings"] = settings
    return selection


def _names(slot: Slot, value: Any) -> list[str]:
    if value is None or value == "":
        names: list[Any] = []
    else:
        names = [value] if isinstance(value, str) else list(value)
    for n in names:
        if not isinstance(n, str) or not n:
            raise PluginError(f"Plugins.{slot.key}: plugin names must be non-empty strings, got {n!r}")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise PluginError(f"{slot.name} plugin {n!r} is listed twice in Plugins.{slot.key}")
        seen.add(n)
    if len(names) < slot.least or (slot.most is not None and len(names) > slot.most):
        got = ", ".join(names) or "none"
        raise PluginError(f"the {slot.name} slot takes {slot.describe_count()} (Plugins.{slot.key}), got: {got} "
                          f"(installed: {', '.join(installed(slot.name)) or 'none'})")
    return names


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------

def _instantiate(slot: Slot, name: str) -> Any:
    """Load and instantiate plugin ``name`` of ``slot`` through stevedore."""
    from stevedore import driver
    from stevedore.exception import MultipleMatches, NoMatches

    failures: list[BaseException] = []

    def _failed(_mgr: Any, _ep: Any, exc: BaseException) -> None:
        failures.append(exc)

    try:
        mgr = driver.DriverManager(namespace=slot.group, name=name, invoke_on_load=True,
                                   on_load_failure_callback=_failed)
    except NoMatches:
        if failures:
            exc = failures[0]
            raise PluginError(f"{slot.name} plugin {name!r} failed to load: {type(exc).__name__}: "
                              f"{_one_line(exc)}") from None
        raise PluginError(f"no {slot.name} plugin named {name!r} is installed "
                          f"(installed: {', '.join(installed(slot.name)) or 'none'})") from None
    except MultipleMatches:
        raise PluginError(f"more than one {slot.name} plugin is named {name!r}") from None
    except Exception as exc:  # the plugin's own import or constructor failed
        raise PluginError(f"{slot.name} plugin {name!r} failed to load: {type(exc).__name__}: "
                          f"{_one_line(exc)}") from None
    return mgr.driver


def kernel_defaults(cfg: Any) -> dict[str, dict[str, Any]]:
    """Settings the kernel supplies to every plugin of a slot, under ``Plugins.Settings.<name>``.

    One table for every process that loads plugins (cranectld, cplugind), so that e.g. the job
    history's writer (cplugind) and reader (cranectld) find the same default store.
    """
    return {"auth": {"KeyFile": cfg.key_file, "Admins": list(cfg.Auth.Admins), "Cluster": cfg.ClusterName},
            "lifecycle": {"JobRequeue": cfg.CraneCtld.JobRequeue, "MaxRequeueCount": cfg.CraneCtld.MaxRequeueCount},
            # event plugins that keep their own Redis state (notify_mail's rq queue) use the bus as cplugind
            "events": {"CraneBaseDir": cfg.base_dir, "ClusterName": cfg.ClusterName, "BusUrl": cfg.RedisUrl,
                       **({"CredentialsDir": cfg.bus_dir} if cfg.Bus.Auth else {})},
            "accounting": {"CraneBaseDir": cfg.base_dir}}


def load_slots(selection: Mapping[str, Any], *, slots: Iterable[str] | None = None,
               defaults: Mapping[str, Mapping[str, Any]] | None = None) -> "Plugins":
    """Load the plugins a process needs into one plugin manager; the one way plugins are loaded.

    ``selection`` is shaped like the config's ``Plugins:`` section: a slot's
    config key (``Scheduler``, ``Priority``, ``Runtime``, ``Auth``,
    ``JobFilters``, ``Events``) maps to a name or a list of names, and
    ``Settings`` maps a plugin name to its settings (use
    :func:`config_selection` for a :class:`~crane_kernel.config.ClusterConfig`).
    ``slots`` names the slots this process fills (default: every slot whose
    key is in ``selection``); ``defaults`` maps a slot name to settings the
    kernel supplies to each of its plugins, under the user's.

    Raises :class:`PluginError` (one line) for a name that is not installed,
    a plugin that fails to import, a wrong number of plugins for a slot, a
    hook outside the plugin's slot or a required hook missing, settings the
    plugin rejects, or settings for a plugin that takes none. Plugins
    already configured when a later one fails are shut down first.
    """
    wanted = list(slots) if slots is not None else [s.name for s in SLOTS.values() if s.key in selection]
    unknown = [s for s in wanted if s not in SLOTS]
    if unknown:
        raise PluginError(f"unknown plugin slot(s) {', '.join(unknown)} (slots: {', '.join(SLOTS)})")
    settings = dict(selection.get("Settings") or {})
    objects: dict[str, dict[str, Any]] = {}
    for slot in SLOTS.values():
        if slot.name in wanted:
            objects[slot.name] = {n: None for n in _names(slot, selection.get(slot.key))}
    return _assemble(objects, settings, defaults or {}, _instantiate)


def from_objects(objects: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Mapping[str, Any]] | None = None,
                 defaults: Mapping[str, Mapping[str, Any]] | None = None) -> "Plugins":
    """Build a :class:`Plugins` from plugin objects already instantiated (tests, embedding the kernel).

    ``objects`` maps a slot name to ``{plugin name: object}`` in configured
    order. The objects go through exactly the checks, registration and
    configuration of :func:`load_slots`; only the stevedore look-up is skipped.
    """
    unknown = [s for s in objects if s not in SLOTS]
    if unknown:
        raise PluginError(f"unknown plugin slot(s) {', '.join(unknown)} (slots: {', '.join(SLOTS)})")
    given = {slot.name: dict(objects[slot.name]) for slot in SLOTS.values() if slot.name in objects}
    for name, named in given.items():
        slot = SLOTS[name]
        if len(named) < slot.least or (slot.most is not None and len(named) > slot.most):
            raise PluginError(f"the {name} slot takes {slot.describe_count()}, got: {', '.join(named) or 'none'}")
    return _assemble(given, dict(settings or {}), defaults or {}, None)


def _assemble(objects: dict[str, dict[str, Any]], settings: dict[str, Any],
              defaults: Mapping[str, Mapping[str, Any]], make: Callable[[Slot, str], Any] | None) -> "Plugins":
    pm = new_manager()
    loaded: list[LoadedPlugin] = []
    configured: list[LoadedPlugin] = []
    try:
        for slot_name, named in objects.items():
            slot = SLOTS[slot_name]
            batch = []
            for name, obj in named.items():
                plugin = make(slot, name) if make is not None else obj
                check_slot(pm, slot, name, plugin)
                batch.append(LoadedPlugin(slot.name, name, plugin))
            # pluggy calls the most recently registered implementation first: register in reverse
            # so that the first configured plugin of a list slot is asked first
            for lp in reversed(batch):
                try:
                    pm.register(lp.obj, name=f"{lp.slot}:{lp.name}")
                except ValueError as exc:  # the same object registered twice
                    raise PluginError(f"{lp.slot} plugin {lp.name!r} cannot be registered: {_one_line(exc)}") from None
                except pluggy.PluginValidationError as exc:
                    raise PluginError(f"{lp.slot} plugin {lp.name!r} does not fit the hook specifications: "
                                      f"{_one_line(exc)}") from None
            for lp in batch:
                _configure(pm, lp, settings.get(lp.name), defaults.get(lp.slot))
                configured.append(lp)
                loaded.append(lp)
        pm.check_pending()
    except BaseException:
        _shutdown_all(pm, configured)
        raise
    return Plugins(pm, loaded, slots=list(objects))


def own_caller(pm: pluggy.PluginManager, hook: str, plugin: Any) -> Callable[..., Any]:
    """A caller of ``plugin``'s own implementation of ``hook`` (pluggy ``subset_hook_caller``).

    Calling it runs that one implementation through pluggy (``None`` for a
    firstresult hook it does not implement, else a list of results).
    """
    others = [p for p in pm.get_plugins() if p is not plugin]
    return pm.subset_hook_caller(hook, others)


def _configure(pm: pluggy.PluginManager, lp: LoadedPlugin, user: Mapping[str, Any] | None,
               slot_defaults: Mapping[str, Any] | None) -> None:
    implements = _CONFIGURE in hookimpl_names(pm, lp.obj)
    if user is not None and not isinstance(user, Mapping):
        raise PluginError(f"Plugins.Settings.{lp.name}: settings must be a mapping, got {type(user).__name__}")
    if not implements:
        if user:
            raise PluginError(f"{lp.slot} plugin {lp.name!r} takes no settings (it does not implement "
                              f"{_CONFIGURE}), but Plugins.Settings.{lp.name} gives some")
        return
    merged = dict(slot_defaults or {})
    merged.update(user or {})
    try:
        own_caller(pm, _CONFIGURE, lp.obj)(settings=merged)
    except Exception as exc:
        raise PluginError(f"{lp.slot} plugin {lp.name!r} rejected its settings: {_one_line(exc)}") from None


def _shutdown_all(pm: pluggy.PluginManager, loaded: Sequence[LoadedPlugin]) -> None:
    """Call each plugin's own ``crane_plugin_shutdown``, last loaded first; log (never raise) failures."""
    for lp in reversed(loaded):
        try:
            own_caller(pm, _SHUTDOWN, lp.obj)()
        except Exception:
            log.exception("%s plugin %r failed to shut down", lp.slot, lp.name)


class HookCallers:
    """``plugins.hook``: one attribute per hookspec, each the kernel's caller for that hook."""

    def __getattr__(self, name: str) -> Any:
        """Only hookspec names exist (a typo is an AttributeError, not a silent no-op)."""
        raise AttributeError(f"no cranesched hook named {name!r}")


class Plugins:
    """The plugins of one process: its one pluggy manager, what is loaded into each slot, and hook callers.

    Built by :func:`load_slots` (or :func:`from_objects`). ``pm`` is the
    pluggy manager; ``hook`` holds, for every hookspec, the caller the kernel
    uses (:meth:`caller`); ``steps`` is the
    :class:`~crane_kernel.runtime.StepDispatcher` when the runtime slot is
    filled, even with no plugin (else ``None``). Call :meth:`shutdown` when the process stops.
    """

    def __init__(self, pm: pluggy.PluginManager, loaded: Sequence[LoadedPlugin],
                 slots: Iterable[str] | None = None) -> None:
        """Index the loaded plugins and build the hook callers (the plugin set is fixed from here on).

        ``slots`` are the slots this process filled (default: those with a loaded plugin).
        """
        self.pm = pm
        self.loaded = list(loaded)
        self.slots = list(slots) if slots is not None else list(dict.fromkeys(lp.slot for lp in self.loaded))
        self._shut = False
        self.steps: StepDispatcher | None = None
        if "runtime" in self.slots:
            from crane_kernel.runtime import StepDispatcher

            runtimes = [(lp.name, lp.obj) for lp in self.loaded if lp.slot == "runtime"]
            self.steps = StepDispatcher(runtimes, lambda hook, obj: own_caller(pm, hook, obj))
        self.hook = HookCallers()
        for name in hookspec_names():
            setattr(self.hook, name, self._make_caller(name))

    def _make_caller(self, name: str) -> Callable[..., Any]:
        if name in (_CONFIGURE, _SHUTDOWN):
            return _per_plugin_only(name)
        if self.steps is not None and name in RUNTIME_HOOKS:
            return getattr(self.steps, name)
        return fast_caller(getattr(self.pm.hook, name))

    def caller(self, name: str) -> Callable[..., Any]:
        """The kernel's caller for hook ``name`` (the same object as ``hook.<name>``); call it with keywords.

        Semantics are pluggy's (firstresult or a list of results) — see
        :func:`fast_caller` for how a single plain implementation is called
        directly. The runtime hooks go through ``steps`` (to the runtime that
        launched the step); ``crane_plugin_configure`` and
        ``crane_plugin_shutdown`` are never broadcast (see :meth:`shutdown`).
        """
        return getattr(self.hook, name)

    def implemented(self, name: str) -> bool:
        """True when some loaded plugin implements hook ``name``."""
        return bool(getattr(self.pm.hook, name).get_hookimpls())

    def plugins(self, slot: str) -> list[Any]:
        """The plugin objects loaded into ``slot``, in configured order."""
        return [lp.obj for lp in self.loaded if lp.slot == slot]

    def names(self, slot: str) -> list[str]:
        """The names of the plugins loaded into ``slot``, in configured order."""
        return [lp.name for lp in self.loaded if lp.slot == slot]

    def own_caller(self, name: str, plugin: Any) -> Callable[..., Any]:
        """A caller of ``plugin``'s own implementation of hook ``name`` (see :func:`own_caller`)."""
        return own_caller(self.pm, name, plugin)

    def shutdown(self) -> None:
        """Call every plugin's own ``crane_plugin_shutdown``, last loaded first; only the first call does it."""
        if self._shut:
            return
        self._shut = True
        _shutdown_all(self.pm, self.loaded)
        if self.loaded:
            log.info("plugins shut down: %s", ", ".join(f"{lp.slot}:{lp.name}" for lp in reversed(self.loaded)))


def _per_plugin_only(name: str) -> Callable[..., Any]:
    def refuse(**_kwargs: Any) -> Any:
        raise PluginError(f"{name} is called per plugin by the kernel (load_slots, Plugins.shutdown), "
                          "not broadcast")

    return refuse
