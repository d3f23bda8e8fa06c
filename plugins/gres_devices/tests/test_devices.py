"""The ``devices`` gres plugin: first free device files, vendor variables, loaded by name."""

from __future__ import annotations

import pytest
from crane_gres_devices import DevicesGres, device_environment, first_free
from crane_kernel import plugins
from crane_kernel.gres import GresNode
from crane_kernel.sched_types import SchedJob

NODE = GresNode("gpu1", {"gpu:a100": ["/dev/a0", "/dev/a1"], "gpu:h100": ["/dev/h0", "/dev/h1"],
                         "npu": ["/dev/n0"]},
                {"/dev/a0": ("nvidia", 0), "/dev/a1": ("nvidia", 1), "/dev/h0": ("nvidia", 2),
                 "/dev/h1": ("nvidia", 3), "/dev/n0": ("ascend", 0)})
ALL = list(NODE.all_devices())


def test_typed_untyped_and_busy_devices():
    assert first_free({"gpu:h100": 1}, NODE, ALL) == ["/dev/h0"]
    assert first_free({"gpu": 3}, NODE, ALL) == ["/dev/a0", "/dev/a1", "/dev/h0"]       # configuration order
    assert first_free({"gpu": 2}, NODE, ["/dev/a1", "/dev/h1", "/dev/n0"]) == ["/dev/a1", "/dev/h1"]
    assert first_free({"gpu:a100": 1, "gpu": 2}, NODE, ALL) == ["/dev/a0", "/dev/a1", "/dev/h0"]
    assert first_free({"gpu:a100": 1}, NODE, ["/dev/h0"]) == []                       # nothing of that type free
    assert first_free({"fpga": 1}, NODE, ALL) == []


def test_vendor_variables_by_injector():
    assert device_environment(["/dev/a1", "/dev/h0"], NODE) == {"CUDA_VISIBLE_DEVICES": "1,2",
                                                                  "NVIDIA_VISIBLE_DEVICES": "1,2"}
    assert device_environment(["/dev/n0"], NODE) == {"ASCEND_RT_VISIBLE_DEVICES": "0"}
    other = GresNode("x", {"gpu": ["/dev/r0"]}, {"/dev/r0": ("hip", 0)})
    assert device_environment(["/dev/r0"], other) == {"HIP_VISIBLE_DEVICES": "0", "ROCR_VISIBLE_DEVICES": "0"}
    assert device_environment(["/dev/unknown"], NODE) == {}


def test_loaded_by_name_it_answers_the_hooks():
    pm = plugins.load_slots({"Gres": ["devices"]})
    job = SchedJob(1, "gpu", gres_per_node={"gpu:a100": 2})
    assert pm.hook.crane_gres_select(job=job, node=NODE, free_devices=ALL) == ["/dev/a0", "/dev/a1"]
    assert pm.hook.crane_gres_environment(devices=["/dev/a0"], node=NODE) == [
        {"CUDA_VISIBLE_DEVICES": "0", "NVIDIA_VISIBLE_DEVICES": "0"}]


def test_settings_are_refused():
    with pytest.raises(plugins.PluginError, match="devices"):
        plugins.from_objects({"gres": {"devices": DevicesGres()}}, settings={"devices": {"Order": "last"}})
