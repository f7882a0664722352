"""The fast path of futures aggregates decides exactly as the careful decoder, row for row."""

from __future__ import annotations

import time

import pytest

from cryptolab.binance.usdm import decode_usdm, decode_usdm_fast

NOW = time.time_ns() // 1000
T = NOW // 1000 - 5_000
GOOD = ('{"e":"aggTrade","E":' + str(T + 3) + ',"s":"BTCUSDT","a":5933014,"p":"63943.90","q":"0.003","f":100,'
        '"l":105,"T":' + str(T) + ',"m":true}')
CASES = [
    GOOD,
    '{"stream":"btcusdt@aggTrade","data":' + GOOD + "}",
    GOOD.replace('"q":"0.003"', '"q":"0"'),
    GOOD.replace('"q":"0.003"', '"q":"-0.003"'),
    GOOD.replace('"l":105', '"l":99'),
    GOOD.replace('"m":true', '"m":1'),
    GOOD.replace('"a":5933014', '"a":"5933014"'),
    GOOD.replace('"s":"BTCUSDT"', '"s":"btc usdt"'),
    GOOD.replace(f'"T":{T}', '"T":1000'),
    GOOD.replace('"p":"63943.90"', '"p":"1e3"'),
    GOOD.replace(f',"E":{T + 3}', ""),
    '{"stream":"btcusdt@aggTrade","data":' + GOOD + ',"id":1}',
    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade"',
    '{"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate","E":' + str(T)
    + ',"s":"BTCUSDT","p":"1.5","r":"-0.0001"}}',
]


@pytest.mark.parametrize("raw", CASES)
def test_fast_and_careful_paths_agree(raw: str) -> None:
    fast = decode_usdm_fast(raw.encode(), exchange="binance-usdm", received_at_us=NOW)
    careful = decode_usdm(raw.encode(), exchange="binance-usdm", received_at_us=NOW)
    assert type(fast) is type(careful)
    assert fast == careful
