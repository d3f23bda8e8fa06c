"""Keeping a consumed stream healthy: stale entries, dead letters, trimming, lost groups.

:class:`RecoveryMixin` is part of :class:`crane_kernel.bus.Consumer`; it uses the consumer's
``_r`` (redis client), ``stream``, ``group``, ``name``, ``batch``, ``claim_idle_ms``,
``dead_letter`` and its ``_process``/``ensure_group`` methods.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.exceptions import ResponseError

from crane_kernel.bus.client import DEAD_LETTER_MAXLEN

__all__ = ["RecoveryMixin"]

logger = logging.getLogger("crane_kernel.bus")


class RecoveryMixin:
    """Janitor, dead-letter and trimming half of :class:`~crane_kernel.bus.Consumer`."""

    _r: Any
    stream: str
    group: str
    name: str
    batch: int
    claim_idle_ms: int
    dead_letter: str
    dead_lettered: int
    _group_ready: bool
    _read_pending: bool
    _one_at_a_time: bool
    _claim_cursor: str

    def _process(self, entries: Any, redelivered: bool) -> int:  # provided by Consumer
        raise NotImplementedError

    def ensure_group(self) -> None:  # provided by Consumer
        """Create the consumer group (see :meth:`crane_kernel.bus.Consumer.ensure_group`)."""
        raise NotImplementedError

    def _delivery_counts(self, raw_ids: list[Any]) -> dict[str, int]:
        """Delivery count of each pending entry (extended XPENDING), in one pipelined round trip."""
        if not raw_ids:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for raw_id in raw_ids:
            pipe.xpending_range(self.stream, self.group, min=raw_id, max=raw_id, count=1)
        counts: dict[str, int] = {}
        for rows in pipe.execute():
            for row in rows:
                mid = row["message_id"]
                counts[mid.decode() if isinstance(mid, bytes) else str(mid)] = int(row["times_delivered"])
        return counts

    def _move_to_dead_letter(self, dead: list[tuple[str, dict[bytes, bytes], str]], gone: list[str]) -> int:
        """Copy ``dead`` entries (with the reason) to the dead-letter stream and ack them with ``gone``, atomically."""
        pipe = self._r.pipeline(transaction=True)
        now = f"{time.time():.3f}".encode()
        for entry_id, fields, reason in dead:
            logger.warning("bus: dead-lettered entry %s of %s: %s", entry_id, self.stream, reason)
            record = dict(fields)
            record.update(
                {
                    b"dlq_reason": reason.encode(),
                    b"dlq_stream": self.stream.encode(),
                    b"dlq_entry": entry_id.encode(),
                    b"dlq_group": self.group.encode(),
                    b"dlq_consumer": self.name.encode(),
                    b"dlq_time": now,
                }
            )
            pipe.xadd(self.dead_letter, record, maxlen=DEAD_LETTER_MAXLEN)
        for entry_id in gone:
            logger.info("bus: entry %s of %s vanished while pending (trimmed?); acking it", entry_id, self.stream)
        pipe.xack(self.stream, self.group, *[d[0] for d in dead], *gone)
        pipe.execute()
        self.dead_lettered += len(dead)
        return len(dead) + len(gone)

    # --- recovery -------------------------------------------------------------------------

    def janitor(self, max_rounds: int = 10) -> int:
        """Claim entries idle longer than ``claim_idle_ms`` in any consumer (XAUTOCLAIM) and process them.

        Entries past ``max_deliveries`` go to the dead-letter stream. Returns the number settled.
        """
        settled = 0
        try:
            for _ in range(max_rounds):
                resp = self._r.xautoclaim(
                    self.stream,
                    self.group,
                    self.name,
                    min_idle_time=self.claim_idle_ms,
                    start_id=self._claim_cursor,
                    count=self.batch,
                )
                cursor, entries = resp[0], resp[1]
                self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
                if entries:
                    logger.info("bus: claimed %d stale entries of %s for %s", len(entries), self.stream, self.name)
                    settled += self._process(entries, redelivered=True)
                if self._claim_cursor == "0-0":
                    break
            self.trim_acked()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._recover_group(exc)
        return settled

    def trim_acked(self) -> int:
        """Delete entries every group of the stream has settled (XTRIM MINID); return how many went.

        Safe trimming: the cut is the oldest entry still pending in any group, or else the oldest
        group's last-delivered id, so nothing a consumer may still need is removed.
        """
        try:
            groups = self._r.xinfo_groups(self.stream)
        except ResponseError:
            return 0
        if not groups:
            return 0
        cut: tuple[int, int] | None = None
        for g in groups:
            name = g[b"name"] if b"name" in g else g.get("name")
            last = g[b"last-delivered-id"] if b"last-delivered-id" in g else g.get("last-delivered-id")
            candidates = [(last, 1)]  # everything up to and including the last delivered entry ...
            summary = self._r.xpending(self.stream, name)
            if summary and summary.get("pending"):
                candidates.append((summary["min"], 0))  # ... unless still pending
            for c, after in candidates:
                text = c.decode() if isinstance(c, bytes) else str(c)
                ms, _, seq = text.partition("-")
                key = (int(ms), int(seq or 0) + after)
                cut = key if cut is None or key < cut else cut
        if cut is None or cut == (0, 0):
            return 0
        return int(self._r.xtrim(self.stream, minid=f"{cut[0]}-{cut[1]}", approximate=False) or 0)

    def _recover_group(self, exc: Exception) -> None:
        """The group (or the whole stream) vanished — Redis lost its data: recreate it and start over."""
        logger.warning("bus: group %s on %s is gone (%s); recreating it", self.group, self.stream, exc)
        self._group_ready = False
        self._read_pending = True
        self._one_at_a_time = False
        self._claim_cursor = "0-0"
        self.ensure_group()
