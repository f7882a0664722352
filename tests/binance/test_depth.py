"""Book messages on the wire: depth diffs, bookTicker quotes and REST snapshots, good and bad."""

from __future__ import annotations

import pytest

from cryptolab.binance.depth import decode_diff, decode_quote, snapshot_from_rest
from cryptolab.book import BookSnapshot, DepthDiff, Quote
from cryptolab.errors import DataError
from cryptolab.model import DeadLetter

NOW = 1_723_161_300_000_000
SPOT_DIFF = (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT",'
             b'"U":50093239189,"u":50093239202,"b":[["61737.63000000","0.00000000"]],'
             b'"a":[["61837.64000000","1.54698000"],["61839.85000000","0.00000000"]]}}')
FUT_DIFF = (b'{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1721347022504,"T":1721347022504,'
            b'"s":"BTCUSDT","U":4984028367545,"u":4984028370730,"pu":4984028367494,"b":[["1000.00","569.567"]],"a":[]}}')
SPOT_TICKER = (b'{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000",'
               b'"B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}')
FUT_TICKER = (b'{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":4984028370881,"s":"BTCUSDT",'
              b'"b":"63943.90","B":"46.371","a":"63944.00","A":"0.095","T":1721347022507,"E":1721347022507}}')


def test_real_spot_and_futures_diffs_decode_exactly() -> None:
    d = decode_diff(SPOT_DIFF, exchange="binance", source="live", received_at_us=NOW)
    assert isinstance(d, DepthDiff)
    assert (d.symbol, d.first_id, d.last_id, d.prev_id, d.event_time_us) == (
        "BTCUSDT", 50093239189, 50093239202, None, 1723161255208000)
    assert d.bids == [("61737.63000000", "0.00000000")]
    assert d.asks[0] == ("61837.64000000", "1.54698000")
    f = decode_diff(FUT_DIFF, exchange="binance-usdm", source="live", received_at_us=NOW)
    assert isinstance(f, DepthDiff) and f.prev_id == 4984028367494 and f.asks == []


def test_real_tickers_decode_with_and_without_event_time() -> None:
    q = decode_quote(SPOT_TICKER, exchange="binance", source="live", received_at_us=NOW)
    assert q == Quote("binance", "BTCUSDT", 50093239212, "61837.63000000", "3.78826000", "61837.64000000",
                      "1.54698000", NOW, None, "live")
    f = decode_quote(FUT_TICKER, exchange="binance-usdm", source="live", received_at_us=NOW)
    assert isinstance(f, Quote) and f.event_time_us == 1721347022507000


@pytest.mark.parametrize(("raw", "reason"), [
    (SPOT_DIFF.replace(b'"0.00000000"', b"0.0"), "not a depthUpdate message"),
    (SPOT_DIFF.replace(b'"1.54698000"', b'"-1.5"'), "bad ask level"),
    (SPOT_DIFF.replace(b'"61737.63000000"', b'"0.000"'), "bad bid level"),
    (SPOT_DIFF.replace(b'"61737.63000000"', b'"1e5"'), "bad bid level"),
    (SPOT_DIFF.replace(b'"U":50093239189', b'"U":50093239299'), "above the last"),
    (SPOT_DIFF.replace(b'"E":1723161255208', b'"E":12'), "absurd E"),
    (SPOT_DIFF[:-9], "invalid JSON"),
    (SPOT_DIFF.replace(b'"s":"BTCUSDT"', b'"s":"btc usdt"'), "bad symbol"),
])
def test_malformed_diffs_become_dead_letters_with_the_reason(raw: bytes, reason: str) -> None:
    d = decode_diff(raw, exchange="binance", source="live", received_at_us=NOW)
    assert isinstance(d, DeadLetter) and reason in d.reason and d.payload == raw


def test_malformed_ticker_becomes_a_dead_letter() -> None:
    d = decode_quote(SPOT_TICKER.replace(b'"B":"3.78826000"', b'"B":3.7'), exchange="binance", source="live",
                     received_at_us=NOW)
    assert isinstance(d, DeadLetter) and "bookTicker" in d.reason


def test_snapshot_from_rest_checks_every_level_and_the_size() -> None:
    obj = {
        "lastUpdateId": 50093239218,
        "bids": [["61837.63000000", "3.78826000"]],
        "asks": [["61837.64000000", "1"]],
    }
    s = snapshot_from_rest(obj, "btcusdt", exchange="binance", received_at_us=NOW)
    assert s == BookSnapshot(
        "binance",
        "BTCUSDT",
        50093239218,
        [("61837.63000000", "3.78826000")],
        [("61837.64000000", "1")],
        NOW,
        None,
        "live",
    )
    with pytest.raises(DataError, match="more than the 5000 levels"):
        snapshot_from_rest(
            {**obj, "bids": [["1", "1"]] * 5001}, "BTCUSDT", exchange="binance", received_at_us=NOW
        )
    with pytest.raises(DataError, match="lacks lastUpdateId"):
        snapshot_from_rest({"bids": []}, "BTCUSDT", exchange="binance", received_at_us=NOW)
    with pytest.raises(DataError, match="not \\[price, qty\\] strings"):
        snapshot_from_rest(
            {**obj, "asks": [[61837.64, 1]]}, "BTCUSDT", exchange="binance", received_at_us=NOW
        )
