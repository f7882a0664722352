"""The export's contract: misfit names the first value it cannot hold, conform gives exactly its schema."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cryptolab.archive import ArchiveError
from cryptolab.archive.export import conform, misfit
from cryptolab.storage.parquet.layout import contract_schema
from tests.archive.test_job import DAY1


def test_misfit_names_the_first_value_the_contract_cannot_hold() -> None:
    assert misfit("price", pa.array(["60000.12345678", "9999999999.99999999", "1"])) is None
    assert misfit("price", pa.array(["1.5", "0.000000001", "2"])) == (1, "0.000000001")  # 9 decimals
    assert misfit("price", pa.array(["10000000000"])) == (0, "10000000000")  # 11 digits before the point
    assert misfit("qty", pa.array(["99999999999.99999999"])) is None  # 11 digits: any Binance quantity
    assert misfit("qty", pa.array(["100000000000"])) == (0, "100000000000")


def test_conform_gives_exactly_the_contract_schema_or_refuses_naming_day_and_value() -> None:
    raw = pa.table(
        {
            "trade_id": pa.array([7, 8], pa.int64()),
            "trade_time": pa.array([1, 2], pa.timestamp("us", tz="UTC")),
            "price": ["60000.1", "60000.10000000"],
            "qty": ["0.001", "2"],
            "quote_qty": ["60.0001", "120000.2"],
            "is_buyer_maker": [True, False],
            "event_time": pa.array([None, 3], pa.timestamp("us", tz="UTC")),
            "received_at": pa.array([None, None], pa.timestamp("us", tz="UTC")),
            "ingested_at": pa.array([4, 5], pa.timestamp("us", tz="UTC")),
            "source": ["live", "backfill"],
            "price_scale": pa.array([1, 8], pa.int8()),
            "qty_scale": pa.array([3, 0], pa.int8()),
        }
    )
    assert conform(raw, "binance", "X", DAY1).schema == contract_schema()
    bad = raw.set_column(2, "price", pa.array(["60000.1", "0.123456789"]))
    with pytest.raises(
        ArchiveError,
        match=r"binance X 2024-08-08: price 0\.123456789 \(trade 8\) does not fit.*"
        r"decimal\(18,8\).*stays in the database",
    ):
        conform(bad, "binance", "X", DAY1)
