"""Which write a batch of trades takes (pure, no I/O): the append fast path or the merge.

On a healthy stream every batch's ids, per symbol, strictly increase and lie above what
is stored: such a batch can be appended as it is (no dedupe, no sort), its 1 s bars folded
from the batch itself. A batch whose ids repeat or go back for some symbol (a reconnect's
overlap, a backfill, a replay) takes the merge: staging, dedupe, fold what was new. The
decision is per batch, never per trade; whether the ids lie above what is stored is asked
of the database under a per-symbol lock (`TradeWriter`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..model import Trade

__all__ = ["AppendRange", "append_ranges"]


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
