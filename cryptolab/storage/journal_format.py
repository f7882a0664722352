"""The journal's record format (pure, no directory handling): one checksummed line per
trade, dead letter or book row (`J2 <crc32> <json>`), exact decimals as plain strings, every
field checked on read; a line that fails a check is a `BadRecord`, never a wrong row.

Record kinds: `T` trade, `D` dead letter, `B` depth diff, `S` book snapshot, `Q` quote,
`G` book gap, `P` the top of the book after a diff; USD-M futures (`futures_journal`): `A`
aggregate trade, `M` mark price, `L` liquidation, `O` open interest.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import zlib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from ..book.model import GAP_REASONS, BookGap, BookRow, BookSnapshot, BookTop, DepthDiff, Level, Quote
from ..errors import CryptolabError
from ..markets import AggTrade, Liquidation, MarkPrice, OpenInterest
from ..model import SOURCES, DeadLetter, Trade
from .futures import FuturesRow
from .futures_journal import futures_record

__all__ = ["Segment", "BadRecord", "JournalError", "FORMAT_VERSION"]


#: Version of the record format written (`J2 <crc32> <json>`); version 1 (bare JSON
#: arrays, no checksum) is still read, validated as data only.
FORMAT_VERSION = 2


_PREFIX = b"J2 "


_PREFIX_LEN = len(_PREFIX) + 9  # "J2 " + 8 hex digits + " "


_PLAIN_RE = re.compile(r"^[0-9]{1,30}(\.[0-9]{1,30})?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_V1_DECIMAL_RE = re.compile(r"^[0-9]{1,30}(\.[0-9]{1,30})?(E[+-]?[0-9]{1,3})?$")


_MIN_TIME_US = 1_483_228_800_000_000  # 2017-01-01, as wire.MIN_TIME_US


_AHEAD_US = 86_400_000_000  # a time more than a day after the read is absurd


_MAX_ID = 2**63 - 1  # trades.trade_id is a bigint


_MAX_TEXT = 1_000_000


class JournalError(CryptolabError):
    """The journal cannot be used as asked."""


class BadRecord(NamedTuple):
    """A journal line that failed its checksum or validation: never stored, kept for inspection."""

    reason: str
    segment: str
    line_no: int
    raw: bytes


@dataclass
class Segment:
    """One journal file's content, as read back: only valid rows, and the bad lines apart."""

    path: Path
    trades: list[Trade]
    dead_letters: list[DeadLetter]
    bad: list[BadRecord] = field(default_factory=list)
    book: list[BookRow] = field(default_factory=list)
    """Depth diffs, snapshots, quotes and book gaps, in the order they were journaled."""
    futures: list[Any] = field(default_factory=list)
    """USD-M futures rows (aggregate trades, mark prices, liquidations, open interest)."""

    @property
    def rows(self) -> int:
        """Valid rows of every kind."""
        return len(self.trades) + len(self.dead_letters) + len(self.book) + len(self.futures)

    @property
    def bad_count(self) -> int:
        """How many lines of this segment are set aside (checksum, validation, torn)."""
        return len(self.bad)

    @property
    def torn_lines(self) -> int:
        """Former name of `bad_count` (every bad line, torn or not)."""
        return len(self.bad)


def _plain(d: Decimal) -> str:
    return format(d, "f")


def _seal(payload: bytes) -> bytes:
    return b"J2 %08x %s" % (zlib.crc32(payload), payload)


def _trade_line(t: Trade) -> bytes:
    return _seal(
        orjson.dumps(
            [
                "T",
                t.exchange,
                t.symbol,
                t.trade_id,
                _plain(t.price),
                _plain(t.qty),
                t.is_buyer_maker,
                t.trade_time_us,
                t.event_time_us,
                t.received_at_us,
                t.source,
            ]
        )
    )


