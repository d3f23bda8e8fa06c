"""``cplugind`` entry point: load the event plugins (``Plugins.Events``) and feed each from its own group.

    cplugind [-C config] [-L log] [-D level]      run the host until SIGTERM/SIGINT
    cplugind --status [--json]                    print each plugin's status (the status hash)

``--status`` reads ``crane:{cluster}:plugind:status`` behind the closed bus, with the cplugind
credentials (or the admin ones) from ``Bus.CredentialsDir``: run it where they are, as root on the
head node.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from typing import Any

from crane_kernel.config import load_config
from crane_kernel.errors import CraneError

log = logging.getLogger("cplugind")

PLUGIND_SLOTS = ("events",)


def open_bus(cfg: Any, roles: tuple[str, ...] = ("cplugind", "admin")) -> Any:
    """The bus with the first role whose credentials can be read (with ``Bus.Auth`` off: no credentials)."""
    from crane_kernel.bus import Bus
    from crane_kernel.bus.credentials import CredentialsError

    last: Exception | None = None
    for role in roles:
        try:
            return Bus.from_config(cfg, role)
        except CredentialsError as exc:
            last = exc
    raise CraneError(f"{last} (cplugind --status needs the cplugind or admin bus credentials: "
                     "run it as root on the head node)")


def print_status(cfg: Any, as_json: bool) -> int:
    """``cplugind --status``: the status hash as a table, or JSON."""
    from crane_kernel.plugind.status import format_table, read_status

    bus = open_bus(cfg)
    try:
        rows = read_status(bus)
    except Exception as exc:  # noqa: BLE001 - NOPERM, connection refused
        raise CraneError(f"cannot read the cplugind status: {exc}") from None
    finally:
        bus.close()
    if as_json:
        print(json.dumps(rows, indent=1, sort_keys=True))
    elif not rows:
        print("no cplugind status (is cplugind running, with Plugins.Events set?)")
    else:
        print(format_table(rows))
    return 0


class PlugindDaemon:
    """The running host: plugins, workers, status writer."""

    def __init__(self, cfg: Any) -> None:
        from crane_kernel import plugins
        from crane_kernel.bus import Bus
        from crane_kernel.plugind.host import PluginHost
        from crane_kernel.plugind.status import StatusWriter

        self.cfg = cfg
        self.plugins = plugins.load_slots(plugins.config_selection(cfg), slots=PLUGIND_SLOTS,
                                          defaults=plugins.kernel_defaults(cfg))
        try:
            self.bus = Bus.from_config(cfg, "cplugind")
            consumer = socket.gethostname() or "cplugind"
            self.host = PluginHost(self.plugins, self.bus, consumer, cfg.Plugind)
            self.status = StatusWriter(self.bus, self.host.workers, cfg.Plugind.StatusInterval)
        except BaseException:
            self.plugins.shutdown()
            raise

    def start(self) -> None:
        """Start the workers and the status writer."""
        self.host.start()
        self.status.start()
        log.info("cplugind ready: %s on %s", ", ".join(self.plugins.names("events")) or "no plugins",
                 self.bus.events_stream())

    def shutdown(self) -> None:
        """Stop the workers (waiting a little for calls in progress), write the status, shut the plugins down."""
        self.host.stop()
        self.status.close()
        self.plugins.shutdown()
        self.bus.close()


def main(argv: list[str] | None = None) -> int:
    """Run cplugind, or print its status."""
    from crane_kernel.ctld.main import setup_logging

    ap = argparse.ArgumentParser(prog="cplugind", description="cranesched event-plugin host")
    ap.add_argument("-C", "--config", help="config file (default $CRANE_CONFIG or /etc/crane/config.yaml)")
    ap.add_argument("-L", "--log-file", help="log to this file instead of stderr")
    ap.add_argument("-D", "--debug-level", default="info", help="trace|debug|info|warning|error")
    ap.add_argument("--status", action="store_true", help="print each event plugin's status and exit")
    ap.add_argument("--json", action="store_true", help="with --status: print JSON")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
        if args.status:
            return print_status(cfg, args.json)
        setup_logging(args.log_file or cfg.Plugind.LogFile or None,
                      "debug" if args.debug_level == "trace" else args.debug_level)
        if not cfg.Plugins.Events:
            log.info("no event plugins configured (Plugins.Events): nothing to do")
            print("cplugind: no event plugins configured (Plugins.Events)", file=sys.stderr)
            return 0
        daemon = PlugindDaemon(cfg)
        daemon.start()
    except CraneError as exc:
        print(f"cplugind: {exc}", file=sys.stderr)
        log.error("%s", exc)
        return 1
    from crane_kernel.daemonrun import run_until_signalled

    return run_until_signalled(daemon, log)


def crane_plugins(argv: list[str] | None = None) -> int:
    """``crane plugins [-C config] [--json]``: the event plugins' status, as ``cplugind --status`` prints it."""
    ap = argparse.ArgumentParser(prog="crane plugins", description="status of the event plugins run by cplugind "
                                 "(needs the cplugind or admin bus credentials: root on the head node)")
    ap.add_argument("-C", "--config", help="config file (default $CRANE_CONFIG or /etc/crane/config.yaml)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    try:
        return print_status(load_config(args.config), args.json)
    except CraneError as exc:
        print(f"crane plugins: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
