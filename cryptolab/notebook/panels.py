"""Notebook panels: each takes (fig, data), `data` a dict of `cryptolab.analysis` frames as
`cryptolab.notebook.panel` passes them, and fills the whole figure with axes helpers
(`cryptolab.notebook.axes`): `price_overview`, `traffic_overview`, `quality_timeline`, ….
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from matplotlib.figure import Figure

from .axes import (
    _col,
    _dates,
    _legend_above,
    _num,
    candles,
    empty,
    latency_percentiles,
    reconciliation,
    time_axis,
    to_float,
    tps_distribution,
    tps_series,
    volume_bars,
    volume_by_day,
    volume_profile,
    vwap_bands,
    y_range,
)
from .theme import DOWN, GRID, UP

__all__ = [
    "price_overview",
    "profile_panel",
    "traffic_overview",
    "quality_timeline",
    "volume_overview",
    "reconciliation_panel",
    "latency_overview",
]


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

