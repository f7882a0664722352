"""Replay of dumps and recordings through the local exchange (files made by the test)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets

from cryptolab.exchange import LocalExchange


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def read_stream(url: str, n: int) -> list[tuple[float, str]]:
    out = []
    async with websockets.connect(url, max_queue=None) as ws:
        while len(out) < n:
            msg = await asyncio.wait_for(ws.recv(), 10)
            out.append((time.monotonic(), msg))
    return out


def test_us_dump_and_ms_dump_replay_the_same_trades(make_dumps: Any, exchange: Any) -> None:
    files, trades = make_dumps(n=300)
    n = len(trades)
    streams = {}
    logs = {}
    for name in ("trades_us_zip", "trades_ms_csv", "stream_gz"):
        ex: LocalExchange = exchange(symbols=None, replay=[files[name]], speed=0)
        assert ex.symbols == ["BTCUSDT"]
        assert ex.printed("btcusdt") == 0  # a replay waits for its first subscriber
        ms = run(read_stream(f"{ex.ws_url}/ws/btcusdt@trade", n))
        streams[name] = [m for _, m in ms]
        logs[name] = ex.trade_log("BTCUSDT")
        us_log = ex.trade_log("BTCUSDT", "MICROSECOND")
        assert [t.trade_id for t in us_log] == [t.trade_id for t in trades]
        assert all(t.source == "replay" for t in us_log)
        if name != "trades_ms_csv":  # µs sources keep their µs
            assert [t.trade_time_us for t in us_log] == [t.trade_time_us for t in trades]
    # the ms stream of every source is byte for byte the same, except E (dumps have none: E = T)
    def strip_e(frames: list[str]) -> list[dict]:
        return [{k: v for k, v in json.loads(f).items() if k != "E"} for f in frames]

    assert streams["trades_us_zip"] == streams["trades_ms_csv"]
    assert strip_e(streams["stream_gz"]) == strip_e(streams["trades_us_zip"])
    assert logs["trades_us_zip"] == logs["trades_ms_csv"]
    for f, t in zip(streams["trades_us_zip"], trades):
        d = json.loads(f)
        assert (d["t"], d["p"], d["q"], d["m"], d["T"]) == (
            t.trade_id,
            f"{t.price:f}",
            f"{t.qty:f}",
            t.is_buyer_maker,
            t.trade_time_us // 1000,
        )
    rec = [json.loads(f) for f in streams["stream_gz"]]
    assert [d["E"] for d in rec] == [t.event_time_us // 1000 for t in trades]  # the recording's own E


def test_replay_pace_and_rest(make_dumps: Any, exchange: Any) -> None:
    files, trades = make_dumps(n=40, seed=11)
    span_s = (trades[-1].trade_time_us - trades[0].trade_time_us) / 1e6
    assert span_s > 0.3
    ex: LocalExchange = exchange(symbols=["btcusdt"], replay=[files["trades_us_csv"]], speed=0.5)
    got = run(read_stream(f"{ex.ws_url}/ws/btcusdt@trade?timeUnit=MICROSECOND", len(trades)))
    t0 = got[0][0]
    for (arrived, frame), t in zip(got, trades):
        d = json.loads(frame)
        assert d["t"] == t.trade_id and d["T"] == t.trade_time_us
        due = (t.trade_time_us - trades[0].trade_time_us) / 1e6 / 0.5
        assert due - 0.02 <= arrived - t0 <= due + 0.1
    url = f"{ex.http_url}/api/v3/historicalTrades?symbol=BTCUSDT&fromId={trades[0].trade_id}&limit=1000"
    import urllib.request

    rows = json.loads(urllib.request.urlopen(url).read())
    assert [r["id"] for r in rows] == [t.trade_id for t in trades]


def test_replay_of_two_symbols_merges_by_time(make_dumps: Any, exchange: Any) -> None:
    btc, tb = make_dumps(n=60, symbol="BTCUSDT", seed=1)
    eth, te = make_dumps(n=60, symbol="ETHUSDT", seed=2)
    ex: LocalExchange = exchange(symbols=None, replay=[btc["trades_us_zip"], eth["stream_ms_txt"]], speed=0)
    assert sorted(ex.symbols) == ["BTCUSDT", "ETHUSDT"]
    frames = run(read_stream(f"{ex.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade", 120))
    data = [json.loads(f)["data"] for _, f in frames]
    assert [d["T"] for d in data] == sorted(d["T"] for d in data)
    assert [d["t"] for d in data if d["s"] == "ETHUSDT"] == [t.trade_id for t in te]
    assert [t.trade_id for t in ex.trade_log("btcusdt")] == [t.trade_id for t in tb]
