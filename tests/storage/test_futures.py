"""Futures rows into PostgreSQL: exact, and a row offered twice is stored once."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from cryptolab.markets import AggTrade, FundingRate, Liquidation, MarkPrice, OpenInterest
from cryptolab.storage.futures import (
    write_agg_trades,
    write_funding_rates,
    write_liquidations,
    write_mark_prices,
    write_open_interest,
)

T0 = 1_721_347_200_000_000  # 2024-07-19 00:00 UTC
EX = "binance-usdm"


def _marks(n: int, start: int = 0) -> list[MarkPrice]:
    # across a UTC midnight: two day partitions
    return [
        MarkPrice(
            EX,
            "BTCUSDT",
            T0 - 2_000_000 + k * 1_000_000,
            Decimal("63950.1") + k,
            Decimal("63960.2"),
            None,
            Decimal("-0.00012345"),
            T0 + 28_800_000_000,
        )
        for k in range(start, start + n)
    ]


def test_mark_prices_stored_once_across_day_partitions(conn: psycopg.Connection) -> None:
    with conn.transaction():
        assert write_mark_prices(conn, _marks(4)) == 4
    with conn.transaction():
        assert write_mark_prices(conn, _marks(6)) == 2  # the first four again: stored once
    rows = conn.execute(
        "SELECT mark_price, funding_rate, est_settle_price FROM mark_prices ORDER BY event_time"
    ).fetchall()
    assert [r[0] for r in rows] == [Decimal("63950.1") + k for k in range(6)]
    assert rows[0][1] == Decimal("-0.00012345") and rows[0][2] is None
    parts = conn.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'mark_prices'::regclass"
    ).fetchone()
    assert parts == (2,)


def test_funding_rates_stored_once_and_a_later_mark_price_fills_in(conn: psycopg.Connection) -> None:
    dump = [
        FundingRate(EX, "BTCUSDT", T0 + k * 28_800_000_000, Decimal("0.0001") * k, None, 8) for k in range(3)
    ]
    assert write_funding_rates(conn, dump) == 3
    rest = [FundingRate(EX, "BTCUSDT", T0, Decimal("0"), Decimal("63950.10000000"))]
    assert write_funding_rates(conn, dump + rest) == 0
    rows = conn.execute(
        "SELECT funding_rate, mark_price, interval_hours FROM funding_rates ORDER BY funding_time"
    ).fetchall()
    assert rows == [
        (Decimal("0"), Decimal("63950.10000000"), 8),
        (Decimal("0.0001"), None, 8),
        (Decimal("0.0002"), None, 8),
    ]


def test_liquidations_open_interest_and_agg_trades_stored_once(conn: psycopg.Connection) -> None:
    liq = [
        Liquidation(
            EX,
            "BTCUSDT",
            T0 + k * 1_000_000,
            "SELL" if k % 2 else "BUY",
            "LIMIT",
            "IOC",
            Decimal("63800.1"),
            Decimal("63810.25"),
            Decimal("0.014"),
            Decimal("0.014"),
            Decimal("0.014"),
            "FILLED",
        )
        for k in range(3)
    ]
    assert write_liquidations(conn, liq) == 3
    assert write_liquidations(conn, liq) == 0
    oi = [OpenInterest(EX, "BTCUSDT", T0 + k * 300_000_000, Decimal("80000.123") + k) for k in range(3)]
    assert write_open_interest(conn, oi) == 3
    valued = [o._replace(open_interest_value=Decimal("5.1e9")) for o in oi]
    assert write_open_interest(conn, valued) == 0
    assert conn.execute(
        "SELECT count(*) FROM open_interest WHERE open_interest_value = 5100000000"
    ).fetchone() == (3,)
    agg = [
        AggTrade(EX, "BTCUSDT", k, Decimal("63943.90"), Decimal("0.003"), 10 * k, 10 * k + 2, T0 + k, True)
        for k in range(5)
    ]
    assert write_agg_trades(conn, agg) == 5
    assert write_agg_trades(conn, agg[2:]) == 0
    row = conn.execute(
        "SELECT sum(trade_count), sum(quote_qty) FROM agg_trades WHERE exchange = %s", (EX,)
    ).fetchone()
    assert row == (15, Decimal("63943.90") * Decimal("0.003") * 5)


def test_schema_version_8_applies_twice_and_takes_the_futures_history_kinds(conn: psycopg.Connection) -> None:
    from cryptolab.storage import db

    assert db.apply_schema(conn) >= 8
    assert db.apply_schema(conn) >= 8
    conn.execute(
        "INSERT INTO history_files (exchange, symbol, kind, period, first_day, last_day, file_name, url, "
        "rows, stored, mode) VALUES ('binance-usdm', 'BTCUSDT', 'fundingRate', 'monthly', '2024-07-01', "
        "'2024-07-31', 'BTCUSDT-fundingRate-2024-07.zip', 'x', 93, 93, 'idempotent')"
    )
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO history_files (exchange, symbol, kind, period, first_day, last_day, file_name, "
            "url, rows, stored, mode) VALUES ('binance', 'BTCUSDT', 'bookDepth', 'daily', '2024-07-01', "
            "'2024-07-01', 'x.zip', 'x', 1, 1, 'idempotent')"
        )
