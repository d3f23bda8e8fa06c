"""The prometheus event plugin: its exposition over a real HTTP scrape, fed by typed events and replies."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from crane_common.proto import crane_pb2 as pb
from crane_common.states import JobState
from crane_kernel.events import JobEvent, JobRecord, NodeEvent
from crane_kernel.plugins import load_slots
from crane_metrics_prometheus import METRICS, PrometheusMetrics, exposed_names
from crane_metrics_prometheus.snapshot import Snapshot, bus_groups, fill_from_controller, plugind_status
from prometheus_client.parser import text_string_to_metric_families

DOCS = Path(__file__).resolve().parents[3] / "docs"


def scrape(port: int) -> dict[str, list]:
    """GET /metrics; sample name -> [(labels, value)]."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(samples: dict, name: str, **labels: str) -> float | None:
    for lab, v in samples.get(name, []):
        if all(lab.get(k) == want for k, want in labels.items()):
            return v
    return None


def job_event(kind: str, job_id: int, partition: str = "debug", state: str = "Pending", eid: str = "") -> JobEvent:
    kw = {"id": eid} if eid else {}
    return JobEvent(kind=kind, job_id=job_id, job=JobRecord(job_id=job_id, partition=partition, state=state), **kw)


@pytest.fixture
def plugin():
    p = PrometheusMetrics()
    p.crane_plugin_configure({"ListenPort": 0, "PollInterval": 0})
    yield p
    p.crane_plugin_shutdown()


def test_events_counted_once_per_id_over_http(plugin):
    events = [job_event("job.submitted", 1, eid="a1"), job_event("job.submitted", 2, "gpu", eid="a2"),
              job_event("job.submitted", 3, eid="a3"),
              job_event("job.ended", 1, state="Completed", eid="b1"),
              job_event("job.ended", 3, state="Failed", eid="b3"),
              NodeEvent(kind="node.down", node="cn01", id="c1")]
    for ev in events:
        plugin.crane_event(event=ev)
    for ev in events[:2]:  # redelivered (at-least-once): not counted again
        plugin.crane_event(event=ev)
    m = scrape(plugin.port)
    assert value(m, "crane_jobs_submitted_total", partition="debug") == 2
    assert value(m, "crane_jobs_submitted_total", partition="gpu") == 1
    assert value(m, "crane_jobs_ended_total", state="Completed", partition="debug") == 1
    assert value(m, "crane_jobs_ended_total", state="Failed", partition="debug") == 1
    assert value(m, "crane_events_total", kind="node.down") == 1
    assert value(m, "crane_events_total", kind="job.submitted") == 3
    assert value(m, "crane_up") == 0  # no poll yet
    assert set(m) <= exposed_names()


