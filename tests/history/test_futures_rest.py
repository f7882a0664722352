"""Futures history joined across dumps and REST: days no dump holds (today; the month whose fundingRate
file is not out yet) come from /fapi REST, with no gap and nothing twice.

The local exchange serves spot REST and the futures dump tree but no /fapi yet: a small real HTTP server
here answers the /fapi endpoints from the same synthetic perp the dump tree serves (`dumptree.Perp`
over the exchange's own trade log), as Binance would."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web

from cryptolab.errors import DataError
from cryptolab.exchange.dumptree import Perp, funding_units, open_interest_units
from cryptolab.exchange.market import symbol_spec
from cryptolab.exchange.tradelog import UNIT, SymbolLog, fmt8, fmt_scaled, to_units
from cryptolab.history import fetch_history

FUNDING_MS = 8 * 3_600_000


class Fapi:
    """/fapi answers from a synthetic perp (a snapshot of the exchange's trade log)."""

    def __init__(self, trades: list[Any]) -> None:
        spot = SymbolLog(symbol_spec("BTCUSDT"))
        for t in trades:
            spot.append(t.trade_id, to_units(t.price), to_units(t.qty), t.trade_time_us, t.trade_time_us,
                        t.is_buyer_maker)
        self.perp = Perp(spot).synced()
        self.now_ms = trades[-1].trade_time_us // 1000 + 1
        self.port = 0
        self.calls: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        q, path = request.query, request.path
        self.calls.append(path)
        if path == "/fapi/v1/exchangeInfo":
            return web.json_response({"timezone": "UTC", "serverTime": self.now_ms, "cryptolab": {
                "synthetic": True, "source": "simulator"}, "symbols": [
                {"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"}]})
        if q.get("symbol") != "BTCUSDT":
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        limit = int(q.get("limit", 500))
        lo = int(q.get("startTime", 0))
        hi = min(int(q.get("endTime", self.now_ms)), self.now_ms - 1)
        if path == "/fapi/v1/aggTrades":
            log = self.perp
            first = int(q["fromId"]) if "fromId" in q else log.agg_index_of_time(lo * 1000)
            rows = [log.rest_agg(n, False) for n in range(first, min(first + limit, len(log.agg_starts)))]
            return web.json_response([r for r in rows if "fromId" in q or r["T"] <= hi])
        if path == "/fapi/v1/fundingRate":
            t = -(-lo // FUNDING_MS) * FUNDING_MS
            out = []
            while t <= hi and len(out) < limit:
                i = self.perp.index_of_time(t * 1000 + 1)
                out.append(
                    {
                        "symbol": "BTCUSDT",
                        "fundingTime": t,
                        "fundingRate": fmt8(funding_units(t * 1000)),
                        "markPrice": fmt8(self.perp.prices[i - 1]),
                    }
                )
                t += FUNDING_MS
            return web.json_response(out)
        if path == "/futures/data/openInterestHist":
            t, out = -(-lo // 300_000) * 300_000, []
            while t <= hi and len(out) < limit:
                oi = open_interest_units(t * 1000)
                i = self.perp.index_of_time(t * 1000 + 1)
                out.append(
                    {
                        "symbol": "BTCUSDT",
                        "sumOpenInterest": fmt8(oi),
                        "sumOpenInterestValue": fmt_scaled(oi * self.perp.prices[i - 1], 16),
                        "timestamp": t,
                    }
                )
                t += 300_000
            return web.json_response(out)
        return web.json_response({"code": -1, "msg": "not here"}, status=404)


@pytest.fixture
def fapi() -> Iterator[Any]:
    made: list[tuple[asyncio.AbstractEventLoop, web.AppRunner, threading.Thread]] = []

    def make(trades: list[Any]) -> Fapi:
        f = Fapi(trades)
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def up() -> web.AppRunner:
            app = web.Application()
            app.router.add_get("/{tail:.*}", f.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            f.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return runner

        def run() -> None:
            asyncio.set_event_loop(loop)
            made.append((loop, loop.run_until_complete(up()), thread))
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        ready.wait(10)
        return f

    yield make
    for loop, runner, thread in made:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.mark.usefixtures("not_at_midnight")
def test_days_no_dump_holds_come_from_fapi_rest_without_a_gap(
    dsn: str, exchange: Any, fapi: Any, tmp_path: Path
) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=3, history_rate=0.01)
    ex.stop_market()
    trades = ex.trade_log("BTCUSDT", "MICROSECOND")
    f = fapi(trades)
    rest = f"http://127.0.0.1:{f.port}"
    today = datetime.now(timezone.utc).date()
    first = today - timedelta(days=2)
    kw: dict[str, Any] = dict(market="usdm", dsn=dsn, dumps=ex.http_url, rest=rest, cache=tmp_path)
    agg = fetch_history("BTCUSDT", first, None, kind="aggTrades", **kw)
    funding = fetch_history("BTCUSDT", first, None, kind="fundingRate", **kw)
    metrics = fetch_history("BTCUSDT", first, None, kind="metrics", **kw)
    assert agg.exchange == "simulator-usdm" and agg.files_loaded == 2 and agg.rest_stored > 0
    assert funding.files_loaded == 0 and funding.rest_stored > 0  # the month's file is not out yet
    assert metrics.files_loaded == 2 and metrics.rest_stored > 0  # today from openInterestHist
    lo_us = int(datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp()) * 1_000_000
    want = [t for t in trades if t.trade_time_us >= lo_us]
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT agg_id, first_trade_id, last_trade_id, price FROM agg_trades "
            "WHERE exchange = 'simulator-usdm' ORDER BY agg_id"
        ).fetchall()
        marks = c.execute(
            "SELECT funding_time, funding_rate, mark_price FROM funding_rates ORDER BY 1"
        ).fetchall()
        oi_today = c.execute(
            "SELECT count(*), count(open_interest_value) FROM open_interest WHERE ts >= %s",
            (datetime(today.year, today.month, today.day, tzinfo=timezone.utc),),
        ).fetchone()
    # dumps then REST: every aggregate once, ids tiling the trades up to the last one printed
    assert [r[0] for r in rows] == list(range(rows[0][0], rows[0][0] + len(rows)))
    assert all(b[1] == a[2] + 1 for a, b in zip(rows, rows[1:]))
    assert rows[0][1] == want[0].trade_id and rows[-1][2] == want[-1].trade_id
    # funding from REST carries the mark price of each settlement
    assert len(marks) == len({m[0] for m in marks}) >= 6 and all(m[2] is not None for m in marks)
    for when, rate, _ in marks:
        assert rate == Decimal(funding_units(int(when.timestamp()) * 1_000_000)) / UNIT
    assert oi_today is not None and oi_today[0] == oi_today[1] > 0
    # again: nothing stored twice
    again = [
        fetch_history("BTCUSDT", first, None, kind=k, **kw) for k in ("aggTrades", "fundingRate", "metrics")
    ]
    assert [r.total_stored for r in again] == [0, 0, 0]
    # a symbol the futures market does not list (spot only) is one line
    with pytest.raises(DataError, match="ETHUSDT is not a USD-M futures symbol .* trades on spot only"):
        fetch_history("ETHUSDT", first, None, kind="aggTrades", **kw)
    # futures trades have no keyless REST: days no dump holds are one line too
    with pytest.raises(DataError, match="no keyless REST for trades: fetch those days with --kind aggTrades"):
        fetch_history("BTCUSDT", today, None, kind="trades", **kw)
