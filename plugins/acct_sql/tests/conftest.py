"""Stores on real SQLite and real PostgreSQL (127.0.0.1:5432, database ``test``, a schema per test)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

PG_BASE = os.environ.get("CRANE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reason() -> str | None:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        return f"psycopg is not installed: {exc}"
    try:
        with psycopg.connect(PG_BASE, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL is unreachable at {PG_BASE}: {' '.join(str(exc).split())}"
    return None


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema in the test database; dropped afterwards. Yields the Url that selects it."""
    reason = _pg_reason()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"crane_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: Any, tmp_path: Any) -> str:
    """The Url of an empty store on each engine."""
    if request.param == "sqlite":
        d = tmp_path / "acct"
        d.mkdir(mode=0o700)
        return f"sqlite://{d}/acct.db"
    return request.getfixturevalue("pg_schema")
