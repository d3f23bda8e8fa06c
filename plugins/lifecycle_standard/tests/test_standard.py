"""The ``standard`` lifecycle plugin: CraneSched's requeue rule, configured from CraneCtld keys."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from crane_kernel.config import parse_config
from crane_kernel.ctld.main import build_plugin_manager
from crane_lifecycle_standard import StandardLifecycle


def job(**kw):
    base = {"requeue": False, "no_requeue": False, "cancel_requested": False, "epoch": 1}
    base.update(kw)
    return SimpleNamespace(**base)


def plugin(**settings):
    p = StandardLifecycle()
    p.crane_plugin_configure(settings)
    return p


def test_the_rule():
    off, on = plugin(), plugin(JobRequeue=True, MaxRequeueCount=2)
    assert off.crane_job_requeue(job=job(), reason="node down") is False
    assert off.crane_job_requeue(job=job(requeue=True), reason="") is True             # --requeue
    assert on.crane_job_requeue(job=job(), reason="") is True
    assert on.crane_job_requeue(job=job(no_requeue=True), reason="") is False          # --no-requeue
    assert on.crane_job_requeue(job=job(cancel_requested=True), reason="") is False
    assert on.crane_job_requeue(job=job(epoch=2), reason="") is True
    assert on.crane_job_requeue(job=job(epoch=3), reason="") is False                  # launched too often


@pytest.mark.parametrize(("bad", "named"), [({"JobRequeue": "yes"}, "JobRequeue"),
                                           ({"MaxRequeueCount": -1}, "MaxRequeueCount"),
                                           ({"MaxRequeueCount": True}, "MaxRequeueCount"),
                                           ({"Requeue": True}, "unknown setting")])
def test_bad_settings_are_named(bad, named):
    with pytest.raises(ValueError, match=named):
        plugin(**bad)


def test_the_controller_passes_the_crane_ctld_keys(tmp_path):
    base = {"CraneBaseDir": str(tmp_path), "Nodes": [{"name": "a", "cpu": 1, "memory": "1G"}],
            "Partitions": [{"name": "p", "nodes": "a"}]}
    def manager(**extra):
        cfg = parse_config({**base, **extra})
        return build_plugin_manager(cfg)

    assert manager().hook.crane_job_requeue(job=job(), reason="") is False
    pm = manager(CraneCtld={"JobRequeue": True, "MaxRequeueCount": 1})
    assert pm.hook.crane_job_requeue(job=job(epoch=1), reason="") is True
    assert pm.hook.crane_job_requeue(job=job(epoch=2), reason="") is False
    pm = manager(CraneCtld={"JobRequeue": True}, Plugins={"Settings": {"standard": {"JobRequeue": False}}})
    assert pm.hook.crane_job_requeue(job=job(), reason="") is False                    # Plugins.Settings wins
