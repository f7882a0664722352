"""Latency analyses against percentiles computed in Python from the stored raw columns."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cryptolab import analysis as an
from cryptolab.errors import DataError
from cryptolab.model import us_to_datetime
from tests.analysis.test_data import (  # noqa: F401  (fixtures)
    END,
    MARKET,
    SECOND,
    START,
    SYMBOL,
    bucket,
    market_dsn,
    mconn,
    pdisc,
)


def _raw(conn) -> list[tuple]:
    rows = conn.execute(
        "SELECT trade_id, trade_time, event_time, received_at, ingested_at FROM trades "
        "WHERE symbol = %s ORDER BY trade_id",
        (SYMBOL,),
    ).fetchall()
    conn.rollback()
    return rows


def test_latest_trades_breakdown(mconn) -> None:
    got = an.latest_trades(SYMBOL, limit=25, conn=mconn).to_dicts()
    ts = sorted(MARKET.by_symbol[SYMBOL], key=lambda t: -t.trade_id)[:25]
    assert [r["trade_id"] for r in got] == [t.trade_id for t in ts]
    raw = {r[0]: r for r in _raw(mconn)}
    for g, t in zip(got, ts):
        assert (
            g["trade_time"] == us_to_datetime(t.trade_time_us) and g["price"] == t.price and g["qty"] == t.qty
        )
        assert g["exchange_push"] == timedelta(microseconds=t.event_time_us - t.trade_time_us)
        assert g["network"] == timedelta(microseconds=t.received_at_us - t.event_time_us)
        assert g["pipeline"] == raw[t.trade_id][4] - us_to_datetime(t.received_at_us)
        assert g["total"] == raw[t.trade_id][4] - us_to_datetime(t.trade_time_us)


def test_latest_trades_before_end(mconn) -> None:
    end = START + timedelta(minutes=3)
    got = an.latest_trades(SYMBOL, end=end, limit=5, conn=mconn)
    want = sorted(
        (t for t in MARKET.by_symbol[SYMBOL] if us_to_datetime(t.trade_time_us) < end),
        key=lambda t: -t.trade_id,
    )[:5]
    assert got["trade_id"].to_list() == [t.trade_id for t in want]


def test_latency_stats_per_minute(mconn) -> None:
    got = an.latency_stats(SYMBOL, START, END, "1m", conn=mconn).to_dicts()
    per: dict[int, list[tuple]] = {}
    from cryptolab.model import datetime_to_us

    for r in _raw(mconn):
        if START <= r[1] < END:
            per.setdefault(bucket(datetime_to_us(r[1]), 60 * SECOND), []).append(r)
    assert [g["open_time"] for g in got] == [us_to_datetime(b) for b in sorted(per)]
    for g in got:
        rows = per[datetime_to_us(g["open_time"])]
        comps = {
            "push": [r[2] - r[1] for r in rows],
            "network": [r[3] - r[2] for r in rows],
            "pipeline": [r[4] - r[3] for r in rows],
            "total": [r[4] - r[1] for r in rows],
        }
        assert g["trades"] == len(rows) == g["streamed"]
        for name, vals in comps.items():
            for p in (0.5, 0.95, 0.99):
                assert g[f"{name}_p{int(p * 100)}"] == pdisc(vals, p), (g["open_time"], name, p)
            assert g[f"{name}_max"] == max(vals)


def test_clock_offset_from_stored_times(mconn) -> None:
    got = an.clock_offset(SYMBOL, START, END, conn=mconn).to_dicts()[0]
    nets = [timedelta(microseconds=t.received_at_us - t.event_time_us) for t in MARKET.trades()]
    assert got["streamed"] == len(nets)
    assert got["min_network"] == min(nets) == timedelta(seconds=-2.5)  # the planted clock trouble
    assert got["p50_network"] == pdisc(nets, 0.5)


def test_bad_latency_arguments(mconn) -> None:
    with pytest.raises(DataError, match="limit"):
        an.latest_trades(SYMBOL, limit=0, conn=mconn)
    with pytest.raises(DataError, match="not an interval"):
        an.latency_stats(SYMBOL, START, END, "60", conn=mconn)
    with pytest.raises(DataError, match="samples"):
        an.clock_skew("http://127.0.0.1:9", samples=0)
    assert an.latency_stats(SYMBOL, START, START, conn=mconn).height == 0
