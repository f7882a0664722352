"""USD-M futures edge: stream payloads → exact rows or dead letters, routed URLs, REST calls."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiohttp import web

from cryptolab.binance.usdm import decode_usdm
from cryptolab.binance.usdm_rest import (
    MAX_AGG_WINDOW_MS,
    UsdmRestClient,
    agg_trade_from_rest,
    agg_windows,
    funding_from_rest,
    open_interest_hist_from_rest,
)
from cryptolab.binance.usdm_streams import route_of, stream_urls
from cryptolab.binance.wire import Control
from cryptolab.errors import DataError
from cryptolab.markets import AggTrade, Liquidation, MarkPrice
from cryptolab.model import DeadLetter

NOW = 1_721_347_030_000_000
AGG = {
    "e": "aggTrade",
    "E": 1721347022956,
    "s": "BTCUSDT",
    "a": 2201,
    "p": "63943.90",
    "q": "0.003",
    "f": 5182005737,
    "l": 5182005739,
    "T": 1721347022950,
    "m": True,
}
MARK = {
    "e": "markPriceUpdate",
    "E": 1721347023000,
    "s": "BTCUSDT",
    "p": "63950.10000000",
    "i": "63960.20434783",
    "P": "63961.01",
    "r": "-0.00012345",
    "T": 1721376000000,
}
FORCE = {
    "e": "forceOrder",
    "E": 1721347022999,
    "o": {
        "s": "BTCUSDT",
        "S": "SELL",
        "o": "LIMIT",
        "f": "IOC",
        "q": "0.014",
        "p": "63800.1",
        "ap": "63810.25",
        "X": "FILLED",
        "l": "0.010",
        "z": "0.014",
        "T": 1721347022990,
    },
}


def _dec(d: dict[str, Any], stream: str | None = None) -> Any:
    body = {"stream": stream, "data": d} if stream else d
    return decode_usdm(orjson.dumps(body), received_at_us=NOW)


def test_agg_trade_mark_price_and_liquidation_become_exact_rows() -> None:
    a = _dec(AGG, "btcusdt@aggTrade")
    assert isinstance(a, AggTrade) and a.exchange == "binance-usdm"
    assert (a.agg_id, a.price, a.qty, a.first_trade_id, a.last_trade_id) == (
        2201,
        Decimal("63943.90"),
        Decimal("0.003"),
        5182005737,
        5182005739,
    )
    assert a.trade_time_us == 1721347022950000 and a.is_buyer_maker is True
    m = _dec(MARK, "btcusdt@markPrice@1s")
    assert isinstance(m, MarkPrice)
    assert str(m.mark_price) == "63950.10000000" and str(m.index_price) == "63960.20434783"
    assert m.funding_rate == Decimal("-0.00012345") and m.next_funding_time_us == 1721376000000000
    liq = _dec(FORCE)
    assert isinstance(liq, Liquidation) and liq.side == "SELL" and liq.status == "FILLED"
    assert (liq.price, liq.avg_price, liq.qty, liq.last_filled_qty, liq.filled_qty) == (
        Decimal("63800.1"),
        Decimal("63810.25"),
        Decimal("0.014"),
        Decimal("0.010"),
        Decimal("0.014"),
    )


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"p": 63950.1}, "p must be a decimal string"),
        ({"r": "1.5"}, "absurd r"),
        ({"r": "0.0001e3"}, "r is not a plain decimal"),
        ({"s": "btc usdt"}, "bad symbol"),
        ({"E": "soon"}, "E must be an integer time"),
    ],
)
def test_malformed_mark_price_is_a_dead_letter(change: dict[str, Any], reason: str) -> None:
    out = _dec({**MARK, **change})
    assert isinstance(out, DeadLetter) and reason in out.reason and out.reason.startswith("markPriceUpdate:")


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"S": "LONG"}, "side S must be BUY or SELL"),
        ({"q": "-1"}, "absurd q"),
        ({"z": None}, "z must be a decimal string"),
        ({"T": 1}, "absurd T"),
    ],
)
def test_malformed_force_order_is_a_dead_letter(change: dict[str, Any], reason: str) -> None:
    out = _dec({**FORCE, "o": {**FORCE["o"], **change}})
    assert isinstance(out, DeadLetter) and reason in out.reason and out.symbol == "BTCUSDT"
    missing = _dec({"e": "forceOrder", "E": 1})
    assert isinstance(missing, DeadLetter) and "order object" in missing.reason


def test_other_messages_are_controls_or_dead_letters() -> None:
    assert isinstance(decode_usdm(b'{"result":null,"id":1}'), Control)
    assert isinstance(decode_usdm(b'{"e":"serverShutdown","E":1}'), Control)
    assert "unknown event type" in decode_usdm(b'{"e":"kline"}').reason  # type: ignore[union-attr]
    assert "invalid JSON" in decode_usdm(b'{"e":').reason  # type: ignore[union-attr]
    bad = _dec({**AGG, "l": 1})
    assert isinstance(bad, DeadLetter) and "below f" in bad.reason


def test_routed_stream_urls() -> None:
    urls = stream_urls(
        ["BTCUSDT", "ethusdt"],
        ["aggTrade", "markPrice@1s", "forceOrder", "depth@100ms"],
        base="ws://127.0.0.1:9/",
    )
    assert urls == {
        "market": "ws://127.0.0.1:9/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s/btcusdt@forceOrder/"
        "ethusdt@aggTrade/ethusdt@markPrice@1s/ethusdt@forceOrder",
        "public": "ws://127.0.0.1:9/public/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms",
    }
    assert route_of("btcusdt@bookTicker") == "public"
    with pytest.raises(DataError, match="unknown futures stream"):
        route_of("btcusdt@trade")


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
