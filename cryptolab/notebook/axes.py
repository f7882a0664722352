"""Axes helpers: each draws onto an `Axes` the caller owns, from plain sequences or DataFrame
columns (`candles`, `vwap_bands`, `volume_profile`, `tps_series`, …), plus the small pieces they
share (`to_float`, `time_axis`, `empty`, `y_range`). No pyplot, so they work in a background
thread. Decimals become floats here and only here: coordinates on a screen, never numbers
anyone reads back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection

from .theme import DOWN, GRID, UP, VWAP_COLOUR

__all__ = [
    "to_float",
    "candles",
    "vwap_bands",
    "cvd_line",
    "volume_bars",
    "volume_profile",
    "tps_series",
    "tps_distribution",
    "latency_percentiles",
    "volume_by_day",
    "reconciliation",
    "empty",
    "time_axis",
    "y_range",
]


def to_float(values: Iterable[Any]) -> list[float]:
    """Numbers (Decimal, int, float, str, None) as floats for plotting; None → NaN."""
    out = []
    for v in values:
        if v is None:
            out.append(math.nan)
        elif isinstance(v, float):
            out.append(v)
        else:
            out.append(float(Decimal(v) if isinstance(v, str) else v))
    return out


def _col(data: Any, name: str) -> list[Any]:
    """A column as a list, from a polars/pandas DataFrame or a mapping of sequences."""
    if hasattr(data, "get_column"):
        return list(data.get_column(name).to_list())
    if hasattr(data, "columns") and hasattr(data, "__getitem__") and hasattr(data[name], "tolist"):
        return list(data[name].tolist())
    return list(data[name])


def _num(v: datetime) -> float:
    return float(mdates.date2num(v))  # type: ignore[no-untyped-call]


def _dates(values: Sequence[Any]) -> list[float]:
    return [_num(v) if isinstance(v, datetime) else math.nan for v in values]


def time_axis(ax: Axes) -> None:
    """UTC time labels people read without the offset line (`12:05:30`, not a bare `30`),
    the date where it changes, and a light grid."""
    loc = mdates.AutoDateLocator(minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
    fmt = mdates.ConciseDateFormatter(  # type: ignore[no-untyped-call]
        loc,
        formats=["%Y", "%b", "%d %b", "%H:%M", "%H:%M", "%H:%M:%S"],
        zero_formats=["", "%Y", "%d %b", "%d %b", "%H:%M", "%H:%M:%S"],
        offset_formats=["", "%Y", "%Y-%m", "%Y-%m-%d UTC", "%Y-%m-%d UTC", "%Y-%m-%d %H:%M UTC"],
    )
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(fmt)
    ax.grid(True, **GRID)


def empty(ax: Axes, text: str = "no data in this range") -> None:
    """Mark an axes as empty with a centred message (instead of a blank box)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#6b7280")
    ax.set_xticks([])
    ax.set_yticks([])


def candles(ax: Axes, bars: Any, *, step: timedelta | None = None, time_col: str = "ts") -> None:
    """OHLC candles (green up, red down) from columns ts, open, high, low, close.

    Wicks and bodies are two collections, so hundreds of candles draw in milliseconds.
    """
    t = _dates(_col(bars, time_col))
    if not t:
        empty(ax)
        return
    o, h, lo_, c = (to_float(_col(bars, k)) for k in ("open", "high", "low", "close"))
    if step is None:
        gaps = [b - a for a, b in zip(t, t[1:]) if b > a]
        width = (min(gaps) if gaps else 1 / 86400) * 0.7
    else:
        width = step.total_seconds() / 86400 * 0.7
    colours = [UP if cc >= oo else DOWN for oo, cc in zip(o, c)]
    ax.add_collection(
        LineCollection([((x, lo), (x, hi)) for x, lo, hi in zip(t, lo_, h)], colors=colours, linewidths=0.8)
    )
    polys = []
    for x, oo, cc in zip(t, o, c):
        lo, hi = (oo, cc) if cc >= oo else (cc, oo)
        if hi == lo:
            hi = lo + (abs(lo) * 1e-7 or 1e-9)
        polys.append(((x - width / 2, lo), (x + width / 2, lo), (x + width / 2, hi), (x - width / 2, hi)))
    ax.add_collection(PolyCollection(polys, facecolors=colours, edgecolors=colours, linewidths=0.5))
    finite_l = [v for v in lo_ if not math.isnan(v)]
    finite_h = [v for v in h if not math.isnan(v)]
    if finite_l:
        pad = (max(finite_h) - min(finite_l)) * 0.05 or abs(finite_l[0]) * 1e-4 or 1
        ax.set_ylim(min(finite_l) - pad, max(finite_h) + pad)
    ax.set_xlim(min(t) - width, max(t) + width)
    time_axis(ax)


