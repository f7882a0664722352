"""One (exchange, symbol, UTC day) of raw trades → one Parquet file, published only whole and checked.

`export_day` reads the day over ADBC (binary COPY; NUMERIC as exact text), sorts it by
trade id, casts it to the archive's contract (layout.CONTRACT: a value that does not fit is
refused, naming the day and the value — never rounded, never a file of another type), writes
zstd Parquet with page CRCs into a buffer, puts it under `.staging/`, reads that staged file
back and compares it with the database (row count, first/last id, Σqty, Σ(price·qty),
Σtrade_time, buyer-maker rows) and with the bytes written (SHA-256), and only then publishes
it to its final name and records it, checksum included, in `archive_days` (the manifest is
written from there at the end of the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from ..errors import DatabaseError, first_line
from ..storage.parquet.errors import ArchiveError
from ..storage.parquet.layout import (
    DECIMAL_TYPES,
    DECIMALS,
    FORMAT_VERSION,
    ROW_GROUP_ROWS,
    SCALE_COLUMNS,
    contract_schema,
    day_path,
)
from ..storage.parquet.manifest import file_format, sha256
from ..storage.parquet.read import decode
from ..storage.parquet.store import ArchiveStore
from ..storage.parquet.verify import DayStats, day_bounds, db_stats, differences, table_stats

__all__ = [
    "ExportResult",
    "export_day",
    "read_day",
    "conform",
    "misfit",
    "encode",
    "decode",
    "inspect",
    "record_day",
    "conninfo",
    "read_stats",
]


@dataclass(frozen=True)
class ExportResult:
    exchange: str
    symbol: str
    day: date
    path: str
    stats: DayStats
    bytes: int
    status: str


def conninfo(conn: psycopg.Connection) -> str:
    """A libpq connection string for the database `conn` is on (for ADBC's own connection)."""
    params = conn.info.get_parameters()
    if conn.info.password:
        params["password"] = conn.info.password
    return psycopg.conninfo.make_conninfo("", **params)


def _scales(col: Any) -> tuple[Any, Any]:
    """(each value's display scale, each value's number of integer digits) of decimal text, as
    int32 arrays."""
    import pyarrow.compute as pc

    length = pc.utf8_length(col)
    dot = pc.find_substring(col, ".")
    has = pc.greater_equal(dot, 0)
    each = pc.if_else(has, pc.subtract(pc.subtract(length, dot), 1), 0)
    ints = pc.if_else(has, dot, length)
    return each, ints


def misfit(name: str, values: Any) -> tuple[int, str] | None:
    """(row, value) of the first decimal text in `values` that the contract's type of `name` cannot
    hold exactly (more decimals than its scale, or more integer digits than its precision
    allows), else None."""
    import pyarrow.compute as pc

    if len(values) == 0:
        return None
    precision, scale = DECIMAL_TYPES[name]
    each, ints = _scales(values)
    bad = pc.or_(pc.greater(each, scale), pc.greater(ints, precision - scale))
    if not pc.any(bad).as_py():
        return None
    row = int(pc.index(bad, True).as_py())
    return row, str(values[row].as_py())


def conform(table: Any, exchange: str, symbol: str, day: date) -> Any:
    """The day's rows (decimals as exact text) cast to the contract's types; ArchiveError naming the
    day and the value when one does not fit (nothing is ever rounded; the day stays in the database)."""
    import pyarrow as pa

    schema = contract_schema()
    cols = {}
    for f in schema:
        col = table.column(f.name)
        if f.name in DECIMALS and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            bad = misfit(f.name, col)
            if bad is not None:
                row, value = bad
                precision, scale = DECIMAL_TYPES[f.name]
                tid = table.column("trade_id")[row].as_py()
                raise ArchiveError(
                    f"{exchange} {symbol} {day}: {f.name} {value} (trade {tid}) does not fit the archive's "
                    f"contract decimal({precision},{scale}) (at most {precision - scale} digits before the "
                    f"point and {scale} after): refused, nothing was written; the day stays in the database "
                    "(docs/archive.md, contract)"
                )
        try:
            col = col.cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # NaN, or a lost digit
            raise ArchiveError(
                f"{exchange} {symbol} {day}: {f.name} holds a value that the contract's "
                f"{f.type} cannot hold exactly ({' '.join(str(exc).split())}); the day stays in "
                "the database"
            ) from None
        cols[f.name] = col
    return pa.Table.from_arrays(list(cols.values()), schema=schema)


def read_day(conn: psycopg.Connection, exchange: str, symbol: str, day: date) -> Any:
    """The day's trades as an Arrow table in the archive's contract, sorted by trade id."""
    import pyarrow.compute as pc

    t0, t1 = day_bounds(day)
    query = (
        "SELECT trade_id, trade_time, price::text AS price, qty::text AS qty, quote_qty::text AS quote_qty, "
        "is_buyer_maker, event_time, received_at, ingested_at, source FROM trades "
        "WHERE exchange = $1 AND symbol = $2 AND trade_time >= $3 AND trade_time < $4"
    )
    try:
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(conninfo(conn)) as ac, ac.cursor() as cur:
            cur.execute(query, (exchange, symbol, t0, t1))
            raw = cur.fetch_arrow_table()
    except Exception as exc:  # adbc errors
        first = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseError(f"could not read {exchange} {symbol} {day} for the archive: {first}") from None
    raw = raw.take(pc.sort_indices(raw, sort_keys=[("trade_id", "ascending")]))
    for name, scale_col in SCALE_COLUMNS.items():
        col = raw.column(name).combine_chunks()
        each = _scales(col)[0] if len(col) else col.cast("int32")
        raw = raw.append_column(scale_col, pc.min_element_wise(each, 127).cast("int8"))
    table = conform(raw, exchange, symbol, day)
    meta = {
        "cryptolab.format": str(FORMAT_VERSION),
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
        table,
        sink,
        compression="zstd",
        compression_level=1,  # here as small as 3-6, and 2x faster
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=["source", "price", "is_buyer_maker", "price_scale", "qty_scale"],
        write_statistics=True,
        coerce_timestamps="us",
        store_schema=True,
        # price decimal(18,8) as INT64: smaller, and read natively by every engine
        store_decimal_as_integer=True,
        write_page_checksum=True,  # a CRC per page: a flipped byte in the data is caught where Parquet can
    )
    return bytes(sink.getvalue().to_pybytes())


STAT_COLUMNS = ["trade_id", "trade_time", "price", "qty", "quote_qty", "is_buyer_maker"]


def inspect(store: ArchiveStore, rel: str) -> tuple[DayStats, int, str, int]:
    """Read a published or staged file back: (its DayStats, its contract version, its SHA-256, its size)."""
    data = store.get(rel)
    table = decode(data, STAT_COLUMNS, store.uri(rel))
    try:
        stats = table_stats(table)
    except ArchiveError as exc:
        raise ArchiveError(f"{store.uri(rel)}: {exc}") from None
    return stats, file_format(table), sha256(data), len(data)


def read_stats(store: ArchiveStore, rel: str) -> DayStats:
    """Read a published or staged file back and compute its DayStats."""
    return inspect(store, rel)[0]


_RECORD = """
INSERT INTO archive_days AS a (exchange, symbol, day, location, path, rows, first_trade_id, last_trade_id,
                               sum_qty, sum_quote, bytes, sha256, format, exported_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())
ON CONFLICT (exchange, symbol, day) DO UPDATE
SET location = excluded.location, path = excluded.path, rows = excluded.rows,
    first_trade_id = excluded.first_trade_id, last_trade_id = excluded.last_trade_id,
    sum_qty = excluded.sum_qty, sum_quote = excluded.sum_quote, bytes = excluded.bytes,
    sha256 = excluded.sha256, format = excluded.format,
    exported_at = excluded.exported_at, verified_at = NULL
"""


def record_day(
    conn: psycopg.Connection,
    store: ArchiveStore,
    exchange: str,
    symbol: str,
    day: date,
    stats: DayStats,
    size: int,
    digest: str | None = None,
    fmt: int = FORMAT_VERSION,
) -> None:
    """Record a published day in archive_days (committed)."""
    try:
        with conn.transaction():
            conn.execute(
                _RECORD,
                (
                    exchange,
                    symbol,
                    day,
                    store.uri(),
                    day_path(exchange, symbol, day),
                    stats.rows,
                    stats.first_id,
                    stats.last_id,
                    stats.sum_qty,
                    stats.sum_quote,
                    size,
                    digest,
                    fmt,
                ),
            )
    except psycopg.Error as exc:
        raise DatabaseError(
            f"could not record {exchange} {symbol} {day} in archive_days: {first_line(exc)}"
        ) from None


def export_day(
    conn: psycopg.Connection,
    store: ArchiveStore,
    exchange: str,
    symbol: str,
    day: date,
    *,
    replace: bool = False,
) -> ExportResult:
    """Archive one day (see the module docstring); idempotent: a re-run finds it published and identical.

    A published file of an older contract version is rewritten from the database (status "upgraded"):
    one schema for the whole dataset."""
    final = day_path(exchange, symbol, day)
    want = db_stats(conn, exchange, symbol, day)
    status = "exported"
    if store.exists(final):
        try:
            have: tuple[DayStats, int, str, int] | None = inspect(store, final)
        except ArchiveError:
            have = None  # unreadable (damaged): rewritten below only with --replace
        if have is not None and not differences(have[0], want):
            if have[1] == FORMAT_VERSION:
                record_day(conn, store, exchange, symbol, day, have[0], have[3], have[2], have[1])
                return ExportResult(exchange, symbol, day, final, have[0], have[3], "present")
            status = "upgraded"  # same rows, older types: rewritten under the contract
        elif not replace:
            what = (
                "is unreadable"
                if have is None
                else "holds different content (" + "; ".join(differences(have[0], want)) + ")"
            )
            raise ArchiveError(
                f"{exchange} {symbol} {day} is already archived at {store.uri(final)} but the file "
                f"{what}: nothing was deleted; pass --replace to rewrite it from the database, "
                "or move the file away"
            )
        else:
            status = "replaced"
    table = read_day(conn, exchange, symbol, day)
    data = encode(table)
    staged = store.staging_name(final)
    store.put(staged, data)
    try:
        got, fmt, digest, size = inspect(store, staged)
        diff = differences(got, want)
        if diff:
            raise ArchiveError(
                f"{exchange} {symbol} {day}: the written file does not match the database "
                f"({'; '.join(diff)}) — rows arriving for a closed day? Nothing was published; re-run"
            )
        if digest != sha256(data):
            raise ArchiveError(
                f"{store.uri(staged)} was not stored as written (its SHA-256 differs): nothing was "
                "published; check the store and re-run"
            )
        store.publish(staged, final)
    finally:
        if store.exists(staged):
            store.delete(staged)
    record_day(conn, store, exchange, symbol, day, got, size, digest, fmt)
    return ExportResult(exchange, symbol, day, final, got, size, status)
