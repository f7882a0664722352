"""Which write a batch of trades takes (pure, no I/O): the append fast path or the merge.

On a healthy stream every batch's ids, per symbol, strictly increase and lie above what
is stored: such a batch can be appended as it is (no dedupe, no sort), its 1 s bars folded
from the batch itself. A batch whose ids repeat or go back for some symbol (a reconnect's
overlap, a backfill, a replay) takes the merge: staging, dedupe, fold what was new. The
decision is per batch, never per trade; whether the ids lie above what is stored is asked
of the database under a per-symbol lock (`TradeWriter`).

`trade_arrays` turns a batch into the parameters of the server-side append
(`cryptolab_append_trades`, sql/schema/append_trades.sql): one PostgreSQL array literal per
column, so the whole batch is one statement's parameters (no staging table, one round trip).
Prices and quantities go as their exact decimal digits (`str(Decimal)`, as the COPY of the
merge sends them) and PostgreSQL's numeric input parses them exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..model import Trade

__all__ = ["AppendRange", "append_ranges", "trade_arrays"]


@dataclass(frozen=True)
class AppendRange:
    """One symbol's ids in a batch that may be appended: [lo, hi], the first trade's time."""

    exchange: str
    symbol: str
    lo: int
    hi: int
    first_time_us: int


def append_ranges(trades: Sequence[Trade]) -> list[AppendRange] | None:
    """Per (exchange, symbol), the id range of a batch whose ids strictly increase per symbol;
    None when some symbol's ids repeat or go back (the batch takes the merge)."""
    last: dict[tuple[str, str], list[int]] = {}
    for t in trades:
        key = (t.exchange, t.symbol)
        seen = last.get(key)
        if seen is None:
            last[key] = [t.trade_id, t.trade_id, t.trade_time_us]
        elif t.trade_id > seen[1]:
            seen[1] = t.trade_id
        else:
            return None
    return [AppendRange(ex, sym, lo, hi, t0) for (ex, sym), (lo, hi, t0) in sorted(last.items())]


_BOOL = {True: "t", False: "f"}


def _quoted(values: tuple[str, ...]) -> str:
    """A text array literal: every element double-quoted, backslashes and quotes escaped."""
    q = {v: '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in set(values)}
    return "{" + ",".join(map(q.__getitem__, values)) + "}"


def _plain(values: tuple[object, ...]) -> str:
    """An array literal of numbers (ints, Decimals: their str) where None is NULL."""
    if None in values:
        return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
    return "{" + ",".join(map(str, values)) + "}"


def trade_arrays(trades: Sequence[Trade]) -> tuple[str, ...]:
    """The batch as ten array literals, in `Trade`'s field order (exchange, symbol, trade id,
    price, qty, side, trade/event/receive times in µs, source)."""
    ex, sym, ids, price, qty, maker, t, ev, rcv, src = zip(*trades)
    return (
        _quoted(ex),
        _quoted(sym),
        _plain(ids),
        _plain(price),
        _plain(qty),
        "{" + ",".join(map(_BOOL.__getitem__, maker)) + "}",
        _plain(t),
        _plain(ev),
        _plain(rcv),
        _quoted(src),
    )
