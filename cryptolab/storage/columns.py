"""A batch of live trades as columns, filled as frames are decoded: no object per trade.

The capture's hot path used to make a `Trade` (a tuple, with two `Decimal`s) per message and
queue it; the writer then took the tuples apart again into one array literal per column for
`cryptolab_append_trades`. At full speed the queue held hundreds of thousands of tuples, every
one of them walked by each full pass of the garbage collector. `TradeColumns` keeps the same
fields as parallel columns instead — ids and times in `array('q')`, sides in a `bytearray`,
prices and quantities as the exchange's own decimal strings (exact: PostgreSQL's numeric input
parses the digits, as it parses `str(Decimal)` of the same digits) — so a queued batch is a
handful of objects the collector does not look into, and the append's parameters are joins of
the columns. `rows()` gives the same batch as `Trade`s for every other path (merge, journal,
dead letters): same values, same order.
"""

from __future__ import annotations

from array import array
from decimal import Decimal

from ..model import Trade, TradeFields
from .append import AppendRange

__all__ = ["NO_TIME", "TradeColumns"]

NO_TIME = -1
"""An event time the frame did not carry (`Trade.event_time_us` None)."""

_new_tuple = tuple.__new__
_COLUMNS = ("symbols", "ids", "prices", "qtys", "makers", "times", "events", "received")


class TradeColumns:
    """Trades of one exchange and source, column by column, in arrival order."""

    __slots__ = (
        "exchange",
        "source",
        "symbols",
        "ids",
        "prices",
        "qtys",
        "makers",
        "times",
        "events",
        "received",
    )

    def __init__(self, exchange: str, source: str) -> None:
        self.exchange = exchange
        self.source = source
        self.symbols: list[str] = []
        self.ids = array("q")
        self.prices: list[str] = []
        """Plain decimal strings as the exchange sent them (checked by the decoder)."""
        self.qtys: list[str] = []
        self.makers = bytearray()
        self.times = array("q")
        self.events = array("q")
        self.received = array("q")

    def add(self, fields: TradeFields, received_us: int) -> None:
        """One trade: (symbol, id, price, qty, buyer is maker, trade time µs, event time µs or None)."""
        sym, tid, price, qty, maker, t_us, e_us = fields
        self.symbols.append(sym)
        self.ids.append(tid)
        self.prices.append(price)
        self.qtys.append(qty)
        self.makers.append(maker)
        self.times.append(t_us)
        self.events.append(NO_TIME if e_us is None else e_us)
        self.received.append(received_us)

    def empty(self) -> TradeColumns:
        """A new, empty batch of the same exchange and source."""
        return TradeColumns(self.exchange, self.source)

    def split(self, n: int) -> tuple[TradeColumns, TradeColumns]:
        """(the first `n` trades, the rest), as two new batches."""
        head, tail = self.empty(), self.empty()
        for name in _COLUMNS:
            col = getattr(self, name)
            setattr(head, name, col[:n])
            setattr(tail, name, col[n:])
        return head, tail

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> list[Trade]:
        """The batch as `Trade`s (exact `Decimal`s of the same digits), in arrival order."""
        ex, src = self.exchange, self.source
        return [
            _new_tuple(
                Trade, (ex, s, i, Decimal(p), Decimal(q), bool(m), t, None if e == NO_TIME else e, r, src)
            )
            for s, i, p, q, m, t, e, r in zip(
                self.symbols,
                self.ids,
                self.prices,
                self.qtys,
                self.makers,
                self.times,
                self.events,
                self.received,
            )
        ]

    def ranges(self) -> list[AppendRange] | None:
        """Per symbol, the id range when ids strictly increase per symbol (the append fast path);
        None when some symbol's ids repeat or go back (the batch takes the merge)."""
        last: dict[str, list[int]] = {}
        for s, i, t in zip(self.symbols, self.ids, self.times):
            seen = last.get(s)
            if seen is None:
                last[s] = [i, i, t]
            elif i > seen[1]:
                seen[1] = i
            else:
                return None
        ex = self.exchange
        return [AppendRange(ex, s, lo, hi, t0) for s, (lo, hi, t0) in sorted(last.items())]

    def arrays(self) -> tuple[str, ...]:
        """The ten array literals of `cryptolab_append_trades`, as `append.trade_arrays(self.rows())`
        makes them, without making the rows."""
        n = len(self.ids)
        ex = '"' + _escaped(self.exchange) + '"'
        src = '"' + _escaped(self.source) + '"'
        quoted = {s: '"' + _escaped(s) + '"' for s in set(self.symbols)}
        events = self.events
        ev = (
            ",".join("NULL" if e == NO_TIME else str(e) for e in events)
            if NO_TIME in events
            else ",".join(map(str, events))
        )
        return (
            "{" + ",".join([ex] * n) + "}",
            "{" + ",".join(map(quoted.__getitem__, self.symbols)) + "}",
            "{" + ",".join(map(str, self.ids)) + "}",
            "{" + ",".join(self.prices) + "}",
            "{" + ",".join(self.qtys) + "}",
            "{" + ",".join(["f", "t"][m] for m in self.makers) + "}",
            "{" + ",".join(map(str, self.times)) + "}",
            "{" + ev + "}",
            "{" + ",".join(map(str, self.received)) + "}",
            "{" + ",".join([src] * n) + "}",
        )

    def days(self) -> set[int]:
        """The UTC days (since the epoch) its trades fall on (their partitions must exist)."""
        if not self.times:
            return set()
        lo, hi = min(self.times) // _US_PER_DAY, max(self.times) // _US_PER_DAY
        return {lo} if lo == hi else {t // _US_PER_DAY for t in self.times}


_US_PER_DAY = 86_400_000_000


def _escaped(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')
