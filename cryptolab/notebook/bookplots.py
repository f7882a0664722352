"""Drawing the order book: a depth chart, spread / depth / imbalance over time, OFI against
returns, trade costs — panels for `cryptolab.notebook.panel` (a Figure and a dict of frames)
and axes helpers for the dashboard. Floats only on screen, as in `plots`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .axes import _col, _dates, empty, time_axis, to_float
from .theme import DOWN, MUTED, UP

__all__ = ["depth_chart", "spread_mid", "book_overview", "ofi_returns", "trade_costs_panel", "book_panel"]


def depth_chart(ax: Axes, book: Any) -> None:
    """Cumulative quantity by price: bids (green) falling left from the best bid, asks (red)
    rising right from the best ask — from `book_at` rows (side, price, qty)."""
    if book is None or book.height == 0:
        empty(ax, "no book")
        return
    for side, colour in (("bid", UP), ("ask", DOWN)):
        rows = book.filter(book["side"] == side)
        prices = to_float(_col(rows, "price"))
        qty = to_float(_col(rows, "qty"))
        cum, total = [], 0.0
        for q in qty:
            total += q
            cum.append(total)
        if prices:
            ax.step(prices, cum, where="post", color=colour, linewidth=1.2, label=f"{side}s")
            ax.fill_between(prices, cum, step="post", color=colour, alpha=0.15)
    ax.set_ylabel("cumulative qty")
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=8, frameon=False, loc="upper center")
    ax.grid(True, color="#e5e7eb", linewidth=0.6)


def spread_mid(
    ax: Axes, ts: Sequence[Any], mid: Sequence[Any], bid: Sequence[Any], ask: Sequence[Any]
) -> None:
    """Mid with the best bid and ask around it over time."""
    t = _dates(ts)
    ax.plot(t, to_float(bid), color=UP, linewidth=0.8, label="best bid")
    ax.plot(t, to_float(ask), color=DOWN, linewidth=0.8, label="best ask")
    ax.plot(t, to_float(mid), color="#111827", linewidth=1.0, label="mid")
    ax.legend(fontsize=8, frameon=False, ncols=3, loc="upper left")
    _plain(ax)
    time_axis(ax)


def _plain(ax: Axes) -> None:
    """Prices and spreads as they are on the y axis (no '+6.5e4' offset)."""
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")


def book_overview(fig: Figure, data: Mapping[str, Any]) -> None:
    """`book_stats` over time: mid with bid/ask, spread (bps), depth within X bps per side, imbalance."""
    st = data["stats"]
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1, 1.5, 1]})
    if st.height == 0:
        for ax in axes:
            empty(ax, "no book updates in this range" if ax is axes[0] else "")
        return
    t = _col(st, "open_time")
    spread_mid(axes[0], t, _col(st, "mid"), _col(st, "bid_price"), _col(st, "ask_price"))
    axes[1].plot(_dates(t), to_float(_col(st, "spread_bps")), color=MUTED, linewidth=0.9)
    axes[1].set_ylabel("spread bps")
    _plain(axes[1])
    depth = [c for c in st.columns if c.startswith("bid_depth_")]
    if depth:
        name = depth[-1][len("bid_depth_") :]
        axes[2].plot(_dates(t), to_float(_col(st, f"bid_depth_{name}")), color=UP, linewidth=0.9, label="bid")
        axes[2].plot(
            _dates(t),
            [-v for v in to_float(_col(st, f"ask_depth_{name}"))],
            color=DOWN,
            linewidth=0.9,
            label="ask (down)",
        )
        axes[2].axhline(0, color="#9ca3af", linewidth=0.6)
        axes[2].set_ylabel(f"depth ±{name}")
        axes[2].legend(fontsize=8, frameon=False, ncols=2, loc="upper left")
    axes[3].plot(_dates(t), to_float(_col(st, "imbalance")), color="#7c3aed", linewidth=0.8)
    axes[3].axhline(0, color="#9ca3af", linewidth=0.6)
    axes[3].set_ylim(-1.05, 1.05)
    axes[3].set_ylabel("top imbalance")
    for ax in axes:
        time_axis(ax)


def ofi_returns(fig: Figure, data: Mapping[str, Any]) -> None:
    """Order-flow imbalance per interval against the mid's return in the same interval."""
    st = data["stats"]
    ax = fig.subplots()
    if st.height < 2:
        empty(ax, "too few intervals for OFI against returns")
        return
    x = to_float(_col(st, "ofi"))
    y = to_float(_col(st, "return_bps"))
    pts = [(a, b) for a, b in zip(x, y) if not (math.isnan(a) or math.isnan(b))]
    if not pts:
        empty(ax, "no returns")
        return
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, color="#2563eb", alpha=0.6)
    n = len(pts)
    mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx > 0:
        beta = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx
        lo, hi = min(p[0] for p in pts), max(p[0] for p in pts)
        ax.plot(
            [lo, hi],
            [my + beta * (lo - mx), my + beta * (hi - mx)],
            color=MUTED,
            linewidth=1,
            label=f"slope {beta:.3g} bps per unit OFI",
        )
        ax.legend(fontsize=8, frameon=False)
    ax.axhline(0, color="#9ca3af", linewidth=0.6)
    ax.axvline(0, color="#9ca3af", linewidth=0.6)
    ax.set_xlabel("OFI (base qty)")
    ax.set_ylabel("mid return (bps)")
    ax.grid(True, color="#e5e7eb", linewidth=0.6)


def trade_costs_panel(fig: Figure, data: Mapping[str, Any]) -> None:
    """Effective spread, price impact and realized spread per interval (bps)."""
    es = data["costs"]
    ax = fig.subplots()
    if es.height == 0:
        empty(ax, "no trades with a prevailing book in this range")
        return
    t = _dates(_col(es, "open_time"))
    for col, colour, label in (
        ("effective_spread_bps", "#111827", "effective spread"),
        ("impact_bps", DOWN, "price impact"),
        ("realized_spread_bps", UP, "realized spread"),
    ):
        ax.plot(
            t, to_float(_col(es, col)), color=colour, linewidth=1.0, label=label, marker=".", markersize=3
        )
    ax.axhline(0, color="#9ca3af", linewidth=0.6)
    ax.set_ylabel("bps")
    ax.legend(fontsize=8, frameon=False, ncols=3, loc="upper left")
    time_axis(ax)


def book_panel(
    ax_depth: Axes | None, ax_spread: Axes, book: Any, top: Any, *, xlim: tuple[float, float] | None = None
) -> None:
    """The dashboard's book panel: the latest book's depth chart (when `ax_depth`), and the
    spread (price units, grey) with the mid (black, right axis) over time (`top`: ts, mid,
    spread columns) on the candles' time axis."""
    if ax_depth is not None:
        depth_chart(ax_depth, book)
    if top is None or top.height == 0:
        empty(ax_spread, "no book data: capture with --streams trade,depth,bookTicker")
        return
    t = _dates(_col(top, "ts"))
    mid = to_float(_col(top, "mid"))
    spread = to_float(_col(top, "spread"))
    ax_spread.plot(t, spread, color=MUTED, linewidth=0.9, label="spread")
    ax_spread.set_ylabel("spread", fontsize=8)
    twin = ax_spread.twinx()
    twin.plot(t, mid, color="#111827", linewidth=0.9, label="mid")
    twin.set_ylabel("mid", fontsize=8)
    _plain(ax_spread)
    _plain(twin)
    if xlim is not None:
        ax_spread.set_xlim(*xlim)
    time_axis(ax_spread)
