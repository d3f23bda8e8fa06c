"""Multifactor settings: weights, caps, fair-share half-life, QoS priorities, account shares.

Configuration (the plugin's block in config.yaml, passed to the ``crane_plugin_configure`` hook);
every key also accepts Slurm's ``Priority`` prefix (``PriorityWeightAge``,
``PriorityMaxAge``, ``PriorityFavorSmall``; ``PriorityDecayHalfLife`` for ``HalfLife``)::

    WeightAge: 1000          # weight of the age factor
    WeightFairShare: 1000    # weight of the fair-share factor
    WeightJobSize: 0         # weight of the job-size factor
    WeightPartition: 1000    # weight of the partition factor
    WeightQoS: 1000          # weight of the QoS factor
    MaxAge: 7-0              # age at which the age factor reaches 1 (a YAML number: seconds; or D-HH:MM:SS, 15m)
    HalfLife: 7-0            # fair-share usage half-life; 0 = usage never decays
    FavorSmall: false        # size factor favours small jobs (1 - size) instead of large ones
    QoSPriority: {normal: 0, high: 100}   # QoS name -> priority (unknown QoS: 0)
    Shares: {physics: 2}     # account -> shares (default 1 for every account)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crane_common.units import config_duration

__all__ = ["Settings", "parse_settings", "parse_duration"]

_WEIGHTS = ("WeightAge", "WeightFairShare", "WeightJobSize", "WeightPartition", "WeightQoS")
_ALIASES = {"PriorityDecayHalfLife": "HalfLife"}


def parse_duration(value: Any, where: str) -> float:
    """Seconds for ``MaxAge``/``HalfLife``: :func:`crane_common.units.config_duration`, errors naming ``where``.

    A YAML number is seconds (``MaxAge: 3600``); a string is a CraneSched/Slurm duration
    (``7-0``, ``1-02:03:04``, ``10:30``, ``15m``) in which a bare number is minutes.
    """
    try:
        return float(config_duration(value))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


class Settings:
    """Validated multifactor settings (see the module docstring for meanings and defaults)."""

    __slots__ = ("weight_age", "weight_fairshare", "weight_size", "weight_partition", "weight_qos",
                 "max_age", "half_life", "favor_small", "qos_priority", "shares")

    def __init__(self) -> None:
        self.weight_age = 1000.0
        self.weight_fairshare = 1000.0
        self.weight_size = 0.0
        self.weight_partition = 1000.0
        self.weight_qos = 1000.0
        self.max_age = 7 * 86400.0
        self.half_life = 7 * 86400.0
        self.favor_small = False
        self.qos_priority: dict[str, float] = {}
        self.shares: dict[str, float] = {}


def _canonical(key: str) -> str:
    if key in _ALIASES:
        return _ALIASES[key]
    if key.startswith("Priority") and key not in ("PriorityDecayHalfLife",):
        return key[len("Priority"):]
    return key


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, not {value!r}")
    return float(value)


def _name_map(value: Any, where: str, nonneg: bool) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must map names to numbers")
    out = {}
    for k, v in value.items():
        x = _number(v, f"{where}.{k}")
        if nonneg and x < 0:
            raise ValueError(f"{where}.{k} must be >= 0, not {v!r}")
        out[str(k)] = x
    return out


def parse_settings(config: Mapping[str, Any]) -> Settings:
    """Validate ``config``; an unknown key or a bad value raises ``ValueError`` naming it."""
    st = Settings()
    known = {*_WEIGHTS, "MaxAge", "HalfLife", "FavorSmall", "QoSPriority", "Shares"}
    seen: dict[str, str] = {}
    for raw, value in config.items():
        key = _canonical(str(raw))
        where = f"multifactor priority: {raw}"
        if key not in known:
            raise ValueError(f"multifactor priority: unknown setting {raw!r}; known: {sorted(known)}")
        if key in seen:
            raise ValueError(f"{where} repeats {seen[key]!r}")
        seen[key] = str(raw)
        if key in _WEIGHTS:
            w = _number(value, where)
            if w < 0:
                raise ValueError(f"{where} must be >= 0, not {value!r}")
            attr = {"WeightAge": "weight_age", "WeightFairShare": "weight_fairshare",
                    "WeightJobSize": "weight_size", "WeightPartition": "weight_partition",
                    "WeightQoS": "weight_qos"}[key]
            setattr(st, attr, w)
        elif key == "MaxAge":
            st.max_age = parse_duration(value, where)
        elif key == "HalfLife":
            st.half_life = parse_duration(value, where)
        elif key == "FavorSmall":
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be true or false, not {value!r}")
            st.favor_small = value
        elif key == "QoSPriority":
            st.qos_priority = _name_map(value, where, nonneg=False)
        elif key == "Shares":
            st.shares = _name_map(value, where, nonneg=True)
    return st
