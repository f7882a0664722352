"""USD-M stream URLs: each stream routed to its public or market endpoint, roots from the settings."""

from __future__ import annotations

import pytest

from cryptolab.binance.usdm_streams import route_of, stream_urls
from cryptolab.errors import DataError


def test_routed_stream_urls() -> None:
    urls = stream_urls(
        ["BTCUSDT", "ethusdt"],
        ["aggTrade", "markPrice@1s", "forceOrder", "depth@100ms"],
        base="ws://127.0.0.1:9/",
    )
    assert urls == {
        "market": "ws://127.0.0.1:9/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s/btcusdt@forceOrder/"
        "ethusdt@aggTrade/ethusdt@markPrice@1s/ethusdt@forceOrder",
        "public": "ws://127.0.0.1:9/public/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms",
    }
    assert route_of("btcusdt@bookTicker") == "public"
    with pytest.raises(DataError, match="unknown futures stream"):
        route_of("btcusdt@trade")
