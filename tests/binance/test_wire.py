"""The pure wire layer: payload bytes in, rows or dead letters out."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest

from cryptolab.binance.wire import Control, decode, trade_from_rest
from cryptolab.model import DeadLetter, Trade

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


def _variants() -> list[bytes]:
    """Trade payloads in the usual shape and near it: each field given odd values."""
    odd: dict[str, list[object]] = {
        "p": [
            "1.",
            ".5",
            "1.5\n",
            " 1.5",
            "1_000.5",
            "1e3",
            "NaN",
            "Infinity",
            "+1.5",
            "-1.5",
            "١٢٣",
            "0.0",
            "123456789012345.5",
            "12345678901234.5",
            "000000000000000001.5",
            "1." + "0" * 18,
            "1." + "1" * 19,
            1.5,
            None,
            True,
        ],
        "q": ["0.00000001", "0", "5", "1.0000000000000000001", "99999999999999999"],
        "t": [0, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 1.0, "1", True, None],
        "T": [5, 1_723_161_255_207_123, 1_723_161_255_207.0, 10**20, -1, False],
        "E": [None, KeyError, 1_723_161_255_208_456, "x", 10**17],
        "m": [0, 1, "false", None],
        "s": ["btcusdt", "BTCUSDT\n", "ETHUSDT", "X", "B" * 31, "БTC", 5],
        "e": ["kline", "Trade", None, KeyError],
    }
    out = [RAW]
    for key, values in odd.items():
        for v in values:
            d = json.loads(RAW)
            if v is KeyError:
                d.pop(key, None)
            else:
                d[key] = v
            out.append(json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode())
    base = orjson.loads(RAW)
    out.append(orjson.dumps({"stream": "btcusdt@trade", "data": base}))
    out.append(orjson.dumps({"data": base, "stream": "btcusdt@trade"}))
    out.append(orjson.dumps({"stream": 5, "data": base}))
    out.append(orjson.dumps({"stream": "x", "data": base, "id": 1, "result": None}))
    out.append(orjson.dumps({"data": base}))
    out.append(RAW.replace(b'"t":3735683259,', b'"t":3735683259,"t":7,'))  # a repeated key: the last one wins
    out.append(RAW.replace(b'"s":"BTCUSDT"', b'"s":"BTC\\u0055SDT"'))
    out.append(RAW[:-1] + b',"x":[1,{"y":2}]}')
    out.append(RAW + b" ")
    out.append(RAW + b"x")
    out.append(RAW.replace(b"BTCUSDT", b"BTC\xffUSDT"))
    return out


@pytest.mark.parametrize("payload", _variants())
def test_fast_path_accepts_only_what_the_careful_path_accepts(payload: bytes) -> None:
    """The fast path (msgspec) may send anything to the careful path (orjson + checks), but a
    trade it returns must be exactly the careful path's: same fields, same Decimal digits."""
    from cryptolab.binance.wire import _careful

    fast = decode(payload, received_at_us=NOW)
    careful = _careful(payload, "binance", "live", NOW)
    assert fast == careful
    if isinstance(fast, Trade):
        assert isinstance(careful, Trade)
        assert str(fast.price) == str(careful.price) and str(fast.qty) == str(careful.qty)
        assert type(fast) is Trade and type(fast.price) is Decimal


@pytest.mark.parametrize("payload", _variants())
def test_trade_fields_are_the_careful_paths_trade_or_nothing(payload: bytes) -> None:
    """The capture's columns take `trade_fields`: whatever it returns must be the careful path's
    trade field for field (the price and quantity as the same digits); what it refuses, `decode`
    then judges (zero, an odd number, a control message: the careful path's dead letter or reply)."""
    from cryptolab.binance.wire import _careful, trade_fields

    fields = trade_fields(payload, NOW)
    careful = _careful(payload, "binance", "live", NOW)
    if fields is None:
        assert decode(payload, received_at_us=NOW) == careful
        return
    assert isinstance(careful, Trade)
    sym, tid, price, qty, maker, t_us, e_us = fields
    assert (sym, tid, maker, t_us, e_us) == (
        careful.symbol,
        careful.trade_id,
        careful.is_buyer_maker,
        careful.trade_time_us,
        careful.event_time_us,
    )
    assert Decimal(price) == careful.price and str(Decimal(price)) == str(careful.price)
    assert Decimal(qty) == careful.qty and str(Decimal(qty)) == str(careful.qty)


@pytest.mark.parametrize("zero", ["0", "0.0", "00.00000000", "0.000000000000000000"])
def test_trade_fields_refuse_a_zero_price_or_quantity(zero: str) -> None:
    from cryptolab.binance.wire import trade_fields

    d = json.loads(RAW)
    for key in ("p", "q"):
        bad = json.dumps({**d, key: zero}).encode()
        assert trade_fields(bad, NOW) is None
        assert isinstance(decode(bad, received_at_us=NOW), DeadLetter)
