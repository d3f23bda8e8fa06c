"""Packaging and plumbing: entry point, pluggy hook, settings, gres helpers, queue order."""

from __future__ import annotations

import random

import pytest
from crane_kernel import gres as gres_mod
from crane_kernel.sched_types import Plan, SchedJob, priority_order_key
from crane_sched_fifo import FifoScheduler
from crane_sched_fifo.order import order_jobs


def test_loads_by_name_through_stevedore_and_answers_the_hook(view_builder, mkjob):
    import pluggy
    from crane_kernel import hookspecs
    from stevedore import driver

    mgr = driver.DriverManager(namespace="crane.scheduler", name="fifo", invoke_on_load=True)
    assert isinstance(mgr.driver, FifoScheduler)
    pm = pluggy.PluginManager("crane")
    pm.add_hookspecs(hookspecs)
    pm.register(mgr.driver)
    pm.check_pending()
    plan = pm.hook.crane_schedule(view=view_builder([{"cpus": 2}], None, [mkjob(1), mkjob(2, cpus=4)]), now=0.0)
    assert isinstance(plan, Plan)
    assert plan.starts == [(1, [0])]
    assert mgr.driver.last_stats["tested"] == 2


def test_configure_validates_settings():
    s = FifoScheduler()
    s.crane_plugin_configure(settings={"probe_limit": 5, "batch_size": 10, "pause_gc": False, "use_numpy": False})
    assert (s.probe_limit, s.batch_size, s.pause_gc, s.use_numpy) == (5, 10, False, False)
    with pytest.raises(ValueError, match="unknown setting"):
        s.crane_plugin_configure(settings={"best_fit": True})


def test_gc_state_is_restored(view_builder, mkjob):
    import gc

    s = FifoScheduler()
    view = view_builder([{"cpus": 2}], None, [mkjob(1)])
    assert gc.isenabled()
    s.schedule(view, 0.0)
    assert gc.isenabled()
    gc.disable()
    try:
        s.schedule(view, 0.0)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_gres_helpers():
    free = {"gpu": 1, "gpu:a100": 2, "gpu:v100": 1, "fpga": 1}
    assert gres_mod.available(free, "gpu") == 4
    assert gres_mod.available(free, "gpu:a100") == 2
    assert gres_mod.available(free, "gp") == 0
    assert gres_mod.available(None, "gpu") == 0
    assert gres_mod.fits(free, {"gpu:a100": 2, "gpu": 2})
    assert not gres_mod.fits(free, {"gpu:a100": 2, "gpu": 3})
    gres_mod.take(free, {"gpu:v100": 1, "gpu": 2})
    assert free == {"gpu": 0, "gpu:a100": 1, "gpu:v100": 0, "fpga": 1}


def test_numpy_order_equals_tuple_sort():
    np = pytest.importorskip("numpy")
    rng = random.Random(3)
    jobs = [SchedJob(rng.randint(1, 10**6), "p", priority=float(rng.randint(0, 5)),
                     submit_time=float(rng.randint(0, 50))) for _ in range(2000)]
    assert order_jobs(jobs, np) == sorted(jobs, key=priority_order_key)
    assert order_jobs(jobs, None) == sorted(jobs, key=priority_order_key)
