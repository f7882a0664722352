"""The archive's book files: one Parquet file per (table, exchange, symbol, UTC day) of order-book data.

    <root>/book_diffs/exchange=binance/symbol=BTCUSDT/date=2024-08-08/book_diffs-BTCUSDT-2024-08-08.parquet
    <root>/quotes/…   <root>/book_snapshots/…   <root>/book_gaps/…

The four book tables keep their columns (exchange, symbol and date in the path, as for trades).
A row's day is the table's partition key: `event_time` for diffs, `received_at` for quotes and
snapshots, `detected_at` for gaps.

**Prices and quantities are strings**: each value exactly as PostgreSQL prints its `numeric`
(`61837.63000000`, scale included), level arrays as `list<string>`. Why not `decimal(38,18)`: a
numeric keeps how many decimals it was written with, and the text keeps it too, so what comes back
is the very value stored — no scale to choose, no value to refuse, and a row's text is the same on
both sides, which is what the content checksum below compares. Guaranteed: exact, every digit,
whatever PostgreSQL holds. Engines that compute cast (`CAST(x AS DECIMAL(38,18))` is exact for
every value cryptolab's decoders accept: at most 15 digits before the point and 18 after); the
readers here give `Decimal`s.

**What proves a file equal to the database** (before any drop, and on every read): its row count,
its first and last update id, and a content checksum — Σ over rows of the first 60 bits of the MD5
of the row's text (its columns joined by `|`, times in epoch µs, arrays as `{a,b}`), computed by
PostgreSQL over the stored rows and here over the file's. Any changed value, row or level changes it.
The file's size and SHA-256 are recorded at publish like a trade day's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from ...errors import DatabaseError, first_line
from .errors import ArchiveError
from .verify import day_bounds

__all__ = [
    "BookKind",
    "KINDS",
    "BOOK_FORMAT",
    "BookStats",
    "BookRecord",
    "book_path",
    "parse_book_path",
    "book_schema",
    "table_book_stats",
    "file_book_stats",
    "db_book_stats",
    "book_differences",
    "check_book_file",
    "checked_book_stats",
    "write_book_day",
    "book_contract_json",
]

BOOK_FORMAT = 1
"""The book files' contract version."""

_TS = "timestamp[us, tz=UTC]"
_LIST = "list<string>"


@dataclass(frozen=True)
class BookKind:
    """One book table as archived: its columns (name, Arrow type, Spark type, nullable), day key and id."""

    table: str
    day_column: str
    id_column: str
    columns: tuple[tuple[str, str, str, bool], ...]
    order: tuple[str, ...]
    droppable: bool = True

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.columns]

    def select(self) -> str:
        """The day's rows as text where numeric (exact), for ADBC: exchange, symbol and the day's bounds
        go in as literals (`{}`), so the driver streams the result (COPY) in batches instead of holding
        the whole day (it does when given bind parameters)."""
        cols = []
        for name, arrow, _spark, _null in self.columns:
            if name in _NUMERIC[self.table]:
                cols.append(f"{name}::text{'[]' if arrow == _LIST else ''} AS {name}")
            else:
                cols.append(name)
        return (
            f"SELECT {', '.join(cols)} FROM {self.table} WHERE exchange = {{}} AND symbol = {{}} "
            f"AND {self.day_column} >= {{}} AND {self.day_column} < {{}} ORDER BY {', '.join(self.order)}"
        )

    def row_text_sql(self) -> str:
        """The row's canonical text in SQL (see the module doc)."""
        parts = []
        for name, arrow, _spark, _null in self.columns:
            if arrow == _TS:
                expr = f"((extract(epoch FROM {name}) * 1000000)::bigint)::text"
            else:
                expr = f"{name}::text"
            parts.append(f"coalesce({expr}, '')")
        return " || '|' || ".join(parts)


_NUMERIC = {
    "book_diffs": {"bid_price", "bid_qty", "ask_price", "ask_qty"},
    "book_snapshots": {"bid_price", "bid_qty", "ask_price", "ask_qty"},
    "quotes": {"bid_price", "bid_qty", "ask_price", "ask_qty"},
    "book_gaps": set(),
}

