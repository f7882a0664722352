"""Numbers people can read: frames and key figures shown rounded, aligned and in one unit.

The analysis frames keep exact values (Decimal columns, microsecond durations); this
module only decides how they are *shown*:

* a numeric column gets one number of decimals for all its rows (from its magnitude:
  prices of 60 000 show 2, quantities of 0.001 show up to 8), thousands separators, and
  is right-aligned in tabular figures, so digits line up;
* a duration column is shown in one unit (µs, ms or s, from its largest value), named in
  the header, never `ms` and `µs` mixed in one column;
* times show as `2024-08-08 23:00:05.123` on one line (milliseconds only when a value has
  them), UTC;
* wide tables scroll sideways instead of being cut off, and null shows as `–`.

`frame_html(frame)` is what the notebooks and the live panels show; `format_value(v)`
formats one figure (key figures on the report's index page).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = [
    "format_value",
    "column_decimals",
    "format_number",
    "duration_unit",
    "frame_html",
    "format_time",
    "figures_html",
]

NULL = "–"
_MAX_DECIMALS = 8


def column_decimals(values: Sequence[Any]) -> int:
    """Decimals that show a column readably: about 6 significant digits of its largest value,
    at most 8, and no more than the values carry (integers stay integers)."""
    nums = [
        abs(Decimal(str(v))) if not isinstance(v, Decimal) else abs(v)
        for v in values
        if v is not None and not isinstance(v, bool) and (not isinstance(v, float) or math.isfinite(v))
    ]
    if not nums:
        return 0
    top = max(nums)
    carried = max(_places(n) for n in nums)
    if top == 0:
        return min(carried, 2)
    magnitude = top.adjusted()  # 61815.01 → 4, 0.0012 → -3
    want = max(0, 6 - magnitude)
    return max(0, min(want, carried, _MAX_DECIMALS))


def _places(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def format_number(value: Any, decimals: int | None = None) -> str:
    """A number with thousands separators and `decimals` places (None: from the value)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NULL
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if decimals is None:
        decimals = column_decimals([d])
    return f"{d:,.{decimals}f}"


def duration_unit(values: Sequence[timedelta | None]) -> tuple[str, float]:
    """One unit for a column of durations: (name, microseconds per unit)."""
    present = [abs(v) for v in values if v is not None]
    top = max(present, default=timedelta(0))
    if top >= timedelta(seconds=10):
        return "s", 1e6
    if top >= timedelta(microseconds=1000) or top == timedelta(0):
        return "ms", 1e3
    return "µs", 1.0


def _us(d: timedelta) -> int:
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def format_time(value: datetime, *, millis: bool = True) -> str:
    """A UTC time on one line: `YYYY-MM-DD HH:MM:SS` (+ `.mmm` with `millis`)."""
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    return text + (f".{value.microsecond // 1000:03d}" if millis else "")


