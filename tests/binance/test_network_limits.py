"""Limits on what the network sends, against real servers on 127.0.0.1 (issue 13, item 4),
and the local exchange saying what it serves (item 7).

Each test is bounded in time (asyncio.wait_for) and in bytes: the servers here never
stop sending, ask for a day's wait, or send a 50 MB frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from cryptolab.binance import ws as wsclient
from cryptolab.binance.rest import MarketInfo, RestClient
from cryptolab.errors import SourceError
from cryptolab.exchange import LocalExchange

T = TypeVar("T")
MB = 1024 * 1024


def run(coro: Awaitable[T], timeout: float = 60) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, f"127.0.0.1:{port}"


# ---------------------------------------------------------------------------- REST size cap


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


# ---------------------------------------------------------------------------- Retry-After bound


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


# ---------------------------------------------------------------------------- WebSocket frame cap


def test_ws_oversized_frame_is_reported_then_the_connection_closes() -> None:
    """A 50 MB frame: on_oversized(size, head) once, close code 1009, nothing buffered; the
    messages before it are delivered, and a new connection works (the caller reconnects)."""
    served = {"connections": 0}

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        served["connections"] += 1
        try:
            await ws.send_bytes(b'{"n":1}')
            if served["connections"] == 1:
                await ws.send_bytes(b'{"e":"trade","pad":"' + b"x" * (50 * MB) + b'"}')
                await ws.receive(timeout=10)
            else:
                await ws.send_bytes(b'{"n":2}')
                await ws.receive(timeout=10)
        except (ConnectionError, asyncio.TimeoutError, RuntimeError):
            pass
        return ws

    async def main() -> None:
        runner, host = await serve(ws_handler)
        try:
            got: list[bytes] = []
            oversized: list[tuple[int, bytes]] = []
            t0 = time.monotonic()
            conn = await wsclient.connect(
                f"ws://{host}/ws",
                lambda m: got.append(bytes(m)),
                max_size=1 * MB,
                on_oversized=lambda size, head: oversized.append((size, head)),
            )
            reason = await asyncio.wait_for(conn.closed, 15)
            assert time.monotonic() - t0 < 10
            assert got == [b'{"n":1}']
            assert len(oversized) == 1
            size, head = oversized[0]
            assert size == len(b'{"e":"trade","pad":"') + 50 * MB + 2
            assert head.startswith(b'{"e":"trade","pad":"xxx') and len(head) == wsclient.OVERSIZED_HEAD
            assert (
                isinstance(reason, wsclient.OversizedMessage)
                and reason.size == size
                and reason.max_size == MB
            )
            assert conn.close_code == 1009 and conn.oversized is reason
            # a fresh connection (what the capture does next) works
            got2: list[bytes] = []
            conn2 = await wsclient.connect(
                f"ws://{host}/ws", lambda m: got2.append(bytes(m)), max_size=1 * MB
            )
            for _ in range(100):
                if len(got2) == 2:
                    break
                await asyncio.sleep(0.05)
            assert got2 == [b'{"n":1}', b'{"n":2}']
            assert conn2.close_code is None  # still open
            await conn2.close()
            assert conn2.close_code == 1000
        finally:
            await runner.cleanup()

    run(main())


def test_ws_oversized_fragmented_message_counts_all_fragments() -> None:
    """A message cut in frames: the cap is on the whole message, the head is its start."""

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        # three raw frames of 600 kB: TEXT (fin=0), CONT (fin=0), CONT (fin=1)
        part = 600 * 1024
        for i, (first, payload) in enumerate(((0x01, b"A" * part), (0x00, b"B" * part), (0x80, b"C" * part))):
            request.transport.write(bytes((first, 127)) + part.to_bytes(8, "big") + payload)
            del i
        try:
            await ws.receive(timeout=5)
        except (ConnectionError, asyncio.TimeoutError, RuntimeError):
            pass
        return ws

    async def main() -> None:
        runner, host = await serve(ws_handler)
        try:
            oversized: list[tuple[int, bytes]] = []
            conn = await wsclient.connect(
                f"ws://{host}/ws",
                lambda m: None,
                max_size=1 * MB,
                on_oversized=lambda size, head: oversized.append((size, head)),
            )
            await asyncio.wait_for(conn.closed, 10)
            assert conn.close_code == 1009
            assert len(oversized) == 1
            size, head = oversized[0]
            assert size == 2 * 600 * 1024  # the second fragment passes 1 MiB
            assert head == b"A" * wsclient.OVERSIZED_HEAD
        finally:
            await runner.cleanup()

    run(main())


def test_ws_close_code_of_a_server_close_and_of_a_dropped_socket(exchange: Any) -> None:
    ex = exchange(rate=200)

    async def main() -> None:
        c1 = await wsclient.connect(f"{ex.ws_url}/ws/btcusdt@trade", lambda m: None)
        c2 = await wsclient.connect(f"{ex.ws_url}/ws/btcusdt@trade", lambda m: None)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(ex.inject, "close")  # server closes with 1000
        await asyncio.wait_for(c1.closed, 10)
        assert c1.close_code == 1000 and c1.oversized is None
        await asyncio.wait_for(c2.closed, 10)
        c3 = await wsclient.connect(f"{ex.ws_url}/ws/btcusdt@trade", lambda m: None)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(ex.inject, "reset")  # TCP reset, no close frame
        await asyncio.wait_for(c3.closed, 10)
        assert c3.close_code == 1006

    run(main())


# ---------------------------------------------------------------------------- framing, byte by byte


def _frame(op: int, payload: bytes, fin: bool = True) -> bytes:
    """A server frame (unmasked), with the shortest length encoding."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


