"""The tape: the newest trades as an HTML table, newest first.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from .theme import DOWN, MUTED, UP
from .tiles import _fmt

__all__ = ["Tape"]


class Tape:
    """The latest trades as an HTML table, rows coloured by aggressor side.

    `is_buyer_maker` false means the taker bought (green), true means the taker sold
    (red). Rows are shown newest first, prices and quantities exactly as stored.
    """

    COLUMNS = ("time", "price", "qty", "side")

    def __init__(self, rows: int = 18, *, height: str = "430px") -> None:
        self.rows = rows
        self.height = height
        self.trades: list[Mapping[str, Any]] = []
        self._widget: Any = None

    @property
    def widget(self) -> Any:
        """The `ipywidgets.HTML` of the tape (made on first use)."""
        if self._widget is None:
            import ipywidgets as w

            # as wide as its widest row (long quantities included): no column is ever cut off
            self._widget = w.HTML(
                self.html(),
                layout=w.Layout(
                    width="max-content",
                    min_width="290px",
                    flex="0 0 auto",
                    height=self.height,
                    overflow="hidden",
                ),
            )
        return self._widget

    def update(self, trades: Iterable[Mapping[str, Any]]) -> None:
        """Show these trades (newest first): mappings with trade_id, price, qty,
        is_buyer_maker and trade_time."""
        self.trades = list(trades)[: self.rows]
        if self._widget is not None:
            new = self.html()
            if new != self._widget.value:
                self._widget.value = new

    @property
    def newest_id(self) -> int | None:
        """The trade id in the top row (None when empty)."""
        return int(self.trades[0]["trade_id"]) if self.trades else None

    def html(self) -> str:
        """The tape as a static HTML table."""
        head = "".join(
            f'<th style="text-align:{"left" if c in ("time", "side") else "right"};padding:2px 6px;'
            f'color:{MUTED};font-weight:500">{c}</th>'
            for c in self.COLUMNS
        )
        body = []
        for t in self.trades:
            sell = bool(t["is_buyer_maker"])
            colour = DOWN if sell else UP
            tt = t["trade_time"]
            when = tt.strftime("%H:%M:%S.%f")[:-3] if isinstance(tt, datetime) else str(tt)
            cells = (
                (when, "left"),
                (_fmt(t["price"]), "right"),
                (_fmt(t["qty"]), "right"),
                ("sell" if sell else "buy", "left"),
            )
            tds = "".join(
                f'<td style="text-align:{a};padding:1px 6px">{html.escape(v)}</td>' for v, a in cells
            )
            body.append(
                f'<tr style="color:{colour}" data-side="{"sell" if sell else "buy"}" '
                f'data-id="{int(t["trade_id"])}" title="trade {int(t["trade_id"])}">{tds}</tr>'
            )
        if not body:
            body.append(f'<tr><td colspan="4" style="color:{MUTED};padding:6px">no trades yet</td></tr>')
        return (
            '<table style="border-collapse:collapse;font-family:ui-monospace,monospace;font-size:12px;'
            'font-variant-numeric:tabular-nums;width:100%">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )
