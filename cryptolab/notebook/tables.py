"""Readable HTML tables of frames (rounded, aligned) and status tables.
"""

from __future__ import annotations

import html
from typing import Any

from ..analysis.display import format_value, frame_html
from .theme import DOWN, MUTED, UP, WARN
from .tiles import _FG

__all__ = ["to_html", "status_table", "table"]


def status_table(frame: Any, status_col: str = "status") -> str:
    """A DataFrame as an HTML table with each row coloured by its status
    (ok green, warn amber, fail red, info grey) — a scorecard."""
    colours = {"ok": UP, "match": UP, "warn": WARN, "fail": DOWN, "mismatch": DOWN, "info": MUTED}
    cols = list(frame.columns)
    head = "".join(f'<th style="text-align:left;padding:3px 8px">{html.escape(c)}</th>' for c in cols)
    rows = []
    for rec in frame.iter_rows(named=True):
        colour = colours.get(str(rec.get(status_col)), _FG)
        tds = "".join(f'<td style="padding:2px 8px">{html.escape(format_value(rec[c]))}</td>' for c in cols)
        rows.append(f'<tr style="color:{colour}">{tds}</tr>')
    return ('<table style="border-collapse:collapse;font-family:system-ui,sans-serif;font-size:13px">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def to_html(obj: Any) -> str:
    """HTML for a DataFrame (polars/pandas: readable numbers, see `cryptolab.analysis.display`),
    a list of them, a string (as is) or anything (escaped)."""
    if obj is None:
        return ""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, (list, tuple)):
        return "".join(to_html(o) for o in obj)
    if hasattr(obj, "columns") and (hasattr(obj, "height") or hasattr(obj, "iloc")):
        return frame_html(obj)
    if hasattr(obj, "_repr_html_"):
        return str(obj._repr_html_())
    return f"<pre>{html.escape(str(obj))}</pre>"


def table(frame: Any, caption: str | None = None, *, max_rows: int = 20) -> Any:
    """A DataFrame as a readable table for a notebook cell (rounded, aligned, one unit per
    column); the frame itself stays exact."""
    from IPython.display import HTML

    return HTML(frame_html(frame, max_rows=max_rows, caption=caption))  # type: ignore[no-untyped-call]
