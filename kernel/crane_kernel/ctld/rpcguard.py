"""The guard every RPC handler wears: a malformed value becomes INVALID_ARGUMENT, never a traceback."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import grpc

log = logging.getLogger("cranectld.api")


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a malformed value that slipped past the checks into INVALID_ARGUMENT (one line, logged).

    A request must never reach its caller as a server exception (gRPC's UNKNOWN with a traceback).
    """
    @functools.wraps(method)
    def call(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except (ValueError, TypeError, OverflowError, KeyError, UnicodeError) as exc:
            log.warning("%s: refused a malformed request: %s: %s", method.__name__, type(exc).__name__, exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {one_line(exc)}")
    return call


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (a refusal must not forge output rows)."""
    text = " ".join(str(exc).split())
    return text[:1000]
