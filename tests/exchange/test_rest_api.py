"""The local exchange's REST API, with a real HTTP client (urllib) over 127.0.0.1."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Iterator
from decimal import Decimal, localcontext
from typing import Any

import pytest

from cryptolab.exchange import LocalExchange

# Keys → types of real Binance responses (the samples of /trades, /historicalTrades, /aggTrades).
TRADE_ROW = {
    "id": int,
    "price": str,
    "qty": str,
    "quoteQty": str,
    "time": int,
    "isBuyerMaker": bool,
    "isBestMatch": bool,
}
AGG_ROW = {"a": int, "p": str, "q": str, "f": int, "l": int, "T": int, "m": bool, "M": bool}
KLINE_TYPES = [int, str, str, str, str, str, int, str, int, str, str, str]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def all_trades(ex: LocalExchange, symbol: str, headers: dict[str, str] | None = None) -> list[dict]:
    """Every trade through historicalTrades?fromId paging (pages of 1000)."""
    out: list[dict] = []
    frm = 1
    while True:
        _, _, page = get(
            f"{ex.http_url}/api/v3/historicalTrades?symbol={symbol}&fromId={frm}&limit=1000", headers
        )
        out += page
        if len(page) < 1000:
            return out
        frm = page[-1]["id"] + 1


@pytest.fixture(scope="module")
def stopped() -> Iterator[LocalExchange]:
    """An exchange that printed ~2 s of a busy market, then stopped (shared by the module)."""
    with LocalExchange(symbols=["btcusdt", "ethusdt"], rate=3000, seed=5) as ex:
        time.sleep(2.0)
        ex.stop_market()
        yield ex


def test_time_and_exchange_info(exchange: Any) -> None:
    ex = exchange()
    st, h, body = get(f"{ex.http_url}/api/v3/time")
    assert st == 200 and abs(body["serverTime"] - time.time() * 1000) < 5000
    assert h["X-MBX-USED-WEIGHT-1M"] == "1"
    st, h, us = get(f"{ex.http_url}/api/v3/time", {"X-MBX-TIME-UNIT": "MICROSECOND"})
    assert us["serverTime"] > 10**15
    st, h, info = get(f"{ex.http_url}/api/v3/exchangeInfo?symbol=BTCUSDT")
    assert st == 200 and int(h["X-MBX-USED-WEIGHT-1M"]) == 1 + 1 + 20
    (sym,) = info["symbols"]
    assert sym["symbol"] == "BTCUSDT" and sym["status"] == "TRADING" and sym["baseAsset"] == "BTC"
    filters = {f["filterType"]: f for f in sym["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    _, _, both = get(f"{ex.http_url}/api/v3/exchangeInfo?symbols=%5B%22BTCUSDT%22,%22ETHUSDT%22%5D")
    assert [s["symbol"] for s in both["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    assert both["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
    }


@pytest.mark.parametrize(
    "path, code",
    [
        ("/api/v3/exchangeInfo?symbol=NOPEUSDT", -1121),
        ("/api/v3/trades?symbol=NOPEUSDT", -1121),
        ("/api/v3/trades", -1102),
        ("/api/v3/trades?symbol=btcusdt", -1100),
        ("/api/v3/trades?symbol=BTCUSDT&limit=abc", -1100),
        ("/api/v3/historicalTrades?symbol=BTCUSDT&fromId=-5", -1100),
        ("/api/v3/trades?symbol=BTCUSDT&bogus=1", -1104),
        ("/api/v3/klines?symbol=BTCUSDT", -1102),
        ("/api/v3/klines?symbol=BTCUSDT&interval=7m", -1120),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=2000&endTime=1000", -1023),
        ("/api/v3/exchangeInfo?symbols=BTCUSDT", -1100),
    ],
)
def test_bad_requests_get_binance_errors(exchange: Any, path: str, code: int) -> None:
    ex = exchange(rate=20)
    st, _, body = get(ex.http_url + path)
    assert st == 400
    assert set(body) == {"code", "msg"} and body["code"] == code and body["msg"]


def test_unknown_endpoint_is_json_404(exchange: Any) -> None:
    ex = exchange(rate=20)
    st, _, body = get(ex.http_url + "/api/v3/avgPrice?symbol=BTCUSDT")
    assert st == 404 and set(body) == {"code", "msg"}


def test_trades_shapes_and_log(stopped: LocalExchange) -> None:
    ex = stopped
    for sym in ("BTCUSDT", "ETHUSDT"):
        hist = all_trades(ex, sym)
        log = ex.trade_log(sym)
        assert len(hist) == len(log) > 1000
        for row, t in zip(hist, log):
            assert {k: type(v) for k, v in row.items()} == TRADE_ROW
            assert (
                row["id"] == t.trade_id and Decimal(row["price"]) == t.price and Decimal(row["qty"]) == t.qty
            )
            assert row["isBuyerMaker"] == t.is_buyer_maker and row["time"] * 1000 == t.trade_time_us
            with localcontext() as ctx:
                ctx.prec = 60
                assert Decimal(row["quoteQty"]) == t.price * t.qty
        _, _, recent = get(f"{ex.http_url}/api/v3/trades?symbol={sym}&limit=5")
        assert recent == hist[-5:]
        _, _, capped = get(f"{ex.http_url}/api/v3/trades?symbol={sym}&limit=5000")
        assert len(capped) == 1000
    _, _, us = get(
        f"{ex.http_url}/api/v3/historicalTrades?symbol=BTCUSDT&fromId=1&limit=3",
        {"X-MBX-TIME-UNIT": "MICROSECOND"},
    )
    exact = ex.trade_log("BTCUSDT", "MICROSECOND")[:3]
    assert [r["time"] for r in us] == [t.trade_time_us for t in exact]


def independent_klines(trades: list[dict], step_ms: int) -> OrderedDict[int, list]:
    """Klines from historicalTrades rows, computed here with Decimals (no forward fill)."""
    out: OrderedDict[int, list] = OrderedDict()
    with localcontext() as ctx:
        ctx.prec = 60
        for r in trades:
            k = r["time"] // step_ms * step_ms
            p, q = Decimal(r["price"]), Decimal(r["qty"])
            if k not in out:
                out[k] = [p, p, p, p, Decimal(0), Decimal(0), 0, Decimal(0), Decimal(0)]
            b = out[k]
            b[1], b[2], b[3] = max(b[1], p), min(b[2], p), p
            b[4] += q
            b[5] += p * q
            b[6] += 1
            if not r["isBuyerMaker"]:
                b[7] += q
                b[8] += p * q
    return out


@pytest.mark.parametrize("interval, step", [("1s", 1000), ("1m", 60_000)])
def test_klines_equal_independent_aggregation(stopped: LocalExchange, interval: str, step: int) -> None:
    ex = stopped
    trades = all_trades(ex, "BTCUSDT")
    first, last = trades[0]["time"] // step * step, trades[-1]["time"]
    st, h, kl = get(
        f"{ex.http_url}/api/v3/klines?symbol=BTCUSDT&interval={interval}&startTime={first}&endTime={last}&limit=1000"
    )
    assert st == 200 and h["X-MBX-USED-WEIGHT-1M"]
    want = independent_klines(trades, step)
    assert kl, "no klines"
    prev_close = None
    for row in kl:
        assert [type(v) for v in row] == KLINE_TYPES
        assert row[6] == row[0] + step - 1 and row[11] == "0"
        o, h_, l_, c, v, qv, n, tb, tq = want.get(row[0], [None] * 9)
        if o is None:  # a second without trades: flat at the previous close, zero volume
            assert row[1] == row[2] == row[3] == row[4] == prev_close and row[8] == 0 and Decimal(row[5]) == 0
        else:
            got = [Decimal(x) for x in row[1:6]] + [
                Decimal(row[7]),
                row[8],
                Decimal(row[9]),
                Decimal(row[10]),
            ]
            assert got == [o, h_, l_, c, v, qv, n, tb, tq], row
        prev_close = row[4]
    assert {r[0] for r in kl} >= set(want)
    assert sum(r[8] for r in kl) == len(trades)
    # without times: the latest klines, newest last
    _, _, latest = get(f"{ex.http_url}/api/v3/klines?symbol=BTCUSDT&interval={interval}&limit=2")
    assert latest == kl[-2:] if len(kl) >= 2 else latest == kl


def test_agg_trades_equal_independent_aggregation(stopped: LocalExchange) -> None:
    ex = stopped
    # aggregates are per taker order: compare on the exchange's exact (µs) times
    trades = all_trades(ex, "ETHUSDT", {"X-MBX-TIME-UNIT": "MICROSECOND"})
    want = []
    for r in trades:
        if (
            want
            and want[-1]["T"] == r["time"]
            and want[-1]["p"] == r["price"]
            and want[-1]["m"] == r["isBuyerMaker"]
        ):
            want[-1]["q"] += Decimal(r["qty"])
            want[-1]["l"] = r["id"]
        else:
            want.append(
                {
                    "p": r["price"],
                    "q": Decimal(r["qty"]),
                    "f": r["id"],
                    "l": r["id"],
                    "T": r["time"],
                    "m": r["isBuyerMaker"],
                }
            )
    got: list[dict] = []
    frm = 0
    while True:
        _, _, page = get(
            f"{ex.http_url}/api/v3/aggTrades?symbol=ETHUSDT&fromId={frm}&limit=1000",
            {"X-MBX-TIME-UNIT": "MICROSECOND"},
        )
        got += page
        if len(page) < 1000:
            break
        frm = page[-1]["a"] + 1
    assert len(got) == len(want) < len(trades)
    for i, (g, w) in enumerate(zip(got, want)):
        assert {k: type(v) for k, v in g.items()} == AGG_ROW
        assert g["a"] == i and g["M"] is True
        assert (g["p"], Decimal(g["q"]), g["f"], g["l"], g["T"], g["m"]) == (
            w["p"],
            w["q"],
            w["f"],
            w["l"],
            w["T"],
            w["m"],
        )
    t_mid = want[len(want) // 2]["T"]
    _, _, by_time = get(
        f"{ex.http_url}/api/v3/aggTrades?symbol=ETHUSDT&startTime={t_mid}&endTime={t_mid}",
        {"X-MBX-TIME-UNIT": "MICROSECOND"},
    )
    assert by_time and all(r["T"] == t_mid for r in by_time)


def test_ticker_24hr(stopped: LocalExchange) -> None:
    ex = stopped
    log = ex.trade_log("BTCUSDT")
    _, _, t = get(f"{ex.http_url}/api/v3/ticker/24hr?symbol=BTCUSDT")
    assert t["symbol"] == "BTCUSDT" and t["count"] == len(log)
    assert t["firstId"] == log[0].trade_id and t["lastId"] == log[-1].trade_id
    assert Decimal(t["volume"]) == sum(x.qty for x in log)
    assert Decimal(t["lastPrice"]) == log[-1].price and Decimal(t["openPrice"]) == log[0].price
    assert Decimal(t["highPrice"]) == max(x.price for x in log)
    _, h, many = get(f"{ex.http_url}/api/v3/ticker/24hr")
    assert [x["symbol"] for x in many] == ["BTCUSDT", "ETHUSDT"]


def test_weight_budget_429_with_retry_after(exchange: Any) -> None:
    ex = exchange(rate=50, weight_budget=100)
    url = f"{ex.http_url}/api/v3/trades?symbol=BTCUSDT&limit=1"
    used = []
    for _ in range(4):
        st, h, _ = get(url)
        assert st == 200
        used.append(int(h["X-MBX-USED-WEIGHT-1M"]))
    if used[-1] != 100:  # the minute turned between two calls: start again in the new minute
        used = []
        for _ in range(4):
            used.append(int(get(url)[1]["X-MBX-USED-WEIGHT-1M"]))
    assert used == [25, 50, 75, 100]
    st, h, body = get(url)
    assert st == 429 and body["code"] == -1003 and "request weight" in body["msg"]
    assert 1 <= int(h["Retry-After"]) <= 61
    assert ex.stats["rest_429_budget"] == 1
