"""The Prometheus collector: the latest :class:`Snapshot` (gauges) plus counters fed by events.

Scrapes never call the controller: they read what the poller stored last, under a lock. The
event counters (``crane_jobs_submitted_total``, ``crane_jobs_ended_total``, ``crane_events_total``)
are counted once per event ``id`` — cplugind delivers at least once.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from crane_metrics_prometheus.snapshot import PLUGIND_FIELDS, Snapshot

SEEN_IDS = 100_000
"""How many event ids are remembered to drop redeliveries (older ones are forgotten first)."""

METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # name: (type, labels, help) -- the exposition and docs/monitoring.md follow this table
    "crane_up": ("gauge", (), "1 when the latest poll of the controller's API succeeded, else 0"),
    "crane_controller_info": ("gauge", ("version", "cluster", "scheduler"), "Always 1; the controller's version, "
                              "cluster name and scheduler plugin as labels"),
    "crane_exporter_last_poll_timestamp_seconds": ("gauge", (), "When the latest successful poll ended (Unix time)"),
    "crane_exporter_poll_duration_seconds": ("gauge", (), "How long the latest poll took"),
    "crane_exporter_poll_errors": ("counter", ("source",), "Failed polls by source (controller, bus, plugind)"),
    "crane_jobs": ("gauge", ("state", "partition"), "Jobs in the controller's queue by state (Pending, "
                   "Configuring, Running, ...) and partition"),
    "crane_jobs_pending": ("gauge", ("partition", "reason"), "Pending jobs by partition and pending reason"),
    "crane_nodes": ("gauge", ("state",), "Nodes by state: idle, mix, alloc, down, drain (down wins over drain)"),
    "crane_cpus": ("gauge", ("state",), "CPUs: allocated, idle (free on usable nodes), other (free on down or "
                   "drained nodes)"),
    "crane_memory_bytes": ("gauge", ("state",), "Memory in bytes: allocated, idle, other (as crane_cpus)"),
    "crane_gres": ("gauge", ("gres", "state"), "Generic resources (gres name[:type]): allocated, idle, other"),
    "crane_scheduler_cycles": ("counter", (), "Scheduling cycles run since the controller started"),
    "crane_scheduler_cycle_seconds": ("histogram", (), "Wall time of the scheduling cycles since the controller "
                                      "started"),
    "crane_scheduler_last_cycle_seconds": ("gauge", (), "Wall time of the latest scheduling cycle"),
    "crane_scheduler_max_cycle_seconds": ("gauge", (), "Longest scheduling cycle since the controller started"),
    "crane_scheduler_last_cycle_considered": ("gauge", (), "Jobs the latest cycle considered"),
    "crane_jobs_submitted": ("counter", ("partition",), "job.submitted events seen by this plugin"),
    "crane_jobs_ended": ("counter", ("state", "partition"), "job.ended events seen by this plugin, by final state"),
    "crane_events": ("counter", ("kind",), "Events of every kind seen by this plugin (job.*, step.*, node.*)"),
    "crane_bus_events_stream_length": ("gauge", (), "Entries in crane:{cluster}:events (XLEN)"),
    "crane_bus_group_lag": ("gauge", ("group",), "Entries of the events stream not yet delivered to the consumer "
                            "group (XINFO GROUPS lag; absent when Redis cannot tell)"),
    "crane_bus_group_pending": ("gauge", ("group",), "Entries delivered to the group but not acknowledged"),
    "crane_bus_group_consumers": ("gauge", ("group",), "Consumers in the group"),
    "crane_plugind_handled": ("counter", ("plugin",), "Events the cplugind plugin handled (cplugind status hash)"),
    "crane_plugind_lag": ("gauge", ("plugin",), "Events waiting for the cplugind plugin"),
    "crane_plugind_failures": ("counter", ("plugin",), "Failed attempts of the cplugind plugin (each retry counts)"),
    "crane_plugind_dead_letters": ("counter", ("plugin",), "Events the cplugind plugin gave up on (dead-lettered)"),
}
"""Every metric: type, labels, help. Counters are exposed with the ``_total`` suffix."""

_PLUGIND_METRIC = {"handled": "crane_plugind_handled", "lag": "crane_plugind_lag",
                   "failures": "crane_plugind_failures", "dead_letters": "crane_plugind_dead_letters"}


def exposed_names() -> set[str]:
    """The sample names the exposition can contain (``_total``, ``_bucket``/``_sum``/``_count`` included)."""
    out = set()
    for name, (kind, _labels, _help) in METRICS.items():
        if kind == "counter":
            out.add(f"{name}_total")
        elif kind == "histogram":
            out.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
        else:
            out.add(name)
    return out


def _family(name: str) -> Metric:
    kind, labels, doc = METRICS[name]
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    if kind == "histogram":
        return HistogramMetricFamily(name, doc, labels=labels)
    return GaugeMetricFamily(name, doc, labels=labels)


def _fmt(bound: float) -> str:
    return repr(float(bound))


class ClusterCollector:
    """A prometheus_client collector (``collect()``) over the latest snapshot and the event counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.snapshot = Snapshot()
        self.poll_errors: Counter[str] = Counter({"controller": 0, "bus": 0, "plugind": 0})
        self.submitted: Counter[str] = Counter()
        self.ended: Counter[tuple[str, str]] = Counter()
        self.events: Counter[str] = Counter()
        self._seen: OrderedDict[str, None] = OrderedDict()

    # -- fed by the poller and the events ----------------------------------------------------------
    def set_snapshot(self, snap: Snapshot) -> None:
        """Publish a finished poll (replaces the previous one as a whole)."""
        with self.lock:
            self.snapshot = snap

    def poll_failed(self, source: str) -> None:
        """Count a failed poll of ``source``."""
        with self.lock:
            self.poll_errors[source] += 1

    def count_event(self, event: Any) -> bool:
        """Count one typed event; False (and nothing counted) when its ``id`` was seen already."""
        eid = str(getattr(event, "id", "") or "")
        kind = str(getattr(event, "kind", ""))
        with self.lock:
            if eid:
                if eid in self._seen:
                    return False
                self._seen[eid] = None
                if len(self._seen) > SEEN_IDS:
                    self._seen.popitem(last=False)
            self.events[kind] += 1
            job = getattr(event, "job", None)
            if job is not None:
                if kind == "job.submitted":
                    self.submitted[job.partition] += 1
                elif kind == "job.ended":
                    self.ended[(job.state, job.partition)] += 1
        return True

    # -- scraped ----------------------------------------------------------------------------------
    def describe(self) -> list[Metric]:
        """Nothing: the registry then does not call collect() at registration time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every metric of :data:`METRICS` that has a value now."""
        with self.lock:
            snap = self.snapshot
            errors = dict(self.poll_errors)
            submitted, ended, events = dict(self.submitted), dict(self.ended), dict(self.events)
        f = {name: _family(name) for name in METRICS}
        f["crane_up"].add_metric([], 1.0 if snap.up else 0.0)
        for source, n in sorted(errors.items()):
            f["crane_exporter_poll_errors"].add_metric([source], n)
        if snap.poll_time:
            f["crane_exporter_last_poll_timestamp_seconds"].add_metric([], snap.poll_time)
            f["crane_exporter_poll_duration_seconds"].add_metric([], snap.poll_seconds)
        if snap.info:
            info = snap.info
            f["crane_controller_info"].add_metric([info["version"], info["cluster"], info["scheduler"]], 1.0)
            f["crane_scheduler_cycles"].add_metric([], snap.cycles)
            f["crane_scheduler_last_cycle_seconds"].add_metric([], snap.last_cycle_s)
            f["crane_scheduler_max_cycle_seconds"].add_metric([], snap.max_cycle_s)
            f["crane_scheduler_last_cycle_considered"].add_metric([], snap.last_considered)
        if snap.cycle_counts and len(snap.cycle_counts) == len(snap.cycle_bounds) + 1:
            buckets, total = [], 0
            for bound, n in zip((*map(_fmt, snap.cycle_bounds), "+Inf"), snap.cycle_counts, strict=True):
                total += n
                buckets.append((bound, total))
            f["crane_scheduler_cycle_seconds"].add_metric([], buckets, snap.cycle_sum)
        for (state, part), n in sorted(snap.jobs.items()):
            f["crane_jobs"].add_metric([state, part], n)
        for (part, reason), n in sorted(snap.pending_reasons.items()):
            f["crane_jobs_pending"].add_metric([part, reason], n)
        for state, n in snap.nodes.items():
            f["crane_nodes"].add_metric([state], n)
        for state, n in snap.cpus.items():
            f["crane_cpus"].add_metric([state], n)
        for state, n in snap.memory.items():
            f["crane_memory_bytes"].add_metric([state], n)
        for (name, state), n in sorted(snap.gres.items()):
            f["crane_gres"].add_metric([name, state], n)
        for part, n in sorted(submitted.items()):
            f["crane_jobs_submitted"].add_metric([part], n)
        for (state, part), n in sorted(ended.items()):
            f["crane_jobs_ended"].add_metric([state, part], n)
        for kind, n in sorted(events.items()):
            f["crane_events"].add_metric([kind], n)
        if snap.stream_length is not None:
            f["crane_bus_events_stream_length"].add_metric([], snap.stream_length)
        for group, row in sorted(snap.bus_groups.items()):
            for key in ("lag", "pending", "consumers"):
                if row.get(key) is not None:
                    f[f"crane_bus_group_{key}"].add_metric([group], row[key])
        for plugin, row in sorted(snap.plugind.items()):
            for key in PLUGIND_FIELDS:
                if key in row:
                    f[_PLUGIND_METRIC[key]].add_metric([plugin], row[key])
        yield from f.values()
