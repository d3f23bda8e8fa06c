"""crane_acct_sql: job history (accounting) in SQLite or PostgreSQL for cranesched.

Entry points ``crane.events: sql`` (:class:`SqlEvents`, the writer, in cplugind) and
``crane.accounting: sql`` (:class:`SqlAccounting`, the reader, in cranectld), over one
:class:`~crane_acct_sql.store.Store`; settings in :mod:`crane_acct_sql.settings`, schema and
migrations in :mod:`crane_acct_sql.schema`. See docs/accounting.md.
"""

from crane_acct_sql.plugin import SqlAccounting, SqlEvents
from crane_acct_sql.store import Store, StoreError

__all__ = ["SqlAccounting", "SqlEvents", "Store", "StoreError"]