_LEVELS = (
    ("bid_price", _LIST, "array<string>", False),
    ("bid_qty", _LIST, "array<string>", False),
    ("ask_price", _LIST, "array<string>", False),
    ("ask_qty", _LIST, "array<string>", False),
)
KINDS: dict[str, BookKind] = {
    "book_diffs": BookKind(
        "book_diffs",
        "event_time",
        "last_update_id",
        (
            ("first_update_id", "int64", "bigint", False),
            ("last_update_id", "int64", "bigint", False),
            ("prev_update_id", "int64", "bigint", True),
            ("event_time", _TS, "timestamp", False),
            ("received_at", _TS, "timestamp", True),
            *_LEVELS,
            ("source", "string", "string", False),
        ),
        ("last_update_id", "event_time"),
    ),
    "quotes": BookKind(
        "quotes",
        "received_at",
        "update_id",
        (
            ("update_id", "int64", "bigint", False),
            ("received_at", _TS, "timestamp", False),
            ("event_time", _TS, "timestamp", True),
            ("bid_price", "string", "string", False),
            ("bid_qty", "string", "string", False),
            ("ask_price", "string", "string", False),
            ("ask_qty", "string", "string", False),
            ("source", "string", "string", False),
        ),
        ("update_id", "received_at"),
    ),
    "book_snapshots": BookKind(
        "book_snapshots",
        "received_at",
        "last_update_id",
        (
            ("last_update_id", "int64", "bigint", False),
            ("received_at", _TS, "timestamp", False),
            ("event_time", _TS, "timestamp", True),
            *_LEVELS,
            ("source", "string", "string", False),
        ),
        ("last_update_id",),
    ),
    "book_gaps": BookKind(
        "book_gaps",
        "detected_at",
        "after_update_id",
        (
            ("reason", "string", "string", False),
            ("after_update_id", "int64", "bigint", False),
            ("before_update_id", "int64", "bigint", True),
            ("detected_at", _TS, "timestamp", False),
            ("snapshot_update_id", "int64", "bigint", True),
            ("healed_at", _TS, "timestamp", True),
        ),
        ("after_update_id", "reason"),
        droppable=False,
    ),
}
"""The archived book tables. Gaps are copied to the archive but never dropped: they are small, and
`book_gaps` is where a loss stays visible (like `capture_gaps`)."""


def book_contract_json(kind: str) -> dict[str, Any]:
    k = KINDS[kind]
    return {
        "schema_version": BOOK_FORMAT,
        "path": kind,
        "partitioning": ["exchange", "symbol", "date"],
        "format": "parquet",
        "day_column": k.day_column,
        "columns": [{"name": n, "arrow": a, "spark": s, "nullable": nl} for n, a, s, nl in k.columns],
    }


def book_path(kind: str, exchange: str, symbol: str, day: date) -> str:
    d = day.isoformat()
    return f"{kind}/exchange={exchange}/symbol={symbol}/date={d}/{kind}-{symbol}-{d}.parquet"


def parse_book_path(rel: str) -> tuple[str, str, str, date] | None:
    """(kind, exchange, symbol, day) of a published book day file, or None."""
    parts = rel.split("/")
    if len(parts) != 5 or parts[0] not in KINDS or not parts[4].endswith(".parquet"):
        return None
    try:
        keys = dict(p.split("=", 1) for p in parts[1:4])
        day = date.fromisoformat(keys["date"])
        exchange, symbol = keys["exchange"], keys["symbol"]
    except (ValueError, KeyError):
        return None
    return (parts[0], exchange, symbol, day) if rel == book_path(parts[0], exchange, symbol, day) else None


def book_schema(kind: str) -> Any:
    import pyarrow as pa

    types = {
        "int64": pa.int64(),
        _TS: pa.timestamp("us", tz="UTC"),
        "string": pa.string(),
        _LIST: pa.list_(pa.string()),
    }
    return pa.schema([pa.field(n, types[a], nullable=nl) for n, a, _s, nl in KINDS[kind].columns])


@dataclass(frozen=True)
class BookStats:
    """What one book day holds: rows, first/last id, and the content checksum (module doc)."""

    rows: int
    first_id: int | None
    last_id: int | None
    checksum: Decimal


@dataclass(frozen=True)
class BookRecord:
    """One published book day, as `archive_book_days` recorded it."""

    kind: str
    exchange: str
    symbol: str
    day: date
    location: str
    path: str
    rows: int
    first_id: int | None
    last_id: int | None
    checksum: Decimal
    bytes: int
    sha256: str
    format: int
    dropped: bool = False

    @property
    def stats(self) -> BookStats:
        return BookStats(self.rows, self.first_id, self.last_id, self.checksum)

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.kind,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "date": self.day.isoformat(),
            "path": self.path,
            "rows": self.rows,
            "first_update_id": self.first_id,
            "last_update_id": self.last_id,
            "checksum": str(self.checksum),
            "bytes": self.bytes,
            "sha256": self.sha256,
            "schema_version": self.format,
        }


