"""The ``devices`` gres plugin: which device files a GRES job gets, and the variables naming them.

Device choice (``crane_gres_select``): for each requested gres key, the node's first free device
files of that key in configuration order; an untyped request (``gpu:2``) takes from the node's
``gpu`` types in configuration order.

Variables (``crane_gres_environment``), by the ``EnvInjector`` configured for the devices' gres
(the index of a device is its position among the node's devices of the same gres name):

=========  ===============================================
nvidia     ``CUDA_VISIBLE_DEVICES``, ``NVIDIA_VISIBLE_DEVICES``
hip        ``HIP_VISIBLE_DEVICES``, ``ROCR_VISIBLE_DEVICES``
ascend     ``ASCEND_RT_VISIBLE_DEVICES``
=========  ===============================================

Other injector names set nothing. No settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from crane_kernel import hookimpl
from crane_kernel.gres import GresNode

__all__ = ["INJECTOR_VARS", "DevicesGres", "device_environment", "first_free"]

INJECTOR_VARS: dict[str, tuple[str, ...]] = {
    "nvidia": ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"),
    "hip": ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"),
    "ascend": ("ASCEND_RT_VISIBLE_DEVICES",),
}


def first_free(request: Mapping[str, int], node: GresNode, free_devices: Sequence[str]) -> list[str]:
    """For each requested key, the first free device files of the node that serve it (configuration order)."""
    free = set(free_devices)
    picked: list[str] = []
    for key, want in request.items():
        for k in node.keys_for(key):
            for dev in node.devices.get(k, ()):
                if want <= 0:
                    break
                if dev in free and dev not in picked:
                    picked.append(dev)
                    want -= 1
    return picked


def device_environment(devices: Sequence[str], node: GresNode) -> dict[str, str]:
    """The vendor ``*_VISIBLE_DEVICES`` variables for ``devices`` (indices among the node's devices of a kind)."""
    by_injector: dict[str, list[int]] = {}
    for dev in devices:
        injector, index = node.device_env.get(dev, ("", -1))
        if injector in INJECTOR_VARS:
            by_injector.setdefault(injector, []).append(index)
    env: dict[str, str] = {}
    for injector, indices in by_injector.items():
        for var in INJECTOR_VARS[injector]:
            env[var] = ",".join(str(i) for i in sorted(indices))
    return env


class DevicesGres:
    """Entry point ``crane.gres: devices``."""

    @hookimpl
    def crane_gres_select(self, job: Any, node: GresNode, free_devices: Sequence[str]) -> list[str]:
        """The first free device files for the job's request on this node."""
        return first_free(job.gres_per_node or {}, node, free_devices)

    @hookimpl
    def crane_gres_environment(self, devices: Sequence[str], node: GresNode) -> dict[str, str]:
        """``CUDA_VISIBLE_DEVICES`` and the like, by the devices' configured injector."""
        return device_environment(devices, node)
