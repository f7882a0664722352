"""Exact frames from query rows: NUMERIC → `pl.Decimal(38, s)` (s = the column's largest
scale; exact strings when a value does not fit), times → UTC datetimes. Never floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

__all__ = ["to_frame", "decimal_exprs", "decimal_series"]


# PostgreSQL type OIDs
_BOOL, _INT8, _INT2, _INT4, _TEXT, _FLOAT4, _FLOAT8 = 16, 20, 21, 23, 25, 700, 701


_TIMESTAMPTZ, _TIMESTAMP, _INTERVAL_OID, _NUMERIC, _DATE, _VARCHAR = 1184, 1114, 1186, 1700, 1082, 1043


def decimal_series(name: str, values: Sequence[str | None] | Any) -> Any:
    """Exact decimal strings → pl.Decimal(38, max scale); strings kept when 38 digits don't hold them."""
    import polars as pl

    s = values.rename(name) if isinstance(values, pl.Series) else pl.Series(name, values, dtype=pl.String)
    if s.len() == s.null_count():
        return pl.Series(name, [None] * s.len(), dtype=pl.Decimal(38, 0))
    length = s.str.len_bytes()
    dot = s.str.find(".", literal=True)
    scale = int((length - dot - 1).max() or 0)
    int_digits = int(dot.fill_null(length).max())  # type: ignore[arg-type]  # a '-' counts: errs on the safe side
    if int_digits + scale > 38:
        return s
    try:
        out = s.str.to_decimal(scale=scale)
    except pl.exceptions.ComputeError:
        return s  # NaN / Infinity
    return out if out.null_count() == s.null_count() else s


_TS_FORMAT = "%Y-%m-%d %H:%M:%S%.f%#z"


def _timestamps(name: str, values: Sequence[Any]) -> Any:
    """timestamptz values (ISO text from PostgreSQL, or datetimes) → pl.Datetime("us", "UTC")."""
    import polars as pl

    if values and any(isinstance(v, str) for v in values):
        s = pl.Series(name, values, dtype=pl.String)
        out = s.str.to_datetime(_TS_FORMAT, time_unit="us", time_zone="UTC", strict=False)
        if out.null_count() == s.null_count():
            return out
        values = [None if v is None else _parse_ts(v) for v in values]  # 'infinity', BC dates: rare
    return pl.Series(name, values, dtype=pl.Datetime("us", "UTC"))


def _parse_ts(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None  # 'infinity' has no datetime


def decimal_exprs(frame: Any, names: Sequence[str]) -> list[Any]:
    """Expressions turning the text NUMERIC columns `names` of `frame` into exact pl.Decimal(38, s).

    One vectorized pass finds each column's largest scale and integer digits; a column that
    would not fit 38 digits gets no expression (it stays exact text).
    """
    import polars as pl

    if not names:
        return []
    # per column: the longest text (digits + sign + point bound the precision) and the scale
    probe = frame.select(
        [pl.col(n).str.len_bytes().max().alias(f"l{i}") for i, n in enumerate(names)]
        + [(pl.col(n).str.len_bytes() - pl.col(n).str.find(".", literal=True) - 1).max().alias(f"s{i}")
           for i, n in enumerate(names)]
    ).row(0)
    k = len(names)
    out = []
    for i, n in enumerate(names):
        longest, scale = probe[i], probe[k + i]
        if longest is None:  # all null
            out.append(pl.col(n).cast(pl.Decimal(38, 0)))
            continue
        scale = max(int(scale or 0), 0)
        if longest > 38:  # maybe too many digits: look closer (integer digits + scale)
            ints = frame.select(pl.col(n).str.find(".", literal=True).fill_null(pl.col(n).str.len_bytes())
                                - pl.col(n).str.starts_with("-").cast(pl.Int64)).to_series().max()
            if int(ints or 0) + scale > 38:
                continue  # stays exact text
        out.append(pl.col(n).str.to_decimal(scale=scale))
    return out


def _simple_dtypes() -> dict[int, Any]:
    """Column OID → polars type, for the types read as they come (NUMERIC and text
    timestamptz are converted after, in one vectorized pass)."""
    import polars as pl

    return {_INT2: pl.Int64, _INT4: pl.Int64, _INT8: pl.Int64, _TIMESTAMPTZ: pl.Datetime("us", "UTC"),
            _TIMESTAMP: pl.Datetime("us"), _INTERVAL_OID: pl.Duration("us"), _BOOL: pl.Boolean,
            _FLOAT4: pl.Float64, _FLOAT8: pl.Float64, _TEXT: pl.String, _VARCHAR: pl.String, _DATE: pl.Date}


def to_frame(columns: Sequence[tuple[str, int]], rows: Sequence[Sequence[Any]], *, text: bool = True) -> Any:
    """Rows → a polars DataFrame typed from the column OIDs.

    With `text` (as `run` reads them), NUMERIC and timestamptz values are PostgreSQL's text
    (ISO); otherwise Decimal and datetime objects.

    The text columns are converted in two vectorized passes over the whole frame (one to
    find each NUMERIC column's scale, one to convert), not column by column.
    """
    import polars as pl

    data = list(zip(*rows)) if rows else [() for _ in columns]
    series = []
    numeric: list[str] = []
    stamps: list[str] = []
    simple = _simple_dtypes()
    for (name, oid), values in zip(columns, data):
        if oid == _NUMERIC:
            if not text:  # Decimal objects
                values = tuple(None if v is None else format(v, "f") for v in values)
            series.append(pl.Series(name, values, dtype=pl.String))
            numeric.append(name)
        elif oid == _TIMESTAMPTZ and text:
            series.append(pl.Series(name, values, dtype=pl.String))
            stamps.append(name)
        elif oid in simple:
            series.append(pl.Series(name, values, dtype=simple[oid]))
        else:
            series.append(pl.Series(name, values, strict=False))
    frame = pl.DataFrame(series)
    if not numeric and not stamps:
        return frame
    convert = decimal_exprs(frame, numeric)
    for n in stamps:
        convert.append(pl.col(n).str.to_datetime(_TS_FORMAT, time_unit="us", time_zone="UTC", strict=False))
    try:
        done = frame.with_columns(convert)
    except pl.exceptions.PolarsError:  # NaN / Infinity in a NUMERIC column: keep that one as text
        done = frame.with_columns([decimal_series(n, frame[n]) for n in numeric])
        done = done.with_columns([c for c in convert if c.meta.output_name() in stamps])
    fixes = []
    for n in numeric + stamps:
        if done[n].null_count() != frame[n].null_count():  # a value the fast path could not read
            fixes.append(decimal_series(n, frame[n]) if n in numeric else _timestamps(n, frame[n].to_list()))
    return done.with_columns(fixes) if fixes else done
