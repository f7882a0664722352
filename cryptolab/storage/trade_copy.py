"""A large batch of live trades as one binary `COPY` stream (pure, no I/O).

At full speed the writer's batches hold thousands of trades. Inserting them through the one-call
append (`cryptolab_append_trades`: array parameters, unnest, one `INSERT … SELECT`) costs
PostgreSQL ~4 µs a row: it parses every array literal, inserts row by row and extends the
table a page at a time. A binary `COPY` of the same rows costs it about half that (no text to
parse, rows inserted in multi-row batches into bulk-extended pages). The rows must then be in
PostgreSQL's binary formats, and making them one by one in Python would cost more than the
server saves; `copy_buffer` builds the whole stream with numpy instead, column by column:

- ids and times straight from the columns' `array('q')` (times shifted to PostgreSQL's 2000-01-01
  epoch), sides from the `bytearray`, the text fields as fixed bytes per symbol;
- prices and quantities, the exchange's own decimal strings, as `numeric`'s binary form: the
  digits without the point parsed as one integer, scaled to whole base-10000 groups, cut into
  five groups, with the weight and the display scale (`dscale`: the digits after the point)
  the string had. PostgreSQL's `numeric_recv` strips the leading and trailing zero groups,
  so the stored value and its text are exactly those of `numeric_in` on the same string
  (`tests/storage/test_trade_copy.py` checks that over random strings, against the server).

Every row has the same layout (fixed-width fields), so the stream is one numpy record array's
bytes per symbol. What it cannot encode exactly it refuses (None, the caller takes the
one-call append): a missing event time (a NULL has no bytes), a value that is not plain
digits with at most one point inside, more than 18 digits, or too many symbols.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .columns import NO_TIME, TradeColumns

__all__ = ["TRADES_COPY", "copy_buffer", "fold_ranges", "numeric_groups"]

TRADES_COPY = (
    "COPY trades (exchange, symbol, trade_id, price, qty, is_buyer_maker, trade_time, event_time,"
    " received_at, source) FROM STDIN (FORMAT BINARY)"
)

_MAX_SYMBOLS = 16
_GROUPS = 5
"""Base-10000 groups per value: 10000**5 > 10**18 covers every 18-digit integer."""
_PG_EPOCH_US = 946_684_800_000_000
"""1970-01-01 → 2000-01-01 in µs: PostgreSQL's binary timestamps count from 2000."""
_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_TRAILER = b"\xff\xff"
_PAD = np.array([1, 10, 100, 1000], dtype=np.int64)
_LIMIT = np.array([10 ** (18 - k) for k in range(4)], dtype=np.int64)
_DIV = np.array([10_000**k for k in range(_GROUPS - 1, -1, -1)], dtype=np.int64)
_DOT, _COMMA, _ZERO, _NINE = 46, 44, 48, 57


