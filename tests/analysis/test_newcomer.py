"""Analysis edges a newcomer (and held-out real data) hits: defaults that follow the data,
halts and gaps that began before `start`, latency of history, the interval list,
`latest_trades` taking a range."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

import cryptolab.analysis as an
from cryptolab.errors import DataError
from cryptolab.model import DEFAULT_EXCHANGE, SIMULATOR_EXCHANGE, Trade
from cryptolab.storage.writer import TradeWriter

T0 = datetime(2024, 8, 8, 12, tzinfo=timezone.utc)
US = 1_000_000


def _us(dt: datetime) -> int:
    return int(dt.timestamp()) * US + dt.microsecond


def _write(conn: psycopg.Connection, trades: list[Trade]) -> None:
    TradeWriter(conn).write(trades)
    conn.commit()


def _trades(
    exchange: str, symbol: str, times: list[datetime], first_id: int = 1, **kw: object
) -> list[Trade]:
    return [
        Trade(exchange, symbol, first_id + i, Decimal("100.5") + i, Decimal("0.25"), i % 3 == 0, _us(t), **kw)  # type: ignore[arg-type]
        for i, t in enumerate(times)
    ]


def test_without_exchange_the_one_holding_the_data_binance_first(conn: psycopg.Connection) -> None:
    _write(conn, _trades(SIMULATOR_EXCHANGE, "SIMUSDT", [T0 + timedelta(seconds=i) for i in range(20)]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one holder: no warning
        assert int(an.ohlcv("SIMUSDT", conn=conn)["trades"].sum()) == 20
        assert int(an.ohlcv(conn=conn)["trades"].sum()) == 20  # no symbol either
    # the same symbol on real binance too: binance is used, and a warning says so
    _write(conn, _trades(DEFAULT_EXCHANGE, "SIMUSDT", [T0 + timedelta(seconds=i) for i in range(5)]))
    with pytest.warns(UserWarning, match="binance"):
        assert int(an.ohlcv("SIMUSDT", conn=conn)["trades"].sum()) == 5
    assert int(an.ohlcv("SIMUSDT", exchange="simulator", conn=conn)["trades"].sum()) == 20
    got = an.stored_symbols(conn=conn)
    assert got.columns == ["exchange", "symbol", "first_second", "last_second"] and got.height == 2
    assert an.stored_symbols("simulator", conn=conn)["symbol"].to_list() == ["SIMUSDT"]
    with pytest.raises(DataError, match="stored for binance, simulator|nothing is stored for kraken"):
        an.ohlcv(exchange="kraken", conn=conn)


def test_range_and_interval_follow_the_data(conn: psycopg.Connection) -> None:
    _write(conn, _trades(DEFAULT_EXCHANGE, "SHORTUSDT", [T0 + timedelta(seconds=i) for i in range(30)]))
    bars = an.ohlcv(
        "SHORTUSDT", conn=conn
    )  # 30 s of data: 1 s bars from the first trade, not 60 empty minutes
    assert bars.height == 30 and bars["trades"].to_list() == [1] * 30
    assert an.tps_stats("SHORTUSDT", conn=conn)["p50"][0] == 1
    assert an.bursts("SHORTUSDT", conn=conn).height == 0


def test_halts_and_gaps_that_began_before_start_are_reported(conn: psycopg.Connection) -> None:
    # ids 1..3, a 2.5 h halt (consecutive ids), ids 4..6, then id 8 after a missing 7
    times = [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]
    after = T0 + timedelta(hours=2, minutes=30)
    times += [after, after + timedelta(seconds=1), after + timedelta(seconds=2)]
    trades = _trades(DEFAULT_EXCHANGE, "HALTUSDT", times)
    trades.append(
        Trade(
            DEFAULT_EXCHANGE,
            "HALTUSDT",
            8,
            Decimal("99"),
            Decimal("1"),
            False,
            _us(after + timedelta(minutes=5)),
        )
    )
    _write(conn, trades)
    start = T0 + timedelta(hours=2)  # inside the halt
    halts = an.halts("HALTUSDT", start, after + timedelta(hours=1), conn=conn)
    assert halts.height == 1 and halts["last_id_before"][0] == 3 and halts["halt_start"][0] < start
    assert halts["duration"][0] == timedelta(hours=2, minutes=29, seconds=58)
    gaps = an.gaps("HALTUSDT", after + timedelta(minutes=1), after + timedelta(hours=1), conn=conn)
    assert gaps.to_dicts()[0]["first_missing_id"] == 7 and gaps["missing"][0] == 1
    # a range that ends inside the halt reports it too, flagged as reaching past the range's end
    inside = an.halts("HALTUSDT", T0, T0 + timedelta(minutes=1), conn=conn)
    assert inside.height == 1 and inside["extends_after"][0] and not inside["extends_before"][0]


def test_latency_of_history_does_not_apply(conn: psycopg.Connection) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    old = now - timedelta(days=841)
    live = [
        Trade(
            DEFAULT_EXCHANGE,
            "LATUSDT",
            i,
            Decimal("10"),
            Decimal("1"),
            False,
            _us(now) + i * 1000,
            _us(now) + i * 1000 + 500,
            _us(now) + i * 1000 + 2500,
        )
        for i in range(1, 4)
    ]
    history = [
        Trade(
            DEFAULT_EXCHANGE,
            "OLDUSDT",
            i,
            Decimal("10"),
            Decimal("1"),
            False,
            _us(old) + i * 1000,
            _us(now),
            _us(now),
            "replay",
        )
        for i in range(1, 4)
    ]  # replayed through a stream
    loaded = [
        Trade(
            DEFAULT_EXCHANGE,
            "OLDUSDT",
            i,
            Decimal("10"),
            Decimal("1"),
            False,
            _us(old) + i * 1000,
            None,
            None,
            "backfill",
        )
        for i in range(4, 6)
    ]
    _write(conn, live + history + loaded)
    st = an.latency_stats("OLDUSDT", conn=conn)
    assert int(st["history"].sum()) == 5 and int(st["streamed"].sum()) == 0
    assert st["total_p50"].null_count() == st.height  # no "841 days" pipeline time
    latest = an.latest_trades("OLDUSDT", conn=conn)
    assert latest["total"].null_count() == latest.height == 5
    fresh = an.latency_stats("LATUSDT", conn=conn)
    assert int(fresh["streamed"].sum()) == 3 and fresh["total_p50"][0] is not None


def test_latest_trades_takes_start_and_end_like_the_others(conn: psycopg.Connection) -> None:
    _write(conn, _trades(DEFAULT_EXCHANGE, "LTUSDT", [T0 + timedelta(seconds=i) for i in range(10)]))
    got = an.latest_trades("LTUSDT", T0 + timedelta(seconds=2), T0 + timedelta(seconds=5), conn=conn)
    assert got["trade_id"].to_list() == [5, 4, 3]
    assert an.latest_trades("LTUSDT", limit=2, conn=conn)["trade_id"].to_list() == [10, 9]
    with pytest.raises(DataError):
        an.latest_trades("LTUSDT", 5, conn=conn)  # type: ignore[arg-type]  # the old positional limit: a clear error
