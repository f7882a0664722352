"""KPI tiles: one number with a label, a sub-line and a tone, in rows.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .theme import DOWN, MUTED, UP

__all__ = ["KpiTile", "KpiRow"]


_FG = "var(--jp-ui-font-color1, #111827)"


_BG = "var(--jp-layout-color1, #fff)"


_BORDER = "var(--jp-border-color2, #e5e7eb)"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")  # exact, without the stored scale's trailing zeros
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


@dataclass
class _TileState:
    value: str = "–"
    sub: str = ""
    tone: str | None = None


class KpiTile:
    """One KPI: a label, a big value and a small line under it (coloured up/down)."""

    def __init__(self, label: str, *, width: str = "165px") -> None:
        self.label = label
        self.width = width
        self.state = _TileState()
        self._widget: Any = None

    @property
    def widget(self) -> Any:
        """The `ipywidgets.HTML` of this tile (made on first use)."""
        if self._widget is None:
            import ipywidgets as w

            self._widget = w.HTML(self.html(), layout=w.Layout(width=self.width, margin="0 6px 6px 0"))
        return self._widget

    def set(self, value: Any, sub: str = "", tone: str | None = None) -> None:
        """Show `value` (Decimal shown exactly); `tone` is 'up', 'down' or None."""
        self.state = _TileState(_fmt(value), sub, tone)
        if self._widget is not None:
            new = self.html()
            if new != self._widget.value:
                self._widget.value = new

    @property
    def value(self) -> str:
        """The value text now shown."""
        return self.state.value

    def html(self) -> str:
        """The tile as a self-contained HTML fragment."""
        colour = {"up": UP, "down": DOWN}.get(self.state.tone or "", _FG)
        sub_colour = {"up": UP, "down": DOWN}.get(self.state.tone or "", MUTED)
        return (
            '<div style="border:1px solid var(--jp-border-color2, #e5e7eb);border-radius:8px;'
            "padding:6px 10px;"
            'font-family:system-ui,sans-serif;background:var(--jp-layout-color1, #fff);min-height:64px">'
            f'<div style="font-size:11px;color:{MUTED};text-transform:uppercase;letter-spacing:.04em">'
            f"{html.escape(self.label)}</div>"
            f'<div style="font-size:19px;font-weight:600;color:{colour};white-space:nowrap;'
            f'font-variant-numeric:tabular-nums">{html.escape(self.state.value)}</div>'
            f'<div style="font-size:11px;color:{sub_colour};white-space:nowrap">'
            f'{html.escape(self.state.sub) or "&nbsp;"}</div>'
            "</div>"
        )


class KpiRow:
    """A row of KPI tiles addressed by key."""

    def __init__(self, labels: Mapping[str, str], *, width: str = "165px") -> None:
        self.tiles = {key: KpiTile(label, width=width) for key, label in labels.items()}
        self._widget: Any = None

    def __getitem__(self, key: str) -> KpiTile:
        return self.tiles[key]

    @property
    def widget(self) -> Any:
        """An `ipywidgets.HBox` of the tiles."""
        if self._widget is None:
            import ipywidgets as w

            self._widget = w.HBox(
                [t.widget for t in self.tiles.values()],
                layout=w.Layout(flex_flow="row wrap"),
            )
        return self._widget

    def html(self) -> str:
        """All tiles side by side, as static HTML."""
        cells = "".join(f'<div style="width:{t.width}">{t.html()}</div>' for t in self.tiles.values())
        return f'<div style="display:flex;flex-wrap:wrap;gap:6px">{cells}</div>'