def _row_texts(table: Any, kind: str) -> list[str]:
    """Each row's canonical text (the same as `BookKind.row_text_sql` gives in PostgreSQL)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for name, arrow, _s, _n in KINDS[kind].columns:
        col = table.column(name)
        if arrow == _LIST:
            col = pc.binary_join_element_wise("{", pc.binary_join(col, ","), "}", "")
        elif arrow == _TS:
            col = pc.cast(pc.cast(col, pa.int64()), pa.string())
        elif arrow == "int64":
            col = pc.cast(col, pa.string())
        parts.append(pc.fill_null(col, ""))
    if not parts or table.num_rows == 0:
        return []
    joined = pc.binary_join_element_wise(*parts, "|")
    return [str(s) for s in joined.to_pylist()]


def _checksum(texts: list[str]) -> Decimal:
    md5 = hashlib.md5
    return Decimal(sum(int(md5(t.encode(), usedforsecurity=False).hexdigest()[:15], 16) for t in texts))


def table_book_stats(table: Any, kind: str) -> BookStats:
    """BookStats of a book day's Arrow table or record batch (all the kind's columns)."""
    import pyarrow.compute as pc

    n = table.num_rows
    if n == 0:
        return BookStats(0, None, None, Decimal(0))
    mm = pc.min_max(table.column(KINDS[kind].id_column))
    return BookStats(n, int(mm["min"].as_py()), int(mm["max"].as_py()), _checksum(_row_texts(table, kind)))


def _plus(a: BookStats, b: BookStats) -> BookStats:
    if not b.rows:
        return a
    if not a.rows:
        return b
    assert (
        a.first_id is not None and a.last_id is not None and b.first_id is not None and b.last_id is not None
    )
    return BookStats(
        a.rows + b.rows, min(a.first_id, b.first_id), max(a.last_id, b.last_id), a.checksum + b.checksum
    )


_EMPTY = BookStats(0, None, None, Decimal(0))
_BATCH_ROWS = 65_536
"""Rows per batch while a day is written or checked: a BTCUSDT day (~40M level updates) never
has to be in memory whole."""


def file_book_stats(data: bytes, kind: str, where: str) -> BookStats:
    """BookStats of a book file, read batch by batch (page CRCs checked); ArchiveError naming `where`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stats = _EMPTY
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=KINDS[kind].names):
            stats = _plus(stats, table_book_stats(batch, kind))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, KeyError) as exc:
        raise ArchiveError(
            f"{where} cannot be read as Parquet ({' '.join(str(exc).split())}): it is damaged or partial"
        ) from None
    return stats


def db_book_stats(conn: psycopg.Connection, kind: str, exchange: str, symbol: str, day: date) -> BookStats:
    """BookStats of the day's rows in the database (one aggregate)."""
    k = KINDS[kind]
    t0, t1 = day_bounds(day)
    query = (
        f"SELECT count(*), min({k.id_column}), max({k.id_column}), "
        f"coalesce(sum(('x' || substr(md5({k.row_text_sql()}), 1, 15))::bit(60)::bigint), 0) "
        f"FROM {k.table} WHERE exchange = %s AND symbol = %s AND {k.day_column} >= %s AND {k.day_column} < %s"
    )
    try:
        row = conn.execute(query, (exchange, symbol, t0, t1)).fetchone()
    except psycopg.Error as exc:
        raise DatabaseError(
            f"could not read {kind} of {exchange} {symbol} {day} from the database: "
            f"{first_line(exc)}"
        ) from None
    assert row is not None
    return BookStats(int(row[0]), row[1], row[2], Decimal(row[3]))


def book_differences(archive: BookStats, database: BookStats) -> list[str]:
    """What differs between the archive's and the database's view of a book day (empty: identical)."""
    out = []
    for name, label in (
        ("rows", "row count"),
        ("first_id", "first update id"),
        ("last_id", "last update id"),
        ("checksum", "content checksum"),
    ):
        a, d = getattr(archive, name), getattr(database, name)
        if a != d:
            out.append(f"{label}: archive {a}, database {d}")
    return out


_FIX = (
    "restore the file from a copy, or rewrite it with `cryptolab archive --replace` while the day is "
    "still in the database; `cryptolab archive --verify` checks every file"
)


