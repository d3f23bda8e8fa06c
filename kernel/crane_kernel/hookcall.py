"""Calling a hook the way the kernel does: pluggy's semantics, skipping its dispatch where there is none to do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["fast_caller"]


def _return_none(**_kwargs: Any) -> None:
    return None


def _return_empty(**_kwargs: Any) -> list:
    return []


def fast_caller(hook: pluggy.HookCaller) -> Callable[..., Any]:
    """A keyword-argument caller with the semantics of calling ``hook`` through pluggy, made cheaper.

    * no implementation: returns ``None`` (firstresult) or ``[]``;
    * exactly one plain implementation (not a wrapper): that implementation,
      called directly — for a firstresult hook its bound method itself when it
      takes all the hook's arguments, so a call costs what a method call
      costs; a non-firstresult hook still returns a list (``[]`` for ``None``);
    * otherwise: the pluggy ``HookCaller`` itself.

    The caller is a snapshot: build it after every plugin is registered
    (:class:`Plugins` does). It bypasses pluggy's call tracing
    (``add_hookcall_monitoring``), which the kernel does not use.
    """
    impls = hook.get_hookimpls()
    spec = hook.spec
    firstresult = bool(spec is not None and spec.opts.get("firstresult"))
    if not impls:
        return _return_none if firstresult else _return_empty
    if len(impls) > 1 or any(i.hookwrapper or getattr(i, "wrapper", False) for i in impls):
        return hook
    impl = impls[0]
    fn = impl.function
    names = tuple(impl.argnames)
    if firstresult:
        if spec is not None and set(names) == set(spec.argnames):
            return fn

        def call_first(**kwargs: Any) -> Any:
            return fn(*[kwargs[a] for a in names])

        return call_first

    if spec is not None and set(names) == set(spec.argnames):
        def call_all(**kwargs: Any) -> list:
            result = fn(**kwargs)
            return [] if result is None else [result]
    else:
        def call_all(**kwargs: Any) -> list:
            result = fn(*[kwargs[a] for a in names])
            return [] if result is None else [result]

    return call_all