def _dead_line(d: DeadLetter) -> bytes:
    payload = d.payload if isinstance(d.payload, (bytes, bytearray)) else str(d.payload).encode()
    return _seal(
        orjson.dumps(
            [
                "D",
                d.reason,
                base64.b64encode(bytes(payload)).decode(),
                d.source,
                d.exchange,
                d.symbol,
                d.received_at_us,
            ]
        )
    )


def _book_line(r: BookRow) -> bytes:
    t = type(r)
    if t is DepthDiff:
        d: DepthDiff = r  # type: ignore[assignment]
        row: list[Any] = [
            "B",
            d.exchange,
            d.symbol,
            d.first_id,
            d.last_id,
            d.prev_id,
            d.event_time_us,
            d.received_at_us,
            d.bids,
            d.asks,
            d.source,
        ]
    elif t is Quote:
        q: Quote = r  # type: ignore[assignment]
        row = [
            "Q",
            q.exchange,
            q.symbol,
            q.update_id,
            q.bid_price,
            q.bid_qty,
            q.ask_price,
            q.ask_qty,
            q.received_at_us,
            q.event_time_us,
            q.source,
        ]
    elif t is BookSnapshot:
        s: BookSnapshot = r  # type: ignore[assignment]
        row = [
            "S",
            s.exchange,
            s.symbol,
            s.last_update_id,
            s.received_at_us,
            s.event_time_us,
            s.bids,
            s.asks,
            s.source,
        ]
    elif t is BookTop:
        k: BookTop = r  # type: ignore[assignment]
        row = [
            "P",
            k.exchange,
            k.symbol,
            k.update_id,
            k.event_time_us,
            k.bid_price,
            k.bid_qty,
            k.ask_price,
            k.ask_qty,
            k.source,
        ]
    else:
        g: BookGap = r  # type: ignore[assignment]
        row = [
            "G",
            g.exchange,
            g.symbol,
            g.reason,
            g.after_id,
            g.before_id,
            g.detected_at_us,
            g.snapshot_id,
            g.healed_at_us,
        ]
    return _seal(orjson.dumps(row))


class _Bad(Exception):
    pass


def _name(v: Any, what: str, optional: bool = False) -> Any:
    if v is None and optional:
        return None
    if type(v) is not str or not _NAME_RE.match(v):
        raise _Bad(f"bad {what} {str(v)[:40]!r}")
    return v


def _dec(v: Any, what: str, v1: bool) -> Decimal:
    if type(v) is not str or not (_V1_DECIMAL_RE if v1 else _PLAIN_RE).match(v):
        raise _Bad(f"{what} is not a plain decimal string: {str(v)[:40]!r}")
    try:
        d = Decimal(v)
    except InvalidOperation:  # pragma: no cover - the regex already refused it
        raise _Bad(f"{what} is not a decimal: {v[:40]!r}") from None
    if not d.is_finite() or d <= 0:
        raise _Bad(f"{what} must be > 0, got {v[:40]!r}")
    return d


def _time(v: Any, what: str, limit: int, optional: bool = False) -> Any:
    if v is None and optional:
        return None
    if type(v) is not int or not _MIN_TIME_US <= v <= limit:
        raise _Bad(f"absurd {what} {str(v)[:40]!r} (µs between 2017 and a day after now)")
    return v


def _text(v: Any, what: str, optional: bool = False) -> Any:
    if v is None and optional:
        return None
    if type(v) is not str or len(v) > _MAX_TEXT:
        raise _Bad(f"bad {what} {str(v)[:40]!r}")
    return v


_LEVEL_RE = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,18})?$")


def _ident(v: Any, what: str, optional: bool = False) -> Any:
    if v is None and optional:
        return None
    if type(v) is not int or not 0 <= v <= _MAX_ID:
        raise _Bad(f"bad {what} {str(v)[:40]!r}")
    return v


def _level_text(v: Any, what: str, positive: bool) -> str:
    if type(v) is not str or not _LEVEL_RE.match(v) or (positive and not v.strip("0.")):
        raise _Bad(f"{what} is not a plain decimal string{' > 0' if positive else ''}: {str(v)[:40]!r}")
    return v


