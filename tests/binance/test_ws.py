"""The websocket client against raw servers on 127.0.0.1: frames cut anywhere, oversized frames, close codes.

Each test is bounded in time (asyncio.wait_for) and in bytes: the servers here never stop sending or
send a 50 MB frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from cryptolab.binance import ws as wsclient
from tests.binance._helpers import MB, run, serve


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


def test_ws_paused_reading_delivers_nothing_until_resumed_and_closes_at_once(exchange: Any) -> None:
    """pause_reading(): no message (nor after_read) until resume_reading(); the rows wait in the
    socket, none is lost or repeated; closing a paused connection does not wait for the server's
    close frame behind the unread messages."""
    ex = exchange(rate=2000)

    async def main() -> None:
        got: list[bytes] = []
        reads = [0]
        conn = await wsclient.connect(f"{ex.ws_url}/ws/btcusdt@trade", lambda m: got.append(bytes(m)))
        conn.after_read = lambda: reads.__setitem__(0, reads[0] + 1)
        while len(got) < 50:
            await asyncio.sleep(0.02)
        conn.pause_reading()
        assert conn.reading_paused
        n, r = len(got), reads[0]
        await asyncio.sleep(0.5)  # ~1,000 trades printed meanwhile
        assert (len(got), reads[0]) == (n, r)
        conn.resume_reading()
        while len(got) < n + 500:
            await asyncio.sleep(0.02)
        assert reads[0] > r
        ids = [int(m.split(b'"t":', 1)[1].split(b",", 1)[0]) for m in got]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # whole and in order across the pause
        conn.pause_reading()
        t0 = time.monotonic()
        await conn.close(timeout=5)
        assert time.monotonic() - t0 < 1.0 and conn.closed.done()

    run(main())