def test_gauges_from_controller_replies_over_http(plugin):
    server = pb.ServerInfoReply(version="0.1.0", cluster_name="c1", scheduler="fifo", cycles=7, last_cycle_s=0.003,
                                max_cycle_s=0.2, last_cycle_considered=4, cycle_bucket_bounds=[0.01, 0.1, 1.0],
                                cycle_bucket_counts=[5, 1, 1, 0], cycle_seconds_sum=0.35)
    nodes = [pb.CranedInfo(name="cn01", cpu_total=4, cpu_alloc=4, mem_total=4 << 30, mem_alloc=1 << 30,
                           resource_state="alloc", control_state="none", gres_total="gpu:a100:2",
                           gres_alloc="gpu:a100:1"),
             pb.CranedInfo(name="cn02", cpu_total=4, cpu_alloc=1, mem_total=4 << 30, mem_alloc=0,
                           resource_state="mix", control_state="drain"),
             pb.CranedInfo(name="cn03", cpu_total=4, cpu_alloc=0, mem_total=4 << 30, resource_state="down",
                           control_state="drain"),
             pb.CranedInfo(name="cn04", cpu_total=4, cpu_alloc=0, mem_total=4 << 30, resource_state="idle")]
    jobs = [pb.JobInfo(job_id=1, partition="debug", status=JobState.Running),
            pb.JobInfo(job_id=2, partition="debug", status=JobState.Pending, pending_reason="Resource"),
            pb.JobInfo(job_id=3, partition="debug", status=JobState.Pending, pending_reason="Resource"),
            pb.JobInfo(job_id=4, partition="debug", status=JobState.Pending, pending_reason="Held")]
    snap = Snapshot(up=True, poll_time=1.0, poll_seconds=0.01)
    fill_from_controller(snap, server, nodes, jobs, ["debug", "gpu"])
    snap.bus_groups = bus_groups([{"name": b"prometheus", "consumers": 1, "pending": 2, "lag": 5},
                                  {"name": "acct_sql", "consumers": 0, "pending": 0, "lag": None}])
    snap.stream_length = 12
    snap.plugind = plugind_status({b"acct_sql": json.dumps({"handled": 10, "lag": 3, "failures": 2,
                                                            "dead_letters": 1, "state": "ok"}),
                                   b"mail.handled": b"4", "mail:dead": "0", "junk": "x"})
    plugin.collector.set_snapshot(snap)
    m = scrape(plugin.port)
    assert value(m, "crane_up") == 1
    assert value(m, "crane_controller_info", cluster="c1", scheduler="fifo") == 1
    assert value(m, "crane_jobs", state="Running", partition="debug") == 1
    assert value(m, "crane_jobs", state="Pending", partition="debug") == 3
    assert value(m, "crane_jobs", state="Pending", partition="gpu") == 0  # every partition, zero-filled
    assert value(m, "crane_jobs_pending", partition="debug", reason="Resource") == 2
    assert value(m, "crane_jobs_pending", partition="debug", reason="Held") == 1
    assert {s: value(m, "crane_nodes", state=s) for s in ("idle", "mix", "alloc", "down", "drain")} == \
        {"idle": 1, "mix": 0, "alloc": 1, "down": 1, "drain": 1}
    assert value(m, "crane_cpus", state="allocated") == 5
    assert value(m, "crane_cpus", state="idle") == 4  # cn04 only
    assert value(m, "crane_cpus", state="other") == 7  # free on the drained cn02 and the down cn03
    assert value(m, "crane_memory_bytes", state="allocated") == 1 << 30
    assert value(m, "crane_memory_bytes", state="idle") == (3 << 30) + (4 << 30)
    assert value(m, "crane_gres", gres="gpu:a100", state="allocated") == 1
    assert value(m, "crane_gres", gres="gpu:a100", state="idle") == 1
    assert value(m, "crane_scheduler_cycles_total") == 7
    assert value(m, "crane_scheduler_cycle_seconds_bucket", le="0.01") == 5
    assert value(m, "crane_scheduler_cycle_seconds_bucket", le="0.1") == 6
    assert value(m, "crane_scheduler_cycle_seconds_bucket", le="+Inf") == 7
    assert value(m, "crane_scheduler_cycle_seconds_count") == 7
    assert value(m, "crane_scheduler_cycle_seconds_sum") == pytest.approx(0.35)
    assert value(m, "crane_bus_group_lag", group="prometheus") == 5
    assert value(m, "crane_bus_group_lag", group="acct_sql") is None  # Redis could not tell
    assert value(m, "crane_bus_group_pending", group="prometheus") == 2
    assert value(m, "crane_bus_events_stream_length") == 12
    assert value(m, "crane_plugind_lag", plugin="acct_sql") == 3
    assert value(m, "crane_plugind_failures_total", plugin="acct_sql") == 2
    assert value(m, "crane_plugind_dead_letters_total", plugin="acct_sql") == 1
    assert value(m, "crane_plugind_handled_total", plugin="acct_sql") == 10
    assert value(m, "crane_plugind_handled_total", plugin="mail") == 4
    assert value(m, "crane_plugind_dead_letters_total", plugin="mail") == 0
    assert set(m) <= exposed_names()


