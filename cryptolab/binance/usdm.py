"""Binance USD-M futures on the wire: stream payloads → typed rows (pure).

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

Beside it: `usdm_rest` (the `/fapi` REST calls, `UsdmRestClient`) and `usdm_streams` (the
routed stream names and URLs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import msgspec
import orjson

from ..markets import AggTrade, Liquidation, MarkPrice, exchange_for
from ..model import DEFAULT_EXCHANGE, US_CUTOFF, DeadLetter, now_us
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

__all__ = ["USDM_EXCHANGE", "decode_usdm", "decode_usdm_fast"]


USDM_EXCHANGE = exchange_for("usdm", DEFAULT_EXCHANGE)
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
