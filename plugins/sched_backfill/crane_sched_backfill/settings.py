"""Backfill settings: mode, window and depth, with per-partition overrides.

Configuration (the plugin's block in config.yaml, passed to the ``crane_plugin_configure`` hook)::

    mode: easy            # easy | conservative (default: the entry point's mode; `backfill` = easy)
    window: 0             # seconds ahead a reservation may be placed; 0 = unlimited
    depth: 0              # conservative: max reservations per partition per pass; 0 = unlimited
    max_jobs: 0           # max pending jobs examined per pass (queue order); 0 = all
    fast_path: true       # use the count-based single-pool path when the view allows it
    vector_nodes: 512     # EASY on clusters of at least this many nodes uses the NumPy engine; 0 = never
    partitions:           # per-partition overrides of mode / window / depth
      gpu: {mode: conservative, depth: 50, window: 604800}

EASY always reserves for exactly one job per partition (the first that cannot
start); ``depth`` only applies to conservative partitions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["MODES", "PartitionSettings", "Settings", "parse_settings"]

MODES = ("easy", "conservative")
_TOP_KEYS = {"mode", "window", "depth", "max_jobs", "fast_path", "vector_nodes", "partitions"}
_PART_KEYS = {"mode", "window", "depth"}


class PartitionSettings:
    """Effective settings of one partition: ``mode``, ``horizon`` (window, ``inf`` = none) and ``depth``."""

    __slots__ = ("mode", "window", "depth")

    def __init__(self, mode: str, window: float, depth: int) -> None:
        self.mode = mode
        self.window = window if window > 0 else math.inf
        self.depth = 1 if mode == "easy" else (depth if depth > 0 else math.inf)

    def __repr__(self) -> str:
        return f"PartitionSettings({self.mode!r}, window={self.window}, depth={self.depth})"


class Settings:
    """All settings of one scheduler instance."""

    __slots__ = ("mode", "window", "depth", "max_jobs", "fast_path", "vector_nodes", "overrides", "_cache")

    def __init__(self, mode: str = "easy", window: float = 0.0, depth: int = 0, max_jobs: int = 0,
                 fast_path: bool = True, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 vector_nodes: int = 512) -> None:
        self.mode = mode
        self.window = window
        self.depth = depth
        self.max_jobs = max_jobs
        self.fast_path = fast_path
        self.vector_nodes = vector_nodes
        self.overrides = dict(overrides or {})
        self._cache: dict[str, PartitionSettings] = {}

    def for_partition(self, name: str) -> PartitionSettings:
        """The effective settings of partition ``name`` (defaults plus its overrides)."""
        ps = self._cache.get(name)
        if ps is None:
            o = self.overrides.get(name, {})
            ps = PartitionSettings(o.get("mode", self.mode), float(o.get("window", self.window)),
                                   int(o.get("depth", self.depth)))
            self._cache[name] = ps
        return ps


def _mode(value: Any, where: str) -> str:
    if value not in MODES:
        raise ValueError(f"{where}: mode must be one of {', '.join(MODES)}, not {value!r}")
    return str(value)


def _nonneg(value: Any, where: str, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number >= 0, not {value!r}")
    if value < 0 or (kind is int and value != int(value)):
        raise ValueError(f"{where} must be a{'n integer' if kind is int else ' number'} >= 0, not {value!r}")
    return kind(value)


def parse_settings(config: Mapping[str, Any], default_mode: str) -> Settings:
    """Validate a configuration mapping (see the module docstring); errors name the key and the reason."""
    unknown = set(config) - _TOP_KEYS
    if unknown:
        raise ValueError(f"backfill scheduler: unknown setting(s) {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    mode = _mode(config.get("mode", default_mode), "backfill scheduler")
    window = _nonneg(config.get("window", 0), "backfill scheduler: window", float)
    depth = _nonneg(config.get("depth", 0), "backfill scheduler: depth", int)
    max_jobs = _nonneg(config.get("max_jobs", 0), "backfill scheduler: max_jobs", int)
    vector_nodes = _nonneg(config.get("vector_nodes", 512), "backfill scheduler: vector_nodes", int)
    fast_path = config.get("fast_path", True)
    if not isinstance(fast_path, bool):
        raise ValueError(f"backfill scheduler: fast_path must be true or false, not {fast_path!r}")
    parts = config.get("partitions") or {}
    if not isinstance(parts, Mapping):
        raise ValueError("backfill scheduler: partitions must map partition names to settings")
    overrides: dict[str, dict[str, Any]] = {}
    for name, block in parts.items():
        where = f"backfill scheduler: partitions.{name}"
        if not isinstance(block, Mapping):
            raise ValueError(f"{where} must be a mapping of mode/window/depth")
        bad = set(block) - _PART_KEYS
        if bad:
            raise ValueError(f"{where}: unknown setting(s) {sorted(bad)}; known: {sorted(_PART_KEYS)}")
        o: dict[str, Any] = {}
        if "mode" in block:
            o["mode"] = _mode(block["mode"], where)
        if "window" in block:
            o["window"] = _nonneg(block["window"], f"{where}.window", float)
        if "depth" in block:
            o["depth"] = _nonneg(block["depth"], f"{where}.depth", int)
        overrides[str(name)] = o
    return Settings(mode, window, depth, max_jobs, fast_path, overrides, vector_nodes)
