"""``cranectld`` entry point: wire config, plugins, store, bus, gRPC server and the loops together."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from concurrent import futures
from typing import Any

from crane_kernel.config import ClusterConfig, load_config
from crane_kernel.errors import CraneError

log = logging.getLogger("cranectld")

EVENTS_MAXLEN = 1_000_000
"""Default bound of the events stream (``Plugind.EventsMaxLen``): XADD trims it to about this many entries.

The stream is the event plugins' buffer; cplugind also trims what every plugin group acked. At the
drain bench's sustained ~150 jobs/s (~5 events a job, ~750 events/s) a million entries hold
~22 minutes of events for a plugin that stopped; at 10 jobs/s, over five hours. An entry is
~0.6-1 KB in Redis.
"""
BUS_EPOCH_KEY = "bus_epoch"  # journal meta: the epoch of the latest start's signed node commands


CTLD_SLOTS = ("scheduler", "priority", "auth", "job_filter", "gres", "lifecycle", "accounting", "preempt")
"""The plugin slots cranectld fills (runtimes load on the nodes, event plugins in cplugind)."""


def build_plugin_manager(cfg: ClusterConfig) -> Any:
    """Load the controller's plugin slots (auth, scheduler, priority, job filters, gres, lifecycle, accounting).

    Lifecycle plugins get ``CraneCtld.JobRequeue`` and ``CraneCtld.MaxRequeueCount`` as the
    defaults of their settings (``Plugins.Settings.<name>`` overrides them). Returns a
    :class:`crane_kernel.plugins.Plugins`; raises a one-line
    :class:`~crane_kernel.errors.PluginError` for any plugin problem.
    """
    from crane_kernel import plugins

    return plugins.load_slots(plugins.config_selection(cfg), slots=CTLD_SLOTS, defaults=plugins.kernel_defaults(cfg))


def server_credentials(cfg: ClusterConfig) -> Any:
    """gRPC server credentials from ``CraneCtld.Tls`` (None: serve plaintext).

    ``Cert``/``Key`` are the server's certificate chain and key; with ``ClientCA`` every client
    must present a certificate signed by that CA (mTLS). Unreadable files are a one-line
    :class:`~crane_kernel.errors.CraneError`.
    """
    tls = cfg.CraneCtld.Tls
    if not tls.Cert:
        return None
    import grpc

    def read(path: str, what: str) -> bytes:
        """The bytes of a TLS file (relative paths from CraneBaseDir)."""
        full = os.path.join(cfg.base_dir, path)
        try:
            with open(full, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise CraneError(f"CraneCtld.Tls.{what}: cannot read {full}: {exc.strerror or exc}") from None

    pair = [(read(tls.Key, "Key"), read(tls.Cert, "Cert"))]
    client_ca = read(tls.ClientCA, "ClientCA") if tls.ClientCA else None
    return grpc.ssl_server_credentials(pair, root_certificates=client_ca, require_client_auth=client_ca is not None)


def setup_logging(path: str | None, level: str) -> None:
    """Log to a file (or stderr) with timestamps."""
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


class CtldDaemon:
    """The running controller: owns the threads and shuts them down cleanly."""

    def __init__(self, cfg: ClusterConfig, listen: str | None = None) -> None:
        from crane_kernel.bus import Bus
        from crane_kernel.ctld.core import Controller
        from crane_kernel.ctld.store import StateStore

        self.cfg = cfg
        self.stop = threading.Event()
        self.pm = build_plugin_manager(cfg)
        try:
            self.store = StateStore(os.path.join(cfg.base_dir, "cranectld", "state.db"))
            self.bus = Bus.from_config(cfg, "controller", signer=self._signer(cfg, self.store))
            self.ctl = Controller(cfg, self.store, self.pm, self._publish)
            self.ctl.recover()
        except BaseException:
            self.pm.shutdown()
            raise
        self.listen = listen or f"{cfg.CraneCtldListenAddress}:{cfg.CraneCtldListenPort}"
        self.events_maxlen = cfg.Plugind.EventsMaxLen
        self._events_lock = threading.Lock()
        self._unsent: list[tuple[int, bytes]] = self.store.outbox_rows()  # left by an earlier run: publish again
        self.store.take_committed()  # those recover() just wrote are among them
        self._events_outage = False
        self._events_tried = 0.0
        self._events_wake = threading.Event()
        self.threads: list[threading.Thread] = []
        self.server: Any = None
        self.relay: Any = None  # ctld/iorelay.IoRelay, once the API runs

    @staticmethod
    def _signer(cfg: ClusterConfig, store: Any) -> Any:
        """The signer of node commands (None with ``Bus.Auth`` off); creates missing bus credentials.

        Its epoch exceeds every earlier start's: the journal's last one plus one, and at least the
        time in ms (should the journal be lost), so that nodes refuse replays of older commands.
        """
        if not cfg.Bus.Auth:
            return None
        from crane_kernel.bus import credentials
        from crane_kernel.bus.signing import CommandSigner

        secret = credentials.ensure(cfg.bus_dir, cfg.ClusterName, list(cfg.node_table()), cfg.Bus.AclSelectors)
        epoch = max(int(store.get_meta(BUS_EPOCH_KEY, 0) or 0) + 1, int(time.time() * 1000))
        store.write(meta={BUS_EPOCH_KEY: epoch})
        return CommandSigner(f"crane:{cfg.ClusterName}", lambda node: credentials.command_key(secret, node), epoch)

    def _publish(self, outbox: list) -> None:
        """Publish the node messages of ``outbox``; wake the events thread for the committed events."""
        events = self.bus.events_stream()
        others = [item for item in outbox if item[0] != events]  # events go through the journal's outbox
        if others:
            try:
                self.bus.publish_many(others)
            except Exception as exc:  # Redis down: launches are retried, the rest is best effort
                log.error("could not publish %d bus message(s): %s", len(others), exc)
        self._events_wake.set()

    def _events_loop(self) -> None:
        """The one publisher of events: woken after every commit, and once a second (retries, deletes)."""
        last_flush = 0.0
        while not self.stop.is_set():
            self._events_wake.wait(1.0)
            self._events_wake.clear()
            try:
                self.publish_events()
                if time.monotonic() - last_flush > 1.0:  # published rows no write has deleted yet
                    self.store.flush_published()
                    last_flush = time.monotonic()
            except Exception:
                log.exception("publishing events failed")

    def publish_events(self, force: bool = False) -> int:
        """XADD the committed events not yet published, in ``seq`` order; return how many were sent.

        Called by the events thread (``_events_loop``: woken after every commit, so no RPC waits
        for it, and once a second), one call at a time, so the stream is in ``seq`` order. After a
        Redis error they stay queued (and in the outbox table) and are sent again by the next call;
        the same bytes, so the same ``id``. Their outbox rows are deleted with the next journal
        transaction (or by ``flush_published``). While Redis is unreachable, an attempt is made at
        most once a second (unless ``force``).
        """
        from crane_kernel.bus.client import FIELD

        if self._events_outage and not force and time.monotonic() - self._events_tried < 1.0:
            return 0
        with self._events_lock:
            self._events_tried = time.monotonic()
            fresh = self.store.take_committed()
            if fresh:
                self._unsent.extend(fresh)
            rows = self._unsent
            if not rows:
                return 0
            stream, maxlen = self.bus.events_stream(), self.events_maxlen
            try:
                for start in range(0, len(rows), 1000):
                    pipe = self.bus.redis.pipeline(transaction=False)
                    for _seq, data in rows[start:start + 1000]:
                        pipe.xadd(stream, {FIELD: data}, maxlen=maxlen, approximate=True)
                    pipe.execute()
                    self.store.mark_published(rows[min(start + 1000, len(rows)) - 1][0])
            except Exception as exc:  # Redis down: kept, sent again later
                self._unsent = rows[start:]
                if not self._events_outage:
                    log.error("could not publish %d event(s), kept in the outbox: %s", len(self._unsent), exc)
                    self._events_outage = True
                return start
            if self._events_outage:
                log.info("events published again (%d)", len(rows))
                self._events_outage = False
            self._unsent = []
            return len(rows)

    def start(self) -> None:
        """Start the gRPC server, the bus consumer and the scheduling loop."""
        import grpc
        from crane_common.proto import crane_pb2_grpc as pbg

        from crane_kernel.bus import Consumer
        from crane_kernel.bus.signing import ReportOrigin
        from crane_kernel.ctld.service import CraneCtldService

        cfg = self.cfg
        # each crun/calloc stream holds a thread (and one more reads its client): they get their own share
        workers = cfg.CraneCtld.GrpcWorkers + cfg.CraneCtld.MaxInteractiveStreams
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                  options=[("grpc.max_receive_message_length", 256 << 20),
                                           ("grpc.max_send_message_length", 256 << 20),
                                           ("grpc.so_reuseport", 0)])
        from crane_kernel.ctld.iorelay import IoRelay

        self.relay = IoRelay(self.ctl, self.bus.redis)
        pbg.add_CraneCtldServicer_to_server(CraneCtldService(self.ctl, cfg.Plugins.Scheduler, self.relay), self.server)
        tls = server_credentials(cfg)
        port = self.server.add_secure_port(self.listen, tls) if tls else self.server.add_insecure_port(self.listen)
        if port == 0:
            raise CraneError(f"cannot listen on {self.listen}")
        self.server.start()
        reports = [self.bus.report_stream(n) for n in cfg.node_table()]  # one per node, only it may add to it
        consumer = Consumer(self.bus, reports, "ctld", "ctld", self.ctl.handle_messages, batch=1000, block_ms=200,
                            claim_idle_ms=10_000, check=ReportOrigin(self.bus.prefix))
        self.threads = [
            threading.Thread(target=consumer.run, args=(self.stop,), name="bus", daemon=True),
            threading.Thread(target=self._schedule_loop, name="sched", daemon=True),
            threading.Thread(target=self._events_loop, name="events", daemon=True),
        ]
        for t in self.threads:
            t.start()
        if self._unsent:
            log.info("publishing %d event(s) left in the outbox", len(self._unsent))
        self._events_wake.set()
        log.info("cranectld %s ready on %s%s (scheduler %s, cluster %s)", os.getpid(), self.listen,
                 " (TLS)" if tls else "", cfg.Plugins.Scheduler, cfg.ClusterName)

    def _schedule_loop(self) -> None:
        cc = self.cfg.CraneCtld
        while not self.stop.is_set():
            self.ctl.wake.wait(cc.ScheduleInterval)
            self.ctl.wake.clear()
            if self.stop.is_set():
                break
            try:
                stats = self.ctl.schedule_cycle()
                if stats["started"]:
                    log.debug("cycle: %s", stats)
            except Exception:
                log.exception("scheduling cycle failed")
            if self.relay is not None:
                self.relay.janitor(time.time())  # I/O streams of ended steps no relay deleted
            # the pause that lets submissions gather into one cycle; an interactive one cuts it short
            if self.ctl.urgent.wait(cc.ScheduleMinInterval):
                self.ctl.urgent.clear()

    def shutdown(self) -> None:
        """Stop serving, join the loops, close the store, then shut the plugins down."""
        self.stop.set()
        self.ctl.wake.set()
        self._events_wake.set()
        if self.server is not None:
            self.server.stop(grace=1).wait()
        for t in self.threads:
            t.join(timeout=3)
        try:
            self.publish_events(force=True)
            self.store.flush_published()
        except Exception as exc:  # what is left stays in the outbox for the next start
            log.warning("events not published at shutdown: %s", exc)
        self.store.close()
        self.pm.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Run the controller until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(prog="cranectld", description="cranesched controller daemon")
    ap.add_argument("-C", "--config", help="config file (default $CRANE_CONFIG or /etc/crane/config.yaml)")
    ap.add_argument("-L", "--log-file", help="log to this file instead of stderr")
    ap.add_argument("-D", "--debug-level", default="info", help="trace|debug|info|warning|error")
    ap.add_argument("--listen", help="override ADDRESS:PORT to listen on")
    args = ap.parse_args(argv)
    setup_logging(args.log_file, "debug" if args.debug_level == "trace" else args.debug_level)
    daemon: CtldDaemon | None = None
    try:
        cfg = load_config(args.config)
        daemon = CtldDaemon(cfg, args.listen)
        daemon.start()
    except CraneError as exc:
        print(f"cranectld: {exc}", file=sys.stderr)
        log.error("%s", exc)
        if daemon is not None:  # it failed to start: its plugins still get their shutdown
            daemon.pm.shutdown()
        return 1
    from crane_kernel.daemonrun import run_until_signalled

    return run_until_signalled(daemon, log)


if __name__ == "__main__":
    sys.exit(main())