def format_value(value: Any) -> str:
    """One key figure for people: numbers rounded (exact decimal strings too), lists and
    mappings as `a: 1 · b: 2`, durations with a unit, times on one line."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, Decimal)):
        return format_number(value)
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, str):
        try:
            d = Decimal(value)
        except ArithmeticError:
            return value
        return format_number(d) if d.is_finite() else value
    if isinstance(value, timedelta):
        unit, per = duration_unit([value])
        return f"{_us(value) / per:,.3g} {unit}"
    if isinstance(value, datetime):
        return format_time(value, millis=value.microsecond != 0) + " UTC"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return " · ".join(f"{k}: {format_value(v)}" for k, v in value.items()) or NULL
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"  # an empty list (e.g. no failed checks), never a blank cell
        return (
            " – ".join(format_value(v) for v in value)
            if len(value) == 2
            else ", ".join(format_value(v) for v in value)
        )
    return str(value)


def _columns(frame: Any) -> list[tuple[str, list[Any]]]:
    if hasattr(frame, "get_column"):  # polars
        return [(name, frame.get_column(name).to_list()) for name in frame.columns]
    return [(str(name), frame[name].tolist()) for name in frame.columns]  # pandas


def _height(frame: Any) -> int:
    return int(frame.height) if hasattr(frame, "height") else len(frame)


def frame_html(frame: Any, *, max_rows: int = 20, caption: str | None = None) -> str:
    """A DataFrame (polars or pandas) as a readable HTML table (see the module doc); at most
    `max_rows` rows (head and tail with an ellipsis row between)."""
    cols = _columns(frame)
    n = _height(frame)
    if n > max_rows:
        head = max_rows // 2
        keep = list(range(head)) + list(range(n - (max_rows - head), n))
    else:
        keep = list(range(n))
    heads: list[str] = []
    cells: list[list[tuple[str, bool]]] = [[] for _ in keep]
    for name, values in cols:
        present = [v for v in values if v is not None]
        label = name
        if present and all(isinstance(v, timedelta) for v in present):
            unit, per = duration_unit(values)
            label = f"{name} ({unit})"
            dec = 3 if unit != "µs" else 0
            texts = [NULL if values[i] is None else f"{_us(values[i]) / per:,.{dec}f}" for i in keep]
            right = True
        elif present and all(isinstance(v, datetime) for v in present):
            millis = any(v.microsecond for v in present)
            texts = [NULL if values[i] is None else format_time(values[i], millis=millis) for i in keep]
            right = False
        elif present and all(
            isinstance(v, (int, Decimal, float)) and not isinstance(v, bool) for v in present
        ):
            dec = column_decimals(present) if not all(isinstance(v, int) for v in present) else 0
            texts = [format_number(values[i], dec) for i in keep]
            right = True
        else:
            texts = [NULL if values[i] is None else format_value(values[i]) for i in keep]
            right = False
        heads.append(
            f'<th style="text-align:{"right" if right else "left"};white-space:nowrap">'
            f"{html.escape(label)}</th>"
        )
        for row, text in zip(cells, texts):
            row.append((text, right))
    body = []
    for j, row in enumerate(cells):
        if n > max_rows and j == max_rows // 2:
            body.append(
                f'<tr><td colspan="{len(cols)}" style="text-align:center">'
                f"… {n - max_rows:,} more rows …</td></tr>"
            )
        tds = "".join(
            f'<td style="text-align:{"right" if r else "left"};white-space:nowrap">{html.escape(t)}</td>'
            for t, r in row
        )
        body.append(f"<tr>{tds}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{max(1, len(cols))}" style="opacity:.7">no rows</td></tr>')
    cap = f'<caption style="text-align:left;opacity:.75">{html.escape(caption)}</caption>' if caption else ""
    shape = (
        f'<div style="font-size:11px;opacity:.65">{n:,} rows × {len(cols)} columns</div>'
        if n > max_rows
        else ""
    )
    return (
        '<div class="cryptolab-table" style="overflow-x:auto;max-width:100%">'
        '<table style="border-collapse:collapse;font-size:12px;font-variant-numeric:tabular-nums;'
        'white-space:nowrap">'
        f"{cap}<thead><tr>{''.join(heads)}</tr></thead><tbody>{''.join(body)}</tbody></table>{shape}</div>"
        "<style>.cryptolab-table td,.cryptolab-table th{padding:2px 10px;"
        "border-bottom:1px solid var(--jp-border-color2,#e5e7eb)}</style>"
    )


def figures_html(figures: Mapping[str, Any]) -> str:
    """Key figures as a two-column HTML table, values rounded for people (see `format_value`)."""
    rows = "".join(
        f'<tr><td style="padding:2px 14px 2px 0;opacity:.8">{html.escape(str(k))}</td>'
        f'<td style="text-align:right;padding:2px 0;font-variant-numeric:tabular-nums;white-space:nowrap">'
        f"{html.escape(format_value(v))}</td></tr>"
        for k, v in figures.items()
    )
    return f'<table class="cryptolab-figures" style="border-collapse:collapse;font-size:13px">{rows}</table>'
