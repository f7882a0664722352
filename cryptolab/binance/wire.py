"""Binance wire format → normalized rows. Pure: bytes in, rows out, no I/O.

`decode()` turns one WebSocket message (raw `@trade` payload or the combined
stream's `{"stream":…,"data":…}` wrapper) into a `Trade`, a `Control` message
(subscription reply, `serverShutdown`, …) or a `DeadLetter` with the reason.
`trade_from_rest()` does the same for one `/api/v3/historicalTrades` item.

Prices and quantities must arrive as decimal strings and become `Decimal`; a
number where a string belongs is refused (it may already have lost digits).
Times are accepted in milliseconds or microseconds (`timeUnit=MICROSECOND`) and
carried as integer microseconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import msgspec
import orjson

from ..model import DEFAULT_EXCHANGE, US_CUTOFF, DeadLetter, Trade, TradeFields, now_us, to_us

__all__ = ["Control", "MIN_TIME_US", "decode", "trade_fields", "trade_from_rest"]

MIN_TIME_US = 1_483_228_800_000_000  # 2017-01-01: Binance did not trade before
_MAX_AHEAD_US = 86_400_000_000  # a trade time more than a day ahead is absurd
_MAX_DECIMAL = Decimal("1e15")
_MAX_INT8 = 2**63 - 1  # trade ids are stored as bigint
_DECIMAL_RE = re.compile(r"[0-9]{1,20}(\.[0-9]{1,18})?")  # always .fullmatch: `$` would let "1\n" through
_SYMBOL_RE = re.compile(r"[A-Z0-9]{2,30}")


class Control(NamedTuple):
    """A non-trade message the connection layer acts on."""

    kind: str  # 'reply' (SUBSCRIBE/… answer), 'shutdown' (serverShutdown), 'error', 'other'
    data: dict[str, Any]


class _Bad(Exception):
    pass


def _time_us(value: Any, field: str) -> int:
    """Payload field `field`, a Binance time (ms, or µs under timeUnit=MICROSECOND), as integer µs."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{field} must be an integer time, got {type(value).__name__}")
    return to_us(value)


def _decimal(value: Any, field: str) -> Decimal:
    if not isinstance(value, str):
        raise _Bad(f"{field} must be a decimal string, got {type(value).__name__}")
    if value.startswith("-") and _DECIMAL_RE.fullmatch(value[1:]):
        raise _Bad(f"absurd {field}: {value} (must be > 0)")
    if not _DECIMAL_RE.fullmatch(value):
        raise _Bad(f"{field} is not a plain decimal: {value[:40]!r}")
    try:
        d = Decimal(value)
    except InvalidOperation:  # pragma: no cover - the regex already refused it
        raise _Bad(f"{field} is not a decimal: {value[:40]!r}") from None
    if d <= 0:
        raise _Bad(f"absurd {field}: {value} (must be > 0)")
    if d >= _MAX_DECIMAL:
        raise _Bad(f"absurd {field}: {value}")
    return d


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{field} must be an integer, got {type(value).__name__}")
    if value < 0 or value > _MAX_INT8:
        raise _Bad(f"absurd {field}: {value}")
    return value


def _check_time(us: int, field: str, received_us: int) -> int:
    if us < MIN_TIME_US or us > received_us + _MAX_AHEAD_US:
        raise _Bad(f"absurd {field}: {us} µs is outside 2017 … now+1d")
    return us


def _trade(d: Mapping[str, Any], exchange: str, source: str, received_us: int) -> Trade:
    for key in ("s", "t", "p", "q", "T", "m"):
        if key not in d:
            raise _Bad(f"missing field {key!r}")
    sym = d["s"]
    if not isinstance(sym, str) or not _SYMBOL_RE.fullmatch(sym):
        raise _Bad(f"bad symbol {str(sym)[:40]!r}")
    m = d["m"]
    if not isinstance(m, bool):
        raise _Bad(f"m must be a boolean, got {type(m).__name__}")
    t_us = _check_time(_time_us(d["T"], "T"), "T", received_us)
    e_raw = d.get("E")
    e_us = _check_time(_time_us(e_raw, "E"), "E", received_us) if e_raw is not None else None
    return Trade(
        exchange,
        sym,
        _int(d["t"], "t"),
        _decimal(d["p"], "p"),
        _decimal(d["q"], "q"),
        m,
        t_us,
        e_us,
        received_us,
        source,
    )


class _TradeFields(msgspec.Struct, gc=False):
    """The `@trade` event's fields the fast path reads (others are ignored). `gc=False`: never
    tracked by the cycle collector (it holds no containers), so decoding does not trigger it."""

    e: str
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool
    E: int | None = None


