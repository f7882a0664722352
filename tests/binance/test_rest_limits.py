"""RestClient against real servers on 127.0.0.1 that misbehave: endless or oversized answers, a long
Retry-After; and market_info telling the local exchange (synthetic or replayed) from a real one.

Each test is bounded in time (asyncio.wait_for) and in bytes: the servers here never stop sending or ask
for a day's wait.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cryptolab.binance.rest import MarketInfo, RestClient
from cryptolab.errors import SourceError
from cryptolab.exchange import LocalExchange
from tests.binance._helpers import MB, run, serve


def test_rest_stops_reading_an_endless_answer_at_the_cap() -> None:
    sent = {"bytes": 0}

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        chunk = b"[" + b"1," * (MB // 2)
        try:
            while sent["bytes"] < 2000 * MB:  # a safety stop far above any cap: the test fails, not hangs
                await resp.write(chunk)
                sent["bytes"] += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def main() -> float:
        runner, host = await serve(endless)
        try:
            async with RestClient(f"http://{host}", max_response_bytes=4 * MB, timeout=30) as r:
                t0 = time.monotonic()
                with pytest.raises(
                    SourceError, match=r"/api/v3/historicalTrades sent more than max_response_bytes=4,194,304"
                ):
                    await r.historical_trades("BTCUSDT", from_id=1)
                assert r.stats.requests == 1  # not retried: the same call would send as much again
                return time.monotonic() - t0
        finally:
            await runner.cleanup()

    took = run(main())
    assert took < 10
    assert sent["bytes"] < 200 * MB  # the client hung up soon after the cap (socket buffers aside)


def test_rest_refuses_an_announced_oversized_answer_without_reading_it() -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "application/json", "Content-Length": str(100 * MB)}
        )
        await resp.prepare(request)
        try:
            await resp.write(b"[")
            await asyncio.sleep(5)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def main() -> None:
        runner, host = await serve(big)
        try:
            async with RestClient(f"http://{host}") as r:  # default cap: 64 MiB
                t0 = time.monotonic()
                with pytest.raises(
                    SourceError, match=r"/api/v3/time announced an answer of 104,857,600 bytes"
                ):
                    await r.server_time()
                assert time.monotonic() - t0 < 3
        finally:
            await runner.cleanup()

    run(main())


def test_rest_answer_under_the_cap_is_read_whole() -> None:
    rows = [
        {
            "id": i,
            "price": "1.00000000",
            "qty": "2.00000000",
            "quoteQty": "2.00000000",
            "time": 1_700_000_000_000,
            "isBuyerMaker": False,
            "isBestMatch": True,
        }
        for i in range(1000)
    ]

    async def page(request: web.Request) -> web.StreamResponse:
        return web.json_response(rows)

    async def main() -> None:
        runner, host = await serve(page)
        try:
            async with RestClient(f"http://{host}", max_response_bytes=1 * MB) as r:
                got = await r.historical_trades("BTCUSDT", from_id=0)
                assert [g["id"] for g in got] == list(range(1000))
        finally:
            await runner.cleanup()

    run(main())


def test_rest_refuses_a_retry_after_beyond_the_bound_at_once() -> None:
    calls = {"n": 0}

    async def banned(request: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        return web.json_response(
            {"code": -1003, "msg": "Way too many requests; IP banned."},
            status=418,
            headers={"Retry-After": "86400"},
        )

    async def main() -> None:
        runner, host = await serve(banned)
        try:
            async with RestClient(f"http://{host}") as r:
                t0 = time.monotonic()
                with pytest.raises(
                    SourceError,
                    match=r"/api/v3/klines answered HTTP 418 asking to wait 86400 s "
                    r"\(Retry-After\) — more than max_retry_after=120 s",
                ):
                    await r.klines("BTCUSDT", "1m")
                assert time.monotonic() - t0 < 2  # did not sleep a day, nor 120 s
        finally:
            await runner.cleanup()

    run(main())
    assert calls["n"] == 1


def test_rest_retry_after_counts_against_one_total_bound() -> None:
    calls = {"n": 0}

    async def busy(request: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        return web.json_response(
            {"code": -1003, "msg": "Too many requests."}, status=429, headers={"Retry-After": "0.4"}
        )

    async def main() -> float:
        runner, host = await serve(busy)
        try:
            async with RestClient(f"http://{host}", max_retries=50, max_retry_after=1.0) as r:
                t0 = time.monotonic()
                with pytest.raises(
                    SourceError,
                    match=r"asking to wait 0.4 s .* max_retry_after=1 s in all for one call "
                    r"\(already waited 0.8 s\)",
                ):
                    await r.server_time()
                return time.monotonic() - t0
        finally:
            await runner.cleanup()

    took = run(main())
    assert calls["n"] == 3 and 0.8 <= took < 3  # waited 0.4 s twice, refused the third wait


def test_market_info_tells_synthetic_from_replayed_and_real(exchange: Any, make_dumps: Any) -> None:
    ex = exchange(rate=100, seed=9)
    files, _ = make_dumps(n=20, symbol="BTCUSDT", seed=4)
    path = files["trades_ms_csv"]

    async def binance_like(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": 1,
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": [
                    {"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"}
                ],
            }
        )

    async def main() -> tuple[MarketInfo, MarketInfo, MarketInfo]:
        async with RestClient(ex.http_url) as r:
            synthetic = await r.market_info(["btcusdt"])
            raw = await r.exchange_info()
            assert raw["cryptolab"] == {"synthetic": True, "source": "simulator", "seed": 9}
        with LocalExchange(replay=[Path(path)], speed=0) as rx:
            async with RestClient(rx.http_url) as r:
                replayed = await r.market_info()
        runner, host = await serve(binance_like)
        try:
            async with RestClient(f"http://{host}") as r:
                real = await r.market_info()
        finally:
            await runner.cleanup()
        return synthetic, replayed, real

    synthetic, replayed, real = run(main())
    assert synthetic == MarketInfo(
        symbols=("BTCUSDT",), synthetic=True, local=True, source="simulator", seed=9
    )
    assert ex.synthetic
    assert replayed == MarketInfo(symbols=("BTCUSDT",), synthetic=False, local=True, source="replay")
    assert real == MarketInfo(symbols=("BTCUSDT",), synthetic=False, local=False, source="exchange")
