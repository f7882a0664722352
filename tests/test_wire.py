"""The pure wire layer: payload bytes in, rows or dead letters out."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from cryptolab.model import DeadLetter, Trade
from cryptolab.wire import Control, decode, trade_from_rest

# Binance spot @trade as sent today (no b/a fields since 2024)
RAW = (b'{"e":"trade","E":1723161255208,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000",'
       b'"q":"0.00010000","T":1723161255207,"m":true,"M":true}')
NOW = 1_723_161_255_300_000


def test_raw_trade() -> None:
    t = decode(RAW, received_at_us=NOW)
    assert isinstance(t, Trade)
    assert t.symbol == "BTCUSDT" and t.trade_id == 3735683259
    assert t.price == Decimal("61837.63000000") and t.qty == Decimal("0.00010000")
    assert isinstance(t.price, Decimal) and t.is_buyer_maker is True
    assert (t.trade_time_us, t.event_time_us, t.received_at_us) == (1723161255207000, 1723161255208000, NOW)
    assert t.source == "live" and t.exchange == "binance"


def test_combined_stream_and_microseconds() -> None:
    data = orjson.loads(RAW)
    data["T"], data["E"] = 1723161255207123, 1723161255208456
    t = decode(orjson.dumps({"stream": "btcusdt@trade", "data": data}), received_at_us=NOW)
    assert isinstance(t, Trade)
    assert (t.trade_time_us, t.event_time_us) == (1723161255207123, 1723161255208456)


def test_controls() -> None:
    assert decode(b'{"result":null,"id":1}') == Control("reply", {"result": None, "id": 1})
    assert decode(b'{"result":["btcusdt@trade"],"id":3}').kind == "reply"
    assert decode(b'{"error":{"code":2,"msg":"Invalid request"},"id":4}').kind == "error"
    assert decode(b'{"e":"serverShutdown","E":1723161255208}').kind == "shutdown"


def _mutate(**changes: object) -> bytes:
    d = orjson.loads(RAW)
    for k, v in changes.items():
        if v is KeyError:
            d.pop(k)
        else:
            d[k] = v
    return orjson.dumps(d)


@pytest.mark.parametrize(
    "payload,reason",
    [
        (b'{"e":"trade","s":"BTC', "invalid JSON"),
        (b"[1,2,3]", "expected a JSON object"),
        (b'{"stream":"x","data":5}', "not an object"),
        (_mutate(p=KeyError), "missing field 'p'"),
        (_mutate(p=61837.63), "p must be a decimal string"),
        (_mutate(q="1e-3"), "q is not a plain decimal"),
        (_mutate(t="3735683259"), "t must be an integer"),
        (_mutate(m="true"), "m must be a boolean"),
        (_mutate(p="0.00000000"), "absurd p"),
        (_mutate(p="-5"), "absurd p"),
        (_mutate(q="99999999999999999"), "absurd q"),
        (_mutate(T=5), "absurd T"),
        (_mutate(s="btc usdt"), "bad symbol"),
        (_mutate(e="kline"), "unknown event type 'kline'"),
        (b'{"x":1}', "no event type"),
        (b"\xff\xfe", "invalid JSON"),
    ],
)
def test_bad_messages_become_dead_letters(payload: bytes, reason: str) -> None:
    out = decode(payload, received_at_us=NOW)
    assert isinstance(out, DeadLetter), out
    assert reason in out.reason
    assert out.payload == payload


def test_huge_payload_is_a_dead_letter_not_a_crash() -> None:
    big = b'{"e":"trade","junk":"' + b"x" * 2_000_000 + b'"}'
    out = decode(big, received_at_us=NOW)
    assert isinstance(out, DeadLetter) and "missing field" in out.reason


def test_rest_item() -> None:
    item = {"id": 28457, "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.000012",
            "time": 1499865549590, "isBuyerMaker": True, "isBestMatch": True}
    t = trade_from_rest(item, "bnbbtc", received_at_us=NOW)
    assert t == Trade("binance", "BNBBTC", 28457, Decimal("4.00000100"), Decimal("12.00000000"), True,
                      1499865549590000, None, NOW, "backfill")
    with pytest.raises(ValueError, match="absurd"):
        trade_from_rest({**item, "time": 1}, "BNBBTC", received_at_us=NOW)
