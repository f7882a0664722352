"""A lean asyncio WebSocket client on the `websockets` Sans-I/O protocol core.

Capture receives tens of thousands of small frames per second. The stock asyncio
client hands each one through a queue to an awaiting task; here every complete
message goes straight from `data_received` to a callback, all frames of a TCP read
in one pass. The protocol work — handshake, framing, masking, answering pings,
closing — is `websockets.client.ClientProtocol`'s, with one shortcut: while the
connection is open and the protocol sits at a frame boundary, a final, unmasked
TEXT/BINARY frame with a 7- or 16-bit length within `max_size` (every market-data
frame) is cut out of the read by `_received_fast` and handed over directly; the
first frame of any other kind, and everything after it, goes to the protocol as
before. That saves about 2 µs of CPU per frame (of ~5 µs for framing + decoding).

Limits: a message larger than `max_size` is never buffered. As soon as its header
says so, the client calls `on_oversized(size, head)` (the announced size and the
first bytes of its payload, for a dead letter), closes with 1009 (message too big)
and `closed` resolves with an `OversizedMessage`; the caller reconnects as after any
other close. `close_code` tells why a connection ended, whichever side closed it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.exceptions import PayloadTooBig
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

__all__ = [
    "WSConnection",
    "connect",
    "HandshakeError",
    "OversizedMessage",
    "Message",
    "DEFAULT_MAX_SIZE",
    "OVERSIZED_HEAD",
]

Message = bytes | bytearray
"""What `on_message` gets: the payload as the protocol parsed it (a bytearray for a
single-frame message, bytes for a reassembled one), not copied; read it, don't keep it
mutable elsewhere."""

DEFAULT_MAX_SIZE = 16 * 1024 * 1024
"""Largest message accepted by default (bytes); Binance's trade frames are ~200 bytes."""
OVERSIZED_HEAD = 1024
"""How many bytes of an oversized message's payload `on_oversized` gets."""


