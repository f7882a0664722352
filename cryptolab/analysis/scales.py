"""Decimal scales that do not depend on the range: an empty range gives the frame a full one gives.

A NUMERIC column becomes `pl.Decimal(38, s)`, s being the largest scale among its values
(`common.to_frame`). A column holding no value that tells the scale — all null, or only the
zeros that fill empty buckets — would get s = 0, where the same query over a range with trades
gives 8 (Binance's prices and quantities), 16 (price × qty) or 20 (VWAP): frames of different
ranges would need a cast to concatenate. `keep_scales` gives such columns the scale the same
query has over the market's last stored minute (one more small query, run only then, and
remembered per query, market and last stored second: a live panel refreshing an empty range
asks once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

__all__ = ["uninformative", "reference_values", "keep_scales"]

_REFERENCE = timedelta(minutes=1)
_CACHE_SIZE = 512
_cache: dict[tuple[Any, ...], dict[str, int]] = {}


def uninformative(frame: Any, numeric: Sequence[str]) -> list[str]:
    """The NUMERIC columns of `frame` (pure) whose values say nothing about their scale:
    pl.Decimal with scale 0 holding only nulls and zeros."""
    import polars as pl

    out = []
    for n in numeric:
        dtype = frame.schema[n]
        if not isinstance(dtype, pl.Decimal) or dtype.scale != 0:
            continue
        s = frame[n]
        if s.null_count() == s.len() or bool((s.drop_nulls() == 0).all()):
            out.append(n)
    return out


def reference_values(values: Mapping[str, Any], last_second: datetime | None) -> dict[str, Any] | None:
    """The query's variables over the market's last stored minute (pure), or None when there is
    no such minute or the range is that minute already."""
    if (
        last_second is None
        or not isinstance(values.get("start"), datetime)
        or not isinstance(values.get("end"), datetime)
    ):
        return None
    start, end = last_second + timedelta(seconds=1) - _REFERENCE, last_second + timedelta(seconds=1)
    if (values["start"], values["end"]) == (start, end):
        return None
    return {**values, "start": start, "end": end}


def keep_scales(
    frame: Any,
    numeric: Sequence[str],
    values: Mapping[str, Any],
    last_second: Callable[[], datetime | None],
    reference: Callable[[Mapping[str, Any]], Any],
    query: str = "",
) -> Any:
    """`frame` with its uninformative NUMERIC columns cast to the scale `reference` (the same
    query, named `query`, over the last stored minute: a polars frame) gives them; unchanged
    when none is."""
    import polars as pl

    cols = uninformative(frame, numeric)
    if not cols or "exchange" not in values or "symbol" not in values:
        return frame
    last = last_second()
    key = (query, values["exchange"], values["symbol"], last)
    scales = _cache.get(key)
    if scales is None:
        ref_values = reference_values(values, last)
        if ref_values is None:
            return frame
        ref = reference(ref_values)
        scales = {n: t.scale for n, t in ref.schema.items() if isinstance(t, pl.Decimal) and t.scale}
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[key] = scales
    casts = [pl.col(n).cast(pl.Decimal(38, scales[n])) for n in cols if n in scales]
    return frame.with_columns(casts) if casts else frame
