"""Schema and writer against a real PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal, localcontext

import psycopg
import pytest

from cryptolab.model import DeadLetter, Trade, datetime_to_us, us_to_datetime
from cryptolab.storage import db
from cryptolab.storage.writer import TradeWriter

T0 = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z in µs


def trade(
    i: int, price: str, qty: str, maker: bool, t_us: int, symbol: str = "BTCUSDT", source: str = "live"
) -> Trade:
    return Trade(
        "binance", symbol, i, Decimal(price), Decimal(qty), maker, t_us, t_us + 5_000, t_us + 9_000, source
    )


def test_schema_applies_twice(conn: psycopg.Connection) -> None:
    v1 = db.apply_schema(conn)
    v2 = db.apply_schema(conn)
    assert v1 == v2 >= 1
    tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"trades", "bars_1s", "dead_letters", "capture_runs", "capture_gaps", "klines"} <= tables


def test_reader_role_exists(conn: psycopg.Connection) -> None:
    assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'cryptolab_reader'").fetchone()
    ok = conn.execute("SELECT has_table_privilege('cryptolab_reader', 'trades', 'SELECT')").fetchone()
    assert ok and ok[0]


def test_duplicates_stored_once_and_bars_count_once(conn: psycopg.Connection) -> None:
    w = TradeWriter(conn)
    batch = [
        trade(1, "100.5", "0.1", False, T0 + 100),
        trade(2, "101.0", "0.2", True, T0 + 200_000),
        trade(2, "101.0", "0.2", True, T0 + 200_000),  # repeated within the batch
        trade(3, "99.0", "1.5", False, T0 + 1_300_000),
    ]
    r1 = w.write(batch)
    assert (r1.offered, r1.inserted, r1.duplicates) == (4, 3, 1)
    r2 = w.write(batch[1:])  # offered again later
    assert r2.inserted == 0 and r2.duplicates == 3
    assert conn.execute("SELECT count(*) FROM trades").fetchone() == (3,)
    bars = conn.execute(
        "SELECT ts, open, high, low, close, volume, quote_volume, taker_buy_volume, trade_count, "
        "first_trade_id, last_trade_id FROM bars_1s ORDER BY ts"
    ).fetchall()
    assert len(bars) == 2
    ts0, o, h, lo, c, v, qv, tb, n, f, last = bars[0]
    assert ts0 == us_to_datetime(T0)
    assert (o, h, lo, c) == (Decimal("100.5"), Decimal("101.0"), Decimal("100.5"), Decimal("101.0"))
    assert v == Decimal("0.3") and n == 2 and (f, last) == (1, 2)
    assert qv == Decimal("100.5") * Decimal("0.1") + Decimal("101.0") * Decimal("0.2")
    assert tb == Decimal("0.1")  # only trade 1 was a taker buy (m = false)
    assert bars[1][8] == 1


def test_late_backfill_corrects_bar_open(conn: psycopg.Connection) -> None:
    w = TradeWriter(conn)
    w.write([trade(11, "10", "1", False, T0 + 500_000), trade(12, "12", "1", False, T0 + 600_000)])
    w.write([trade(10, "9", "2", True, T0 + 100_000, source="backfill")])
    row = conn.execute("SELECT open, close, low, volume, trade_count, first_trade_id FROM bars_1s").fetchone()
    assert row == (Decimal("9"), Decimal("12"), Decimal("9"), Decimal("4"), 3, 10)


@pytest.mark.parametrize(
    "price,qty,quote",
    [
        ("0.00000001", "0.00000001", "0.0000000000000001"),
        ("123456789.12345678", "98765.43210987", "12193263124675.3076310231564186"),
    ],
)
def test_exact_decimals_round_trip(conn: psycopg.Connection, price: str, qty: str, quote: str) -> None:
    TradeWriter(conn).write([trade(1, price, qty, False, T0)])
    p, q, qq = conn.execute("SELECT price, qty, quote_qty FROM trades").fetchone()  # type: ignore[misc]
    assert (p, q) == (Decimal(price), Decimal(qty))
    with localcontext() as ctx:
        ctx.prec = 60  # Python's default 28 digits would round the product; PostgreSQL does not
        assert qq == Decimal(price) * Decimal(qty)
    assert qq == Decimal(quote)
    assert conn.execute("SELECT price::text, qty::text FROM trades").fetchone() == (price, qty)


def test_microsecond_times_are_exact(conn: psycopg.Connection) -> None:
    t = T0 + 123_456_789_012  # well inside 2025, odd microseconds
    TradeWriter(conn).write([trade(1, "1", "1", False, t)])
    got = conn.execute("SELECT trade_time, event_time, received_at FROM trades").fetchone()
    assert got is not None
    assert [datetime_to_us(x) for x in got] == [t, t + 5_000, t + 9_000]


def test_partitions_appear_for_new_days(conn: psycopg.Connection) -> None:
    days = [T0 + d * 86_400_000_000 for d in (0, 1, 40)]
    TradeWriter(conn).write([trade(i, "1", "1", False, t) for i, t in enumerate(days)])
    parts = {
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = "
            "'trades'::regclass"
        )
    }
    assert {"trades_20250101", "trades_20250102", "trades_20250210"} <= parts
    per_part = dict(
        conn.execute("SELECT tableoid::regclass::text, count(*) FROM trades GROUP BY 1").fetchall()
    )
    assert per_part["trades_20250210"] == 1
    # the schema also makes partitions ahead of time around today
    assert db.ensure_partitions(conn) == 0


def test_dead_letters_keep_raw_payload(conn: psycopg.Connection) -> None:
    raw = b'{"e":"trade","p":\xff\x00'
    TradeWriter(conn).write([], [DeadLetter("bad json", raw, exchange="binance")])
    reason, payload, size = conn.execute("SELECT reason, payload, payload_bytes FROM dead_letters").fetchone()  # type: ignore[misc]
    assert reason == "bad json" and size == len(raw)
    assert payload == '{"e":"trade","p":\\xff\\x00'


def test_many_symbols_bars_match_independent_aggregation(conn: psycopg.Connection) -> None:
    import random

    rng = random.Random(7)
    trades = []
    for sym in ("BTCUSDT", "ETHUSDT"):
        t = T0
        for i in range(1, 2001):
            t += rng.randint(0, 400_000)
            trades.append(
                trade(
                    i,
                    f"{rng.randint(9000, 11000)}.{rng.randint(0, 99):02d}",
                    f"0.{rng.randint(1, 99999):05d}",
                    rng.random() < 0.5,
                    t,
                    sym,
                )
            )
    w = TradeWriter(conn)
    shuffled = trades[:]
    rng.shuffle(shuffled)
    for k in range(0, len(shuffled), 333):  # out of order, overlapping batches
        w.write(shuffled[k : k + 400])
    expected: dict = defaultdict(list)
    for tr in trades:
        expected[(tr.symbol, tr.trade_time_us // 1_000_000)].append(tr)
    rows = conn.execute(
        "SELECT symbol, extract(epoch FROM ts)::bigint, open, high, low, close, volume, taker_buy_volume, "
        "trade_count FROM bars_1s"
    ).fetchall()
    assert len(rows) == len(expected)
    for sym, sec, o, h, lo, c, v, tb, n in rows:
        ts = sorted(expected[(sym, sec)], key=lambda x: x.trade_id)
        assert o == ts[0].price and c == ts[-1].price
        assert h == max(x.price for x in ts) and lo == min(x.price for x in ts)
        assert v == sum(x.qty for x in ts)
        assert tb == sum((x.qty for x in ts if not x.is_buyer_maker), Decimal(0))
        assert n == len(ts)


def test_schema_v1_database_migrates_to_v2_without_loss(conn: psycopg.Connection) -> None:
    """A database made by schema version 1 (no bars_1s.price_sq_volume) gets the column, filled exactly."""
    TradeWriter(conn).write(
        [
            trade(1, "100.5", "0.1", False, T0 + 100),
            trade(2, "101.25", "0.3", True, T0 + 400_000),
            trade(3, "99", "2", False, T0 + 1_500_000),
        ]
    )
    # put the database back to what version 1 left: no column, no version-2 row
    conn.execute("ALTER TABLE bars_1s DROP COLUMN price_sq_volume")
    conn.execute("DELETE FROM schema_version WHERE version >= 2")
    conn.commit()
    before = conn.execute("SELECT count(*), sum(volume) FROM bars_1s").fetchone()
    conn.commit()
    assert db.apply_schema(conn) >= 2
    rows = conn.execute("SELECT price_sq_volume FROM bars_1s ORDER BY ts").fetchall()
    assert rows == [
        (Decimal("100.5") ** 2 * Decimal("0.1") + Decimal("101.25") ** 2 * Decimal("0.3"),),
        (Decimal("99") ** 2 * Decimal("2"),),
    ]
    assert conn.execute("SELECT count(*), sum(volume) FROM bars_1s").fetchone() == before
    assert conn.execute("SELECT count(*) FROM trades").fetchone() == (3,)
    # the writer keeps maintaining it from then on
    TradeWriter(conn).write([trade(4, "2", "3", False, T0 + 1_600_000)])
    assert conn.execute("SELECT price_sq_volume FROM bars_1s ORDER BY ts DESC LIMIT 1").fetchone() == (
        Decimal("99") ** 2 * Decimal("2") + Decimal("12"),
    )