def test_loads_through_the_events_slot_and_stops_listening():
    plugins = load_slots({"Events": ["prometheus"], "Settings": {"prometheus": {"ListenPort": 0,
                                                                                "PollInterval": 0}}},
                         slots=["events"])
    (obj,) = plugins.plugins("events")
    port = obj.port
    assert "crane_up" in scrape(port)
    plugins.shutdown()
    with pytest.raises(OSError):
        scrape(port)


@pytest.mark.parametrize(("settings", "message"), [
    ({"ListenPort": 70000}, "ListenPort must be 0-65535"),
    ({"PollInterval": -1}, "PollInterval must be"),
    ({"Bogus": 1}, "unknown setting 'Bogus'"),
    ({"TlsCertFile": "x"}, "TlsCertFile and TlsKeyFile go together"),
])
def test_rejects_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        PrometheusMetrics().crane_plugin_configure({"PollInterval": 0, **settings})


def test_docs_list_every_metric():
    text = (DOCS / "monitoring.md").read_text()
    for name, (kind, _labels, _doc) in METRICS.items():
        shown = f"{name}_total" if kind == "counter" else name
        assert f"`{shown}`" in text, f"{shown} is not documented in docs/monitoring.md"


def full_snapshot() -> Snapshot:
    """A snapshot with every gauge set (as a poll of a busy cluster with cplugind would give)."""
    snap = Snapshot(up=True, poll_time=1.0, poll_seconds=0.01)
    server = pb.ServerInfoReply(version="0.1.0", cluster_name="c1", scheduler="fifo", cycles=1,
                                cycle_bucket_bounds=[0.1], cycle_bucket_counts=[1, 0], cycle_seconds_sum=0.01)
    nodes = [pb.CranedInfo(name="cn01", cpu_total=4, cpu_alloc=1, mem_total=1 << 30, resource_state="mix",
                           gres_total="gpu:1", gres_alloc="gpu:0")]
    jobs = [pb.JobInfo(job_id=1, partition="debug", status=JobState.Pending, pending_reason="Priority")]
    fill_from_controller(snap, server, nodes, jobs, ["debug"])
    snap.stream_length = 1
    snap.bus_groups = bus_groups([{"name": "prometheus", "consumers": 1, "pending": 0, "lag": 0}])
    snap.plugind = plugind_status({"prometheus": json.dumps({"handled": 1, "lag": 0, "failures": 0,
                                                             "dead_letters": 0})})
    return snap


def test_grafana_dashboard_queries_only_exposed_metrics(plugin):
    import re

    dash = json.loads((DOCS / "grafana" / "cranesched.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    queried = {n for e in exprs for n in re.findall(r"\bcrane_[a-z_]+\b", e)}
    plugin.collector.set_snapshot(full_snapshot())
    plugin.crane_event(event=job_event("job.submitted", 1))
    plugin.crane_event(event=job_event("job.ended", 1, state="Completed"))
    exposed = set(scrape(plugin.port))
    missing = sorted(queried - exposed)
    assert not missing, f"the dashboard queries metrics the plugin does not expose: {missing}"
    titles = {p["title"] for p in dash["panels"]}
    assert {"Jobs by state", "Nodes by state", "Cycle time quantiles", "Consumer group lag"} <= titles


def test_missing_default_config_keeps_serving(monkeypatch, tmp_path):
    import time

    monkeypatch.setenv("CRANE_CONFIG", str(tmp_path / "absent.yaml"))
    p = PrometheusMetrics()
    p.crane_plugin_configure({"ListenPort": 0, "PollInterval": 0.05})
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            m = scrape(p.port)
            if (value(m, "crane_exporter_poll_errors_total", source="controller") or 0) >= 2:
                break
            time.sleep(0.05)
        assert value(m, "crane_up") == 0
        assert value(m, "crane_exporter_poll_errors_total", source="controller") >= 2
    finally:
        p.crane_plugin_shutdown()


def test_explicit_missing_config_is_refused(tmp_path):
    with pytest.raises(Exception, match="config file not found"):
        PrometheusMetrics().crane_plugin_configure({"ListenPort": 0, "Config": str(tmp_path / "absent.yaml")})
