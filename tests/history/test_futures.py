"""USD-M futures history from the local exchange's futures/um dump tree: every kind, exactly once."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolab.errors import DataError
from cryptolab.exchange.dumptree import basis_ppm, funding_units, perp_units
from cryptolab.exchange.tradelog import UNIT, fmt8, to_units
from cryptolab.history import fetch_history
from cryptolab.history.plan import plan_history


def two_days_in_last_whole_month() -> tuple[date, date]:
    """Two days whose month's fundingRate file is published (a month over, and a day more)."""
    today = datetime.now(timezone.utc).date()
    last = today.replace(day=1) - timedelta(days=1)
    if (today - last).days < 2:
        last = last.replace(day=1) - timedelta(days=1)
    return last - timedelta(days=1), last


def _us(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()) * 1_000_000


def load_futures_days(ex: Any, dsn: str, cache: Path, days: tuple[date, date]) -> dict[str, Any]:
    """Two days of futures history (every kind) and of spot aggTrades, from the local exchange's dumps."""
    out = {}
    for kind, iv in (("aggTrades", ""), ("trades", ""), ("klines", "1m"), ("markPriceKlines", "1m"),
                     ("fundingRate", ""), ("metrics", "")):
        out[kind] = fetch_history("BTCUSDT", *days, kind=kind, interval=iv or "1m", market="usdm", dsn=dsn,
                                  dumps=ex.http_url, rest=ex.http_url, cache=cache)
    out["spot"] = fetch_history(
        "BTCUSDT", *days, kind="aggTrades", dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=cache
    )
    return out


@pytest.mark.usefixtures("not_at_midnight")
def test_two_days_of_futures_history_stored_exactly_once(dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=63, history_rate=0.004)
    days = two_days_in_last_whole_month()
    first = load_futures_days(ex, dsn, tmp_path, days)
    assert all(r.exchange == "simulator-usdm" for k, r in first.items() if k != "spot")
    assert first["spot"].exchange == "simulator"
    assert first["aggTrades"].files_loaded == 2 and first["fundingRate"].files_loaded == 1  # monthly only
    assert first["metrics"].files_loaded == 2 and all(r.rest_stored == 0 for r in first.values())
    lo, hi = _us(days[0]), _us(days[1] + timedelta(days=1))
    trades = [t for t in ex.trade_log("BTCUSDT", "MICROSECOND") if lo <= t.trade_time_us < hi]
    with psycopg.connect(dsn) as c:
        c.execute("SET TIME ZONE 'UTC'")
        perp = c.execute(
            "SELECT price, qty, first_trade_id, last_trade_id, trade_time FROM agg_trades "
            "WHERE exchange = 'simulator-usdm' ORDER BY agg_id"
        ).fetchall()
        spot_n = c.execute("SELECT sum(trade_count) FROM agg_trades WHERE exchange = 'simulator'").fetchone()
        perp_trades = c.execute(
            "SELECT trade_id, price FROM trades WHERE exchange = 'simulator-usdm' ORDER BY trade_id"
        ).fetchall()
        funding = c.execute(
            "SELECT funding_time, funding_rate, interval_hours FROM funding_rates ORDER BY funding_time"
        ).fetchall()
        oi = c.execute("SELECT count(*), min(ts), max(ts) FROM open_interest").fetchone()
        marks = c.execute("SELECT count(*) FROM mark_klines WHERE exchange = 'simulator-usdm'").fetchone()
        counts = {
            t: c.execute(f"SELECT count(*) FROM {t}").fetchone()
            for t in ("agg_trades", "trades", "klines", "mark_klines", "funding_rates", "open_interest")
        }
    # the perp's aggregates cover the spot's trades one for one, at spot × (1 + basis), ms times
    assert sum(r[3] - r[2] + 1 for r in perp) == len(trades) == spot_n[0]
    by_id = {t.trade_id: t for t in trades}
    for price, _qty, f, _, when in perp[:50]:
        t = by_id[f]
        assert price == Decimal(fmt8(perp_units(to_units(t.price), t.trade_time_us)))
        assert int(when.timestamp() * 1000) == t.trade_time_us // 1000
    assert [r[0] for r in perp_trades] == [t.trade_id for t in trades]
    # funding every 8 h of the whole month (the monthly file), rates exact
    month_first = days[1].replace(day=1)
    assert len(funding) == 3 * days[1].day and funding[0][0].date() == month_first
    for when, rate, hours in funding:
        us = int(when.timestamp()) * 1_000_000
        assert rate == Decimal(funding_units(us)) / UNIT and hours == 8
    assert oi is not None and oi[0] == 2 * 288 and marks == (2 * 1440,)
    assert basis_ppm(lo) in range(-100, 501)
    # a re-run stores nothing twice
    again = load_futures_days(ex, dsn, tmp_path, days)
    assert all(r.total_stored == 0 for r in again.values())
    assert sum(r.files_skipped for r in again.values()) == sum(r.files_loaded for r in first.values())
    with psycopg.connect(dsn) as c:
        assert {t: c.execute(f"SELECT count(*) FROM {t}").fetchone() for t in counts} == counts


def test_futures_only_kinds_and_spot_only_symbols_are_one_clear_line() -> None:
    today = date(2026, 12, 5)
    with pytest.raises(DataError, match="futures data: add --market usdm"):
        plan_history(["BTCUSDT"], "2026-11-01", "2026-11-02", today=today, kind="fundingRate")
    plan = plan_history(
        ["BTCUSDT"], "2026-10-15", "2026-12-04", today=today, kind="fundingRate", market="usdm"
    )
    assert [f.path for f in plan.files] == [
        "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2026-10.zip",
        "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2026-11.zip",
    ]
    assert [(s.first_day, s.last_day) for s in plan.rest] == [(date(2026, 12, 1), date(2026, 12, 4))]
    metrics = plan_history(
        ["BTCUSDT"], "2026-10-01", "2026-10-31", today=today, kind="metrics", market="usdm"
    )
    assert len(metrics.files) == 31 and {f.period for f in metrics.files} == {"daily"}
    marks = plan_history(
        ["BTCUSDT"],
        "2026-10-01",
        "2026-10-31",
        today=today,
        kind="markPriceKlines",
        interval="1h",
        market="usdm",
    )
    assert marks.files[0].path == "data/futures/um/monthly/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2026-10.zip"
    with pytest.raises(DataError, match="interval '1s'"):
        plan_history(
            ["BTCUSDT"], "2026-10-01", "2026-10-31", today=today, kind="klines", interval="1s", market="usdm"
        )


def test_a_symbol_the_local_exchange_does_not_list_is_refused_on_futures(
    dsn: str, exchange: Any, tmp_path: Path
) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=2, history_rate=0.01)
    day = datetime.now(timezone.utc).date() - timedelta(days=1)
    with pytest.raises(DataError, match="unknown symbol XRPUSDT"):
        fetch_history(
            "XRPUSDT",
            day,
            day,
            kind="aggTrades",
            market="usdm",
            dsn=dsn,
            dumps=ex.http_url,
            rest=ex.http_url,
            cache=tmp_path,
        )
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM history_files").fetchone() == (0,)
