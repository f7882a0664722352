"""Futures analyses on history loaded from the local exchange's futures/um dump tree: basis and
funding recomputed independently from the exchange's own trade log equal the analysis to the digit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolab import analysis as an
from cryptolab.binance.usdm import decode_usdm
from cryptolab.errors import DataError
from cryptolab.exchange.dumptree import funding_units, open_interest_units, perp_units
from cryptolab.exchange.tradelog import UNIT, fmt8, to_units
from cryptolab.markets import AggTrade, Liquidation, MarkPrice
from cryptolab.storage.futures import write_agg_trades, write_liquidations, write_mark_prices
from tests.history.test_futures import load_futures_days, two_days_in_last_whole_month

HOUR = 3_600_000_000


def _dt(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)


def _perp(price: Decimal, t_us: int) -> Decimal:
    return Decimal(fmt8(perp_units(to_units(price), t_us)))


@pytest.mark.usefixtures("not_at_midnight")
def test_basis_funding_and_open_interest_equal_an_independent_recomputation(
        dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=63, history_rate=0.004)
    days = two_days_in_last_whole_month()
    load_futures_days(ex, dsn, tmp_path, days)
    start = datetime(days[0].year, days[0].month, days[0].day, tzinfo=timezone.utc)
    end = start + timedelta(days=2)
    lo, hi = int(start.timestamp()) * 1_000_000, int(end.timestamp()) * 1_000_000
    log = [t for t in ex.trade_log("BTCUSDT", "MICROSECOND") if lo <= t.trade_time_us < hi]
    with psycopg.connect(dsn) as c:
        got = an.basis("BTCUSDT", start, end, "1h", exchange="simulator-usdm", conn=c)
        fund = an.funding("BTCUSDT", start, end, exchange="simulator", market="usdm", conn=c)
        oi = an.open_interest("BTCUSDT", start, end, conn=c)  # exchange found: the only futures market
    # basis: the last trade of each hour, spot and perp (= spot × (1 + basis of that time), in ms)
    last: dict[int, Any] = {}
    for t in log:
        last[t.trade_time_us // HOUR] = t
    want = []
    with localcontext() as ctx:
        ctx.prec = 60
        for h, t in sorted(last.items()):
            spot = t.price
            perp = _perp(spot, t.trade_time_us)
            b = perp - spot
            want.append({"open_time": _dt(h * HOUR), "perp_close": perp, "spot_close": spot, "basis": b,
                         "basis_bps": (b * 10000 / spot).quantize(Decimal("1e-6"), ROUND_HALF_UP),
                         "basis_annualised": (b * 1095 / spot).quantize(Decimal("1e-10"), ROUND_HALF_UP)})
    assert got.to_dicts() == want
    assert len(want) > 40 and any(w["basis"] < 0 for w in want) and any(w["basis"] > 0 for w in want)
    # funding: every 8 h, the settled rate × the mark price then (the mark kline opening at the settlement:
    # the perp's first trade of that minute, else its last trade before)
    rows, total = [], Decimal(0)
    for k in range(6):
        at = lo + k * 8 * HOUR
        rate = Decimal(funding_units(at)) / UNIT
        in_minute = [
            t for t in ex.trade_log("BTCUSDT", "MICROSECOND") if at <= t.trade_time_us < at + 60_000_000
        ]
        before = [t for t in ex.trade_log("BTCUSDT", "MICROSECOND") if t.trade_time_us < at]
        t = in_minute[0] if in_minute else before[-1]
        mark = _perp(t.price, t.trade_time_us)
        total += rate * mark
        rows.append(
            {
                "funding_time": _dt(at),
                "source": "fundingRate",
                "settled": True,
                "funding_rate": rate,
                "mark_price": mark,
                "mark_source": "markPriceKlines",
                "interval_hours": 8,
                "funding_per_unit": rate * mark,
                "cumulative_per_unit": total,
                "rate_annualised": rate * 365 * 3,
            }
        )
    assert fund.to_dicts() == rows
    # psql runs the same module to the same digits
    from cryptolab.storage.db import SQL_DIR
    from tests.storage.test_sql_psql import psql

    r = psql(
        dsn,
        Path(SQL_DIR) / "futures.sql",
        "symbol=btcusdt",
        "exchange=simulator-usdm",
        f"start={start.isoformat()}",
        f"end={end.isoformat()}",
        "interval=1h",
        csv=True,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    at = lines.index("open_time,perp_close,spot_close,basis,basis_bps,basis_annualised")
    csv_rows = [ln.split(",") for ln in lines[at + 1 : at + 1 + len(want)]]
    assert [[Decimal(x) for x in row[1:]] for row in csv_rows] == [
        [w["perp_close"], w["spot_close"], w["basis"], w["basis_bps"], w["basis_annualised"]] for w in want
    ]
    # open interest every 5 minutes, its change exact
    assert oi.height == 2 * 288
    first = oi.row(0, named=True)
    assert first["open_interest"] == Decimal(open_interest_units(lo)) / UNIT and first["oi_change"] is None
    second = oi.row(1, named=True)
    assert second["oi_change"] == second["open_interest"] - first["open_interest"]


def _liq(t_us: int, side: str, qty: str, ap: str) -> bytes:
    return (
        f'{{"e":"forceOrder","E":{t_us // 1000 + 3},"o":{{"s":"BTCUSDT","S":"{side}","o":"LIMIT","f":"IOC",'
        f'"q":"{qty}","p":"60000.1","ap":"{ap}","X":"FILLED","l":"{qty}","z":"{qty}","T":{t_us // 1000}}}}}'
    ).encode()


def test_liquidations_and_live_funding_from_stream_rows(conn: psycopg.Connection) -> None:
    t0 = 1_721_347_200_000_000  # 2024-07-19 00:00 UTC
    msgs = [
        _liq(t0 + k * 1_000_000, "SELL" if k % 3 else "BUY", f"0.{k + 1:03d}", f"6000{k}.5")
        for k in range(10)
    ]
    rows = [decode_usdm(m, received_at_us=t0 + 86_400_000_000) for m in msgs]
    assert all(isinstance(r, Liquidation) for r in rows)
    with conn.transaction():
        assert write_liquidations(conn, rows) == 10  # type: ignore[arg-type]
        assert write_liquidations(conn, rows) == 0  # type: ignore[arg-type]
    with pytest.warns(UserWarning, match="at most one liquidation per symbol per second"):
        liq = an.liquidations("BTCUSDT", _dt(t0), _dt(t0 + HOUR), "1m", conn=conn)
    want = {}
    for r in rows:
        assert isinstance(r, Liquidation)
        n, q, v = want.get(r.side, (0, Decimal(0), Decimal(0)))
        want[r.side] = (n + 1, q + r.filled_qty, v + r.avg_price * r.filled_qty)
    assert {d["side"]: (d["count"], d["qty"], d["notional"]) for d in liq.to_dicts()} == want
    assert set(liq["liquidated"].to_list()) == {"long", "short"}
    assert liq["note"][0].startswith("Binance sends at most one liquidation per symbol per second")
    # live funding: the last rate the markPrice stream announced for each settlement, the mark at it
    settle = t0 + 8 * HOUR
    marks = [
        MarkPrice(
            "binance-usdm",
            "BTCUSDT",
            settle - 2_000_000 + k * 1_000_000,
            Decimal("60000.5") + k,
            None,
            None,
            Decimal("0.0001") + Decimal(k) / 10**8,
            settle,
        )
        for k in range(3)
    ]
    with conn.transaction():
        write_mark_prices(conn, marks)
    fund = an.funding("BTCUSDT", _dt(t0), _dt(t0 + 9 * HOUR), market="usdm", conn=conn)
    assert fund.to_dicts() == [
        {
            "funding_time": _dt(settle),
            "source": "markPrice",
            "settled": True,
            "funding_rate": Decimal("0.00010002"),
            "mark_price": Decimal("60002.5"),
            "mark_source": "markPrice",
            "interval_hours": 8,
            "funding_per_unit": Decimal("0.00010002") * Decimal("60002.5"),
            "cumulative_per_unit": Decimal("0.00010002") * Decimal("60002.5"),
            "rate_annualised": Decimal("0.00010002") * 1095,
        }
    ]


def test_bad_input_is_one_clear_line(conn: psycopg.Connection) -> None:
    with conn.transaction():
        write_agg_trades(
            conn,
            [
                AggTrade(
                    "binance", "ETHUSDT", 1, Decimal("3000"), Decimal("1"), 1, 1, 1_721_347_200_000_000, False
                )
            ],
        )
        write_agg_trades(
            conn,
            [
                AggTrade(
                    "binance-usdm",
                    "BTCUSDT",
                    1,
                    Decimal("60000"),
                    Decimal("1"),
                    1,
                    1,
                    1_721_347_200_000_000,
                    False,
                )
            ],
        )
    cases = [
        (
            lambda: an.funding("BTCUSDT", exchange="binance", conn=conn),
            "funding is a USD-M futures analysis: spot has no funding — "
            "pass market='usdm' (exchange 'binance-usdm')",
        ),
        (lambda: an.funding("BTCUSDT", market="spot", conn=conn), "spot has no funding"),
        (lambda: an.open_interest("BTCUSDT", market="spot", conn=conn), "spot has no open interest"),
        (
            lambda: an.basis("ETHUSDT", conn=conn),
            "ETHUSDT has spot data only (binance): no USD-M futures rows are stored for it",
        ),
        (lambda: an.liquidations("BTCUSDT", market="coinm", conn=conn), "unknown market 'coinm'"),
        (lambda: an.basis("BTCUSDT", interval="7m", conn=conn), "interval '7m' is not an interval"),
        (lambda: an.funding("XRPUSDT", conn=conn), "no USD-M futures rows of XRPUSDT"),
    ]
    for call, text in cases:
        with pytest.raises(DataError) as err:
            call()
        assert text in str(err.value) and "\n" not in str(err.value)


def test_basis_reads_spot_from_its_1s_bars_when_spot_was_captured(conn: psycopg.Connection) -> None:
    from cryptolab.model import Trade
    from cryptolab.storage.writer import TradeWriter

    t0 = 1_721_347_200_000_000
    spot = [
        Trade(
            "binance",
            "BTCUSDT",
            100 + k,
            Decimal("60000.01") + k,
            Decimal("0.5"),
            k % 2 == 0,
            t0 + k * 20_000_000,
        )
        for k in range(9)
    ]  # one every 20 s: 3 a minute
    TradeWriter(conn).write(spot)
    conn.commit()
    with conn.transaction():
        write_agg_trades(
            conn,
            [
                AggTrade(
                    "binance-usdm",
                    "BTCUSDT",
                    k,
                    Decimal("60010.1") + k * 2,
                    Decimal("1"),
                    k,
                    k,
                    t0 + k * 20_000_000 + 5_000_000,
                    False,
                )
                for k in range(9)
            ],
        )
    got = an.basis("BTCUSDT", _dt(t0), _dt(t0 + 180_000_000), "1m", market="usdm", conn=conn)
    assert got["spot_close"].to_list() == [Decimal("60002.01"), Decimal("60005.01"), Decimal("60008.01")]
    assert got["perp_close"].to_list() == [Decimal("60014.1"), Decimal("60020.1"), Decimal("60026.1")]
    assert got["basis"].to_list() == [Decimal("12.09"), Decimal("15.09"), Decimal("18.09")]
    assert got["basis_bps"][0] == (Decimal("12.09") * 10000 / Decimal("60002.01")).quantize(
        Decimal("1e-6"), ROUND_HALF_UP
    )
