"""The two halves of the ``sql`` plugin: :class:`SqlEvents` (events) and :class:`SqlAccounting` (accounting).

A slot allows only its own hooks, so the writer and the reader are two classes over the same
:class:`~crane_acct_sql.store.Store`: cplugind loads ``sql`` as an event plugin and feeds it the
events stream; cranectld loads ``sql`` as its accounting plugin and asks it cacct's queries (and
the ended jobs that rebuild fair share at start-up). Both open the store with the same settings
(``Plugins.Settings.sql``) and migrate its schema if needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from crane_kernel import hookimpl
from crane_kernel.history import HistoryQuery, HistoryRecord

from crane_acct_sql.settings import parse_settings
from crane_acct_sql.store import PRUNE_CHUNK, Store

log = logging.getLogger("crane_acct_sql")

__all__ = ["SqlAccounting", "SqlEvents"]

PRUNE_PASS = 5  # chunks of PRUNE_CHUNK jobs per pruning pass in crane_event


class _Base:
    def __init__(self) -> None:
        self.store: Store | None = None

    @hookimpl
    def crane_plugin_configure(self, settings: Mapping[str, Any]) -> None:
        """Validate the settings, open the store and bring its schema up to date."""
        st = parse_settings(settings)
        if self.store is not None:
            self.store.close()
        self.store = Store(st)

    @hookimpl
    def crane_plugin_shutdown(self) -> None:
        """Close the store's connections."""
        if self.store is not None:
            self.store.close()
            self.store = None

    def _store(self) -> Store:
        if self.store is None:
            raise RuntimeError("sql accounting: not configured")
        return self.store


class SqlEvents(_Base):
    """Writes the events stream into the store (in cplugind); prunes old jobs every ``PruneInterval``."""

    def __init__(self) -> None:
        super().__init__()
        self._next_prune = 0.0

    @hookimpl
    def crane_plugin_configure(self, settings: Mapping[str, Any]) -> None:
        """Open the store (see :class:`_Base`); the first pruning pass comes with the first event."""
        super().crane_plugin_configure(settings)
        self._next_prune = 0.0

    @hookimpl
    def crane_event(self, event: Any) -> None:
        """Apply one event, committed before returning (cplugind acks after); a store error raises (retried).

        Then, every ``PruneInterval``, a pruning pass of at most :data:`PRUNE_PASS` chunks (a long
        backlog continues with the next events, so no event waits long); its failure is logged only
        (the event is stored).
        """
        store = self._store()
        store.apply([event])
        now = time.time()
        if now >= self._next_prune:
            self._next_prune = now + store.settings.prune_interval
            try:
                if store.prune(now, max_chunks=PRUNE_PASS) >= PRUNE_PASS * PRUNE_CHUNK:
                    self._next_prune = now  # more to delete: go on with the next event
            except Exception as exc:  # noqa: BLE001 - pruning is housekeeping
                log.warning("sql accounting: pruning failed: %s", " ".join(str(exc).split()))

    def apply_many(self, events: list[Any]) -> int:
        """Apply a batch of events in one transaction (a host that delivers batches may use it)."""
        return self._store().apply(events)


class SqlAccounting(_Base):
    """Answers ``crane_history_query`` from the store (in cranectld)."""

    @hookimpl
    def crane_history_query(self, query: HistoryQuery) -> list[HistoryRecord]:
        """The jobs of the store matching ``query``, by job id, at most ``max_lines``."""
        return self._store().query(query)