class _Combined(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The combined stream's wrapper: `{"stream": …, "data": {…}}` and nothing else (a wrapper with
    more, e.g. an `id`, is the careful path's to judge)."""

    stream: str
    data: _TradeFields


_decode_combined = msgspec.json.Decoder(_Combined).decode
_decode_raw = msgspec.json.Decoder(_TradeFields).decode
_new_tuple = tuple.__new__
_time_ns = time.time_ns


def decode(
    payload: bytes | bytearray | str,
    *,
    exchange: str = DEFAULT_EXCHANGE,
    source: str = "live",
    received_at_us: int | None = None,
) -> Trade | Control | DeadLetter:
    """Decode one WebSocket message. Never raises: bad input becomes a DeadLetter.

    A trade in the usual shape takes the fast path (msgspec into typed fields, a few
    checks); anything the fast path does not accept — a control message, a wrong type,
    an odd number, a symbol not seen before that fails its check — is decoded again by
    the careful path, which alone decides what is refused and why.
    """
    received = received_at_us if received_at_us is not None else _time_ns() // 1000
    raw = payload.encode() if isinstance(payload, str) else payload
    try:
        d = _decode_combined(raw).data if raw.startswith(b'{"stream"') else _decode_raw(raw)
    except Exception:  # not the usual trade shape (msgspec.DecodeError, UnicodeDecodeError, …)
        pass
    else:
        fast = _fast_trade(d, exchange, source, received)
        if fast is not None:
            return fast
    return _careful(raw, exchange, source, received)


def _careful(
    raw: bytes | bytearray, exchange: str, source: str, received: int
) -> Trade | Control | DeadLetter:
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return DeadLetter(f"invalid JSON: {str(exc)[:120]}", bytes(raw), source, exchange, None, received)
    if type(msg) is not dict:
        return DeadLetter(
            f"expected a JSON object, got {type(msg).__name__}", bytes(raw), source, exchange, None, received
        )
    data = msg.get("data", msg) if "stream" in msg else msg
    return _slow(msg, data, bytes(raw), exchange, source, received)


_SEEN_SYMBOLS: set[str] = set()


def _remember_symbol(s: str) -> bool:
    if _SYMBOL_RE.fullmatch(s) and len(_SEEN_SYMBOLS) < 100_000:
        _SEEN_SYMBOLS.add(s)
        return True
    return False


_plain = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,18})?").fullmatch
"""An unsigned plain decimal below 1e15 with at most 18 fraction digits (ASCII digits only)."""


def trade_fields(raw: bytes | bytearray, received: int) -> TradeFields | None:
    """A trade frame in the usual shape, checked as `decode` checks it, as plain fields (no
    `Trade`, no `Decimal`: the capture's columns keep the strings); None for anything else, which
    `decode` then judges (a control message, a dead letter, a trade only its careful path takes)."""
    try:
        d = _decode_combined(raw).data if raw.startswith(b'{"stream"') else _decode_raw(raw)
    except Exception:  # not the usual trade shape
        return None
    return _fast_fields(d, received)


def _fast_fields(d: _TradeFields, received: int) -> TradeFields | None:
    """The common case in as few steps as possible; None sends the message to the careful path.

    msgspec already checked the types (an int is not a bool or a float, a string is a
    string); what is left is the ranges and the decimal grammar. Accepts only what the
    careful path would accept, with the same values.
    """
    t, s, p, q = d.t, d.s, d.p, d.q
    if d.e != "trade" or not 0 <= t <= _MAX_INT8 or not (s in _SEEN_SYMBOLS or _remember_symbol(s)):
        return None
    if not (_plain(p) and _plain(q)) or p.strip("0") in _ZERO or q.strip("0") in _ZERO:
        return None
    T, e = d.T, d.E  # model.to_us inlined: this is the per-trade hot path
    t_us = T if T >= US_CUTOFF else T * 1000
    e_us = None if e is None else (e if e >= US_CUTOFF else e * 1000)
    limit = received + _MAX_AHEAD_US
    if MIN_TIME_US <= t_us <= limit and (e_us is None or MIN_TIME_US <= e_us <= limit):
        return (s, t, p, q, d.m, t_us, e_us)
    return None


_ZERO = ("", ".")
"""A plain decimal whose digits are all zeros, once its zeros are stripped (refused: must be > 0)."""


def _fast_trade(d: _TradeFields, exchange: str, source: str, received: int) -> Trade | None:
    """`_fast_fields` as a `Trade`."""
    f = _fast_fields(d, received)
    if f is None:
        return None
    s, t, p, q, m, t_us, e_us = f
    # tuple.__new__ skips the NamedTuple's Python-level __new__ (same object, same type)
    return _new_tuple(Trade, (exchange, s, t, Decimal(p), Decimal(q), m, t_us, e_us, received, source))


def _slow(
    msg: dict[str, Any], data: Any, raw: bytes, exchange: str, source: str, received: int
) -> Trade | Control | DeadLetter:
    if data is not msg and not isinstance(data, dict):
        return DeadLetter("combined stream 'data' is not an object", raw, source, exchange, None, received)
    if "id" in msg and ("result" in msg or "error" in msg):
        return Control("error" if "error" in msg else "reply", msg)
    event = data.get("e")
    if event == "trade":
        try:
            return _trade(data, exchange, source, received)
        except _Bad as exc:
            sym = data.get("s") if isinstance(data.get("s"), str) else None
            return DeadLetter(str(exc), raw, source, exchange, sym, received)
    if event == "serverShutdown":
        return Control("shutdown", data)
    if event is None:
        return DeadLetter("no event type ('e' missing)", raw, source, exchange, None, received)
    return DeadLetter(f"unknown event type {str(event)[:40]!r}", raw, source, exchange, None, received)


def trade_from_rest(
    item: Mapping[str, Any],
    symbol: str,
    *,
    exchange: str = "binance",
    source: str = "backfill",
    received_at_us: int | None = None,
) -> Trade:
    """One `/api/v3/historicalTrades` (or `/trades`) item → Trade. Raises ValueError if bad."""
    received = received_at_us if received_at_us is not None else now_us()
    try:
        return Trade(
            exchange,
            symbol.upper(),
            _int(item["id"], "id"),
            _decimal(item["price"], "price"),
            _decimal(item["qty"], "qty"),
            bool(item["isBuyerMaker"]),
            _check_time(_time_us(item["time"], "time"), "time", received),
            None,
            received,
            source,
        )
    except KeyError as exc:
        raise ValueError(f"REST trade without field {exc}") from None
    except _Bad as exc:
        raise ValueError(str(exc)) from None
