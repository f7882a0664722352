"""The archive's layout and its one schema (the contract): one Parquet file per (exchange, symbol, UTC day).

    <root>/trades/exchange=binance/symbol=BTCUSDT/date=2024-08-08/trades-BTCUSDT-2024-08-08.parquet
    <root>/manifest.json      (written last: which days exist, verified, with rows, ids, sums, sha256)

Every file of the dataset has the same schema, `CONTRACT` (version `FORMAT_VERSION`); exchange,
symbol and date are in the path, as hive partitions. The decimal types are the narrowest that hold
what Binance publishes (8 decimals; a price below 10^10, a quantity below 10^11) *and* keep the
obvious queries exact in every engine with its default settings: Spark types decimal(18,8) ·
decimal(19,8) as decimal(38,16) — no rounding, it only rounds past 38 digits — and `quote_qty`
(the exact notional, price·qty) makes VWAP = Σquote_qty / Σqty with no product at all. A value
that does not fit is refused at archive time, naming the day and the value (the day stays in the
database); a file of another type never enters the dataset. `price_scale` / `qty_scale` (int8)
keep how many decimals PostgreSQL stored each value with (`60000.1` vs `60000.10000000`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from .store import DATASET

__all__ = [
    "day_path",
    "parse_day_path",
    "FILE_COLUMNS",
    "DECIMALS",
    "SCALE_COLUMNS",
    "DECIMAL_TYPES",
    "TIMES",
    "FORMAT_VERSION",
    "CONTRACT",
    "contract_schema",
    "MANIFEST",
]

FORMAT_VERSION = 2
"""The contract's version (1: decimal128(38, 8|16) with a per-file scale, before the contract)."""
MANIFEST = "manifest.json"
"""The dataset's manifest, at the archive root (beside `trades/`; no reader scans it as data)."""
FILE_COLUMNS = (
    "trade_id",
    "trade_time",
    "price",
    "qty",
    "quote_qty",
    "is_buyer_maker",
    "event_time",
    "received_at",
    "ingested_at",
    "source",
    "price_scale",
    "qty_scale",
)
DECIMALS = ("price", "qty", "quote_qty")
SCALE_COLUMNS = {"price": "price_scale", "qty": "qty_scale"}
"""The per-row display scale columns of the decimals that PostgreSQL stores as given."""
DECIMAL_TYPES = {"price": (18, 8), "qty": (19, 8), "quote_qty": (38, 16)}
"""(precision, scale) of each decimal column: price < 10^10, qty < 10^11, 8 decimals;
quote_qty = price·qty."""
CONTRACT = (  # (column, Arrow type name, Spark SQL type, nullable)
    ("trade_id", "int64", "bigint", False),
    ("trade_time", "timestamp[us, tz=UTC]", "timestamp", False),
    ("price", "decimal128(18, 8)", "decimal(18,8)", False),
    ("qty", "decimal128(19, 8)", "decimal(19,8)", False),
    ("quote_qty", "decimal128(38, 16)", "decimal(38,16)", False),
    ("is_buyer_maker", "bool", "boolean", False),
    ("event_time", "timestamp[us, tz=UTC]", "timestamp", True),
    ("received_at", "timestamp[us, tz=UTC]", "timestamp", True),
    ("ingested_at", "timestamp[us, tz=UTC]", "timestamp", True),
    ("source", "string", "string", False),
    ("price_scale", "int8", "tinyint", False),
    ("qty_scale", "int8", "tinyint", False),
)
"""The trades table's schema, version FORMAT_VERSION (also written into the manifest)."""
TIMES = ("trade_time", "event_time", "received_at", "ingested_at")
ROW_GROUP_ROWS = 1_048_576
"""Rows per row group: ~10-20 MB of compressed trades, large enough for fast scans, with
min/max statistics on trade_id and trade_time so time and id filters skip whole groups."""


def contract_schema() -> Any:
    """The contract as a pyarrow schema (every file of the dataset has exactly this schema)."""
    import pyarrow as pa

    types = {
        "int64": pa.int64(),
        "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
        "bool": pa.bool_(),
        "string": pa.string(),
        "int8": pa.int8(),
    }
    fields = []
    for name, arrow, _spark, nullable in CONTRACT:
        typ = pa.decimal128(*DECIMAL_TYPES[name]) if name in DECIMAL_TYPES else types[arrow]
        fields.append(pa.field(name, typ, nullable=nullable))
    return pa.schema(fields)


def day_path(exchange: str, symbol: str, day: date) -> str:
    """The file of one (exchange, symbol, day), relative to the archive root."""
    d = day.isoformat()
    return f"{DATASET}/exchange={exchange}/symbol={symbol}/date={d}/trades-{symbol}-{d}.parquet"


def parse_day_path(rel: str) -> tuple[str, str, date] | None:
    """(exchange, symbol, day) of a published day file, or None for anything else."""
    parts = rel.split("/")
    if len(parts) != 5 or parts[0] != DATASET or not parts[4].endswith(".parquet"):
        return None
    try:
        keys = dict(p.split("=", 1) for p in parts[1:4])
        day = date.fromisoformat(keys["date"])
        exchange, symbol = keys["exchange"], keys["symbol"]
    except (ValueError, KeyError):
        return None
    if rel != day_path(exchange, symbol, day):
        return None
    return exchange, symbol, day
