"""What the archive holds, recorded at publish: per day its file, rows, ids, exact sums and SHA-256.

One record serves two readers. PostgreSQL's `archive_days` is cryptolab's own bookkeeping; the
manifest (`<root>/manifest.json`, written last and atomically after the data of a run) is the
same record for anyone holding only the bucket — a Spark job, DuckDB, a colleague. A day listed
in the manifest is whole and was read back and matched the database before it was published;
a file under `trades/` that the manifest does not list is not (yet) part of the dataset.

`check_file` compares a file's bytes with its record (size, SHA-256, then Parquet's page CRCs,
row count and first/last id while decoding) and names the file in every error: a flipped byte
or a shorter file is never read as data.

Pure functions here (no I/O but the `ArchiveStore` calls of `write_manifest` / `read_manifest`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from .errors import ArchiveError
from .layout import CONTRACT, FORMAT_VERSION, MANIFEST
from .store import DATASET, ArchiveStore

__all__ = ["DayRecord", "sha256", "check_file", "build_manifest", "parse_manifest", "write_manifest",
           "read_manifest", "file_format", "MANIFEST_KIND"]

MANIFEST_KIND = "cryptolab-archive-manifest"


@dataclass(frozen=True)
class DayRecord:
    """One published day: where its file is and what it held when it was verified and published."""

    exchange: str
    symbol: str
    day: date
    path: str
    rows: int
    first_id: int | None
    last_id: int | None
    sum_qty: Decimal
    sum_quote: Decimal
    bytes: int
    sha256: str | None  # None: published before checksums were recorded
    format: int  # the contract version of the file
    verified_at: str | None = None

    @property
    def key(self) -> tuple[str, str, date]:
        return (self.exchange, self.symbol, self.day)

    def as_json(self) -> dict[str, Any]:
        return {
            "table": DATASET,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "date": self.day.isoformat(),
            "path": self.path,
            "rows": self.rows,
            "first_trade_id": self.first_id,
            "last_trade_id": self.last_id,
            "sum_qty": str(self.sum_qty),
            "sum_quote_qty": str(self.sum_quote),
            "bytes": self.bytes,
            "sha256": self.sha256,
            "schema_version": self.format,
            "verified_at": self.verified_at,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DayRecord:
        return cls(
            str(d["exchange"]),
            str(d["symbol"]),
            date.fromisoformat(str(d["date"])),
            str(d["path"]),
            int(d["rows"]),
            None if d.get("first_trade_id") is None else int(d["first_trade_id"]),
            None if d.get("last_trade_id") is None else int(d["last_trade_id"]),
            Decimal(str(d["sum_qty"])),
            Decimal(str(d["sum_quote_qty"])),
            int(d["bytes"]),
            None if d.get("sha256") is None else str(d["sha256"]),
            int(d["schema_version"]),
            None if d.get("verified_at") is None else str(d["verified_at"]),
        )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_format(table_or_schema: Any) -> int:
    """The contract version a decoded file says it follows (1 when it predates the contract)."""
    schema = getattr(table_or_schema, "schema", table_or_schema)
    meta = schema.metadata or {}
    raw = meta.get(b"cryptolab.format", b"1")
    try:
        return int(raw.decode())
    except ValueError:
        return 1


def check_file(
    data: bytes, rec: DayRecord, where: str, columns: list[str] | None = None, filters: Any = None
) -> Any:
    """Decode a day's file after checking it against its record; ArchiveError naming `where` on any mismatch.

    Checks, in order: size and SHA-256 (when recorded), Parquet's page CRCs while decoding, the
    footer's row count, and first/last trade id. Returns the table (only `columns`, rows passing
    `filters`)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    fix = (
        "restore the file from a copy, or rewrite it with `cryptolab archive --replace` while the day is "
        "still in the database; `cryptolab archive --verify` checks every file"
    )
    if rec.sha256 is not None:
        if len(data) != rec.bytes:
            raise ArchiveError(
                f"{where} is damaged: {len(data):,} bytes, {rec.bytes:,} were published; {fix}"
            )
        got = sha256(data)
        if got != rec.sha256:
            raise ArchiveError(
                f"{where} is damaged: its SHA-256 is {got[:16]}…, {rec.sha256[:16]}… was recorded "
                f"at publish; {fix}"
            )
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        if pf.metadata.num_rows != rec.rows:
            raise ArchiveError(
                f"{where} is damaged: it holds {pf.metadata.num_rows:,} rows, {rec.rows:,} were "
                f"published; {fix}"
            )
        ids = pf.read(columns=["trade_id"]).column("trade_id")
        if rec.rows:
            mm = pc.min_max(ids)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            if (lo, hi) != (rec.first_id, rec.last_id):
                raise ArchiveError(
                    f"{where} is damaged: trade ids {lo}…{hi}, {rec.first_id}…{rec.last_id} were "
                    f"published; {fix}"
                )
        return pq.read_table(
            pa.BufferReader(data), columns=columns, filters=filters, page_checksum_verification=True
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise ArchiveError(
            f"{where} is damaged: it cannot be read as Parquet ({' '.join(str(exc).split())}); {fix}"
        ) from None


def contract_json() -> list[dict[str, Any]]:
    return [{"name": n, "arrow": a, "spark": s, "nullable": nullable} for n, a, s, nullable in CONTRACT]


def build_manifest(
    records: Iterable[DayRecord], previous: Mapping[str, Any] | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The manifest for `records` (this database's days at this location) plus the days of
    `previous` that they do not mention (another writer's), sorted by table, exchange, symbol, date."""
    days: dict[tuple[str, str, str], dict[str, Any]] = {}
    if previous:
        for d in previous.get("days", []):
            days[(str(d["exchange"]), str(d["symbol"]), str(d["date"]))] = dict(d)
    for r in records:
        days[(r.exchange, r.symbol, r.day.isoformat())] = r.as_json()
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
    return {
        "kind": MANIFEST_KIND,
        "written_at": stamp,
        "tables": {
            DATASET: {
                "schema_version": FORMAT_VERSION,
                "path": DATASET,
                "partitioning": ["exchange", "symbol", "date"],
                "format": "parquet",
                "columns": contract_json(),
            }
        },
        "days": [days[k] for k in sorted(days)],
    }


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ArchiveError(
            f"{where} is not valid JSON ({exc}): rewrite it with `cryptolab archive --verify`"
        ) from None
    if not isinstance(doc, dict) or doc.get("kind") != MANIFEST_KIND or not isinstance(doc.get("days"), list):
        raise ArchiveError(
            f"{where} is not a cryptolab archive manifest: move it away or rewrite it with "
            "`cryptolab archive --verify`"
        )
    return doc


def read_manifest(store: ArchiveStore) -> dict[str, Any] | None:
    """The manifest at the store's root, or None when there is none yet."""
    if not store.exists(MANIFEST):
        return None
    return parse_manifest(store.get(MANIFEST), store.uri(MANIFEST))


def write_manifest(store: ArchiveStore, doc: Mapping[str, Any]) -> None:
    """Replace the manifest in one atomic step (staged whole, then moved; on S3 one PUT)."""
    data = (json.dumps(doc, indent=1, sort_keys=False) + "\n").encode()
    if store.kind == "s3":
        store.put(MANIFEST, data)  # an object appears whole or not at all
        return
    staged = store.staging_name(MANIFEST)
    store.put(staged, data)
    store.publish(staged, MANIFEST)
