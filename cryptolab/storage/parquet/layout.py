"""The archive's layout and file format: one Parquet file per (exchange, symbol, UTC day).

    <root>/trades/exchange=binance/symbol=BTCUSDT/date=2024-08-08/trades-BTCUSDT-2024-08-08.parquet

Columns (exchange, symbol and date are in the path, as hive partitions): trade_id int64,
trade_time timestamp[us, UTC], price decimal128(38, 8), qty decimal128(38, 8), quote_qty
decimal128(38, 16) (= price·qty, exact), is_buyer_maker bool, event_time / received_at /
ingested_at timestamp[us, UTC] (nullable), source string, price_scale / qty_scale int8 (how
many decimals PostgreSQL stored each value with: `60000.1` and `60000.10000000` are the same
number but print differently; quote_qty's is their sum). A day whose values carry more decimals
than 8 (16 for quote_qty) gets the scale it needs for that file, so nothing is ever rounded.
"""

from __future__ import annotations

from datetime import date

from .store import DATASET

__all__ = ["day_path", "parse_day_path", "FILE_COLUMNS", "DECIMALS", "SCALE_COLUMNS", "DEFAULT_SCALE", "TIMES",
           "FORMAT_VERSION"]

FORMAT_VERSION = "1"
FILE_COLUMNS = ("trade_id", "trade_time", "price", "qty", "quote_qty", "is_buyer_maker",
                "event_time", "received_at", "ingested_at", "source", "price_scale", "qty_scale")
DECIMALS = ("price", "qty", "quote_qty")
SCALE_COLUMNS = {"price": "price_scale", "qty": "qty_scale"}
"""The per-row display scale columns of the decimals that PostgreSQL stores as given."""
DEFAULT_SCALE = {"price": 8, "qty": 8, "quote_qty": 16}
TIMES = ("trade_time", "event_time", "received_at", "ingested_at")
ROW_GROUP_ROWS = 1_048_576
"""Rows per row group: ~10-20 MB of compressed trades, large enough for fast scans, with
min/max statistics on trade_id and trade_time so time and id filters skip whole groups."""


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
