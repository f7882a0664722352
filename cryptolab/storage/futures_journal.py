"""Journal records of USD-M futures rows: `A` aggregate trade, `M` mark price, `L` liquidation,
`O` open interest — checksummed lines like the others (`journal_format`), decimals as plain
strings, every field checked on read (a bad field is a `ValueError` naming it: the line is set
aside, never stored wrong). So a database outage during a futures capture loses nothing.
"""

from __future__ import annotations

import re
import zlib
from decimal import Decimal
from typing import Any

import orjson

from ..markets import AggTrade, Liquidation, MarkPrice, OpenInterest
from ..model import SOURCES
from .futures import FuturesRow

__all__ = ["futures_line", "futures_record"]

_UNSIGNED = re.compile(r"^[0-9]{1,30}(\.[0-9]{1,30})?$")
_SIGNED = re.compile(r"^-?[0-9]{1,30}(\.[0-9]{1,30})?$")
_WORD = re.compile(r"^[A-Z_]{1,32}$")
_FIELDS = {"A": 13, "M": 12, "L": 17, "O": 8}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MIN_TIME_US = 1_483_228_800_000_000  # 2017-01-01, as journal_format
_MAX_ID = 2**63 - 1


def _seal(payload: bytes) -> bytes:
    return b"J2 %08x %s" % (zlib.crc32(payload), payload)


def _name(v: Any, what: str) -> str:
    if type(v) is not str or not _NAME.match(v):
        raise ValueError(f"bad {what} {str(v)[:40]!r}")
    return v


def _time_of(v: Any, what: str, limit: int, optional: bool = False) -> Any:
    if v is None and optional:
        return None
    if type(v) is not int or not _MIN_TIME_US <= v <= limit:
        raise ValueError(f"absurd {what} {str(v)[:40]!r} (µs between 2017 and a day after now)")
    return v


def _ident(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v <= _MAX_ID:
        raise ValueError(f"bad {what} {str(v)[:40]!r}")
    return v


def _source(v: Any) -> str:
    if v not in SOURCES:
        raise ValueError(f"unknown source {str(v)[:40]!r} (one of {', '.join(SOURCES)})")
    return str(v)


def _p(d: Decimal | None) -> str | None:
    return None if d is None else format(d, "f")


def futures_line(r: Any) -> bytes:
    """One futures row → its sealed journal line."""
    t = type(r)
    if t is AggTrade:
        row: list[Any] = [
            "A",
            r.exchange,
            r.symbol,
            r.agg_id,
            _p(r.price),
            _p(r.qty),
            r.first_trade_id,
            r.last_trade_id,
            r.trade_time_us,
            r.is_buyer_maker,
            r.event_time_us,
            r.received_at_us,
            r.source,
        ]
    elif t is MarkPrice:
        row = [
            "M",
            r.exchange,
            r.symbol,
            r.event_time_us,
            _p(r.mark_price),
            _p(r.index_price),
            _p(r.est_settle_price),
            _p(r.funding_rate),
            r.next_funding_time_us,
            r.received_at_us,
            r.source,
            None,
        ]
    elif t is Liquidation:
        row = [
            "L",
            r.exchange,
            r.symbol,
            r.trade_time_us,
            r.side,
            r.order_type,
            r.time_in_force,
            _p(r.price),
            _p(r.avg_price),
            _p(r.qty),
            _p(r.last_filled_qty),
            _p(r.filled_qty),
            r.status,
            r.event_time_us,
            r.received_at_us,
            r.source,
            None,
        ]
    elif t is OpenInterest:
        row = [
            "O",
            r.exchange,
            r.symbol,
            r.time_us,
            _p(r.open_interest),
            _p(r.open_interest_value),
            r.source,
            None,
        ]
    else:
        raise TypeError(f"not a futures row: {t.__name__}")
    return _seal(orjson.dumps(row))


def _dec(v: Any, what: str, *, signed: bool = False, optional: bool = False) -> Any:
    if v is None and optional:
        return None
    if type(v) is not str or not (_SIGNED if signed else _UNSIGNED).match(v):
        raise ValueError(f"{what} is not a plain decimal string: {str(v)[:40]!r}")
    return Decimal(v)


def _word(v: Any, what: str, optional: bool = False) -> Any:
    if v is None and optional:
        return None
    if type(v) is not str or not _WORD.match(v):
        raise ValueError(f"bad {what} {str(v)[:20]!r}")
    return v


def futures_record(row: list[Any], limit: int) -> FuturesRow:
    """A decoded `A`/`M`/`L`/`O` record → its row (ValueError naming the bad field)."""
    kind = row[0]
    if len(row) != _FIELDS[kind]:
        raise ValueError(f"{kind} record has {len(row)} fields, expected {_FIELDS[kind]}")
    ex, sym = _name(row[1], "exchange"), _name(row[2], "symbol")

    def time(v: Any, what: str, optional: bool = False) -> Any:
        return _time_of(v, what, limit, optional)

    ident = _ident
    src = _source(row[-2] if kind != "A" else row[-1])
    if kind == "A":
        _, _, _, a, p, q, f, last, tt, m, et, rt, _ = row
        if type(m) is not bool:
            raise ValueError("is_buyer_maker must be a boolean")
        if ident(f, "first trade id") > ident(last, "last trade id"):
            raise ValueError("first trade id above the last")
        return AggTrade(
            ex,
            sym,
            ident(a, "agg id"),
            _dec(p, "price"),
            _dec(q, "qty"),
            f,
            last,
            time(tt, "trade_time_us"),
            m,
            time(et, "event_time_us", True),
            time(rt, "received_at_us", True),
            src,
        )
    if kind == "M":
        _, _, _, et, mp, ip, sp, fr, nf, rt, _, _ = row
        return MarkPrice(
            ex,
            sym,
            time(et, "event_time_us"),
            _dec(mp, "mark price"),
            _dec(ip, "index price", optional=True),
            _dec(sp, "settle price", optional=True),
            _dec(fr, "funding rate", signed=True, optional=True),
            None if nf is None else ident(nf, "next funding time"),
            time(rt, "received_at_us", True),
            src,
        )
    if kind == "L":
        _, _, _, tt, side, ot, tif, p, ap, q, lq, fq, status, et, rt, _, _ = row
        if side not in ("BUY", "SELL"):
            raise ValueError(f"bad side {str(side)[:10]!r}")
        return Liquidation(
            ex,
            sym,
            time(tt, "trade_time_us"),
            side,
            _word(ot, "order type"),
            _word(tif, "time in force", True),
            _dec(p, "price"),
            _dec(ap, "avg price"),
            _dec(q, "qty"),
            _dec(lq, "last filled qty"),
            _dec(fq, "filled qty"),
            _word(status, "status"),
            time(et, "event_time_us", True),
            time(rt, "received_at_us", True),
            src,
        )
    _, _, _, t, oi, v, _, _ = row
    return OpenInterest(
        ex, sym, time(t, "time_us"), _dec(oi, "open interest"), _dec(v, "value", optional=True), src
    )
