"""USD-M REST: hour-long aggTrade windows, rows made exact, the fapi paths and weights the client asks."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from aiohttp import web

from cryptolab.binance.usdm_rest import (
    MAX_AGG_WINDOW_MS,
    UsdmRestClient,
    agg_trade_from_rest,
    agg_windows,
    funding_from_rest,
    open_interest_hist_from_rest,
)
from cryptolab.binance.usdm_streams import stream_urls
from cryptolab.errors import DataError


def test_agg_windows_are_each_under_an_hour_and_tile_the_range() -> None:
    wins = agg_windows(1000, 1000 + 3 * MAX_AGG_WINDOW_MS + 5)
    assert all(e - s < MAX_AGG_WINDOW_MS for s, e in wins)
    assert wins[0][0] == 1000 and wins[-1][1] == 1000 + 3 * MAX_AGG_WINDOW_MS + 4
    assert all(b[0] == a[1] + 1 for a, b in zip(wins, wins[1:]))
    assert agg_windows(5, 5) == []


def test_rest_rows_become_exact_rows() -> None:
    a = agg_trade_from_rest(
        {"a": 7, "p": "1.50", "q": "2", "f": 10, "l": 12, "T": 1721347022950, "m": False}, "btcusdt"
    )
    assert a.symbol == "BTCUSDT" and a.price == Decimal("1.50") and a.source == "backfill"
    f = funding_from_rest(
        {
            "symbol": "BTCUSDT",
            "fundingTime": 1721347200000,
            "fundingRate": "-0.00002000",
            "markPrice": "63950.10000000",
        }
    )
    assert f.funding_rate == Decimal("-0.00002000") and f.mark_price == Decimal("63950.10000000")
    oi = open_interest_hist_from_rest(
        {
            "symbol": "BTCUSDT",
            "sumOpenInterest": "80000.123",
            "sumOpenInterestValue": "5100000000.5",
            "timestamp": 1721347200000,
        }
    )
    assert oi.open_interest == Decimal("80000.123") and oi.time_us == 1721347200000000
    with pytest.raises(ValueError, match="without field"):
        funding_from_rest({"symbol": "BTCUSDT"})


def test_rest_client_asks_the_fapi_paths_with_their_weights() -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.path, dict(request.query)))
        if request.path.endswith("openInterest"):
            return web.json_response({"symbol": "BTCUSDT", "openInterest": "1.5", "time": 1})
        if request.path.endswith("exchangeInfo"):
            return web.json_response(
                {
                    "timezone": "UTC",
                    "serverTime": 1,
                    "symbols": [
                        {"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"},
                        {"symbol": "ETHUSDT", "status": "TRADING", "baseAsset": "ETH", "quoteAsset": "USDT"},
                    ],
                }
            )
        return web.json_response([])

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with UsdmRestClient(f"http://127.0.0.1:{port}") as r:
                await r.agg_trades("btcusdt", from_id=5)
                await r.agg_trades("btcusdt", start_ms=0, end_ms=MAX_AGG_WINDOW_MS - 1)
                with pytest.raises(DataError, match="not under one hour"):
                    await r.agg_trades("btcusdt", start_ms=0, end_ms=MAX_AGG_WINDOW_MS)
                await r.funding_rate("btcusdt", start_ms=1, end_ms=2)
                assert (await r.open_interest("btcusdt"))["openInterest"] == "1.5"
                await r.open_interest_hist("btcusdt", start_ms=int(time.time() * 1000) - 86_400_000)
                with pytest.raises(DataError, match="reaches back 30 days only"):
                    await r.open_interest_hist("btcusdt", start_ms=int(time.time() * 1000) - 31 * 86_400_000)
                info, stored = await r.usdm_market(["BTCUSDT"])
                assert info.symbols == ("BTCUSDT",) and stored == "binance-usdm"
                assert r.stats.weight_used == 20 + 20 + 1 + 1 + 1 + 1
        finally:
            await runner.cleanup()

    asyncio.run(asyncio.wait_for(main(), 30))
    paths = [p for p, _ in seen]
    assert paths == [
        "/fapi/v1/aggTrades",
        "/fapi/v1/aggTrades",
        "/fapi/v1/fundingRate",
        "/fapi/v1/openInterest",
        "/futures/data/openInterestHist",
        "/fapi/v1/exchangeInfo",
    ]
    assert seen[0][1] == {"symbol": "BTCUSDT", "limit": "1000", "fromId": "5"}
    assert seen[4][1]["period"] == "5m"


def test_futures_roots_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert UsdmRestClient().base_url == "https://fapi.binance.com"
    assert stream_urls(["btcusdt"], ["aggTrade"])["market"].startswith("wss://fstream.binance.com/market/")
    monkeypatch.setenv("CRYPTOLAB_FAPI_URL", "http://127.0.0.1:1/")
    monkeypatch.setenv("CRYPTOLAB_FSTREAM_URL", "ws://127.0.0.1:2")
    assert UsdmRestClient().base_url == "http://127.0.0.1:1"
    assert stream_urls(["btcusdt"], ["aggTrade"]) == {
        "market": "ws://127.0.0.1:2/market/stream?streams=btcusdt@aggTrade"
    }
