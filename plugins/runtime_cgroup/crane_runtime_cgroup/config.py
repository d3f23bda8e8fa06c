"""The plugin's settings (``Version``, ``Root``, ``Prefix``, ``PidsMax``, ``UtsNamespace``) and their validation.

They come from ``Plugins.Settings.cgroup`` in the cluster config (or, as a
compatibility alias, a top-level ``Cgroup:`` section), handed over by the
kernel through ``crane_plugin_configure``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crane_kernel.errors import ConfigError

VERSIONS = ("auto", "v1", "v2")
DEFAULT_ROOT = "/sys/fs/cgroup"
DEFAULT_PREFIX = "crane"
DEFAULT_PIDS_MAX = 4096
"""Processes and threads per job unless ``PidsMax`` says otherwise (0 = no limit): a fork bomb
in one job cannot exhaust the node's pid space, while builds and thread pools fit easily."""


KEYS = ("Version", "Root", "Prefix", "PidsMax", "UtsNamespace")


@dataclass(frozen=True)
class RuntimeConfig:
    """Validated settings of the cgroup runtime.

    Job cgroups live at ``<controller>/<prefix>/<node>/job_<id>`` under
    ``root``; ``pids_max`` limits the processes (and threads) of each job
    (default :data:`DEFAULT_PIDS_MAX`; 0 = no limit); ``uts_namespace``: each step supervisor enters
    a new UTS namespace and sets the host name to the step's node name before starting tasks (for
    a cluster of virtual nodes on one machine).
    """

    version: str = "auto"
    root: str = DEFAULT_ROOT
    prefix: str = DEFAULT_PREFIX
    pids_max: int = DEFAULT_PIDS_MAX
    uts_namespace: bool = False


def parse_config(config: dict[str, Any] | None) -> RuntimeConfig:
    """Build a :class:`RuntimeConfig` from the plugin's config mapping (keys are case-insensitive).

    Raises :class:`~crane_kernel.errors.ConfigError` naming the key for invalid values.
    """
    lowered = {str(k).lower(): v for k, v in (config or {}).items()}
    unknown = sorted(set(lowered) - {k.lower() for k in KEYS})
    if unknown:
        raise ConfigError(f"runtime cgroup: unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
    version = str(lowered.get("version", "auto") or "auto").lower()
    if version not in VERSIONS:
        raise ConfigError(f"runtime cgroup: Version must be one of {', '.join(VERSIONS)}, not {version!r}")
    root = str(lowered.get("root") or DEFAULT_ROOT)
    if not root.startswith("/"):
        raise ConfigError(f"runtime cgroup: Root must be an absolute path, not {root!r}")
    prefix = lowered.get("prefix")
    prefix = DEFAULT_PREFIX if prefix is None or prefix == "" else str(prefix).strip("/")
    _check_components(prefix, "Prefix")
    pids_max = lowered.get("pidsmax", DEFAULT_PIDS_MAX)
    if pids_max is None:
        pids_max = DEFAULT_PIDS_MAX
    if isinstance(pids_max, str) and pids_max.strip().isdigit():
        pids_max = int(pids_max)
    if isinstance(pids_max, bool) or not isinstance(pids_max, int) or pids_max < 0:
        raise ConfigError(f"runtime cgroup: PidsMax must be a whole number >= 0 (0 = no limit), not {pids_max!r}")
    uts = lowered.get("utsnamespace", False)
    if isinstance(uts, str) and uts.strip().lower() in ("true", "yes", "1", "false", "no", "0", ""):
        uts = uts.strip().lower() in ("true", "yes", "1")
    if uts is None:
        uts = False
    if not isinstance(uts, bool):
        raise ConfigError(f"runtime cgroup: UtsNamespace must be true or false, not {uts!r}")
    return RuntimeConfig(version=version, root=root, prefix=prefix, pids_max=pids_max, uts_namespace=uts)


def _check_components(path: str, what: str) -> None:
    """Reject empty, ``.`` and ``..`` components so a cgroup path cannot escape its hierarchy."""
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ConfigError(f"runtime cgroup: {what} {path!r} is not a valid cgroup path")
