"""Live trades kept as columns (`storage.columns.TradeColumns`): the same batch as `Trade` rows,
the same append parameters without making them, and `TradeWriter.write_columns` storing exactly
what `write` stores (real PostgreSQL), taking the merge when the ids overlap what is stored."""

from __future__ import annotations

import gc
from decimal import Decimal

import psycopg

from cryptolab.model import Trade, TradeFields
from cryptolab.storage.append import append_ranges, trade_arrays
from cryptolab.storage.columns import TradeColumns
from cryptolab.storage.writer import TradeWriter
from tests.storage.test_append_function import fconn, install_append_function
from tests.storage.test_writer import T0

__all__ = ["fconn"]


def _fields(
    i: int,
    price: str = "61807.94000000",
    qty: str = "0.00127000",
    *,
    symbol: str = "BTCUSDT",
    maker: bool = True,
    t_us: int = T0,
    event: int | None = T0 + 5,
) -> TradeFields:
    return (symbol, i, price, qty, maker, t_us + i, event)


def _cols(fields: list[TradeFields], exchange: str = "binance", source: str = "live") -> TradeColumns:
    c = TradeColumns(exchange, source)
    for k, f in enumerate(fields):
        c.add(f, T0 + 1_000 + k)
    return c


def test_rows_are_the_trades_with_exact_decimals_in_arrival_order() -> None:
    c = _cols([_fields(7, "0.00010000", "12.5"), _fields(8, maker=False, event=None, symbol="ETHUSDT")])
    assert c.rows() == [
        Trade(
            "binance",
            "BTCUSDT",
            7,
            Decimal("0.00010000"),
            Decimal("12.5"),
            True,
            T0 + 7,
            T0 + 5,
            T0 + 1000,
            "live",
        ),
        Trade(
            "binance",
            "ETHUSDT",
            8,
            Decimal("61807.94000000"),
            Decimal("0.00127000"),
            False,
            T0 + 8,
            None,
            T0 + 1001,
            "live",
        ),
    ]
    assert str(c.rows()[0].price) == "0.00010000"  # the scale as sent


def test_append_parameters_are_those_of_the_rows() -> None:
    odd = 'A"B\\C'
    for fields in (
        [_fields(i) for i in range(1, 6)],
        [_fields(1, event=None), _fields(2), _fields(3, symbol=odd, maker=False)],
        [_fields(1, event=None)],
    ):
        c = _cols(fields, source="simulator")
        assert c.arrays() == trade_arrays(c.rows())


def test_ranges_are_those_of_the_rows_and_none_when_ids_go_back() -> None:
    c = _cols([_fields(5), _fields(6, symbol="ETHUSDT"), _fields(9), _fields(7, symbol="ETHUSDT")])
    assert c.ranges() == append_ranges(c.rows())
    assert _cols([_fields(5), _fields(5)]).ranges() is None
    assert _cols([_fields(5), _fields(4)]).ranges() is None


def test_split_keeps_every_trade_once_in_order() -> None:
    c = _cols([_fields(i) for i in range(1, 11)])
    head, tail = c.split(4)
    assert [t.trade_id for t in head.rows()] == [1, 2, 3, 4]
    assert [t.trade_id for t in tail.rows()] == list(range(5, 11))
    assert head.rows() + tail.rows() == c.rows()
    assert (head.exchange, tail.source) == ("binance", "live") and len(c.empty()) == 0


def test_days_are_the_utc_days_of_the_trades() -> None:
    day = 86_400_000_000
    c = _cols([_fields(1), _fields(2, t_us=T0 + 2 * day)])
    assert c.days() == {T0 // day, T0 // day + 2}
    assert _cols([_fields(1), _fields(2)]).days() == {T0 // day}
    assert TradeColumns("binance", "live").days() == set()


def test_a_queued_batch_gives_the_garbage_collector_nothing_per_trade() -> None:
    c = _cols([_fields(i) for i in range(1, 5_001)])
    held = gc.get_referents(*[getattr(c, n) for n in c.__slots__])
    tracked = [o for o in held if gc.is_tracked(o) and not isinstance(o, type)]
    assert tracked == [] and len(held) >= 5_000  # strings and numbers only: no container per trade


def _stored(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT exchange, symbol, trade_id, price::text, qty::text, is_buyer_maker, trade_time, event_time,"
        " received_at, source FROM trades ORDER BY symbol, trade_id"
    ).fetchall()


def _bars(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT * FROM bars_1s ORDER BY symbol, ts").fetchall()


def test_write_columns_stores_what_write_stores_in_one_call(fconn: psycopg.Connection) -> None:
    fields = [
        _fields(i, f"{100 + i}.10", "0.5", maker=i % 2 == 0, event=None if i == 3 else T0)
        for i in range(1, 9)
    ]
    cols = _cols(fields)
    w = TradeWriter(fconn)
    res = w.write_columns(cols)
    assert (res.offered, res.inserted, w.appended, w.merged) == (8, 8, 1, 0)
    got, bars = _stored(fconn), _bars(fconn)
    fconn.execute("TRUNCATE trades, bars_1s")
    fconn.commit()
    assert TradeWriter(fconn).write(cols.rows()).inserted == 8
    assert _stored(fconn) == got and _bars(fconn) == bars
    assert got[0][3] == "101.10"  # the digits as sent


def test_write_columns_overlapping_stored_ids_merges_and_stores_each_once(fconn: psycopg.Connection) -> None:
    w = TradeWriter(fconn)
    w.write_columns(_cols([_fields(i) for i in range(1, 6)]))
    res = w.write_columns(_cols([_fields(i) for i in range(4, 9)]))
    assert (res.inserted, res.duplicates) == (3, 2) and w.merged == 1
    assert [r[2] for r in _stored(fconn)] == list(range(1, 9))
    again = w.write_columns(_cols([_fields(3), _fields(2)]))  # ids going back: the merge at once
    assert again.inserted == 0 and w.merged == 2


def test_write_columns_commits_statements_alongside_even_when_merging(fconn: psycopg.Connection) -> None:
    fconn.execute("CREATE TABLE beat (n int)")
    fconn.execute("INSERT INTO beat VALUES (0)")
    fconn.commit()
    w = TradeWriter(fconn)
    also = [("UPDATE beat SET n = n + 1 RETURNING n", ())]
    assert w.write_columns(_cols([_fields(1), _fields(2)]), also=also).also == [[(1,)]]
    res = w.write_columns(_cols([_fields(2), _fields(3)]), also=also)  # overlaps: merged
    assert res.also == [[(2,)]] and res.inserted == 1
    assert fconn.execute("SELECT n FROM beat").fetchone() == (2,)


def test_write_columns_without_the_function_stores_the_rows(fconn: psycopg.Connection) -> None:
    fconn.execute("DROP FUNCTION cryptolab_append_trades")
    fconn.commit()
    try:
        w = TradeWriter(fconn)
        assert w.write_columns(_cols([_fields(i) for i in range(1, 4)])).inserted == 3
        assert not w.server_append and [r[2] for r in _stored(fconn)] == [1, 2, 3]
    finally:
        install_append_function(fconn)
