"""One WebSocket client of the local exchange, its frames, and the ways a connection ends.

Server frames are unmasked, so a frame is a fixed header + payload (RFC 6455 §5.2): the
stream hub frames a trade once and writes the same bytes to every client that wants it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["Conn", "clean_close", "close_frame", "frame", "hard_close", "reset"]


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked, final WebSocket frame (RFC 6455 §5.2)."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(struct.pack("!H", code) + reason.encode()[:120], 0x8)


@dataclass(eq=False)
class Conn:
    """One WebSocket client connection: what it subscribed to and the faults armed on it."""

    ws: web.WebSocketResponse
    transport: asyncio.Transport
    combined: bool
    micro: bool
    streams: list[str]
    opened: float = field(default_factory=time.monotonic)
    symbols: frozenset[str] = frozenset()
    named: frozenset[str] = frozenset()  # book and aggTrade streams (`btcusdt@depth@100ms`, …)
    burst_reset: bool = False  # reset in the middle of the next burst of book messages
    ping_payload: bytes | None = None
    ping_sent: float = 0.0
    stalled_until: float = 0.0
    dup_left: int = 0
    reorder_n: int = 0
    reorder_buf: list[bytes] = field(default_factory=list)
    incoming: deque[float] = field(default_factory=deque)
    shutdown_sent: bool = False
    closed: bool = False
    frames_sent: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def fast(self) -> bool:
        """No per-connection fault armed: it can share the frames every client gets."""
        return not (self.dup_left or self.reorder_n or self.reorder_buf or self.stalled_until)


def reset(c: Conn) -> None:
    """TCP reset: SO_LINGER 0 then abort, so the peer sees RST, not FIN."""
    c.closed = True
    sock = c.transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    c.transport.abort()
    c.wake.set()


def hard_close(c: Conn, code: int, reason: str) -> None:
    """Close frame then close the socket, without waiting for the client's answer."""
    c.closed = True
    t = c.transport
    if not t.is_closing():
        try:
            t.write(close_frame(code, reason))
        except Exception:
            pass
        t.close()
    c.wake.set()


async def clean_close(c: Conn, code: int, reason: str) -> None:
    """The closing handshake (bounded: a client that does not answer is aborted)."""
    c.closed = True
    try:
        await asyncio.wait_for(c.ws.close(code=code, message=reason.encode()), 2.0)
    except Exception:
        c.transport.abort()
    c.wake.set()
