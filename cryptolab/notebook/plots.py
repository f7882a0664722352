"""Matplotlib drawing for the dashboard and the notebooks, under the one name notebooks use
(`plots.price_overview`, `plots.candles`, `plots.UP`).

Three concepts, each in its own module, gathered here: the colours and the dark/light theme
(`cryptolab.notebook.theme`), axes helpers that draw onto an `Axes` the caller owns
(`cryptolab.notebook.axes`), and panels that fill a whole `Figure` from a dict of
`cryptolab.analysis` frames (`cryptolab.notebook.panels`). No pyplot, so they work in a
background thread; Decimals become floats only there, on screen.
"""

from __future__ import annotations

from .axes import (
    candles,
    cvd_line,
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
from .panels import (
    latency_overview,
    price_overview,
    profile_panel,
    quality_timeline,
    reconciliation_panel,
    traffic_overview,
    volume_overview,
)
from .theme import DOWN, GRID, MUTED, UP, VWAP_COLOUR, WARN, apply_theme, dark_theme

__all__ = [
    "UP",
    "DOWN",
    "MUTED",
    "WARN",
    "VWAP_COLOUR",
    "GRID",
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
