"""A lean asyncio WebSocket client on the `websockets` Sans-I/O protocol core.

Capture receives tens of thousands of small frames per second. The stock asyncio
client hands each one through a queue to an awaiting task; here every complete
message goes straight from `data_received` to a callback, all frames of a TCP read
in one pass. The protocol work — handshake, framing, masking, answering pings,
closing — is `websockets.client.ClientProtocol`'s; this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

__all__ = ["WSConnection", "connect", "HandshakeError"]


class HandshakeError(Exception):
    """The server did not accept the WebSocket upgrade (e.g. HTTP 451, 404)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status


class WSConnection(asyncio.Protocol):
    """One client connection; `on_message(bytes)` is called for every text/binary message."""

    def __init__(self, uri: str, on_message: Callable[[bytes], None], max_size: int) -> None:
        self.protocol = ClientProtocol(parse_uri(uri), max_size=max_size)
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[BaseException | None] = loop.create_future()
        """Resolves when the connection ends, with the reason (None for a clean close)."""
        self._parts: list[bytes] = []

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception as exc:
            self._finish(exc)

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
            op = ev.opcode
            if op is Opcode.TEXT or op is Opcode.BINARY:
                if ev.fin:
                    self.on_message(ev.data)
                else:
                    self._parts = [ev.data]
            elif op is Opcode.CONT:
                self._parts.append(ev.data)
                if ev.fin:
                    self.on_message(b"".join(self._parts))
                    self._parts = []
        self._flush()
        if p.state is State.CLOSED or p.close_expected():
            self._finish(self._close_exc())

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed during the handshake"))
        self._resolve(exc or self._close_exc())

    # -- helpers

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

    def send_text(self, text: str) -> None:
        """Queue a text message (e.g. a SUBSCRIBE request)."""
        self.protocol.send_text(text.encode())
        self._flush()

    async def close(self, timeout: float = 2.0) -> None:
        """Close politely; drop the socket if the server does not answer in time."""
        if self.closed.done():
            return
        try:
            self.protocol.send_close(1000)
            self._flush()
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except (asyncio.TimeoutError, Exception):
            pass
        finally:
            if self.transport is not None:
                self.transport.abort()
            self._resolve(None)


async def connect(
    uri: str,
    on_message: Callable[[bytes], None],
    *,
    open_timeout: float = 10.0,
    max_size: int = 16 * 1024 * 1024,
) -> WSConnection:
    """Open a WebSocket to `uri` (ws:// or wss://) and return once the handshake succeeded."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(uri)
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    ctx = ssl.create_default_context() if secure else None

    async def _open() -> WSConnection:
        _, proto = await loop.create_connection(
            lambda: WSConnection(uri, on_message, max_size), host, port, ssl=ctx,
            server_hostname=host if secure else None,
        )
        await proto.opened
        return proto

    return await asyncio.wait_for(_open(), open_timeout)
