"""The dashboard's perp panel: a USD-M perpetual's price beside its spot candles, and the basis.

`Dashboard(perp=True)` reads, on each tick of its background thread, the perp of the symbol
shown (`binance-usdm` beside `binance`, `simulator-usdm` beside `simulator`): per candle of the
spot chart the perp's last aggregate price (`agg_trades`) and the last mark price
(`mark_prices`), and the basis against the spot candle's close in bps, exact:
(perp − spot) / spot × 10,000, divided at 40 digits and rounded once to 2 decimals. Without
futures rows for the symbol the panel says what to capture.

`perp_rows` is the pure part (candles + the perp's buckets → the rows drawn); `PerpPanel.read`
the thin read (two indexed queries over the window, at most every `every` seconds).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

import psycopg

from ..markets import usdm_of

__all__ = ["PerpView", "PerpPanel", "perp_rows", "basis_bps", "no_futures_note"]

_BPS = Decimal(10_000)
_PLACES = Decimal("0.01")

_PERP_SQL = """
SELECT DISTINCT ON (1) date_bin(%(step)s, trade_time, timestamptz 'epoch') AS ts, price
FROM agg_trades
WHERE exchange = %(ex)s AND symbol = %(sym)s AND trade_time >= %(from)s AND trade_time < %(to)s
ORDER BY 1, trade_time DESC, agg_id DESC
"""
_MARK_SQL = """
SELECT DISTINCT ON (1) date_bin(%(step)s, event_time, timestamptz 'epoch') AS ts, mark_price
FROM mark_prices
WHERE exchange = %(ex)s AND symbol = %(sym)s AND event_time >= %(from)s AND event_time < %(to)s
ORDER BY 1, event_time DESC
"""


def basis_bps(perp: Decimal, spot: Decimal) -> Decimal:
    """(perp − spot) / spot × 10,000, divided at 40 digits, rounded once to 0.01 bps."""
    with localcontext() as ctx:
        ctx.prec = 40
        return ((perp - spot) * _BPS / spot).quantize(_PLACES)


def no_futures_note(symbol: str, exchange: str) -> str:
    """What the panel says when the perp of `symbol` has no rows in the window."""
    return (
        f"no USD-M perp data for {symbol} ({exchange}) in this window: capture the perp beside its spot — "
        f"cryptolab capture --market usdm --symbols {symbol.lower()} (Capture([...], market='usdm'))"
    )


@dataclass
class PerpView:
    """What the perp panel draws: per spot candle (bin start `ts`), the perp's last price, the last
    mark price, the spot close and the basis in bps (None where a side has no price)."""

    symbol: str
    exchange: str
    ts: list[datetime] = field(default_factory=list)
    perp: list[Decimal | None] = field(default_factory=list)
    mark: list[Decimal | None] = field(default_factory=list)
    spot: list[Decimal | None] = field(default_factory=list)
    basis_bps: list[Decimal | None] = field(default_factory=list)
    note: str | None = None
    """Why nothing is drawn (no futures data: what to capture), else None."""

    @property
    def last_basis_bps(self) -> Decimal | None:
        return next((b for b in reversed(self.basis_bps) if b is not None), None)

    def drawn(self) -> tuple[Any, ...]:
        """Same tuple, same picture."""
        return (
            self.symbol,
            self.exchange,
            self.note,
            len(self.ts),
            self.ts[-1] if self.ts else None,
            self.perp[-1] if self.perp else None,
            self.mark[-1] if self.mark else None,
        )


def perp_rows(
    symbol: str,
    exchange: str,
    candles: Sequence[Mapping[str, Any]],
    perp: Mapping[datetime, Decimal],
    mark: Mapping[datetime, Decimal],
) -> PerpView:
    """The panel's rows for the spot `candles` (each with `ts` and `close`) and the perp's
    buckets (bin start → last price / last mark price). Pure."""
    view = PerpView(symbol, exchange)
    if not perp and not mark:
        view.note = no_futures_note(symbol, exchange)
        return view
    for c in candles:
        ts, spot = c["ts"], c.get("close")
        p = perp.get(ts)
        view.ts.append(ts)
        view.perp.append(p)
        view.mark.append(mark.get(ts))
        view.spot.append(spot)
        view.basis_bps.append(basis_bps(p, spot) if p is not None and spot else None)
    return view


class PerpPanel:
    """Reads the perp beside the spot candles (throttled: at most once every `every` seconds
    for the same candles)."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self._key: tuple[Any, ...] | None = None
        self._at = 0.0
        self._last: PerpView | None = None

    def read(
        self,
        conn: psycopg.Connection,
        spot_exchange: str,
        symbol: str,
        candles: Sequence[Mapping[str, Any]],
        step: timedelta,
    ) -> PerpView:
        ex = usdm_of(spot_exchange)
        if not candles:
            return PerpView(symbol, ex, note=f"waiting for {symbol} spot candles")
        key = (ex, symbol, step, candles[0]["ts"], candles[-1]["ts"], candles[-1].get("close"))
        now = time.monotonic()
        if self._last is not None and key == self._key and now - self._at < self.every:
            return self._last
        params = {
            "ex": ex,
            "sym": symbol,
            "step": step,
            "from": candles[0]["ts"],
            "to": candles[-1]["ts"] + step,
        }
        perp = {r[0]: r[1] for r in conn.execute(_PERP_SQL, params).fetchall()}
        mark = {r[0]: r[1] for r in conn.execute(_MARK_SQL, params).fetchall()}
        self._key, self._at = key, now
        self._last = perp_rows(symbol, ex, candles, perp, mark)
        return self._last
