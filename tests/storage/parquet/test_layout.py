"""The archive's layout: one file per (exchange, symbol, day) at a path read back exactly, and one
schema whose decimal types hold Binance's values."""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from cryptolab.storage.parquet.layout import contract_schema, day_path, parse_day_path


def test_a_day_path_reads_back_as_its_exchange_symbol_and_day() -> None:
    rel = day_path("binance", "BTCUSDT", date(2024, 8, 8))
    assert rel == "trades/exchange=binance/symbol=BTCUSDT/date=2024-08-08/trades-BTCUSDT-2024-08-08.parquet"
    assert parse_day_path(rel) == ("binance", "BTCUSDT", date(2024, 8, 8))


def test_anything_but_a_published_day_file_is_not_a_day() -> None:
    good = day_path("binance", "BTCUSDT", date(2024, 8, 8))
    assert parse_day_path(good.replace(".parquet", ".parquet.tmp")) is None  # not yet published
    assert parse_day_path(good.replace("trades-BTCUSDT", "trades-ETHUSDT")) is None  # file of another symbol
    assert parse_day_path(good.replace("2024-08-08/", "2024-13-08/")) is None  # no such day
    assert parse_day_path("manifest.json") is None and parse_day_path("trades/x/y/z/w.parquet") is None


def test_the_contract_types_prices_qty_and_notional_as_exact_decimals() -> None:
    schema = contract_schema()
    assert schema.field("price").type == pa.decimal128(18, 8)
    assert schema.field("qty").type == pa.decimal128(19, 8)
    assert schema.field("quote_qty").type == pa.decimal128(38, 16)
    assert "exchange" not in schema.names and "symbol" not in schema.names  # in the path (hive partitions)
