"""One (exchange, symbol, UTC day) of raw trades → one Parquet file, published only whole and checked.

`export_day` reads the day over ADBC (binary COPY; NUMERIC as exact text), sorts it by
trade id, turns the decimals into decimal128 with a scale that holds every value (checked:
pyarrow refuses a cast that would lose a digit), writes zstd Parquet into a buffer, puts it
under `.staging/`, reads that staged file back and compares it with the database (row count,
first/last id, Σqty, Σ(price·qty), Σtrade_time, buyer-maker rows), and only then publishes it
to its final name and records it in `archive_days`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from ..errors import DatabaseError
from ..storage.parquet.errors import ArchiveError
from ..storage.parquet.layout import DECIMALS, DEFAULT_SCALE, FORMAT_VERSION, ROW_GROUP_ROWS, SCALE_COLUMNS, TIMES, day_path
from ..storage.parquet.store import Store
from ..storage.parquet.verify import DayStats, day_bounds, db_stats, differences, table_stats

__all__ = ["ExportResult", "export_day", "read_day", "encode", "decode", "record_day", "conninfo"]


@dataclass(frozen=True)
class ExportResult:
    exchange: str
    symbol: str
    day: date
    path: str
    stats: DayStats
    bytes: int
    status: str  # "exported", "replaced", "present" (already archived, identical)


def conninfo(conn: psycopg.Connection) -> str:
    """A libpq connection string for the database `conn` is on (for ADBC's own connection)."""
    params = conn.info.get_parameters()
    if conn.info.password:
        params["password"] = conn.info.password
    return psycopg.conninfo.make_conninfo("", **params)


def _scales(col: Any) -> tuple[Any, int, int]:
    """(each value's display scale as int8, the largest, the most integer characters) of decimal text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(col) == 0:
        return pa.array([], pa.int8()), 0, 0
    length = pc.utf8_length(col)
    dot = pc.find_substring(col, ".")
    has = pc.greater_equal(dot, 0)
    each = pc.if_else(has, pc.subtract(pc.subtract(length, dot), 1), 0)
    ints = pc.max(pc.if_else(has, dot, length)).as_py()
    return each, int(pc.max(each).as_py() or 0), int(ints or 0)


def read_day(conn: psycopg.Connection, exchange: str, symbol: str, day: date) -> Any:
    """The day's trades as an Arrow table in the archive's format, sorted by trade id."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t0, t1 = day_bounds(day)
    query = ("SELECT trade_id, trade_time, price::text AS price, qty::text AS qty, quote_qty::text AS quote_qty, "
             "is_buyer_maker, event_time, received_at, ingested_at, source FROM trades "
             "WHERE exchange = $1 AND symbol = $2 AND trade_time >= $3 AND trade_time < $4")
    try:
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(conninfo(conn)) as ac, ac.cursor() as cur:
            cur.execute(query, (exchange, symbol, t0, t1))
            raw = cur.fetch_arrow_table()
    except Exception as exc:  # adbc errors
        first = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseError(f"could not read {exchange} {symbol} {day} for the archive: {first}") from None
    raw = raw.take(pc.sort_indices(raw, sort_keys=[("trade_id", "ascending")]))
    row_scales: dict[str, Any] = {}
    cols: dict[str, Any] = {"trade_id": raw.column("trade_id").cast(pa.int64())}
    for name in ("trade_time", "price", "qty", "quote_qty", "is_buyer_maker",
                 "event_time", "received_at", "ingested_at", "source"):
        col = raw.column(name)
        if name in DECIMALS:
            each, scale, ints = _scales(col)
            if name in SCALE_COLUMNS:
                if scale > 127:
                    raise ArchiveError(f"{exchange} {symbol} {day}: a {name} value has {scale} decimals: "
                                       "it cannot be archived exactly; the day stays in the database")
                row_scales[SCALE_COLUMNS[name]] = each.cast(pa.int8())
            target = max(scale, DEFAULT_SCALE[name])
            if ints + target > 38:
                raise ArchiveError(f"{exchange} {symbol} {day}: a {name} value needs more than 38 digits "
                                   f"({ints} before the point, {target} after): it cannot be archived exactly "
                                   "as decimal128; the day stays in the database")
            try:
                col = col.cast(pa.decimal128(38, target))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # NaN, or a lost digit
                raise ArchiveError(f"{exchange} {symbol} {day}: {name} holds a value that is not an exact "
                                   f"decimal ({exc}); the day stays in the database") from None
        elif name in TIMES:
            col = col.cast(pa.timestamp("us", tz="UTC"))
        elif name == "source":
            col = col.cast(pa.string())
        cols[name] = col
    table = pa.table({**cols, **row_scales})
    meta = {
        "cryptolab.format": FORMAT_VERSION,
        "cryptolab.exchange": exchange,
        "cryptolab.symbol": symbol,
        "cryptolab.date": day.isoformat(),
    }
    return table.replace_schema_metadata(meta)


def encode(table: Any) -> bytes:
    """The table as zstd Parquet (statistics on; dictionary for source; row groups of ~1M rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink,
        compression="zstd", compression_level=1,  # here as small as 3-6, and 2x faster
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=["source", "price", "is_buyer_maker", "price_scale", "qty_scale"],
        write_statistics=True,
        coerce_timestamps="us",
        store_schema=True,
    )
    return bytes(sink.getvalue().to_pybytes())


def decode(data: bytes, columns: list[str] | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(data), columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ArchiveError(f"the archived file cannot be read as Parquet ({' '.join(str(exc).split())}): "
                           "it is damaged or partial") from None


def read_stats(store: Store, rel: str) -> DayStats:
    """Read a published or staged file back and compute its DayStats."""
    return table_stats(decode(store.get(rel), ["trade_id", "trade_time", "price", "qty", "quote_qty",
                                                "is_buyer_maker"]))


_RECORD = """
INSERT INTO archive_days AS a (exchange, symbol, day, location, path, rows, first_trade_id, last_trade_id,
                               sum_qty, sum_quote, bytes, exported_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())
ON CONFLICT (exchange, symbol, day) DO UPDATE
SET location = excluded.location, path = excluded.path, rows = excluded.rows,
    first_trade_id = excluded.first_trade_id, last_trade_id = excluded.last_trade_id,
    sum_qty = excluded.sum_qty, sum_quote = excluded.sum_quote, bytes = excluded.bytes,
    exported_at = excluded.exported_at, verified_at = NULL
"""


def record_day(conn: psycopg.Connection, store: Store, exchange: str, symbol: str, day: date,
               stats: DayStats, size: int) -> None:
    """Record a published day in archive_days (committed)."""
    try:
        with conn.transaction():
            conn.execute(_RECORD, (exchange, symbol, day, store.uri(), day_path(exchange, symbol, day),
                                   stats.rows, stats.first_id, stats.last_id, stats.sum_qty, stats.sum_quote, size))
    except psycopg.Error as exc:
        raise DatabaseError(f"could not record {exchange} {symbol} {day} in archive_days: "
                            f"{str(exc).strip().splitlines()[0]}") from None


def export_day(conn: psycopg.Connection, store: Store, exchange: str, symbol: str, day: date,
               *, replace: bool = False) -> ExportResult:
    """Archive one day (see the module docstring); idempotent: a re-run finds it published and identical."""
    final = day_path(exchange, symbol, day)
    want = db_stats(conn, exchange, symbol, day)
    status = "exported"
    if store.exists(final):
        try:
            have: DayStats | None = read_stats(store, final)
        except ArchiveError:
            have = None  # unreadable (damaged): rewritten below only with --replace
        if have is not None and not differences(have, want):
            size = store.size(final)
            record_day(conn, store, exchange, symbol, day, have, size)
            return ExportResult(exchange, symbol, day, final, have, size, "present")
        if not replace:
            what = "is unreadable" if have is None else "holds different content (" + "; ".join(differences(have, want)) + ")"
            raise ArchiveError(f"{exchange} {symbol} {day} is already archived at {store.uri(final)} but the file "
                               f"{what}: nothing was deleted; pass --replace to rewrite it from the database, "
                               "or move the file away")
        status = "replaced"
    table = read_day(conn, exchange, symbol, day)
    data = encode(table)
    staged = store.staging_name(final)
    store.put(staged, data)
    try:
        got = read_stats(store, staged)
        diff = differences(got, want)
        if diff:
            raise ArchiveError(f"{exchange} {symbol} {day}: the written file does not match the database "
                               f"({'; '.join(diff)}) — rows arriving for a closed day? Nothing was published; re-run")
        store.publish(staged, final)
    finally:
        if store.exists(staged):
            store.delete(staged)
    record_day(conn, store, exchange, symbol, day, got, len(data))
    return ExportResult(exchange, symbol, day, final, got, len(data), status)
