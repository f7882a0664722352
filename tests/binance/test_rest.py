"""RestClient against the local exchange (and a tiny real server for odd answers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from aiohttp import web

from cryptolab.binance.rest import RestClient
from cryptolab.errors import SourceError

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_endpoints_against_local_exchange(exchange: Any) -> None:
    ex = exchange(rate=2000, seed=3)
    time.sleep(0.8)
    ex.stop_market()

    async def main() -> None:
        async with RestClient(ex.http_url) as r:
            assert abs(await r.server_time() - time.time() * 1000) < 5000
            info = await r.exchange_info(["btcusdt", "ETHUSDT"])
            assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
            log = ex.trade_log("btcusdt")
            page = await r.historical_trades("btcusdt", from_id=log[10].trade_id, limit=5)
            assert [p["id"] for p in page] == [t.trade_id for t in log[10:15]]
            assert [Decimal(p["qty"]) for p in page] == [t.qty for t in log[10:15]]
            recent = await r.recent_trades("BTCUSDT", limit=3)
            assert [p["id"] for p in recent] == [t.trade_id for t in log[-3:]]
            first_s = log[0].trade_time_us // 1_000_000 * 1000  # klines open at or after startTime
            kl = await r.klines("BTCUSDT", "1s", start_ms=first_s, end_ms=log[-1].trade_time_us // 1000)
            assert sum(int(k[8]) for k in kl) == len(log)
            agg = await r.agg_trades("BTCUSDT", from_id=0, limit=1000)
            assert agg[0]["f"] == log[0].trade_id
            tick = await r.ticker_24hr("BTCUSDT")
            assert tick["count"] == len(log)
            assert r.stats.requests == 7 and r.stats.weight_used == 1 + 20 + 25 + 25 + 2 + 4 + 2
            assert r.used_weight_1m >= r.stats.weight_used or time.time() % 60 < 2
        async with RestClient(ex.http_url, time_unit="MICROSECOND") as r:
            assert await r.server_time() > 10**15
            (row,) = await r.historical_trades("BTCUSDT", from_id=log[0].trade_id, limit=1)
            assert row["time"] == ex.trade_log("btcusdt", "MICROSECOND")[0].trade_time_us

    run(main())


def test_retries_429_5xx_and_timeouts_then_succeeds(exchange: Any) -> None:
    ex = exchange(rate=50)

    async def main() -> RestClient:
        async with RestClient(ex.http_url, timeout=0.4) as r:
            ex.inject("rest_429", n=2)
            t0 = time.monotonic()
            await r.server_time()
            assert time.monotonic() - t0 >= 2.0  # slept Retry-After: 1 twice
            ex.inject("rest_500", n=2)
            ex.inject("rest_timeout", n=1, seconds=1.0)
            await r.server_time()
            return r

    r = run(main())
    assert (r.stats.retries_429, r.stats.retries_5xx, r.stats.timeouts) == (2, 2, 1)
    assert r.stats.requests == 1 + 2 + 1 + 2 + 1
    c = ex.fault_counts
    assert (c["rest_429"], c["rest_500"], c["rest_timeout"]) == (2, 2, 1)


def test_gives_up_with_actionable_errors(exchange: Any) -> None:
    ex = exchange(rate=50)

    async def main() -> None:
        async with RestClient(ex.http_url, max_retries=1) as r:
            ex.inject("rest_500", n=2)
            with pytest.raises(SourceError, match="answered HTTP 500 2 times"):
                await r.server_time()
            ex.inject("rest_429", n=2)
            with pytest.raises(SourceError, match=r"HTTP 429 \(rate limit; Retry-After 1 s\)"):
                await r.server_time()
            with pytest.raises(SourceError, match="unknown symbol NOPEUSDT"):
                await r.historical_trades("nopeusdt", from_id=1)
            with pytest.raises(SourceError, match="unknown symbol"):
                await r.exchange_info(["NOPEUSDT"])
            with pytest.raises(SourceError, match="-1120"):
                await r.klines("BTCUSDT", "7m")
        async with RestClient("http://127.0.0.1:9") as r:  # nothing listens on port 9
            with pytest.raises(SourceError, match="no network\\? try the local exchange"):
                await r.server_time()
        async with RestClient("http://no-such-host.invalid") as r:
            with pytest.raises(SourceError, match="cannot reach http://no-such-host.invalid"):
                await r.server_time()

    run(main())


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def test_http_451_suggests_binance_us() -> None:
    async def main() -> None:
        async def h(request: web.Request) -> web.Response:
            return web.json_response(
                {"code": 0, "msg": "Service unavailable from a restricted location"}, status=451
            )

        runner, url = await serve(h)
        try:
            async with RestClient(url) as r:
                with pytest.raises(SourceError, match='HTTP 451 .* use source "binance.us"'):
                    await r.exchange_info()
        finally:
            await runner.cleanup()

    run(main())


def test_waits_for_next_minute_near_the_weight_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(s: float) -> None:  # the minute boundary is up to 60 s away: record, don't wait
        slept.append(s)
        await real_sleep(0)

    async def main() -> None:
        used = {"n": 0}

        async def h(request: web.Request) -> web.Response:
            used["n"] += 25
            return web.json_response([], headers={"X-MBX-USED-WEIGHT-1M": str(used["n"])})

        runner, url = await serve(h)
        try:
            monkeypatch.setattr(asyncio, "sleep", fake_sleep)  # the module the client sleeps with
            async with RestClient(url, weight_budget=100) as r:
                for _ in range(3):
                    await r.historical_trades("BTCUSDT", from_id=1)
                assert not slept and r.used_weight_1m == 75
                await r.historical_trades("BTCUSDT", from_id=1)  # 75 + 25 > 90 % of 100: wait first
                assert len(slept) == 1 and 0 < slept[0] <= 60.1 and r.stats.budget_waits == 1
        finally:
            monkeypatch.undo()
            await runner.cleanup()

    run(main())
