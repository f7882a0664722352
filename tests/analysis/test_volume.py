"""Volume analyses (stored totals, CVD, tick rule) against plain-Python references."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, localcontext

import pytest

from cryptolab import analysis as an
from cryptolab.errors import DataError
from cryptolab.model import datetime_to_us, us_to_datetime
from tests.analysis.test_data import (  # noqa: F401  (fixtures)
    END,
    END_US,
    MARKET,
    OTHER,
    SECOND,
    START,
    START_US,
    SYMBOL,
    UTC,
    assert_rows,
    market_dsn,
    mconn,
    ref_cvd,
)


def test_stored_symbols(mconn) -> None:
    got = an.stored_symbols(conn=mconn).to_dicts()
    assert [r["symbol"] for r in got] == sorted([OTHER, SYMBOL])
    t = MARKET.by_symbol[SYMBOL]
    r = [x for x in got if x["symbol"] == SYMBOL][0]
    assert r["first_second"] == us_to_datetime(min(x.trade_time_us for x in t) // SECOND * SECOND)


def test_daily_totals_default_to_every_stored_day(mconn) -> None:
    got = an.daily_totals(SYMBOL, conn=mconn).to_dicts()
    days: dict[date, list] = {}
    for t in MARKET.by_symbol[SYMBOL]:
        days.setdefault(us_to_datetime(t.trade_time_us).date(), []).append(t)
    assert [r["day"] for r in got] == sorted(days) == [date(2024, 8, 8), date(2024, 8, 9)]
    with localcontext() as c:
        c.prec = 80
        for r in got:
            ts = days[r["day"]]
            buy = [t for t in ts if not t.is_buyer_maker]
            sell = [t for t in ts if t.is_buyer_maker]
            assert r["trades"] == len(ts)
            assert r["volume"] == sum(t.qty for t in ts)
            assert r["quote_volume"] == sum(t.price * t.qty for t in ts)
            assert r["taker_buy_volume"] == sum(t.qty for t in buy)
            assert r["taker_sell_volume"] == sum(t.qty for t in sell)
            assert r["taker_sell_quote"] == sum(t.price * t.qty for t in sell)
            ids = [t.trade_id for t in ts]
            assert r["missing_ids"] == max(ids) - min(ids) + 1 - len(ids)
    assert sum(r["missing_ids"] for r in got) == 5  # the planted id gap


@pytest.mark.parametrize("interval,iv_s", [("1s", 1), ("1m", 60), ("5m", 300)])
def test_cvd_from_bars(mconn, interval: str, iv_s: int) -> None:
    got = an.cvd(SYMBOL, START, END, interval, conn=mconn)
    want = ref_cvd(MARKET.by_symbol[SYMBOL], MARKET.by_symbol[SYMBOL], START_US, END_US, iv_s * SECOND)
    assert_rows(got.to_dicts(), want, ["open_time", "trades", "buy_volume", "sell_volume", "delta", "cvd"])
    assert got["cvd"][-1] == want[-1]["cvd"]


def test_cvd_with_tick_rule_from_trades(mconn) -> None:
    s = START + (END - START) / 3  # the tick rule looks back one trade before the range
    got = an.cvd(SYMBOL, s, END, "1m", tick_rule=True, conn=mconn)
    trades = MARKET.by_symbol[SYMBOL]
    want = ref_cvd(trades, trades, datetime_to_us(s), END_US, 60 * SECOND)
    assert_rows(
        got.to_dicts(),
        want,
        ["open_time", "trades", "delta", "cvd", "tick_delta", "tick_cvd", "classified", "agree"],
    )
    # both measures of the same flow: the aggressor CVD equals the bar-based one
    bars = an.cvd(SYMBOL, s.replace(second=0), END, "1m", conn=mconn)
    assert got["cvd"][-1] == bars["cvd"][-1]


def test_cvd_sign_convention(dsn: str) -> None:
    """is_buyer_maker = false is a taker buy: +qty."""
    import psycopg

    from cryptolab.model import Trade
    from cryptolab.storage.writer import TradeWriter

    base = datetime_to_us(datetime(2024, 8, 8, 12, tzinfo=UTC))
    with psycopg.connect(dsn) as c:
        TradeWriter(c).write(
            [
                Trade("binance", "SIGNUSDT", 1, Decimal("10"), Decimal("2"), False, base, None, None, "live"),
                Trade(
                    "binance",
                    "SIGNUSDT",
                    2,
                    Decimal("11"),
                    Decimal("0.5"),
                    True,
                    base + 10,
                    None,
                    None,
                    "live",
                ),
                Trade(
                    "binance",
                    "SIGNUSDT",
                    3,
                    Decimal("12"),
                    Decimal("0.25"),
                    True,
                    base + 20,
                    None,
                    None,
                    "live",
                ),
            ]
        )
        got = an.cvd(
            "SIGNUSDT", us_to_datetime(base), us_to_datetime(base + 60 * SECOND), "1m", conn=c
        ).to_dicts()
        tick = an.cvd(
            "SIGNUSDT", us_to_datetime(base), us_to_datetime(base + 60 * SECOND), "1m", tick_rule=True, conn=c
        ).to_dicts()
    assert got[0]["buy_volume"] == Decimal("2") and got[0]["sell_volume"] == Decimal("0.75")
    assert got[0]["cvd"] == Decimal("1.25")
    assert tick[0]["cvd"] == Decimal("1.25")
    assert tick[0]["tick_cvd"] == Decimal("0.75")  # first trade unclassified, then two up-ticks
    assert (tick[0]["classified"], tick[0]["agree"]) == (2, 0)


def test_bad_volume_arguments(mconn) -> None:
    with pytest.raises(DataError, match="tick_rule"):
        an.cvd(SYMBOL, START, END, tick_rule="yes", conn=mconn)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="not an interval"):
        an.cvd(SYMBOL, START, END, "1 minute", conn=mconn)
    with pytest.raises(DataError, match="unknown symbol"):
        an.daily_totals("NOPE", conn=mconn)
    assert an.cvd(SYMBOL, START, START, conn=mconn).height == 0
