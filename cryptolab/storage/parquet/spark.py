"""Spark reads the archive anywhere `cryptolab` can — S3 included — with no extra jar.

Spark's own `s3a://` needs hadoop-aws and the AWS SDK jars, which pyspark does not ship (they
must be downloaded to match its Hadoop). This Python data source needs none: it reads the
manifest, makes one Spark partition per listed day, and each task reads its file through
`pyarrow.fs` (endpoint and credentials from the usual AWS_* variables of the Spark processes),
checks it against the manifest (size, SHA-256, page CRCs, rows, ids) and hands Spark Arrow
batches in the archive's contract, plus the `exchange`, `symbol` and `date` columns:

    from cryptolab.storage.parquet.spark import register
    register(spark)
    trades = spark.read.format("cryptolab_archive").load("s3://bucket/prefix")   # or a directory
    trades = spark.read.format("cryptolab_archive").option("symbols", "BTCUSDT,ETHUSDT").load(url)

For a directory a plain `spark.read.parquet` of the listed files is as good (docs/archive.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

from .layout import CONTRACT

__all__ = ["register", "ArchiveSource", "SPARK_SCHEMA"]

SPARK_SCHEMA = ", ".join(f"{name} {spark}" for name, _arrow, spark, _null in CONTRACT) + \
    ", exchange string, symbol string, date date"


class ArchiveSource(DataSource):
    """`spark.read.format("cryptolab_archive").load(url)`: the days the archive's manifest lists."""

    @classmethod
    def name(cls) -> str:
        return "cryptolab_archive"

    def schema(self) -> str:
        return SPARK_SCHEMA

    def reader(self, schema: Any) -> DataSourceReader:
        return _Reader(dict(self.options))


class _Reader(DataSourceReader):
    def __init__(self, options: dict[str, str]) -> None:
        self.url = options.get("path") or options.get("url") or ""
        wanted = options.get("symbols", "")
        self.symbols = {s.strip().upper() for s in wanted.split(",") if s.strip()}

    def partitions(self) -> list[InputPartition]:
        from .errors import ArchiveError
        from .manifest import read_manifest
        from .store import open_store

        store = open_store(self.url, check=False)
        doc = read_manifest(store)
        if doc is None:
            raise ArchiveError(
                f"{store.uri()} has no manifest.json: not a cryptolab archive, or nothing archived yet"
            )
        days = [
            d
            for d in doc["days"]
            if d.get("table", "trades") == "trades"
            and (not self.symbols or str(d["symbol"]).upper() in self.symbols)
        ]
        return [InputPartition(json.dumps(d)) for d in days]

    def read(self, partition: InputPartition) -> Iterator[Any]:
        import pyarrow as pa

        from .manifest import DayRecord, check_file
        from .store import open_store

        rec = DayRecord.from_json(json.loads(partition.value))
        store = open_store(self.url, check=False)
        table = check_file(store.get(rec.path), rec, store.uri(rec.path))
        n = table.num_rows
        table = table.cast(
            pa.schema([f.with_nullable(True) for f in table.schema])
        )  # Spark's schema: nullable
        table = (
            table.replace_schema_metadata(None)
            .append_column("exchange", pa.array([rec.exchange] * n, pa.string()))
            .append_column("symbol", pa.array([rec.symbol] * n, pa.string()))
            .append_column("date", pa.array([rec.day] * n, pa.date32()))
        )
        yield from table.to_batches(max_chunksize=131_072)


def register(spark: Any) -> None:
    """Make `spark.read.format("cryptolab_archive")` available in this Spark session."""
    spark.dataSource.register(ArchiveSource)