class HandshakeError(Exception):
    """The server did not accept the WebSocket upgrade (e.g. HTTP 451, 404)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status


class OversizedMessage(ConnectionError):
    """A message larger than `max_size` arrived; the client closed the connection (1009)."""

    def __init__(self, size: int, max_size: int, head: bytes) -> None:
        super().__init__(
            f"message of {size} bytes is larger than max_size={max_size}: connection closed (1009)"
        )
        self.size = size
        self.max_size = max_size
        self.head = head


class _Protocol(ClientProtocol):
    """`ClientProtocol` that keeps the first payload bytes of a frame it refuses as too big."""

    refused_head = b""

    def fail(self, code: CloseCode | int, reason: str = "") -> None:
        if code == CloseCode.MESSAGE_TOO_BIG and not self.refused_head:
            # called from the parser right after the frame header: the buffer starts
            # with the payload, and fail() is about to discard it
            self.refused_head = bytes(self.reader.buffer[:OVERSIZED_HEAD])
        super().fail(code, reason)


class WSConnection(asyncio.Protocol):
    """One client connection; `on_message(payload)` is called for every text/binary message.

    `on_oversized(size, head)`, if given, is called once when a message larger than
    `max_size` arrives (see the module doc); the connection then closes.
    """

    fast_framing = True
    """False sends every byte through `ClientProtocol` (to compare, e.g. in benchmarks)."""

    def __init__(
        self,
        uri: str,
        on_message: Callable[[Message], None],
        max_size: int = DEFAULT_MAX_SIZE,
        on_oversized: Callable[[int, bytes], None] | None = None,
    ) -> None:
        self.protocol = _Protocol(parse_uri(uri), max_size=max_size)
        self.max_size = max_size
        self.on_message = on_message
        self.on_oversized = on_oversized
        self.oversized: OversizedMessage | None = None
        """The oversized message that ended this connection, if one did."""
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[BaseException | None] = loop.create_future()
        """Resolves when the connection ends, with the reason (None for a clean close)."""
        self._parts: list[Message] = []
        self._fast = False
        """True while `data_received` may frame small messages itself (see `_received_fast`)."""
        self._pending = b""
        """The start of a frame the fast path saw only in part."""
        self.after_read: Callable[[], None] | None = None
        """Called after each socket read's messages were delivered (the capture's backpressure
        checks its queue there: once per read, not per message)."""
        self.reading_paused = False
        """True between `pause_reading()` and `resume_reading()`."""

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            if self._fast:
                self._received_fast(data)
            else:
                self._received(data)
        except Exception as exc:
            self._finish(exc)
        if self.after_read is not None:
            self.after_read()

    def _received_fast(self, data: bytes) -> None:
        """Deliver every complete small data frame of `data` without the Sans-I/O parser.

        Taken only while the connection is open, not inside a fragmented message and the
        parser holds no bytes (it waits at a frame boundary). A frame here is a final
        TEXT or BINARY frame with no RSV bits, no mask and a 7- or 16-bit length within
        `max_size`: nothing the parser would do with it but hand it over. The first frame
        that is anything else (control, fragment, masked, large, oversized) and all that
        follows go to `ClientProtocol`, which then owns the stream until it is at a frame
        boundary again.
        """
        if self._pending:
            data = self._pending + data
            self._pending = b""
        on_message = self.on_message
        limit = self.max_size
        n = len(data)
        i = 0
        while n - i >= 2:
            b0 = data[i]
            if b0 != 0x81 and b0 != 0x82:
                break
            ln = data[i + 1]
            if ln < 126:
                start = i + 2
            elif ln == 126:
                if n - i < 4:
                    self._pending = data[i:]
                    return
                ln = (data[i + 2] << 8) | data[i + 3]
                start = i + 4
            else:  # 64-bit length or masked: the careful path
                break
            end = start + ln
            if ln > limit:
                break
            if end > n:
                self._pending = data[i:]
                return
            on_message(data[start:end])
            i = end
        else:
            if i < n:  # one byte of the next header
                self._pending = data[i:]
            return
        self._fast = False
        self._received(data[i:] if i else data)

    def _received(self, data: bytes) -> None:
        p = self.protocol
        p.receive_data(data)
        for ev in p.events_received():
            if isinstance(ev, Response):
                if p.handshake_exc is not None or ev.status_code != 101:
                    self._fail(HandshakeError(ev.status_code, ev.reason_phrase))
                    return
                if not self.opened.done():
                    self.opened.set_result(None)
                continue
            if not isinstance(ev, Frame):
                continue
            op = ev.opcode
            payload = ev.data
            if isinstance(payload, memoryview):
                payload = payload.tobytes()
            if op is Opcode.TEXT or op is Opcode.BINARY:
                if ev.fin:
                    self.on_message(payload)
                else:
                    self._parts = [payload]
            elif op is Opcode.CONT:
                self._parts.append(payload)
                if ev.fin:
                    self.on_message(b"".join(self._parts))
                    self._parts = []
        self._flush()
        if isinstance(p.parser_exc, PayloadTooBig) and self.oversized is None:
            self._refuse(p.parser_exc)
            return
        if p.state is State.CLOSED or p.close_expected():
            self._finish(self._close_exc())
            return
        self._fast = (
            self.fast_framing
            and p.state is State.OPEN
            and not p.reader.buffer
            and p.current_size is None
            and p.parser_exc is None
            and not p.extensions
        )

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed during the handshake"))
        self._resolve(exc or self._close_exc())

    # -- helpers

    def _refuse(self, exc: PayloadTooBig) -> None:
        """An oversized message: report it (size, head), then close (1009 already queued)."""
        size = (exc.size or 0) + (exc.current_size or 0)
        head = (b"".join(self._parts) + self.protocol.refused_head)[:OVERSIZED_HEAD]
        self._parts = []
        self.oversized = OversizedMessage(size, self.max_size, head)
        try:
            if self.on_oversized is not None:
                self.on_oversized(size, head)
        finally:
            self._finish(self.oversized)

    def _close_exc(self) -> BaseException | None:
        return self.protocol.close_exc if self.protocol.state is State.CLOSED else None

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def _fail(self, exc: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        if self.transport is not None:
            self.transport.close()
        self._resolve(exc)

    def _resolve(self, exc: BaseException | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)

    # -- public

    @property
    def close_code(self) -> int | None:
        """Why the connection ended; None while it is open.

        The code of the closing handshake's first close frame, whichever side sent it:
        the server's (e.g. 1001 going away, 1008 policy) or this client's (1000 after
        `close()`, 1009 after an oversized message); 1006 when the TCP connection ended
        without a close frame.
        """
        if not self.closed.done():
            return None
        if self.oversized is not None:
            return int(CloseCode.MESSAGE_TOO_BIG)
        p = self.protocol
        if p.close_rcvd is not None and (p.close_sent is None or p.close_rcvd_then_sent):
            return int(p.close_rcvd.code)
        if p.close_sent is not None:
            return int(p.close_sent.code)
        if p.close_rcvd is not None:
            return int(p.close_rcvd.code)
        return int(CloseCode.ABNORMAL_CLOSURE)

    def send_text(self, text: str) -> None:
        """Queue a text message (e.g. a SUBSCRIBE request)."""
        self.protocol.send_text(text.encode())
        self._flush()

    def pause_reading(self) -> None:
        """Stop reading the socket (TCP backpressure: the kernel's buffer fills, then the
        sender's); the messages of the read in progress are still delivered."""
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    async def close(self, timeout: float = 2.0) -> None:
        """Close politely; drop the socket if the server does not answer in time (at once while
        reading is paused: its answer would wait behind the unread messages)."""
        if self.closed.done():
            return
        try:
            self.protocol.send_close(1000)
            self._flush()
            if not self.reading_paused:
                await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except (asyncio.TimeoutError, Exception):
            pass
        finally:
            if self.transport is not None:
                self.transport.abort()
            self._resolve(None)


async def connect(
    uri: str,
    on_message: Callable[[Message], None],
    *,
    open_timeout: float = 10.0,
    max_size: int = DEFAULT_MAX_SIZE,
    on_oversized: Callable[[int, bytes], None] | None = None,
) -> WSConnection:
    """Open a WebSocket to `uri` (ws:// or wss://) and return once the handshake succeeded.

    A message larger than `max_size` bytes closes the connection (1009) after
    `on_oversized(size, head)` was called; see the module doc.
    """
    loop = asyncio.get_running_loop()
    parts = urlsplit(uri)
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    ctx = ssl.create_default_context() if secure else None

    async def _open() -> WSConnection:
        _, proto = await loop.create_connection(
            lambda: WSConnection(uri, on_message, max_size, on_oversized),
            host,
            port,
            ssl=ctx,
            server_hostname=host if secure else None,
        )
        await proto.opened
        return proto

    return await asyncio.wait_for(_open(), open_timeout)
