"""Polling the cluster: the controller's gRPC API (with a token, over TLS) and the bus's Redis.

One background thread calls :meth:`Poller.poll` every ``PollInterval`` seconds. The controller is
asked with the token a client on this host would present (``crane_common.tokens``: ``$CRANE_TOKEN``,
the user's token file, then the controller's host token beside the keyring, which cplugind running
as root on the head node can read); the token is read again at every poll, because the host token
is short-lived and replaced by the auth plugin. Redis is read as the ``cplugind`` bus role:
``XINFO GROUPS`` and ``XLEN`` on ``crane:{cluster}:events`` and ``HGETALL`` of the cplugind status
hash ``crane:{cluster}:plugind:status`` (absent or not readable: no ``crane_plugind_*`` metrics).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import grpc
from crane_common import tokens
from crane_common.proto import crane_pb2 as pb
from crane_common.proto import crane_pb2_grpc as pbg

from crane_metrics_prometheus.collector import ClusterCollector
from crane_metrics_prometheus.snapshot import Snapshot, bus_groups, fill_from_controller, plugind_status

log = logging.getLogger("crane.metrics")


class Poller:
    """Reads the cluster into :class:`Snapshot` objects for a :class:`ClusterCollector`."""

    def __init__(self, cfg: Any | None, collector: ClusterCollector, *, token_file: str = "", host_token_file: str = "",
                 bus_role: str = "cplugind", timeout: float = 10.0) -> None:
        self.cfg = cfg
        self.collector = collector
        self.token_file = token_file
        self.host_token_file = host_token_file
        self.bus_role = bus_role
        self.timeout = timeout
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._bus: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the controller ---------------------------------------------------------------------------
    def _read_tls(self, path: str) -> bytes:
        with open(os.path.join(self.cfg.base_dir, path), "rb") as fh:
            return fh.read()

    def stub(self) -> Any:
        """The gRPC stub (the channel is made once; TLS when ``CraneCtld.Tls.CA`` is set)."""
        if self._stub is None:
            cfg = self.cfg
            tls = cfg.CraneCtld.Tls
            address = f"{cfg.ControlMachine}:{cfg.CraneCtldListenPort}"
            options = [("grpc.max_receive_message_length", 256 << 20)]
            if tls.ServerName:
                options.append(("grpc.ssl_target_name_override", tls.ServerName))
            if tls.CA:
                pair = ((self._read_tls(tls.ClientKey), self._read_tls(tls.ClientCert))
                        if tls.ClientCert and tls.ClientKey else (None, None))
                creds = grpc.ssl_channel_credentials(self._read_tls(tls.CA), *pair)
                self._channel = grpc.secure_channel(address, creds, options=options)
            else:
                self._channel = grpc.insecure_channel(address, options=options)
            self._stub = pbg.CraneCtldStub(self._channel)
        return self._stub

    def token(self) -> str | None:
        """The bearer token for this poll (read again every time)."""
        if self.token_file:
            try:
                with open(self.token_file) as fh:
                    return fh.read(65536).strip() or None
            except OSError:
                return None
        return tokens.find_client_token(self.cfg.key_file, self.host_token_file or None)

    def config(self) -> Any:
        """The cluster config (loaded at the first poll that finds it when it was missing at start)."""
        if self.cfg is None:
            from crane_kernel.config import load_config

            self.cfg = load_config(None)
        return self.cfg

    def _controller(self, snap: Snapshot) -> None:
        self.config()
        token = self.token()
        md = (("authorization", f"Bearer {token}"),) if token else ()
        stub = self.stub()
        call = {"metadata": md, "timeout": self.timeout}
        server = stub.QueryServerInfo(pb.ServerInfoRequest(), **call)
        nodes = stub.QueryCranedInfo(pb.QueryCranedInfoRequest(), **call).nodes
        parts = [p.name for p in stub.QueryPartitionInfo(pb.QueryPartitionInfoRequest(), **call).partitions]
        jobs = stub.QueryJobsInfo(pb.QueryJobsInfoRequest(), **call).jobs
        fill_from_controller(snap, server, nodes, jobs, parts)

    # -- the bus ------------------------------------------------------------------------------------
    def bus(self) -> Any:
        """The :class:`~crane_kernel.bus.Bus` of the ``BusRole`` (made at the first poll that needs it)."""
        if self._bus is None:
            from crane_kernel.bus import Bus

            self._bus = Bus.from_config(self.config(), self.bus_role, socket_timeout=self.timeout)
        return self._bus

    def _redis(self, snap: Snapshot) -> None:
        import redis

        bus = self.bus()
        stream = bus.events_stream()
        try:
            snap.stream_length = int(bus.redis.xlen(stream))
            snap.bus_groups = bus_groups(bus.redis.xinfo_groups(stream))
        except redis.ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            snap.stream_length, snap.bus_groups = 0, {}  # no event written yet
        try:
            snap.plugind = plugind_status(bus.redis.hgetall(f"{bus.prefix}:plugind:status"))
        except redis.ResponseError as exc:  # not readable by this role (yet), or not a hash: no plugind metrics
            log.debug("cplugind status not readable: %s", exc)
            self.collector.poll_failed("plugind")

    # -- one poll, and the loop --------------------------------------------------------------------
    def poll(self) -> Snapshot:
        """Read everything once and hand the snapshot to the collector (failures are counted, not raised)."""
        t0 = time.perf_counter()
        snap = Snapshot()
        old = self.collector.snapshot
        try:
            self._controller(snap)
            snap.up = True
        except Exception as exc:  # the controller may be down or restarting: keep serving, say so
            log.warning("polling the controller failed: %s", exc.details() if isinstance(exc, grpc.RpcError)
                        else exc)
            self.collector.poll_failed("controller")
        try:
            self._redis(snap)
        except Exception as exc:
            log.warning("polling the bus failed: %s", exc)
            self.collector.poll_failed("bus")
            snap.stream_length, snap.bus_groups, snap.plugind = old.stream_length, {}, {}
        snap.poll_seconds = time.perf_counter() - t0
        snap.poll_time = time.time() if snap.up else old.poll_time
        self.collector.set_snapshot(snap)
        return snap

    def start(self, interval: float) -> None:
        """Poll now and then every ``interval`` seconds in a daemon thread."""
        def loop() -> None:
            while not self._stop.is_set():
                self.poll()
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="crane-metrics-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close the channel and the Redis connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
        if self._channel is not None:
            self._channel.close()
        if self._bus is not None:
            try:
                self._bus.close()
            except Exception:  # closing a broken connection: nothing left to release
                pass
