"""Files of an older archive format are rewritten under the contract, from the database or their own file."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from cryptolab.archive import archive, day_path, read_archived_trades
from cryptolab.storage.parquet.layout import FORMAT_VERSION, MANIFEST, contract_schema
from tests.archive.test_integrity import SYM, _drop_one_day
from tests.archive.test_job import DAY1, TODAY, _odd_trades, _write


def _v1_file(path: Path, table: pa.Table) -> None:
    """What the archive wrote before the contract: decimal128(38, 8|16), format 1."""
    old = table.cast(
        pa.schema(
            [
                pa.field(f.name, pa.decimal128(38, 16 if f.name == "quote_qty" else 8))
                if pa.types.is_decimal(f.type)
                else f
                for f in table.schema
            ]
        )
    )
    pq.write_table(old.replace_schema_metadata({"cryptolab.format": "1"}), path, compression="zstd")


def test_a_file_of_an_older_schema_is_rewritten_under_the_contract(dsn: str, tmp_path: Path) -> None:
    _write(dsn, _odd_trades(DAY1, 300))
    root = tmp_path / "a"
    archive(to=str(root), today=TODAY)
    f = root / day_path("binance", SYM, DAY1)
    _v1_file(f, pq.read_table(f))
    with psycopg.connect(dsn) as c:
        c.execute("UPDATE archive_days SET format = 1, sha256 = NULL")
    rep = archive(to=str(root), today=TODAY, drop=True)
    assert [r.status for r in rep.exported] == ["upgraded"] and rep.dropped == [DAY1]
    assert pq.read_schema(f).remove_metadata() == contract_schema()
    assert read_archived_trades("binance", SYM).height == 300


def test_a_dropped_day_of_an_older_schema_is_rewritten_from_its_own_file(dsn: str, tmp_path: Path) -> None:
    root = tmp_path / "a"
    f = _drop_one_day(dsn, root, 400)
    want = read_archived_trades("binance", SYM)
    _v1_file(f, pq.read_table(f))
    with psycopg.connect(dsn) as c:
        c.execute("UPDATE archive_days SET format = 1, sha256 = NULL, bytes = %s", (f.stat().st_size,))
    archive(to=str(root), today=TODAY)
    assert pq.read_schema(f).remove_metadata() == contract_schema()
    assert read_archived_trades("binance", SYM).equals(want)
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT format, sha256 IS NOT NULL FROM archive_days").fetchone() == (
            FORMAT_VERSION,
            True,
        )
    assert [d["date"] for d in json.loads((root / MANIFEST).read_text())["days"]] == ["2024-08-08"]
    # a file that no longer holds what was recorded is not rewritten: a conflict, named
    _v1_file(f, pq.read_table(f).slice(0, 100))
    with psycopg.connect(dsn) as c:
        c.execute("UPDATE archive_days SET format = 1, sha256 = NULL")
    rep = archive(to=str(root), today=TODAY)
    assert len(rep.plan.conflicts) == 1 and f"{f} is damaged" in rep.plan.conflicts[0][1]
