"""Binance USD-M futures: stream payloads → typed rows, the `/fapi` REST calls, the routed stream URLs.

Decoding is pure (bytes in, rows out) and never raises: `decode_usdm()` turns one message of
`<symbol>@aggTrade`, `<symbol>@markPrice@1s` or `<symbol>@forceOrder` (raw, or wrapped by the
combined stream `{"stream":…,"data":…}`) into an `AggTrade`, `MarkPrice` or `Liquidation`, a
`Control` (subscription reply, `serverShutdown`) or a `DeadLetter` naming what was wrong, as
`binance.wire` does for spot trades. Decimals must arrive as strings and become exact `Decimal`s;
the funding rate is signed (it may be negative), the other prices and quantities are not.
Futures send millisecond times (carried as integer µs).

The shapes (Binance's documentation; checked by hand against the real futures recordings of
the team's data: the same ms times, `"s"` symbol and decimal strings):

    aggTrade:    {"e":"aggTrade","E":…,"s":"BTCUSDT","a":5933014,"p":"63943.90","q":"0.003","f":100,"l":105,
                  "T":…,"m":true}
    markPrice:   {"e":"markPriceUpdate","E":…,"s":"BTCUSDT","p":"63950.1","i":"63960.2","P":"63961.0",
                  "r":"0.00010000","T":1721376000000}
    forceOrder:  {"e":"forceOrder","E":…,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC","q":"0.014",
                  "p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014","T":…}}

Binance sends at most one `forceOrder` per symbol per second (the latest liquidation of that
second): counting them undercounts busy seconds. Aggregates of futures may skip trade ids
(insurance-fund and ADL trades are not aggregated): `f`/`l` jumps between aggregates are not loss.

REST: `UsdmRestClient` is `binance.rest.RestClient` (weights, Retry-After, retries, capped answers)
on `https://fapi.binance.com` with the futures endpoints: `/fapi/v1/aggTrades` by `fromId` or by a
time window shorter than one hour (Binance's limit), `/fapi/v1/fundingRate`, `/fapi/v1/openInterest`,
`/futures/data/openInterestHist` (Binance keeps only the last 30 days: older starts are refused
here with one line), `/fapi/v1/klines`, `/fapi/v1/markPriceKlines`, `/fapi/v1/exchangeInfo`.

Routed streams (Binance, 2026): depth and bookTicker on `/public`, aggTrade, markPrice and
forceOrder on `/market` (an unrouted URL gets the public ones only): `stream_urls()` is the pure
URL function.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypedDict, cast

import msgspec
import orjson

from ..errors import DataError, SourceError
from ..markets import AggTrade, FundingRate, Liquidation, MarkPrice, OpenInterest, exchange_for
from ..model import DEFAULT_EXCHANGE, US_CUTOFF, DeadLetter, now_us
from .rest import Kline, MarketInfo, Params, RestClient
from .wire import (
    _DECIMAL_RE,
    _MAX_AHEAD_US,
    _MAX_INT8,
    _SEEN_SYMBOLS,
    _SYMBOL_RE,
    MIN_TIME_US,
    Control,
    _Bad,
    _check_time,
    _decimal,
    _int,
    _plain,
    _remember_symbol,
    _time_us,
)

__all__ = [
    "USDM_EXCHANGE",
    "DEFAULT_FAPI_URL",
    "DEFAULT_FSTREAM_URL",
    "STREAM_KINDS",
    "OI_HIST_DAYS",
    "MAX_AGG_WINDOW_MS",
    "decode_usdm",
    "decode_usdm_fast",
    "route_of",
    "stream_name",
    "stream_urls",
    "agg_trade_from_rest",
    "funding_from_rest",
    "open_interest_from_rest",
    "open_interest_hist_from_rest",
    "agg_windows",
    "UsdmRestClient",
    "FapiAggTrade",
    "FundingRateRow",
    "OpenInterestNow",
    "OpenInterestHistRow",
]

USDM_EXCHANGE = exchange_for("usdm", DEFAULT_EXCHANGE)
DEFAULT_FAPI_URL = "https://fapi.binance.com"
"""Binance's futures REST root (CRYPTOLAB_FAPI_URL overrides it: `config.settings().fapi_url`)."""
DEFAULT_FSTREAM_URL = "wss://fstream.binance.com"
"""Binance's futures stream root (CRYPTOLAB_FSTREAM_URL overrides it)."""
STREAM_KINDS = {"aggTrade": "market", "markPrice@1s": "market", "markPrice": "market", "forceOrder": "market",
                "bookTicker": "public", "depth": "public", "depth@100ms": "public", "depth@0ms": "public",
                "depth@500ms": "public"}
