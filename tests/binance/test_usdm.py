"""USD-M futures payloads: aggTrade, markPrice and forceOrder → exact rows, dead letters or controls."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from cryptolab.binance.usdm import decode_usdm
from cryptolab.binance.wire import Control
from cryptolab.markets import AggTrade, Liquidation, MarkPrice
from cryptolab.model import DeadLetter

NOW = 1_721_347_030_000_000
AGG = {
    "e": "aggTrade",
    "E": 1721347022956,
    "s": "BTCUSDT",
    "a": 2201,
    "p": "63943.90",
    "q": "0.003",
    "f": 5182005737,
    "l": 5182005739,
    "T": 1721347022950,
    "m": True,
}
MARK = {
    "e": "markPriceUpdate",
    "E": 1721347023000,
    "s": "BTCUSDT",
    "p": "63950.10000000",
    "i": "63960.20434783",
    "P": "63961.01",
    "r": "-0.00012345",
    "T": 1721376000000,
}
FORCE = {
    "e": "forceOrder",
    "E": 1721347022999,
    "o": {
        "s": "BTCUSDT",
        "S": "SELL",
        "o": "LIMIT",
        "f": "IOC",
        "q": "0.014",
        "p": "63800.1",
        "ap": "63810.25",
        "X": "FILLED",
        "l": "0.010",
        "z": "0.014",
        "T": 1721347022990,
    },
}


def _dec(d: dict[str, Any], stream: str | None = None) -> Any:
    body = {"stream": stream, "data": d} if stream else d
    return decode_usdm(orjson.dumps(body), received_at_us=NOW)


def test_agg_trade_mark_price_and_liquidation_become_exact_rows() -> None:
    a = _dec(AGG, "btcusdt@aggTrade")
    assert isinstance(a, AggTrade) and a.exchange == "binance-usdm"
    assert (a.agg_id, a.price, a.qty, a.first_trade_id, a.last_trade_id) == (
        2201,
        Decimal("63943.90"),
        Decimal("0.003"),
        5182005737,
        5182005739,
    )
    assert a.trade_time_us == 1721347022950000 and a.is_buyer_maker is True
    m = _dec(MARK, "btcusdt@markPrice@1s")
    assert isinstance(m, MarkPrice)
    assert str(m.mark_price) == "63950.10000000" and str(m.index_price) == "63960.20434783"
    assert m.funding_rate == Decimal("-0.00012345") and m.next_funding_time_us == 1721376000000000
    liq = _dec(FORCE)
    assert isinstance(liq, Liquidation) and liq.side == "SELL" and liq.status == "FILLED"
    assert (liq.price, liq.avg_price, liq.qty, liq.last_filled_qty, liq.filled_qty) == (
        Decimal("63800.1"),
        Decimal("63810.25"),
        Decimal("0.014"),
        Decimal("0.010"),
        Decimal("0.014"),
    )


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"p": 63950.1}, "p must be a decimal string"),
        ({"r": "1.5"}, "absurd r"),
        ({"r": "0.0001e3"}, "r is not a plain decimal"),
        ({"s": "btc usdt"}, "bad symbol"),
        ({"E": "soon"}, "E must be an integer time"),
    ],
)
def test_malformed_mark_price_is_a_dead_letter(change: dict[str, Any], reason: str) -> None:
    out = _dec({**MARK, **change})
    assert isinstance(out, DeadLetter) and reason in out.reason and out.reason.startswith("markPriceUpdate:")


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"S": "LONG"}, "side S must be BUY or SELL"),
        ({"q": "-1"}, "absurd q"),
        ({"z": None}, "z must be a decimal string"),
        ({"T": 1}, "absurd T"),
    ],
)
def test_malformed_force_order_is_a_dead_letter(change: dict[str, Any], reason: str) -> None:
    out = _dec({**FORCE, "o": {**FORCE["o"], **change}})
    assert isinstance(out, DeadLetter) and reason in out.reason and out.symbol == "BTCUSDT"
    missing = _dec({"e": "forceOrder", "E": 1})
    assert isinstance(missing, DeadLetter) and "order object" in missing.reason


def test_other_messages_are_controls_or_dead_letters() -> None:
    assert isinstance(decode_usdm(b'{"result":null,"id":1}'), Control)
    assert isinstance(decode_usdm(b'{"e":"serverShutdown","E":1}'), Control)
    assert "unknown event type" in decode_usdm(b'{"e":"kline"}').reason  # type: ignore[union-attr]
    assert "invalid JSON" in decode_usdm(b'{"e":').reason  # type: ignore[union-attr]
    bad = _dec({**AGG, "l": 1})
    assert isinstance(bad, DeadLetter) and "below f" in bad.reason
