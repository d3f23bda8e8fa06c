"""Regular expressions compiled on first use.

Compiling a pattern costs 0.1-1 ms, paid at import time for a module-level
``re.compile``; a command that never uses the pattern should not pay it.
"""

from __future__ import annotations

import re


class LazyRegex:
    """A pattern compiled on first attribute access (``match``, ``search``, ``finditer``, ...)."""

    __slots__ = ("_pattern", "_flags", "_compiled")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._pattern = pattern
        self._flags = flags
        self._compiled: re.Pattern[str] | None = None

    def compiled(self) -> re.Pattern[str]:
        """The compiled pattern."""
        if self._compiled is None:
            self._compiled = re.compile(self._pattern, self._flags)
        return self._compiled

    def __getattr__(self, name: str) -> object:
        return getattr(self.compiled(), name)

    def __repr__(self) -> str:
        return f"LazyRegex({self._pattern!r})"
