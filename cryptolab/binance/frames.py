"""One combined-stream frame → the row it carries, routed by its stream name.

`{"stream":"btcusdt@depth@100ms",…}` goes to the depth decoder, `…@bookTicker` to the quote
decoder, everything else (trades, replies, `serverShutdown`) to `wire.decode`. The stream name
is read from the frame's first bytes, so a trade frame costs one `find` more than before.
"""

from __future__ import annotations

from ..book.model import DepthDiff, Quote
from ..model import DeadLetter, Trade
from .depth import decode_diff, decode_quote
from .wire import Control, decode

__all__ = ["decode_frame", "stream_kind"]

_HEAD = b'{"stream":"'


def stream_kind(name: str | bytes) -> str:
    """'depth' (diff stream), 'partial' (`@depth5/10/20`), 'quote' (`@bookTicker`) or 'other'."""
    n = name.decode() if isinstance(name, bytes) else name
    parts = n.split("@")
    if len(parts) > 1 and parts[1] == "depth":
        return "depth"
    if len(parts) > 1 and parts[1].startswith("depth") and parts[1][5:].isdigit():
        return "partial"
    if len(parts) > 1 and parts[1] == "bookTicker":
        return "quote"
    return "other"


def decode_frame(raw: bytes | bytearray, *, exchange: str, source: str,
                 received_at_us: int) -> Trade | DepthDiff | Quote | Control | DeadLetter:
    """Decode one WebSocket message, whatever stream it came on. Never raises."""
    if raw.startswith(_HEAD):
        head = raw[11:60]  # the stream name (≤ 30-character symbol + its suffix) and a little more
        if b"@depth" not in head and b"@bookTicker" not in head:
            return decode(raw, exchange=exchange, source=source, received_at_us=received_at_us)
        end = raw.find(b'"', 11)
        name = bytes(raw[11:end]) if end > 0 else b""
        if b"@depth" in name:
            kind = stream_kind(name)
            if kind == "depth":
                return decode_diff(raw, exchange=exchange, source=source, received_at_us=received_at_us)
            return DeadLetter(f"stream {name[:60].decode(errors='replace')} is not captured (partial depth: "
                              "capture the diff stream `@depth` instead)", bytes(raw), source, exchange, None,
                              received_at_us)
        if name.endswith(b"@bookTicker"):
            return decode_quote(raw, exchange=exchange, source=source, received_at_us=received_at_us)
    return decode(raw, exchange=exchange, source=source, received_at_us=received_at_us)