def vwap_bands(
    ax: Axes,
    ts: Sequence[datetime],
    vwap: Sequence[Any],
    sigma: Sequence[Any] | None = None,
    ks: Sequence[float] = (1.0, 2.0),
    label: str = "VWAP",
) -> None:
    """A VWAP line with ±kσ bands shaded (σ volume-weighted)."""
    t = _dates(ts)
    v = to_float(vwap)
    ax.plot(t, v, color=VWAP_COLOUR, linewidth=1.3, label=label)
    if sigma is not None:
        s = to_float(sigma)
        for k, alpha in zip(ks, (0.14, 0.07, 0.04)):
            lo = [a - k * b for a, b in zip(v, s)]
            hi = [a + k * b for a, b in zip(v, s)]
            ax.fill_between(t, lo, hi, color=VWAP_COLOUR, alpha=alpha, linewidth=0, label=f"±{k:g}σ")
            ax.plot(t, lo, color=VWAP_COLOUR, linewidth=0.5, alpha=0.5)
            ax.plot(t, hi, color=VWAP_COLOUR, linewidth=0.5, alpha=0.5)
    _legend_above(ax, ncols=4)


def cvd_line(
    ax: Axes, ts: Sequence[datetime], cvd: Sequence[Any], *, label: str = "CVD (taker buy − taker sell)"
) -> None:
    """Cumulative volume delta as a line, filled green above zero and red below."""
    t = _dates(ts)
    y = to_float(cvd)
    if not t:
        empty(ax)
        return
    ax.plot(t, y, color="#111827", linewidth=1.1)
    ax.fill_between(t, 0, y, where=[v >= 0 for v in y], color=UP, alpha=0.25, linewidth=0, interpolate=True)
    ax.fill_between(t, 0, y, where=[v < 0 for v in y], color=DOWN, alpha=0.25, linewidth=0, interpolate=True)
    ax.axhline(0, color="#9ca3af", linewidth=0.6)
    ax.set_ylabel(label, fontsize=8)
    time_axis(ax)


def volume_bars(
    ax: Axes,
    ts: Sequence[datetime],
    buy: Sequence[Any],
    sell: Sequence[Any],
    *,
    step: timedelta | None = None,
) -> None:
    """Taker-buy volume up (green) and taker-sell volume down (red) per interval."""
    t = _dates(ts)
    if not t:
        empty(ax)
        return
    width = (
        step.total_seconds() / 86400
        if step
        else (min((b - a for a, b in zip(t, t[1:]) if b > a), default=1 / 86400))
    ) * 0.8
    ax.bar(t, to_float(buy), width=width, color=UP, label="taker buy")
    ax.bar(t, [-v for v in to_float(sell)], width=width, color=DOWN, label="taker sell")
    ax.axhline(0, color="#9ca3af", linewidth=0.6)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)  # beside: hides no bar
    time_axis(ax)


def volume_profile(
    ax: Axes,
    prices: Sequence[Any],
    volumes: Sequence[Any],
    *,
    poc: Any = None,
    vah: Any = None,
    val: Any = None,
    bin_size: Any = None,
) -> None:
    """Horizontal volume-at-price bars with the point of control and the value area marked.

    `prices` are the bins' lower edges when `bin_size` is given (else bin centres); `poc`
    is the POC bin's lower edge (or centre): the line and its label are at the bin's
    midpoint, the price `support_resistance` records. `vah`/`val` are exact price levels.
    The legend sits above the plot, so it never hides a bar."""
    p = to_float(prices)
    v = to_float(volumes)
    if not p:
        empty(ax)
        return
    ordered = sorted(p)
    height = (
        float(bin_size)
        if bin_size is not None
        else min((b - a for a, b in zip(ordered, ordered[1:]) if b > a), default=1.0)
    )
    centre = [x + height / 2 for x in p] if bin_size is not None else p
    lo = float(val) if val is not None else -math.inf
    hi = float(vah) if vah is not None else math.inf
    poc_f = float(poc) if poc is not None else None
    colours = [
        "#f59e0b" if poc_f is not None and x == poc_f else ("#60a5fa" if lo <= c <= hi else "#cbd5e1")
        for x, c in zip(p, centre)
    ]
    ax.barh(centre, v, height=height * 0.9, color=colours)
    if poc is not None:
        mid = (Decimal(str(poc)) + Decimal(str(bin_size)) / 2) if bin_size is not None else Decimal(str(poc))
        ax.axhline(float(mid), color="#f59e0b", linewidth=0.8, linestyle=":", label=f"POC {_price(mid)}")
    for level, name in ((vah, "VAH"), (val, "VAL")):
        if level is not None:
            ax.axhline(
                float(level), color="#2563eb", linewidth=0.9, linestyle="--", label=f"{name} {_price(level)}"
            )
    ax.set_xlabel("volume (base)")
    ax.set_ylabel("price")
    ax.grid(True, axis="x", **GRID)
    ax.legend(
        loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=8, frameon=False, ncols=3, borderaxespad=0.2
    )


