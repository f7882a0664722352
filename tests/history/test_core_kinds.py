"""aggTrades and klines history from the local exchange's dumps: exact counts, no false gaps,
klines reconcile."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from cryptolab.history import fetch_history


def _yesterday() -> date:
    return datetime.now(timezone.utc).date() - timedelta(days=1)


def _us(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()) * 1_000_000


def test_aggtrades_exact_counts_and_no_false_gaps(dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=1, history_rate=1.0)
    day = _yesterday()
    res = fetch_history(
        "BTCUSDT", day, day, kind="aggTrades", dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=tmp_path
    )
    assert res.files_loaded == 1 and res.stored > 0
    lo, hi = _us(day), _us(day + timedelta(days=1))
    trades = [t for t in ex.trade_log("BTCUSDT", "MICROSECOND") if lo <= t.trade_time_us < hi]
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT agg_id, first_trade_id, last_trade_id, trade_count, qty, price FROM agg_trades "
            "WHERE symbol = 'BTCUSDT' ORDER BY agg_id"
        ).fetchall()
        # per-minute trade counts from aggregates are the exchange's own
        per_min = dict(
            c.execute(
                "SELECT date_trunc('minute', trade_time), sum(trade_count) FROM agg_trades GROUP BY 1"
            ).fetchall()
        )
        assert c.execute("SELECT count(*) FROM trades").fetchone() == (0,)  # aggregates are not trades
    assert sum(r[3] for r in rows) == len(trades)
    assert rows[0][1] == trades[0].trade_id and rows[-1][2] == trades[-1].trade_id
    # ids covered by an aggregate are not gaps: the aggregates tile the id range exactly
    assert all(b[1] == a[2] + 1 for a, b in zip(rows, rows[1:]))
    assert [r[0] for r in rows] == list(range(rows[0][0], rows[0][0] + len(rows)))
    assert sum(r[4] for r in rows) == sum(t.qty for t in trades)
    want: dict[int, int] = {}
    for t in trades:
        m = t.trade_time_us // 60_000_000
        want[m] = want.get(m, 0) + 1
    got = {int(k.timestamp()) // 60: int(v) for k, v in per_min.items()}
    assert got == want
    # a re-run stores nothing new
    again = fetch_history(
        "BTCUSDT", day, day, kind="aggTrades", dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=tmp_path
    )
    assert again.total_stored == 0 and again.files_skipped == 1


def test_klines_from_dumps_reconcile_exactly_offline(dsn: str, exchange: Any, tmp_path: Path) -> None:
    from cryptolab.analysis.volume import reconcile_klines

    ex = exchange(symbols=["ethusdt"], rate=5.0, history_days=1, history_rate=0.5)
    day = _yesterday()
    kw: dict[str, Any] = dict(dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=tmp_path)
    fetch_history("ETHUSDT", day, day, **kw)
    k = fetch_history("ETHUSDT", day, day, kind="klines", interval="1m", **kw)
    # every minute from the first one holding a trade (the history starts at midnight)
    assert 1430 <= k.stored <= 1440
    with psycopg.connect(dsn) as c:
        c.execute("SET TIME ZONE 'UTC'")
        start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        frame = reconcile_klines("ETHUSDT", start, start + timedelta(days=1), exchange="simulator", conn=c)
    with_kline = frame.filter(frame["kline_trades"].is_not_null())
    assert with_kline.height == k.stored
    assert set(with_kline["status"].to_list()) == {"match"}, with_kline.filter(
        with_kline["status"] != "match"
    ).head(3)
    assert with_kline["kline_trades"].sum() > 1000


def test_a_whole_month_comes_as_one_monthly_dump(dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=63, history_rate=0.004)
    today = datetime.now(timezone.utc).date()
    last = today.replace(day=1) - timedelta(days=1)
    if (today - last).days < 2:  # the month just ended: not surely published, the plan takes its days
        last = last.replace(day=1) - timedelta(days=1)
    first = last.replace(day=1)
    res = fetch_history("BTCUSDT", first, last, dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=tmp_path)
    assert (res.files_planned, res.files_loaded, res.rest_stored) == (1, 1, 0)
    lo, hi = _us(first), _us(last + timedelta(days=1))
    want = [t.trade_id for t in ex.trade_log("BTCUSDT") if lo <= t.trade_time_us < hi]
    with psycopg.connect(dsn) as c:
        got = [r[0] for r in c.execute("SELECT trade_id FROM trades ORDER BY 1")]
        assert c.execute("SELECT period, mode FROM history_files").fetchall() == [("monthly", "bulk")]
    assert got == want and len(got) > 1000


def test_aggtrades_and_klines_of_today_come_from_rest(dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=1, history_rate=1.0)
    day = _yesterday()
    kw: dict[str, Any] = dict(dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=tmp_path)
    agg = fetch_history("BTCUSDT", day, kind="aggTrades", **kw)
    kl = fetch_history("BTCUSDT", day, kind="klines", interval="1m", **kw)
    assert agg.files_loaded == 1 and agg.rest_stored > 0 and kl.files_loaded == 1 and kl.rest_stored > 0
    log = ex.trade_log("BTCUSDT", "MICROSECOND")
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT agg_id, first_trade_id, last_trade_id FROM agg_trades ORDER BY agg_id"
        ).fetchall()
        closed = c.execute("SELECT max(close_time), sum(trade_count) FROM klines").fetchone()
    assert rows[0][1] == log[0].trade_id
    assert all(b[0] == a[0] + 1 and b[1] == a[2] + 1 for a, b in zip(rows, rows[1:]))  # dump → REST, no seam
    assert closed is not None
    end_us = (int(closed[0].timestamp()) // 60 + 1) * 60_000_000  # the end of the last closed minute
    assert closed[1] == sum(1 for t in log if t.trade_time_us < end_us)  # every closed minute, exactly
