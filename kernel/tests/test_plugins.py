"""The plugin manager: slots, load-time errors, settings and shutdown hooks, hook callers, runtime routing.

The misbehaving plugins below are real plugins: a module and a ``*.dist-info``
with ``entry_points.txt`` are written to a temporary directory put on
``sys.path``, so stevedore finds them exactly as it finds an installed
third-party package.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest
from crane_kernel import plugins
from crane_kernel.config import parse_config
from crane_kernel.errors import PluginError
from crane_kernel.runtime import StepHandle, StepSpec
from crane_kernel.sched_types import ClusterView, SchedJob, SchedNode, SchedPartition

MODULE = "crane_slot_test_plugins"

PLUGIN_SOURCE = '''
from crane_kernel import hookimpl
from crane_kernel.runtime import StepHandle
from crane_kernel.sched_types import Plan

EVENTS = []          # (plugin, what) in call order, for the tests to read


class GoodScheduler:
    """Starts nothing; records its settings and its shutdown."""

    def __init__(self):
        self.settings = None

    @hookimpl
    def crane_plugin_configure(self, settings):
        self.settings = settings
        EVENTS.append(("good", "configure"))

    @hookimpl
    def crane_plugin_shutdown(self):
        EVENTS.append(("good", "shutdown"))

    @hookimpl
    def crane_schedule(self, view, now):
        plan = Plan()
        plan.considered = len(view.pending)
        return plan


class SchedulerThatFilters:
    """A scheduler that also implements a job-filter hook: outside its slot."""

    @hookimpl
    def crane_schedule(self, view, now):
        return Plan()

    @hookimpl
    def crane_job_submit(self, job, identity):
        job["partition"] = "hijacked"


class NotAScheduler:
    """Registered as a scheduler but lacks crane_schedule."""

    @hookimpl
    def crane_plugin_configure(self, settings):
        pass


class TypoScheduler:
    @hookimpl
    def crane_schedule(self, view, now):
        return Plan()

    @hookimpl
    def crane_schedul(self, view, now):
        return Plan()


class ExtraArgScheduler:
    @hookimpl
    def crane_schedule(self, view, now, depth):
        return Plan()


class PickyFilter:
    """A job filter whose settings are validated; records its shutdown."""

    @hookimpl
    def crane_plugin_configure(self, settings):
        if settings.get("Depth", 1) <= 0:
            raise ValueError("Depth must be positive")
        EVENTS.append(("picky", "configure"))

    @hookimpl
    def crane_plugin_shutdown(self):
        EVENTS.append(("picky", "shutdown"))

    @hookimpl
    def crane_job_submit(self, job, identity):
        job.setdefault("tags", []).append("picky")


class BareFilter:
    """No settings hook at all."""

    @hookimpl
    def crane_job_submit(self, job, identity):
        job.setdefault("tags", []).append("bare")


class FailingShutdown:
    @hookimpl
    def crane_job_submit(self, job, identity):
        pass

    @hookimpl
    def crane_plugin_shutdown(self):
        EVENTS.append(("failing", "shutdown"))
        raise RuntimeError("cannot close")


class _Runtime:
    label = ""
    claims = ""

    @hookimpl
    def crane_step_launch(self, step):
        EVENTS.append((self.label, "launch"))
        if self.claims and step.name != self.claims:
            return None
        return StepHandle(runtime="whatever-the-plugin-says", pid=4242, spec=step)

    @hookimpl
    def crane_step_wait(self, handle, timeout):
        EVENTS.append((self.label, "wait", handle.runtime))
        return 7 if self.label == "A" else 9

    @hookimpl
    def crane_step_signal(self, handle, signum, all_processes):
        EVENTS.append((self.label, "signal", handle.runtime))
        return True

    @hookimpl
    def crane_step_cleanup(self, handle):
        EVENTS.append((self.label, "cleanup", handle.runtime))
        return True


class RuntimeA(_Runtime):
    """Claims only steps named "a"."""

    label = "A"
    claims = "a"


class RuntimeB(_Runtime):
    """Claims every step; can also suspend."""

    label = "B"

    @hookimpl
    def crane_step_suspend(self, handle):
        EVENTS.append((self.label, "suspend", handle.runtime))
        return True
'''

ENTRY_POINTS = f"""
[crane.scheduler]
good = {MODULE}:GoodScheduler
filters = {MODULE}:SchedulerThatFilters
notsched = {MODULE}:NotAScheduler
typo = {MODULE}:TypoScheduler
extraarg = {MODULE}:ExtraArgScheduler
broken = no_such_module_xyz:Thing

