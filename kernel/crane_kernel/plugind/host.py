"""The plugin host: one worker thread and one consumer group per event plugin.

Each event plugin named in ``Plugins.Events`` gets a :class:`PluginWorker`: its own consumer group
``plugin:<name>`` on ``crane:{cluster}:events`` and its own thread, so plugins progress
independently and a slow or hung plugin delays only itself. A worker

* first claims entries left pending by other consumers of its group for longer than
  ``Plugind.ClaimIdle`` (XAUTOCLAIM: a cplugind that ran under another consumer name), then
  re-reads its own pending entries (XREADGROUP from id 0: a restarted cplugind resumes where each
  plugin left off), then reads new entries (``>``);
* decodes each entry with :func:`crane_kernel.messages.decode`; a malformed one (or one that is not
  an event) is logged, counted and acked: it never reaches the plugin and never stops the worker;
* skips an event whose ``id`` it handled recently (a bounded set of ``Plugind.RecentIds`` ids; a
  duplicate published again after a controller crash), acking it;
* calls only its plugin's ``crane_event`` (pluggy's ``subset_hook_caller``, never the broadcast
  hook), one event at a time, in stream order; XACK after it returned (at-least-once);
* on an exception retries with exponential backoff (``RetryBase * 2**n``, at most ``RetryCap``) up
  to ``Plugind.MaxRetries`` times, then copies the entry with the error to
  ``crane:{cluster}:deadletter:<plugin>`` and acks it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from redis.exceptions import ResponseError

from crane_kernel.bus.client import CONNECTION_ERRORS, DEAD_LETTER_MAXLEN, FIELD, Bus
from crane_kernel.errors import BusMessageError
from crane_kernel.events import EVENT_TYPES
from crane_kernel.messages import decode

__all__ = ["PluginHost", "PluginWorker", "dead_letter_stream", "group_name"]

log = logging.getLogger("cplugind")


def group_name(plugin: str) -> str:
    """The consumer group of event plugin ``plugin`` on the events stream."""
    return f"plugin:{plugin}"


def dead_letter_stream(bus: Bus, plugin: str) -> str:
    """Where the events ``plugin`` gave up on go: ``crane:{cluster}:deadletter:<plugin>``."""
    return f"{bus.prefix}:deadletter:{plugin}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PluginWorker:
    """Feeds one event plugin from its own consumer group, in its own thread."""

    def __init__(self, name: str, call: Callable[..., Any], bus: Bus, consumer: str, *, max_retries: int = 5,
                 retry_base: float = 0.5, retry_cap: float = 30.0, batch: int = 100, recent_ids: int = 10_000,
                 claim_idle: float = 60.0, block_ms: int = 1000) -> None:
        self.name = name
        self.call = call
        self.bus = bus
        self.r = bus.redis
        self.stream = bus.events_stream()
        self.group = group_name(name)
        self.consumer = consumer
        self.dead_letter = dead_letter_stream(bus, name)
        self.max_retries = max_retries
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.batch = batch
        self.recent_max = recent_ids
        self.claim_idle_ms = int(claim_idle * 1000)
        self.block_ms = block_ms
        self.recent: OrderedDict[str, None] = OrderedDict()
        self.handled = 0
        """Events the plugin handled (acked after success)."""
        self.failed = 0
        """Failed attempts (exceptions raised by the plugin)."""
        self.dead = 0
        """Events moved to the dead-letter stream."""
        self.malformed = 0
        """Entries that were not a valid event (logged and acked)."""
        self.skipped = 0
        """Duplicates skipped (an id handled recently)."""
        self.last_error = ""
        self.last_error_time = 0.0
        self.last_seq = 0
        self.last_time = 0.0
        """Publication time (the entry id's milliseconds) of the last event handled."""
        self.busy_since = 0.0
        """When the call in progress started (0: idle): a plugin that hangs shows here."""
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self._from_pending = True

    # --- Redis ----------------------------------------------------------------------------

    def ensure_group(self) -> None:
        """Create the plugin's group at the start of the stream (MKSTREAM); an existing one is kept."""
        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def claim_stale(self) -> int:
        """XAUTOCLAIM entries other consumers of the group left pending longer than ``ClaimIdle``; return how many.

        They join this consumer's pending list, which :meth:`poll_once` reads first.
        """
        cursor, total = "0-0", 0
        for _ in range(1000):
            resp = self.r.xautoclaim(self.stream, self.group, self.consumer, min_idle_time=self.claim_idle_ms,
                                     start_id=cursor, count=self.batch)
            cursor, ids = _text(resp[0]), resp[1]
            total += len(ids)
            if cursor == "0-0":
                break
        if total:
            log.info("plugin %s: claimed %d pending entr%s of other consumers", self.name, total,
                     "y" if total == 1 else "ies")
        return total

    def _read(self, from_id: str, block: int | None) -> list[tuple[str, dict]]:
        resp = self.r.xreadgroup(self.group, self.consumer, {self.stream: from_id}, count=self.batch, block=block)
        if not resp:
            return []
        parts = resp.items() if isinstance(resp, dict) else resp
        out: list[tuple[str, dict]] = []
        for _key, value in parts:
            entries = value[0] if isinstance(resp, dict) else value
            out.extend((_text(raw_id), fields) for raw_id, fields in entries)
        return out

    def poll_once(self, block_ms: int | None = None) -> int:
        """Read one batch (own pending entries first) and handle it; return how many entries were settled."""
        if self._from_pending:
            entries = self._read("0", None)
            if not entries:
                self._from_pending = False
                return 0
        else:
            entries = self._read(">", self.block_ms if block_ms is None else block_ms or None)
        done = 0
        for entry_id, fields in entries:
            if self.stop.is_set():
                break
            if self.handle(entry_id, fields):
                done += 1
        return done

    # --- one entry -------------------------------------------------------------------------

    def _ack(self, entry_id: str) -> None:
        self.r.xack(self.stream, self.group, entry_id)

    def _remember(self, event_id: str) -> None:
        if self.recent_max <= 0:
            return
        self.recent[event_id] = None
        if len(self.recent) > self.recent_max:
            self.recent.popitem(last=False)

    def handle(self, entry_id: str, fields: dict | None) -> bool:
        """Settle one entry: handle it (with retries), skip it, or dead-letter it; False if stopped first."""
        if not fields:  # trimmed while pending
            self._ack(entry_id)
            return True
        raw = fields.get(FIELD)
        try:
            if raw is None:
                raise BusMessageError(f"entry has no {FIELD.decode()!r} field")
            event = decode(raw)
            if not isinstance(event, EVENT_TYPES):
                raise BusMessageError(f"{event.kind} is not an event")
        except BusMessageError as exc:
            self.malformed += 1
            log.warning("plugin %s: malformed entry %s of %s skipped: %s", self.name, entry_id, self.stream, exc)
            self._ack(entry_id)
            return True
        if event.id in self.recent:
            self.skipped += 1
            self._ack(entry_id)
            return True
        attempt = 0
        while True:
            self.busy_since = time.time()
            try:
                self.call(event=event)
                break
            except Exception as exc:  # noqa: BLE001 - a plugin's failure is counted, retried, dead-lettered
                self.failed += 1
                self.last_error = _one_line(exc)
                self.last_error_time = time.time()
                if attempt >= self.max_retries:
                    self._dead_letter(entry_id, fields, event, attempt + 1)
                    return True
                delay = min(self.retry_base * (2 ** attempt), self.retry_cap)
                attempt += 1
                log.warning("plugin %s: %s of event %s (seq %d) failed (attempt %d), retrying in %.2fs: %s",
                            self.name, event.kind, event.id, event.seq, attempt, delay, self.last_error)
                if self.stop.wait(delay):
                    return False  # stays pending: handled after the restart
            finally:
                self.busy_since = 0.0
        self._ack(entry_id)
        self.handled += 1
        self.last_seq = event.seq
        self.last_time = int(entry_id.partition("-")[0]) / 1000.0
        self._remember(event.id)
        return True

    def _dead_letter(self, entry_id: str, fields: dict, event: Any, attempts: int) -> None:
        record = dict(fields)
        record.update({b"dlq_reason": self.last_error.encode(), b"dlq_stream": self.stream.encode(),
                       b"dlq_entry": entry_id.encode(), b"dlq_plugin": self.name.encode(),
                       b"dlq_attempts": str(attempts).encode(), b"dlq_time": f"{time.time():.3f}".encode()})
        self.r.xadd(self.dead_letter, record, maxlen=DEAD_LETTER_MAXLEN)
        self._ack(entry_id)
        self.dead += 1
        self._remember(event.id)
        log.error("plugin %s: %s of event %s (seq %d) dead-lettered to %s after %d attempts: %s", self.name,
                  event.kind, event.id, event.seq, self.dead_letter, attempts, self.last_error)

    # --- the thread --------------------------------------------------------------------------

    def run(self) -> None:
        """Handle events until :attr:`stop` is set; Redis errors are retried (0.1 s doubling to 5 s), never raised."""
        delay = 0.1
        ready = False
        outage = False
        while not self.stop.is_set():
            try:
                if not ready:
                    self.ensure_group()
                    self.claim_stale()
                    self._from_pending = True
                    ready = True
                self.poll_once()
                if outage:
                    log.info("plugin %s: Redis reachable again", self.name)
                    outage, delay = False, 0.1
            except CONNECTION_ERRORS as exc:
                if not outage:
                    log.warning("plugin %s: Redis unreachable (%s); retrying", self.name, exc)
                    outage = True
                self._from_pending = True  # a read may have been delivered and its reply lost
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    log.warning("plugin %s: group %s is gone; recreating it", self.name, self.group)
                else:
                    log.error("plugin %s: Redis refused: %s", self.name, exc)
                    self.stop.wait(1.0)
                ready = False
            except Exception:
                log.exception("plugin %s: unexpected error; continuing", self.name)
                self.stop.wait(1.0)

    def start(self) -> None:
        """Run in a daemon thread of its own (a hung plugin cannot keep the process from exiting)."""
        self.thread = threading.Thread(target=self.run, name=f"plugin:{self.name}", daemon=True)
        self.thread.start()

    def status(self) -> dict[str, Any]:
        """The counters the status hash shows (lag and pending are added by the status writer)."""
        return {"plugin": self.name, "group": self.group, "handled": self.handled, "failed": self.failed,
                "dead_letters": self.dead, "malformed": self.malformed, "skipped": self.skipped,
                "last_error": self.last_error, "last_error_time": self.last_error_time, "last_seq": self.last_seq,
                "last_event_time": self.last_time, "busy_since": self.busy_since}


class PluginHost:
    """The workers of every loaded event plugin; ``start``, ``stop``."""

    def __init__(self, plugins: Any, bus: Bus, consumer: str, settings: Any) -> None:
        self.plugins = plugins
        self.bus = bus
        self.workers: list[PluginWorker] = []
        for name, obj in zip(plugins.names("events"), plugins.plugins("events"), strict=True):
            self.workers.append(PluginWorker(
                name, plugins.own_caller("crane_event", obj), bus, consumer, max_retries=settings.MaxRetries,
                retry_base=settings.RetryBase, retry_cap=settings.RetryCap, batch=settings.Batch,
                recent_ids=settings.RecentIds, claim_idle=settings.ClaimIdle))

    def start(self) -> None:
        """Start every worker's thread."""
        for w in self.workers:
            w.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask every worker to stop and wait up to ``timeout`` s in all (a hung plugin's thread is left)."""
        for w in self.workers:
            w.stop.set()
        deadline = time.monotonic() + timeout
        for w in self.workers:
            if w.thread is not None:
                w.thread.join(max(0.0, deadline - time.monotonic()))
                if w.thread.is_alive():
                    log.warning("plugin %s did not stop in time (busy in crane_event)", w.name)
