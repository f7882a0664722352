"""Frames off the wire are routed by their stream name to the decoder of their kind."""

from __future__ import annotations

from cryptolab.binance.frames import decode_frame, stream_kind
from cryptolab.book import DepthDiff, Quote
from cryptolab.model import DeadLetter, Trade
from tests.binance.test_depth import NOW, SPOT_DIFF, SPOT_TICKER


def test_frames_are_routed_by_stream_name() -> None:
    trade = (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,'
        b'"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}'
    )
    kw = {"exchange": "binance", "source": "live", "received_at_us": NOW}
    assert type(decode_frame(trade, **kw)) is Trade  # type: ignore[arg-type]
    assert type(decode_frame(SPOT_DIFF, **kw)) is DepthDiff  # type: ignore[arg-type]
    assert type(decode_frame(SPOT_TICKER, **kw)) is Quote  # type: ignore[arg-type]
    partial = b'{"stream":"btcusdt@depth5@100ms","data":{"lastUpdateId":1,"bids":[],"asks":[]}}'
    out = decode_frame(partial, **kw)  # type: ignore[arg-type]
    assert isinstance(out, DeadLetter) and "partial depth" in out.reason
    assert [
        stream_kind(s)
        for s in ("btcusdt@depth", "btcusdt@depth@100ms", "btcusdt@depth20", "x@bookTicker", "x@trade")
    ] == ["depth", "depth", "partial", "quote", "other"]