"""Each futures stream kind and its route (Binance's 2026 routed URLs)."""
OI_HIST_DAYS = 30
"""/futures/data/openInterestHist answers the last 30 days only."""
MAX_AGG_WINDOW_MS = 3_600_000
"""/fapi/v1/aggTrades by startTime/endTime: the window must be shorter than one hour."""
_SIGNED_RE = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,18})?")
_SIDES = ("BUY", "SELL")
_WORD = re.compile(r"[A-Z_]{1,32}")


# ---------------------------------------------------------------------- decoding
def _signed(value: Any, field: str) -> Decimal:
    if not isinstance(value, str):
        raise _Bad(f"{field} must be a decimal string, got {type(value).__name__}")
    if not _SIGNED_RE.fullmatch(value):
        raise _Bad(f"{field} is not a plain decimal: {value[:40]!r}")
    d = Decimal(value)
    if abs(d) >= 1:
        raise _Bad(f"absurd {field}: {value} (a funding rate is a fraction, |r| < 1)")
    return d


def _nonneg(value: Any, field: str) -> Decimal:
    if not isinstance(value, str):
        raise _Bad(f"{field} must be a decimal string, got {type(value).__name__}")
    if not _DECIMAL_RE.fullmatch(value):
        raise _Bad(f"{field} is not a plain decimal >= 0: {value[:40]!r}")
    return Decimal(value)


def _optional(value: Any, field: str, parse: Any) -> Any:
    """Binance leaves some fields empty ("" or 0) for contracts without funding: None then."""
    if value is None or value == "":
        return None
    return parse(value, field)


def _symbol(d: Mapping[str, Any]) -> str:
    sym = d.get("s")
    if not isinstance(sym, str) or not _SYMBOL_RE.fullmatch(sym):
        raise _Bad(f"bad symbol {str(sym)[:40]!r}")
    return sym


def _need(d: Mapping[str, Any], keys: str) -> None:
    for k in keys.split():
        if k not in d:
            raise _Bad(f"missing field {k!r}")


def _agg(d: Mapping[str, Any], exchange: str, source: str, received: int) -> AggTrade:
    _need(d, "s a p q f l T m")
    sym = _symbol(d)
    m = d["m"]
    if not isinstance(m, bool):
        raise _Bad(f"m must be a boolean, got {type(m).__name__}")
    first, last = _int(d["f"], "f"), _int(d["l"], "l")
    if last < first:
        raise _Bad(f"l {last} is below f {first}")
    e = d.get("E")
    return AggTrade(
        exchange,
        sym,
        _int(d["a"], "a"),
        _decimal(d["p"], "p"),
        _decimal(d["q"], "q"),
        first,
        last,
        _check_time(_time_us(d["T"], "T"), "T", received),
        m,
        None if e is None else _check_time(_time_us(e, "E"), "E", received),
        received,
        source,
    )


def _mark(d: Mapping[str, Any], exchange: str, source: str, received: int) -> MarkPrice:
    _need(d, "s E p")
    sym = _symbol(d)
    t_next = d.get("T")
    next_us = None if t_next in (None, 0) else _time_us(t_next, "T")
    return MarkPrice(
        exchange,
        sym,
        _check_time(_time_us(d["E"], "E"), "E", received),
        _decimal(d["p"], "p"),
        _optional(d.get("i"), "i", _nonneg),
        _optional(d.get("P"), "P", _nonneg),
        _optional(d.get("r"), "r", _signed),
        next_us,
        received,
        source,
    )


