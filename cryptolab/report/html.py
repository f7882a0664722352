"""The report's HTML: each executed notebook as a page, thumbnails, and the index page.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import mask_secrets
from ..notebook.records import _jsonable
from .results import NotebookRun


def _thumbnail(executed: Path) -> Path | None:
    """The executed notebook's first chart, saved beside it as NAME.png (for the index)."""
    import base64

    import nbformat

    try:
        nb = nbformat.read(str(executed), as_version=4)  # type: ignore[no-untyped-call]
    except (OSError, ValueError):
        return None
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {}).get("image/png")
            if data:
                out = executed.with_suffix(".png")
                out.write_bytes(base64.b64decode(data if isinstance(data, str) else "".join(data)))
                return out
    return None


def _to_html(path: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(path), as_version=4)  # type: ignore[no-untyped-call]
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)  # type: ignore[no-untyped-call]
    out = path.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def _shown_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as they may be shown or stored: a DSN with its password masked."""
    return {
        k: (mask_secrets(str(v)) if k == "dsn" and v is not None else _jsonable(v))
        for k, v in parameters.items()
    }


def _index_html(
    runs: Sequence[NotebookRun],
    parameters: Mapping[str, Any],
    started: datetime,
    seconds: float,
    note: str = "",
) -> str:
    from ..analysis.display import format_value
    from ..notebook.plots import DOWN, UP

    def fig(v: Any) -> str:
        text = format_value(v)
        return html.escape(text if len(text) < 160 else text[:157] + "…")

    rows = []
    for r in runs:
        status = (
            '<span class="ok">ok</span>'
            if r.ok
            else f'<span class="bad">failed</span><br><small>{html.escape(r.error or "")}</small>'
        )
        links = " · ".join(
            x
            for x in (
                f'<a href="{html.escape(r.html.name)}">HTML</a>' if r.html else "",
                f'<a href="{html.escape(r.output.name)}">notebook</a>' if r.output.exists() else "",
            )
            if x
        )
        thumb = ""
        if r.thumbnail is not None:
            target = html.escape(r.html.name if r.html else r.thumbnail.name)
            thumb = (
                f'<a href="{target}"><img class="thumb" src="{html.escape(r.thumbnail.name)}" '
                f'alt="{html.escape(r.name)}"></a>'
            )
        figs = "".join(
            f'<tr><td>{html.escape(k)}</td><td class="num">{fig(v)}</td></tr>' for k, v in r.records.items()
        )
        rows.append(
            f"<tr><td><b>{html.escape(r.name)}</b><br>{links}</td><td>{thumb}</td><td>{status}</td>"
            f'<td class="num">{r.seconds:.1f} s</td><td><table class="figs">{figs}</table></td></tr>'
        )
    shown = _shown_parameters(parameters)
    params = (
        ", ".join(f"{html.escape(k)}={html.escape(json.dumps(v))}" for k, v in shown.items()) or "defaults"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cryptolab report {started:%Y-%m-%d %H:%M} UTC</title>
<style>
:root{{color-scheme:light dark}}
body{{font-family:system-ui,sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #8884;padding:6px 10px;text-align:left;vertical-align:top}}
table.figs td{{border:none;padding:1px 10px 1px 0;font-size:13px}}
.num{{text-align:right;font-variant-numeric:tabular-nums}}
table.figs td.num{{max-width:34em}}
img.thumb{{width:260px;border:1px solid #8884;border-radius:4px;background:#fff}}
.ok{{color:{UP}}} .bad{{color:{DOWN}}}
</style></head><body>
<h1>cryptolab report</h1>
<p>Generated {started:%Y-%m-%d %H:%M:%S} UTC in {seconds:.1f} s · parameters: {params} ·
{sum(r.ok for r in runs)}/{len(runs)} notebooks ok{(" · " + html.escape(note)) if note else ""}</p>
<table><tr><th>notebook</th><th>chart</th><th>status</th><th>time</th><th>key figures</th></tr>
{"".join(rows)}
</table></body></html>
"""
