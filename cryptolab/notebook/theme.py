"""The colours of every chart, tile and tape, and the dark or light page they are drawn for.

One green (taker bought / price up) and one red (taker sold / price down) everywhere;
`apply_theme` recolours a drawn figure for JupyterLab's dark theme, leaving data colours.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

__all__ = [
    "UP",
    "DOWN",
    "MUTED",
    "WARN",
    "VWAP_COLOUR",
    "GRID",
    "dark_theme",
    "apply_theme",
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