def _levels(v: Any, what: str) -> list[Level]:
    if type(v) is not list:
        raise _Bad(f"{what} is not a list of levels")
    out: list[Level] = []
    for lv in v:
        if type(lv) is not list or len(lv) != 2:
            raise _Bad(f"a level of {what} is not [price, qty]")
        out.append((_level_text(lv[0], f"{what} price", True), _level_text(lv[1], f"{what} qty", False)))
    return out


def _source(v: Any) -> str:
    if v not in SOURCES:
        raise _Bad(f"unknown source {str(v)[:40]!r} (one of {', '.join(SOURCES)})")
    return str(v)


_BOOK_FIELDS = {"B": 11, "Q": 11, "S": 9, "G": 9, "P": 10}


def _side_text(price: Any, qty: Any, what: str) -> tuple[str | None, str | None]:
    """A top's side: both null (an empty side) or a positive price and a quantity."""
    if price is None and qty is None:
        return None, None
    return _level_text(price, f"{what} price", True), _level_text(qty, f"{what} qty", False)


def _book_record(row: list[Any], limit: int) -> BookRow:
    kind = row[0]
    if len(row) != _BOOK_FIELDS[kind]:
        raise _Bad(f"{kind} record has {len(row)} fields, expected {_BOOK_FIELDS[kind]}")
    ex, sym = _name(row[1], "exchange"), _name(row[2], "symbol")
    if kind == "B":
        _, _, _, first, last, prev, et, rt, bids, asks, src = row
        if _ident(first, "first update id") > _ident(last, "last update id"):
            raise _Bad("first update id above the last")
        return DepthDiff(
            ex,
            sym,
            first,
            last,
            _time(et, "event_time_us", limit),
            _levels(bids, "bids"),
            _levels(asks, "asks"),
            _time(rt, "received_at_us", limit, True),
            _ident(prev, "prev update id", True),
            _source(src),
        )
    if kind == "Q":
        _, _, _, u, bp, bq, ap, aq, rt, et, src = row
        return Quote(
            ex,
            sym,
            _ident(u, "update id"),
            _level_text(bp, "bid price", True),
            _level_text(bq, "bid qty", False),
            _level_text(ap, "ask price", True),
            _level_text(aq, "ask qty", False),
            _time(rt, "received_at_us", limit),
            _time(et, "event_time_us", limit, True),
            _source(src),
        )
    if kind == "P":
        _, _, _, u, et, bp, bq, ap, aq, src = row
        bid, ask = _side_text(bp, bq, "bid"), _side_text(ap, aq, "ask")
        return BookTop(
            ex, sym, _ident(u, "update id"), _time(et, "event_time_us", limit), *bid, *ask, _source(src)
        )
    if kind == "S":
        _, _, _, last, rt, et, bids, asks, src = row
        return BookSnapshot(
            ex,
            sym,
            _ident(last, "last update id"),
            _levels(bids, "bids"),
            _levels(asks, "asks"),
            _time(rt, "received_at_us", limit),
            _time(et, "event_time_us", limit, True),
            _source(src),
        )
    _, _, _, reason, after, before, detected, snap, healed = row
    if reason not in GAP_REASONS:
        raise _Bad(f"unknown gap reason {str(reason)[:20]!r}")
    return BookGap(
        ex,
        sym,
        reason,
        _ident(after, "after id"),
        _ident(before, "before id", True),
        _time(detected, "detected_at_us", limit),
        _ident(snap, "snapshot id", True),
        _time(healed, "healed_at_us", limit, True),
    )


