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
    streams: list[str]
    dead_letters: dict[str, str]
    _claim_cursors: dict[str, str]
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

    def _delivery_counts(self, refs: list[tuple[str, Any]]) -> dict[tuple[str, str], int]:
        """Delivery count of each pending ``(stream, entry id)`` (extended XPENDING), in one pipelined round trip."""
        if not refs:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for stream, raw_id in refs:
            pipe.xpending_range(stream, self.group, min=raw_id, max=raw_id, count=1)
        counts: dict[tuple[str, str], int] = {}
        for (stream, _), rows in zip(refs, pipe.execute(), strict=True):
            for row in rows:
                mid = row["message_id"]
                counts[(stream, mid.decode() if isinstance(mid, bytes) else str(mid))] = int(row["times_delivered"])
        return counts

    def _move_to_dead_letter(self, dead: list[tuple[str, str, dict[bytes, bytes], str]],
                             gone: list[tuple[str, str]]) -> int:
        """Copy ``dead`` entries (with the reason) to their dead-letter streams and ack them with ``gone``, atomically.

        ``dead`` holds ``(stream, entry id, fields, reason)``, ``gone`` ``(stream, entry id)``.
        """
        pipe = self._r.pipeline(transaction=True)
        now = f"{time.time():.3f}".encode()
        acks: dict[str, list[str]] = {}
        for stream, entry_id, fields, reason in dead:
            logger.warning("bus: dead-lettered entry %s of %s: %s", entry_id, stream, reason)
            record = dict(fields)
            record.update(
                {
                    b"dlq_reason": reason.encode(),
                    b"dlq_stream": stream.encode(),
                    b"dlq_entry": entry_id.encode(),
                    b"dlq_group": self.group.encode(),
                    b"dlq_consumer": self.name.encode(),
                    b"dlq_time": now,
                }
            )
            pipe.xadd(self.dead_letters[stream], record, maxlen=DEAD_LETTER_MAXLEN)
            acks.setdefault(stream, []).append(entry_id)
        for stream, entry_id in gone:
            logger.info("bus: entry %s of %s vanished while pending (trimmed?); acking it", entry_id, stream)
            acks.setdefault(stream, []).append(entry_id)
        for stream, ids in acks.items():
            pipe.xack(stream, self.group, *ids)
        pipe.execute()
        self.dead_lettered += len(dead)
        return len(dead) + len(gone)

    # --- recovery -------------------------------------------------------------------------

    def janitor(self, max_rounds: int = 10) -> int:
        """Claim entries idle longer than ``claim_idle_ms`` in any consumer (XAUTOCLAIM) and process them,
        then trim what every group settled (:meth:`trim_acked`).

        Entries past ``max_deliveries`` go to the dead-letter stream. Returns the number settled.
        With many streams (the controller reads one report stream per node) each step is one
        pipelined round trip over all of them, not a round trip per stream: 10,000 streams cost
        three round trips, where they blocked the reader for seconds.
        """
        settled = 0
        try:
            if len(self.streams) == 1:
                settled += self._claim_stale(self.stream, max_rounds)
                self.trim_acked(self.stream)
            else:
                settled += self._claim_all(max_rounds)
                self._trim_all()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._recover_group(exc)
        return settled

    def _claim_all(self, max_rounds: int) -> int:
        """One pipelined XAUTOCLAIM per stream; a stream with more to claim goes on alone (:meth:`_claim_stale`)."""
        pipe = self._r.pipeline(transaction=False)
        streams = list(self.streams)
        for stream in streams:
            pipe.xautoclaim(stream, self.group, self.name, min_idle_time=self.claim_idle_ms,
                            start_id=self._claim_cursors.get(stream, "0-0"), count=self.batch)
        settled = 0
        claimed: list[tuple[str, Any, Any]] = []
        more: list[str] = []
        for stream, resp in zip(streams, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(resp, ResponseError):
                if "NOGROUP" in str(resp):
                    raise resp
                continue  # e.g. the stream does not exist (yet): nothing to claim
            cursor, entries = self._claimed(stream, resp)
            claimed += entries
            if cursor != "0-0" and max_rounds > 1:
                more.append(stream)
        if claimed:  # handled together, like one read over all streams
            settled += self._process(claimed, redelivered=True)
        for stream in more:
            settled += self._claim_stale(stream, max_rounds - 1)
        return settled

    def _trim_all(self) -> None:
        """:meth:`trim_acked` for every stream in three pipelined round trips (groups, pending, trims)."""
        pipe = self._r.pipeline(transaction=False)
        streams = list(self.streams)
        for stream in streams:
            pipe.xinfo_groups(stream)
        infos = pipe.execute(raise_on_error=False)
        asked: list[tuple[str, Any, Any]] = []  # (stream, group's last delivered id, its pending summary)
        pipe = self._r.pipeline(transaction=False)
        for stream, groups in zip(streams, infos, strict=True):
            if isinstance(groups, ResponseError) or not groups:
                continue
            for g in groups:
                name = g[b"name"] if b"name" in g else g.get("name")
                last = g[b"last-delivered-id"] if b"last-delivered-id" in g else g.get("last-delivered-id")
                asked.append((stream, last, None))
                pipe.xpending(stream, name)
        cuts: dict[str, tuple[int, int]] = {}
        for (stream, last, _), summary in zip(asked, pipe.execute(raise_on_error=False) if asked else [],
                                              strict=True):
            if isinstance(summary, ResponseError):
                cuts[stream] = (0, 0)  # unsure: trim nothing there
                continue
            cut = _trim_cut(last, summary)
            old = cuts.get(stream)
            cuts[stream] = cut if old is None or cut < old else old
        pipe = self._r.pipeline(transaction=False)
        trimmed = False
        for stream, cut in cuts.items():
            if cut != (0, 0):
                pipe.xtrim(stream, minid=f"{cut[0]}-{cut[1]}", approximate=False)
                trimmed = True
        if trimmed:
            pipe.execute(raise_on_error=False)

    def _claim_stale(self, stream: str, max_rounds: int) -> int:
        """XAUTOCLAIM the stale entries of one stream (continuing from its cursor) and process them."""
        settled = 0
        for _ in range(max_rounds):
            resp = self._r.xautoclaim(
                stream,
                self.group,
                self.name,
                min_idle_time=self.claim_idle_ms,
                start_id=self._claim_cursors.get(stream, "0-0"),
                count=self.batch,
            )
            cursor, entries = self._claimed(stream, resp)
            if entries:
                settled += self._process(entries, redelivered=True)
            if cursor == "0-0":
                break
        return settled

    def _claimed(self, stream: str, resp: Any) -> tuple[str, list[tuple[str, Any, Any]]]:
        """One XAUTOCLAIM reply: the stream's next cursor (kept for the next pass) and the entries claimed."""
        raw_cursor, entries = resp[0], resp[1]
        cursor = raw_cursor.decode() if isinstance(raw_cursor, bytes) else str(raw_cursor)
        self._claim_cursors[stream] = cursor
        if stream == self.stream:
            self._claim_cursor = cursor
        if entries:
            logger.info("bus: claimed %d stale entries of %s for %s", len(entries), stream, self.name)
        return cursor, [(stream, raw_id, fields) for raw_id, fields in entries]

    def trim_acked(self, stream: str | None = None) -> int:
        """Delete entries every group of ``stream`` (default: the first) has settled (XTRIM MINID); return how many.

        Safe trimming: the cut is the oldest entry still pending in any group, or else the oldest
        group's last-delivered id, so nothing a consumer may still need is removed.
        """
        stream = stream or self.stream
        try:
            groups = self._r.xinfo_groups(stream)
        except ResponseError:
            return 0
        if not groups:
            return 0
        cut: tuple[int, int] | None = None
        for g in groups:
            name = g[b"name"] if b"name" in g else g.get("name")
            last = g[b"last-delivered-id"] if b"last-delivered-id" in g else g.get("last-delivered-id")
            key = _trim_cut(last, self._r.xpending(stream, name))
            cut = key if cut is None or key < cut else cut
        if cut is None or cut == (0, 0):
            return 0
        return int(self._r.xtrim(stream, minid=f"{cut[0]}-{cut[1]}", approximate=False) or 0)

    def _recover_group(self, exc: Exception) -> None:
        """The group (or the whole stream) vanished — Redis lost its data: recreate it and start over."""
        logger.warning("bus: group %s on %s is gone (%s); recreating it", self.group, self.stream, exc)
        self._group_ready = False
        self._read_pending = True
        self._one_at_a_time = False
        self._claim_cursor = "0-0"
        self._claim_cursors = dict.fromkeys(self.streams, "0-0")
        self.ensure_group()


def _trim_cut(last: Any, summary: Any) -> tuple[int, int]:
    """The first id one group may still need: after its last delivered entry, or its oldest pending one."""
    candidates = [(last, 1)]  # everything up to and including the last delivered entry ...
    if summary and summary.get("pending"):
        candidates.append((summary["min"], 0))  # ... unless still pending
    cut: tuple[int, int] | None = None
    for c, after in candidates:
        text = c.decode() if isinstance(c, bytes) else str(c)
        ms, _, seq = text.partition("-")
        key = (int(ms), int(seq or 0) + after)
        cut = key if cut is None or key < cut else cut
    return cut or (0, 0)
