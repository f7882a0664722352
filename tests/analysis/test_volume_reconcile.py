"""Reconciliation of stored trades against the local exchange's own klines, and clock skew."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
import pytest

from cryptolab import analysis as an
from cryptolab.errors import DataError, SourceError
from cryptolab.exchange import LocalExchange
from cryptolab.model import datetime_to_us, us_to_datetime
from cryptolab.storage.writer import TradeWriter

UTC = timezone.utc
REPLAY_START = datetime(2024, 8, 8, 12, 0, 10, tzinfo=UTC)


def _dump(path: Path, n: int = 2400, seed: int = 3) -> None:
    """A data.binance.vision-style trades CSV (no header, ms times) spanning ~6 minutes in 2024."""
    rnd = random.Random(seed)
    t = datetime_to_us(REPLAY_START) // 1000
    price = 6_000_000
    lines = []
    for i in range(1, n + 1):
        t += rnd.choice((0, 0, 50, 100, 150, 200, 250, 300))
        price += rnd.choice((-2, -1, 0, 1, 2))
        p = Decimal(price).scaleb(-2)
        q = Decimal(rnd.randint(1, 200_000)).scaleb(-5)
        lines.append(f"{1000 + i},{p},{q},{p * q},{t},{'true' if rnd.random() < 0.5 else 'false'},true")
    path.write_text("\n".join(lines) + "\n")


def _replay_all(ex: LocalExchange, symbol: str, n: int, timeout: float = 30.0) -> None:
    """A replay starts with its first subscriber: subscribe, and read every trade it prints."""
    from websockets.sync.client import connect

    deadline = time.monotonic() + timeout
    seen = 0
    with connect(f"{ex.ws_url}/ws/{symbol.lower()}@trade") as ws:
        while seen < n:
            assert time.monotonic() < deadline, f"received {seen} of {n} trades"
            try:
                seen += str(ws.recv(timeout=0.5)).count('"e":"trade"')
            except TimeoutError:
                pass
    assert ex.printed(symbol) == n


def _minutes(trades) -> tuple[datetime, datetime]:
    first = min(t.trade_time_us for t in trades) // 60_000_000 * 60_000_000
    last = max(t.trade_time_us for t in trades) // 60_000_000 * 60_000_000 + 60_000_000
    return us_to_datetime(first), us_to_datetime(last)


def test_reconcile_replayed_day_is_exact_then_finds_a_deleted_trade(dsn: str, tmp_path: Path) -> None:
    dump = tmp_path / "RECUSDT-trades-2024-08-08.csv"
    _dump(dump)
    with LocalExchange(replay=[dump], speed=0) as ex:
        _replay_all(ex, "RECUSDT", 2400)
        log = ex.trade_log("RECUSDT", time_unit="MICROSECOND")
        assert len(log) == 2400
        start, end = _minutes(log)
        with psycopg.connect(dsn) as c:
            TradeWriter(c).write(log)
            stored = an.fetch_klines("RECUSDT", start, end, base_url=ex.http_url, conn=c)
            minutes = int((end - start) / timedelta(minutes=1))
            assert stored == minutes >= 5
            rec = an.reconcile_klines("RECUSDT", start, end, conn=c)
            assert rec.height == minutes
            assert rec["status"].to_list() == ["match"] * minutes  # 100 % exact minutes
            assert int(rec["trades"].sum()) == 2400 == int(rec["kline_trades"].sum())

            # delete one trade in the middle: reconciliation reads trades, so that minute mismatches
            victim = log[1300]
            c.execute("DELETE FROM trades WHERE symbol = 'RECUSDT' AND trade_id = %s", (victim.trade_id,))
            c.commit()
            rec = an.reconcile_klines("RECUSDT", start, end, conn=c)
    minute = us_to_datetime(victim.trade_time_us // 60_000_000 * 60_000_000)
    bad = rec.filter(pl.col("status") != "match").to_dicts()
    assert [(r["open_time"], r["status"]) for r in bad] == [(minute, "mismatch")]
    r = bad[0]
    assert r["trades_diff"] == -1 and r["volume_diff"] == -victim.qty
    assert r["quote_volume_diff"] == -(victim.price * victim.qty)
    assert r["taker_buy_volume_diff"] == (0 if victim.is_buyer_maker else -victim.qty)


def test_reconcile_live_synthetic_market_is_exact(dsn: str) -> None:
    with LocalExchange(symbols=["btcusdt"], rate=300, seed=5) as ex:
        time.sleep(1.5)
        ex.stop_market()
        log = ex.trade_log("BTCUSDT", time_unit="MICROSECOND")
        assert len(log) > 50
        start, end = _minutes(log)
        with psycopg.connect(dsn) as c:
            TradeWriter(c).write(log)
            rec = an.reconcile_klines("BTCUSDT", start, end, fetch=True, base_url=ex.http_url, conn=c)
            skew = an.clock_skew(ex.http_url, samples=3)
    assert rec.height >= 1 and set(rec["status"].to_list()) == {"match"}
    assert int(rec["kline_trades"].sum()) == len(log)
    s = skew.to_dicts()[0]
    assert s["samples"] == 3 and s["offset_low"] <= s["offset"] <= s["offset_high"]
    assert abs(s["offset"]) < timedelta(milliseconds=50)  # same machine, same clock


def test_minutes_without_klines_are_incomplete(dsn: str) -> None:
    base = datetime(2024, 8, 8, 12, tzinfo=UTC)
    from cryptolab.model import Trade

    with psycopg.connect(dsn) as c:
        TradeWriter(c).write([Trade("binance", "INCUSDT", 1, Decimal("5"), Decimal("1"), False,
                                    datetime_to_us(base) + 5, None, None, "live")])
        c.execute(
            "INSERT INTO klines (exchange, symbol, interval, open_time, close_time, open, high, low, close,"
            " volume, quote_volume, trade_count, taker_buy_volume, taker_buy_quote, fetched_at) VALUES"
            " ('binance', 'INCUSDT', '1m', %s, %s, 5, 5, 5, 5, 2, 10, 2, 2, 10, %s)",
            (base, base + timedelta(seconds=59.999), base + timedelta(seconds=30)),
        )
        c.commit()
        rec = an.reconcile_klines("INCUSDT", base, base + timedelta(minutes=2), conn=c).to_dicts()
    # minute 1 differs but its kline was fetched before the minute closed; minute 2 has no kline
    assert [r["status"] for r in rec] == ["incomplete", "incomplete"]
    assert rec[0]["trades_diff"] == -1


def test_fetch_klines_errors(dsn: str) -> None:
    with pytest.raises(SourceError):
        an.fetch_klines(
            "BTCUSDT",
            datetime(2024, 8, 8, tzinfo=UTC),
            datetime(2024, 8, 8, 0, 5, tzinfo=UTC),
            base_url="http://127.0.0.1:9",
        )
    with pytest.raises(DataError, match="unknown symbol"):
        an.reconcile_klines("NOPE", datetime(2024, 8, 8, tzinfo=UTC), datetime(2024, 8, 8, 0, 5, tzinfo=UTC))
