"""The plugin's configuration (``Version``, ``Root``, ``Prefix``) and its validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crane_kernel.errors import ConfigError

VERSIONS = ("auto", "v1", "v2")
DEFAULT_ROOT = "/sys/fs/cgroup"
DEFAULT_PREFIX = "crane"


@dataclass(frozen=True)
class RuntimeConfig:
    """Validated settings of the cgroup runtime.

    ``prefix`` is ``None`` when the configuration does not set ``Prefix``: the
    step's own ``cgroup_prefix`` is then used (see :func:`effective_prefix`).
    """

    version: str = "auto"
    root: str = DEFAULT_ROOT
    prefix: str | None = None

    def effective_prefix(self, step_prefix: str) -> str:
        """The cgroup prefix for a step: configured ``Prefix``, else the step's, else ``crane``."""
        return self.prefix or step_prefix or DEFAULT_PREFIX


def parse_config(config: dict[str, Any] | None) -> RuntimeConfig:
    """Build a :class:`RuntimeConfig` from the plugin's config mapping (keys are case-insensitive).

    Raises :class:`~crane_kernel.errors.ConfigError` naming the key for invalid values.
    """
    lowered = {str(k).lower(): v for k, v in (config or {}).items()}
    unknown = sorted(set(lowered) - {"version", "root", "prefix"})
    if unknown:
        raise ConfigError(f"runtime cgroup: unknown key(s) {', '.join(unknown)} (known: Version, Root, Prefix)")
    version = str(lowered.get("version", "auto") or "auto").lower()
    if version not in VERSIONS:
        raise ConfigError(f"runtime cgroup: Version must be one of {', '.join(VERSIONS)}, not {version!r}")
    root = str(lowered.get("root") or DEFAULT_ROOT)
    if not root.startswith("/"):
        raise ConfigError(f"runtime cgroup: Root must be an absolute path, not {root!r}")
    prefix = lowered.get("prefix")
    if prefix is not None:
        prefix = str(prefix).strip("/")
        _check_components(prefix, "Prefix")
    return RuntimeConfig(version=version, root=root, prefix=prefix or None)


def _check_components(path: str, what: str) -> None:
    """Reject empty, ``.`` and ``..`` components so a cgroup path cannot escape its hierarchy."""
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ConfigError(f"runtime cgroup: {what} {path!r} is not a valid cgroup path")
