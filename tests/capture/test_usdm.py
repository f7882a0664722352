"""Pure parts of the futures capture: stream kinds, routes, endpoints, the bad-input lines."""

from __future__ import annotations

import pytest

from cryptolab.capture.usdm import (
    contract_problems,
    route_streams,
    spot_kinds_problem,
    usdm_endpoint,
    usdm_kinds,
)
from cryptolab.errors import ConfigError, SourceError


def test_futures_stream_kinds_default_to_aggregates_marks_and_liquidations() -> None:
    assert usdm_kinds(("trade",)) == ("aggTrade", "markPrice", "forceOrder")
    assert usdm_kinds(("aggTrade", "depth")) == ("aggTrade", "depth")
    with pytest.raises(ConfigError, match="no raw trade stream"):
        usdm_kinds(("trade", "depth"))
    with pytest.raises(ConfigError, match="not USD-M futures streams"):
        usdm_kinds(("aggTrade", "kline"))
    assert spot_kinds_problem(("trade", "depth")) is None
    assert "--market usdm" in (spot_kinds_problem(("trade", "forceOrder")) or "")


def test_streams_split_by_binance_route() -> None:
    r = route_streams(["BTCUSDT", "ETHUSDT"], ("aggTrade", "markPrice", "forceOrder", "depth", "bookTicker"))
    assert r["market"] == [
        "btcusdt@aggTrade",
        "btcusdt@markPrice@1s",
        "btcusdt@forceOrder",
        "ethusdt@aggTrade",
        "ethusdt@markPrice@1s",
        "ethusdt@forceOrder",
    ]
    assert r["public"] == [
        "btcusdt@depth@100ms",
        "btcusdt@bookTicker",
        "ethusdt@depth@100ms",
        "ethusdt@bookTicker",
    ]
    assert route_streams(["X"], ("depth",), "1000ms") == {"public": ["x@depth"]}


def test_futures_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOLAB_FSTREAM_URL", "ws://127.0.0.1:9/")
    monkeypatch.setenv("CRYPTOLAB_FAPI_URL", "http://127.0.0.1:9")
    ep = usdm_endpoint("binance")
    assert (ep.ws, ep.rest, ep.micro) == ("ws://127.0.0.1:9", "http://127.0.0.1:9", False)
    local = usdm_endpoint("ws://127.0.0.1:4567")
    assert (local.ws, local.rest, local.micro) == ("ws://127.0.0.1:4567", "http://127.0.0.1:4567", False)
    with pytest.raises(SourceError, match="binance .USD-M futures. or a local exchange's futures URL"):
        usdm_endpoint("binance.us")


def test_a_spot_only_symbol_and_a_delisted_contract_are_one_line_each() -> None:
    info = {
        "symbols": [{"symbol": "BTCUSDT", "status": "TRADING"}, {"symbol": "LUNAUSDT", "status": "SETTLING"}]
    }
    assert contract_problems(info, ["BTCUSDT"], "fapi") is None
    spot_only = contract_problems(info, ["BTCUSDT", "BNBBTC"], "fapi")
    assert (
        spot_only is not None
        and "BNBBTC is not a USD-M futures contract" in spot_only
        and "\n" not in spot_only
    )
    assert "without --market usdm" in spot_only
    dead = contract_problems(info, ["LUNAUSDT"], "fapi")
    assert dead is not None and "LUNAUSDT (SETTLING)" in dead and "delisted" in dead