async def _raw_ws_server(
    script: Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]],
) -> tuple[asyncio.Server, str]:
    """A WebSocket server that answers the handshake, then runs `script(reader, writer, response)`:
    the script writes the 101 response and every frame itself, in whatever pieces it likes."""
    import base64
    import hashlib
    import re

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        m = re.search(rb"(?i)sec-websocket-key: *(\S+)", request)
        assert m is not None
        accept = base64.b64encode(hashlib.sha1(m.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        try:
            await script(reader, writer, response)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/ws"


@pytest.mark.parametrize("piece", [1, 3, 200, 4096, None])
def test_ws_frames_cut_anywhere_arrive_whole_in_order_and_pings_are_answered(piece: int | None) -> None:
    """The client frames small data messages itself and hands everything else to the protocol
    core: whatever the TCP pieces, every message arrives whole and in order (7-, 16- and
    64-bit lengths, a ping between them, a fragmented message), the ping is answered and the
    close handshake still tells the server's code."""
    small = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i * 7 % 300)) for i in range(120)]
    big = b"B" * 70_000
    expected = [*small[:60], b"abcd", big, *small[60:], b"", b"y" * 65_535]
    stream = (
        b"".join(_frame(0x1, m) for m in small[:30])
        + _frame(0x9, b"hi")
        + b"".join(_frame(0x1, m) for m in small[30:60])
        + _frame(0x1, b"ab", fin=False)
        + _frame(0x0, b"cd")
        + _frame(0x2, big)
        + b"".join(_frame(0x1, m) for m in small[60:])
        + _frame(0x1, b"")
        + _frame(0x2, b"y" * 65_535)
    )
    pongs: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: bytes) -> None:
        data = response + stream
        step = piece or len(data)
        for i in range(0, len(data), step):
            writer.write(data[i : i + step])
            await writer.drain()
        head = await reader.readexactly(2)  # the client's pong: masked, 2 bytes of payload
        mask = await reader.readexactly(4)
        body = await reader.readexactly(head[1] & 0x7F)
        pongs.append(bytes([head[0]]) + bytes(b ^ mask[i % 4] for i, b in enumerate(body)))
        writer.write(_frame(0x8, (1001).to_bytes(2, "big") + b"bye"))
        await writer.drain()
        await reader.read(100)  # the client's close frame, then its end of stream

    async def main() -> None:
        server, url = await _raw_ws_server(script)
        try:
            got: list[bytes] = []
            conn = await wsclient.connect(url, lambda m: got.append(bytes(m)), max_size=100_000)
            await asyncio.wait_for(conn.closed, 10)  # the server closes once it has read the pong
            assert pongs == [b"\x8ahi"]
            assert got == expected
            assert conn.close_code == 1001
        finally:
            server.close()

    run(main())


@pytest.mark.parametrize("piece", [1, 4096, None])
def test_ws_oversized_16_bit_frame_after_small_ones(piece: int | None) -> None:
    """A frame over max_size whose length fits 16 bits: the small frames before it arrive, then
    on_oversized and 1009, as for a huge one."""
    small = [b'{"n":%d}' % i for i in range(50)]
    over = b"o" * 1001

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: bytes) -> None:
        data = response + b"".join(_frame(0x1, m) for m in small) + _frame(0x1, over)
        step = piece or len(data)
        for i in range(0, len(data), step):
            writer.write(data[i : i + step])
            await writer.drain()
        await reader.read(100)

    async def main() -> None:
        server, url = await _raw_ws_server(script)
        try:
            got: list[bytes] = []
            oversized: list[tuple[int, bytes]] = []
            conn = await wsclient.connect(
                url,
                lambda m: got.append(bytes(m)),
                max_size=1000,
                on_oversized=lambda size, head: oversized.append((size, head)),
            )
            reason = await asyncio.wait_for(conn.closed, 10)
            assert got == small
            assert isinstance(reason, wsclient.OversizedMessage) and conn.close_code == 1009
            assert len(oversized) == 1 and oversized[0][0] == 1001 and over.startswith(oversized[0][1])
        finally:
            server.close()

    run(main())


# ---------------------------------------------------------------------------- what the exchange serves


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


def test_independent_synthetic_exchanges_never_share_ids() -> None:
    """Without a seed, ids start at the start time in µs: two exchanges never collide.
    With a seed (tests), ids start at 1 and a seed prints the same trades."""
    with LocalExchange(symbols=["btcusdt"], rate=2000) as a:
        time.sleep(0.01)
        with LocalExchange(symbols=["btcusdt"], rate=2000) as b:
            time.sleep(0.5)
            a.stop_market()
            b.stop_market()
            ids_a = [t.trade_id for t in a.trade_log("btcusdt")]
            ids_b = [t.trade_id for t in b.trade_log("btcusdt")]
    assert ids_a and ids_b
    assert ids_a[0] < ids_b[0] and ids_a[-1] < ids_b[0]
    assert ids_b[0] > 1_600_000_000_000_000  # a µs timestamp: far above Binance's real ids (~1e10)
    assert ids_b[-1] < 2**53  # still exact in a float64 (pandas, JSON readers)
    with LocalExchange(symbols=["btcusdt"], rate=500, seed=3, max_trades=20) as c:
        time.sleep(0.5)
        assert [t.trade_id for t in c.trade_log("btcusdt")][:3] == [1, 2, 3]
    with LocalExchange(symbols=["btcusdt"], rate=500, first_id=1000, max_trades=20) as d:
        time.sleep(0.5)
        assert d.trade_log("btcusdt")[0].trade_id == 1000
