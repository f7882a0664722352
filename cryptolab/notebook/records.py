"""Key figures a notebook records for its report: a display output of our own MIME type,
read back from the executed notebook (JSON-safe: Decimals as exact strings).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["RECORD_MIME", "record", "read_records"]


RECORD_MIME = "application/vnd.cryptolab.record+json"


# ---------------------------------------------------------------------- records (glue)
def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")  # exact, as a decimal string
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def record(name: str, value: Any, *, quiet: bool = False) -> None:
    """Record a key figure of a notebook (Decimal kept exact as a string), read back by
    `read_records()`. Shown as `name = value` rounded for people (`quiet`: shown nowhere,
    e.g. when `record_all` shows the figures as one table)."""
    from IPython.display import display

    from ..analysis.display import format_value

    data = _jsonable(value)
    bundle: dict[str, Any] = {RECORD_MIME: {"name": name, "value": data}}
    bundle["text/plain"] = "" if quiet else f"{name} = {format_value(value)}"
    display(bundle, raw=True, metadata={RECORD_MIME: {"name": name}})  # type: ignore[no-untyped-call]


def read_records(notebook: str | Path | Any) -> dict[str, Any]:
    """Every `record()`ed figure of an executed notebook (path or nbformat node)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook  # type: ignore[no-untyped-call]
    out: dict[str, Any] = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            rec = o.get("data", {}).get(RECORD_MIME)
            if rec is not None:
                out[rec["name"]] = rec["value"]
    return out