def _record(row: Any, v1: bool, limit: int) -> Trade | DeadLetter | BookRow | FuturesRow:
    if type(row) is not list or not row:
        raise _Bad("not a journal record (expected a JSON array)")
    kind = row[0]
    if kind in _BOOK_FIELDS and not v1:
        return _book_record(row, limit)
    if kind in FUTURES_KINDS and not v1:
        try:
            return futures_record(row, limit)
        except ValueError as exc:
            raise _Bad(str(exc)) from None
    if kind == "T":
        if len(row) != 11:
            raise _Bad(f"trade record has {len(row)} fields, expected 11")
        _, ex, sym, tid, p, q, m, tt, et, rt, src = row
        if type(tid) is not int or not 0 <= tid <= _MAX_ID:
            raise _Bad(f"bad trade_id {str(tid)[:40]!r}")
        if type(m) is not bool:
            raise _Bad(f"is_buyer_maker must be a boolean, got {str(m)[:40]!r}")
        if src not in SOURCES:
            raise _Bad(f"unknown source {str(src)[:40]!r} (one of {', '.join(SOURCES)})")
        return Trade(
            _name(ex, "exchange"),
            _name(sym, "symbol"),
            tid,
            _dec(p, "price", v1),
            _dec(q, "qty", v1),
            m,
            _time(tt, "trade_time_us", limit),
            _time(et, "event_time_us", limit, True),
            _time(rt, "received_at_us", limit, True),
            src,
        )
    if kind == "D":
        if len(row) != 7:
            raise _Bad(f"dead-letter record has {len(row)} fields, expected 7")
        _, reason, b64, src, ex, sym, rt = row
        if type(b64) is not str:
            raise _Bad("dead-letter payload is not base64 text")
        try:
            payload = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise _Bad("dead-letter payload is not valid base64") from None
        return DeadLetter(
            _text(reason, "reason"),
            payload,
            _name(src, "source"),
            _name(ex, "exchange", True),
            _text(sym, "symbol", True),
            _time(rt, "received_at_us", limit, True),
        )
    raise _Bad(f"unknown record kind {str(kind)[:20]!r}")


FUTURES_KINDS = ("A", "M", "L", "O")
_FUTURES_TYPES = (AggTrade, MarkPrice, Liquidation, OpenInterest)


def _check(line: bytes, limit: int) -> Trade | DeadLetter | BookRow | FuturesRow:
    """One line (without its newline) → a row, or _Bad with the reason."""
    if line.startswith(_PREFIX):
        if len(line) < _PREFIX_LEN or line[_PREFIX_LEN - 1 : _PREFIX_LEN] != b" ":
            raise _Bad("malformed record header")
        try:
            want = int(line[3:11], 16)
        except ValueError:
            raise _Bad("malformed checksum") from None
        payload = line[_PREFIX_LEN:]
        if zlib.crc32(payload) != want:
            raise _Bad("checksum mismatch (the record was changed or damaged)")
        v1 = False
    elif line.startswith(b"["):
        payload, v1 = line, True  # format 1: no checksum, validated as data only
    elif not line.strip():
        raise _Bad("empty line")
    else:
        raise _Bad("unknown record format")
    try:
        row = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _Bad(f"invalid JSON: {str(exc)[:80]}") from None
    return _record(row, v1, limit)


def read_segment(path: Path) -> Segment:
    """Read one segment file: valid rows, and every other line as a `BadRecord` with the reason."""
    path = Path(path)
    data = path.read_bytes()
    seg = Segment(path, [], [], [])
    if not data:
        return seg
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    limit = time.time_ns() // 1000 + _AHEAD_US
    for i, line in enumerate(lines, 1):
        try:
            row = _check(line, limit)
        except _Bad as exc:
            seg.bad.append(BadRecord(str(exc), path.name, i, line))
            continue
        kind = type(row)
        if kind is Trade:
            seg.trades.append(row)  # type: ignore[arg-type]
        elif kind is DeadLetter:
            seg.dead_letters.append(row)  # type: ignore[arg-type]
        elif kind in _FUTURES_TYPES:
            seg.futures.append(row)
        else:
            seg.book.append(row)  # type: ignore[arg-type]
    if tail:
        seg.bad.append(
            BadRecord(
                "torn last line (no newline: the writer stopped mid-record)", path.name, len(lines) + 1, tail
            )
        )
    return seg