def _force(d: Mapping[str, Any], exchange: str, source: str, received: int) -> Liquidation:
    o = d.get("o")
    if not isinstance(o, dict):
        raise _Bad("forceOrder without its order object 'o'")
    _need(o, "s S o q p ap X l z T")
    sym = _symbol(o)
    side = o["S"]
    if side not in _SIDES:
        raise _Bad(f"side S must be BUY or SELL, got {str(side)[:20]!r}")
    kind, status, tif = o["o"], o["X"], o.get("f")
    for name, v in (("o", kind), ("X", status)):
        if not isinstance(v, str) or not _WORD.fullmatch(v):
            raise _Bad(f"{name} is not an order word: {str(v)[:20]!r}")
    if tif is not None and (not isinstance(tif, str) or not _WORD.fullmatch(tif)):
        raise _Bad(f"f is not a time in force: {str(tif)[:20]!r}")
    e = d.get("E")
    return Liquidation(
        exchange,
        sym,
        _check_time(_time_us(o["T"], "T"), "T", received),
        side,
        kind,
        tif,
        _decimal(o["p"], "p"),
        _nonneg(o["ap"], "ap"),
        _decimal(o["q"], "q"),
        _nonneg(o["l"], "l"),
        _nonneg(o["z"], "z"),
        status,
        None if e is None else _check_time(_time_us(e, "E"), "E", received),
        received,
        source,
    )


_Decoder = Callable[[Mapping[str, Any], str, str, int], "AggTrade | MarkPrice | Liquidation"]
_DECODERS: dict[str, _Decoder] = {"aggTrade": _agg, "markPriceUpdate": _mark, "forceOrder": _force}


def decode_usdm(
    payload: bytes | bytearray | str,
    *,
    exchange: str = USDM_EXCHANGE,
    source: str = "live",
    received_at_us: int | None = None,
) -> AggTrade | MarkPrice | Liquidation | Control | DeadLetter:
    """Decode one futures market-stream message. Never raises: bad input becomes a DeadLetter."""
    received = received_at_us if received_at_us is not None else now_us()
    raw = payload.encode() if isinstance(payload, str) else bytes(payload)
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return DeadLetter(f"invalid JSON: {str(exc)[:120]}", raw, source, exchange, None, received)
    if type(msg) is not dict:
        return DeadLetter(
            f"expected a JSON object, got {type(msg).__name__}", raw, source, exchange, None, received
        )
    if "id" in msg and ("result" in msg or "error" in msg):
        return Control("error" if "error" in msg else "reply", msg)
    data = msg.get("data", msg) if "stream" in msg else msg
    if not isinstance(data, dict):
        return DeadLetter("combined stream 'data' is not an object", raw, source, exchange, None, received)
    event = data.get("e")
    if event == "serverShutdown":
        return Control("shutdown", data)
    fn = _DECODERS.get(event) if isinstance(event, str) else None
    if fn is None:
        reason = "no event type ('e' missing)" if event is None else f"unknown event type {str(event)[:40]!r}"
        return DeadLetter(reason, raw, source, exchange, None, received)
    try:
        return fn(data, exchange, source, received)
    except _Bad as exc:
        order = data.get("o")
        inner: dict[str, Any] = order if event == "forceOrder" and isinstance(order, dict) else data
        sym = inner.get("s") if isinstance(inner.get("s"), str) else None
        return DeadLetter(f"{event}: {exc}", raw, source, exchange, sym, received)


# ---------------------------------------------------------------------- routed stream URLs
def route_of(stream: str) -> str:
    """`btcusdt@aggTrade` → "market", `btcusdt@depth@100ms` → "public" (Binance's 2026 routes)."""
    _, _, kind = stream.partition("@")
    route = STREAM_KINDS.get(kind)
    if route is None:
        raise DataError(f"unknown futures stream {stream!r}: use <symbol>@ one of {', '.join(STREAM_KINDS)}")
    return route


