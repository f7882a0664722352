"""The local exchange's WebSocket streams, talked to with real clients over 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cryptolab.exchange import LocalExchange

# Key → type of a real Binance spot `@trade` payload (the 2021 sample's b/a fields
# were removed by Binance in 2024; today's payload is exactly this).
TRADE_SHAPE = {"e": str, "E": int, "s": str, "t": int, "p": str, "q": str, "T": int, "m": bool, "M": bool}
DEC8 = re.compile(r"^[0-9]+\.[0-9]{8}$")


def connect(url: str, **kw: Any) -> Any:
    """A websockets client that never stops reading (a full queue would stall its close)."""
    return websockets.connect(url, max_queue=None, **kw)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def recv_json(ws: Any, n: int, *, timeout: float = 10.0) -> list[dict]:
    out = []
    while len(out) < n:
        out.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    return out


async def send(ws: Any, msg: Any) -> None:
    """Send a JSON method, then pause: Binance allows 5 incoming messages per second."""
    await ws.send(msg if isinstance(msg, str) else json.dumps(msg))
    await asyncio.sleep(0.21)


def check_trade_shape(d: dict) -> None:
    assert set(d) == set(TRADE_SHAPE), sorted(d)
    for k, typ in TRADE_SHAPE.items():
        assert type(d[k]) is typ, (k, d[k])
    assert d["e"] == "trade" and d["M"] is True
    assert DEC8.match(d["p"]) and DEC8.match(d["q"])
    assert Decimal(d["p"]) > 0 and Decimal(d["q"]) > 0
    assert d["E"] >= d["T"]


def test_raw_stream_payload_shape_and_log(exchange: Any) -> None:
    ex: LocalExchange = exchange(symbols=["btcusdt"], rate=300)

    async def main() -> list[dict]:
        async with connect(f"{ex.ws_url}/ws/btcusdt@trade") as ws:
            return await recv_json(ws, 60)

    msgs = run(main())
    for d in msgs:
        check_trade_shape(d)
        assert d["s"] == "BTCUSDT"
    ids = [d["t"] for d in msgs]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "trade ids must be consecutive"
    log = {t.trade_id: t for t in ex.trade_log("btcusdt")}
    for d in msgs:
        t = log[d["t"]]
        assert (t.price, t.qty, t.is_buyer_maker) == (Decimal(d["p"]), Decimal(d["q"]), d["m"])
        assert t.trade_time_us == d["T"] * 1000 and t.event_time_us == d["E"] * 1000
        assert t.source == "simulator" and t.symbol == "BTCUSDT" and t.exchange == "binance"
        assert str(t.price) == d["p"]  # the exact string, trailing zeros kept


def test_combined_stream_and_microseconds(exchange: Any) -> None:
    ex: LocalExchange = exchange(rate=400)

    async def main() -> tuple[list[dict], list[dict]]:
        url = f"{ex.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade"
        async with connect(url) as a, connect(url + "&timeUnit=MICROSECOND") as b:
            return await recv_json(a, 80), await recv_json(b, 80)

    ms, us = run(main())
    seen = set()
    for msgs in (ms, us):
        last: dict[str, int] = {}
        for w in msgs:
            assert set(w) == {"stream", "data"}
            d = w["data"]
            check_trade_shape(d)
            assert w["stream"] == d["s"].lower() + "@trade"
            if d["s"] in last:
                assert d["t"] == last[d["s"]] + 1
            last[d["s"]] = d["t"]
            seen.add(d["s"])
    assert seen == {"BTCUSDT", "ETHUSDT"}
    exact = {
        (t.symbol, t.trade_id): t for s in ("btcusdt", "ethusdt") for t in ex.trade_log(s, "MICROSECOND")
    }
    for w in us:
        d = w["data"]
        t = exact[(d["s"], d["t"])]
        assert d["T"] > 10**15 and d["T"] == t.trade_time_us and d["E"] == t.event_time_us
    for w in ms:
        d = w["data"]
        t = exact[(d["s"], d["t"])]
        assert d["T"] == t.trade_time_us // 1000


def test_subscribe_unsubscribe_list(exchange: Any) -> None:
    ex: LocalExchange = exchange(rate=400)

    async def main() -> None:
        async with connect(f"{ex.ws_url}/ws") as ws:
            await send(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1})
            first = json.loads(await ws.recv())
            assert first == {"result": None, "id": 1}
            trades = await recv_json(ws, 5)
            assert all(t["s"] == "BTCUSDT" for t in trades)
            await send(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 2})
            await send(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 3})
            replies = []
            while len(replies) < 2:
                m = json.loads(await ws.recv())
                if "id" in m:
                    replies.append(m)
            assert replies == [{"result": ["btcusdt@trade"], "id": 2}, {"result": None, "id": 3}]
            # after the UNSUBSCRIBE reply no BTCUSDT frame may follow
            await send(ws, {"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 4})
            m = json.loads(await ws.recv())
            assert m == {"result": None, "id": 4}
            eth = await recv_json(ws, 5)
            assert all(t["s"] == "ETHUSDT" for t in eth)
            await send(ws, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5})
            await send(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 6})
            got: dict[Any, Any] = {}
            wrapped = 0
            while len(got) < 2 or wrapped < 3:
                m = json.loads(await ws.recv())
                if "id" in m and "result" in m:
                    got[m["id"]] = m["result"]
                elif 5 in got:
                    assert set(m) == {"stream", "data"} and m["stream"] == "ethusdt@trade"
                    wrapped += 1
            assert got == {5: None, 6: True}
        # errors come back in Binance's shape, the connection stays usable
        async with connect(f"{ex.ws_url}/ws") as ws:
            await send(ws, "{not json")
            e1 = json.loads(await ws.recv())
            await send(ws, {"method": "FROBNICATE", "params": [], "id": 9})
            e2 = json.loads(await ws.recv())
            await send(ws, {"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 10})
            e3 = json.loads(await ws.recv())
            await send(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": "abc"})
            ok = json.loads(await ws.recv())
        assert e1["error"]["code"] == 3 and e1["id"] is None
        assert e2["error"]["code"] == 2 and e2["id"] == 9 and "SUBSCRIBE" in e2["error"]["msg"]
        assert e3 == {"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": 10}
        assert ok == {"result": None, "id": "abc"}

    run(main())


def test_stream_limit_1024(exchange: Any) -> None:
    ex: LocalExchange = exchange(rate=50)
    names = [f"sym{i}usdt@trade" for i in range(1025)]

    async def main() -> None:
        async with connect(f"{ex.ws_url}/ws", max_size=2**22) as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": names[:1024], "id": 1}))
            assert json.loads(await ws.recv()) == {"result": None, "id": 1}
            await asyncio.sleep(0.3)
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": names[1024:], "id": 2}))
            err = json.loads(await ws.recv())
            assert err["id"] == 2 and err["error"]["code"] == 2 and "1024" in err["error"]["msg"]
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{ex.ws_url}/stream?streams=" + "/".join(names)):
                pass
        assert info.value.response.status_code == 400

    run(main())


def test_ping_pong_and_stale_client_dropped(exchange: Any) -> None:
    ex: LocalExchange = exchange(rate=20, ping_interval=0.2, ping_timeout=0.4)

    async def main() -> tuple[int, float]:
        async with aiohttp.ClientSession() as s:
            good = await s.ws_connect(f"{ex.ws_url}/ws/btcusdt@trade", autoping=False)
            bad = await s.ws_connect(f"{ex.ws_url}/ws/btcusdt@trade", autoping=False)
            t0 = time.monotonic()
            pings = 0

            async def answer() -> None:
                nonlocal pings
                while time.monotonic() - t0 < 1.6:
                    msg = await good.receive(timeout=2)
                    if msg.type == aiohttp.WSMsgType.PING:
                        pings += 1
                        await good.pong(msg.data)
                    assert msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.TEXT), msg

            async def ignore() -> float:
                while True:
                    msg = await bad.receive(timeout=3)
                    if msg.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.CLOSING,
                    ):
                        return time.monotonic() - t0

            _, dropped_after = await asyncio.gather(answer(), ignore())
            assert not good.closed
            await good.close()
            return pings, dropped_after

    pings, dropped_after = run(main())
    assert pings >= 5  # every 0.2 s for 1.6 s
    assert 0.5 <= dropped_after <= 1.2  # first ping at 0.2 s + 0.4 s to answer
    assert ex.stats["stale_drops"] == 1


def test_max_age_sends_server_shutdown_then_closes(exchange: Any) -> None:
    ex: LocalExchange = exchange(rate=50, max_connection_age=1.0, shutdown_notice=0.4)

    async def main() -> tuple[float, float, int | None]:
        async with connect(f"{ex.ws_url}/stream?streams=btcusdt@trade") as ws:
            t0 = time.monotonic()
            shutdown_at = None
            try:
                while True:
                    m = json.loads(await ws.recv())
                    if m.get("e") == "serverShutdown":
                        assert isinstance(m["E"], int)
                        shutdown_at = time.monotonic() - t0
            except ConnectionClosed as exc:
                assert shutdown_at is not None, "no serverShutdown before the close"
                return shutdown_at, time.monotonic() - t0, exc.rcvd.code if exc.rcvd else None

    shutdown_at, closed_at, code = run(main())
    assert 0.45 <= shutdown_at <= 0.85
    assert 0.9 <= closed_at <= 1.6
    assert code == 1000
    assert ex.stats["max_age_closes"] == 1


def test_more_than_5_incoming_messages_per_second_disconnects(exchange: Any) -> None:
    ex: LocalExchange = exchange(rate=20)

    async def main() -> int | None:
        async with connect(f"{ex.ws_url}/ws") as ws:
            for i in range(5):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            for _ in range(5):
                assert "result" in json.loads(await ws.recv())
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 99}))
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await ws.recv()
            return info.value.rcvd.code if info.value.rcvd else None

    assert run(main()) == 1008
    assert ex.stats["rate_limit_drops"] == 1


def test_same_seed_same_trades_and_controls(exchange: Any) -> None:
    a = exchange(symbols=["btcusdt", "solusdt"], rate=2000, seed=42, max_trades=300)
    b = exchange(symbols=["btcusdt", "solusdt"], rate=2000, seed=42, max_trades=300)
    c = exchange(symbols=["btcusdt", "solusdt"], rate=2000, seed=43, max_trades=300)
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and min(x.printed(s) for x in (a, b, c) for s in ("btcusdt", "solusdt")) < 300
    ):
        time.sleep(0.05)

    def shape(ex: LocalExchange, s: str) -> list[tuple]:
        log = ex.trade_log(s, "MICROSECOND")
        t0 = log[0].trade_time_us
        return [(t.trade_id, t.price, t.qty, t.is_buyer_maker, t.trade_time_us - t0) for t in log]

    for s in ("btcusdt", "solusdt"):
        assert len(shape(a, s)) == 300
        assert shape(a, s) == shape(b, s)
        assert shape(a, s) != shape(c, s)
    sol = a.trade_log("solusdt")[0]
    assert sol.price.as_tuple().exponent == -8 and sol.price > 10

    # pause / resume / stop
    d = exchange(symbols=["btcusdt"], rate=500)
    time.sleep(0.2)
    d.pause_market()
    n = d.printed("btcusdt")
    time.sleep(0.4)
    assert d.printed("btcusdt") == n
    d.resume_market()
    time.sleep(0.4)
    assert d.printed("btcusdt") > n
    d.set_rate(5000)
    n = d.printed("btcusdt")
    time.sleep(0.5)
    assert d.printed("btcusdt") - n > 500
    d.stop_market()
    n = d.printed("btcusdt")
    time.sleep(0.3)
    assert d.printed("btcusdt") == n
