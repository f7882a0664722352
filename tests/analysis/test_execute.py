"""Running a named query: its frame is exact whatever DateStyle the connection has."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import polars as pl
import psycopg

from cryptolab.analysis import execute


def test_run_on_a_non_iso_datestyle_connection(conn: psycopg.Connection, monkeypatch) -> None:
    from cryptolab.storage import queries

    conn.execute("SET DateStyle = 'SQL, DMY'")
    conn.commit()
    q = queries.parse("-- name: t\n-- times\nSELECT :'a'::timestamptz AS t, :'b'::numeric AS x;", "inline")[
        "t"
    ]
    monkeypatch.setattr(queries, "get", lambda module, name: q)
    t = datetime(2024, 8, 8, 1, 2, 3, 4, tzinfo=timezone.utc)
    f = execute.run(conn, "inline", "t", {"a": t, "b": Decimal("0.10")})
    assert f["t"][0] == t and f["x"][0] == Decimal("0.10") and f.schema["x"] == pl.Decimal(38, 2)
