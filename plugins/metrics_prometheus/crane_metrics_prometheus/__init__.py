"""The ``prometheus`` event plugin: a ``/metrics`` endpoint for Prometheus, served from cplugind.

Entry point ``crane.events: prometheus``. Gauges (jobs, nodes, CPUs, memory, GRES, the scheduling
cycle, bus lag, cplugind's per-plugin status) come from polling the controller's gRPC API and
Redis every ``PollInterval`` seconds (:mod:`crane_metrics_prometheus.poller`); the submit and end
counters come from the events cplugind hands to :meth:`PrometheusMetrics.crane_event`. Every
metric is listed in :data:`crane_metrics_prometheus.collector.METRICS` and in docs/monitoring.md.

Settings (``Plugins.Settings.prometheus``):

================= ============================ ===============================================
``ListenAddress`` ``127.0.0.1``                where ``/metrics`` listens
``ListenPort``    ``9810``                     its port (0: any free port, see ``.port``)
``PollInterval``  ``5``                        seconds between polls; 0: no polling (events only)
``Config``        ``$CRANE_CONFIG`` or default the cluster config (controller address, TLS CA, keyring)
``TokenFile``     (the host token)             a file with the token to present instead
``HostTokenFile`` beside the keyring           where the controller's host token is
``BusRole``       ``cplugind``                 the bus role whose Redis credentials are used
``TlsCertFile``   (plain HTTP)                 serve ``/metrics`` over HTTPS with this cert...
``TlsKeyFile``                                 ...and key
================= ============================ ===============================================
"""

from __future__ import annotations

import logging
from typing import Any

from crane_kernel import hookimpl
from prometheus_client import CollectorRegistry, start_http_server

from crane_metrics_prometheus.collector import METRICS, ClusterCollector, exposed_names
from crane_metrics_prometheus.poller import Poller

__all__ = ["METRICS", "ClusterCollector", "Poller", "PrometheusMetrics", "exposed_names"]

log = logging.getLogger("crane.metrics")

DEFAULTS: dict[str, Any] = {"ListenAddress": "127.0.0.1", "ListenPort": 9810, "PollInterval": 5.0, "Config": "",
                            "TokenFile": "", "HostTokenFile": "", "BusRole": "cplugind", "TlsCertFile": "",
                            "TlsKeyFile": ""}
# defaults a host process may add
_KERNEL_KEYS = frozenset({"Cluster", "ClusterName", "KeyFile", "Admins", "CraneBaseDir", "BusUrl", "CredentialsDir"})


class PrometheusMetrics:
    """Entry point ``crane.events: prometheus``."""

    def __init__(self) -> None:
        self.collector = ClusterCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.poller: Poller | None = None
        self.httpd: Any = None
        self.port = 0

    @hookimpl
    def crane_plugin_configure(self, settings: dict[str, Any]) -> None:
        """Check the settings, load the cluster config, start the poller and the HTTP server."""
        unknown = sorted(set(settings) - set(DEFAULTS) - _KERNEL_KEYS)
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r} (known: {', '.join(DEFAULTS)})")
        s = {**DEFAULTS, **settings}
        try:
            port, interval = int(s["ListenPort"]), float(s["PollInterval"])
        except (TypeError, ValueError):
            raise ValueError("ListenPort must be an integer and PollInterval a number") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"ListenPort must be 0-65535, not {port}")
        if interval < 0:
            raise ValueError("PollInterval must be 0 (no polling) or positive")
        if bool(s["TlsCertFile"]) != bool(s["TlsKeyFile"]):
            raise ValueError("TlsCertFile and TlsKeyFile go together")
        if interval > 0:
            from crane_kernel.config import load_config
            from crane_kernel.errors import CraneError

            cfg = None
            try:
                cfg = load_config(str(s["Config"]) or None)  # ConfigError is one line already
            except CraneError as exc:
                if s["Config"]:
                    raise
                # the default config is not there (yet): keep serving, crane_up says 0, each poll retries
                log.warning("prometheus: %s; polling retries it", exc)
            self.poller = Poller(cfg, self.collector, token_file=str(s["TokenFile"]),
                                 host_token_file=str(s["HostTokenFile"]), bus_role=str(s["BusRole"]))
        try:
            self.httpd, _thread = start_http_server(port, str(s["ListenAddress"]), registry=self.registry,
                                                    certfile=str(s["TlsCertFile"]) or None,
                                                    keyfile=str(s["TlsKeyFile"]) or None)
        except OSError as exc:
            raise ValueError(f"cannot listen on {s['ListenAddress']}:{port}: {exc.strerror or exc}") from None
        self.port = self.httpd.server_address[1]
        if self.poller is not None:
            self.poller.start(interval)
        log.info("prometheus metrics on http%s://%s:%d/metrics", "s" if s["TlsCertFile"] else "",
                 s["ListenAddress"], self.port)

    @hookimpl
    def crane_event(self, event: Any) -> None:
        """Count ``job.submitted`` / ``job.ended`` (and every kind) once per event id."""
        self.collector.count_event(event)

    @hookimpl
    def crane_plugin_shutdown(self) -> None:
        """Stop the HTTP server and the poller."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        if self.poller is not None:
            self.poller.stop()
            self.poller = None
