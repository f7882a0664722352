"""Running a named SQL module for an analysis: parameters bound, archived days attached,
and every database failure turned into one `DatabaseError` (no psycopg error escapes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import psycopg
from psycopg.types.string import TextLoader

from ..errors import DatabaseError, first_line
from ..storage import queries
from ..storage.parquet.session import attach_for
from . import scales
from .args import AGG_MODULE, AsType, Frame, as_frame, check_as
from .frames import _NUMERIC, to_frame

if TYPE_CHECKING:
    import polars as pl

__all__ = ["execute", "run"]


def _attach(conn: psycopg.Connection, values: Mapping[str, Any], query: queries.Query) -> None:
    """Days archived and dropped from the database (cryptolab archive) are read back into a
    session TEMP table `trades` for the range, so the SQL sees one history
    (cryptolab.storage.parquet.session)."""
    attach_for(conn, values, query.source)


def execute(
    conn: psycopg.Connection, module: str, name: str, values: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Run a named query and return its rows as Python values (Decimal for NUMERIC)."""
    query = queries.get(module, name)
    sql_, params = query.bind(values)
    _attach(conn, values, query)
    try:
        with conn.cursor(binary=True) as cur:  # binary: readable whatever the session's DateStyle
            cur.execute(sql_, params)
            return cur.fetchall()
    except psycopg.Error as exc:
        raise DatabaseError(f"analysis query {module}.{name} failed: {first_line(exc)}") from None


@overload
def run(conn: psycopg.Connection, module: str, name: str, values: Mapping[str, Any],
        as_: Literal["polars"] = ..., *, keep_scales: bool = ...) -> pl.DataFrame: ...


@overload
def run(conn: psycopg.Connection, module: str, name: str, values: Mapping[str, Any],
        as_: AsType, *, keep_scales: bool = ...) -> Frame: ...


def run(
    conn: psycopg.Connection,
    module: str,
    name: str,
    values: Mapping[str, Any],
    as_: AsType = "polars",
    *,
    keep_scales: bool = True,
) -> Frame:
    """Run a named query into an exact DataFrame (see the module docstring). With `keep_scales`,
    a NUMERIC column with only nulls or zeros gets the scale the market's data gives it (`scales`)."""
    check_as(as_)
    query = queries.get(module, name)
    sql_, params = query.bind(values)
    _attach(conn, values, query)
    try:
        iso = (conn.info.parameter_status("DateStyle") or "").startswith("ISO")
        with conn.cursor(binary=not iso) as cur:
            # NUMERIC and timestamps as text: exact, and parsed in bulk by polars (fast). A
            # session with another DateStyle gets binary rows (psycopg reads no other text form).
            cur.adapters.register_loader("numeric", TextLoader)
            cur.adapters.register_loader("timestamptz", TextLoader)
            cur.execute(sql_, params)
            desc = cur.description or []
            rows = cur.fetchall()
    except psycopg.Error as exc:
        raise DatabaseError(f"analysis query {module}.{name} failed: {first_line(exc)}") from None
    frame = to_frame([(d.name, d.type_code) for d in desc], rows, text=iso)
    if keep_scales:
        key = {k: values[k] for k in ("exchange", "symbol") if k in values}
        frame = scales.keep_scales(
            frame,
            [d.name for d in desc if d.type_code == _NUMERIC],
            values,
            lambda: execute(
                conn, AGG_MODULE if module == AGG_MODULE else "volume_stored", "stored_span", key
            )[0][1],
            lambda v: run(conn, module, name, v, keep_scales=False),
            f"{conn.info.host}:{conn.info.port}/{conn.info.dbname} {module}.{name}",
        )
    return as_frame(frame, as_)
