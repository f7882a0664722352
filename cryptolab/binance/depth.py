"""Binance's book messages → book rows. Pure: bytes in, rows out, no I/O.

`decode_diff()` reads one `depthUpdate` event (spot `@depth`/`@depth@100ms`, futures with
`pu`), `decode_quote()` one `bookTicker` event, `snapshot_from_rest()` a `GET /api/v3/depth`
(or `/fapi/v1/depth`) answer. Levels stay the exchange's decimal strings, each checked against
the plain decimal grammar (a price > 0; a quantity ≥ 0, zero removing the level); anything else
becomes a `DeadLetter` (or, for a snapshot, a `DataError`) with the reason, never a wrong row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
import orjson

from ..book.model import BookSnapshot, DepthDiff, Level, Quote
from ..errors import DataError
from ..model import US_CUTOFF, DeadLetter

__all__ = ["decode_diff", "decode_quote", "snapshot_from_rest", "MAX_SNAPSHOT_LEVELS"]

MAX_SNAPSHOT_LEVELS = 5000
"""Binance serves at most 5000 levels a side; a snapshot with more is refused."""

_MAX_ID = 2**63 - 1
_MIN_TIME_US = 1_483_228_800_000_000  # 2017-01-01
_AHEAD_US = 86_400_000_000
_plain = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,18})?").fullmatch
_symbol = re.compile(r"[A-Z0-9]{2,30}").fullmatch


class _Bad(Exception):
    pass


class _Diff(msgspec.Struct, gc=False):
    e: str
    E: int
    s: str
    U: int
    u: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    pu: int | None = None
    T: int | None = None


class _CombinedDiff(msgspec.Struct, gc=False):
    stream: str
    data: _Diff


class _Ticker(msgspec.Struct, gc=False):
    u: int
    s: str
    b: str
    B: str
    a: str
    A: str
    e: str | None = None
    E: int | None = None
    T: int | None = None


class _CombinedTicker(msgspec.Struct, gc=False):
    stream: str
    data: _Ticker


_diff_combined = msgspec.json.Decoder(_CombinedDiff).decode
_diff_raw = msgspec.json.Decoder(_Diff).decode
_ticker_combined = msgspec.json.Decoder(_CombinedTicker).decode
_ticker_raw = msgspec.json.Decoder(_Ticker).decode


def _levels(levels: list[tuple[str, str]], side: str) -> list[Level]:
    for p, q in levels:
        if not (_plain(p) and _plain(q)) or not p.strip("0."):
            raise _Bad(
                f"bad {side} level {[p, q]!r:.60}: price must be a decimal > 0, quantity a decimal ≥ 0"
            )
    return levels


def _time(v: int | None, field: str, received: int) -> int | None:
    if v is None:
        return None
    us = v if v >= US_CUTOFF else v * 1000
    if not _MIN_TIME_US <= us <= received + _AHEAD_US:
        raise _Bad(f"absurd {field}: {v} is outside 2017 … now+1d")
    return us


def _id(v: int, field: str) -> int:
    if not 0 <= v <= _MAX_ID:
        raise _Bad(f"absurd {field}: {v}")
    return v


def decode_diff(
    raw: bytes | bytearray, *, exchange: str, source: str, received_at_us: int
) -> DepthDiff | DeadLetter:
    """One `depthUpdate` message (combined-stream wrapper or bare) → `DepthDiff`, or a dead letter."""
    try:
        try:
            d = _diff_combined(raw).data if raw.startswith(b'{"stream"') else _diff_raw(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise _Bad(_why_not(raw, "depthUpdate", str(exc))) from None
        if d.e != "depthUpdate":
            raise _Bad(f"expected a depthUpdate event, got {d.e[:40]!r}")
        if not _symbol(d.s):
            raise _Bad(f"bad symbol {d.s[:40]!r}")
        first, last = _id(d.U, "U"), _id(d.u, "u")
        if first > last:
            raise _Bad(f"first update id U={first} is above the last u={last}")
        event = _time(d.E, "E", received_at_us)
        assert event is not None
        return DepthDiff(
            exchange,
            d.s,
            first,
            last,
            event,
            _levels(d.b, "bid"),
            _levels(d.a, "ask"),
            received_at_us,
            None if d.pu is None else _id(d.pu, "pu"),
            source,
        )
    except _Bad as exc:
        return DeadLetter(str(exc), bytes(raw), source, exchange, _symbol_of(raw), received_at_us)


def decode_quote(
    raw: bytes | bytearray, *, exchange: str, source: str, received_at_us: int
) -> Quote | DeadLetter:
    """One `bookTicker` message (spot: no event type or time; futures: `e`, `E`, `T`) → `Quote`."""
    try:
        try:
            t = _ticker_combined(raw).data if raw.startswith(b'{"stream"') else _ticker_raw(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise _Bad(_why_not(raw, "bookTicker", str(exc))) from None
        if t.e is not None and t.e != "bookTicker":
            raise _Bad(f"expected a bookTicker event, got {t.e[:40]!r}")
        if not _symbol(t.s):
            raise _Bad(f"bad symbol {t.s[:40]!r}")
        _levels([(t.b, t.B), (t.a, t.A)], "best")
        return Quote(
            exchange,
            t.s,
            _id(t.u, "u"),
            t.b,
            t.B,
            t.a,
            t.A,
            received_at_us,
            _time(t.E, "E", received_at_us),
            source,
        )
    except _Bad as exc:
        return DeadLetter(str(exc), bytes(raw), source, exchange, _symbol_of(raw), received_at_us)


def snapshot_from_rest(
    obj: Mapping[str, Any], symbol: str, *, exchange: str, received_at_us: int, source: str = "live"
) -> BookSnapshot:
    """A REST depth answer (`lastUpdateId`, `bids`, `asks`; futures also `E`, `T`) → `BookSnapshot`.

    Raises `DataError` naming what is wrong (a missing field, a bad level, more levels than
    Binance ever serves)."""
    try:
        last = obj["lastUpdateId"]
        bids, asks = obj["bids"], obj["asks"]
    except (KeyError, TypeError):
        raise DataError(
            f"{symbol} depth snapshot lacks lastUpdateId/bids/asks: {orjson.dumps(obj)[:120]!r}"
        ) from None
    try:
        if isinstance(last, bool) or not isinstance(last, int):
            raise _Bad(f"lastUpdateId must be an integer, got {type(last).__name__}")
        for name, side in (("bids", bids), ("asks", asks)):
            if not isinstance(side, list):
                raise _Bad(f"{name} must be a list")
            if len(side) > MAX_SNAPSHOT_LEVELS:
                raise _Bad(f"{len(side)} {name} is more than the {MAX_SNAPSHOT_LEVELS} levels Binance serves")
            for lvl in side:
                if not (isinstance(lvl, list) and len(lvl) == 2 and all(isinstance(x, str) for x in lvl)):
                    raise _Bad(f"a level of {name} is not [price, qty] strings: {str(lvl)[:60]}")
        b = _levels([(p, q) for p, q in bids], "bid")
        a = _levels([(p, q) for p, q in asks], "ask")
        event = obj.get("E")
        ev = (
            _time(event, "E", received_at_us)
            if isinstance(event, int) and not isinstance(event, bool)
            else None
        )
        return BookSnapshot(
            exchange, symbol.upper(), _id(last, "lastUpdateId"), b, a, received_at_us, ev, source
        )
    except _Bad as exc:
        raise DataError(f"{symbol} depth snapshot refused: {exc}") from None


def _why_not(raw: bytes | bytearray, event: str, detail: str) -> str:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON: {str(exc)[:120]}"
    return f"not a {event} message: {detail[:160]}"


def _symbol_of(raw: bytes | bytearray) -> str | None:
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    data = msg.get("data", msg) if isinstance(msg, dict) else None
    s = data.get("s") if isinstance(data, dict) else None
    return s if isinstance(s, str) and _symbol(s) else None