[crane.job_filter]
picky = {MODULE}:PickyFilter
bare = {MODULE}:BareFilter
failing = {MODULE}:FailingShutdown

[crane.runtime]
ra = {MODULE}:RuntimeA
rb = {MODULE}:RuntimeB
"""


def _clear_caches() -> None:
    from stevedore import ExtensionManager

    importlib.invalidate_caches()
    ExtensionManager.ENTRY_POINT_CACHE.clear()  # stevedore caches scans per namespace in-process


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A directory holding the test distribution, on sys.path; yields the plugin module (for EVENTS)."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    dist = tmp_path / "crane_slot_test_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: crane-slot-test-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    _clear_caches()
    module = importlib.import_module(MODULE)
    module.EVENTS.clear()
    yield module
    sys.modules.pop(MODULE, None)
    monkeypatch.undo()
    _clear_caches()


def _view() -> ClusterView:
    nodes = [SchedNode("n1", 0, 4, 1 << 30, partitions=("p",))]
    return ClusterView(nodes, {"p": SchedPartition("p", (0,))}, [SchedJob(1, "p", 1, 2, 1 << 20)])


def _error(selection: dict, **kwargs) -> str:
    with pytest.raises(PluginError) as err:
        plugins.load_slots(selection, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def _step(name: str = "job") -> StepSpec:
    return StepSpec(job_id=5, step_id=1, node="n1", name=name, uid=0, gid=0, user="root", cwd="/",
                    script_path="/bin/true", interpreter=[], env={}, stdout="", stderr="")


# -- the bundled plugins ----------------------------------------------------------------------------------------------

def test_bundled_plugins_are_installed_as_entry_points():
    assert "fifo" in plugins.installed("scheduler")
    assert "cgroup" in plugins.installed("runtime")
    assert "rbac" in plugins.installed("auth")


def test_every_installed_plugin_fits_its_slot(tmp_path):
    """Each bundled entry point loads into its own slot (and so implements only that slot's hooks)."""
    # plugins that would open a port or reach a Redis with their defaults are kept to themselves; the job
    # history goes to a store of the test's own
    private = {"prometheus": {"ListenPort": 0, "PollInterval": 0},
               "mail": {"StartWorker": False, "RedisUrl": "redis://127.0.0.1:1/0"},
               "sql": {"Url": f"sqlite://{tmp_path}/acct/acct.db"}}
    for slot in plugins.SLOTS.values():
        for name in plugins.installed(slot.name):
            selection = {slot.key: [name], "Settings": {name: private[name]} if name in private else {}}
            loaded = plugins.load_slots(selection, defaults={"auth": {"KeyFile": ""}})
            assert loaded.names(slot.name) == [name]
            loaded.shutdown()


def test_registered_plugin_answers_hooks():
    loaded = plugins.load_slots({"Scheduler": "fifo"})
    plan = loaded.hook.crane_schedule(view=_view(), now=0.0)
    assert plan.starts == [(1, [0])]
    assert loaded.pm.hook.crane_schedule(view=_view(), now=0.0).starts == [(1, [0])]


def test_one_manager_serves_every_slot_of_the_controller():
    loaded = plugins.load_slots({"Scheduler": "easy", "Priority": "multifactor", "Auth": ["rbac"], "JobFilters": []},
                                defaults={"auth": {"KeyFile": "", "Admins": ["root"]}})
    assert loaded.names("scheduler") == ["easy"] and loaded.names("priority") == ["multifactor"]
    assert len(loaded.pm.get_plugins()) == 3
    assert loaded.slots == ["scheduler", "priority", "auth", "job_filter"] and loaded.steps is None


# -- load-time errors -------------------------------------------------------------------------------------------------

def test_unknown_plugin_names_the_installed_ones():
    msg = _error({"Scheduler": "nosuch"})
    assert "no scheduler plugin named 'nosuch'" in msg and "fifo" in msg


def test_unknown_plugin_in_a_list_slot():
    msg = _error({"Auth": ["rbac", "kerberos"]}, defaults={"auth": {"KeyFile": ""}})
    assert "no auth plugin named 'kerberos' is installed (installed: " in msg and "rbac" in msg


def test_broken_plugin_is_a_clear_error(site):
    assert "broken" in plugins.installed("scheduler")
    msg = _error({"Scheduler": "broken"})
    assert "scheduler plugin 'broken' failed to load: ModuleNotFoundError" in msg


def test_hook_outside_the_slot_names_slot_plugin_and_hook(site):
    msg = _error({"Scheduler": "filters"})
    assert msg == ("scheduler plugin 'filters' implements crane_job_submit, which is not a scheduler hook "
                   "(scheduler hooks: crane_schedule)")


def test_scheduler_without_crane_schedule(site):
    msg = _error({"Scheduler": "notsched"})
    assert msg == "scheduler plugin 'notsched' does not implement crane_schedule, which every scheduler plugin must"


def test_a_scheduler_filed_as_a_job_filter_is_refused(site):
    """The very case of the issue: a plugin in the job_filter slot cannot take over crane_schedule."""
    msg = _error({"JobFilters": ["good"]})
    assert "no job_filter plugin named 'good'" in msg  # not even visible: entry points are per slot
    objects = {"job_filter": {"sneaky": site.SchedulerThatFilters()}}
    with pytest.raises(PluginError, match="job_filter plugin 'sneaky' implements crane_schedule, which is not a "
                                          "job_filter hook"):
        plugins.from_objects(objects)


def test_unknown_hook_and_bad_signature(site):
    assert _error({"Scheduler": "typo"}) == ("scheduler plugin 'typo' implements crane_schedul, "
                                             "which is not a cranesched hook")
    msg = _error({"Scheduler": "extraarg"})
    assert msg.startswith("scheduler plugin 'extraarg' does not fit the hook specifications:") and "depth" in msg


def test_slot_counts():
    assert "the scheduler slot takes exactly one plugin (Plugins.Scheduler), got: none" in _error({"Scheduler": None})
    assert "got: fifo, easy" in _error({"Scheduler": ["fifo", "easy"]})
    assert "at most one plugin" in _error({"Priority": ["multifactor", "other"]})
    assert "listed twice" in _error({"Runtime": ["cgroup", "cgroup"]})
    assert "unknown plugin slot(s) gpus" in _error({}, slots=["gpus"])


def test_settings_rejected_is_one_line(site):
    msg = _error({"Scheduler": "good", "JobFilters": ["picky"], "Settings": {"picky": {"Depth": 0}}})
    assert msg == "job_filter plugin 'picky' rejected its settings: Depth must be positive"
    msg = _error({"Scheduler": "fifo", "Settings": {"fifo": {"best_fit": True}}})
    assert msg.startswith("scheduler plugin 'fifo' rejected its settings: fifo scheduler: unknown setting(s)")


def test_settings_for_a_plugin_without_the_settings_hook(site):
    msg = _error({"JobFilters": ["bare"], "Settings": {"bare": {"Colour": "blue"}}})
    assert msg == ("job_filter plugin 'bare' takes no settings (it does not implement crane_plugin_configure), "
                   "but Plugins.Settings.bare gives some")
    assert plugins.load_slots({"JobFilters": ["bare"]}, defaults={"job_filter": {"x": 1}}).names("job_filter")


# -- settings and shutdown hooks --------------------------------------------------------------------------------------

def test_settings_go_to_each_plugin_alone_merged_over_slot_defaults(site):
    loaded = plugins.load_slots({"Scheduler": "good", "JobFilters": ["picky", "bare"],
                                 "Settings": {"good": {"Depth": 3}, "picky": {"Depth": 2}}},
                                defaults={"scheduler": {"Depth": 1, "Window": 60}})
    good = loaded.plugins("scheduler")[0]
    assert good.settings == {"Depth": 3, "Window": 60}
    assert site.EVENTS == [("good", "configure"), ("picky", "configure")]  # once each, not broadcast
    with pytest.raises(PluginError, match="called per plugin by the kernel"):
        loaded.hook.crane_plugin_configure(settings={})


def test_shutdown_is_called_on_every_plugin_once_last_loaded_first(site):
    loaded = plugins.load_slots({"Scheduler": "good", "JobFilters": ["failing", "picky"]})
    site.EVENTS.clear()
    loaded.shutdown()
    assert site.EVENTS == [("picky", "shutdown"), ("failing", "shutdown"), ("good", "shutdown")]
    loaded.shutdown()
    assert len(site.EVENTS) == 3


def test_a_failed_load_shuts_down_what_was_already_configured(site):
    _error({"Scheduler": "good", "JobFilters": ["picky", "bare"], "Settings": {"bare": {"Colour": 1}}})
    assert site.EVENTS == [("good", "configure"), ("picky", "configure"), ("picky", "shutdown"),
                           ("good", "shutdown")]
    site.EVENTS.clear()
    _error({"Scheduler": "good", "JobFilters": ["nosuch"]})      # a later slot's plugin is not installed
    assert site.EVENTS == [("good", "configure"), ("good", "shutdown")]


# -- hook callers -----------------------------------------------------------------------------------------------------

def test_a_single_plain_implementation_is_called_directly(site):
    loaded = plugins.load_slots({"Scheduler": "good", "JobFilters": ["bare"]})
    good = loaded.plugins("scheduler")[0]
    assert loaded.hook.crane_schedule == good.crane_schedule       # the bound method itself
    assert loaded.caller("crane_schedule") is loaded.hook.crane_schedule
    assert loaded.hook.crane_schedule(view=_view(), now=0.0).considered == 1
    job: dict = {}
    assert loaded.hook.crane_job_submit(job=job, identity=None) == [] and job["tags"] == ["bare"]
    assert loaded.hook.crane_job_priorities(jobs=[], view=_view(), now=0.0) is None   # nobody: pluggy's answer
    assert loaded.hook.crane_job_finished(job=None, start_time=0, end_time=1) == []
    assert not loaded.implemented("crane_job_priorities") and loaded.implemented("crane_schedule")
    with pytest.raises(AttributeError, match="no cranesched hook named 'crane_schedul'"):
        loaded.hook.crane_schedul  # noqa: B018 - the attribute access is the test


def test_several_implementations_go_through_pluggy_in_configured_order(site):
    loaded = plugins.load_slots({"JobFilters": ["picky", "bare"]})
    assert isinstance(loaded.hook.crane_job_submit, pluggy.HookCaller)
    job: dict = {}
    loaded.hook.crane_job_submit(job=job, identity=None, cluster=None)
    assert job["tags"] == ["picky", "bare"]


def test_subset_arguments_are_passed_by_name():
    from crane_kernel import hookimpl

    class NowOnly:
        @hookimpl
        def crane_job_priorities(self, now, jobs):
            return [now] * len(jobs)

    loaded = plugins.from_objects({"priority": {"now_only": NowOnly()}})
    assert loaded.hook.crane_job_priorities(jobs=[1, 2], view=None, now=5.0) == [5.0, 5.0]
    assert loaded.pm.hook.crane_job_priorities(jobs=[1, 2], view=None, now=5.0) == [5.0, 5.0]


# -- runtime hooks go to the runtime that launched the step ------------------------------------------------------------

def test_runtime_hooks_are_routed_to_the_plugin_that_claimed_the_step(site):
    loaded = plugins.load_slots({"Runtime": ["ra", "rb"]}, slots=["runtime"])
    steps = loaded.steps
    assert steps is not None and loaded.hook.crane_step_wait == steps.crane_step_wait
    handle = steps.crane_step_launch(step=_step("b"))
    assert handle.runtime == "rb"                            # stamped with the configured name
    assert site.EVENTS == [("A", "launch"), ("B", "launch")]  # configured order: A asked first
    site.EVENTS.clear()
    assert steps.crane_step_wait(handle=handle, timeout=0) == 9
    assert steps.crane_step_signal(handle=handle, signum=15, all_processes=True) is True
    assert steps.crane_step_suspend(handle=handle) is True
    assert steps.crane_step_usage(handle=handle) is None      # B does not implement it: "not handled"
    assert loaded.hook.crane_step_cleanup(handle=handle) is True
    assert site.EVENTS == [("B", "wait", "rb"), ("B", "signal", "rb"), ("B", "suspend", "rb"),
                           ("B", "cleanup", "rb")]           # A never saw B's handle
    site.EVENTS.clear()
    handle_a = steps.crane_step_launch(step=_step("a"))
    assert handle_a.runtime == "ra" and site.EVENTS == [("A", "launch")]
    assert steps.crane_step_wait(handle=handle_a, timeout=0) == 7
    assert steps.crane_step_suspend(handle=handle_a) is None  # A cannot suspend; B is not asked


def test_a_handle_of_a_runtime_not_loaded_is_a_clear_error(site):
    loaded = plugins.load_slots({"Runtime": ["ra"]})
    with pytest.raises(PluginError, match="belongs to runtime 'zz', which is not loaded \\(loaded: ra\\)"):
        loaded.steps.crane_step_wait(handle=StepHandle(runtime="zz", pid=1, spec=_step()), timeout=0)
    assert plugins.load_slots({"Runtime": []}).steps.crane_step_launch(step=_step()) is None


def test_a_runtime_must_implement_the_hooks_a_step_needs():
    from crane_kernel import hookimpl

    class LaunchOnly:
        @hookimpl
        def crane_step_launch(self, step):
            return None

    with pytest.raises(PluginError, match="runtime plugin 'half' does not implement crane_step_cleanup"):
        plugins.from_objects({"runtime": {"half": LaunchOnly()}})


# -- configuration ----------------------------------------------------------------------------------------------------

def _cfg(extra: str = "") -> object:
    import yaml

    raw = yaml.safe_load("Nodes: [{name: a, cpu: 1, memory: 1G}]\nPartitions: [{name: p, nodes: a}]\n" + extra)
    return parse_config(raw)


def test_legacy_cgroup_section_is_the_cgroup_plugins_settings():
    sel = plugins.config_selection(_cfg("Cgroup: {Prefix: old, PidsMax: 12}\n"
                                        "Plugins: {Settings: {cgroup: {prefix: new}}}\n"))
    assert sel["Settings"]["cgroup"] == {"PidsMax": 12, "prefix": "new"}
    assert plugins.config_selection(_cfg())["Settings"] == {}
    loaded = plugins.load_slots(plugins.config_selection(_cfg("Cgroup: {PidsMax: 3, Root: /nonexistent}\n")),
                                slots=["runtime"])
    assert loaded.plugins("runtime")[0].config.pids_max == 3
    msg = _error(plugins.config_selection(_cfg("Cgroup: {PidsMax: -2}\n")), slots=["runtime"])
    assert msg.startswith("runtime plugin 'cgroup' rejected its settings: runtime cgroup: PidsMax")


# -- the daemons ------------------------------------------------------------------------------------------------------

def _run_ctld(tmp_path: Path, plugins_yaml: str, pythonpath: str = "") -> subprocess.CompletedProcess:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"CraneBaseDir: {tmp_path}/base\nRedisUrl: redis://127.0.0.1:1/0\n"
                   "Nodes: [{name: a, cpu: 1, memory: 1G}]\nPartitions: [{name: p, nodes: a}]\n"
                   f"Plugins: {plugins_yaml}\n")
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "crane_kernel.ctld.main", "-C", str(cfg)],
                          capture_output=True, text=True, timeout=60, env=env)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("cranectld: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_daemon_with_unknown_plugin_fails_with_one_line(tmp_path):
    line = _one_line_error(_run_ctld(tmp_path, "{Scheduler: nosuch}"))
    assert "no scheduler plugin named 'nosuch'" in line and "fifo" in line


def test_daemon_with_a_plugin_outside_its_slot_fails_with_one_line(tmp_path, site):
    line = _one_line_error(_run_ctld(tmp_path, "{Scheduler: filters}", pythonpath=str(Path(site.__file__).parent)))
    assert line == ("cranectld: scheduler plugin 'filters' implements crane_job_submit, which is not a scheduler "
                    "hook (scheduler hooks: crane_schedule)")


def test_daemon_with_rejected_settings_fails_with_one_line(tmp_path):
    line = _one_line_error(_run_ctld(tmp_path, "{Scheduler: fifo, Settings: {fifo: {probe_limit: 1, colour: 2}}}"))
    assert line.startswith("cranectld: scheduler plugin 'fifo' rejected its settings: ") and "colour" in line