def _legend_above(ax: Axes, ncols: int = 4) -> None:
    """The legend in a row above the axes: it never hides a bar or a candle."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            fontsize=8,
            frameon=False,
            ncols=ncols,
            borderaxespad=0.2,
        )


def y_range(
    lows: Sequence[float], highs: Sequence[float], *others: Sequence[float], pad: float = 0.06
) -> tuple[float, float]:
    """Price limits holding every candle and every other series given (VWAP and its σ bands),
    padded; NaNs ignored."""
    values = [x for seq in (lows, highs, *others) for x in seq if not math.isnan(x)]
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    margin = (hi - lo) * pad or abs(lo) * 1e-4 or 1.0
    return lo - margin, hi + margin


def _price(value: Any) -> str:
    """A price for a label: exact but without trailing zeros, thousands separated."""
    d = Decimal(str(value)).normalize()
    exp = d.as_tuple().exponent
    places = -exp if isinstance(exp, int) and exp < 0 else 0
    return f"{d:,.{places}f}"


def tps_series(
    ax: Axes,
    ts: Sequence[datetime],
    tps: Sequence[Any],
    *,
    bursts: Iterable[tuple[datetime, datetime]] = (),
    ylabel: str = "trades / s",
) -> None:
    """Trades per second over time, with burst periods shaded."""
    t = _dates(ts)
    if not t:
        empty(ax)
        return
    ax.plot(t, to_float(tps), color="#111827", linewidth=0.7)
    first = True
    for a, b in bursts:
        ax.axvspan(
            _num(a),
            _num(b + timedelta(seconds=1)),
            color="#f59e0b",
            alpha=0.3,
            linewidth=0,
            label="burst" if first else None,
        )
        first = False
    ax.set_ylabel(ylabel)
    if not first:
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    time_axis(ax)


def tps_distribution(ax: Axes, tps: Sequence[Any], percentiles: Mapping[str, Any] | None = None) -> None:
    """Histogram of trades per second with percentile markers."""
    v = to_float(tps)
    if not v:
        empty(ax)
        return
    top = max(v)
    bins = min(60, max(5, int(top) + 1))
    ax.hist(v, bins=bins, color="#93c5fd", edgecolor="#3b82f6", linewidth=0.4)
    for (name, value), colour in zip(
        (percentiles or {}).items(), ("#16a34a", "#f59e0b", "#dc2626", "#111827")
    ):
        if value is not None:
            ax.axvline(float(value), color=colour, linewidth=1.1, label=f"{name} {float(value):g}")
    ax.set_xlabel("trades / s")
    ax.set_ylabel("seconds")
    ax.set_yscale("log")
    ax.grid(True, **GRID)
    if percentiles:
        ax.legend(fontsize=8, frameon=False)


def latency_percentiles(
    ax: Axes, ts: Sequence[datetime], series: Mapping[str, Sequence[Any]], *, unit: str = "ms"
) -> None:
    """Several latency percentile lines (e.g. p50/p95/p99) over time, log scale."""
    t = _dates(ts)
    if not t:
        empty(ax)
        return
    for (name, values), style in zip(series.items(), ("-", "--", ":", "-.")):
        y = [max(x, 1e-3) for x in to_float(values)]
        ax.plot(t, y, linestyle=style, linewidth=1.1, label=name)
    ax.set_yscale("log")
    ax.set_ylabel(unit)
    ax.legend(fontsize=8, frameon=False, ncols=3)
    time_axis(ax)


def volume_by_day(ax: Axes, days: Sequence[Any], buy: Sequence[Any], sell: Sequence[Any]) -> None:
    """Stacked taker-buy / taker-sell base volume per day."""
    if not days:
        empty(ax)
        return
    labels = [d.isoformat() if hasattr(d, "isoformat") else str(d) for d in days]
    b, s = to_float(buy), to_float(sell)
    ax.bar(labels, b, color=UP, label="taker buy")
    ax.bar(labels, s, bottom=b, color=DOWN, label="taker sell")
    ax.set_ylabel("volume (base)")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(True, axis="y", **GRID)
    ax.tick_params(axis="x", labelrotation=30)


def reconciliation(ax: Axes, minutes: Sequence[datetime], status: Sequence[str]) -> None:
    """One coloured tick per minute: exact match (green), mismatch (red), incomplete (grey)."""
    t = _dates(minutes)
    if not t:
        empty(ax, "no klines fetched for this range")
        return
    colours = {"match": UP, "exact": UP, "mismatch": DOWN}
    ax.vlines(t, 0, 1, colors=[colours.get(str(s), "#9ca3af") for s in status], linewidth=2)
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    time_axis(ax)