def numeric_groups(values: list[str]) -> tuple[Any, Any, Any] | None:
    """Plain decimal strings as `numeric`'s binary fields: (digits (n, 5) base-10000 groups, most
    significant first; weight of the first group; dscale), or None when a value is not plain
    digits with at most one point between digits, or has more than 18 digits."""
    n = len(values)
    if n == 0:
        return None
    text = ",".join(values)
    b = np.frombuffer(text.encode(), dtype=np.uint8)
    if not np.all(((b >= _ZERO) & (b <= _NINE)) | (b == _DOT) | (b == _COMMA)):
        return None
    ends = np.append(np.flatnonzero(b == _COMMA), len(b))  # one past each value
    if len(ends) != n:  # a value held a comma itself
        return None
    starts = np.concatenate(([0], ends[:-1] + 1))
    dots = np.flatnonzero(b == _DOT)
    dscale = np.zeros(n, dtype=np.int64)
    if len(dots):
        owner = np.searchsorted(ends, dots)  # (non-decreasing: the points in order)
        if np.any(owner[1:] == owner[:-1]):  # two points in one value
            return None
        if np.any(dots == starts[owner]) or np.any(dots == ends[owner] - 1):  # ".5", "5."
            return None
        dscale[owner] = ends[owner] - dots - 1
    ndigits = ends - starts - (dscale > 0)
    if ndigits.min() < 1 or ndigits.max() > 18:
        return None
    v = np.fromstring(text.replace(".", ""), dtype=np.int64, sep=",")  # (text mode: not deprecated)
    pad = (-dscale) % 4  # to whole groups after the point
    if len(v) != n or np.any(v >= _LIMIT[pad]):
        return None
    digits = (v[:, None] * _PAD[pad][:, None] // _DIV[None, :]) % 10_000
    weight = _GROUPS - 1 - (dscale + pad) // 4
    return digits.astype(np.int16), weight.astype(np.int16), dscale.astype(np.int16)


def _layout(exchange: bytes, symbol: bytes, source: bytes) -> np.dtype[Any]:
    """One row of the binary COPY: the field count, then each field's length and bytes."""
    fields: list[Any] = [("nf", ">i2"), ("exl", ">i4"), ("ex", f"S{len(exchange)}")]
    fields += [("syl", ">i4"), ("sy", f"S{len(symbol)}"), ("idl", ">i4"), ("id", ">i8")]
    for k in "pq":  # numeric: length, ndigits, weight, sign, dscale, the base-10000 digits
        fields += [(k + "l", ">i4"), (k + "nd", ">i2"), (k + "w", ">i2"), (k + "sign", ">i2")]
        fields += [(k + "ds", ">i2"), (k + "d", ">i2", (_GROUPS,))]
    fields += [("ml", ">i4"), ("m", "u1")]
    fields += [(k + "l", ">i4") if i % 2 == 0 else (k, ">i8") for k in "ter" for i in range(2)]
    fields += [("srl", ">i4"), ("sr", f"S{len(source)}")]
    return np.dtype(fields)


def copy_buffer(cols: TradeColumns) -> bytes | None:
    """The batch as the data of `TRADES_COPY` (header, rows, trailer), or None when it cannot be
    encoded exactly (the caller stores it another way)."""
    n = len(cols)
    if n == 0 or NO_TIME in cols.events:
        return None
    syms = set(cols.symbols)
    if len(syms) > _MAX_SYMBOLS:
        return None
    price = numeric_groups(cols.prices)
    qty = numeric_groups(cols.qtys)
    if price is None or qty is None:
        return None
    exchange, source = cols.exchange.encode(), cols.source.encode()
    columns = {
        "id": np.frombuffer(cols.ids, dtype=np.int64),
        "m": np.frombuffer(cols.makers, dtype=np.uint8),
        "t": np.frombuffer(cols.times, dtype=np.int64) - _PG_EPOCH_US,
        "e": np.frombuffer(cols.events, dtype=np.int64) - _PG_EPOCH_US,
        "r": np.frombuffer(cols.received, dtype=np.int64) - _PG_EPOCH_US,
        "pd": price[0], "pw": price[1], "pds": price[2],
        "qd": qty[0], "qw": qty[1], "qds": qty[2],
    }
    parts = [_HEADER]
    names = np.array(cols.symbols) if len(syms) > 1 else None
    for sym in sorted(syms):
        pick = None if names is None else np.flatnonzero(names == sym)
        symbol = sym.encode()
        rec = np.zeros(n if pick is None else len(pick), dtype=_layout(exchange, symbol, source))
        rec["nf"] = 10
        rec["exl"], rec["ex"] = len(exchange), exchange
        rec["syl"], rec["sy"] = len(symbol), symbol
        rec["idl"] = rec["tl"] = rec["el"] = rec["rl"] = 8
        rec["pl"] = rec["ql"] = 8 + 2 * _GROUPS
        rec["pnd"] = rec["qnd"] = _GROUPS
        rec["ml"] = 1
        rec["srl"], rec["sr"] = len(source), source
        for name, col in columns.items():
            rec[name] = col if pick is None else col[pick]
        parts.append(rec.tobytes())
    parts.append(_TRAILER)
    return b"".join(parts)


FoldRanges = tuple[list[str], list[str], list[int], list[int], list[int], list[int]]
"""exchange, symbol, lowest id, highest id, earliest and latest trade time (µs), per symbol."""


def fold_ranges(cols: TradeColumns) -> FoldRanges:
    """Per symbol of the batch: exchange, symbol, lowest and highest id, earliest and latest
    trade time (µs) — the parameters of `cryptolab_fold_trades`, which folds the bars of exactly
    those rows once they are stored."""
    ids = np.frombuffer(cols.ids, dtype=np.int64)
    times = np.frombuffer(cols.times, dtype=np.int64)
    syms = sorted(set(cols.symbols))
    names = np.array(cols.symbols) if len(syms) > 1 else None
    lo: list[int] = []
    hi: list[int] = []
    t0: list[int] = []
    t1: list[int] = []
    for sym in syms:
        i, t = (ids, times) if names is None else (ids[names == sym], times[names == sym])
        lo.append(int(i.min()))
        hi.append(int(i.max()))
        t0.append(int(t.min()))
        t1.append(int(t.max()))
    return [cols.exchange] * len(syms), syms, lo, hi, t0, t1