def _check_bytes(data: bytes, rec: BookRecord, where: str) -> None:
    """Size, SHA-256, page CRCs of the id column, row count and first/last id against the record."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from .manifest import sha256

    if len(data) != rec.bytes:
        raise ArchiveError(f"{where} is damaged: {len(data):,} bytes, {rec.bytes:,} were published; {_FIX}")
    got = sha256(data)
    if got != rec.sha256:
        raise ArchiveError(
            f"{where} is damaged: its SHA-256 is {got[:16]}…, {rec.sha256[:16]}… was recorded at "
            f"publish; {_FIX}"
        )
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        if pf.metadata.num_rows != rec.rows:
            raise ArchiveError(
                f"{where} is damaged: it holds {pf.metadata.num_rows:,} rows, {rec.rows:,} were "
                f"published; {_FIX}"
            )
        if rec.rows:
            mm = pc.min_max(pf.read(columns=[KINDS[rec.kind].id_column]).column(0))
            if (mm["min"].as_py(), mm["max"].as_py()) != (rec.first_id, rec.last_id):
                raise ArchiveError(
                    f"{where} is damaged: update ids {mm['min']}…{mm['max']}, {rec.first_id}…"
                    f"{rec.last_id} were published; {_FIX}"
                )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise ArchiveError(
            f"{where} is damaged: it cannot be read as Parquet ({' '.join(str(exc).split())}); {_FIX}"
        ) from None


def check_book_file(data: bytes, rec: BookRecord, where: str, filters: Any = None) -> Any:
    """Decode a book day's file after checking it against its record (size, SHA-256, page CRCs, rows,
    ids); ArchiveError naming `where` on any mismatch. Returns the table (rows passing `filters`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_bytes(data, rec, where)
    try:
        return pq.read_table(pa.BufferReader(data), filters=filters, page_checksum_verification=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise ArchiveError(
            f"{where} is damaged: it cannot be read as Parquet ({' '.join(str(exc).split())}); {_FIX}"
        ) from None


def checked_book_stats(data: bytes, rec: BookRecord, where: str) -> BookStats:
    """A book file checked against its record, then its content's BookStats (read batch by batch)."""
    _check_bytes(data, rec, where)
    try:
        return file_book_stats(data, rec.kind, where)
    except ArchiveError as exc:
        raise ArchiveError(f"{where} is damaged: {str(exc).replace(where, 'it')}; {_FIX}") from None


def write_book_day(
    conn: psycopg.Connection, kind: str, exchange: str, symbol: str, day: date
) -> tuple[bytes, BookStats]:
    """The day's rows of a book table as a Parquet file (zstd, statistics, a CRC per page; in id order),
    streamed from the database batch by batch, and the BookStats of what was written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0, t1 = day_bounds(day)
    schema = book_schema(kind).with_metadata(
        {
            "cryptolab.book_format": str(BOOK_FORMAT),
            "cryptolab.table": kind,
            "cryptolab.exchange": exchange,
            "cryptolab.symbol": symbol,
            "cryptolab.date": day.isoformat(),
        }
    )
    sink = pa.BufferOutputStream()
    stats = _EMPTY
    try:
        import adbc_driver_postgresql.dbapi as adbc
        from psycopg.conninfo import make_conninfo

        params = conn.info.get_parameters()
        if conn.info.password:
            params["password"] = conn.info.password
        with (
            adbc.connect(make_conninfo("", **params)) as ac,
            ac.cursor() as cur,
            pq.ParquetWriter(
                sink,
                schema,
                compression="zstd",
                compression_level=3,
                write_statistics=True,
                use_dictionary=["source", "reason"] if kind == "book_gaps" else ["source"],
                coerce_timestamps="us",
                store_schema=True,
                write_page_checksum=True,
            ) as writer,
        ):
            cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(16 << 20)})
            query = sql.SQL(KINDS[kind].select()).format(
                *(sql.Literal(v) for v in (exchange, symbol, t0, t1))
            )
            cur.execute(query.as_string(conn))
            pending: list[Any] = []
            rows = 0
            for batch in cur.fetch_record_batch():
                part = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
                stats = _plus(stats, table_book_stats(part, kind))
                pending.append(part)
                rows += part.num_rows
                if rows >= _ROW_GROUP:
                    writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP)
                    pending, rows = [], 0
            if pending or stats.rows == 0:
                writer.write_table(
                    pa.concat_tables(pending) if pending else schema.empty_table(), row_group_size=_ROW_GROUP
                )
    except (ArchiveError, DatabaseError):
        raise
    except Exception as exc:  # adbc errors
        first = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseError(
            f"could not read {kind} of {exchange} {symbol} {day} for the archive: {first}"
        ) from None
    return bytes(sink.getvalue().to_pybytes()), stats


_ROW_GROUP = 65_536
