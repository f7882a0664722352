"""What notebook 07 (USD-M futures) imports: the futures market to show, its data in one call,
and the figure (perp and spot price, basis, CVD beside liquidations, funding beside open interest).

A report runs every notebook on the spot exchange it covers: `futures_market` turns that into
the futures market beside it (`binance` → `binance-usdm`) and, when none is stored, says why
instead of failing, so a spot-only database still gets a clean report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from matplotlib.figure import Figure

from ..analysis.args import TimeLike
from ..errors import DataError
from .axes import _col, _dates, empty, time_axis, to_float
from .theme import DOWN, MUTED, UP

__all__ = ["FuturesMarket", "futures_market", "load_futures", "futures_overview"]


@dataclass(frozen=True)
class FuturesMarket:
    """The futures market a notebook shows (None fields and a `note` when nothing is stored)."""

    exchange: str | None
    spot_exchange: str | None
    symbol: str | None
    start: datetime | None
    end: datetime | None
    note: str

    @property
    def ok(self) -> bool:
        return self.exchange is not None

    def __repr__(self) -> str:
        return self.note


def futures_market(conn: psycopg.Connection, exchange: str | None, symbol: str | None,
                   start: TimeLike | None = None, end: TimeLike | None = None) -> FuturesMarket:
    """The USD-M market beside `exchange` (either market's name, or None: the one holding data)."""
    from ..analysis.futures import futures_scope

    try:
        s = futures_scope(conn, "futures", symbol, start, end, exchange, "usdm")
    except DataError as exc:
        return FuturesMarket(None, None, symbol, None, None, f"nothing to show: {exc}")
    note = (f"{s.symbol} perpetual on {s.exchange!r} beside spot {s.spot_exchange!r}, "
            f"{s.start:%Y-%m-%d %H:%M} … {s.end:%Y-%m-%d %H:%M} UTC")
    return FuturesMarket(s.exchange, s.spot_exchange, s.symbol, s.start, s.end, note)


def load_futures(m: FuturesMarket, interval: str | None, conn: psycopg.Connection | None) -> dict[str, Any]:
    """Everything notebook 07 draws, over the market's range: the perp's bars and CVD (from its
    aggregate trades), basis, funding, liquidations, open interest."""
    import warnings

    from .. import analysis as an
    from ..analysis.args import auto_interval

    if not m.ok:
        return {"market": m}
    assert m.start is not None and m.end is not None
    iv = interval or auto_interval(m.end - m.start)[0]
    kw: dict[str, Any] = {"exchange": m.exchange, "conn": conn}
    out: dict[str, Any] = {"market": m, "interval": iv}
    try:
        out["bars"] = an.ohlcv(m.symbol, m.start, m.end, iv, kind="aggTrades", **kw)
        out["cvd"] = an.cvd(m.symbol, m.start, m.end, iv, kind="aggTrades", **kw)
    except DataError:  # no aggregate trades of the perp stored: the other panels still show
        out["bars"] = out["cvd"] = None
    out["basis"] = an.basis(m.symbol, m.start, m.end, iv, **kw)
    out["funding"] = an.funding(m.symbol, m.start, m.end, **kw)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        out["liquidations"] = an.liquidations(m.symbol, m.start, m.end, iv, **kw)
    out["liquidation_note"] = str(said[0].message) if said else ""
    out["open_interest"] = an.open_interest(m.symbol, m.start, m.end, **kw)
    return out


def _price(ax: Any, data: Mapping[str, Any]) -> None:
    bars, basis = data.get("bars"), data["basis"]
    if (bars is None or bars.height == 0) and basis.height == 0:
        empty(ax, "no perp trades in this range")
        return
    if bars is not None and bars.height:
        ax.plot(
            _dates(_col(bars, "open_time")),
            to_float(_col(bars, "close")),
            color="#111827",
            linewidth=1.1,
            label="perp close",
        )
    if basis.height:
        ax.plot(
            _dates(_col(basis, "open_time")),
            to_float(_col(basis, "spot_close")),
            color="#2563eb",
            linewidth=1.0,
            linestyle="--",
            label="spot close",
        )
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.set_ylabel("price", fontsize=8)
    time_axis(ax)


def _basis(ax: Any, basis: Any) -> None:
    if basis.height == 0:
        empty(ax, "no bucket with both perp and spot trades")
        return
    t, y = _dates(_col(basis, "open_time")), to_float(_col(basis, "basis_bps"))
    ax.bar(t, y, width=(t[1] - t[0]) * 0.8 if len(t) > 1 else 0.01, color=[UP if v >= 0 else DOWN for v in y])
    ax.axhline(0, color="#9ca3af", linewidth=0.6)
    ax.set_ylabel("basis (bps)", fontsize=8)
    time_axis(ax)


def _cvd_liquidations(ax: Any, cvd: Any, liq: Any) -> None:
    if cvd is not None and cvd.height:
        ax.plot(
            _dates(_col(cvd, "open_time")),
            to_float(_col(cvd, "cvd")),
            color="#111827",
            linewidth=1.1,
            label="perp CVD",
        )
        ax.axhline(0, color="#9ca3af", linewidth=0.6)
        ax.set_ylabel("CVD", fontsize=8)
    twin = ax.twinx()
    for side, color, label in (("SELL", DOWN, "longs liquidated"), ("BUY", UP, "shorts liquidated")):
        rows = liq.filter(liq["side"] == side) if liq.height else liq
        if rows.height:
            twin.bar(
                _dates(_col(rows, "open_time")),
                to_float(_col(rows, "notional")),
                width=0.002,
                color=color,
                alpha=0.6,
                label=label,
            )
    twin.set_ylabel("liquidated notional", fontsize=8)
    if (cvd is None or cvd.height == 0) and liq.height == 0:
        empty(ax, "no perp trades nor liquidations in this range")
        return
    time_axis(ax)


def _funding_oi(ax: Any, funding: Any, oi: Any) -> None:
    if funding.height:
        ax.step(
            _dates(_col(funding, "funding_time")),
            [v * 100 for v in to_float(_col(funding, "funding_rate"))],
            where="post",
            color="#7c3aed",
            label="funding rate (%)",
        )
        ax.set_ylabel("funding rate (%)", fontsize=8)
    if oi.height:
        twin = ax.twinx()
        twin.plot(_dates(_col(oi, "ts")), to_float(_col(oi, "open_interest")), color=MUTED, linewidth=1.0)
        twin.set_ylabel("open interest", fontsize=8)
    if funding.height == 0 and oi.height == 0:
        empty(ax, "no funding nor open interest in this range")
        return
    time_axis(ax)


def futures_overview(fig: Figure, data: Mapping[str, Any]) -> None:
    """Perp and spot price, basis in bps, the perp's CVD beside liquidations, funding beside open interest."""
    if not data["market"].ok:
        empty(fig.subplots(1, 1), data["market"].note[:120])
        return
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.5, 2, 2]})
    _price(axes[0], data)
    _basis(axes[1], data["basis"])
    _cvd_liquidations(axes[2], data.get("cvd"), data["liquidations"])
    _funding_oi(axes[3], data["funding"], data["open_interest"])
