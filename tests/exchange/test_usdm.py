"""The local exchange's futures market: routed streams, futures messages, /fapi REST, its logs."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from cryptolab.binance.usdm import decode_usdm
from cryptolab.markets import AggTrade, Liquidation, MarkPrice


def _collect(url: str, seconds: float) -> list[dict[str, Any]]:
    async def main() -> list[bytes]:
        from cryptolab.binance import ws as wsclient

        got: list[bytes] = []
        c = await wsclient.connect(url, lambda m: got.append(bytes(m)), open_timeout=5)
        await asyncio.sleep(seconds)
        await c.close()
        return got

    return [json.loads(m) for m in asyncio.run(main())]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_routed_streams_carry_their_own_kinds_and_unrouted_only_the_public_ones(exchange: Any) -> None:
    ex = exchange(symbols=["btcusdt"], rate=200.0, markets=["spot", "usdm"])
    streams = (
        "btcusdt@aggTrade/btcusdt@markPrice@1s/btcusdt@forceOrder/btcusdt@depth@100ms/btcusdt@bookTicker"
    )
    market = _collect(f"{ex.fws_url}/market/stream?streams={streams}", 3.2)
    kinds = {m["stream"] for m in market}
    assert {"btcusdt@aggTrade", "btcusdt@markPrice@1s"} <= kinds
    assert not kinds & {"btcusdt@depth@100ms", "btcusdt@bookTicker"}
    public = _collect(f"{ex.fws_url}/stream?streams={streams}", 1.5)
    assert {m["stream"] for m in public} == {"btcusdt@depth@100ms", "btcusdt@bookTicker"}
    diffs = [m["data"] for m in public if m["stream"] == "btcusdt@depth@100ms"]
    assert all(b["pu"] == a["u"] for a, b in zip(diffs, diffs[1:]))
    assert all(
        m["data"]["e"] == "bookTicker" and "T" in m["data"]
        for m in public
        if m["stream"] == "btcusdt@bookTicker"
    )
    rows = [decode_usdm(json.dumps(m).encode(), exchange="simulator-usdm") for m in market]
    aggs = [r for r in rows if isinstance(r, AggTrade)]
    assert [a.agg_id for a in aggs] == list(range(aggs[0].agg_id, aggs[0].agg_id + len(aggs)))
    log = {a.agg_id: a for a in ex.usdm_log("agg", "btcusdt")}
    assert all(log[a.agg_id][:9] == a[:9] for a in aggs)
    marks = [r for r in rows if isinstance(r, MarkPrice)]
    assert marks and all(m.funding_rate is not None and m.next_funding_time_us for m in marks)
    sent = {m.event_time_us: m for m in ex.usdm_log("mark", "btcusdt")}
    assert all(sent[m.event_time_us][:8] == m[:8] for m in marks)
    liqs = [r for r in rows if isinstance(r, Liquidation)]
    assert all(r[:13] in {x[:13] for x in ex.usdm_log("liquidation", "btcusdt")} for r in liqs)


def test_trade_ids_skip_between_aggregates_and_fapi_pages_them_by_from_id(exchange: Any) -> None:
    ex = exchange(symbols=["btcusdt"], rate=400.0, markets="spot,usdm")
    import time

    time.sleep(4)
    log = ex.usdm_log("agg", "btcusdt")
    assert [a.agg_id for a in log] == list(range(len(log)))
    assert any(b.first_trade_id > a.last_trade_id + 1 for a, b in zip(log, log[1:])), "no trade ids skipped"
    assert all(b.first_trade_id > a.last_trade_id for a, b in zip(log, log[1:]))
    page = _get(f"{ex.fhttp_url}/fapi/v1/aggTrades?symbol=BTCUSDT&fromId=5&limit=20")
    assert [r["a"] for r in page] == list(range(5, 25))
    assert [(r["f"], r["l"], r["p"]) for r in page] == [
        (a.first_trade_id, a.last_trade_id, f"{a.price:.8f}") for a in log[5:25]
    ]
    snap = _get(f"{ex.fhttp_url}/fapi/v1/depth?symbol=BTCUSDT&limit=5")
    assert {"lastUpdateId", "E", "T", "bids", "asks"} <= set(snap)
    assert _get(f"{ex.fhttp_url}/fapi/v1/openInterest?symbol=BTCUSDT")["openInterest"]
    funding = _get(f"{ex.fhttp_url}/fapi/v1/fundingRate?symbol=BTCUSDT&limit=1000")
    times = [f["fundingTime"] for f in funding]
    assert len(times) >= 80 and all(b - a == 8 * 3_600_000 for a, b in zip(times, times[1:]))


def test_the_cli_announces_the_futures_ports_on_its_first_line() -> None:
    from cryptolab.exchange import LocalExchange

    ex = LocalExchange(symbols=["btcusdt"], rate=50.0, seed=1, process=True, markets="spot,usdm").start()
    try:
        assert ex.fport and ex.fport != ex.port
        info = _get(f"{ex.fhttp_url}/fapi/v1/exchangeInfo")
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT"] and info["symbols"][0][
            "contractType"
        ] == "PERPETUAL"
        assert info["cryptolab"]["synthetic"] is True
        assert ex.inject("gap", market="usdm", n=2) == 1
    finally:
        ex.stop()