def stream_name(symbol: str, kind: str) -> str:
    """`("BTCUSDT", "markPrice@1s")` → `btcusdt@markPrice@1s`."""
    name = f"{symbol.strip().lower()}@{kind}"
    route_of(name)
    return name


def stream_urls(
    symbols: Sequence[str],
    kinds: Iterable[str] = ("aggTrade", "markPrice@1s", "forceOrder"),
    base: str | None = None,
) -> dict[str, str]:
    """The combined-stream URL of each route the streams need: `{"market": "wss://…/market/stream?streams=…"}`
    (`base` None: the settings' `fstream_url`)."""
    if base is None:
        from ..config import settings

        base = settings().fstream_url
    by_route: dict[str, list[str]] = {}
    for sym in symbols:
        for kind in kinds:
            name = stream_name(sym, kind)
            by_route.setdefault(route_of(name), []).append(name)
    root = base.rstrip("/")
    return {
        route: f"{root}/{route}/stream?streams={'/'.join(names)}" for route, names in sorted(by_route.items())
    }


# ---------------------------------------------------------------------- REST rows
class FapiAggTrade(TypedDict):
    """One row of /fapi/v1/aggTrades."""

    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 (Binance's name)
    T: int
    m: bool


class FundingRateRow(TypedDict, total=False):
    """One row of /fapi/v1/fundingRate (markPrice since 2023)."""

    symbol: str
    fundingTime: int
    fundingRate: str
    markPrice: str


class OpenInterestNow(TypedDict):
    """/fapi/v1/openInterest."""

    symbol: str
    openInterest: str
    time: int


class OpenInterestHistRow(TypedDict):
    """One row of /futures/data/openInterestHist."""

    symbol: str
    sumOpenInterest: str
    sumOpenInterestValue: str
    timestamp: int


def _rest(fn: Any, what: str) -> Any:
    try:
        return fn()
    except KeyError as exc:
        raise ValueError(f"{what} without field {exc}") from None
    except _Bad as exc:
        raise ValueError(f"{what}: {exc}") from None


def agg_trade_from_rest(
    item: Mapping[str, Any], symbol: str, *, exchange: str = USDM_EXCHANGE, source: str = "backfill"
) -> AggTrade:
    """One /fapi/v1/aggTrades item → AggTrade (ValueError if bad)."""
    return cast(
        AggTrade,
        _rest(lambda: _agg({**item, "s": symbol.upper()}, exchange, source, now_us()), "REST aggTrade"),
    )


def funding_from_rest(
    item: Mapping[str, Any], *, exchange: str = USDM_EXCHANGE, source: str = "backfill"
) -> FundingRate:
    """One /fapi/v1/fundingRate item → FundingRate (ValueError if bad)."""

    def one() -> FundingRate:
        mark = item.get("markPrice")
        return FundingRate(
            exchange,
            _symbol({"s": item["symbol"]}),
            _time_us(item["fundingTime"], "fundingTime"),
            _signed(item["fundingRate"], "fundingRate"),
            None if mark in (None, "") or Decimal(str(mark)) == 0 else _decimal(mark, "markPrice"),
            None,
            source,
        )

    return cast(FundingRate, _rest(one, "REST fundingRate"))


def open_interest_from_rest(
    item: Mapping[str, Any], *, exchange: str = USDM_EXCHANGE, source: str = "live"
) -> OpenInterest:
    """/fapi/v1/openInterest → OpenInterest (ValueError if bad)."""
    return cast(
        OpenInterest,
        _rest(
            lambda: OpenInterest(
                exchange,
                _symbol({"s": item["symbol"]}),
                _time_us(item["time"], "time"),
                _nonneg(item["openInterest"], "openInterest"),
                None,
                source,
            ),
            "REST openInterest",
        ),
    )


def open_interest_hist_from_rest(
    item: Mapping[str, Any], *, exchange: str = USDM_EXCHANGE, source: str = "backfill"
) -> OpenInterest:
    """One /futures/data/openInterestHist item → OpenInterest (ValueError if bad)."""
    return cast(
        OpenInterest,
        _rest(
            lambda: OpenInterest(
                exchange,
                _symbol({"s": item["symbol"]}),
                _time_us(item["timestamp"], "timestamp"),
                _nonneg(item["sumOpenInterest"], "sumOpenInterest"),
                _nonneg(item["sumOpenInterestValue"], "sumOpenInterestValue"),
                source,
            ),
            "REST openInterestHist",
        ),
    )


def agg_windows(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """[start_ms, end_ms) cut into windows Binance accepts for aggTrades by time: each
    `(startTime, endTime)` inclusive and shorter than one hour."""
    if end_ms <= start_ms:
        return []
    step = MAX_AGG_WINDOW_MS - 1
    return [(t, min(t + step, end_ms) - 1) for t in range(start_ms, end_ms, step)]


# ---------------------------------------------------------------------- REST client
class UsdmRestClient(RestClient):
    """`RestClient` on Binance USD-M futures (`/fapi`): same weights, retries and caps."""

    def __init__(self, base_url: str | None = None, *, weight_budget: int = 2400, **kw: Any) -> None:
        """`base_url` None: the settings' `fapi_url` (CRYPTOLAB_FAPI_URL, else Binance's)."""
        if base_url is None:
            from ..config import settings

            base_url = settings().fapi_url
        super().__init__(base_url, weight_budget=weight_budget, **kw)

    async def server_time(self) -> int:
        body = await self._get_object("/fapi/v1/time", {})
        try:
            return int(body["serverTime"])
        except (KeyError, TypeError, ValueError):
            raise SourceError(
                f"{self.base_url}/fapi/v1/time answered without a serverTime: {body!r:.200}"
            ) from None

    async def exchange_info(self, symbols: list[str] | None = None) -> Any:
        """The futures listing (all symbols: /fapi/v1/exchangeInfo takes no filter; `symbols`
        filters here)."""
        body = await self._get_object("/fapi/v1/exchangeInfo", {}, symbol=",".join(symbols or []))
        if symbols:
            want = {s.upper() for s in symbols}
            listed = body.get("symbols", [])
            body = {**body, "symbols": [s for s in listed if isinstance(s, dict) and s.get("symbol") in want]}
        return body

    async def usdm_market(self, symbols: list[str] | None = None) -> tuple[MarketInfo, str]:
        """What the futures market serves and the `exchange` its rows are stored under
        ("binance-usdm", or "simulator-usdm" for the local exchange's synthetic market)."""
        info = await self.market_info(symbols)
        return info, exchange_for("usdm", info.stored_as)

    async def agg_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[Any]:
        """Aggregate trades by `fromId`, or in a time window shorter than one hour (refused otherwise)."""
        if start_ms is not None and end_ms is not None and end_ms - start_ms >= MAX_AGG_WINDOW_MS:
            raise DataError(
                f"aggTrades by time: {end_ms - start_ms} ms is not under one hour — Binance refuses "
                "longer windows; cut it with agg_windows() or page by fromId"
            )
        params: Params = {"symbol": symbol.upper(), "limit": int(limit)}
        if from_id is not None:
            params["fromId"] = int(from_id)
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get_list("/fapi/v1/aggTrades", params, symbol=symbol)

    async def depth(self, symbol: str, limit: int = 1000) -> dict[str, Any]:
        """The futures book's `limit` best levels a side (5…1000) with `lastUpdateId`, `E`, `T`."""
        from .rest import depth_weight

        return await self._get_object(
            "/fapi/v1/depth",
            {"symbol": symbol.upper(), "limit": int(min(limit, 1000))},
            symbol=symbol,
            weight=depth_weight(min(limit, 1000)),
        )

    async def funding_rate(
        self, symbol: str, *, start_ms: int | None = None, end_ms: int | None = None, limit: int = 1000
    ) -> list[FundingRateRow]:
        """Settled funding rates (oldest first), as Binance prints them."""
        params: Params = {"symbol": symbol.upper(), "limit": int(limit)}
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get_list("/fapi/v1/fundingRate", params, symbol=symbol)

    async def open_interest(self, symbol: str) -> OpenInterestNow:
        """Open interest now (contracts), as Binance prints it."""
        body = await self._get_object("/fapi/v1/openInterest", {"symbol": symbol.upper()}, symbol=symbol)
        return cast(OpenInterestNow, body)

    async def open_interest_hist(
        self,
        symbol: str,
        period: str = "5m",
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[OpenInterestHistRow]:
        """Open interest history: Binance keeps only the last 30 days (an older start is refused here)."""
        oldest = now_us() // 1000 - OI_HIST_DAYS * 86_400_000
        if start_ms is not None and start_ms < oldest:
            raise DataError(
                f"openInterestHist reaches back {OI_HIST_DAYS} days only: a start before that has no "
                "answer — take older open interest from the `metrics` dumps (cryptolab history "
                "--market usdm --kind metrics)"
            )
        params: Params = {"symbol": symbol.upper(), "period": period, "limit": int(limit)}
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get_list("/futures/data/openInterestHist", params, symbol=symbol)

    async def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[Kline]:
        return await self._klines("/fapi/v1/klines", symbol, interval, start_ms, end_ms, limit)

    async def mark_price_klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[Kline]:
        return await self._klines("/fapi/v1/markPriceKlines", symbol, interval, start_ms, end_ms, limit)

    async def _klines(
        self, path: str, symbol: str, interval: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[Kline]:
        params: Params = {"symbol": symbol.upper(), "interval": interval, "limit": int(limit)}
        if start_ms is not None:
            params["startTime"] = int(start_ms)
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        return await self._get_list(path, params, symbol=symbol)


# ---------------------------------------------------------------------- the fast path of aggregates
class _AggFields(msgspec.Struct, gc=False):
    """The `@aggTrade` fields the fast path reads (others ignored)."""

    e: str
    s: str
    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 (Binance's name)
    T: int
    m: bool
    E: int | None = None


class _AggCombined(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    stream: str
    data: _AggFields


_decode_agg_combined = msgspec.json.Decoder(_AggCombined).decode
_decode_agg_raw = msgspec.json.Decoder(_AggFields).decode
_new_tuple = tuple.__new__


def decode_usdm_fast(
    payload: bytes | bytearray,
    *,
    exchange: str = USDM_EXCHANGE,
    source: str = "live",
    received_at_us: int | None = None,
) -> AggTrade | MarkPrice | Liquidation | Control | DeadLetter:
    """`decode_usdm`, with aggregate trades in the usual shape taken by a fast path (msgspec into
    typed fields, the same checks); everything else — and anything the fast path doubts — is
    decoded by `decode_usdm`, which alone decides what is refused and why. Never raises."""
    received = received_at_us if received_at_us is not None else now_us()
    if b"@aggTrade" in payload[:60] or payload.startswith(b'{"e":"aggTrade"'):
        try:
            d = (
                _decode_agg_combined(payload).data
                if payload.startswith(b'{"stream"')
                else _decode_agg_raw(payload)
            )
        except Exception:  # not the usual shape: the careful path judges it
            pass
        else:
            a, f, last, p, q, s = d.a, d.f, d.l, d.p, d.q, d.s
            if (
                d.e == "aggTrade"
                and 0 <= a <= _MAX_INT8
                and 0 <= f <= last <= _MAX_INT8
                and (s in _SEEN_SYMBOLS or _remember_symbol(s))
                and _plain(p)
                and _plain(q)
            ):
                price, qty = Decimal(p), Decimal(q)
                T, e = d.T, d.E  # model.to_us inlined: the hot path
                t_us = T if T >= US_CUTOFF else T * 1000
                e_us = None if e is None else (e if e >= US_CUTOFF else e * 1000)
                limit = received + _MAX_AHEAD_US
                if (
                    price
                    and qty
                    and MIN_TIME_US <= t_us <= limit
                    and (e_us is None or MIN_TIME_US <= e_us <= limit)
                ):
                    return _new_tuple(
                        AggTrade, (exchange, s, a, price, qty, f, last, t_us, d.m, e_us, received, source)
                    )
    return decode_usdm(payload, exchange=exchange, source=source, received_at_us=received)
