"""The ``cri`` plugin's settings (``Plugins.Settings.cri``) and their validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crane_kernel.errors import ConfigError

KEYS = ("Endpoint", "Timeout", "StopTimeout", "LogRoot", "CgroupRoot", "Prefix", "Namespace", "Network", "Shell",
        "PollInterval")


@dataclass(frozen=True)
class CriConfig:
    """Validated settings.

    ``endpoint``: containerd's CRI socket; ``timeout``: seconds per RPC; ``stop_timeout``: the
    grace StopContainer gives a job on SIGTERM before SIGKILL; ``log_root``: where the CRI log
    files go (root-only, ``<log_root>/<node>/job_<id>/``); ``cgroup_root``/``prefix``: the pods'
    parent cgroup ``<prefix>/<node>/pod_<id>`` (created with the job's limits and removed by the
    plugin); ``namespace``: the pods' metadata namespace; ``network``: ``node`` (the host's
    network, the default, no CNI needed) or ``pod`` (a CNI network; ``--pod-host-network`` forces
    node); ``shell``: what replaces the default interpreter ``/bin/bash`` (images often lack bash);
    ``poll_interval``: seconds between ContainerStatus polls (containerd 1.6 has no exit events).
    """

    endpoint: str = "/run/containerd/containerd.sock"
    timeout: float = 10.0
    stop_timeout: int = 10
    log_root: str = "/var/log/crane/cri"
    cgroup_root: str = "/sys/fs/cgroup"
    prefix: str = "crane"
    namespace: str = "crane"
    network: str = "node"
    shell: str = "/bin/sh"
    poll_interval: float = 0.015


def _num(value: Any, key: str, lo: float, hi: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"runtime cri: {key} must be a number, not {value!r}") from None
    if not lo <= x <= hi:
        raise ConfigError(f"runtime cri: {key} must be between {lo:g} and {hi:g}, not {value!r}")
    return x


def parse_config(settings: dict[str, Any] | None) -> CriConfig:
    """Build a :class:`CriConfig` (keys case-insensitive); raises ConfigError naming the key."""
    lowered = {str(k).lower(): v for k, v in (settings or {}).items()}
    unknown = sorted(set(lowered) - {k.lower() for k in KEYS})
    if unknown:
        raise ConfigError(f"runtime cri: unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
    d = CriConfig()
    endpoint = str(lowered.get("endpoint") or d.endpoint)
    if endpoint.startswith("unix://"):
        endpoint = endpoint[len("unix://"):]
    for key, path in (("Endpoint", endpoint), ("LogRoot", str(lowered.get("logroot") or d.log_root)),
                      ("CgroupRoot", str(lowered.get("cgrouproot") or d.cgroup_root))):
        if not path.startswith("/"):
            raise ConfigError(f"runtime cri: {key} must be an absolute path, not {path!r}")
    prefix = str(lowered.get("prefix") or d.prefix).strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ConfigError(f"runtime cri: Prefix {prefix!r} is not a valid cgroup path")
    network = str(lowered.get("network") or d.network).lower()
    if network not in ("node", "pod"):
        raise ConfigError(f"runtime cri: Network must be node or pod, not {network!r}")
    namespace = str(lowered.get("namespace") or d.namespace)
    shell = str(lowered.get("shell") or d.shell)
    return CriConfig(
        endpoint=endpoint, timeout=_num(lowered.get("timeout", d.timeout), "Timeout", 0.1, 600),
        stop_timeout=int(_num(lowered.get("stoptimeout", d.stop_timeout), "StopTimeout", 0, 3600)),
        log_root=str(lowered.get("logroot") or d.log_root),
        cgroup_root=str(lowered.get("cgrouproot") or d.cgroup_root), prefix=prefix, namespace=namespace,
        network=network, shell=shell,
        poll_interval=_num(lowered.get("pollinterval", d.poll_interval), "PollInterval", 0.001, 1.0))
