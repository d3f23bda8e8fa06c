"""``crane bench acct`` runs end to end on a small store (SQLite; PostgreSQL when it is reachable)."""

from __future__ import annotations

import json
from typing import Any

import pytest


def _pg() -> bool:
    try:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_bench_acct_small(engine: str, tmp_path: Any, capsys: Any) -> None:
    if engine == "postgres" and not _pg():
        pytest.skip("PostgreSQL is unreachable at 127.0.0.1:5432 (database test, user postgres)")
    from crane_tools import bench

    assert bench.main(["acct", "--records", "3000", "--engine", engine, "--runs", "2", "--events", "50",
                       "--dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (e,) = out["engines"]
    assert e["engine"] == engine and e["records"] == 3000
    assert 0 < e["cacct_S_one_day"]["rows"] <= 1000 and 10 < e["cacct_u_user"]["rows"] < 60
    assert e["write"]["events"] == 50 and e["write"]["events_per_s"] > 0
    assert 200 < e["fairshare_rebuild"]["jobs"] < 300  # 30 days of a year of 3,000 jobs
    assert list(tmp_path.iterdir()) == []  # the store is removed afterwards


def test_bench_lists_acct(capsys: Any) -> None:
    from crane_tools import bench

    assert bench.main(["--help"]) == 0
    assert "acct" in capsys.readouterr().out
