"""Exact frames: NUMERIC text becomes polars Decimal, or stays exact text when it cannot."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import polars as pl
import psycopg

from cryptolab.analysis import frames

NUMERIC, TSTZ, INT8, TEXT = 1700, 1184, 20, 25


def test_decimal_columns_keep_every_digit() -> None:
    rows = [
        ("-1.5", "2024-08-08 23:00:00+00", 1, "a"),
        ("12345678901234567890.123456789012345678", None, None, None),
        (None, "2024-08-08 23:00:00.000001+05:30", 3, "c"),
    ]
    f = frames.to_frame([("x", NUMERIC), ("t", TSTZ), ("n", INT8), ("s", TEXT)], rows)
    assert f.schema["x"] == pl.Decimal(38, 18)
    assert f["x"].to_list() == [Decimal("-1.5"), Decimal("12345678901234567890.123456789012345678"), None]
    assert f["t"].to_list() == [
        datetime(2024, 8, 8, 23, tzinfo=timezone.utc),
        None,
        datetime(2024, 8, 8, 17, 30, 0, 1, tzinfo=timezone.utc),
    ]
    assert f["n"].to_list() == [1, None, 3]


def test_values_beyond_38_digits_nan_and_infinity_stay_exact_text() -> None:
    big = "1" + "0" * 40 + ".5"
    f = frames.to_frame(
        [("big", NUMERIC), ("nan", NUMERIC), ("ok", NUMERIC), ("t", TSTZ)],
        [(big, "NaN", "1.25", "infinity"), ("2", "3.5", "2", "2024-01-01 00:00:00+00")],
    )
    assert f.schema["big"] == pl.String and f["big"].to_list() == [big, "2"]
    assert f.schema["nan"] == pl.String and f["nan"].to_list() == ["NaN", "3.5"]
    assert f.schema["ok"] == pl.Decimal(38, 2)
    assert f["t"].to_list() == [None, datetime(2024, 1, 1, tzinfo=timezone.utc)]


def test_all_null_and_empty_columns() -> None:
    f = frames.to_frame([("x", NUMERIC), ("t", TSTZ)], [(None, None)])
    b = frames.to_frame(
        [("x", NUMERIC), ("t", TSTZ)],
        [(Decimal("1E+1"), datetime(2024, 1, 1, tzinfo=timezone.utc))],
        text=False,
    )
    assert b["x"].to_list() == [Decimal("10")] and b.schema["t"] == pl.Datetime("us", "UTC")
    assert f.schema["x"] == pl.Decimal(38, 0) and f["x"].to_list() == [None]
    e = frames.to_frame([("x", NUMERIC), ("t", TSTZ), ("d", 1186)], [])
    assert e.height == 0 and e.schema["t"] == pl.Datetime("us", "UTC") and e.schema["d"] == pl.Duration("us")


def test_api_on_a_connection_with_another_datestyle_and_timezone(dsn: str) -> None:
    from cryptolab import analysis as an
    from cryptolab.model import Trade
    from cryptolab.storage.writer import TradeWriter

    t0 = datetime(2024, 8, 8, 12, tzinfo=timezone.utc)
    with psycopg.connect(dsn) as c:
        us = int(t0.timestamp()) * 1_000_000
        TradeWriter(c).write(
            [Trade("binance", "DSUSDT", 1, Decimal("2.5"), Decimal("4"), False, us + 10, None, None, "live")]
        )
        c.execute("SET DateStyle = 'German, DMY'")
        c.execute("SET TIME ZONE 'Asia/Kolkata'")
        c.commit()
        f = an.ohlcv("DSUSDT", t0, datetime(2024, 8, 8, 12, 2, tzinfo=timezone.utc), "1m", conn=c)
        assert f["open_time"].to_list() == [t0, datetime(2024, 8, 8, 12, 1, tzinfo=timezone.utc)]
        assert f["volume"].to_list() == [Decimal("4"), Decimal("0")]
        assert (
            an.ohlcv("DSUSDT", "2024-08-08T11:00:01Z", conn=c, interval="1m").height == 61
        )  # the first minute is partial
        assert an.ohlcv("DSUSDT", conn=c).height == 1  # the default range starts at the first stored second
