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
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import orjson

from .model import DEFAULT_EXCHANGE, US_CUTOFF, DeadLetter, Trade, now_us

__all__ = ["Control", "decode", "trade_from_rest", "to_us", "MIN_TIME_US"]

MIN_TIME_US = 1_483_228_800_000_000  # 2017-01-01: Binance did not trade before
_MAX_AHEAD_US = 86_400_000_000  # a trade time more than a day ahead is absurd
_MAX_DECIMAL = Decimal("1e15")
_DECIMAL_RE = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,18})?$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")


class Control(NamedTuple):
    """A non-trade message the connection layer acts on."""

    kind: str  # 'reply' (SUBSCRIBE/… answer), 'shutdown' (serverShutdown), 'error', 'other'
    data: dict[str, Any]


class _Bad(Exception):
    pass


def to_us(value: Any, field: str) -> int:
    """A Binance time (ms, or µs under timeUnit=MICROSECOND) as integer microseconds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{field} must be an integer time, got {type(value).__name__}")
    return value if value >= US_CUTOFF else value * 1000


def _decimal(value: Any, field: str) -> Decimal:
    if not isinstance(value, str):
        raise _Bad(f"{field} must be a decimal string, got {type(value).__name__}")
    if value.startswith("-") and _DECIMAL_RE.match(value[1:]):
        raise _Bad(f"absurd {field}: {value} (must be > 0)")
    if not _DECIMAL_RE.match(value):
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
    if value < 0:
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
    if not isinstance(sym, str) or not _SYMBOL_RE.match(sym):
        raise _Bad(f"bad symbol {str(sym)[:40]!r}")
    m = d["m"]
    if not isinstance(m, bool):
        raise _Bad(f"m must be a boolean, got {type(m).__name__}")
    t_us = _check_time(to_us(d["T"], "T"), "T", received_us)
    e_raw = d.get("E")
    e_us = _check_time(to_us(e_raw, "E"), "E", received_us) if e_raw is not None else None
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


def decode(
    payload: bytes | bytearray | str,
    *,
    exchange: str = DEFAULT_EXCHANGE,
    source: str = "live",
    received_at_us: int | None = None,
) -> Trade | Control | DeadLetter:
    """Decode one WebSocket message. Never raises: bad input becomes a DeadLetter."""
    received = received_at_us if received_at_us is not None else now_us()
    raw = payload.encode() if isinstance(payload, str) else payload
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return DeadLetter(f"invalid JSON: {str(exc)[:120]}", bytes(raw), source, exchange, None, received)
    if type(msg) is not dict:
        return DeadLetter(f"expected a JSON object, got {type(msg).__name__}", bytes(raw), source, exchange, None,
                          received)
    data = msg.get("data", msg) if "stream" in msg else msg
    if type(data) is dict and data.get("e") == "trade":
        fast = _fast_trade(data, exchange, source, received)
        if fast is not None:
            return fast
    return _slow(msg, data, bytes(raw), exchange, source, received)


_SEEN_SYMBOLS: set[str] = set()


def _remember_symbol(s: str) -> bool:
    if _SYMBOL_RE.match(s) and len(_SEEN_SYMBOLS) < 100_000:
        _SEEN_SYMBOLS.add(s)
        return True
    return False


def _plain(v: str) -> bool:
    """Cheap check for an unsigned plain decimal with ≤ 15 integer and ≤ 18 fraction digits."""
    dot = v.find(".")
    whole = dot if dot >= 0 else len(v)
    return 0 < whole <= 15 and len(v) - whole <= 19 and v.isascii() and v.replace(".", "", 1).isdigit()


def _fast_trade(d: dict[str, Any], exchange: str, source: str, received: int) -> Trade | None:
    """The common case in as few steps as possible; None sends the message to the careful path."""
    try:
        s, t, p, q, T, m = d["s"], d["t"], d["p"], d["q"], d["T"], d["m"]
        e = d.get("E")
        if not (type(t) is int and type(T) is int and type(m) is bool and type(p) is str and type(q) is str
                and type(s) is str and (e is None or type(e) is int) and t >= 0):
            return None
        if not (_plain(p) and _plain(q) and (s in _SEEN_SYMBOLS or _remember_symbol(s))):
            return None
        price, qty = Decimal(p), Decimal(q)
        t_us = T if T >= US_CUTOFF else T * 1000
        e_us = None if e is None else (e if e >= US_CUTOFF else e * 1000)
        limit = received + _MAX_AHEAD_US
        if price and qty and MIN_TIME_US <= t_us <= limit and (e_us is None or MIN_TIME_US <= e_us <= limit):
            return Trade(exchange, s, t, price, qty, m, t_us, e_us, received, source)
    except (KeyError, InvalidOperation):
        pass
    return None


def _slow(msg: dict[str, Any], data: Any, raw: bytes, exchange: str, source: str, received: int) -> Trade | Control | DeadLetter:
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
            _check_time(to_us(item["time"], "time"), "time", received),
            None,
            received,
            source,
        )
    except KeyError as exc:
        raise ValueError(f"REST trade without field {exc}") from None
    except _Bad as exc:
        raise ValueError(str(exc)) from None
