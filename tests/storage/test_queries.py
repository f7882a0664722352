"""The named-query loader: psql variables become bind parameters, never pasted text."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import psycopg
import pytest

from cryptolab.errors import DataError
from cryptolab.storage import queries

SCRIPT = r"""
-- a module
\if :{?symbol} \else \set symbol BTCUSDT \endif
SELECT 'preamble is skipped' \gset

-- name: first
-- The first query.
-- Two lines of description.
SELECT :'symbol' AS s, :'start'::timestamptz AS t, 100 % 7 AS modulo,
       ':not_a_var' AS lit, $$ :nor_this $$ AS dq, E'it\'s :x' AS e,
       1 AS "weird "" :col", x::text -- trailing :comment %
FROM (VALUES (1)) v(x)
WHERE :limit > 0 /* block :c /* nested :d */ */;

-- name: second
\echo this meta-command line is skipped
SELECT :"table_name".x FROM :"table_name" WHERE y = :'symbol'
"""


def test_parse_named_queries_and_descriptions() -> None:
    qs = queries.parse(SCRIPT, "demo")
    assert list(qs) == ["first", "second"]
    first = qs["first"]
    assert first.doc == "The first query.\nTwo lines of description."
    assert first.params == ("symbol", "start", "limit")
    assert "%(symbol)s" in first.text and "%(start)s::timestamptz" in first.text
    assert "100 %% 7" in first.text and "-- trailing :comment %%" in first.text
    assert "':not_a_var'" in first.text and "$$ :nor_this $$" in first.text and "E'it\\'s :x'" in first.text
    assert '"weird "" :col"' in first.text and "x::text" in first.text
    assert "/* block :c /* nested :d */ */" in first.text
    assert not first.text.rstrip().endswith(";")
    assert "\\echo" not in qs["second"].text and qs["second"].identifiers == ("table_name",)


def test_bind_uses_real_parameters(conn: psycopg.Connection) -> None:
    q = queries.parse(SCRIPT, "demo")["first"]
    evil = "x'); DROP TABLE trades; --"
    sql_, params = q.bind(
        {"symbol": evil, "start": datetime(2024, 1, 1, tzinfo=timezone.utc), "limit": 3, "extra": 1}
    )
    assert params == {"symbol": evil, "start": datetime(2024, 1, 1, tzinfo=timezone.utc), "limit": 3}
    with conn.cursor() as cur:
        cur.execute(sql_, params)
        row = cur.fetchone()
    assert row[0] == evil and row[2] == 2 and row[3] == ":not_a_var" and row[4] == " :nor_this "
    assert conn.execute("SELECT to_regclass('trades') IS NOT NULL").fetchone() == (True,)


def test_identifier_variables_are_quoted(conn: psycopg.Connection) -> None:
    q = queries.parse(SCRIPT, "demo")["second"]
    conn.execute('CREATE TEMP TABLE "odd name" (x int, y text)')
    conn.execute("INSERT INTO \"odd name\" VALUES (7, 'A')")
    sql_, params = q.bind({"table_name": "odd name", "symbol": "A"})
    assert conn.execute(sql_, params).fetchall() == [(7,)]


def test_missing_variables_are_named() -> None:
    q = queries.parse(SCRIPT, "demo")["first"]
    with pytest.raises(DataError, match="needs start, limit"):
        q.bind({"symbol": "X"})


def test_bad_scripts() -> None:
    with pytest.raises(DataError, match="defined twice"):
        queries.parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(DataError, match="empty"):
        queries.parse("-- name: a\n-- just words\n")
    with pytest.raises(DataError, match="bad psql variable"):
        queries.parse("-- name: a\nSELECT :'not ok';\n")


def test_modules_load_from_sql_dir_and_are_cached() -> None:
    mods = queries.modules()
    assert {"price_analysis", "traffic_analysis", "quality_check", "volume_stored", "latency"} <= set(mods)
    for m in mods:
        assert queries.names(m), m
        for name, q in queries.load(m).items():
            assert q.doc, f"{m}.{name} has no description"
            assert {"exchange", "symbol"} <= set(q.params) or name in ("symbols", "markets"), (m, name)
    first = queries.load("price_analysis")
    assert queries.load("price_analysis") is first  # cached
    t0 = time.perf_counter()
    for _ in range(1000):
        queries.get("price_analysis", "ohlcv")
    assert time.perf_counter() - t0 < 0.5
    with pytest.raises(DataError, match="no query 'nope'.*ohlcv"):
        queries.get("price_analysis", "nope")
    with pytest.raises(DataError, match="no SQL module"):
        queries.load("nothing_here")
    with pytest.raises(DataError, match="bad SQL module"):
        queries.load("../schema")


def test_cache_follows_file_changes(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(queries, "SQL_DIR", tmp_path)
    f = tmp_path / "mod.sql"
    f.write_text("-- name: a\n-- first\nSELECT 1;\n")
    assert queries.names("mod") == ["a"]
    f.write_text("-- name: a\n-- first\nSELECT 1;\n-- name: b\n-- second\nSELECT 2;\n")
    import os

    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert queries.names("mod") == ["a", "b"]
