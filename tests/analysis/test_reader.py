"""load_trades: every stored trade, exact, into polars (or pandas)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import polars as pl
import pytest

from cryptolab import analysis as an
from cryptolab.analysis.reader import TRADE_COLUMNS
from cryptolab.errors import DataError
from cryptolab.model import us_to_datetime
from tests.analysis.test_data import END, MARKET, OTHER, START, SYMBOL, market_dsn, mconn  # noqa: F401  (fixtures)


@pytest.mark.parametrize("engine", ["adbc", "copy"])
def test_load_all_trades_exactly(mconn, engine: str) -> None:
    got = an.load_trades(SYMBOL, conn=mconn, engine=engine)
    want = MARKET.by_symbol[SYMBOL]
    assert got.columns == ["trade_id", "trade_time", "price", "qty", "is_buyer_maker"]
    assert got.schema["price"] == pl.Decimal(38, 2) and got.schema["qty"] == pl.Decimal(38, 8)
    assert got.schema["trade_time"] == pl.Datetime("us", "UTC")
    assert got.height == len(want)
    for g, t in zip(got.iter_rows(named=True), want):
        assert (g["trade_id"], g["trade_time"], g["price"], g["qty"], g["is_buyer_maker"]) == (
            t.trade_id, us_to_datetime(t.trade_time_us), t.price, t.qty, t.is_buyer_maker)


@pytest.mark.parametrize("engine", ["adbc", "copy"])
def test_load_every_column_in_a_range(mconn, engine: str) -> None:
    s, e = START + timedelta(minutes=2), START + timedelta(minutes=4)
    got = an.load_trades(SYMBOL.lower(), s, e, columns=TRADE_COLUMNS, conn=mconn, engine=engine)
    want = [t for t in MARKET.by_symbol[SYMBOL] if s <= us_to_datetime(t.trade_time_us) < e]
    assert got.columns == list(TRADE_COLUMNS) and got.height == len(want) > 100
    first = got.row(0, named=True)
    t = want[0]
    assert first["quote_qty"] == t.price * t.qty and first["source"] == "live" and first["symbol"] == SYMBOL
    assert first["event_time"] == us_to_datetime(t.event_time_us)
    assert first["received_at"] == us_to_datetime(t.received_at_us)
    assert first["ingested_at"] > first["received_at"]


def test_load_to_pandas_keeps_decimals(mconn) -> None:
    got = an.load_trades(OTHER, START, END, columns=["trade_id", "price"], conn=mconn, as_="pandas")
    assert len(got) == len(MARKET.by_symbol[OTHER])
    assert isinstance(got["price"].iloc[0], Decimal) and got["price"].iloc[0] == Decimal("3001.5")


def test_load_empty_and_bad(mconn) -> None:
    for engine in ("adbc", "copy"):
        empty = an.load_trades(SYMBOL, START, START, conn=mconn, engine=engine)
        assert empty.height == 0 and empty.columns[0] == "trade_id"
        assert empty.schema["trade_time"] == pl.Datetime("us", "UTC")
    with pytest.raises(DataError, match="engine"):
        an.load_trades(SYMBOL, conn=mconn, engine="pandas")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="unknown symbol 'NOTSTORED'"):
        an.load_trades("NOTSTORED", conn=mconn)
    with pytest.raises(DataError, match="not trade columns"):
        an.load_trades(SYMBOL, columns=["price", "nope"], conn=mconn)
    with pytest.raises(DataError, match="after end"):
        an.load_trades(SYMBOL, END, START, conn=mconn)
