"""Deferred imports: keep grpc's and protobuf's unused baggage out of a CLI call.

``import grpc`` costs ~75 ms on the reference machine, and more than half of it
is not grpc at all: the Cython core ``grpc._cython.cygrpc`` runs ``import
asyncio`` at load time (asyncio then pulls in ssl, socket, subprocess,
inspect, concurrent.futures, ...), and ``grpc/__init__`` ends with ``from grpc
import aio``. A synchronous unary call uses neither. Likewise protobuf's
``descriptor_pool`` imports the pure-Python message implementation
(``python_message``, which drags in text_format, decoder, datetime, pickle)
even when the upb C backend does all the work.

:func:`install` puts a *deferred module* into ``sys.modules`` for each of these
names. It is a real module object whose first attribute access (``asyncio.X``,
``grpc.aio.Y``, also ``__path__``/``__file__``) loads the real module *into
the same object*, so every reference anyone took to it stays valid. Only the
``import`` statement itself is free: the machinery reads nothing but
``__spec__`` (set to ``None``, which the import system accepts for a module
already in ``sys.modules``), so binding the name does not trigger the load.

This is the same idea as :class:`importlib.util.LazyLoader`, which cannot be
used here: on Python 3.11 the import statement reads ``module.__spec__`` of a
lazy module and so loads it at once. Safety rules:

* a name already imported is never replaced;
* only plain source modules are deferred (the real spec is found with the
  regular path finder at load time and must have a ``SourceFileLoader``-like
  ``exec_module``);
* a load that fails removes the module from ``sys.modules`` and re-raises, as
  a failed import would.

:data:`CLICK_BAGGAGE` does the same for ``inspect``, which click imports but the
commands never need (the package installs it before any of its modules imports click).

Tests (``tests/test_fastimport.py``) check that a grpc call works without
loading asyncio, and that asyncio, ``grpc.aio`` and protobuf keep working
after being loaded through the deferred objects.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

# Deferred before ``import grpc`` for commands that only make synchronous unary calls,
# as (name, import the parent package first). A deferred submodule must end up bound
# as an attribute of its parent: ``grpc`` binds ``grpc.aio`` itself (its ``__init__``
# ends with ``from grpc import aio``; importing grpc first would defeat the purpose),
# ``google.protobuf.internal`` is a tiny package imported first. ``inspect``,
# ``socket`` are imported by cygrpc at load time but only used by its asyncio/gevent
# I/O paths; ``traceback`` by logging, only to format exceptions; ``calendar`` by
# protobuf's well-known types, only to convert Timestamps.
GRPC_BAGGAGE: tuple[tuple[str, bool], ...] = (
    ("asyncio", False),
    ("grpc.aio", False),
    ("inspect", False),
    ("socket", False),
    ("traceback", False),
    ("calendar", False),
    ("google.protobuf.internal.python_message", True),
)

# The forwarded crun/calloc path (no grpc): only protobuf's pure-Python message code, which the
# upb backend never runs, and the Timestamp helpers' calendar.
PROTOBUF_BAGGAGE: tuple[tuple[str, bool], ...] = (
    ("calendar", False),
    ("google.protobuf.internal.python_message", True),
)

# Deferred right after ``import grpc`` (so that grpc is there to bind it): the channel
# module imports ``grpc.experimental`` (and with it the simple-stubs API) without using it.
GRPC_LATE_BAGGAGE: tuple[tuple[str, bool], ...] = (
    ("grpc.experimental", False),
)

# Deferred before ``import click`` (crane_cli.cliparse): click.core and click.termui import
# ``inspect`` (with ast, dis, tokenize: ~8 ms) but use it only to tidy help strings and to show
# a dynamic default in help output, which crane_cli.cliparse does not ask it to do.
CLICK_BAGGAGE: tuple[tuple[str, bool], ...] = (
    ("inspect", False),
)

# The token lookup (``crane_common.tokens``) imports these at module level but needs
# them only to mint or verify a token, not to read ``$CRANE_TOKEN`` or the token file.
TOKEN_BAGGAGE: tuple[tuple[str, bool], ...] = (
    ("hashlib", False),
    ("hmac", False),
    ("secrets", False),
    ("json", False),
    ("base64", False),
)

_lock = threading.RLock()


class DeferredModule(ModuleType):
    """A module that loads its real code on first attribute access (see module docs)."""

    def __getattr__(self, attr: str) -> object:
        """Load the real module into this object, then return ``attr`` from it."""
        _load(self)
        return ModuleType.__getattribute__(self, attr)

    def __dir__(self) -> list[str]:
        """Load the real module, then list its names."""
        _load(self)
        return ModuleType.__dir__(self)

    @property
    def __dict__(self) -> dict:  # type: ignore[override]
        """Load the real module, then return its namespace (``vars(module)``)."""
        _load(self)
        return _MODULE_DICT.__get__(self)


_MODULE_DICT = ModuleType.__dict__["__dict__"]


def _find_spec(name: str):  # noqa: ANN202 - importlib spec
    from importlib.machinery import PathFinder

    parent = name.rpartition(".")[0]
    path = None
    if parent:
        if parent not in sys.modules:
            __import__(parent)
        path = sys.modules[parent].__path__
    spec = PathFinder.find_spec(name, path)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        raise ImportError(f"deferred module {name!r} cannot be found", name=name)
    return spec


def _load(module: ModuleType) -> None:
    name = module.__name__
    with _lock:
        if type(module) is not DeferredModule:  # loaded meanwhile by another thread
            return
        try:
            spec = _find_spec(name)
        except BaseException:
            if sys.modules.get(name) is module:
                del sys.modules[name]
            raise
        module.__class__ = ModuleType
        module.__spec__ = spec
        module.__loader__ = spec.loader
        module.__package__ = spec.name if spec.submodule_search_locations is not None else spec.parent
        if spec.submodule_search_locations is not None:
            module.__path__ = list(spec.submodule_search_locations)
        if spec.has_location:
            module.__file__ = spec.origin
            if spec.cached:
                module.__cached__ = spec.cached
        spec._initializing = True
        try:
            spec.loader.exec_module(module)
        except BaseException:
            if sys.modules.get(name) is module:
                del sys.modules[name]
            raise
        finally:
            spec._initializing = False


def defer(name: str, import_parent: bool = False) -> bool:
    """Install a deferred module for ``name`` unless it is already imported; True if installed.

    A submodule is bound as an attribute of its parent when the parent is already
    imported; ``import_parent`` imports the parent first. (A parent imported later
    does not get the attribute unless its own code imports the submodule.)
    """
    if name in sys.modules:
        return False
    parent = name.rpartition(".")[0]
    if import_parent and parent:
        __import__(parent)
    with _lock:
        if name in sys.modules:
            return False
        module = DeferredModule(name)
        module.__spec__ = None
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent and parent in sys.modules:
            setattr(sys.modules[parent], child, module)
    return True


def is_deferred(name: str) -> bool:
    """True while ``name`` is a deferred module that has not been loaded yet."""
    return type(sys.modules.get(name)) is DeferredModule


def install(names: tuple[tuple[str, bool], ...] = GRPC_BAGGAGE) -> list[str]:
    """Defer each ``(name, import_parent)`` of ``names`` (see :func:`defer`); return the names deferred.

    Setting ``CRANE_NO_DEFERRED_IMPORTS=1`` in the environment disables it.
    """
    import os

    if os.environ.get("CRANE_NO_DEFERRED_IMPORTS"):
        return []
    return [name for name, import_parent in names if defer(name, import_parent)]
