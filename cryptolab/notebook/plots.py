"""Matplotlib drawing helpers for the dashboard and the notebooks.

Two kinds: axes helpers (`candles`, `vwap_bands`, `volume_profile`, `tps_series`, …)
draw onto an `Axes` the caller owns, from plain sequences or DataFrame columns; panels
(`price_overview`, `traffic_overview`, …) fill a whole `Figure` from a dict of
`cryptolab.analysis` frames, as `cryptolab.notebook.panel` passes them. No pyplot, so they
work in a background thread. Decimals become floats here and only here: coordinates on a
screen, never numbers anyone reads back.
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
from matplotlib.figure import Figure

__all__ = [
    "UP",
    "DOWN",
    "MUTED",
    "WARN",
    "dark_theme",
    "apply_theme",
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
    "price_overview",
    "profile_panel",
    "traffic_overview",
    "quality_timeline",
    "volume_overview",
    "reconciliation_panel",
    "latency_overview",
]

UP = "#16a34a"
"""Taker bought / price up: the one green of every chart, tile and tape."""
DOWN = "#dc2626"
"""Taker sold / price down: the one red."""
MUTED = "#6b7280"
WARN = "#d97706"
VWAP_COLOUR = "#2563eb"
GRID: dict[str, Any] = {"color": "#e5e7eb", "linewidth": 0.6}

_DARK = {"bg": "#111111", "fg": "#d4d4d4", "grid": "#3f3f46", "line": "#e5e7eb"}
_LIGHT = {"bg": "#ffffff", "fg": "#111827", "grid": "#e5e7eb", "line": "#111827"}


def dark_theme() -> bool:
    """True when JupyterLab runs a dark theme (its user settings say so), or
    CRYPTOLAB_THEME=dark. Read once per chart: a theme change shows on the next run."""
    import json
    import os
    import re
    from pathlib import Path

    forced = os.environ.get("CRYPTOLAB_THEME", "").strip().lower()
    if forced in ("dark", "light"):
        return forced == "dark"
    base = os.environ.get("JUPYTERLAB_SETTINGS_DIR") or str(
        Path.home() / ".jupyter" / "lab" / "user-settings"
    )
    path = Path(base) / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
    try:
        text = re.sub(r"^\s*//.*$", "", path.read_text(), flags=re.MULTILINE)  # the file allows // comments
        theme = str(json.loads(text).get("theme", ""))
    except (OSError, ValueError):
        return False
    return "dark" in theme.lower()


def apply_theme(fig: Figure, *, dark: bool) -> None:
    """Colour a drawn figure for a dark or light page: background, text, ticks, spines, grid,
    legends. Data colours (green/red, VWAP blue) stay."""
    pal = _DARK if dark else _LIGHT
    fig.patch.set_facecolor(pal["bg"])
    for ax in fig.axes:
        ax.set_facecolor(pal["bg"])
        ax.tick_params(colors=pal["fg"], which="both")
        for spine in ax.spines.values():
            spine.set_color(pal["grid"] if dark else "#9ca3af")
        ax.xaxis.label.set_color(pal["fg"])
        ax.yaxis.label.set_color(pal["fg"])
        ax.title.set_color(pal["fg"])
        for line in ax.get_xgridlines() + ax.get_ygridlines():
            line.set_color(pal["grid"])
        for text in ax.texts:
            if text.get_color() in ("#6b7280", MUTED):
                text.set_color(pal["fg"])
        for line in ax.get_lines():
            if line.get_color() in ("#111827", _LIGHT["line"]):
                line.set_color(pal["line"])
        leg = ax.get_legend()
        if leg is not None:
            for t in leg.get_texts():
                t.set_color(pal["fg"])
        off = ax.yaxis.get_offset_text()
        off.set_color(pal["fg"])
    for sub in fig.subfigs:
        sub.patch.set_facecolor(pal["bg"])


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


# ---------------------------------------------------------------------- notebook panels
# Each takes (fig, data) with `data` a dict of analysis frames, as `cryptolab.notebook.panel`
# passes them, and fills the figure.


def _ms(values: Iterable[Any]) -> list[float]:
    """Durations (timedelta or None) in milliseconds."""
    return [math.nan if v is None else v.total_seconds() * 1000 for v in values]


def _present(frame: Any, col: str) -> Any:
    return frame.filter(frame.get_column(col).is_not_null()) if hasattr(frame, "filter") else frame


def price_overview(fig: Figure, data: Mapping[str, Any]) -> None:
    """Candles with session VWAP ±1σ/±2σ, SMA/EMA and swing pivots; taker volume below.

    data: bars (ohlcv), vwap (vwap with bands), ma (moving_averages, optional),
    pivots (pivots, optional)."""
    bars = data["bars"]
    ax_p, ax_v = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    full = _present(bars, "open")
    if full.height == 0:
        empty(ax_p)
        empty(ax_v, "")
        return
    step = None
    t = _col(bars, "open_time")
    if len(t) > 1:
        step = t[1] - t[0]
    half = step / 2 if step else timedelta(0)
    shifted = full.with_columns(full.get_column("open_time") + half) if step else full
    candles(ax_p, shifted, step=step, time_col="open_time")
    vw = data.get("vwap")
    if vw is not None and vw.height:
        vts = [x + half for x in _col(vw, "open_time")]
        sig = _col(vw, "sigma") if "sigma" in vw.columns else None
        vwap_bands(
            ax_p,
            vts,
            _col(vw, "vwap"),
            sig if sig and any(v is not None for v in sig) else None,
            label="session VWAP",
        )
    ma = data.get("ma")
    if ma is not None and ma.height:
        mts = [x + half for x in _col(ma, "open_time")]
        ax_p.plot(_dates(mts), to_float(_col(ma, "sma")), color="#f59e0b", linewidth=0.9, label="SMA")
        ax_p.plot(_dates(mts), to_float(_col(ma, "ema")), color="#7c3aed", linewidth=0.9, label="EMA")
        _legend_above(ax_p, ncols=6)
    pv = data.get("pivots")
    if pv is not None and pv.height:
        for kind, marker, colour in (("high", "v", DOWN), ("low", "^", UP)):
            sel = pv.filter(pv.get_column("kind") == kind)
            if sel.height:
                ax_p.scatter(
                    _dates([x + half for x in _col(sel, "open_time")]),
                    to_float(_col(sel, "price")),
                    marker=marker,
                    color=colour,
                    s=28,
                    zorder=5,
                    label=f"swing {kind}",
                )
    ax_p.ticklabel_format(axis="y", useOffset=False, style="plain")
    bands: list[float] = []
    if vw is not None and vw.height:
        v = to_float(_col(vw, "vwap"))
        sg = (
            [0.0 if math.isnan(x) else x for x in to_float(_col(vw, "sigma"))]
            if "sigma" in vw.columns
            else [0.0] * len(v)
        )
        bands = [a + k * b for a, b in zip(v, sg) for k in (-2, 2)]
    ax_p.set_ylim(*y_range(to_float(_col(full, "low")), to_float(_col(full, "high")), bands))
    if pv is not None and pv.height:
        _legend_above(ax_p, ncols=6)
    buy = _col(bars, "taker_buy_volume")
    sell = [v - b for v, b in zip(_col(bars, "volume"), buy)]
    volume_bars(ax_v, [x + half for x in t], buy, sell, step=step)
    ax_v.set_ylabel("volume", fontsize=8)


def profile_panel(fig: Figure, data: Mapping[str, Any]) -> None:
    """The volume profile of data['profile'] with POC and value area marked."""
    prof = data["profile"]
    ax = fig.subplots()
    if prof.height == 0:
        empty(ax)
        return
    poc = prof.filter(prof.get_column("is_poc"))
    va = prof.filter(prof.get_column("in_value_area"))
    bin_size = prof.get_column("bin_size")[0]
    volume_profile(
        ax,
        _col(prof, "price_low"),
        _col(prof, "volume"),
        poc=poc.get_column("price_low")[0] if poc.height else None,
        vah=va.get_column("price_high").max() if va.height else None,
        val=va.get_column("price_low").min() if va.height else None,
        bin_size=bin_size,
    )
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")


def traffic_overview(fig: Figure, data: Mapping[str, Any]) -> None:
    """TPS over time with bursts shaded; below, the TPS distribution with percentiles and
    the inter-arrival histogram. data: tps, bursts, stats, inter_arrival."""
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.2, 1])  # type: ignore[misc]  # matplotlib stubs: a pair
    ax_t = top.subplots()
    ax_d, ax_i = bottom.subplots(1, 2)
    tp = data["tps"]
    bu = data.get("bursts")
    spans = list(zip(_col(bu, "burst_start"), _col(bu, "burst_end"))) if bu is not None and bu.height else []
    tps_series(
        ax_t, _col(tp, "ts"), _col(tp, "trades"), bursts=[(a, b - timedelta(seconds=1)) for a, b in spans]
    )
    st = data.get("stats")
    pct = {}
    if st is not None and st.height:
        pct = {k: st.get_column(k)[0] for k in ("p50", "p95", "p99", "max_tps")}
    tps_distribution(ax_d, _col(tp, "trades"), pct)
    ia = data.get("inter_arrival")
    if ia is None or ia.height == 0:
        empty(ax_i)
        return
    ax_i.bar(range(ia.height), _col(ia, "gaps"), color="#93c5fd", edgecolor="#3b82f6", linewidth=0.4)
    ax_i.set_xticks(
        range(ia.height), [str(x) for x in _col(ia, "label")], rotation=60, fontsize=7, ha="right"
    )
    ax_i.set_ylabel("gaps between trades")
    ax_i.set_title("inter-arrival time", fontsize=9)
    ax_i.grid(True, axis="y", **GRID)


def quality_timeline(fig: Figure, data: Mapping[str, Any]) -> None:
    """Trades per minute with id gaps (losses, red) and halts (silences, grey) marked."""
    ax = fig.subplots()
    tp = data.get("per_minute")
    if tp is not None and tp.height:
        ax.step(
            _dates(_col(tp, "open_time")),
            _col(tp, "trades"),
            where="post",
            color="#111827",
            linewidth=0.8,
            label="trades / interval",
        )
    first = True
    gp = data.get("gaps")
    for a, b, _n in (
        zip(_col(gp, "time_before"), _col(gp, "time_after"), _col(gp, "missing"))
        if gp is not None and gp.height
        else []
    ):
        ax.axvspan(
            _num(a),
            _num(b) + 1 / 86400,
            color=DOWN,
            alpha=0.35,
            linewidth=0,
            label="id gap (loss)" if first else None,
        )
        first = False
    first = True
    hl = data.get("halts")
    for a, b in zip(_col(hl, "halt_start"), _col(hl, "halt_end")) if hl is not None and hl.height else []:
        ax.axvspan(
            _num(a),
            _num(b),
            color="#9ca3af",
            alpha=0.35,
            linewidth=0,
            label="halt (no loss)" if first else None,
        )
        first = False
    ax.set_ylabel("trades")
    handles = ax.get_legend_handles_labels()[0]
    if handles:
        ax.legend(fontsize=8, frameon=False, loc="upper left")
    if tp is None or tp.height == 0:
        empty(ax)
        return
    time_axis(ax)


def volume_overview(fig: Figure, data: Mapping[str, Any]) -> None:
    """Volume per day (taker buy/sell) and the CVD by aggressor beside the tick-rule CVD."""
    ax_d, ax_c = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    days = data["days"]
    volume_by_day(ax_d, _col(days, "day"), _col(days, "taker_buy_volume"), _col(days, "taker_sell_volume"))
    cv = data["cvd"]
    if cv.height == 0:
        empty(ax_c)
        return
    t = _dates(_col(cv, "open_time"))
    ax_c.plot(t, to_float(_col(cv, "cvd")), color="#111827", linewidth=1.2, label="CVD (aggressor side)")
    if "tick_cvd" in cv.columns:
        ax_c.plot(
            t,
            to_float(_col(cv, "tick_cvd")),
            color="#f59e0b",
            linewidth=1.0,
            linestyle="--",
            label="CVD (tick rule)",
        )
    ax_c.axhline(0, color="#9ca3af", linewidth=0.6)
    ax_c.legend(fontsize=8, frameon=False)
    time_axis(ax_c)


def reconciliation_panel(fig: Figure, data: Mapping[str, Any]) -> None:
    """Minute-by-minute reconciliation against the exchange's klines (status strip + volume diff)."""
    rec = data["reconcile"]
    ax_s, ax_d = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    if rec is None:
        empty(ax_s, data.get("skipped") or "reconciliation skipped")
        empty(ax_d, "")
        return
    if rec.height == 0:
        empty(ax_s, "no minutes to reconcile")
        empty(ax_d, "")
        return
    reconciliation(ax_s, _col(rec, "open_time"), _col(rec, "status"))
    ax_s.set_title("green: exact match · red: mismatch · grey: incomplete", fontsize=9, loc="left")
    diff = to_float(_col(rec, "volume_diff"))
    ax_d.bar(
        _dates(_col(rec, "open_time")),
        [0 if math.isnan(v) else v for v in diff],
        width=0.8 / 1440,
        color=[DOWN if v and not math.isnan(v) else "#9ca3af" for v in diff],
    )
    ax_d.axhline(0, color="#9ca3af", linewidth=0.6)
    ax_d.set_ylabel("volume: stored − exchange")
    time_axis(ax_d)


def latency_overview(fig: Figure, data: Mapping[str, Any]) -> None:
    """Total latency p50/p95/p99 per interval, and the p50 of each stage below."""
    st = data["stats"]
    ax_t, ax_s = fig.subplots(2, 1, sharex=True)
    if st.height == 0 or "streamed" in st.columns and int(st.get_column("streamed").sum()) == 0:
        empty(
            ax_t,
            "no trades in this range"
            if st.height == 0
            else "latency does not apply: these trades are loaded or replayed history, not captured live",
        )
        empty(ax_s, "")
        return
    t = _col(st, "open_time")
    latency_percentiles(ax_t, t, {k: _ms(_col(st, f"total_{k}")) for k in ("p50", "p95", "p99")})
    ax_t.set_title("trade time → stored (T → ingested)", fontsize=9, loc="left")
    latency_percentiles(
        ax_s,
        t,
        {
            name: _ms(_col(st, f"{col}_p50"))
            for name, col in (
                ("exchange push E−T", "push"),
                ("network+client received−E", "network"),
                ("pipeline ingested−received", "pipeline"),
            )
        },
    )
    ax_s.set_title("p50 by stage", fontsize=9, loc="left")
